"""lmsync's benchmark suite: B1–B7, one markdown table with targets, optionally a PNG.

    .venv/bin/python bench/run.py [--n 10000] [--big] [--plot bench/results.png]
                                  [--markdown bench/results.md] [--only B1,B2,...]

B1  first activation of N employees against a fresh embedded SCIM LMS (``python -m
    lmsync.lms.embedded``, scim2-server) seeded with N/2 users (N/4 with an employee's work
    email, half of them in another letter case; N/4 belonging to nobody): lmsync (its own
    process, peak RSS) with SCIM Bulk on (the default: POST /Bulk requests of up to 100 users)
    and with Bulk off (``options.use_bulk: false``: one request per user), against the raw limit
    (bare httpx, 16 threads, one request per user). Targets: Bulk on ≤ 0.5× raw, Bulk off ≤
    1.25× raw. --rounds rounds of the three, alternated, each on a fresh LMS; the best of each
    counts. Also the naive script (a lookup per employee, then a POST; sequential, time-boxed
    and extrapolated), and lmsync (Bulk on) and the naive script with the LMS --wan-latency-ms
    away.
B2  termination latency: ``lmsync serve`` on B1's database; terminate through the API, poll the
    LMS user every 5 ms until it is inactive.
B3  hire latency: the same server; hire through the API, poll the LMS until the user exists.
B4  the hourly pass with nothing to change, right after B1's activation (Bulk on): the incremental
    pass (due employees, and LMS users modified since the previous pass, which is marked as
    having run just now) end to end and its LMS writes (must be 0); lmsync's own share of it
    (measured in B5); and, apart, the daily full sweep (every LMS user read).
B5  the engine alone on an in-memory LMS: employees/s on SQLite and on PostgreSQL (a scratch
    database, created and dropped); then the incremental pass and the sweep of B4 on it.
B6  per connector: B1–B4 and B7 are SCIM's figures; Moodle's are measured against a real Moodle
    by bench/moodle_b6.py (it needs the Moodle peer of shared/peers/moodle).
B7  the hourly pass after 1% of the employees changed (N/200 job titles updated in HR, N/200
    LMS users edited by hand with a PATCH): the incremental pass, against the full sweep after
    another 1% changed (other employees): time and LMS requests of each.

Everything runs on 127.0.0.1, in a temporary directory that is removed at the end, with every
child process stopped (also when the benchmark itself is interrupted).
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import dataset
import procs
import report
import scenarios
from report import Panel, Row, mark, percentile, seconds

from lmsync.lms.registry import CONNECTORS
from lmsync.log_config import configure

BENCHES = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
# B1 targets: lmsync / raw limit, with Bulk on and with Bulk off.
BULK_RATIO = 0.5
SINGLE_RATIO = 1.25
# B4 targets at 100k: the no-change incremental pass end to end, and lmsync's own share of it.
PASS_TARGET = 2.0
OWN_SHARE_TARGET = 1.0
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BIG_N = 100_000
T = TypeVar("T")


@dataclass
class Results:
    """What was measured (None: not run, or failed; the error is kept)."""

    activations: list[scenarios.SyncResult] = field(default_factory=list)  # Bulk on
    singles: list[scenarios.SyncResult] = field(default_factory=list)  # Bulk off
    raws: list[scenarios.ClientResult] = field(default_factory=list)
    naive: scenarios.ClientResult | None = None  # against scim2-server's stock search
    naive_indexed: scenarios.ClientResult | None = None  # against the embedded LMS's index
    wan_activation: scenarios.SyncResult | None = None  # lmsync, LMS --wan-latency-ms away
    wan_activation_single: scenarios.SyncResult | None = None  # the same, Bulk off
    wan_naive: scenarios.ClientResult | None = None  # the naive script, same LMS
    hourly_pass: scenarios.SyncResult | None = None  # B4: incremental, nothing to change
    sweep: scenarios.SyncResult | None = None  # B4: the daily full sweep, nothing to change
    changed_pass: scenarios.ChangedPass | None = None  # B7: incremental, after 1% changed
    changed_sweep: scenarios.ChangedPass | None = None  # B7: full sweep, after another 1%
    terminations: scenarios.LatencyResult | None = None
    hires: scenarios.LatencyResult | None = None
    lookup: scenarios.LookupCost | None = None  # the LMS of B2-B4 (email index)
    lookup_stock: scenarios.LookupCost | None = None  # the naive client's stock-search LMS
    engine: dict[str, scenarios.EngineResult | str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def activation(self) -> scenarios.SyncResult | None:
        """The fastest lmsync activation with Bulk on (they all start from the same state)."""
        return min(self.activations, key=lambda r: r.seconds, default=None)

    @property
    def single(self) -> scenarios.SyncResult | None:
        """The fastest lmsync activation with Bulk off."""
        return min(self.singles, key=lambda r: r.seconds, default=None)

    @property
    def raw(self) -> scenarios.ClientResult | None:
        return min(self.raws, key=lambda r: r.seconds, default=None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="lmsync benchmarks B1-B7 (loopback only, bounded in count and time).",
    )
    parser.add_argument("--n", type=int, default=None, help="employees (default 10,000)")
    parser.add_argument("--big", action="store_true", help=f"N = {BIG_N:,}")
    parser.add_argument("--plot", type=Path, help="write a PNG with one panel per benchmark")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--only", default=",".join(BENCHES), help="e.g. B1,B4 (default: all)")
    parser.add_argument(
        "--latency-samples", type=int, default=200, help="terminations (B2) and hires (B3)"
    )
    parser.add_argument(
        "--latency-budget",
        type=float,
        default=180.0,
        help="seconds at most spent sampling B2, and B3 (default 180 each)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="B1: runs of lmsync (Bulk on, Bulk off) and of the raw client, alternated; the best "
        "of each counts (default 2)",
    )
    parser.add_argument(
        "--naive-budget",
        type=float,
        default=120.0,
        help="seconds at most for the naive client; the rest is extrapolated (default 120)",
    )
    parser.add_argument(
        "--wan-latency-ms",
        type=float,
        default=30.0,
        help="B1 again with the LMS this far away (lmsync and the naive script; 0: skip)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("LMSYNC_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server where B5 may create and drop a scratch database",
    )
    parser.add_argument(
        "--lms-nodelay",
        action="store_true",
        help="serve the embedded LMS with TCP_NODELAY (bench/lms_nodelay.py), to measure the fix",
    )
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = BIG_N if args.big else 10_000
    if args.n < 8:
        parser.error("--n must be at least 8")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    only = {part.strip().upper() for part in args.only.split(",") if part.strip()}
    unknown = only - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    args.selected = only
    return args


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def attempt(results: Results, key: str, fn: Callable[[], T]) -> T | None:
    """Run one measurement; a failure is recorded (and shown in the table), not fatal."""
    try:
        return fn()
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        results.errors[key] = f"{type(exc).__name__}: {exc}"[:300]
        return None


def _sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)


# -- running -------------------------------------------------------------------------------------


def run_lmsync_side(
    args: argparse.Namespace,
    workdir: Path,
    persons: list[dataset.Person],
    seeds: list[dict[str, Any]],
    results: Results,
) -> None:
    """B1 (lmsync, Bulk on), B4, B7, B2 and B3: one LMS, one database, then ``lmsync serve``."""
    selected: set[str] = args.selected
    n: int = args.n
    child_timeout = 600 + n * 0.1
    with ExitStack() as stack:
        say("starting the LMS for lmsync and seeding it")
        lms = procs.start_lms(
            workdir, secrets.token_hex(16), nodelay=args.lms_nodelay, name="lms-lmsync"
        )
        stack.callback(procs.stop, lms.proc)
        lms.load(seeds)
        say(f"building the lmsync database ({n:,} employees)")
        setup = scenarios.prepare_lmsync(workdir, lms, persons)
        say("B1 lmsync (Bulk on): first activation (child process)")
        activation = attempt(
            results,
            "B1",
            lambda: scenarios.lmsync_sync(workdir, lms, setup, "activate", child_timeout),
        )
        if activation is None:
            return
        results.activations.append(activation)
        say(f"B1 lmsync (Bulk on): {activation.seconds:.1f} s {activation.counts}")
        if "B4" in selected:
            say("B4: hourly pass (incremental) with nothing to change")
            results.hourly_pass = attempt(
                results,
                "B4",
                lambda: scenarios.hourly_pass(workdir, lms, setup, child_timeout),
            )
            say("B4: daily full sweep with nothing to change")
            results.sweep = attempt(
                results,
                "B4-sweep",
                lambda: scenarios.lmsync_sync(workdir, lms, setup, "sweep", child_timeout),
            )
        if "B7" in selected:
            run_changes(args, workdir, lms, setup, results)
        if not selected & {"B2", "B3"}:
            return
        say("starting lmsync serve")
        server = attempt(
            results, "serve", lambda: procs.start_server(workdir, scenarios.lmsync_env(setup))
        )
        if server is None:
            return
        stack.callback(procs.stop, server.proc)
        samples: int = args.latency_samples
        budget: float = args.latency_budget
        if "B2" in selected:
            say(f"B2: {samples} terminations (budget {budget:.0f} s)")
            targets = scenarios.linked_targets(setup, samples)
            results.terminations = attempt(
                results,
                "B2",
                lambda: scenarios.termination_latency(
                    server.url, setup, lms, targets, budget=budget
                ),
            )
        if "B3" in selected:
            say(f"B3: {samples} hires (budget {budget:.0f} s)")
            results.hires = attempt(
                results,
                "B3",
                lambda: scenarios.hire_latency(server.url, setup, lms, samples, budget=budget),
            )
            results.lookup = attempt(results, "B3-lookup", lambda: scenarios.lookup_cost(lms))


def changes_per_side(n: int) -> int:
    """B7: employees changed in HR, and LMS users changed by hand, in each situation (1% of the
    employees in all: N/200 each)."""
    return max(1, n // 200)


def run_changes(
    args: argparse.Namespace,
    workdir: Path,
    lms: procs.Lms,
    setup: dataset.Setup,
    results: Results,
) -> None:
    """B7: 1% changed, then the incremental pass; another 1% (other employees), then the sweep."""
    n: int = args.n
    each = changes_per_side(n)
    child_timeout = 600 + n * 0.1
    targets = scenarios.linked_targets(setup, 4 * each)
    if len(targets) < 4 * each:
        results.errors["B7"] = f"only {len(targets)} linked employees, {4 * each} needed"
        return
    say(f"B7: {each:,} employees changed in HR and {each:,} LMS users by hand; incremental pass")
    results.changed_pass = attempt(
        results,
        "B7",
        lambda: scenarios.pass_after_changes(
            workdir, lms, setup, targets[: 2 * each], "pass", child_timeout
        ),
    )
    say(f"B7: another {2 * each:,} changes (other employees); full sweep")
    results.changed_sweep = attempt(
        results,
        "B7-sweep",
        lambda: scenarios.pass_after_changes(
            workdir, lms, setup, targets[2 * each :], "sweep", child_timeout
        ),
    )


def lmsync_round(
    args: argparse.Namespace,
    workdir: Path,
    persons: list[dataset.Person],
    seeds: list[dict[str, Any]],
    *,
    latency_ms: float = 0.0,
    max_concurrency: int = 16,
    use_bulk: bool = True,
) -> scenarios.SyncResult:
    """Another lmsync activation from scratch: a fresh LMS and a fresh database."""
    workdir.mkdir()
    bulk = "Bulk on" if use_bulk else "Bulk off"
    with ExitStack() as stack:
        say(f"starting a fresh LMS for another lmsync round ({bulk}) and seeding it")
        lms = procs.start_lms(
            workdir,
            secrets.token_hex(16),
            nodelay=args.lms_nodelay,
            name="lms-lmsync",
            latency_ms=latency_ms,
        )
        stack.callback(procs.stop, lms.proc)
        lms.load(seeds)
        setup = scenarios.prepare_lmsync(
            workdir, lms, persons, max_concurrency=max_concurrency, use_bulk=use_bulk
        )
        say(f"B1 lmsync ({bulk}): first activation (child process)")
        result = scenarios.lmsync_sync(workdir, lms, setup, "activate", 600 + args.n * 0.1)
        say(f"B1 lmsync ({bulk}): {result.seconds:.1f} s {result.counts}")
        return result


def run_client(
    args: argparse.Namespace,
    workdir: Path,
    name: str,
    seeds: list[dict[str, Any]],
    measure: Callable[[procs.Lms], scenarios.ClientResult],
    *,
    stock_search: bool = False,
    latency_ms: float = 0.0,
) -> scenarios.ClientResult:
    with ExitStack() as stack:
        say(f"starting a fresh LMS for the {name} client and seeding it")
        lms = procs.start_lms(
            workdir,
            secrets.token_hex(16),
            nodelay=args.lms_nodelay,
            name=f"lms-{name}",
            stock_search=stock_search,
            latency_ms=latency_ms,
        )
        stack.callback(procs.stop, lms.proc)
        lms.load(seeds)
        say(f"B1 {name}")
        result = measure(lms)
        say(f"B1 {name}: {result.measured_seconds:.1f} s for {result.done:,} employees")
        return result


def run_engine_alone(
    args: argparse.Namespace, workdir: Path, persons: list[dataset.Person], results: Results
) -> None:
    say("B5: engine alone on SQLite")
    sqlite = attempt(
        results,
        "B5-SQLite",
        lambda: scenarios.engine_alone(
            dataset.sqlite_url(workdir / "engine.sqlite3"), workdir / "engine-data", persons
        ),
    )
    if sqlite is not None:
        results.engine["SQLite"] = sqlite
    reason = dataset.postgres_reachable(args.postgres_url)
    if reason is not None:
        results.engine["PostgreSQL"] = "n/a (unreachable)"
        say(f"B5: PostgreSQL unreachable ({reason})")
        return
    say("B5: engine alone on PostgreSQL (scratch database)")

    def on_postgres() -> scenarios.EngineResult:
        with dataset.scratch_postgres(args.postgres_url) as url:
            return scenarios.engine_alone(url, workdir / "engine-data-pg", persons)

    postgres = attempt(results, "B5-PostgreSQL", on_postgres)
    if postgres is not None:
        results.engine["PostgreSQL"] = postgres


def run_all(args: argparse.Namespace, workdir: Path) -> Results:
    results = Results()
    selected: set[str] = args.selected
    n: int = args.n
    say(f"generating {n:,} employees")
    persons = dataset.people(n)
    seed_users, _ = dataset.seed_users(persons)
    seeds = seed_users
    if selected & {"B1", "B2", "B3", "B4", "B7"}:
        run_lmsync_side(args, workdir, persons, seeds, results)
    if "B1" in selected:
        # Rounds of Bulk on (the first one above, on the LMS of B2-B4 and B7), Bulk off, raw.
        for round_ in range(args.rounds):
            single = attempt(
                results,
                "B1-single",
                partial(
                    lmsync_round,
                    args,
                    workdir / f"single-{round_ + 1}",
                    persons,
                    seeds,
                    use_bulk=False,
                ),
            )
            if single is not None:
                results.singles.append(single)
            raw = attempt(
                results,
                "B1-raw",
                lambda: run_client(
                    args, workdir, "raw", seeds, lambda lms: scenarios.raw_activation(lms, persons)
                ),
            )
            if raw is not None:
                results.raws.append(raw)
            if round_ + 1 < args.rounds:
                again = attempt(
                    results,
                    "B1",
                    partial(lmsync_round, args, workdir / f"round-{round_ + 2}", persons, seeds),
                )
                if again is not None:
                    results.activations.append(again)
        limit = 5000 if n > 10_000 else n

        def naive(lms: procs.Lms) -> scenarios.ClientResult:
            result = scenarios.naive_activation(lms, persons, limit=limit, budget=args.naive_budget)
            results.lookup_stock = attempt(
                results, "B3-lookup-stock", lambda: scenarios.lookup_cost(lms)
            )
            return result

        results.naive = attempt(
            results,
            "B1-naive",
            lambda: run_client(args, workdir, "naive-stock", seeds, naive, stock_search=True),
        )
        results.naive_indexed = attempt(
            results,
            "B1-naive-indexed",
            lambda: run_client(
                args,
                workdir,
                "naive-indexed",
                seeds,
                lambda lms: scenarios.naive_activation(
                    lms, persons, limit=limit, budget=args.naive_budget
                ),
            ),
        )
        if args.wan_latency_ms > 0:
            run_wan(args, workdir, persons, seeds, results, limit)
    if selected & {"B4", "B5"}:  # B4's own share is measured on B5's in-memory LMS
        run_engine_alone(args, workdir, persons, results)
    return results


def run_wan(
    args: argparse.Namespace,
    workdir: Path,
    persons: list[dataset.Person],
    seeds: list[dict[str, Any]],
    results: Results,
    limit: int,
) -> None:
    """B1 with the LMS across a network: what the naive script's round trips cost."""
    latency: float = args.wan_latency_ms
    say(f"B1 with the LMS {latency:g} ms away")
    results.wan_activation = attempt(
        results,
        "B1-wan",
        partial(lmsync_round, args, workdir / "wan", persons, seeds, latency_ms=latency),
    )
    results.wan_activation_single = attempt(
        results,
        "B1-wan-single",
        partial(
            lmsync_round,
            args,
            workdir / "wan-single",
            persons,
            seeds,
            latency_ms=latency,
            use_bulk=False,
        ),
    )
    results.wan_naive = attempt(
        results,
        "B1-wan-naive",
        lambda: run_client(
            args,
            workdir,
            "naive-wan",
            seeds,
            lambda lms: scenarios.naive_activation(
                lms, persons, limit=limit, budget=args.naive_budget
            ),
            latency_ms=latency,
        ),
    )


