"""``lmsync demo`` as a user runs it: a process with its own LMS, a login, Ctrl-C to stop."""

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


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz").status_code == 200
    except httpx.TransportError:
        return False
