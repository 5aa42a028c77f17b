"""The benchmark suite runs end to end at a tiny size: exit 0, a PNG, a row for each of B1–B7.

No timing is asserted; this only keeps ``bench/run.py`` working as the code base changes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 180


def test_bench_runs_at_small_size(tmp_path: Path) -> None:
    png, md = tmp_path / "b.png", tmp_path / "b.md"
    command = [
        sys.executable,
        str(REPO / "bench" / "run.py"),
        "--n",
        "40",
        "--latency-samples",
        "5",
        "--naive-budget",
        "10",
        "--rounds",
        "1",
        "--plot",
        str(png),
        "--markdown",
        str(md),
    ]
    log = tmp_path / "bench.log"
    with (
        log.open("wb") as err,
        subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=err) as proc,
    ):
        try:
            out, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the suite stops its children on SIGTERM
            proc.communicate(timeout=30)
            raise AssertionError(f"bench/run.py took over {TIMEOUT} s") from None
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    table = md.read_text(encoding="utf-8")
    assert table.strip() == out.decode().strip()
    for bench in ("B1", "B2", "B3", "B4", "B5", "B6", "B7"):
        assert f"\n| {bench} |" in table, f"no row for {bench}"