# -- reporting -----------------------------------------------------------------------------------


def _latency_rows(
    bench: str, what: str, result: scenarios.LatencyResult | None, target: float, error: str
) -> list[Row]:
    if result is None:
        return [Row(bench, what, error or "not measured", f"p99 ≤ {target:g} s", report.NA)]
    values = result.samples + [math.inf] * result.timeouts
    if not values:
        return [Row(bench, what, "no sample", f"p99 ≤ {target:g} s", report.NA)]
    p50, p95, p99 = (percentile(values, p) for p in (50, 95, 99))
    count = f"n={len(values)}"
    if result.stopped_by_budget:
        count += f" of {result.wanted} (time budget)"
    if result.timeouts:
        count += f", {result.timeouts} timed out"
    text = (
        f"p50 {seconds(p50)} · p95 {seconds(p95)} · p99 {seconds(p99)} · "
        f"max {seconds(max(values))} ({count})"
    )
    return [Row(bench, what, text, f"p99 ≤ {target:g} s", mark(p99 <= target))]


def _rounds(values: list[float]) -> str:
    if len(values) < 2:
        return ""
    return f" (best of {len(values)}: {', '.join(seconds(v) for v in values)})"


def _wan_rows(args: argparse.Namespace, results: Results) -> list[Row]:
    latency: float = args.wan_latency_ms
    if latency <= 0:
        return []
    where = f"LMS {latency:g} ms away (email index)"
    naive, err = results.wan_naive, results.errors
    tunings = (
        ("Bulk on, max_concurrency 16, the defaults", results.wan_activation, "B1-wan"),
        ("Bulk off, max_concurrency 16", results.wan_activation_single, "B1-wan-single"),
    )
    rows = [
        Row(
            "B1",
            f"lmsync first activation, {where}, {tuning}",
            f"{seconds(act.seconds)} ({act.requests:,} LMS requests)"
            if act
            else err.get(key, "not measured"),
        )
        for tuning, act, key in tunings
    ]
    if naive is not None:
        how = (
            f" (extrapolated from the first {naive.done:,} employees, "
            f"{seconds(naive.measured_seconds)})"
            if naive.extrapolated
            else ""
        )
        rows.append(Row("B1", f"naive script, {where}", f"{seconds(naive.seconds)}{how}"))
    else:
        rows.append(Row("B1", f"naive script, {where}", err.get("B1-wan-naive", "not measured")))
    for tuning, act, _ in tunings:
        if act is not None and naive is not None:
            ratio = naive.seconds / act.seconds
            label = f"naive / lmsync, {where}, {tuning}"
            rows.append(Row("B1", label, f"{ratio:.1f}×", "≥ 20×", mark(ratio >= 20)))
    return rows


