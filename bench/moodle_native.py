"""B6, Moodle half: what a Moodle admin would use instead of lmsync, measured on a real Moodle.

Two tools that ship with Moodle 5.0, both driven from the command line against the peer of
``shared/peers/moodle`` (its own instance: port 8083, PostgreSQL 5434 by default):

* ``admin/tool/uploaduser/cli/uploaduser.php``: a CSV export of the HR employees, uploaded with
  "add new and update existing users" (``uutype=2``), "override with file" and suspensions allowed;
  leavers are a ``suspended=1`` row. Run twice: Moodle's defaults for matching (username only) and
  with "match on email address" (``uumatchemail=1``).
* ``auth/db/cli/sync_users.php``: the external-database auth plugin reading an HR table
  (``hr_users`` in a scratch database of the peer's own PostgreSQL cluster), with "suspend" for
  rows that disappear and every mapped field updated on sync.

Each run starts from a pristine Moodle that holds one pre-existing manual account whose email is a
letter-case variant of an employee's (``Ann.Lee@Example.Com`` while HR has ``ann.lee@example.com``),
loads the N employees (``first_load_s``), then runs one pass where 1% changed job title and city
and 1% left (``pass_s``), and checks the outcome in Moodle's database.

    .venv/bin/python bench/moodle_native.py [--n 2000] [--keep]

prints a markdown table. ``employees(n, seed)`` is the generator the main benchmark feeds to
lmsync's connector, so that both halves see the same people.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pwd
import random
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PEER_DIR = Path(__file__).resolve().parents[2] / "shared" / "peers" / "moodle"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PHP = "php8.2"
BUILTIN_USERNAMES = ("guest", "admin", "wsuser")
HR_DATABASE = "moodle_native_hr"  # scratch database in the peer's own cluster, dropped at the end
HR_TABLE = "hr_users"
PREEXISTING_PASSWORD = "Legacy-Pass-1!"  # noqa: S105 - a throw-away test account's password

Employee = dict[str, str]

FIRST_NAMES = ("Zoë", "Jean", "Amélie", "Omar", "Li", "Ana", "Kwame", "Noah", "Léa", "Ravi")
LAST_NAMES = ("Tremblay", "Gagnon", "Roy", "Côté", "Smith", "Nguyen", "Okafor", "Müller")
PLACES = (  # city, ISO-2 country, phone prefix
    ("Montréal", "CA", "+1 514 555"),
    ("Toronto", "CA", "+1 416 555"),
    ("Québec", "CA", "+1 418 555"),
    ("Boston", "US", "+1 617 555"),
    ("Paris", "FR", "+33 1 55"),
    ("Bruxelles", "BE", "+32 2 555"),
)
JOB_TITLES = ("Payroll clerk", "Warehouse associate", "Nurse", "Sales rep", "Analyst", "Driver")
COMPANIES = ("Bench inc.", "Bench Logistics", "Bench Santé")
LANGUAGES = ("en", "fr", "fr_ca")
CSV_COLUMNS = (
    "username",
    "email",
    "firstname",
    "lastname",
    "idnumber",
    "institution",
    "department",
    "phone1",
    "city",
    "country",
    "lang",
    "auth",
    "suspended",
    "profile_field_jobtitle",
)


# --- the employees ----------------------------------------------------------------------------


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def employees(n: int, seed: int = 6) -> list[Employee]:
    """N deterministic HR employees; the first is Ann Lee, ``ann.lee@example.com``.

    Keys: employee_number, first_name, last_name, email (lower case, unique), company_name,
    job_title, cell_phone (at most 20 characters), city, country (ISO alpha-2), language
    (``en``, ``fr`` or ``fr_ca``, Moodle's codes).
    """
    rng = random.Random(seed)
    out: list[Employee] = []
    for i in range(n):
        number = f"E{i + 1:06d}"
        if i == 0:
            first, last, email = "Ann", "Lee", "ann.lee@example.com"
        else:
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            email = f"{_ascii(first)}.{_ascii(last)}.{number.lower()}@example.com"
        city, country, prefix = rng.choice(PLACES)
        out.append(
            {
                "employee_number": number,
                "first_name": first,
                "last_name": last,
                "email": email,
                "company_name": rng.choice(COMPANIES),
                "job_title": rng.choice(JOB_TITLES),
                "cell_phone": f"{prefix} {rng.randrange(10000):04d}",
                "city": city,
                "country": country,
                "language": rng.choice(LANGUAGES),
            }
        )
    return out


def pass_changes(
    staff: list[Employee], fraction: float = 0.01, seed: int = 7
) -> tuple[list[Employee], list[Employee]]:
    """(changed, left): disjoint, ``fraction`` of the staff each, never the first employee.

    ``changed`` holds the new versions (another job title and city); ``left`` the leavers as
    they were.
    """
    rng = random.Random(seed)
    k = max(1, round(len(staff) * fraction))
    picked = rng.sample(range(1, len(staff)), 2 * k)
    changed = [
        {**staff[i], "job_title": f"Senior {staff[i]['job_title']}", "city": "Sherbrooke"}
        for i in sorted(picked[:k])
    ]
    left = [staff[i] for i in sorted(picked[k:])]
    return changed, left


def case_variant(email: str) -> str:
    """``ann.lee@example.com`` -> ``Ann.Lee@Example.Com``."""
    local, _, domain = email.partition("@")
    return (
        ".".join(p.capitalize() for p in local.split("."))
        + "@"
        + ".".join(p.capitalize() for p in domain.split("."))
    )


def apply_pass(staff: list[Employee], changed: list[Employee]) -> list[Employee]:
    """The staff with the changed employees' new versions (the leavers are still listed)."""
    new = {e["employee_number"]: e for e in changed}
    return [new.get(e["employee_number"], e) for e in staff]


# --- the Moodle peer --------------------------------------------------------------------------


@dataclass(frozen=True)
class MoodleEnv:
    """One instance of the Moodle peer (``start.sh`` with its own ports and state dir)."""

    url: str
    token: str
    port: int
    pg_port: int
    state_dir: Path
    peer_dir: Path = PEER_DIR

    @property
    def code_dir(self) -> Path:
        return self.state_dir / "moodle"

    def script_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MOODLE_PORT": str(self.port),
            "MOODLE_PG_PORT": str(self.pg_port),
            "MOODLE_STATE_DIR": str(self.state_dir),
        }


