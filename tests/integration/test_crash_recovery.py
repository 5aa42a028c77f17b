"""A process killed between the LMS create and recording the link leaves no duplicate."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from lmsync.domain.interface import InterfaceIn
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import make_session_factory, transaction
from lmsync.storage.tables import Account, LmsLink
from lmsync.sync.engine import RunOptions, SyncEngine
from lmsync.sync.service import SyncService
from tests.conftest import World
from tests.integration.conftest import LmsProcess

CHILD = textwrap.dedent(
    """
    import os, sys
    from datetime import timedelta
    from lmsync.lms.registry import build_connector
    from lmsync.security import SecretBox
    from lmsync.storage.database import make_engine, make_session_factory
    from lmsync.sync.engine import RunOptions, SyncEngine

    url, data_dir, account_id = sys.argv[1:4]
    creates = 0

    def factory(interface, secret, dry_run):
        connector = build_connector(interface, secret, dry_run)
        real_create = connector.create
        def create(fields, create_only):
            global creates
            user = real_create(fields, create_only)
            creates += 1
            if creates == 3:
                os._exit(9)  # killed after the LMS created the user, before the link is kept
            return user
        connector.create = create
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


def test_killed_between_create_and_link_leaves_no_duplicate(
    engine: Engine, settings: Settings, world: World, lms: LmsProcess, tmp_path: Path
) -> None:
    sessions = make_session_factory(engine)
    secrets = SecretBox.from_settings(None, settings.data_dir)
    service = SyncService(sessions, secrets, SyncEngine(sessions, secrets))
    with transaction(sessions) as session:
        session.get_one(Account, world.account_a).user_sync_enabled = True
        service.put_interface(
            session,
            world.account_a,
            InterfaceIn.model_validate(
                {
                    "base_url": lms.base_url,
                    "secret": lms.token,
                    "options": {"max_concurrency": 1},  # one create at a time: killed at the 3rd
                }
            ),
        )
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
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 9, child.stderr
    assert len(lms.users()) == 3
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(LmsLink)) == 0

    time.sleep(1.2)  # the dead process's lease runs out
    restarted = SyncEngine(sessions, secrets, lock_lease=timedelta(seconds=5))
    summary = restarted.run(world.account_a, RunOptions(trigger="manual"))
    assert summary.status == "succeeded", summary
    assert summary.counts == {"link": 3, "create": 2}
    users = lms.users()
    emails = sorted(u["emails"][0]["value"] for u in users)
    assert emails == [f"crash{n}@example.com" for n in range(5)]
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(LmsLink)) == 5
    service.close()