def _counts(result: scenarios.SyncResult) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(result.counts.items())) or "nothing"


def _activation_row(
    n: int,
    how: str,
    best: scenarios.SyncResult | None,
    runs: list[scenarios.SyncResult],
    error: str,
) -> Row:
    label = f"lmsync first activation, {how}, {n:,} employees (SyncEngine.run in its own process)"
    if best is None:
        return Row("B1", label, error or "not measured")
    return Row(
        "B1",
        label,
        f"{seconds(best.seconds)}{_rounds([r.seconds for r in runs])}; "
        f"process {seconds(best.process_seconds)}; {best.requests:,} LMS requests; "
        f"{best.status}: {_counts(best)}",
    )


def _ratio_row(
    what: str, act: scenarios.SyncResult | None, raw: scenarios.ClientResult | None, target: float
) -> Row:
    if act is None or raw is None:
        return Row("B1", what, "n/a", f"≤ {target:g}×", report.NA)
    ratio = act.seconds / raw.seconds
    return Row("B1", what, f"{ratio:.2f}×", f"≤ {target:g}×", mark(ratio <= target))


def _b1_rows(args: argparse.Namespace, results: Results) -> list[Row]:
    n: int = args.n
    big = n >= BIG_N
    err = results.errors
    act, single, raw = results.activation, results.single, results.raw
    naive, indexed = results.naive, results.naive_indexed
    rows = [
        _activation_row(n, "Bulk on (the default)", act, results.activations, err.get("B1", "")),
        _activation_row(
            n,
            "Bulk off (options.use_bulk false)",
            single,
            results.singles,
            err.get("B1-single", ""),
        ),
    ]
    if raw is not None:
        extra = f", {raw.failures} failed requests" if raw.failures else ""
        rows.append(
            Row(
                "B1",
                "raw limit (bare httpx, 16 threads, one request per user)",
                f"{seconds(raw.seconds)}{_rounds([r.seconds for r in results.raws])}{extra}",
            )
        )
    else:
        rows.append(Row("B1", "raw limit", err.get("B1-raw", "not measured")))
    searches = (
        ("stock search", naive, "B1-naive"),
        ("email index", indexed, "B1-naive-indexed"),
    )
    for search, result, key in searches:
        label = f"naive script (sequential lookup + POST), LMS with {search}"
        if result is None:
            rows.append(Row("B1", label, err.get(key, "not measured")))
            continue
        how = (
            f" (extrapolated from the first {result.done:,} employees, "
            f"{seconds(result.measured_seconds)})"
            if result.extrapolated
            else ""
        )
        rows.append(Row("B1", label, f"{seconds(result.seconds)}{how}"))
    rows.append(_ratio_row("lmsync Bulk on / raw", act, raw, BULK_RATIO))
    rows.append(_ratio_row("lmsync Bulk off / raw", single, raw, SINGLE_RATIO))
    for search, result, _ in searches:
        label = f"naive / lmsync (Bulk on), LMS with {search}" + (
            " (extrapolated)" if result is not None and result.extrapolated else ""
        )
        if act is not None and result is not None:
            ratio = result.seconds / act.seconds
            rows.append(Row("B1", label, f"{ratio:.1f}×", "≥ 20×", mark(ratio >= 20)))
        else:
            rows.append(Row("B1", label, "n/a", "≥ 20×", report.NA))
    rows += _wan_rows(args, results)
    clients: tuple[tuple[str, scenarios.SyncResult | scenarios.ClientResult | None], ...] = (
        ("lmsync Bulk on", act),
        ("lmsync Bulk off", single),
        ("raw", raw),
        ("naive", naive or indexed),
    )
    per = [
        f"{name} {(r.requests / (r.done if isinstance(r, scenarios.ClientResult) else n)):.3f}"
        for name, r in clients
        if r is not None
    ]
    rows.append(Row("B1", "LMS requests per employee (/_admin/stats)", " · ".join(per)))
    busy = [
        f"{name} {seconds(r.lms_cpu_seconds)} CPU in {seconds(r.seconds)}"
        for name, r in clients[:3]
        if r is not None
    ]
    rows.append(Row("B1", "LMS process CPU during the run (/proc)", " · ".join(busy)))
    measured = [(name, r) for name, r in (("Bulk on", act), ("Bulk off", single)) if r]
    if measured:
        peak = max(r.peak_rss_mib for _, r in measured)
        rows.append(
            Row(
                "B1",
                "peak RSS of the lmsync process (ru_maxrss)",
                " · ".join(f"{name} {r.peak_rss_mib:,.0f} MiB" for name, r in measured)
                + f" at N={n:,}",
                "≤ 1 GiB at 100k",
                mark(peak <= 1024) if big else report.NA,
            )
        )
    return rows


