# Shared set-up steps for the scripts (sourced, not run).
# Everything here is idempotent: a second run does nothing that is already done.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    command -v apt-get >/dev/null || { echo "please install: $*" >&2; return 1; }
    as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# ensure_venv [dev]: .venv with lmsync's dependencies installed from the lock, every one pinned
# and checked against its hashes (requirements.lock; requirements-dev.lock with "dev"), then
# lmsync itself (editable, no dependency of its own). Reinstalled when the lock or pyproject.toml
# changes. scripts/lock.sh regenerates the locks.
ensure_venv() {
    local extra="${1:-}" lock stamp
    case "$extra" in
        "") lock=requirements.lock ;;
        dev) lock=requirements-dev.lock ;;
        *) echo "ensure_venv: unknown extra '$extra'" >&2; return 1 ;;
    esac
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv 2>/dev/null || { apt_install python3-venv && python3 -m venv .venv; }
    fi
    stamp="$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)-$extra"
    if [ "$(cat .venv/.lmsync-stamp 2>/dev/null)" != "$stamp" ]; then
        echo "==> installing lmsync and its pinned dependencies ($lock) into .venv"
        _venv_pip install -q --upgrade pip
        _venv_pip install -q --require-hashes -r "$lock"
        # setuptools comes from the lock: the build fetches nothing unpinned.
        _venv_pip install -q --no-deps --no-build-isolation -e .
        .venv/bin/python -c "import lmsync" || { echo "installation failed" >&2; return 1; }
        echo "$stamp" > .venv/.lmsync-stamp
    fi
}

# _venv_pip ARGS: .venv's pip; its output without the warnings about index locations a machine's
# pip configuration names but lacks; fails when pip fails.
_venv_pip() {
    local log rc=0
    log="$(mktemp)"
    .venv/bin/python -m pip "$@" >"$log" 2>&1 || rc=$?
    grep -v '^WARNING: Location' "$log" >&2 || true
    rm -f "$log"
    return "$rc"
}

# ensure_postgres: a PostgreSQL reachable on 127.0.0.1:5432 for the test suite; started (or, on a
# bare Debian machine, installed) when it is not. Exports LMSYNC_TEST_POSTGRES_URL when it sets one up.
ensure_postgres() {
    if [ -n "${LMSYNC_TEST_POSTGRES_URL:-}" ]; then return 0; fi
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        echo "==> installing PostgreSQL (Debian package)"
        apt_install postgresql postgresql-client || return 1
        local fresh=1
    fi
    echo "==> starting PostgreSQL"
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n1)"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    pg_isready -q -h 127.0.0.1 -p 5432 || { echo "PostgreSQL did not start" >&2; return 1; }
    if [ -n "${fresh:-}" ]; then
        # A fresh Debian cluster asks for a password on TCP: give the postgres role one for the tests.
        as_root su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'lmsync-tests'\""
        export LMSYNC_TEST_POSTGRES_URL="postgresql+psycopg://postgres:lmsync-tests@127.0.0.1:5432/postgres"
    fi
}

# ensure_chromium: Debian's chromium for the browser tests (Playwright drives it; it never
# downloads a browser of its own).
ensure_chromium() {
    if [ -x "${LMSYNC_CHROMIUM:-/usr/bin/chromium}" ]; then return 0; fi
    echo "==> installing chromium (Debian package) for the browser tests"
    apt_install chromium || echo "chromium could not be installed: the browser tests will say so" >&2
}