def _run(
    cmd: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed programs, no shell
        cmd, env=env, input=stdin, capture_output=True, text=True, check=False
    )


def _check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def start_moodle(port: int = 8083, pg_port: int = 5434, state_dir: Path | None = None) -> MoodleEnv:
    """Start (or find running) the peer on these ports; returns how to reach it."""
    state = state_dir or Path(f"/tmp/moodle-peer-{port}")  # noqa: S108 - the peer's own default
    base = MoodleEnv("", "", port, pg_port, state)
    out = _check(_run(["bash", str(PEER_DIR / "start.sh")], env=base.script_env()), "start.sh")
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return MoodleEnv(values["MOODLE_URL"], values["MOODLE_TOKEN"], port, pg_port, state)


def stop_moodle(env: MoodleEnv) -> None:
    _check(_run(["bash", str(env.peer_dir / "stop.sh")], env=env.script_env()), "stop.sh")


def is_running(env: MoodleEnv) -> bool:
    try:
        return "sitename" in json.dumps(ws(env, "core_webservice_get_site_info", {}))
    except OSError:
        return False


def ws(env: MoodleEnv, function: str, params: dict[str, str]) -> Any:
    """One REST call; raises on a Moodle exception (they come back as HTTP 200)."""
    query = urllib.parse.urlencode(
        {"wstoken": env.token, "wsfunction": function, "moodlewsrestformat": "json"}
    )
    req = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 peer
        f"{env.url}/webservice/rest/server.php?{query}",
        data=urllib.parse.urlencode(params).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310
        body: Any = json.loads(resp.read() or b"null")
    if isinstance(body, dict) and "exception" in body:
        raise RuntimeError(f"{function}: {body.get('errorcode')} {body.get('message')}")
    return body


