"""A process killed between the LMS create and recording the link leaves no duplicate: one
user per request, or a SCIM Bulk request of several."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import transaction
from lmsync.storage.tables import LmsLink
from lmsync.sync.engine import RunOptions, SyncEngine
from tests.conftest import World
from tests.integration.conftest import LmsProcess, direct

CHILD = textwrap.dedent(
    """
    import os, sys
    from datetime import timedelta
    from lmsync.lms.registry import build_connector
    from lmsync.security import SecretBox
    from lmsync.storage.database import make_engine, make_session_factory
    from lmsync.sync.engine import RunOptions, SyncEngine

    url, data_dir, account_id, mode = sys.argv[1:5]
    creates = 0

    def factory(interface, secret, dry_run):
        connector = build_connector(interface, secret, dry_run)
        real_create, real_many = connector.create, connector.write_many
        def create(fields, create_only):
            global creates
            user = real_create(fields, create_only)
            creates += 1
            if creates == 3:
                os._exit(9)  # killed after the LMS created the user, before the link is kept
            return user
        def write_many(creates, updates):
            results = real_many(creates, updates)
            if mode == "bulk":
                os._exit(9)  # killed once the bulk answer came back, before it is recorded
            return results
        connector.create, connector.write_many = create, write_many
        return connector

    engine = SyncEngine(
        make_session_factory(make_engine(url)),
        SecretBox.from_settings(None, __import__("pathlib").Path(data_dir)),
        connector_factory=factory,
        lock_lease=timedelta(seconds=1),
    )
    engine.run(account_id, RunOptions(trigger="manual"))
    """
)


@pytest.mark.parametrize("mode", ["single", "bulk"])
def test_killed_between_create_and_link_leaves_no_duplicate(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess, tmp_path: Path, mode: str
) -> None:
    # One request at a time: killed at the 3rd create, or after the one bulk request of all
    # five.
    made = direct(engine, settings, world, lms, max_concurrency=1, use_bulk=mode == "bulk")
    sessions, service = made.sessions, made.service
    secrets = SecretBox.from_settings(None, settings.data_dir)
    with transaction(sessions) as session:
        service.get_interface(session, world.account_a).active = True
        from lmsync.hr import employees

        for n in range(5):
            employees.hire(
                session,
                None,
                world.account_a,
                {
                    "employee_number": f"E{n}",
                    "first_name": "A",
                    "last_name": f"B{n}",
                    "work_email": f"crash{n}@example.com",
                    "hire_date": "2024-01-01",
                },
            )
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(engine.url.render_as_string(hide_password=False)),
            str(settings.data_dir),
            world.account_a,
            mode,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    assert len(lms.users()) == (5 if mode == "bulk" else 3)
    bulk_requests = lms.stats()["requests"].get("POST", 0)
    assert bulk_requests == (1 if mode == "bulk" else 3)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(LmsLink)) == 0

    time.sleep(1.2)  # the dead process's lease runs out
    restarted = SyncEngine(sessions, secrets, lock_lease=timedelta(seconds=5))
    summary = restarted.run(world.account_a, RunOptions(trigger="manual"))
    assert summary.status == "succeeded", summary
    assert summary.counts == ({"link": 5} if mode == "bulk" else {"link": 3, "create": 2})
    users = lms.users()
    emails = sorted(u["emails"][0]["value"] for u in users)
    assert emails == [f"crash{n}@example.com" for n in range(5)]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(LmsLink)) == 5
    service.close()
