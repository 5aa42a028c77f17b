"""Job queue latency and cost benchmarks (issue 11's remaining targets), on PostgreSQL with
``lmsync worker`` processes. Prints a markdown table; ``--plot`` writes a PNG.

    .venv/bin/python bench/queue_latency.py --scenario termination-under-load
    .venv/bin/python bench/queue_latency.py --scenario idle-cost
    .venv/bin/python bench/queue_latency.py --scenario pickup

Every account has an LMS of its own (``bench/lms_tenants.py``: one embedded LMS per tenant in one
process; the big account's in a second process), so an hourly pass reads its own users only. Job
times come from procrastinate's events (the database's clock), copied by a trigger into
``bench_job_events`` because the workers delete finished jobs, and their events with them (the
deletion is recorded too: a job's end). Everything (workers, LMS, PostgreSQL, this script) shares
the machine's cores; each scenario reports how busy the machine was.

- ``termination-under-load``: ``--accounts`` accounts of ``--employees`` employees, activated (set
  up at 0 ms), then the LMS ``--latency-ms`` away. All their hourly passes are made due at once
  (``last_full_pass_at`` an hour back, ``minute_of_hour`` now, and the pass jobs deferred in one
  transaction), and one extra account of ``--big-employees`` starts big work (``--big-kind``: its
  activation, a bulk edit of all its employees, its full pass, or none). Meanwhile
  ``--terminations`` employees, one in each of as many accounts, are terminated effective
  immediately through the HR core (``hr.employees.terminate``, a transaction each, so the due
  hook defers as production does), ``--spacing`` seconds apart. Measured: from each commit to
  the moment the LMS holds the user inactive (recorded by the LMS itself when the write lands:
  no polling delay), split into the wait for a worker (commit → job started), lmsync's run up to
  its write reaching the LMS, and the write in the LMS. ``--big-terminations`` also terminates
  employees of the big account while its bulk edit or pass runs (reported apart).
- ``idle-cost``: ``--idle-accounts`` activated accounts of ``--idle-employees`` employees (seeded
  in the database: interfaces active, links, nothing due, passes 30+ minutes away), then
  ``--workers`` workers left alone; after ``--settle`` seconds, CPU over ``--seconds``: the
  workers', the PostgreSQL backends of the benchmark's database, and the whole PostgreSQL server
  (all databases: other users of a shared server count there).
- ``pickup``: idle workers; ``--jobs`` trivial jobs (``sync_due`` of an account with nothing due)
  deferred one at a time, each in its own committed transaction, 100-200 ms apart; measured from
  the job's ``deferred`` event to its ``started`` event (both the database's clock).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import dataset
import procs
import report
from report import Panel, mark, percentile
from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.accounts import AccountCreateIn
from lmsync.domain.employees import TerminateIn
from lmsync.domain.interface import InterfaceIn
from lmsync.hr import accounts, employees
from lmsync.jobs import due_hook, wiring
from lmsync.jobs.queue import Deferrer
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Employee, LmsInterface, LmsLink, SyncRun, utcnow
from lmsync.sync.engine import RunOptions, SyncEngine
from lmsync.sync.service import SyncService

TOKEN = "bench-queue-token"  # noqa: S105 - the embedded LMS's bearer token
ADMIN_URL = os.environ.get(
    "LMSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SCENARIOS = ("termination-under-load", "idle-cost", "pickup")
TERMINATION_TARGET = 2.0  # p99, seconds
IDLE_TARGET = 1.0  # % of one core
PICKUP_TARGET = 0.1  # p99, seconds
PERIODIC = ("lmsync.hourly_tick", "lmsync.retry_stalled_jobs")
FINISHED = ("succeeded", "partial", "failed", "held", "interrupted")

# procrastinate deletes a succeeded job with its events (delete_jobs="successful"): keep a copy.
EVENTS_DDL = (
    """
    CREATE TABLE bench_job_events (
        id bigserial PRIMARY KEY, job_id bigint, type text, at timestamptz,
        task_name text, account_id text, queue_name text, priority int
    )
    """,
    """
    CREATE FUNCTION bench_copy_event() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO bench_job_events (job_id, type, at, task_name, account_id, queue_name, priority)
        SELECT NEW.job_id, NEW.type::text, NEW.at, j.task_name, j.args->>'account_id',
               j.queue_name, j.priority
        FROM procrastinate_jobs j WHERE j.id = NEW.job_id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER bench_copy_event AFTER INSERT ON procrastinate_events
    FOR EACH ROW EXECUTE FUNCTION bench_copy_event()
    """,
    # A succeeded job is deleted without a "succeeded" event: its deletion is its end.
    """
    CREATE FUNCTION bench_job_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO bench_job_events (job_id, type, at, task_name, account_id, queue_name, priority)
        VALUES (OLD.id, 'deleted', clock_timestamp(), OLD.task_name, OLD.args->>'account_id',
                OLD.queue_name, OLD.priority);
        RETURN OLD;
    END $$
    """,
    """
    CREATE TRIGGER bench_job_deleted AFTER DELETE ON procrastinate_jobs
    FOR EACH ROW EXECUTE FUNCTION bench_job_deleted()
    """,
)


@dataclass
class Row:
    scenario: str
    settings: str
    measure: str
    result: str
    target: str = "—"
    mark: str = ""


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> str:
    return report.seconds(seconds)


def spread(values: list[float], *, p95: bool = True) -> str:
    if not values:
        return "no sample"
    parts = [f"p50 {ms(percentile(values, 50))}"]
    if p95:
        parts.append(f"p95 {ms(percentile(values, 95))}")
    parts += [f"p99 {ms(percentile(values, 99))}", f"max {ms(max(values))}"]
    return " · ".join(parts) + f" (n={len(values)})"


def core_share(cpu: float, wall: float) -> str:
    return f"{cpu:.1f} s CPU in {wall:.0f} s ({cpu / wall * 100:.1f} % of a core)"


class Usage:
    """CPU of the machine and of the PostgreSQL server between ``start()`` and ``stop()``."""

    def start(self) -> Usage:
        self.machine0 = procs.machine_cpu()
        self.pg0 = cpu_by_pid(postgres_pids())
        return self

    def stop(self) -> str:
        busy, total = procs.machine_cpu()
        pg = cpu_delta(self.pg0, cpu_by_pid(postgres_pids()))
        share = (busy - self.machine0[0]) / (total - self.machine0[1]) * 100
        wall = (total - self.machine0[1]) / (os.cpu_count() or 1)
        return (
            f"machine {share:.0f} % busy ({os.cpu_count()} cores); "
            f"PostgreSQL server {pg / wall * 100:.0f} % of a core"
        )


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} (1 / 5 min), nproc {os.cpu_count()}"


# -- the database --------------------------------------------------------------------------


@dataclass
class Db:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]
    deferrer: Deferrer
    service: SyncService

    def now(self) -> datetime:
        with self.sessions() as session:
            value = session.scalar(select(func.now()))
        assert isinstance(value, datetime)
        return value

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.sessions() as session:
            return session.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.sessions() as session:
            return list(session.execute(text(sql), params).all())

    def create_accounts(
        self, count: int, n_employees: int, url_for: Callable[[int], str], prefix: str
    ) -> list[str]:
        """Accounts (user sync on) with an interface each (not active) and their employees."""
        ids: list[str] = []
        for start in range(0, count, 200):
            with transaction(self.sessions) as session:
                for k in range(start, min(count, start + 200)):
                    account = accounts.create_account(
                        session,
                        AccountCreateIn(name=f"{prefix}{k}", company_name=f"{prefix}{k} inc."),
                    )
                    account.user_sync_enabled = True
                    interface = InterfaceIn.model_validate(
                        {"base_url": url_for(k), "auth_type": "bearer", "secret": TOKEN}
                    )
                    self.service.put_interface(session, account.id, interface)
                    ids.append(account.id)
        for k, account_id in enumerate(ids):
            dataset.insert_employees(
                self.sessions, account_id, dataset.people(n_employees, prefix=f"{prefix}{k}E")
            )
        return ids

    def queue_activations(self, account_ids: list[str]) -> None:
        for account_id in account_ids:
            self.service._queue(
                account_id, RunOptions(trigger="activation", full=True, activating=True)
            )

    def wait_runs(self, trigger: str, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self.sessions() as session:
                done = session.scalar(
                    select(func.count()).where(
                        SyncRun.trigger == trigger, SyncRun.status.in_(FINISHED)
                    )
                )
            if (done or 0) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} {trigger} runs did not finish in {timeout:.0f} s")
            time.sleep(0.5)

    def run_statuses(self, trigger: str) -> Counter[str]:
        with self.sessions() as session:
            rows = session.execute(
                select(SyncRun.status, func.count())
                .where(SyncRun.trigger == trigger)
                .group_by(SyncRun.status)
            ).all()
        return Counter({str(status): int(n) for status, n in rows})

    def wait_queue_idle(self, timeout: float = 120.0) -> None:
        """No sync job waiting or running (the periodic tasks aside)."""
        deadline = time.monotonic() + timeout
        while True:
            busy = self.scalar(
                "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                "AND NOT (task_name = ANY(:periodic)) "
                "AND (scheduled_at IS NULL OR scheduled_at <= now())",
                periodic=list(PERIODIC),
            )
            if not busy:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the queue still has {busy} jobs after {timeout:.0f} s")
            time.sleep(0.5)

    def workers_registered(self) -> int:
        return int(self.scalar("SELECT count(*) FROM procrastinate_workers") or 0)


@contextmanager
def database(workdir: Path) -> Iterator[Db]:
    """A scratch database, migrated, its transactions deferring jobs as lmsync's do."""
    with dataset.scratch_postgres(ADMIN_URL) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            with engine.begin() as conn:
                for ddl in EVENTS_DDL:
                    conn.execute(text(ddl))
            sessions = make_session_factory(engine)
            settings = Settings(database_url=url, data_dir=workdir / "data")
            deferrer = wiring.deferrer_for(settings)
            assert deferrer is not None
            wiring.install(sessions, deferrer)
            box = SecretBox.from_settings(None, workdir / "data")
            service = SyncService(sessions, box, SyncEngine(sessions, box), deferrer=deferrer)
            try:
                yield Db(url, engine, sessions, deferrer, service)
            finally:
                service.close()
        finally:
            engine.dispose()