def _sync_text(result: scenarios.SyncResult) -> str:
    """Time, LMS requests, writes and CPU of a pass, for the result column."""
    return (
        f"{seconds(result.seconds)} (process {seconds(result.process_seconds)}) · "
        f"{result.requests:,} LMS requests, {result.writes:,} of them writes · "
        f"LMS CPU {seconds(result.lms_cpu_seconds)}"
    )


def _b4_rows(args: argparse.Namespace, results: Results) -> list[Row]:
    n: int = args.n
    big = n >= BIG_N
    err = results.errors
    rows: list[Row] = []
    hourly, sweep = results.hourly_pass, results.sweep
    if hourly is not None:
        rows.append(
            Row(
                "B4",
                "LMS writes in a no-change hourly pass (incremental)",
                f"{hourly.writes:,}",
                "0",
                mark(hourly.writes == 0),
            )
        )
        rows.append(
            Row(
                "B4",
                f"no-change hourly pass (incremental), end to end against the embedded LMS, "
                f"N={n:,}: SyncEngine.run ({hourly.requests:,} LMS requests, "
                f"LMS CPU {seconds(hourly.lms_cpu_seconds)}; process "
                f"{seconds(hourly.process_seconds)}; {hourly.status}: {_counts(hourly)})",
                seconds(hourly.seconds),
                f"≤ {PASS_TARGET:g} s at 100k",
                mark(hourly.seconds <= PASS_TARGET and hourly.writes == 0) if big else report.NA,
            )
        )
    else:
        rows.append(Row("B4", "no-change hourly pass (incremental)", err.get("B4", "not measured")))
    engines = {k: v for k, v in results.engine.items() if isinstance(v, scenarios.EngineResult)}
    for backend, value in engines.items():
        read = "" if value.pass_read_changes else "; it did NOT read the LMS changes"
        ok = value.pass_seconds <= OWN_SHARE_TARGET and value.pass_writes == 0
        rows.append(
            Row(
                "B4",
                f"lmsync's own share: no-change hourly pass (incremental) with the in-memory "
                f"LMS, {backend}, N={n:,} ({value.pass_writes} LMS writes{read}; measured in B5)",
                seconds(value.pass_seconds),
                f"≤ {OWN_SHARE_TARGET:g} s at 100k",
                mark(ok and value.pass_read_changes) if big else report.NA,
            )
        )
    if sweep is not None:
        rows.append(
            Row(
                "B4",
                "LMS writes in the no-change daily full sweep",
                f"{sweep.writes:,}",
                "0",
                mark(sweep.writes == 0),
            )
        )
        rows.append(
            Row(
                "B4",
                f"no-change daily full sweep (every LMS user read), N={n:,}: SyncEngine.run "
                f"({sweep.requests:,} LMS requests, LMS CPU {seconds(sweep.lms_cpu_seconds)}; "
                f"process {seconds(sweep.process_seconds)})",
                seconds(sweep.seconds),
            )
        )
    elif "B4-sweep" in err:
        rows.append(Row("B4", "no-change daily full sweep", err["B4-sweep"]))
    if engines:
        rows.append(
            Row(
                "B4",
                f"lmsync's own share of the no-change sweep (in-memory LMS, N={n:,}; measured "
                "in B5)",
                " · ".join(
                    f"{backend} {seconds(v.sweep_seconds)} ({v.sweep_writes} LMS writes)"
                    for backend, v in engines.items()
                ),
            )
        )
    return rows


