"""The files that hold personal data and secrets are private: the data directory 0700, the SQLite
file and its -wal/-shm companions 0600, the generated secret key 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from lmsync.security import SecretBox
from lmsync.settings import Settings
from lmsync.storage import migrate
from lmsync.storage.database import make_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common default umask (files 0644, directories 0755) unless we ask for less."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_data_directory_database_and_its_companions_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "srv" / "lmsync", database_url=None)
    url = settings.resolved_database_url()
    assert mode(settings.data_dir) == 0o700
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:  # a write in WAL mode: the -wal and -shm files exist now
            conn.execute(text("CREATE TABLE probe (x INTEGER)"))
            conn.execute(text("INSERT INTO probe VALUES (1)"))
            database = settings.data_dir / "lmsync.sqlite3"
            files = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]
            for file in files:
                assert file.exists(), file
                assert mode(file) == 0o600, (file, oct(mode(file)))
    finally:
        engine.dispose()


def test_a_database_file_wider_than_0600_is_narrowed(tmp_path: Path) -> None:
    database = tmp_path / "old.sqlite3"
    database.touch(mode=0o644)
    wal = tmp_path / "old.sqlite3-wal"
    wal.touch(mode=0o664)
    with capture_logs() as logs:
        make_engine(f"sqlite:///{database}").dispose()
    assert mode(database) == 0o600
    assert mode(wal) == 0o600
    assert sum(e["log_level"] == "warning" for e in logs) == 2


def test_an_existing_open_data_directory_is_reported_not_changed(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    with capture_logs() as logs:
        Settings(data_dir=shared, database_url=None).resolved_database_url()
    assert mode(shared) == 0o755  # chosen by its owner; maybe shared on purpose
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "data directory is accessible to other users; chmod 700 it"
    ]
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with capture_logs() as logs:
        Settings(data_dir=private, database_url=None).resolved_database_url()
    assert logs == []


def test_in_memory_and_server_databases_create_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        make_engine(url).dispose()
    assert list(tmp_path.iterdir()) == []


def test_generated_secret_key_and_its_directory_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    SecretBox.from_settings(None, data_dir)
    assert mode(data_dir) == 0o700
    assert mode(data_dir / "secret.key") == 0o600
    (data_dir / "secret.key").chmod(0o644)
    box = SecretBox.from_settings(None, data_dir)
    assert mode(data_dir / "secret.key") == 0o600
    assert box.decrypt(box.encrypt("s")) == "s"