WORKER_APP_NAME = "lmsync-bench-worker"  # libpq's PGAPPNAME: the workers' backends


def worker_env(db: Db, workdir: Path, concurrency: int) -> dict[str, str]:
    return procs.child_env(
        LMSYNC_DATABASE_URL=db.url,
        LMSYNC_DATA_DIR=str(workdir / "data"),
        LMSYNC_WORKER_CONCURRENCY=str(concurrency),
        PGAPPNAME=WORKER_APP_NAME,
    )


@contextmanager
def workers(db: Db, workdir: Path, count: int, concurrency: int) -> Iterator[list[int]]:
    """``count`` ``lmsync worker`` processes; yields their pids once all have registered."""
    children = procs.start_workers(
        count, worker_env(db, workdir, concurrency), workdir / "workers.log"
    )
    try:
        deadline = time.monotonic() + 120
        while db.workers_registered() < count:
            for child in children:
                if child.poll() is not None:
                    tail = (workdir / "workers.log").read_text()[-2000:]
                    raise RuntimeError(f"a worker exited with {child.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not register within 120 s")
            time.sleep(0.2)
        yield [child.pid for child in children]
    finally:
        for child in children:
            procs.stop(child, timeout=40)


def cpu_sum(pids: list[int]) -> float:
    return sum(procs.cpu_of(pid) for pid in pids)