def psql(env: MoodleEnv, sql: str, db: str = "moodle", stdin: str | None = None) -> str:
    """SQL on the peer's cluster (TCP, trust auth); unaligned, fields separated by a tab."""
    cmd = [str(PG_BIN / "psql"), "-X", "-q", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    cmd += ["-h", "127.0.0.1", "-p", str(env.pg_port), "-U", "postgres", "-d", db, "-c", sql]
    return _check(_run(cmd, stdin=stdin), f"psql {sql[:60]!r}")


def php(env: MoodleEnv, script: str, *args: str) -> tuple[float, str]:
    """Run a Moodle CLI script as the owner of moodledata (as ``php -S`` does); (seconds, output).

    As root with a root-owned moodledata (the peer's case) that is root itself; on a real site
    it would be ``sudo -u www-data``.
    """
    owner = (env.state_dir / "moodledata").stat().st_uid
    prefix: list[str] = []
    if os.geteuid() == 0 and owner != 0:
        prefix = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"]
    cmd = [*prefix, PHP, "-d", "memory_limit=1G", str(env.code_dir / script), *args]
    t0 = time.perf_counter()
    proc = _run(cmd)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}"
        )
    return elapsed, proc.stdout + proc.stderr


def cfg(env: MoodleEnv, name: str, value: str, component: str | None = None) -> None:
    args = [f"--name={name}", f"--set={value}"]
    if component:
        args.insert(0, f"--component={component}")
    php(env, "admin/cli/cfg.php", *args)


def reset_moodle(env: MoodleEnv) -> None:
    """Pristine Moodle, with the peer's two datetime profile fields fixed, caches warm.

    The peer's ``setup_ws.php`` stores ``defaultdata=''`` for the datetime profile fields where
    Moodle's own form stores ``'0'``; the upload-users form then dies with "getdate(): Argument #1
    ($timestamp) must be of type ?int, string given" (CLI ``--help`` included).
    """
    _check(_run(["bash", str(env.peer_dir / "reset.sh")], env=env.script_env()), "reset.sh")
    psql(env, "UPDATE mdl_user_info_field SET defaultdata = '0' WHERE datatype = 'datetime'")
    php(env, "admin/cli/purge_caches.php")
    php(env, "admin/cli/cfg.php", "--name=version")  # warm the caches outside the timings


def create_preexisting(env: MoodleEnv, emp: Employee) -> int:
    """A manual Moodle account made before any sync: own username, case-variant email."""
    created = ws(
        env,
        "core_user_create_users",
        {
            "users[0][username]": f"legacy.{emp['employee_number'].lower()}",
            "users[0][password]": PREEXISTING_PASSWORD,
            "users[0][firstname]": emp["first_name"],
            "users[0][lastname]": emp["last_name"],
            "users[0][email]": case_variant(emp["email"]),
        },
    )
    return int(created[0]["id"])


@dataclass(frozen=True)
class MoodleUser:
    id: int
    username: str
    email: str
    idnumber: str
    auth: str
    suspended: bool
    city: str
    department: str


def moodle_users(env: MoodleEnv) -> list[MoodleUser]:
    """Every live Moodle user but the three built-in ones (from Moodle's database)."""
    builtins = ",".join(f"'{u}'" for u in BUILTIN_USERNAMES)
    cols = "id, username, email, idnumber, auth, suspended, city, department"
    where = f"deleted = 0 AND username NOT IN ({builtins})"
    rows = psql(env, f"SELECT {cols} FROM mdl_user WHERE {where} ORDER BY id")  # noqa: S608
    users = []
    for line in rows.splitlines():
        if not line:
            continue
        uid, username, email, idnumber, auth, suspended, city, department = line.split("\t")
        users.append(
            MoodleUser(
                int(uid), username, email, idnumber, auth, suspended == "1", city, department
            )
        )
    return users


