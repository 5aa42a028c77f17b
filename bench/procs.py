"""Child processes of the benchmark: the embedded SCIM LMS (one, or one per tenant), ``lmsync
serve``, ``lmsync worker`` and one-shot syncs.

Every process is started on the loopback interface, dies with the benchmark (``PR_SET_PDEATHSIG``)
and is stopped by :func:`stop`; one-shot children are reaped with ``os.wait4`` so that their peak
resident set size can be read.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the benchmark process dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the try/finally cleanup still applies
        pass


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child: ours, quiet lmsync logs, plus ``extra``."""
    env = dict(os.environ)
    env.update({"LMSYNC_LOG_LEVEL": "WARNING", "LMSYNC_LOG_JSON": "true", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def spawn(
    args: list[str], *, log: IO[bytes], env: dict[str, str] | None = None, stdout: int | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and scripts, no shell
        args,
        stdout=stdout if stdout is not None else log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO_DIR,
        preexec_fn=_die_with_parent,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL) and reap it; closes its stdout pipe."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line ``proc`` prints on its stdout pipe, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line from {proc.args!r} within {timeout:.0f} s")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"{proc.args!r} exited (status {proc.poll()}) before a line")
            data += chunk
    return data.split(b"\n", 1)[0].decode().strip()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the embedded LMS ------------------------------------------------------------------------


@dataclass
class Lms:
    """A ``python -m lmsync.lms.embedded`` process and its SCIM and admin endpoints."""

    proc: subprocess.Popen[bytes]
    base_url: str
    token: str

    @property
    def admin_url(self) -> str:
        return self.base_url.removesuffix("/v2") + "/_admin"

    def client(self, *, timeout: float = 120.0, connections: int = 32) -> httpx.Client:
        """A SCIM client with the bearer token (thread-safe, keep-alive pool)."""
        return httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/scim+json",
                "Content-Type": "application/scim+json",
            },
            timeout=timeout,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.admin_url}/stats", timeout=30)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def requests(self) -> int:
        """SCIM requests served since the last reset (all methods)."""
        return sum(int(v) for v in self.stats()["requests"].values())

    def writes(self) -> int:
        return int(self.stats()["writes"])

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the LMS process has used so far; NaN where /proc is missing."""
        return cpu_of(self.proc.pid)

    def reset_stats(self) -> None:
        httpx.post(f"{self.admin_url}/stats/reset", timeout=30).raise_for_status()

    def load(self, users: list[dict[str, Any]], chunk: int = 2000) -> None:
        """Seed users through ``/_admin/users`` (outside the statistics)."""
        for start in range(0, len(users), chunk):
            part = users[start : start + chunk]
            response = httpx.post(
                f"{self.admin_url}/users",
                content=json.dumps(part).encode(),
                headers={"Content-Type": "application/json"},
                timeout=600,
            )
            if response.status_code != 200:
                raise RuntimeError(f"seeding the LMS failed: {response.text[:500]}")


def start_lms(
    workdir: Path,
    token: str,
    *,
    nodelay: bool,
    name: str,
    stock_search: bool = False,
    latency_ms: float = 0.0,
) -> Lms:
    """Start a fresh embedded LMS (``--port 0``) and wait for its ``ready`` line.

    ``stock_search``: scim2-server's own search, which walks every user on an email lookup,
    instead of the embedded LMS's email index. ``latency_ms``: added to every SCIM answer."""
    if nodelay:
        args = [
            sys.executable,
            str(BENCH_DIR / "lms_nodelay.py"),
            "--port",
            "0",
            f"--token={token}",
        ]
    else:
        args = [sys.executable, "-m", "lmsync.lms.embedded", "--port", "0", f"--token={token}"]
    if stock_search:
        args.append("--stock-search")
    if latency_ms:
        args.append(f"--latency-ms={latency_ms}")
    proc, url = _start_ready(args, workdir / f"{name}.log")
    return Lms(proc=proc, base_url=url, token=token)