# -- termination under load ----------------------------------------------------------------


@dataclass
class Target:
    account_id: str
    tenant: str
    employee_id: str
    lms_user_id: str
    tx_start: datetime | None = None  # the terminating transaction's now(): its jobs' deferred
    committed: float = 0.0  # time.time() when the commit returned
    inactive: float | None = None  # time.time() the LMS recorded the user inactive
    arrived: float | None = None  # time.time() the deactivating request reached the LMS
    job: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.tenant}/{self.lms_user_id}"


def pick_targets(db: Db, small: list[str], count: int) -> list[Target]:
    chosen = random.Random(20261202).sample(range(len(small)), min(count, len(small)))
    out = []
    with db.sessions() as session:
        for k in chosen:
            account_id = small[k]
            link = session.execute(
                select(LmsLink.employee_id, LmsLink.lms_user_id)
                .where(LmsLink.account_id == account_id, LmsLink.lms_active.is_(True))
                .order_by(LmsLink.employee_id)
                .limit(1)
            ).one()
            out.append(Target(account_id, f"a{k}", str(link[0]), str(link[1])))
    return out


def pick_in_big(db: Db, big: str, count: int) -> list[Target]:
    """``count`` linked employees of the big account."""
    with db.sessions() as session:
        links = session.execute(
            select(LmsLink.employee_id, LmsLink.lms_user_id)
            .where(LmsLink.account_id == big, LmsLink.lms_active.is_(True))
            .order_by(LmsLink.employee_id)
            .limit(count)
        ).all()
    return [Target(big, "big", str(e), str(u)) for e, u in links]


def start_big_work(db: Db, kind: str, big: str) -> None:
    if kind == "activation":
        db.queue_activations([big])
    elif kind == "bulk-edit":
        # An HR change touching every employee: their job title, due now, in one statement; the
        # due hook cannot see a bulk UPDATE, so it is told (as hr.accounts does).
        with transaction(db.sessions) as session:
            now = utcnow()
            session.execute(
                update(Employee)
                .where(Employee.account_id == big)
                .values(job_title="Reorganized", updated_at=now, lms_due_at=now)
                .execution_options(synchronize_session=False)
            )
            due_hook.note_due(session, big)
    # "pass": its pass is deferred with the others'.


def make_passes_due(db: Db, account_ids: list[str]) -> None:
    """Every pass due now (an hour since the last, the minute of the hour now), deferred at once."""
    with transaction(db.sessions) as session:
        now = utcnow()
        session.execute(
            update(LmsInterface)
            .where(LmsInterface.account_id.in_(account_ids))
            .values(minute_of_hour=now.minute, last_full_pass_at=now - timedelta(hours=1))
        )
        db.deferrer.full_pass(session, account_ids)


def terminate(db: Db, target: Target) -> None:
    with transaction(db.sessions) as session:
        target.tx_start = session.scalar(select(func.now()))
        employees.terminate(
            session,
            None,
            target.account_id,
            target.employee_id,
            TerminateIn(termination_date=utcnow().date(), effective_immediately=True),
        )
    target.committed = time.time()


