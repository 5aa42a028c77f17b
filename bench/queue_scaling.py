"""Scale-out benchmark (issue 11): many accounts synced by 1 and then by N ``lmsync worker``
processes on the PostgreSQL job queue, the LMS far away, on activation and on the hourly passes,
with the CPU it cost. Prints markdown tables; ``--plot`` writes a bar chart.

    .venv/bin/python bench/queue_scaling.py --accounts 200 --employees 50 --latency-ms 200 \\
        --workers 3 --concurrency 2 --plot bench/results-queue.png

The target: 200 accounts × 50 employees, the LMS 200 ms away, 1 worker process against 3 with
the same settings: ≥ 2.5× accounts per minute with 3, on activation and on the hourly passes,
CPU use reported beside it; each account's hourly pass runs exactly once per hour whatever the
number of workers.

Each round (1 worker process, then ``--workers``), from scratch: a fresh database; ``--accounts``
accounts of ``--employees`` employees, each with an LMS of its own (a tenant of
``bench/lms_tenants.py``, one process for all: an hourly pass reads its own account's users
only); the connection test once, at 0 ms (set-up); the workers started and registered, idle;
then the LMS ``--latency-ms`` away and two timed phases, the same worker processes throughout:

1. activation: one queued activation (a run and its job) per account, all committed in one
   transaction; the clock runs from the commit until every activation run has finished (its
   ``finished_at``; every employee is created in the LMS);
2. hourly pass: every account's pass made due at once (``last_full_pass_at`` an hour back,
   ``minute_of_hour`` now's) and the pass jobs deferred in one transaction
   (``Deferrer.full_pass``, as the minute's tick does); the clock runs until every account has
   a finished ``hourly`` run. Then the round waits for the workers' periodic ``hourly_tick`` to
   run at least once more, plus ``--settle`` seconds, and counts each account's hourly runs:
   exactly one each is the target.

CPU (user + system, from ``/proc``) over each phase: the worker processes', the LMS process's,
the PostgreSQL server's (all its processes), and how busy the whole machine was.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from tempfile import TemporaryDirectory

import dataset
import procs
import report
from queue_latency import (
    ADMIN_URL,
    FINISHED,
    TOKEN,
    Db,
    cpu_by_pid,
    cpu_delta,
    cpu_sum,
    database,
    log,
    make_passes_due,
    postgres_pids,
    worker_env,
)

from lmsync.storage.database import transaction
from lmsync.sync.engine import RunOptions

SPEEDUP_TARGET = 2.5
TICK_TASK = "lmsync.hourly_tick"
PHASES = ("activation", "hourly pass")


@dataclass
class Phase:
    workers: int
    name: str  # one of PHASES
    accounts: int
    seconds: float
    worker_cpu: float
    lms_cpu: float
    pg_cpu: float
    machine_busy: float  # % of all the machine's cores (steal included: not ours to use)
    steal: float  # % of all the machine's cores taken by the hypervisor (a VM's steal time)
    lms_requests: int  # SCIM requests the LMS served during the phase
    runs: Counter[str]  # the phase's runs by status
    jobs: list[float]  # the phase's jobs: each one's seconds from started to its end
    slots: int  # workers × concurrency

    @property
    def slots_busy(self) -> float:
        """How much of the slots' time the phase's jobs took, %."""
        return sum(self.jobs) / (self.slots * self.seconds) * 100

    @property
    def accounts_per_minute(self) -> float:
        return self.accounts * 60 / self.seconds


@dataclass
class Once:
    """Each account's hourly runs once the passes, one more tick and ``--settle`` are over."""

    workers: int
    per_account: Counter[int]  # number of hourly runs → accounts
    pass_jobs: int  # sync_pass jobs started
    ticks: int  # hourly_tick jobs started from the pass phase on
    tick_minutes: int  # distinct minutes they ran in