def _b7_rows(args: argparse.Namespace, results: Results) -> list[Row]:
    n: int = args.n
    each = changes_per_side(n)
    err = results.errors
    rows: list[Row] = []
    incremental, sweep = results.changed_pass, results.changed_sweep
    for what, result, key in (
        (
            f"hourly pass (incremental) after 1% changed: {each:,} job titles updated in HR "
            f"and {each:,} LMS users edited by hand (PATCH), N={n:,}",
            incremental,
            "B7",
        ),
        (
            f"daily full sweep (what the hourly pass was) after another 1% changed, other "
            f"employees ({each:,} + {each:,}), N={n:,}",
            sweep,
            "B7-sweep",
        ),
    ):
        if result is None:
            rows.append(Row("B7", what, err.get(key, "not measured")))
            continue
        missed = (
            ""
            if result.handled
            else f" — fewer updates than the {result.hr + result.by_hand:,} changes"
        )
        rows.append(
            Row(
                "B7",
                what,
                f"{_sync_text(result.sync)}; {result.sync.status}: {_counts(result.sync)}{missed}",
            )
        )
    if incremental is not None and sweep is not None:
        a, b = incremental.sync, sweep.sync
        faster = a.seconds < b.seconds and a.requests < b.requests
        rows.append(
            Row(
                "B7",
                "full sweep / incremental pass, the same 1% of changes",
                f"{b.seconds / a.seconds:.1f}× the time · "
                f"{b.requests / max(a.requests, 1):.1f}× the LMS requests "
                f"({b.requests:,} vs {a.requests:,})",
                "incremental faster, fewer requests",
                mark(faster and incremental.handled and sweep.handled),
            )
        )
    else:
        rows.append(Row("B7", "full sweep / incremental pass", "n/a", "—", report.NA))
    return rows