# --- the outcome ------------------------------------------------------------------------------


@dataclass
class NativeResult:
    tool: str
    first_load_s: float
    pass_s: float
    users_after_first: int  # live Moodle users but the built-in ones (the pre-existing included)
    users_after_pass: int
    missing: int  # employees without any Moodle account after the pass
    duplicates: int  # extra accounts sharing an email (letter case ignored)
    changed_ok: bool  # every changed employee's city and department are the new ones
    suspended_ok: bool  # exactly the leavers' accounts are suspended
    case_variant_linked: bool  # the pre-existing account was taken over, no second one
    notes: list[str] = field(default_factory=list)


def evaluate(
    tool: str,
    times: tuple[float, float],
    counts: tuple[int, int],
    final: list[MoodleUser],
    staff: list[Employee],
    changed: list[Employee],
    left: list[Employee],
    preexisting_id: int,
) -> NativeResult:
    by_email: dict[str, list[MoodleUser]] = {}
    for u in final:
        by_email.setdefault(u.email.lower(), []).append(u)
    dup = sum(len(v) - 1 for v in by_email.values())
    missing = sum(1 for e in staff if e["email"] not in by_email)
    changed_ok = all(
        any(
            u.city == e["city"] and u.department == e["job_title"]
            for u in by_email.get(e["email"], [])
        )
        for e in changed
    )
    leaver_emails = {e["email"] for e in left}
    suspended = {u.email.lower() for u in final if u.suspended}
    leavers_all = all(
        by_email.get(m) and all(u.suspended for u in by_email[m]) for m in leaver_emails
    )
    suspended_ok = leavers_all and suspended == leaver_emails
    pre = staff[0]
    accounts = by_email.get(pre["email"], [])
    linked = [u.id for u in accounts] == [preexisting_id] and accounts[0].idnumber == pre[
        "employee_number"
    ]
    fate = ", ".join(f"#{u.id} {u.username} ({u.auth}, {u.email})" for u in accounts)
    return NativeResult(
        tool,
        times[0],
        times[1],
        counts[0],
        counts[1],
        missing,
        dup,
        changed_ok,
        suspended_ok,
        linked,
        [f"{pre['email']} in HR, pre-existing #{preexisting_id}: accounts now {fate}"],
    )


# --- tool 1: the CSV upload -------------------------------------------------------------------


def person_values(e: Employee) -> list[str]:
    """The values both tools load, in the order of their columns (username first)."""
    return [
        e["email"].lower(),
        e["email"],
        e["first_name"],
        e["last_name"],
        e["employee_number"],
        e["company_name"],
        e["job_title"],
        e["cell_phone"],
        e["city"],
        e["country"],
        e["language"],
    ]


def csv_row(e: Employee, suspended: bool) -> list[str]:
    return [*person_values(e), "manual", "1" if suspended else "0", e["job_title"]]


def write_csv(path: Path, staff: list[Employee], left: list[Employee]) -> None:
    gone = {e["employee_number"] for e in left}
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for e in staff:
            w.writerow(csv_row(e, e["employee_number"] in gone))


def _stats(output: str) -> str:
    keys = ("Users created", "Users updated", "Users skipped", "Errors")
    lines = [ln.strip() for ln in output.splitlines() if ln.strip().startswith(keys)]
    return ", ".join(lines)


def _error_samples(output: str, limit: int = 2) -> list[str]:
    lines = [ln.strip() for ln in output.splitlines() if "rror" in ln]
    return [ln[:160] for ln in lines if not ln.startswith("Errors:")][:limit]