def steal_seconds() -> float:
    """CPU seconds the hypervisor has taken from this VM so far, all cores (``/proc/stat``'s
    steal); NaN without ``/proc``."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return float("nan")
    return int(fields[8]) / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU of the workers, the LMS and PostgreSQL, and the machine, between two readings."""

    def __init__(self, worker_pids: list[int], lms: procs.TenantLms) -> None:
        self.worker_pids = worker_pids
        self.lms = lms

    def start(self) -> None:
        self.lms.reset_stats()
        self.workers0 = cpu_sum(self.worker_pids)
        self.lms0 = self.lms.cpu_seconds()
        self.pg0 = cpu_by_pid(postgres_pids())
        self.machine0 = procs.machine_cpu()
        self.steal0 = steal_seconds()

    def stop(self) -> tuple[float, float, float, float, float, int]:
        """Since ``start``: the workers', the LMS's and PostgreSQL's CPU seconds, how busy the
        machine was and its steal time (% of all cores), and the SCIM requests the LMS served."""
        workers = cpu_sum(self.worker_pids) - self.workers0
        lms = self.lms.cpu_seconds() - self.lms0
        pg = cpu_delta(self.pg0, cpu_by_pid(postgres_pids()))
        busy, total = procs.machine_cpu()
        share = (busy - self.machine0[0]) / (total - self.machine0[1]) * 100
        steal = (steal_seconds() - self.steal0) / (total - self.machine0[1]) * 100
        requests = sum(int(n) for n in self.lms.stats()["requests"].values())
        return workers, lms, pg, share, steal, requests


@contextmanager
def running_workers(db: Db, workdir: Path, count: int, concurrency: int) -> Iterator[list[int]]:
    """``count`` ``lmsync worker`` processes, idle; yields their pids once every one has
    registered (two procrastinate workers each: the main one and the termination lane)."""
    log_path = workdir / "workers.log"
    children = procs.start_workers(count, worker_env(db, workdir, concurrency), log_path)
    try:
        deadline = time.monotonic() + 120
        while db.workers_registered() < 2 * count:
            for child in children:
                if child.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"a worker exited with {child.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not register within 120 s")
            time.sleep(0.2)
        yield [child.pid for child in children]
    finally:
        for child in children:
            procs.stop(child, timeout=40)


def queue_activations(db: Db, account_ids: list[str]) -> float:
    """One queued activation run and its job per account, all in one transaction (as many
    "Activate" clicks as accounts, visible to the workers at once); returns the commit's
    ``time.time()``."""
    with transaction(db.sessions) as session:
        for account_id in account_ids:
            options = RunOptions(trigger="activation", full=True, activating=True)
            run = db.service._new_queued(session, account_id, options)
            db.deferrer.run_queued(session, account_id, run.id, options.trigger)
    return time.time()


def passes_due(db: Db, account_ids: list[str]) -> float:
    """Every account's hourly pass due now, deferred in one transaction; the commit's time."""
    make_passes_due(db, account_ids)
    return time.time()


def wait_accounts_done(db: Db, trigger: str, count: int, timeout: float) -> float:
    """Wait until ``count`` accounts have a finished ``trigger`` run; the last one's end
    (``finished_at``, epoch seconds: the workers' clock, this machine's)."""
    deadline = time.monotonic() + timeout
    while True:
        done = db.scalar(
            "SELECT count(DISTINCT account_id) FROM sync_runs "
            "WHERE trigger = :t AND status = ANY(:s)",
            t=trigger,
            s=list(FINISHED),
        )
        if (done or 0) >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{count - (done or 0)} {trigger} runs not finished in {timeout:.0f} s"
            )
        time.sleep(0.2)
    ended = db.scalar(
        "SELECT extract(epoch FROM max(finished_at)) FROM sync_runs WHERE trigger = :t", t=trigger
    )
    return float(ended)


def job_seconds(db: Db, task: str, since: datetime) -> list[float]:
    """Each ``task`` job started since ``since``: from its start to its end (its deletion once
    done, or its failure), the database's clock."""
    rows = db.rows(
        "SELECT extract(epoch FROM min(e.at) - s.at) AS d FROM bench_job_events s "
        "JOIN bench_job_events e ON e.job_id = s.job_id "
        "AND e.type IN ('deleted', 'failed', 'aborted') "
        "WHERE s.type = 'started' AND s.task_name = :n AND s.at >= :t GROUP BY s.job_id, s.at",
        n=task,
        t=since,
    )
    return [float(r.d) for r in rows]


def statuses(db: Db, trigger: str) -> Counter[str]:
    rows = db.rows(
        "SELECT status, count(*) AS n FROM sync_runs WHERE trigger = :t GROUP BY 1", t=trigger
    )
    return Counter({str(r.status): int(r.n) for r in rows})