def build_rows(args: argparse.Namespace, results: Results) -> tuple[list[Row], list[str]]:
    selected: set[str] = args.selected
    n: int = args.n
    rows: list[Row] = []
    notes: list[str] = []
    err = results.errors

    def skipped(bench: str) -> None:
        rows.append(Row(bench, "—", "skipped (--only)", "—", report.NA))

    # B1
    if "B1" in selected:
        rows += _b1_rows(args, results)
    else:
        skipped("B1")

    # B2, B3
    if "B2" in selected:
        rows += _latency_rows(
            "B2", "terminate → LMS user inactive", results.terminations, 2.0, err.get("B2", "")
        )
    else:
        skipped("B2")
    if "B3" in selected:
        rows += _latency_rows("B3", "hire → LMS user exists", results.hires, 5.0, err.get("B3", ""))
        for search, lookup in (
            ("email index (the LMS of B3)", results.lookup),
            ("stock search", results.lookup_stock),
        ):
            if lookup is not None:
                rows.append(
                    Row(
                        "B3",
                        f"LMS cost of one lookup by email (what lmsync asks for each new hire), "
                        f"LMS with {search}, {lookup.users:,} users",
                        f"`emails.value eq` {seconds(lookup.email_seconds)} · "
                        f"`userName eq` {seconds(lookup.user_name_seconds)}",
                    )
                )
    else:
        skipped("B3")

    # B4
    if "B4" in selected:
        rows += _b4_rows(args, results)
    else:
        skipped("B4")

    # B5
    if "B5" in selected:
        for backend in ("SQLite", "PostgreSQL"):
            value = results.engine.get(backend)
            if isinstance(value, scenarios.EngineResult):
                rows.append(
                    Row(
                        "B5",
                        f"engine alone, {backend} ({n:,} employees, in-memory LMS)",
                        f"{value.per_second:,.0f} employees/s ({seconds(value.seconds)})",
                        "≥ 5,000/s",
                        mark(value.per_second >= 5000),
                    )
                )
            else:
                text = value if isinstance(value, str) else err.get(f"B5-{backend}", "not measured")
                rows.append(Row("B5", f"engine alone, {backend}", text, "≥ 5,000/s", report.NA))
    else:
        skipped("B5")

    # B6
    if "B6" in selected:
        names = ", ".join(f"{key} ({label})" for key, label in CONNECTORS.items())
        rows.append(
            Row(
                "B6",
                "per connector",
                f"{names}: B1–B4 and B7 are SCIM's figures; Moodle's: bench/moodle_b6.py "
                "(real Moodle)",
                "—",
                report.NA,
            )
        )
    else:
        skipped("B6")

    # B7
    if "B7" in selected:
        rows += _b7_rows(args, results)
    else:
        skipped("B7")

    notes += _notes(args, results)
    for key, message in results.errors.items():
        if key == "serve":
            notes.append(f"lmsync serve failed: {message}")
    return rows, notes