def run_csv_upload(
    env: MoodleEnv,
    staff: list[Employee],
    changed: list[Employee],
    left: list[Employee],
    *,
    match_email: bool = False,
) -> NativeResult:
    """uploaduser.php: a full CSV export at first, then a full export with the pass applied."""
    reset_moodle(env)
    pre_id = create_preexisting(env, staff[0])
    options = [
        "--uutype=2",  # add new and update existing users
        "--uuupdatetype=1",  # override with file
        "--uupasswordnew=1",  # create a password (mail is off on the peer)
        "--uuallowsuspends=1",
        f"--uumatchemail={int(match_email)}",
    ]
    tool = "CSV upload" + (" (match on email)" if match_email else " (defaults)")
    with tempfile.TemporaryDirectory(prefix="moodle-native-") as tmp:
        first_csv, pass_csv = Path(tmp) / "first.csv", Path(tmp) / "pass.csv"
        write_csv(first_csv, staff, [])
        write_csv(pass_csv, apply_pass(staff, changed), left)
        for p in (first_csv, pass_csv):  # readable by whoever runs php
            p.chmod(0o644)
        Path(tmp).chmod(0o755)
        t1, out1 = php(
            env, "admin/tool/uploaduser/cli/uploaduser.php", f"--file={first_csv}", *options
        )
        n1 = len(moodle_users(env))
        t2, out2 = php(
            env, "admin/tool/uploaduser/cli/uploaduser.php", f"--file={pass_csv}", *options
        )
    final = moodle_users(env)
    res = evaluate(tool, (t1, t2), (n1, len(final)), final, staff, changed, left, pre_id)
    res.notes.append(f"first: {_stats(out1)}; pass: {_stats(out2)}")
    res.notes += _error_samples(out1)
    return res


# --- tool 2: the external-database auth sync --------------------------------------------------

DB_FIELDS = {  # Moodle field -> column of the HR table
    "email": "email",
    "firstname": "firstname",
    "lastname": "lastname",
    "idnumber": "idnumber",
    "institution": "institution",
    "department": "department",
    "phone1": "phone1",
    "city": "city",
    "country": "country",
    "lang": "lang",
    "profile_field_jobtitle": "jobtitle",
}