def job_times(db: Db, targets: list[Target]) -> None:
    """For each termination, the job its transaction deferred (same now()), or the waiting job
    it joined, and when that started."""
    for target in targets:
        rows = db.rows(
            "SELECT d.job_id, d.task_name, d.queue_name, d.priority, "
            "       extract(epoch FROM s.at) AS started "
            "FROM bench_job_events d "
            "LEFT JOIN bench_job_events s ON s.job_id = d.job_id AND s.type = 'started' "
            "WHERE d.type = 'deferred' AND d.account_id = :account AND d.at = :at "
            "ORDER BY d.job_id",
            account=target.account_id,
            at=target.tx_start,
        )
        collapsed = not rows
        if collapsed:  # a job of the same queueing lock was waiting: this one joined it
            rows = db.rows(
                "SELECT job_id, task_name, queue_name, priority, "
                "       extract(epoch FROM at) AS started "
                "FROM bench_job_events WHERE type = 'started' AND account_id = :account "
                "AND at >= :at AND task_name <> 'lmsync.sync_pass' ORDER BY at LIMIT 1",
                account=target.account_id,
                at=target.tx_start,
            )
        if rows:
            row = rows[0]
            target.job = {
                "task": row.task_name,
                "queue": row.queue_name,
                "priority": row.priority,
                "started": None if row.started is None else float(row.started),
                "jobs": len(rows),
                "collapsed": collapsed,
            }
        run = db.rows(
            "SELECT trigger, status, extract(epoch FROM started_at) AS s, "
            "extract(epoch FROM finished_at) AS f FROM sync_runs "
            "WHERE account_id = :account AND trigger <> 'hourly' AND started_at >= :at "
            "ORDER BY started_at LIMIT 1",
            account=target.account_id,
            at=target.tx_start,
        )
        if run:
            target.job["run"] = {
                "trigger": run[0].trigger,
                "status": run[0].status,
                "started": round(float(run[0].s) - target.committed, 3),
                "finished": None
                if run[0].f is None
                else round(float(run[0].f) - target.committed, 3),
            }


def pass_windows(db: Db) -> dict[str, tuple[float, float | None]]:
    """Each account's pass job, while it held the account's lock: (started, ended) as epoch
    seconds (ended: the job's deletion, or failure)."""
    rows = db.rows(
        "SELECT s.account_id, extract(epoch FROM s.at) AS s, extract(epoch FROM min(e.at)) AS e "
        "FROM bench_job_events s LEFT JOIN bench_job_events e ON e.job_id = s.job_id "
        "AND e.type IN ('deleted', 'failed', 'aborted') "
        "WHERE s.type = 'started' AND s.task_name = 'lmsync.sync_pass' GROUP BY 1, 2"
    )
    return {r.account_id: (float(r.s), None if r.e is None else float(r.e)) for r in rows}


def pass_runs(db: Db) -> dict[str, float | None]:
    """Each account's hourly pass run: when it finished (epoch seconds), None while running."""
    rows = db.rows(
        "SELECT account_id, extract(epoch FROM finished_at) AS f FROM sync_runs "
        "WHERE trigger = 'hourly'"
    )
    return {r.account_id: None if r.f is None else float(r.f) for r in rows}