def _notes(args: argparse.Namespace, results: Results) -> list[str]:
    n: int = args.n
    notes: list[str] = []
    lms = (
        "bench/lms_nodelay.py (TCP_NODELAY)"
        if args.lms_nodelay
        else "python -m lmsync.lms.embedded"
    )
    notes.append(
        f"LMS: a fresh `{lms}` process (scim2-server, in memory) per client in B1, seeded "
        f"through /_admin/users with {n // 2:,} users ({n // 4:,} with an employee's work "
        f"email, half of them in UPPER or Mixed case; {n // 4:,} belonging to nobody). B2–B4 "
        "and B7 use the LMS and database of lmsync's first B1 run (Bulk on)."
    )
    notes.append(
        "B1 lmsync time is SyncEngine.run in a child process (bench/sync_child.py, as `lmsync "
        "sync --activate` runs it); 'process' adds interpreter start and imports. Bulk on (the "
        "default): the SCIM connector reads the server's ServiceProviderConfig (bulk.supported, "
        "maxOperations) and sends the creates and updates in POST /Bulk requests of up to 100 "
        "operations (the engine hands it chunks of min(100, ⌈writes / max_concurrency⌉) writes); "
        "Bulk off: the interface option `use_bulk: false`, one request per user. The raw client "
        "builds the same payloads with lmsync's pure request builders, reads /Users with "
        f"count={scenarios.RAW_PAGE} (the server's cap), as lmsync does, then sends one request "
        f"per user from 16 threads. lmsync Bulk on, Bulk off and raw run --rounds {args.rounds} "
        "times each, alternated, each on a fresh LMS; the best run of each counts (the machine "
        "is shared, so single runs vary). The LMS runs its SCIM application on one event loop: "
        "when its CPU time is close to the run's wall time, the LMS is the bottleneck."
    )
    notes.append(
        "The embedded LMS answers `emails.value eq` and `meta.lastModified gt` from indexes (as "
        "a real LMS answers them from database indexes; src/lmsync/lms/email_index.py); "
        "scim2-server's stock search (`--stock-search`) walks every user for them. lmsync's "
        "activation does no such lookup (it pages through all users once), so B1 lmsync and raw "
        "do not depend on it; the naive script runs against both; B2–B4 and B7 use the indexes."
    )
    if args.wan_latency_ms > 0:
        notes.append(
            f"'LMS {args.wan_latency_ms:g} ms away': the same embedded LMS (email index) waiting "
            f"{args.wan_latency_ms:g} ms before each SCIM answer (`--latency-ms`), without "
            "holding its event loop, as an LMS across a network would. lmsync runs there with "
            "its defaults (Bulk on, 16 requests in flight) and with Bulk off (one request per "
            "user, 16 in flight): there a request's round trip costs what the LMS's work does; "
            "the naive script waits for two round trips per employee, one after the other."
        )
    if any(r is not None and r.extrapolated for r in (results.naive, results.naive_indexed)):
        notes.append(
            "A naive time is extrapolated linearly from the employees done within "
            f"--naive-budget {args.naive_budget:.0f} s"
            + (" (at most 5,000 when N > 10,000)" if n > 10_000 else "")
            + "; with the stock search it is a lower bound: each lookup walks every LMS user, "
            "and the LMS grows as the script creates users."
        )
    notes.append(
        "B2 polls GET /Users/{id} every 5 ms; B3 polls `filter=userName eq` (lmsync sends the "
        "work email as userName). Latency is from sending the API request to the LMS showing "
        "the change."
    )
    notes.append(
        'B4 hourly pass: `RunOptions(trigger="hourly", incremental=True)` in a child process '
        "(bench/sync_child.py --mode pass): the due employees, plus those whose LMS user was "
        "modified since the previous pass (`GET /Users?filter=meta.lastModified gt`). Right "
        "after the activation the interface's `lms_changes_since` is 2 minutes before the "
        "activation's start, so a pass then would read again every user the activation wrote; "
        f"to time 'an hourly pass with no change', the benchmark waits {scenarios.QUIET_SECONDS:g} "
        "s after the last LMS write (the filter compares whole seconds) and sets "
        "`lms_changes_since` to now − 1 s in the database, as if the previous pass had run just "
        "now, after a quiet hour. The daily full sweep (`full=True`, --mode sweep) reads every "
        "LMS user: what the hourly pass was until now."
    )
    notes.append(
        "B5 uses FakeLms with an index of taken emails and a time of last modification per user "
        "(bench/scenarios.py IndexedFakeLms, a ChangeReader): the stock FakeLms walks every user "
        "on each create, which would time the fake, not the engine. After the activation, B5 "
        "marks the previous pass as just run (as in B4) and times one incremental pass with "
        "nothing to change, then one full sweep, on the same in-memory LMS: lmsync's own share "
        "of B4 (the time the in-memory LMS takes to answer is in it)."
    )
    if "B7" in args.selected:
        each = changes_per_side(n)
        notes.append(
            f"B7, on the LMS and database of B4: {each:,} linked employees get a new job title "
            "through lmsync.hr.employees.update (which makes them due) and the LMS users of "
            f"{each:,} others get a new title by hand (PATCH /Users/{{id}} through the LMS's "
            "SCIM API); the previous pass is marked as just run before the changes (as in B4), "
            "then the incremental pass runs. Then another 1% (different employees) changes the "
            "same way and the full sweep runs. Each pass writes the HR changes out and the hand "
            "edits back (the 'update' count); LMS requests and writes are /_admin/stats during "
            "the pass (a POST /Bulk is one write request)."
        )
    return notes


def build_panels(args: argparse.Namespace, results: Results) -> list[Panel]:
    selected: set[str] = args.selected
    panels: list[Panel] = []
    if "B1" in selected:
        panels += _b1_panels(args, results)
    else:
        panels.append(Panel("B1", "first activation", "text", text="skipped"))
    for bench, title, result, target in (
        ("B2", "terminate → LMS inactive", results.terminations, 2.0),
        ("B3", "hire → LMS user exists", results.hires, 5.0),
    ):
        if bench in selected and result is not None and result.samples:
            panels.append(
                Panel(
                    bench,
                    title,
                    "latency",
                    values=result.samples,
                    target=target,
                    target_label=f"target p99 ≤ {target:g} s",
                )
            )
        else:
            panels.append(
                Panel(bench, title, "text", text="skipped" if bench not in selected else "no data")
            )
    panels.append(_b4_panel(args, results))
    engines = {k: v for k, v in results.engine.items() if isinstance(v, scenarios.EngineResult)}
    if "B5" in selected and engines:
        panels.append(
            Panel(
                "B5",
                "engine alone (in-memory LMS)",
                "bars",
                list(engines),
                [v.per_second for v in engines.values()],
                unit="employees/s",
                target=5000,
                target_label="≥ 5,000/s",
            )
        )
    else:
        panels.append(
            Panel(
                "B5", "engine alone", "text", text="skipped" if "B5" not in selected else "no data"
            )
        )
    names = ", ".join(CONNECTORS)
    panels.append(
        Panel(
            "B6",
            "per connector",
            "text",
            text=f"connectors: {names}\nB1–B4, B7: SCIM; Moodle: bench/moodle_b6.py",
        )
    )
    panels.append(_b7_panel(args, results))
    return panels


