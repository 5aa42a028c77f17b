"""``lmsync demo`` as a user runs it: a process with its own LMS, a login, Ctrl-C to stop; and a
second demo that finds its port or its data directory taken and leaves the first one alone."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from lmsync.cli import app
from lmsync.demo import EXIT_ALREADY_RUNNING, EXIT_PORT_IN_USE
from tests.integration.conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_demo_activates_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LMSYNC_DATA_DIR": str(tmp_path), "LMSYNC_DATABASE_URL": ""}
    with subprocess.Popen(
        [sys.executable, "-m", "lmsync", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            _check_demo(proc, port)
            _check_second_demo_refused(tmp_path, port)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=20)
    assert code == 0


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    output = ""
    deadline = time.monotonic() + timeout
    while marker not in output and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        output += line
    return output


def _check_demo(proc: subprocess.Popen[str], port: int) -> None:
    output = _read_until(proc, "Ctrl-C")
    assert "dry-run preview (nothing written)" in output, output
    preview = output.split("done")[0]
    assert re.search(r"\b5  to link", preview)
    assert re.search(r"\b35  to create", preview)
    assert re.search(r"\b3  skipped \(no work email\)", preview)
    assert re.search(r"\b2  conflicts", preview)
    assert re.search(r"\b3  excluded", preview)
    token = re.search(r"API token\s+: (lms_\S+)", output)
    lms_url = re.search(r"LMS at (http://\S+/v2)", output)
    lms_token = re.search(r"LMS token\s+: (\S+)", output)
    assert token, output
    assert lms_url, output
    assert lms_token, output
    assert re.search(r"login\s+: hr\.manager@demo\.example / \S+", output)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _up(base), timeout=20)
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    lms_auth = {"Authorization": f"Bearer {lms_token.group(1)}"}
    users = httpx.get(f"{lms_url.group(1)}/Users", params={"count": 500}, headers=lms_auth).json()
    assert users["totalResults"] == 8 + 35  # 8 present before, 35 created, 5 of the 8 linked
    listed = httpx.get(f"{base}/api/v1/employees", params={"q": "E-0010"}, headers=auth).json()
    [employee] = listed["items"]
    state = httpx.get(f"{base}/api/v1/employees/{employee['id']}/lms", headers=auth).json()
    assert (state["state"], state["made_by"]) == ("linked", "matched")
    terminated = httpx.post(
        f"{base}/api/v1/employees/{employee['id']}/terminate",
        json={"termination_date": "2026-11-25"},
        headers=auth,
    )
    assert terminated.status_code == 200
    user_id = state["lms_user_id"]
    wait_for(
        lambda: (
            httpx.get(f"{lms_url.group(1)}/Users/{user_id}", headers=lms_auth).json()["active"]
            is False
        ),
        timeout=10,
    )


def _check_second_demo_refused(data_dir: Path, port: int) -> None:
    """A second demo on the same port, or on the same data directory, stops with its exit code
    and deletes nothing; the lmsync commands run there use the running demo's database."""
    database = data_dir / "demo.sqlite3"
    before = database.stat()
    env = {**os.environ, "LMSYNC_DATA_DIR": str(data_dir), "LMSYNC_DATABASE_URL": ""}
    lmsync = [sys.executable, "-m", "lmsync"]
    same_port = subprocess.run(
        [*lmsync, "demo", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60
    )
    assert same_port.returncode == EXIT_PORT_IN_USE, same_port.stderr
    assert f"port {port} on 127.0.0.1, for its pages and API, is already in use" in (
        same_port.stderr
    )
    other_port = subprocess.run(
        [*lmsync, "demo", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other_port.returncode == EXIT_ALREADY_RUNNING, other_port.stderr
    assert f"another lmsync demo is running on the data directory {data_dir}" in (other_port.stderr)
    assert f"pages at http://127.0.0.1:{port}/" in other_port.stderr
    assert database.stat().st_ino == before.st_ino
    assert database.stat().st_size >= before.st_size
    listed = subprocess.run(
        [*lmsync, "account", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert f"using database sqlite:///{database} (the running demo's" in listed.stderr
    [row] = listed.stdout.splitlines()[1:]
    assert re.split(r"\s{2,}", row)[1:5] == ["lmsync demo", "Démo Cangaroo inc.", "50", "2"]
    up = httpx.get(f"http://127.0.0.1:{port}/healthz")  # the first demo still serves
    assert up.status_code == 200


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz").status_code == 200
    except httpx.TransportError:
        return False


# -- a second demo stops before it touches anything (in-process: it fails before serving) --------


@pytest.fixture
def demo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data directory of a demo that ran before: its database files, with content."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "demo.sqlite3").write_bytes(b"the running demo's database")
    (data_dir / "demo.sqlite3-wal").write_bytes(b"its write-ahead log")
    monkeypatch.setenv("LMSYNC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("LMSYNC_DATABASE_URL", "")
    return data_dir


def _files(data_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(data_dir.iterdir())}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_stops_the_demo_first(demo_dir: Path, taken_port: int) -> None:
    before = _files(demo_dir)
    result = CliRunner().invoke(app, ["demo", "--port", str(taken_port)])
    assert result.exit_code == EXIT_PORT_IN_USE == 6
    assert result.stderr.startswith(
        f"error: the demo cannot start: port {taken_port} on 127.0.0.1, for its pages and API, "
        "is already in use (another lmsync demo?). Nothing was changed."
    )
    assert "choose another port with --port" in result.stderr
    assert _files(demo_dir) == before  # no lock file either: nothing was touched


def test_a_taken_port_is_said_in_french_under_a_french_locale(
    demo_dir: Path, taken_port: int
) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--port", str(taken_port)], env={"LANG": "fr_CA.UTF-8"}
    )
    assert result.exit_code == EXIT_PORT_IN_USE
    assert result.stderr.startswith(
        f"erreur\u00a0: la démo ne peut pas démarrer\u00a0: le port {taken_port} sur 127.0.0.1, "
        "pour ses pages et son API, est déjà utilisé (une autre démo lmsync?)."
    ), result.stderr


def test_a_taken_lms_port_stops_the_demo_first(demo_dir: Path, taken_port: int) -> None:
    before = _files(demo_dir)
    port = free_port()
    result = CliRunner().invoke(app, ["demo", "--port", str(port), "--lms-port", str(taken_port)])
    assert result.exit_code == EXIT_PORT_IN_USE
    assert f"port {taken_port} on 127.0.0.1, for its embedded LMS, is already in use" in (
        result.stderr
    )
    assert "with --lms-port" in result.stderr
    assert _files(demo_dir) == before
    with socket.socket() as s:  # the pages' port it had bound is free again
        s.bind(("127.0.0.1", port))


def test_a_demo_running_on_the_data_directory_stops_a_second_one(demo_dir: Path) -> None:
    with (demo_dir / "demo.lock").open("a+", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write(json.dumps({"pid": 4242, "pages_url": "http://127.0.0.1:8123/"}))
        lock.flush()
        before = _files(demo_dir)
        result = CliRunner().invoke(app, ["demo", "--port", str(free_port())])
        assert result.exit_code == EXIT_ALREADY_RUNNING == 7
        assert result.stderr.startswith(
            f"error: the demo cannot start: another lmsync demo is running on the data "
            f"directory {demo_dir} (process 4242, pages at http://127.0.0.1:8123/). Its database "
            "was left alone."
        )
        assert _files(demo_dir) == before
