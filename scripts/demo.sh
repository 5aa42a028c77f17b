#!/usr/bin/env bash
# lmsync's main job on its embedded defaults (SQLite in ./.lmsync): sets up, then runs `lmsync demo`.
# Extra arguments go to `lmsync demo` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_venv
exec .venv/bin/lmsync demo "$@"
