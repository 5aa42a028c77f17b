"""B6: lmsync against a real Moodle 5.0, side by side with what a Moodle admin would use instead.

On the peer of ``shared/peers/moodle`` (its own instance: port 8083, PostgreSQL 5434), with the
same N employees (``moodle_native.employees``) and the same starting point (a pristine site that
holds one manual account whose email is a letter-case variant of an employee's):

* lmsync's first activation, with batches (the default: up to 100 users per call, 4 calls in
  flight) and with one user per call (``batch_size: 1``; 4 in flight, then one after another),
  users/s;
* then a pass where 1% changed (job title, city) and 1% left, as the HR changes reach lmsync
  (a change run of the due employees), and what it got right;
* the termination latency: one employee terminated in lmsync's database → suspended in Moodle,
  measured by the engine's change run (the worker adds its pick-up, ~20 ms p99 on PostgreSQL);
* Moodle's own CSV upload and external-database sync (``moodle_native``), same people.

    .venv/bin/python bench/moodle_b6.py [--n 2000] [--plot bench/results-moodle.png] [--no-native]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import dataset
import moodle_native as native
from dataset import Person
from report import Panel, machine, percentile, plot
from sqlalchemy import select, update

from lmsync.domain.employees import normalize_employee
from lmsync.security import SecretBox
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Employee, LmsLink, utcnow
from lmsync.sync.engine import RunOptions, SyncEngine

LANGUAGES = ["en", "fr", "fr_ca", "es", "de"]


@dataclass
class LmsyncResult:
    label: str
    first_load_s: float
    first_counts: dict[str, int]
    pass_s: float
    pass_counts: dict[str, int]
    users_after: int
    duplicates: int
    suspended_ok: bool
    changed_ok: bool
    case_variant_linked: bool
    termination_ms: list[float]


def person(e: native.Employee) -> Person:
    data = normalize_employee(
        {
            "employee_number": e["employee_number"],
            "first_name": e["first_name"],
            "last_name": e["last_name"],
            "work_email": e["email"],
            "hire_date": dataset.HIRE_DATE,
            "company_name": e["company_name"],
            "job_title": e["job_title"],
            "cell_phone": e["cell_phone"],
            "city": e["city"],
            "country": e["country"],
            "language": e["language"].replace("_", "-"),
        },
        today=utcnow().date(),
    )
    return Person(id=str(uuid.uuid4()), data=data)


def lmsync_run(
    env: native.MoodleEnv,
    staff: list[native.Employee],
    changed: list[native.Employee],
    left: list[native.Employee],
    *,
    batch_size: int,
    label: str,
    terminations: int,
    concurrency: int = 4,
) -> LmsyncResult:
    native.reset_moodle(env)
    native.create_preexisting(env, staff[0])
    persons = [person(e) for e in staff]
    by_number = {p.data.employee_number: p for p in persons}
    with tempfile.TemporaryDirectory(prefix="lmsync-b6-") as tmp:
        url = dataset.sqlite_url(Path(tmp) / "lmsync.sqlite3")
        setup = dataset.build(
            url,
            Path(tmp),
            persons,
            interface={
                "connector": "moodle",
                "base_url": env.url,
                "secret": env.token,
                "options": {
                    "languages": LANGUAGES,
                    "batch_size": batch_size,
                    "max_concurrency": concurrency,
                },
            },
        )
        engine = make_engine(url)
        try:
            sessions = make_session_factory(engine)
            sync = SyncEngine(sessions, SecretBox.from_settings(None, Path(tmp)))
            started = time.perf_counter()
            first = sync.run(
                setup.account_id, RunOptions(trigger="activation", full=True, activating=True)
            )
            first_s = time.perf_counter() - started

            now = utcnow()
            with transaction(sessions) as session:
                for e in changed:
                    session.execute(
                        update(Employee)
                        .where(Employee.id == by_number[e["employee_number"]].id)
                        .values(job_title=e["job_title"], city=e["city"], lms_due_at=now)
                    )
                for e in left:
                    session.execute(
                        update(Employee)
                        .where(Employee.id == by_number[e["employee_number"]].id)
                        .values(
                            termination_date=now.date() - timedelta(days=1),
                            access_ends_at=now - timedelta(seconds=1),
                            lms_due_at=now,
                        )
                    )
            started = time.perf_counter()
            second = sync.run(setup.account_id, RunOptions(trigger="change"))
            pass_s = time.perf_counter() - started
            latencies = _termination_latency(
                env, sync, sessions, setup.account_id, persons, left, terminations
            )
        finally:
            engine.dispose()
    users = native.moodle_users(env)
    return _judged(label, users, staff, changed, left, first, first_s, second, pass_s, latencies)


def _termination_latency(
    env: native.MoodleEnv,
    sync: SyncEngine,
    sessions: Any,
    account_id: str,
    persons: list[Person],
    left: list[native.Employee],
    count: int,
) -> list[float]:
    gone = {e["employee_number"] for e in left}
    targets = [p for p in persons[1:] if p.data.employee_number not in gone][:count]
    out = []
    for target in targets:
        with transaction(sessions) as session:
            link = session.execute(
                select(LmsLink.lms_user_id).where(LmsLink.employee_id == target.id)
            ).scalar_one()
        started = time.perf_counter()
        now = utcnow()
        with transaction(sessions) as session:
            session.execute(
                update(Employee)
                .where(Employee.id == target.id)
                .values(
                    termination_date=now.date(),
                    access_ends_at=now - timedelta(seconds=1),
                    lms_due_at=now,
                )
            )
        sync.run(account_id, RunOptions(trigger="change", terminations_only=True))
        answer = native.ws(
            env,
            "core_user_get_users",
            {"criteria[0][key]": "id", "criteria[0][value]": str(link)},
        )
        assert answer["users"][0]["suspended"] is True, answer
        out.append((time.perf_counter() - started) * 1000)
    return out


def _judged(
    label: str,
    users: list[native.MoodleUser],
    staff: list[native.Employee],
    changed: list[native.Employee],
    left: list[native.Employee],
    first: Any,
    first_s: float,
    second: Any,
    pass_s: float,
    latencies: list[float],
) -> LmsyncResult:
    by_email: dict[str, list[native.MoodleUser]] = {}
    for user in users:
        by_email.setdefault(user.email.casefold(), []).append(user)
    duplicates = sum(len(v) - 1 for v in by_email.values() if len(v) > 1)
    left_emails = {e["email"] for e in left}
    suspended_ok = all(
        all(u.suspended for u in by_email.get(email, [])) and by_email.get(email)
        for email in left_emails
    )
    changed_ok = all(
        any(u.city == e["city"] for u in by_email.get(e["email"], [])) for e in changed
    )
    ann = by_email.get(staff[0]["email"], [])
    return LmsyncResult(
        label,
        first_s,
        dict(first.counts),
        pass_s,
        dict(second.counts),
        len(users),
        duplicates,
        bool(suspended_ok),
        changed_ok,
        len(ann) == 1 and ann[0].username.startswith("legacy."),
        latencies,
    )


def markdown(results: list[LmsyncResult], natives: list[native.NativeResult], n: int) -> str:
    lines = [
        f"B6: first load of {n:,} employees into a real Moodle 5.0.6, then a pass where 1% "
        f"changed and 1% left ({machine()})",
        "",
        "| tool | first load | users/s | 1%/1% pass | no duplicate | case variant linked | "
        "leavers suspended | changes applied |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def mark(ok: bool) -> str:
        return "✅" if ok else "❌"

    for r in results:
        lines.append(
            f"| lmsync, {r.label} | {r.first_load_s:.1f} s | {n / r.first_load_s:.0f} | "
            f"{r.pass_s:.1f} s | {mark(r.duplicates == 0)} | {mark(r.case_variant_linked)} | "
            f"{mark(r.suspended_ok)} | {mark(r.changed_ok)} |"
        )
    for x in natives:
        lines.append(
            f"| {x.tool} | {x.first_load_s:.1f} s | {n / x.first_load_s:.0f} | {x.pass_s:.1f} s "
            f"| {mark(x.duplicates == 0)} | {mark(bool(x.case_variant_linked))} | "
            f"{mark(bool(x.suspended_ok))} | {mark(bool(x.changed_ok))} |"
        )
    for r in results:
        if r.termination_ms:
            ms = sorted(r.termination_ms)
            lines.append("")
            lines.append(
                f"Termination → suspended in Moodle ({r.label}, {len(ms)} terminations, the "
                f"engine's change run): p50 {statistics.median(ms):.0f} ms, p99 "
                f"{percentile(ms, 99):.0f} ms, max {ms[-1]:.0f} ms."
            )
    return "\n".join(lines)


def _latency_text(results: list[LmsyncResult]) -> str:
    for r in results:
        if r.termination_ms:
            ms = sorted(r.termination_ms)
            return (
                f"{len(ms)} terminations, engine change run\n"
                f"p50 {statistics.median(ms):.0f} ms\np99 {percentile(ms, 99):.0f} ms"
            )
    return "not measured"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--no-native", action="store_true")
    parser.add_argument("--terminations", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the Moodle instance running")
    args = parser.parse_args(argv)
    env = native.start_moodle()
    try:
        staff = native.employees(args.n)
        changed, left = native.pass_changes(staff)
        results = [
            lmsync_run(
                env,
                staff,
                changed,
                left,
                batch_size=100,
                label="batches of 100",
                terminations=args.terminations,
            ),
            lmsync_run(
                env,
                staff,
                changed,
                left,
                batch_size=1,
                label="one user per call, 4 at once",
                terminations=0,
            ),
            lmsync_run(
                env,
                staff,
                changed,
                left,
                batch_size=1,
                label="one user per call, one after another",
                terminations=0,
                concurrency=1,
            ),
        ]
        natives: list[native.NativeResult] = []
        if not args.no_native:
            natives = [
                native.run_csv_upload(env, staff, changed, left, match_email=False),
                native.run_csv_upload(env, staff, changed, left, match_email=True),
                native.run_db_sync(env, staff, changed, left),
            ]
    finally:
        if not args.keep:
            native.stop_moodle(env)
    print(markdown(results, natives, args.n))
    if args.plot:
        labels = [f"lmsync {r.label}" for r in results] + [x.tool for x in natives]
        first = [r.first_load_s for r in results] + [x.first_load_s for x in natives]
        passes = [r.pass_s for r in results] + [x.pass_s for x in natives]
        plot(
            args.plot,
            f"B6: {args.n:,} employees into a real Moodle 5.0",
            [
                Panel("B6", "first load", "bars", labels, first, unit="s"),
                Panel("B6", "1% changed + 1% left", "bars", labels, passes, unit="s"),
                Panel("B6", "termination → suspended", "text", text=_latency_text(results)),
            ],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
