"""One lmsync sync in a process of its own, so that the benchmark can read its peak RSS.

``python bench/sync_child.py --account ID --mode activate|pass|sweep`` with
``LMSYNC_DATABASE_URL`` and ``LMSYNC_DATA_DIR`` set:

- ``activate``: the first activation as ``lmsync sync --activate`` runs it (the interface becomes
  active, then a full run matches by email and creates the rest): B1;
- ``pass``: the incremental hourly pass (the due employees, and the employees whose LMS user was
  modified since the interface's ``lms_changes_since``): B4, B7;
- ``sweep``: the daily full sweep (every LMS user read and compared): B4, B7.

Prints one JSON object: the run's duration, status and counts.
"""

from __future__ import annotations

import argparse
import json
import time

from lmsync.log_config import configure
from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import LmsInterface, utcnow
from lmsync.sync.engine import RunOptions, SyncEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--account", required=True)
    parser.add_argument("--mode", choices=("activate", "pass", "sweep"), required=True)
    args = parser.parse_args()
    settings = Settings()
    configure(settings.log_level, json=True)
    engine = make_engine(settings.resolved_database_url())
    try:
        sessions = make_session_factory(engine)
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        sync = SyncEngine(sessions, box)
        if args.mode == "activate":
            with transaction(sessions) as session:
                interface = session.get_one(LmsInterface, args.account)
                interface.active = True
                interface.activated_at = interface.activated_at or utcnow()
            options = RunOptions(trigger="activation", full=True, activating=True)
        elif args.mode == "pass":
            options = RunOptions(trigger="hourly", incremental=True)
        else:
            options = RunOptions(trigger="hourly", full=True)
        started = time.perf_counter()
        summary = sync.run(args.account, options)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    result = {
        "seconds": seconds,
        "status": summary.status,
        "counts": summary.counts,
        "message": summary.message,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