def termination_under_load(args: argparse.Namespace, workdir: Path) -> Outcome:
    n_workers = args.workers or 3
    settings = (
        f"{args.accounts} accounts × {args.employees}, LMS {args.latency_ms:.0f} ms away, "
        f"{n_workers} workers × {args.concurrency}, big {args.big_kind} "
        f"{args.big_employees:,}, {args.terminations} terminations {args.spacing:g} s apart"
    )
    log(f"termination-under-load: {settings}")
    # The big account's LMS in a process of its own: its 1,000-user pages would otherwise hold
    # up the small accounts' requests in one event loop (a rig artefact, not lmsync's).
    lms = procs.start_lms_tenants(workdir, TOKEN, name="lms-termination")
    lms_big = procs.start_lms_tenants(workdir, TOKEN, name="lms-big")
    both = (lms, lms_big)

    def lms_of(target: Target) -> procs.TenantLms:
        return lms_big if target.tenant == "big" else lms

    try:
        with database(workdir) as db:
            began = time.perf_counter()
            small = db.create_accounts(
                args.accounts, args.employees, lambda k: lms.url(f"a{k}"), "A"
            )
            big = None
            if args.big_kind != "none":
                big = db.create_accounts(
                    1, args.big_employees, lambda k: lms_big.url("big"), "BIG"
                )[0]
            activate = small + ([big] if big and args.big_kind != "activation" else [])
            db.queue_activations(activate)
            log(f"data in {time.perf_counter() - began:.0f} s; activating {len(activate)} accounts")
            with workers(db, workdir, n_workers, args.concurrency) as pids:
                db.wait_runs("activation", len(activate), timeout=args.timeout)
                statuses = db.run_statuses("activation")
                if set(statuses) != {"succeeded"}:
                    raise RuntimeError(f"activations ended {dict(statuses)}")
                db.wait_queue_idle()
                log(f"set-up done in {time.perf_counter() - began:.0f} s; LMS now far away")
                for one in both:
                    one.set_latency(args.latency_ms)
                targets = pick_targets(db, small, args.terminations)
                window = args.start_after + len(targets) * args.spacing
                schedule = [(args.start_after + i * args.spacing, t) for i, t in enumerate(targets)]
                in_big: list[Target] = []
                if big is not None and args.big_kind in ("bulk-edit", "pass"):
                    in_big = pick_in_big(db, big, args.big_terminations)
                    schedule += [
                        (window * (j + 1) / (len(in_big) + 1), t) for j, t in enumerate(in_big)
                    ]
                schedule.sort(key=lambda item: item[0])
                for _, target in schedule:
                    lms_of(target).watch([target.key])
                for one in both:
                    one.reset_stats()
                lms_cpu0 = [one.cpu_seconds() for one in both]
                cpu0, usage = cpu_sum(pids), Usage().start()
                passes = small + ([big] if big and args.big_kind == "pass" else [])
                t_load = time.time()
                make_passes_due(db, passes)
                if big is not None:
                    start_big_work(db, args.big_kind, big)
                log(f"{len(passes)} passes due, big {args.big_kind} started; terminating")
                for offset, target in schedule:
                    pause = t_load + offset - time.time()
                    if pause > 0:
                        time.sleep(pause)
                    terminate(db, target)
                deadline = time.time() + args.sample_timeout
                while True:
                    seen = lms.inactive_at() | lms_big.inactive_at()
                    if all(t.key in seen for _, t in schedule) or time.time() > deadline:
                        break
                    time.sleep(0.2)
                t_end = time.time()
                cpu = cpu_sum(pids) - cpu0
                lms_cpu = [one.cpu_seconds() - c for one, c in zip(both, lms_cpu0, strict=True)]
                machine = usage.stop()
                arrived = lms.arrived_at() | lms_big.arrived_at()
                for _, target in schedule:
                    target.inactive = seen.get(target.key)
                    target.arrived = arrived.get(target.key)
                job_times(db, [t for _, t in schedule])
                with contextlib.suppress(RuntimeError):  # reported as passes not done
                    db.wait_runs("hourly", len(passes), timeout=args.drain_timeout)
                windows = pass_windows(db)
                runs = pass_runs(db)
                big_run = big and db.rows(
                    "SELECT trigger, status, progress_done, progress_total, "
                    "extract(epoch FROM started_at) AS s FROM sync_runs "
                    "WHERE account_id = :a ORDER BY started_at DESC LIMIT 1",
                    a=big,
                )
                stats = lms.stats()
                big_writes = lms_big.tenant_stats("big")["writes"] if big else 0
                not_inactive = [
                    t.key
                    for t in targets
                    if (lms_of(t).user(t.tenant, t.lms_user_id) or {}).get("active") is not False
                ]
    finally:
        for one in both:
            procs.stop(one.proc)

    wall = t_end - t_load
    samples = [t.inactive - t.committed for t in targets if t.inactive is not None]
    missing = len(targets) - len(samples)
    waits = [t.job["started"] - t.committed for t in targets if t.job.get("started")]
    to_lms = [
        t.arrived - t.job["started"]
        for t in targets
        if t.arrived is not None and t.job.get("started")
    ]
    in_lms = [
        t.inactive - t.arrived for t in targets if t.inactive is not None and t.arrived is not None
    ]
    finished = [f for f in runs.values() if f is not None]
    passes_done = len(finished)
    passes_in_window = sum(1 for f in finished if f <= t_end)
    drained = max(finished) - t_load if passes_done == len(passes) and finished else None

    def pass_running(t: Target) -> bool:
        """The account's pass job held its lock when the termination committed."""
        began, ended = windows.get(t.account_id, (float("inf"), None))
        return began <= t.committed < (ended or float("inf"))

    own_pass = [t for t in targets if pass_running(t)]
    own_latency = [t.inactive - t.committed for t in own_pass if t.inactive is not None]
    p99 = percentile(samples, 99) if samples else float("inf")
    ok = missing == 0 and p99 <= TERMINATION_TARGET
    result = spread(samples) + (f"; {missing} not inactive in time" if missing else "")
    rows = [
        Row(
            "termination-under-load",
            settings,
            "terminate (commit) → LMS user inactive (recorded by the LMS)",
            result,
            "p99 ≤ 2 s",
            mark(ok),
        ),
        Row("", "", "of which commit → job started (queue wait)", spread(waits)),
        Row("", "", "of which job started → the write reaches the LMS", spread(to_lms)),
        Row(
            "",
            "",
            f"of which the write in the LMS ({args.latency_ms:.0f} ms latency + its queue)",
            spread(in_lms),
        ),
        Row(
            "",
            "",
            "terminations whose account's own pass job was running at the commit",
            f"{len(own_pass)} of {len(targets)}"
            + (f" (their latency: {spread(own_latency, p95=False)})" if own_pass else ""),
        ),
        Row(
            "",
            "",
            "the load",
            f"{passes_in_window} of {len(passes)} passes done in the window, "
            + (
                f"all {drained:.1f} s after they became due"
                if drained
                else f"{passes_done} after {args.drain_timeout:.0f} s more"
            )
            + "; big "
            + (
                f"{big_run[0].trigger} run {big_run[0].status} at the end, "
                f"{big_writes:,} LMS writes in the window"
                if big_run
                else f"{args.big_kind}: no run"
            )
            + f"; small accounts' LMS requests {sum(stats['requests'].values()):,}, "
            f"writes {stats['writes']:,}",
        ),
        Row(
            "",
            "",
            "CPU during the window (commits + until the last user inactive)",
            f"workers {core_share(cpu, wall)}; LMS of the small accounts "
            f"{core_share(lms_cpu[0], wall)}, of the big one {core_share(lms_cpu[1], wall)}; "
            f"{machine}; "
            f"{load_note()}",
        ),
    ]
    if in_big:
        rows.append(
            Row(
                "",
                "",
                f"terminations in the big account itself, during its {args.big_kind} "
                "(not in the figures above)",
                "; ".join(
                    f"at +{t.committed - t_load:.0f} s: "
                    + (
                        ms(t.inactive - t.committed)
                        if t.inactive is not None
                        else f"not inactive after {t_end - t.committed:.0f} s"
                    )
                    + (
                        f" (job started after {ms(t.job['started'] - t.committed)}"
                        + ("; its pass was running" if pass_running(t) else "")
                        + ("; joined a waiting job" if t.job.get("collapsed") else "")
                        + ")"
                        if t.job.get("started")
                        else " (job not started)"
                    )
                    for t in in_big
                ),
            )
        )
    if not_inactive:
        rows.append(
            Row("", "", "users still active in the LMS at the end", ", ".join(not_inactive))
        )
    tasks = Counter(f"{t.job.get('task')} (queue {t.job.get('queue')})" for t in targets)

    def sample(t: Target) -> dict[str, Any]:
        return {
            "account": t.account_id,
            "tenant": t.tenant,
            "at": round(t.committed - t_load, 3),
            "latency": None if t.inactive is None else round(t.inactive - t.committed, 3),
            "wait": round(t.job["started"] - t.committed, 3) if t.job.get("started") else None,
            "own_pass_running": pass_running(t),
            "arrived": None if t.arrived is None else round(t.arrived - t.committed, 3),
            **{k: v for k, v in t.job.items() if k != "started"},
        }

    details = {
        "settings": settings,
        "tasks": dict(tasks),
        "samples": [sample(t) for t in targets],
        "in_big": [sample(t) for t in in_big],
        "big_pass_job": [
            None if v is None else round(v - t_load, 3) for v in windows.get(big or "", ())
        ],
    }
    panel = Panel(
        "termination-under-load",
        f"terminate → LMS inactive ({args.accounts} passes + big {args.big_kind})",
        "latency",
        values=samples,
        target=TERMINATION_TARGET,
        target_label="p99 ≤ 2 s",
    )
    return Outcome(rows, [panel], details)


