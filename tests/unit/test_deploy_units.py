"""The example systemd units of ``deploy/`` are valid units (``systemd-analyze verify``) whose
``ExecStart`` lmsync's command line accepts, with the options the README's deployment section
describes. They are not run under systemd here (no systemd as PID 1 on the test machine)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from lmsync.cli import app
from tests.conftest import IN_CI

DEPLOY = Path(__file__).parents[2] / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
INSTALLED = "/opt/lmsync/.venv/bin/lmsync"


def exec_start(unit: Path, instance: str = "01") -> list[str]:
    lines = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, unit
    return shlex.split(lines[0].removeprefix("ExecStart=").replace("%i", instance))


def test_there_are_a_web_unit_and_a_worker_template() -> None:
    assert [u.name for u in UNITS] == ["lmsync-web.service", "lmsync-worker@.service"]
    assert (DEPLOY / "lmsync.env.example").is_file()


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_command_line_accepts_each_units_exec_start(unit: Path) -> None:
    argv = exec_start(unit)
    assert argv[0] == INSTALLED
    name, *rest = argv[1:]
    assert name in {"serve", "worker"}
    sub = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    ctx = sub.make_context(name, rest)  # raises on an unknown option or a bad value
    if name == "worker":
        assert ctx.params["metrics_port"] == 9101  # lmsync-worker@01
    else:
        assert ctx.params["worker"] is False  # the web tier leaves sync work to the workers


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_systemd_accepts_each_unit(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:
            pytest.fail("systemd-analyze is required in CI (Debian's systemd package)")
        pytest.skip("systemd-analyze not installed")
    # As installed, with this checkout's lmsync in place of /opt/lmsync and the user that runs
    # the tests (the units' lmsync user need not exist here).
    lmsync = Path(sys.executable).with_name("lmsync")
    text = unit.read_text().replace(INSTALLED, str(lmsync))
    text = text.replace("User=lmsync", "User=root").replace("Group=lmsync", "Group=root")
    name = unit.name.replace("@.", "@01.")
    (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # systemd warns about what it ignores
