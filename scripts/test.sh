#!/usr/bin/env bash
# The whole test suite from a fresh clone: set-up, ruff (lint + format), mypy --strict, and
# pytest on SQLite and PostgreSQL. Extra arguments go to pytest (e.g. -k terminate).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

ensure_venv dev
ensure_postgres
ensure_chromium

echo "==> ruff check";         .venv/bin/ruff check src tests bench
echo "==> ruff format --check"; .venv/bin/ruff format --check src tests bench
echo "==> mypy --strict";      .venv/bin/mypy
echo "==> pytest (SQLite and PostgreSQL)"
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"
