"""Scale-out benchmark (issue 11): first activations of many accounts carried out by 1 and then
by N ``lmsync worker`` processes on the PostgreSQL job queue, the LMS far away (so that neither
side's CPU is the limit on a small machine). Prints a table; ``--plot`` writes a bar chart.

    .venv/bin/python bench/queue_scaling.py --accounts 200 --employees 50 --latency-ms 200

Each round: a fresh database, ``--accounts`` accounts of ``--employees`` employees each (no LMS
user yet: every employee is created), one activation queued per account, then the workers are
started and the clock runs until every activation run has finished. CPU is the workers' own
(user + system, from ``/proc``), beside the wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import dataset
import procs
from sqlalchemy import func, select

from lmsync.domain.accounts import AccountCreateIn
from lmsync.domain.interface import InterfaceIn
from lmsync.hr import accounts
from lmsync.jobs import wiring
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import SyncRun
from lmsync.sync.engine import RunOptions, SyncEngine
from lmsync.sync.service import SyncService

TOKEN = "bench-queue-token"  # noqa: S105 - the embedded LMS's bearer token
ADMIN_URL = os.environ.get(
    "LMSYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Round:
    workers: int
    accounts: int
    employees: int
    seconds: float
    cpu_seconds: float

    @property
    def accounts_per_minute(self) -> float:
        return self.accounts * 60 / self.seconds


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(args: argparse.Namespace, workers: int, workdir: Path) -> Round:
    lms = procs.start_lms(
        workdir, TOKEN, nodelay=False, name=f"lms-{workers}", latency_ms=args.latency_ms
    )
    try:
        with dataset.scratch_postgres(ADMIN_URL) as url:
            queue_activations(url, workdir, lms.base_url, args.accounts, args.employees)
            env = procs.child_env(
                LMSYNC_DATABASE_URL=url,
                LMSYNC_DATA_DIR=str(workdir / "data"),
                LMSYNC_WORKER_CONCURRENCY=str(args.concurrency),
            )
            started = time.perf_counter()
            with (workdir / f"workers-{workers}.log").open("ab") as log:
                children = [
                    procs.spawn([sys.executable, "-m", "lmsync", "worker"], log=log, env=env)
                    for _ in range(workers)
                ]
            try:
                wait_all_finished(url, args.accounts, timeout=args.timeout)
                seconds = time.perf_counter() - started
                cpu = sum(cpu_of(child.pid) for child in children)
            finally:
                for child in children:
                    procs.stop(child)
    finally:
        procs.stop(lms.proc)
    return Round(workers, args.accounts, args.employees, seconds, cpu)


def queue_activations(
    url: str, workdir: Path, lms_url: str, n_accounts: int, n_employees: int
) -> None:
    """The accounts, their employees and interfaces, and one queued activation each (a job)."""
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        settings = Settings(database_url=url, data_dir=workdir / "data")
        deferrer = wiring.deferrer_for(settings)
        wiring.install(sessions, deferrer)
        box = SecretBox.from_settings(None, workdir / "data")
        service = SyncService(sessions, box, SyncEngine(sessions, box), deferrer=deferrer)
        interface = InterfaceIn.model_validate(
            {"base_url": lms_url, "auth_type": "bearer", "secret": TOKEN}
        )
        ids = []
        for k in range(n_accounts):
            with transaction(sessions) as session:
                account = accounts.create_account(
                    session, AccountCreateIn(name=f"A{k}", company_name=f"A{k} inc.")
                )
                account.user_sync_enabled = True
                service.put_interface(session, account.id, interface)
                ids.append(account.id)
            persons = dataset.people(n_employees, prefix=f"A{k}E")
            dataset.insert_employees(sessions, account.id, persons)
        # Activate's connection test, once (at 200 ms a request, once per account would take
        # minutes of set-up); then one queued activation (a job) per account.
        service.check_lms(ids[0])
        for account_id in ids:
            options = RunOptions(trigger="activation", full=True, activating=True)
            service._queue(account_id, options)
        service.close()
    finally:
        engine.dispose()


def wait_all_finished(url: str, n: int, *, timeout: float) -> None:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with sessions() as session:
                done = session.scalar(
                    select(func.count()).where(
                        SyncRun.trigger == "activation",
                        SyncRun.status.in_(("succeeded", "partial", "failed")),
                    )
                )
            if (done or 0) >= n:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the activations did not finish in {timeout:.0f} s")
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--employees", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=3, help="the second round's processes")
    parser.add_argument("--concurrency", type=int, default=2, help="LMSYNC_WORKER_CONCURRENCY")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--plot", type=Path, help="write a bar chart (PNG) here")
    args = parser.parse_args()
    reason = dataset.postgres_reachable(ADMIN_URL)
    if reason is not None:
        raise SystemExit(f"PostgreSQL is needed: {reason}")
    rounds = []
    with TemporaryDirectory(prefix="lmsync-queue-bench-") as tmp:
        for workers in (1, args.workers):
            print(f"round: {workers} worker process(es)...", file=sys.stderr, flush=True)
            rounds.append(one_round(args, workers, Path(tmp)))
    print(
        f"\n{args.accounts} accounts × {args.employees} employees, LMS {args.latency_ms:.0f} ms "
        f"away, concurrency {args.concurrency} per worker\n"
    )
    print("| workers | wall (s) | accounts / min | worker CPU (s) | vs 1 worker |")
    print("|---|---|---|---|---|")
    base = rounds[0].accounts_per_minute
    for r in rounds:
        print(
            f"| {r.workers} | {r.seconds:.1f} | {r.accounts_per_minute:.1f} | "
            f"{r.cpu_seconds:.1f} | {r.accounts_per_minute / base:.2f}× |"
        )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar([str(r.workers) for r in rounds], [r.accounts_per_minute for r in rounds])
        ax.set_xlabel("worker processes")
        ax.set_ylabel("activations per minute")
        ax.set_title(f"{args.accounts} × {args.employees}, LMS {args.latency_ms:.0f} ms away")
        fig.tight_layout()
        fig.savefig(args.plot)


if __name__ == "__main__":
    main()