def check_once(
    db: Db, n_workers: int, account_ids: list[str], since: datetime, settle: float
) -> Once:
    """After the passes: wait for one more ``hourly_tick`` to have run (each minute), then
    ``settle`` seconds and an idle queue, and count each account's hourly runs."""
    passes_end = db.now()
    deadline = time.monotonic() + 90
    while True:
        ticked = db.scalar(
            "SELECT count(*) FROM bench_job_events WHERE task_name = :n "
            "AND type IN ('deleted', 'succeeded', 'failed') AND at > :t",
            n=TICK_TASK,
            t=passes_end,
        )
        if ticked:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("no hourly_tick ran within 90 s of the passes' end")
        time.sleep(0.5)
    time.sleep(settle)
    db.wait_queue_idle()
    rows = db.rows(
        "SELECT account_id, count(*) AS n FROM sync_runs WHERE trigger = 'hourly' GROUP BY 1"
    )
    runs = {str(r.account_id): int(r.n) for r in rows}
    per_account = Counter(runs.get(account_id, 0) for account_id in account_ids)
    pass_jobs = db.scalar(
        "SELECT count(*) FROM bench_job_events WHERE type = 'started' AND task_name = :n",
        n="lmsync.sync_pass",
    )
    ticks = db.rows(
        "SELECT date_trunc('minute', at) AS minute FROM bench_job_events "
        "WHERE type = 'started' AND task_name = :n AND at >= :t",
        n=TICK_TASK,
        t=since,
    )
    return Once(
        n_workers,
        per_account,
        int(pass_jobs or 0),
        len(ticks),
        len({r.minute for r in ticks}),
    )


def one_round(args: argparse.Namespace, n_workers: int, workdir: Path) -> tuple[list[Phase], Once]:
    log(f"round: {n_workers} worker process(es) × {args.concurrency}")
    lms = procs.start_lms_tenants(workdir, TOKEN, name="lms")  # 0 ms for the set-up
    try:
        with database(workdir) as db:
            began = time.perf_counter()
            ids = db.create_accounts(args.accounts, args.employees, lambda k: lms.url(f"a{k}"), "A")
            # Activate's connection test, once: it is not what is measured.
            db.service.check_lms(ids[0])
            log(f"{len(ids)} accounts in {time.perf_counter() - began:.0f} s; starting workers")
            phases: list[Phase] = []
            with running_workers(db, workdir, n_workers, args.concurrency) as pids:
                lms.set_latency(args.latency_ms)
                meter = Meter(pids, lms)

                since = db.now()
                meter.start()
                t0 = queue_activations(db, ids)
                log(f"{len(ids)} activations queued")
                ended = wait_accounts_done(db, "activation", len(ids), args.timeout)
                used = meter.stop()
                log(f"activations done in {ended - t0:.1f} s")
                db.wait_queue_idle()  # every job ended: its duration is known
                phases.append(
                    Phase(
                        n_workers,
                        PHASES[0],
                        len(ids),
                        ended - t0,
                        *used,
                        statuses(db, "activation"),
                        job_seconds(db, "lmsync.run_queued", since),
                        n_workers * args.concurrency,
                    )
                )

                since = db.now()
                meter.start()
                t0 = passes_due(db, ids)
                log(f"{len(ids)} hourly passes due")
                ended = wait_accounts_done(db, "hourly", len(ids), args.timeout)
                used = meter.stop()
                log(f"passes done in {ended - t0:.1f} s; waiting for a tick")
                once = check_once(db, n_workers, ids, since, args.settle)
                phases.append(
                    Phase(
                        n_workers,
                        PHASES[1],
                        len(ids),
                        ended - t0,
                        *used,
                        statuses(db, "hourly"),
                        job_seconds(db, "lmsync.sync_pass", since),
                        n_workers * args.concurrency,
                    )
                )
    finally:
        procs.stop(lms.proc)
    return phases, once


def runs_text(runs: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(runs.items()))