def _start_ready(args: list[str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start an LMS launcher and wait for its ``ready <url>`` line; returns it and the URL."""
    with log_path.open("ab") as log:
        proc = spawn(args, log=log, env=child_env(), stdout=subprocess.PIPE)
    try:
        line = read_line(proc, timeout=60)
        if not line.startswith("ready "):
            raise RuntimeError(f"unexpected first line from the LMS: {line!r}")
    except BaseException:
        stop(proc)
        raise
    return proc, line.removeprefix("ready ")


@dataclass
class TenantLms:
    """A ``bench/lms_tenants.py`` process: one embedded LMS per tenant (``/t/<tenant>/v2``)."""

    proc: subprocess.Popen[bytes]
    root_url: str
    token: str

    def url(self, tenant: str) -> str:
        """The SCIM root of ``tenant``'s LMS (created at its first request)."""
        return f"{self.root_url}/t/{tenant}/v2"

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.root_url}/_bench{route}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def set_latency(self, ms: float) -> None:
        """Every tenant answers ``ms`` later from now on."""
        self._call("POST", "/latency", {"ms": ms})

    def watch(self, keys: list[str]) -> None:
        """Record when each ``<tenant>/<user id>`` is first seen inactive after a write."""
        self._call("POST", "/watch", {"keys": keys})

    def inactive_at(self) -> dict[str, float]:
        """Watched users seen inactive, with the wall-clock time (``time.time()``) of the write."""
        return {k: float(v) for k, v in self._call("GET", "/watch")["inactive_at"].items()}

    def arrived_at(self) -> dict[str, float]:
        """When the write that made each watched user inactive reached the LMS (before its
        latency)."""
        return {k: float(v) for k, v in self._call("GET", "/watch")["arrived_at"].items()}

    def user(self, tenant: str, user_id: str) -> dict[str, Any] | None:
        """The user as stored (no latency), or None."""
        response = httpx.get(f"{self.root_url}/_bench/user/{tenant}/{user_id}", timeout=60)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, Any]:
        """SCIM requests per method and writes, summed over the tenants."""
        body: dict[str, Any] = self._call("GET", "/stats")
        return body

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def tenant_stats(self, tenant: str) -> dict[str, Any]:
        """One tenant's SCIM statistics (its ``/_admin/stats``)."""
        response = httpx.get(f"{self.root_url}/t/{tenant}/_admin/stats", timeout=60)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def cpu_seconds(self) -> float:
        return cpu_of(self.proc.pid)


def start_lms_tenants(
    workdir: Path, token: str, *, name: str, latency_ms: float = 0.0
) -> TenantLms:
    """Start ``bench/lms_tenants.py`` on a free loopback port and wait until it serves."""
    args = [sys.executable, str(BENCH_DIR / "lms_tenants.py"), "--port", "0", f"--token={token}"]
    if latency_ms:
        args.append(f"--latency-ms={latency_ms}")
    proc, url = _start_ready(args, workdir / f"{name}.log")
    return TenantLms(proc=proc, root_url=url, token=token)


# -- lmsync worker ---------------------------------------------------------------------------


def cpu_of(pid: int) -> float:
    """CPU time (user + system, seconds) process ``pid`` has used so far (``/proc``); NaN when
    the process is gone or ``/proc`` is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """The machine's (busy, total) CPU seconds so far, all cores (``/proc/stat``); NaN without
    ``/proc``."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - fields[3] - fields[4]) / tick, total / tick


def start_workers(count: int, env: dict[str, str], log_path: Path) -> list[subprocess.Popen[bytes]]:
    """``count`` ``lmsync worker`` processes (concurrency from ``LMSYNC_WORKER_CONCURRENCY``)."""
    with log_path.open("ab") as log:
        return [
            spawn([sys.executable, "-m", "lmsync", "worker"], log=log, env=env)
            for _ in range(count)
        ]


# -- lmsync serve ----------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str


def start_server(workdir: Path, env: dict[str, str], timeout: float = 90.0) -> Server:
    """``lmsync serve`` on a free loopback port; returns once ``/healthz`` answers."""
    port = free_port()
    args = [sys.executable, "-m", "lmsync", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with (workdir / "serve.log").open("ab") as log:
        proc = spawn(args, log=log, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lmsync serve exited with {proc.returncode}; see serve.log")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return Server(proc=proc, url=url)
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"lmsync serve did not answer within {timeout:.0f} s")
            time.sleep(0.1)
    except BaseException:
        stop(proc)
        raise


# -- one-shot children with their peak RSS --------------------------------------------------


@dataclass
class ChildResult:
    status: int
    output: dict[str, Any]
    peak_rss_mib: float
    wall_seconds: float


def run_child(
    args: list[str], *, env: dict[str, str], log_path: Path, timeout: float
) -> ChildResult:
    """Run ``args``, parse the JSON object it prints last, read its peak RSS (``wait4``)."""
    started = time.perf_counter()
    with log_path.open("ab") as log:
        proc = spawn(args, log=log, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    status = -1
    try:
        out = proc.stdout.read()
        _, raw_status, usage = os.wait4(proc.pid, 0)
        status = os.waitstatus_to_exitcode(raw_status)
        proc.returncode = status
    except BaseException:
        stop(proc)
        raise
    finally:
        timer.cancel()
        proc.stdout.close()
    wall = time.perf_counter() - started
    lines = [line for line in out.decode().splitlines() if line.strip()]
    if status != 0 or not lines:
        raise RuntimeError(f"{args!r} failed with status {status}; see {log_path}")
    output: dict[str, Any] = json.loads(lines[-1])
    return ChildResult(status, output, usage.ru_maxrss / 1024, wall)
