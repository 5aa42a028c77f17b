"""Background CSV imports on both databases: a big import holds up no other request of a real
server, and an import survives its process (taken over and resumed exactly, or handed back).

``LMSYNC_TEST_IMPORT_ROWS=100000 pytest -s tests/integration/test_import_background.py -k healthz``
runs the server test with that many rows to the end of the import and prints the figures.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lmsync.hr import csv_import, employees, imports
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Employee, EmployeeEvent, EmployeeImport, utcnow
from tests.conftest import World

# /healthz during a big import, in seconds. The old endpoint held it for the whole import (every
# probe hit the client's 5 s timeout). With the import in the background the slowest probe was
# 0.2-0.6 s on a busy shared 2-core machine, once 1.3 s (against 0.03 s with no import running):
# CPU contention, not the event loop. The 95th percentile stays near 0.1 s.
HEALTHZ_MAX = 2.0
HEALTHZ_P95 = 0.5
BENCH_ROWS = os.environ.get("LMSYNC_TEST_IMPORT_ROWS")
ROWS = int(BENCH_ROWS or 20_000)


def csv_of(count: int, *, prefix: str = "E", bad_every: int = 0) -> bytes:
    """Realistic rows (email, phone, country, province); every ``bad_every``-th has a bad phone."""
    lines = ["employee_number,first_name,last_name,work_email,home_phone,country,province"]
    for i in range(count):
        phone = (
            "abc" if bad_every and i % bad_every == bad_every - 1 else f"514 555-{i % 10000:04d}"
        )
        lines.append(f"{prefix}-{i},Zoë,Ngô {i},z{i}@example.ca,{phone},Canada,Québec")
    return ("\n".join(lines) + "\n").encode()


# -- a real server: /healthz and another account's hire during a big import -------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(database_url: str, data_dir: Path) -> Iterator[str]:
    """``uvicorn lmsync.web.app:create_app`` in its own process (its own GIL, as in production)."""
    port = _free_port()
    env = {**os.environ, "LMSYNC_DATABASE_URL": database_url, "LMSYNC_DATA_DIR": str(data_dir)}
    log = data_dir.parent / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "lmsync.web.app:create_app"),
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_a_big_import_holds_up_neither_healthz_nor_another_account(
    database_url: str, world: World, tmp_path: Path
) -> None:
    content = csv_of(ROWS)
    latencies: list[float] = []
    posted: dict[str, Any] = {}
    stop = threading.Event()

    with serve(database_url, tmp_path / "data") as base:

        def poll_healthz() -> None:
            with httpx.Client(base_url=base, timeout=5) as http:
                while not stop.is_set():
                    started = time.perf_counter()
                    with suppress(httpx.TransportError):  # a timeout counts as the time waited
                        http.get("/healthz").raise_for_status()
                    latencies.append(time.perf_counter() - started)
                    stop.wait(0.1)

        def post_import() -> None:
            with httpx.Client(base_url=base, timeout=900) as http:
                try:
                    posted["response"] = http.post(
                        "/api/v1/employees/import",
                        files={"file": ("big.csv", content, "text/csv")},
                        headers=World.auth(world.mhr_a),
                    )
                except httpx.TransportError as exc:  # the server stopped under it
                    posted["error"] = exc
                posted["at"] = time.monotonic()

        def progress(http: httpx.Client) -> dict[str, Any] | None:
            """The import as the API shows it; None while the POST has not answered with 202."""
            response = posted.get("response")
            if response is None or response.status_code != 202:
                return None
            current: dict[str, Any] = http.get(
                response.headers["location"], headers=World.auth(world.mhr_a)
            ).json()
            return current

        def finished(current: dict[str, Any] | None) -> bool:
            if current is None:
                return "at" in posted  # the old endpoint answered when the import was done
            return current["status"] not in ("queued", "running")

        poller = threading.Thread(target=poll_healthz, daemon=True)
        poster = threading.Thread(target=post_import, daemon=True)
        poller.start()
        started = time.monotonic()
        poster.start()
        with httpx.Client(base_url=base, timeout=30) as http:
            # Hire in the other account once the import is writing (the old endpoint never says).
            while time.monotonic() - started < 3:
                current = progress(http)
                if current is not None and current["done_rows"] > 0:
                    break
                time.sleep(0.05)
            hire_started = time.monotonic()
            try:
                hired: int | str = http.post(
                    "/api/v1/employees",
                    json={"employee_number": "B-1", "first_name": "Béa", "last_name": "Roy"},
                    headers=World.auth(world.mhr_b),
                ).status_code
            except httpx.TimeoutException:
                hired = "no answer in 30 s"
            hire_seconds = time.monotonic() - hire_started
            at_hire = progress(http)
            unfinished_at_hire = not finished(at_hire)
            # Keep watching /healthz while the import goes on: to its end when measuring,
            # else for 10 s (the whole 20,000 rows take close to a minute).
            window = 3600 if BENCH_ROWS else 10
            current = at_hire
            while not finished(current) and time.monotonic() - started < window:
                time.sleep(0.25)
                current = progress(http)
            elapsed = time.monotonic() - started
        stop.set()
        poller.join(10)

    print(
        f"\n{ROWS} rows: /healthz max {max(latencies):.3f}s, median "
        f"{statistics.median(latencies):.3f}s over {len(latencies)} requests; the other "
        f"account's hire {hire_seconds:.3f}s; import "
        + (
            f"{current['status']} {current['done_rows']}/{current['total_rows']}"
            if current
            else "?"
        )
        + f" after {elapsed:.1f}s"
    )
    assert max(latencies) < HEALTHZ_MAX, f"/healthz took up to {max(latencies):.1f}s"
    p95 = statistics.quantiles(latencies, n=20)[-1]
    assert p95 < HEALTHZ_P95, f"/healthz took {p95:.2f}s or more one time in 20"
    assert hired == 201
    assert unfinished_at_hire, "the other account's hire waited for the import to finish"
    assert hire_seconds < 10
    assert posted["response"].status_code == 202
    if BENCH_ROWS:
        assert current is not None
        assert (current["status"], current["imported_count"]) == ("succeeded", ROWS)


# -- surviving the process --------------------------------------------------------------------


class Crash(BaseException):
    """The process dies here: nothing in the runner handles it (as with a kill)."""


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def queue(
    sessions: sessionmaker[Session], account_id: str, content: bytes, *, dry_run: bool = False
) -> str:
    with transaction(sessions) as s:
        total = csv_import.count_rows(content)
        return imports.queue(s, None, account_id, content, total_rows=total, dry_run=dry_run).id


def read(sessions: sessionmaker[Session], import_id: str) -> EmployeeImport:
    with sessions() as s:
        row = s.get(EmployeeImport, import_id)
        assert row is not None
        return row


def age_heartbeat(sessions: sessionmaker[Session], import_id: str) -> None:
    with transaction(sessions) as s:
        s.execute(
            update(EmployeeImport)
            .where(EmployeeImport.id == import_id)
            .values(heartbeat_at=utcnow() - imports.STALE_AFTER - timedelta(seconds=1))
        )


def counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as s:
        hired = s.scalar(select(func.count()).select_from(Employee)) or 0
        events = s.scalar(select(func.count()).select_from(EmployeeEvent)) or 0
        return hired, events


def crash_at_hire(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The process dies during the ``n``-th hire, in the middle of a chunk's transaction."""
    real = employees.hire
    calls = [0]

    def hire(*args: Any, **kwargs: Any) -> Employee:
        calls[0] += 1
        if calls[0] == n:
            raise Crash
        return real(*args, **kwargs)

    monkeypatch.setattr(employees, "hire", hire)