def tables(args: argparse.Namespace, phases: list[Phase], onces: list[Once]) -> str:
    base = {p.name: p.accounts_per_minute for p in phases if p.workers == 1}
    lines = [
        "| workers | phase | wall (s) | accounts / min | workers' CPU (s) | LMS CPU (s) "
        "| PostgreSQL CPU (s) | machine busy (steal) | LMS requests | mean job (s) | slots busy "
        "| vs 1 worker | target | runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        speedup = p.accounts_per_minute / base[p.name]
        target = ""
        if p.workers == 3:
            ok = speedup >= SPEEDUP_TARGET
            target = f"≥ {SPEEDUP_TARGET}× {report.mark(ok)}"
        lines.append(
            f"| {p.workers} | {p.name} | {p.seconds:.1f} | {p.accounts_per_minute:.1f} | "
            f"{p.worker_cpu:.1f} | {p.lms_cpu:.1f} | {p.pg_cpu:.1f} | "
            f"{p.machine_busy:.0f} % ({p.steal:.0f} %) | "
            f"{p.lms_requests:,} | {mean(p.jobs) if p.jobs else float('nan'):.2f} | "
            f"{p.slots_busy:.0f} % | "
            f"{speedup:.2f}× | {target} | {runs_text(p.runs)} |"
        )
    lines += [
        "",
        "| workers | accounts with 0 / 1 / > 1 hourly runs | sync_pass jobs started "
        "| hourly_tick jobs run (minutes) | target |",
        "|---|---|---|---|---|",
    ]
    for o in onces:
        zero, one = o.per_account[0], o.per_account[1]
        more = sum(n for k, n in o.per_account.items() if k > 1)
        ok = zero == 0 and more == 0
        lines.append(
            f"| {o.workers} | {zero} / {one} / {more} | {o.pass_jobs} | "
            f"{o.ticks} ({o.tick_minutes}) | exactly 1 each {report.mark(ok)} |"
        )
    return "\n".join(lines)


def plot(path: Path, args: argparse.Namespace, phases: list[Phase]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = sorted({p.workers for p in phases})
    by = {(p.workers, p.name): p for p in phases}
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    rate, cpu = fig.subplots(1, 2)
    width = 0.8 / len(counts)
    for i, n in enumerate(counts):
        xs = [j + (i - (len(counts) - 1) / 2) * width for j in range(len(PHASES))]
        values = [by[n, name].accounts_per_minute for name in PHASES]
        bars = rate.bar(xs, values, width, label=f"{n} worker{'s' if n > 1 else ''}")
        for bar, name in zip(bars, PHASES, strict=True):
            speedup = by[n, name].accounts_per_minute / by[counts[0], name].accounts_per_minute
            rate.annotate(
                f"{speedup:.2f}×",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    rate.set_xticks(range(len(PHASES)), list(PHASES))
    rate.set_ylabel("accounts per minute")
    rate.set_title(f"throughput (target: ≥ {SPEEDUP_TARGET}× with 3)", fontsize=10)
    rate.legend(fontsize=8)

    labels = [f"{p.workers}w\n{p.name.split()[-1]}" for p in phases]
    bottom = [0.0] * len(phases)
    for part, values in (
        ("workers", [p.worker_cpu / p.seconds * 100 for p in phases]),
        ("LMS", [p.lms_cpu / p.seconds * 100 for p in phases]),
        ("PostgreSQL", [p.pg_cpu / p.seconds * 100 for p in phases]),
    ):
        cpu.bar(labels, values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    cores = os.cpu_count() or 1
    cpu.axhline(cores * 100, color="grey", linestyle="--", linewidth=1)
    cpu.set_ylabel("% of one core (during the phase)")
    cpu.set_title(f"CPU ({cores} cores: dashed line)", fontsize=10)
    cpu.legend(fontsize=8)
    fig.suptitle(
        f"{args.accounts} accounts × {args.employees}, LMS {args.latency_ms:.0f} ms away, "
        f"concurrency {args.concurrency} · {report.machine()}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--employees", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--workers", type=int, default=3, help="the second round's processes")
    parser.add_argument("--concurrency", type=int, default=2, help="LMSYNC_WORKER_CONCURRENCY")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per phase, seconds")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after the tick that follows the passes"
    )
    parser.add_argument("--plot", type=Path, help="write a bar chart (PNG) here")
    args = parser.parse_args()
    reason = dataset.postgres_reachable(ADMIN_URL)
    if reason is not None:
        raise SystemExit(f"PostgreSQL is needed: {reason}")
    phases: list[Phase] = []
    onces: list[Once] = []
    with TemporaryDirectory(prefix="lmsync-queue-bench-") as tmp:
        for n_workers in (1, args.workers):
            workdir = Path(tmp) / f"workers-{n_workers}"
            workdir.mkdir()
            try:
                round_phases, once = one_round(args, n_workers, workdir)
            except BaseException:
                for log_file in sorted(workdir.glob("*.log")):
                    tail = log_file.read_text(errors="replace")[-3000:]
                    print(f"--- {log_file.name} ---\n{tail}", file=sys.stderr)
                raise
            phases += round_phases
            onces.append(once)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\n{args.accounts} accounts × {args.employees} employees (an LMS each), LMS "
        f"{args.latency_ms:.0f} ms away, concurrency {args.concurrency} per worker · "
        f"{report.machine()} · {started}\n"
    )
    print(tables(args, phases, onces))
    if args.plot:
        plot(args.plot, args, phases)


if __name__ == "__main__":
    main()