# -- idle cost -----------------------------------------------------------------------------


def seed_idle(db: Db, n_accounts: int, n_employees: int, lms_url: str) -> list[str]:
    """Activated accounts with nothing to do, written directly: active interfaces whose last
    full pass is now (the next is 30 to 90 minutes away), employees linked, nothing due."""
    ids = db.create_accounts(n_accounts, 0, lambda k: lms_url, "I")
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for k, account_id in enumerate(ids):
        for person in dataset.people(n_employees, prefix=f"I{k}E"):
            rows.append({"id": person.id, "account_id": account_id, **asdict(person.data)})
    with transaction(db.sessions) as session:
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            session.execute(
                insert(Employee),
                [{**r, "created_at": now, "updated_at": now, "lms_due_at": None} for r in chunk],
            )
            session.execute(
                insert(LmsLink),
                [
                    {
                        "employee_id": r["id"],
                        "account_id": r["account_id"],
                        "lms_user_id": uuid.uuid4().hex,
                        "made_by": "created",
                        "lms_active": True,
                        "written": {},
                        "linked_at": now,
                        "synced_at": now,
                    }
                    for r in chunk
                ],
            )
        session.execute(
            update(LmsInterface).values(active=True, activated_at=now, last_full_pass_at=now)
        )
    return ids