def _hr_rows(staff: list[Employee]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")

    lines = []
    for e in staff:
        vals = [*person_values(e), e["job_title"]]
        lines.append("\t".join(esc(v) for v in vals))
    return "\n".join(lines) + "\n"


def load_hr_table(env: MoodleEnv, staff: list[Employee]) -> None:
    exists = f"SELECT 1 FROM pg_database WHERE datname = '{HR_DATABASE}'"  # noqa: S608 - constant
    if not psql(env, exists, "postgres"):
        psql(env, f"CREATE DATABASE {HR_DATABASE}", "postgres")
    psql(env, f"DROP TABLE IF EXISTS {HR_TABLE}", HR_DATABASE)
    cols = ", ".join(f"{c} text" for c in ["username", *DB_FIELDS.values()])
    psql(env, f"CREATE TABLE {HR_TABLE} ({cols}, PRIMARY KEY (username))", HR_DATABASE)
    psql(env, f"COPY {HR_TABLE} FROM STDIN", HR_DATABASE, stdin=_hr_rows(staff))


def drop_hr_database(env: MoodleEnv) -> None:
    psql(env, f"DROP DATABASE IF EXISTS {HR_DATABASE} WITH (FORCE)", "postgres")


def configure_auth_db(env: MoodleEnv) -> None:
    settings = {
        "host": f"127.0.0.1:{env.pg_port}",
        "type": "postgres",
        "name": HR_DATABASE,
        "user": "postgres",
        "pass": "",
        "table": HR_TABLE,
        "fielduser": "username",
        "fieldpass": "",
        "passtype": "internal",  # no password column: Moodle keeps (and would create) its own
        "extencoding": "utf-8",
        "removeuser": "1",  # AUTH_REMOVEUSER_SUSPEND
        "updateusers": "1",
    }
    for moodle_field, column in DB_FIELDS.items():
        settings[f"field_map_{moodle_field}"] = column
        settings[f"field_updatelocal_{moodle_field}"] = "onlogin"  # also what the sync updates
        settings[f"field_lock_{moodle_field}"] = "locked"
    for name, value in settings.items():
        cfg(env, name, value, component="auth_db")
    cfg(env, "auth", "email,db")  # enable the plugin


def run_db_sync(
    env: MoodleEnv, staff: list[Employee], changed: list[Employee], left: list[Employee]
) -> NativeResult:
    """auth_db's sync_users.php on an HR table.

    Full load, then the changed rows updated and the leavers' rows deleted.
    """
    reset_moodle(env)
    pre_id = create_preexisting(env, staff[0])
    try:
        load_hr_table(env, staff)
        configure_auth_db(env)
        php(env, "admin/cli/cfg.php", "--name=version")  # warm again after the config changes
        t1, out1 = php(env, "auth/db/cli/sync_users.php", "--verbose")
        n1 = len(moodle_users(env))
        for e in changed:
            title, city, user = _lit(e["job_title"]), _lit(e["city"]), _lit(e["email"].lower())
            sets = f"department = {title}, jobtitle = {title}, city = {city}"
            update = f"UPDATE {HR_TABLE} SET {sets} WHERE username = {user}"  # noqa: S608 - _lit
            psql(env, update, HR_DATABASE)
        gone = ", ".join(_lit(e["email"].lower()) for e in left)
        delete = f"DELETE FROM {HR_TABLE} WHERE username IN ({gone})"  # noqa: S608 - _lit
        psql(env, delete, HR_DATABASE)
        t2, out2 = php(env, "auth/db/cli/sync_users.php", "--verbose")
    finally:
        drop_hr_database(env)
    final = moodle_users(env)
    res = evaluate(
        "auth_db sync_users.php", (t1, t2), (n1, len(final)), final, staff, changed, left, pre_id
    )
    for label, out in (("first", out1), ("pass", out2)):
        interesting = [
            ln.strip()
            for ln in out.splitlines()
            if any(k in ln for k in ("to add", "to remove", "to update", "rror", "duplicate"))
        ]
        res.notes.append(f"{label}: " + "; ".join(interesting[:4]))
    return res


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --- the comparison ---------------------------------------------------------------------------


def markdown(results: list[NativeResult], n: int) -> str:
    def yn(ok: bool) -> str:
        return "yes" if ok else "**no**"

    head = (
        f"| tool ({n} employees) | first load | 1%/1% pass | users after first/pass | missing "
        "| duplicates | changes applied | leavers suspended | case-variant linked |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {r.tool} | {r.first_load_s:.1f} s | {r.pass_s:.1f} s "
        f"| {r.users_after_first}/{r.users_after_pass} | {r.missing} | {r.duplicates} "
        f"| {yn(r.changed_ok)} | {yn(r.suspended_ok)} | {yn(r.case_variant_linked)} |"
        for r in results
    ]
    notes = [f"- {r.tool}: {note}" for r in results for note in r.notes]
    return head + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--port", type=int, default=8083)
    ap.add_argument("--pg-port", type=int, default=5434)
    ap.add_argument("--keep", action="store_true", help="leave the Moodle instance running")
    ap.add_argument("--only", default="csv,csv-email,db", help="comma list: csv,csv-email,db")
    args = ap.parse_args(argv)
    if not (PEER_DIR / "start.sh").exists():
        print(f"Moodle peer not available ({PEER_DIR})", file=sys.stderr)
        return 2
    staff = employees(args.n, args.seed)
    changed, left = pass_changes(staff)
    env = start_moodle(args.port, args.pg_port)
    only = set(args.only.split(","))
    results: list[NativeResult] = []
    try:
        if "csv" in only:
            results.append(run_csv_upload(env, staff, changed, left))
        if "csv-email" in only:
            results.append(run_csv_upload(env, staff, changed, left, match_email=True))
        if "db" in only:
            results.append(run_db_sync(env, staff, changed, left))
    finally:
        if not args.keep:
            stop_moodle(env)
    print(markdown(results, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
