#!/usr/bin/env bash
# Refresh the message catalogues after changing user-facing text: extract every marked message
# (Python `_()`/`N_()`, templates `{% trans %}`/`_()`) into messages.pot, then merge it into each
# language's messages.po. Translate the new entries (empty msgstr, or marked fuzzy) and commit;
# tests/unit/test_catalogue.py fails until every message has a translation.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
ensure_venv dev
pot=src/lmsync/locale/messages.pot
.venv/bin/pybabel extract -F babel.cfg --sort-by-file --add-location=file \
    --project=lmsync --copyright-holder="lmsync contributors" --width=100 -k _n:1,2 -o "$pot" src/lmsync
for lang in fr_CA; do
    if [ -f "src/lmsync/locale/$lang/LC_MESSAGES/messages.po" ]; then
        .venv/bin/pybabel update -i "$pot" -d src/lmsync/locale -l "$lang" --no-fuzzy-matching --width=100 \
            --ignore-obsolete
    else
        .venv/bin/pybabel init -i "$pot" -d src/lmsync/locale -l "$lang"
    fi
done
echo "catalogues updated: translate the empty entries of src/lmsync/locale/*/LC_MESSAGES/messages.po"