def postgres_pids() -> list[int]:
    """Every process of the PostgreSQL server on this machine (``comm`` is ``postgres``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := procs.cpu_of(pid)) == cpu}  # not NaN


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between the two readings by the processes alive at the second (new ones from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def idle_cost(args: argparse.Namespace, workdir: Path) -> Outcome:
    n_workers = args.workers or 1
    settings = (
        f"{args.idle_accounts:,} accounts × {args.idle_employees}, activated, nothing due, "
        f"{n_workers} worker(s) × {args.concurrency}, {args.seconds:g} s after {args.settle:g} s"
    )
    log(f"idle-cost: {settings}")
    lms = procs.start_lms_tenants(workdir, TOKEN, name="lms-idle")
    try:
        with database(workdir) as db:
            began = time.perf_counter()
            seed_idle(db, args.idle_accounts, args.idle_employees, lms.url("idle"))
            log(f"seeded in {time.perf_counter() - began:.0f} s")
            datname = db.scalar("SELECT current_database()")
            own_sql = (
                "SELECT pid FROM pg_stat_activity WHERE datname = :d AND application_name = :a"
            )
            with workers(db, workdir, n_workers, args.concurrency) as pids:
                time.sleep(args.settle)
                lms.reset_stats()
                backends = [int(r.pid) for r in db.rows(own_sql, d=datname, a=WORKER_APP_NAME)]
                server_before = cpu_by_pid(postgres_pids())
                own_before = {p: server_before.get(p, 0.0) for p in backends}
                xact0 = db.scalar(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d",
                    d=datname,
                )
                events_from = db.now()
                cpu0, t0 = cpu_sum(pids), time.time()
                machine0 = procs.machine_cpu()
                time.sleep(args.seconds)
                cpu, wall = cpu_sum(pids) - cpu0, time.time() - t0
                machine1 = procs.machine_cpu()
                server_after = cpu_by_pid(postgres_pids())
                backends = sorted(
                    set(backends)
                    | {int(r.pid) for r in db.rows(own_sql, d=datname, a=WORKER_APP_NAME)}
                )
                own_after = {p: server_after[p] for p in backends if p in server_after}
                xact1 = db.scalar(
                    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d",
                    d=datname,
                )
                jobs = db.rows(
                    "SELECT task_name, count(*) AS n FROM bench_job_events "
                    "WHERE type = 'started' AND at >= :t GROUP BY 1 ORDER BY 1",
                    t=events_from,
                )
                stats = lms.stats()
    finally:
        procs.stop(lms.proc)
    own = cpu_delta(own_before, own_after)
    server = cpu_delta(server_before, server_after)
    worker_share = cpu / wall * 100
    total_share = (cpu + own) / wall * 100
    jobs_text = ", ".join(f"{r.task_name} {r.n}" for r in jobs) or "none"
    rows = [
        Row(
            "idle-cost",
            settings,
            "workers' CPU",
            f"{core_share(cpu, wall)} ({worker_share / n_workers:.2f} % per worker)",
            "< 1 % of a core",
            mark(worker_share < IDLE_TARGET),
        ),
        Row(
            "",
            "",
            "+ PostgreSQL backends of the workers (this database)",
            f"{core_share(own, wall)}; together {total_share:.2f} % of a core",
            "< 1 % of a core",
            mark(total_share < IDLE_TARGET),
        ),
        Row(
            "",
            "",
            "whole PostgreSQL server (all databases; shared machine)",
            core_share(server, wall),
        ),
        Row(
            "",
            "",
            "what ran",
            f"{(xact1 - xact0) / wall:.1f} transactions/s in this database; jobs started: "
            f"{jobs_text}; LMS requests {sum(stats['requests'].values())}; machine "
            f"{(machine1[0] - machine0[0]) / (machine1[1] - machine0[1]) * 100:.0f} % busy; "
            f"{load_note()}",
        ),
    ]
    panel = Panel(
        "idle-cost",
        f"idle: {args.idle_accounts:,} accounts, {n_workers} worker(s)",
        "bars",
        labels=["workers", "+ their PG backends", "PG server (all)"],
        values=[worker_share, total_share, server / wall * 100],
        unit="% of one core",
        target=IDLE_TARGET,
        target_label="< 1 %",
    )
    details = {"settings": settings, "backends": backends, "jobs": {r.task_name: r.n for r in jobs}}
    return Outcome(rows, [panel], details)


# -- pickup --------------------------------------------------------------------------------


def pickup(args: argparse.Namespace, workdir: Path) -> Outcome:
    n_workers = args.workers or 1
    settings = (
        f"{args.jobs} sync_due jobs (nothing due) deferred 100-200 ms apart, "
        f"{n_workers} idle worker(s) × {args.concurrency}"
    )
    log(f"pickup: {settings}")
    with database(workdir) as db:
        ids = db.create_accounts(10, 0, lambda k: "http://127.0.0.1:9/v2", "P")
        rng = random.Random(20261202)
        with workers(db, workdir, n_workers, args.concurrency) as pids:
            time.sleep(args.settle)
            deferred: list[tuple[str, datetime, float]] = []
            cpu0, t0, usage = cpu_sum(pids), time.time(), Usage().start()
            for i in range(args.jobs):
                time.sleep(rng.uniform(0.1, 0.2))
                account_id = ids[i % len(ids)]
                with transaction(db.sessions) as session:
                    tx = session.scalar(select(func.now()))
                    assert tx is not None
                    db.deferrer.due(session, [account_id])
                deferred.append((account_id, tx, time.time()))
            deadline = time.time() + 60
            while True:
                started = db.scalar(
                    "SELECT count(*) FROM bench_job_events WHERE type = 'started' "
                    "AND task_name = 'lmsync.sync_due'"
                )
                if started >= args.jobs or time.time() > deadline:
                    break
                time.sleep(0.2)
            cpu, wall = cpu_sum(pids) - cpu0, time.time() - t0
            machine = usage.stop()
            rows = db.rows(
                "SELECT d.account_id, d.at AS deferred_at, extract(epoch FROM d.at) AS d, "
                "extract(epoch FROM s.at) AS s FROM bench_job_events d "
                "JOIN bench_job_events s ON s.job_id = d.job_id AND s.type = 'started' "
                "WHERE d.type = 'deferred' AND d.task_name = 'lmsync.sync_due'"
            )
    by_tx = {(r.account_id, r.deferred_at): r for r in rows}
    db_clock: list[float] = []
    from_commit: list[float] = []
    for account_id, tx, committed in deferred:
        row = by_tx.get((account_id, tx))
        if row is not None:
            db_clock.append(float(row.s) - float(row.d))
            from_commit.append(float(row.s) - committed)
    missing = args.jobs - len(db_clock)
    p99 = percentile(db_clock, 99) if db_clock else float("inf")
    ok = missing == 0 and p99 <= PICKUP_TARGET
    rows_out = [
        Row(
            "pickup",
            settings,
            "deferred → started (procrastinate events, database clock)",
            spread(db_clock, p95=False) + (f"; {missing} not started" if missing else ""),
            "p99 ≤ 100 ms",
            mark(ok),
        ),
        Row("", "", "commit returned → started", spread(from_commit, p95=False)),
        Row(
            "",
            "",
            "workers' CPU during the run",
            f"{core_share(cpu, wall)}; {machine}; {load_note()}",
        ),
    ]
    panel = Panel(
        "pickup",
        f"deferred → started ({n_workers} idle worker(s))",
        "latency",
        values=db_clock,
        target=PICKUP_TARGET,
        target_label="p99 ≤ 100 ms",
    )
    return Outcome(rows_out, [panel], {"settings": settings, "missing": missing})


# -- main ----------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    def cell(value: str) -> str:
        return value.replace("|", "\\|")

    lines = [
        "| scenario | settings | measure | result | target | |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {cell(r.scenario)} | {cell(r.settings)} | {cell(r.measure)} | {cell(r.result)} "
            f"| {cell(r.target)} | {r.mark} |"
        )
    return "\n".join(lines)


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], Outcome]] = {
    "termination-under-load": termination_under_load,
    "idle-cost": idle_cost,
    "pickup": pickup,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="repeatable (default: all three)"
    )
    parser.add_argument("--workers", type=int, help="default: 3 under load, 1 otherwise")
    parser.add_argument("--concurrency", type=int, default=2, help="LMSYNC_WORKER_CONCURRENCY")
    group = parser.add_argument_group("termination-under-load")
    group.add_argument("--accounts", type=int, default=200)
    group.add_argument("--employees", type=int, default=50)
    group.add_argument("--latency-ms", type=float, default=200.0)
    group.add_argument(
        "--big-kind", choices=("activation", "bulk-edit", "pass", "none"), default="activation"
    )
    group.add_argument("--big-employees", type=int, default=20000)
    group.add_argument("--terminations", type=int, default=50)
    group.add_argument("--spacing", type=float, default=0.5, help="seconds between terminations")
    group.add_argument("--start-after", type=float, default=1.0, help="first termination, s")
    group.add_argument(
        "--big-terminations",
        type=int,
        default=0,
        help="also terminate this many employees of the big account (bulk-edit, pass)",
    )
    group.add_argument("--sample-timeout", type=float, default=120.0)
    group.add_argument("--timeout", type=float, default=1800.0, help="set-up (activations)")
    group.add_argument(
        "--drain-timeout", type=float, default=300.0, help="wait for the passes after the window"
    )
    group = parser.add_argument_group("idle-cost")
    group.add_argument("--idle-accounts", type=int, default=2000)
    group.add_argument("--idle-employees", type=int, default=2)
    group.add_argument("--seconds", type=float, default=60.0)
    group.add_argument("--settle", type=float, default=15.0, help="also before pickup")
    group = parser.add_argument_group("pickup")
    group.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--plot", type=Path, help="write a PNG here")
    parser.add_argument("--details", type=Path, help="write per-sample details (JSON) here")
    args = parser.parse_args()
    reason = dataset.postgres_reachable(ADMIN_URL)
    if reason is not None:
        raise SystemExit(f"PostgreSQL is needed: {reason}")
    chosen = args.scenario or list(SCENARIOS)
    outcomes: dict[str, Outcome] = {}
    with TemporaryDirectory(prefix="lmsync-queue-latency-") as tmp:
        for name in chosen:
            workdir = Path(tmp) / name
            workdir.mkdir()
            try:
                outcomes[name] = RUNNERS[name](args, workdir)
            except BaseException:
                for log_file in sorted(workdir.glob("*.log")):
                    tail = log_file.read_text(errors="replace")[-3000:]
                    print(f"--- {log_file.name} ---\n{tail}", file=sys.stderr)
                raise
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{report.machine()} · {started}\n")
    print(table([row for o in outcomes.values() for row in o.rows]))
    if args.details:
        args.details.write_text(
            json.dumps({k: o.details for k, o in outcomes.items()}, indent=1, default=str)
        )
    if args.plot:
        panels = [p for o in outcomes.values() for p in o.panels]
        report.plot(args.plot, f"Job queue latency and cost · {report.machine()}", panels)


if __name__ == "__main__":
    main()