def test_a_dead_runner_s_import_is_taken_over_and_resumed_exactly(
    sessions: sessionmaker[Session], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = csv_of(23, bad_every=4)  # 5 bad rows: 18 to hire
    import_id = queue(sessions, world.account_a, content)
    assert imports.claim_next(sessions, "dead") == import_id
    crash_at_hire(monkeypatch, 12)  # in the third chunk of 5: its 1 hire is rolled back
    with pytest.raises(Crash):
        imports.run_import(sessions, import_id, "dead", chunk_rows=5)
    monkeypatch.undo()
    row = read(sessions, import_id)
    assert (row.status, row.owner, row.done_rows) == ("running", "dead", 10)
    assert (row.imported_count, row.rejected_count) == (8, 2)
    assert row.content == content  # nothing lost
    assert counts(sessions) == (8, 8)
    assert imports.claim_next(sessions, "other") is None  # its heartbeat is fresh: alive

    age_heartbeat(sessions, import_id)
    service = imports.ImportService(sessions, chunk_rows=5, pause=0.0)
    assert service.run_next()
    row = read(sessions, import_id)
    assert (row.status, row.done_rows, row.imported_count, row.rejected_count) == (
        "succeeded",
        23,
        18,
        5,
    )
    assert row.content is None
    assert counts(sessions) == (18, 18)  # every row hired once, with one event each
    assert [r["line"] for r in imports.rejected_rows(row)] == [5, 9, 13, 17, 21]
    assert all(r["errors"][0]["field"] == "home_phone" for r in imports.rejected_rows(row))
    # The dead runner, come back to life, writes nothing more.
    assert imports.run_import(sessions, import_id, "dead", chunk_rows=5) == "lost"
    assert counts(sessions) == (18, 18)


def test_only_one_runner_claims_an_import(sessions: sessionmaker[Session], world: World) -> None:
    import_id = queue(sessions, world.account_a, csv_of(3))
    winners: list[str | None] = []
    barrier = threading.Barrier(6)

    def claim(owner: str) -> None:
        barrier.wait()
        winners.append(imports.claim_next(sessions, owner))

    threads = [threading.Thread(target=claim, args=(f"runner-{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert (winners.count(import_id), winners.count(None)) == (1, 5)
    assert read(sessions, import_id).status == "running"


def test_a_runner_that_lost_its_import_stops_writing(
    sessions: sessionmaker[Session], world: World
) -> None:
    import_id = queue(sessions, world.account_a, csv_of(12))
    assert imports.claim_next(sessions, "slow") == import_id
    age_heartbeat(sessions, import_id)
    assert imports.claim_next(sessions, "fast") == import_id
    assert imports.run_import(sessions, import_id, "slow", chunk_rows=5) == "lost"
    assert counts(sessions) == (0, 0)
    assert imports.run_import(sessions, import_id, "fast", chunk_rows=5) == "succeeded"
    assert counts(sessions) == (12, 12)


def test_a_stopping_server_hands_its_import_back(
    sessions: sessionmaker[Session], world: World
) -> None:
    import_id = queue(sessions, world.account_a, csv_of(12))
    assert imports.claim_next(sessions, "stopping") == import_id
    stop = threading.Event()
    status = imports.run_import(
        sessions, import_id, "stopping", chunk_rows=5, on_chunk=lambda _: stop.set(), stop=stop
    )
    assert status == "queued"
    row = read(sessions, import_id)
    assert (row.status, row.owner, row.done_rows) == ("queued", None, 5)
    # The next server takes it at once (no heartbeat to wait for) and finishes it.
    service = imports.ImportService(sessions, chunk_rows=5, pause=0.0)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while read(sessions, import_id).status != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        service.stop()
    assert read(sessions, import_id).imported_count == 12
    assert counts(sessions) == (12, 12)


def test_a_dry_run_taken_over_starts_again(
    sessions: sessionmaker[Session], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = csv_of(12) + b"E-1,Again,Twice,,,CA,\n"  # a number from the first chunk
    import_id = queue(sessions, world.account_a, content, dry_run=True)
    assert imports.claim_next(sessions, "dead") == import_id
    chunks: list[int] = []

    def die_after_two(chunk: imports.ChunkDone) -> None:
        chunks.append(chunk.done_rows)
        if len(chunks) == 2:
            raise Crash

    with pytest.raises(Crash):
        imports.run_import(sessions, import_id, "dead", chunk_rows=5, on_chunk=die_after_two)
    assert read(sessions, import_id).done_rows == 10
    age_heartbeat(sessions, import_id)
    assert imports.ImportService(sessions, chunk_rows=5, pause=0.0).run_next()
    row = read(sessions, import_id)
    assert (row.status, row.done_rows, row.imported_count, row.rejected_count) == (
        "succeeded",
        13,
        12,
        1,
    )
    assert imports.rejected_rows(row)[0]["errors"][0]["message"] == "appears twice in this file"
    assert counts(sessions) == (0, 0)


def test_ctrl_c_in_the_cli_keeps_the_committed_rows(
    sessions: sessionmaker[Session], world: World
) -> None:
    def interrupt(chunk: imports.ChunkDone) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        imports.run_in_foreground(
            sessions, None, world.account_a, csv_of(12), on_chunk=interrupt, chunk_rows=5
        )
    with sessions() as s:
        row = s.scalars(select(EmployeeImport)).one()
    assert (row.status, row.done_rows, row.content) == ("interrupted", 5, None)
    assert row.message == "interrupted after 5 of 12 rows; those were imported, the rest were not"
    assert counts(sessions) == (5, 5)
    assert imports.claim_next(sessions, "server") is None  # not resumed behind the user's back


def test_an_unexpected_error_fails_the_import_and_keeps_earlier_chunks(
    sessions: sessionmaker[Session], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real: Callable[..., Employee] = employees.hire
    calls = [0]

    def hire(*args: Any, **kwargs: Any) -> Employee:
        calls[0] += 1
        if calls[0] == 7:
            raise RuntimeError("a bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(employees, "hire", hire)
    import_id = queue(sessions, world.account_a, csv_of(12))
    assert imports.ImportService(sessions, chunk_rows=5, pause=0.0).run_next()
    row = read(sessions, import_id)
    assert (row.status, row.done_rows, row.content) == ("failed", 5, None)
    assert row.message is not None
    assert "after 5 of 12 rows" in row.message
    assert "a bug" not in row.message
    assert counts(sessions) == (5, 5)
