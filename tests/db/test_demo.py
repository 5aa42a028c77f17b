"""``lmsync demo`` as a user runs it: a real process, a printed login and token, Ctrl-C to stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_demo_serves_its_account_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LMSYNC_DATA_DIR": str(tmp_path), "LMSYNC_DATABASE_URL": ""}
    with subprocess.Popen(
        [sys.executable, "-m", "lmsync", "demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            _check_demo(proc, port, tmp_path)
        finally:
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=20)
    assert code == 0


def _check_demo(proc: subprocess.Popen[str], port: int, tmp_path: Path) -> None:
    output = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while "Ctrl-C" not in output and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        output += line
    token_match = re.search(r"token\s+: (lms_\S+)", output)
    assert token_match, output
    assert re.search(r"login\s+: hr\.manager@demo\.example / \S+", output)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    auth = {"Authorization": f"Bearer {token_match.group(1)}"}
    listed = httpx.get(f"{base}/api/v1/employees", headers=auth).json()
    assert listed["total"] == 12
    excluded = httpx.get(f"{base}/api/v1/employees?excluded=true", headers=auth).json()
    assert [e["last_name"] for e in excluded["items"]] == ["Brown"]
    assert (tmp_path / "lmsync.sqlite3").exists()