def _b1_panels(args: argparse.Namespace, results: Results) -> list[Panel]:
    """B1 twice: lmsync (Bulk on, off) against the raw limit, linear, with the two targets;
    then the naive script and the LMS across a network, on a log scale."""
    act, single, raw = results.activation, results.single, results.raw
    labels, values = [], []
    for name, result in (
        ("lmsync, Bulk on", act),
        ("lmsync, Bulk off", single),
        ("raw (1 request/user)", raw),
    ):
        if result is not None:
            labels.append(name)
            values.append(result.seconds)
    targets = (
        [
            (raw.seconds * BULK_RATIO, f"Bulk on ≤ {BULK_RATIO:g}× raw"),
            (raw.seconds * SINGLE_RATIO, f"Bulk off ≤ {SINGLE_RATIO:g}× raw"),
        ]
        if raw is not None
        else []
    )
    vs_raw = Panel(
        "B1",
        f"first activation vs raw limit, N={args.n:,}",
        "bars",
        labels,
        values,
        unit="seconds",
        targets=targets,
    )
    labels, values, hatched = [], [], []
    for name, value, extra in (
        ("lmsync, Bulk on", act.seconds if act else None, False),
        *(
            (
                f"naive, {search}" + (" (extrap.)" if naive.extrapolated else ""),
                naive.seconds,
                naive.extrapolated,
            )
            for search, naive in (
                ("stock", results.naive),
                ("index", results.naive_indexed),
            )
            if naive is not None
        ),
        *(
            (f"{name}, {args.wan_latency_ms:g} ms away", value.seconds, extrapolated)
            for name, value, extrapolated in (
                ("lmsync, Bulk on", results.wan_activation, False),
                ("lmsync, Bulk off", results.wan_activation_single, False),
                (
                    "naive",
                    results.wan_naive,
                    bool(results.wan_naive and results.wan_naive.extrapolated),
                ),
            )
            if value is not None
        ),
    ):
        if value is not None:
            labels.append(name)
            values.append(value)
            hatched.append(extra)
    naive = Panel(
        "B1",
        f"lmsync vs the naive script, N={args.n:,}",
        "bars",
        labels,
        values,
        hatched,
        unit="seconds (log)",
        log=True,
    )
    return [vs_raw, naive]


def _b4_panel(args: argparse.Namespace, results: Results) -> Panel:
    if "B4" not in args.selected:
        return Panel("B4", "no-change passes", "text", text="skipped")
    engines = {k: v for k, v in results.engine.items() if isinstance(v, scenarios.EngineResult)}
    bars: list[tuple[str, float, bool]] = []
    if results.hourly_pass is not None:
        bars.append(("hourly, embedded LMS", results.hourly_pass.seconds, False))
    bars += [(f"hourly, lmsync's share, {k}", v.pass_seconds, False) for k, v in engines.items()]
    if results.sweep is not None:
        bars.append(("daily sweep, embedded LMS", results.sweep.seconds, True))
    bars += [(f"sweep, lmsync's share, {k}", v.sweep_seconds, True) for k, v in engines.items()]
    if not bars:
        return Panel("B4", "no-change passes", "text", text="no data")
    return Panel(
        "B4",
        f"no-change passes, N={args.n:,} (hatched: daily sweep)",
        "bars",
        [b[0] for b in bars],
        [b[1] for b in bars],
        [b[2] for b in bars],
        unit="seconds (log)",
        log=True,
        target=PASS_TARGET,
        target_label=f"hourly ≤ {PASS_TARGET:g} s at 100k",
        targets=[(OWN_SHARE_TARGET, f"lmsync's share ≤ {OWN_SHARE_TARGET:g} s")],
    )


def _b7_panel(args: argparse.Namespace, results: Results) -> Panel:
    title = "pass after 1% changed"
    if "B7" not in args.selected:
        return Panel("B7", title, "text", text="skipped")
    bars = [
        (f"{name}\n{result.sync.requests:,} LMS requests", result.sync.seconds, hatched)
        for name, result, hatched in (
            ("hourly pass (incremental)", results.changed_pass, False),
            ("daily full sweep", results.changed_sweep, True),
        )
        if result is not None
    ]
    if not bars:
        return Panel("B7", title, "text", text="no data")
    return Panel(
        "B7",
        f"{title} (N={args.n:,})",
        "bars",
        [b[0] for b in bars],
        [b[1] for b in bars],
        [b[2] for b in bars],
        unit="seconds",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure("WARNING", json=True)  # the in-process B5 engine logs to stderr, warnings only
    signal.signal(signal.SIGTERM, _sigterm)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="lmsync-bench-"))
    try:
        results = run_all(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows, notes = build_rows(args, results)
    header = [
        f"Machine: {report.machine()}",
        "",
        f"N = {args.n:,} employees · run {time.strftime('%Y-%m-%d %H:%M %Z')} · "
        f"total {seconds(time.perf_counter() - started)} · "
        f"`bench/run.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"Load average (1 min) at start {load_before:.2f}, at end {os.getloadavg()[0]:.2f} "
        "(other processes on the machine share its CPUs).",
    ]
    text = report.markdown("lmsync benchmarks", header, rows, notes)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if args.plot is not None:
        report.plot(
            args.plot,
            f"lmsync benchmarks, N={args.n:,} — {report.machine()}",
            build_panels(args, results),
        )
    failed = dict(results.errors)
    for key, message in failed.items():
        say(f"error in {key}: {message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
