"""The measurements B1–B5 and B7: each function sets up what it needs, measures, and returns
figures.

B1 compares clients reaching the same LMS from the same starting point: lmsync's first activation
(a process of its own) with SCIM Bulk on (the default: POST /Bulk requests of up to 100 users)
and with Bulk off (``options.use_bulk: false``: one request per user), the raw limit (a bare
httpx client, 16 threads, one request per user, only the requests the end state needs) and the
naive script (one filter lookup per employee, then a POST).
B2/B3 drive ``lmsync serve`` through its API and watch the LMS.
B4 is the hourly pass with nothing to change: the incremental pass (the due employees and the
LMS users modified since the previous pass, ``filter=meta.lastModified gt``) and, apart, the
daily full sweep (every LMS user read).
B5 is the engine alone on an in-memory LMS (activation throughput, then lmsync's own share of
B4's incremental pass and sweep).
B7 is the hourly pass after 1% of the employees changed (half in HR, half by hand in the LMS),
incremental, against the full sweep after another 1% changed.
"""

from __future__ import annotations

import bisect
import random
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dataset
import httpx
from dataset import Person, Setup
from procs import BENCH_DIR, Lms, child_env, run_child
from sqlalchemy import select

from lmsync.hr import employees as hr_employees
from lmsync.lms.base import AlreadyExistsError, ChangedUsers, Connector, RemoteUser, UserPage
from lmsync.lms.fake import FakeLms
from lmsync.lms.scim import (
    PATCH_OP,
    ScimSettings,
    neutral_fields,
    patch_operations,
    user_resource,
)
from lmsync.security import SecretBox
from lmsync.storage.database import make_engine, make_session_factory, transaction
from lmsync.storage.tables import Employee, LmsInterface, LmsLink, utcnow
from lmsync.sync.engine import RunOptions, SyncEngine
from lmsync.sync.mapping import create_only_fields, desired_fields
from lmsync.sync.rules import diff

CONCURRENCY = 16  # SyncEngine's default
RAW_PAGE = 1000  # scim2-server's filter.maxResults caps count at 1000
# Before marking "the previous pass ran just now" (lms_changes_since = now - 1 s): the last LMS
# write must be older than the mark's whole second, as the filter compares whole seconds.
QUIET_SECONDS = 2.1
MARK_BACK = timedelta(seconds=1)
HAND_TITLE = "Changed by hand in the LMS"


# -- B1 ----------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    """One lmsync run in its own process."""

    seconds: float  # the run itself (SyncEngine.run)
    process_seconds: float  # the whole process: interpreter start, imports, run
    status: str
    counts: dict[str, int]
    requests: int  # SCIM requests the LMS served
    writes: int
    peak_rss_mib: float
    lms_cpu_seconds: float  # CPU the LMS process spent meanwhile


@dataclass
class ClientResult:
    """The raw or naive client: measured over ``done`` employees, scaled to ``total``."""

    seconds: float  # for all employees (extrapolated when done < total)
    measured_seconds: float
    done: int
    total: int
    requests: int
    failures: int
    lms_cpu_seconds: float = float("nan")

    @property
    def extrapolated(self) -> bool:
        return self.done < self.total

    @property
    def requests_per_employee(self) -> float:
        return self.requests / self.done if self.done else float("nan")


def lmsync_env(setup: Setup) -> dict[str, str]:
    """The environment of an lmsync process on ``setup``'s database and secret key."""
    return child_env(LMSYNC_DATABASE_URL=setup.database_url, LMSYNC_DATA_DIR=str(setup.data_dir))


def lmsync_sync(workdir: Path, lms: Lms, setup: Setup, mode: str, timeout: float) -> SyncResult:
    """Run ``bench/sync_child.py`` (``activate``, ``pass``: the incremental hourly pass, or
    ``sweep``: the full one) and read the LMS's statistics."""
    lms.reset_stats()
    cpu = lms.cpu_seconds()
    child = run_child(
        [
            sys.executable,
            str(BENCH_DIR / "sync_child.py"),
            "--account",
            setup.account_id,
            "--mode",
            mode,
        ],
        env=lmsync_env(setup),
        log_path=workdir / f"sync-{mode}.log",
        timeout=timeout,
    )
    stats = lms.stats()
    return SyncResult(
        seconds=float(child.output["seconds"]),
        process_seconds=child.wall_seconds,
        status=str(child.output["status"]),
        counts={str(k): int(v) for k, v in child.output["counts"].items()},
        requests=sum(int(v) for v in stats["requests"].values()),
        writes=int(stats["writes"]),
        peak_rss_mib=child.peak_rss_mib,
        lms_cpu_seconds=lms.cpu_seconds() - cpu,
    )


def prepare_lmsync(
    workdir: Path,
    lms: Lms,
    persons: list[Person],
    *,
    max_concurrency: int = 16,
    use_bulk: bool = True,
) -> Setup:
    """A migrated SQLite database with the account, employees and the interface to ``lms``
    (``use_bulk`` False: the interface option that turns SCIM Bulk off)."""
    return dataset.build(
        dataset.sqlite_url(workdir / "lmsync.sqlite3"),
        workdir / "lmsync-data",
        persons,
        interface={
            "base_url": lms.base_url,
            "auth_type": "bearer",
            "secret": lms.token,
            "options": {"max_concurrency": max_concurrency, "use_bulk": use_bulk},
        },
    )


# -- B4 / B7 -------------------------------------------------------------------------------------


def mark_previous_pass(setup: Setup) -> datetime:
    """As if the previous hourly pass ran just now, after a quiet hour: once the LMS has had no
    write for ``QUIET_SECONDS``, the interface's ``lms_changes_since`` becomes now - 1 s (after
    the activation or a sweep it is 2 minutes before their start, which would read again every
    user they wrote)."""
    time.sleep(QUIET_SECONDS)
    since = utcnow() - MARK_BACK
    engine = make_engine(setup.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            session.get_one(LmsInterface, setup.account_id).lms_changes_since = since
    finally:
        engine.dispose()
    return since


def hourly_pass(workdir: Path, lms: Lms, setup: Setup, timeout: float) -> SyncResult:
    """B4: the incremental hourly pass with nothing to change (see ``mark_previous_pass``)."""
    mark_previous_pass(setup)
    return lmsync_sync(workdir, lms, setup, "pass", timeout)


@dataclass
class ChangedPass:
    """B7: one pass (incremental or sweep) after ``hr`` employees changed in HR and ``by_hand``
    LMS users changed in the LMS."""

    sync: SyncResult
    hr: int
    by_hand: int

    @property
    def handled(self) -> bool:
        """Whether the pass wrote each change (the HR ones out, the LMS ones back)."""
        return self.sync.counts.get("update", 0) >= self.hr + self.by_hand


def change_in_hr(setup: Setup, employee_ids: list[str], job_title: str) -> None:
    """Update the job title of these employees as the API does (``hr.employees.update``): each
    becomes due for the LMS."""
    engine = make_engine(setup.database_url)
    try:
        with transaction(make_session_factory(engine)) as session:
            for employee_id in employee_ids:
                _, changed = hr_employees.update(
                    session, None, setup.account_id, employee_id, {"job_title": job_title}
                )
                if "job_title" not in changed:
                    raise RuntimeError(f"employee {employee_id}: the job title did not change")
    finally:
        engine.dispose()


def change_in_lms(lms: Lms, user_ids: list[str], title: str) -> None:
    """Someone edits these LMS users by hand: one PATCH of their title each, through the LMS's
    SCIM API (their meta.lastModified moves)."""
    body = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "title", "value": title}],
    }
    with lms.client(connections=8) as http, ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(
                lambda user_id: http.patch(f"/Users/{user_id}", json=body).status_code, user_ids
            )
        )
    failed = [status for status in statuses if status not in (200, 204)]
    if failed:
        raise RuntimeError(f"{len(failed)} PATCHes by hand failed (first status {failed[0]})")


def pass_after_changes(
    workdir: Path,
    lms: Lms,
    setup: Setup,
    targets: list[tuple[str, str]],
    mode: str,
    timeout: float,
) -> ChangedPass:
    """B7: change the first half of ``targets`` (employee id, LMS user id) in HR and the LMS
    users of the other half by hand, then run the ``mode`` pass (``pass``: incremental, the
    previous pass marked just before the changes; ``sweep``: the full sweep)."""
    half = len(targets) // 2
    in_hr, by_hand = targets[:half], targets[half:]
    if mode == "pass":
        mark_previous_pass(setup)
    change_in_hr(setup, [employee_id for employee_id, _ in in_hr], f"Bench title ({mode})")
    change_in_lms(lms, [user_id for _, user_id in by_hand], HAND_TITLE)
    result = lmsync_sync(workdir, lms, setup, mode, timeout)
    return ChangedPass(result, len(in_hr), len(by_hand))


def _payloads(
    persons: list[Person], settings: ScimSettings
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The maintained fields of each employee and the create-only fields, as lmsync maps them."""
    account = dataset.bench_account()
    desired = [desired_fields(dataset.transient_employee(p, account.id), account) for p in persons]
    return desired, create_only_fields(account, utcnow())


def raw_activation(lms: Lms, persons: list[Person]) -> ClientResult:
    """The raw limit: the /Users pages, then one POST per new user and one PATCH per match.

    Payloads are built with lmsync's own pure functions (``user_resource``,
    ``patch_operations``), so both clients send the same bytes; only the client differs.
    """
    settings = ScimSettings(base_url=lms.base_url, secret=lms.token)
    desired, create_only = _payloads(persons, settings)
    lms.reset_stats()
    failures = 0
    with lms.client() as http:
        cpu = lms.cpu_seconds()
        started = time.perf_counter()
        by_email: dict[str, list[dict[str, Any]]] = {}
        start = 1
        while True:
            response = http.get("/Users", params={"startIndex": start, "count": RAW_PAGE})
            response.raise_for_status()
            body = response.json()
            resources = body.get("Resources") or []
            for resource in resources:
                for address in resource.get("emails") or []:
                    by_email.setdefault(str(address["value"]).casefold(), []).append(resource)
            start += len(resources)
            if not resources or start > int(body.get("totalResults", 0)):
                break

        def one(fields: Mapping[str, Any]) -> bool:
            found = by_email.get(str(fields["email"]).casefold(), [])
            if len(found) == 1:
                user = found[0]
                changed = diff(fields, neutral_fields(settings, user))
                active = None if user.get("active", True) else True
                ops = patch_operations(settings, fields, list(changed), active)
                if not ops:
                    return True
                body = {"schemas": [PATCH_OP], "Operations": ops}
                answer = http.patch(f"/Users/{user['id']}", json=body)
                return answer.status_code in (200, 204)
            answer = http.post("/Users", json=user_resource(settings, fields, create_only))
            return answer.status_code in (200, 201)

        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            failures = sum(1 for ok in pool.map(one, desired) if not ok)
        seconds = time.perf_counter() - started
        cpu = lms.cpu_seconds() - cpu
    total = len(persons)
    return ClientResult(seconds, seconds, total, total, lms.requests(), failures, cpu)


def naive_activation(lms: Lms, persons: list[Person], *, limit: int, budget: float) -> ClientResult:
    """The script a user would write: per employee, look the email up, POST when not found.

    Sequential. Stops after ``limit`` employees or ``budget`` seconds; the time for all
    employees is then extrapolated linearly (a lower bound when lookups slow down as the LMS
    grows).
    """
    settings = ScimSettings(base_url=lms.base_url, secret=lms.token)
    desired, create_only = _payloads(persons, settings)
    lms.reset_stats()
    done = failures = 0
    with lms.client(connections=1) as http:
        cpu = lms.cpu_seconds()
        started = time.perf_counter()
        for fields in desired[:limit]:
            if done and time.perf_counter() - started > budget:
                break
            email = str(fields["email"]).replace("\\", "\\\\").replace('"', '\\"')
            found = http.get("/Users", params={"filter": f'emails.value eq "{email}"'})
            if found.status_code != 200:
                failures += 1
            elif int(found.json().get("totalResults", 0)) == 0:
                created = http.post("/Users", json=user_resource(settings, fields, create_only))
                failures += created.status_code not in (200, 201)
            done += 1
        measured = time.perf_counter() - started
        cpu = lms.cpu_seconds() - cpu
    total = len(persons)
    seconds = measured * total / done if done else float("nan")
    return ClientResult(seconds, measured, done, total, lms.requests(), failures, cpu)


# -- B2 / B3 -------------------------------------------------------------------------------------


@dataclass
class LatencyResult:
    """Latencies in seconds; ``wanted`` samples were asked for."""

    samples: list[float] = field(default_factory=list)
    wanted: int = 0
    timeouts: int = 0
    stopped_by_budget: bool = False
    api_seconds: list[float] = field(default_factory=list)  # the API call alone


def linked_targets(setup: Setup, count: int) -> list[tuple[str, str]]:
    """``count`` (employee id, LMS user id) pairs of active, linked employees, at random."""
    engine = make_engine(setup.database_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(
                select(LmsLink.employee_id, LmsLink.lms_user_id)
                .join(Employee, Employee.id == LmsLink.employee_id)
                .where(Employee.access_ends_at.is_(None), LmsLink.lms_active.is_(True))
                .order_by(LmsLink.employee_id)
            ).all()
    finally:
        engine.dispose()
    pairs = [(str(r[0]), str(r[1])) for r in rows]
    return random.Random(20260101).sample(pairs, min(count, len(pairs)))


def _measure(
    count: int,
    budget: float,
    act: Callable[[int], Callable[[], bool]],
    *,
    poll: float,
    sample_timeout: float,
) -> LatencyResult:
    """For each sample: ``act(i)`` sends the API request and returns the LMS check to poll."""
    result = LatencyResult(wanted=count)
    began = time.perf_counter()
    for i in range(count):
        if i and time.perf_counter() - began > budget:
            result.stopped_by_budget = True
            break
        sent = time.perf_counter()
        check = act(i)
        result.api_seconds.append(time.perf_counter() - sent)
        while True:
            if check():
                result.samples.append(time.perf_counter() - sent)
                break
            if time.perf_counter() - sent > sample_timeout:
                result.timeouts += 1
                break
            time.sleep(poll)
    return result


def termination_latency(
    server_url: str,
    setup: Setup,
    lms: Lms,
    targets: list[tuple[str, str]],
    *,
    budget: float,
    poll: float = 0.005,
    sample_timeout: float = 60.0,
) -> LatencyResult:
    """Terminate through the API, one after another; poll the LMS user until it is inactive.

    The terminations are effective immediately (a termination dated today would keep the user
    active until the day ends: the employee is leaving, not gone)."""
    today = date.today().isoformat()
    headers = {"Authorization": f"Bearer {setup.api_token}"}
    with (
        httpx.Client(base_url=server_url, headers=headers, timeout=60) as api,
        lms.client(connections=2) as scim,
    ):

        def act(i: int) -> Callable[[], bool]:
            employee_id, user_id = targets[i]
            answer = api.post(
                f"/api/v1/employees/{employee_id}/terminate",
                json={"termination_date": today, "effective_immediately": True},
            )
            if answer.status_code != 200:
                raise RuntimeError(f"terminate answered {answer.status_code}: {answer.text}")

            def inactive() -> bool:
                user = scim.get(f"/Users/{user_id}")
                return user.status_code == 200 and user.json().get("active") is False

            return inactive

        return _measure(len(targets), budget, act, poll=poll, sample_timeout=sample_timeout)


def hire_latency(
    server_url: str,
    setup: Setup,
    lms: Lms,
    count: int,
    *,
    budget: float,
    poll: float = 0.005,
    sample_timeout: float = 60.0,
) -> LatencyResult:
    """Hire through the API, one after another; poll the LMS until the user exists.

    The LMS is polled with ``userName eq`` (lmsync sends the work email as userName): the
    embedded LMS indexes it, while an ``emails.value eq`` filter walks every user (seconds per
    request at 10,000 users), which would slow down the very requests being timed.
    """
    headers = {"Authorization": f"Bearer {setup.api_token}"}
    tag = f"{random.Random().getrandbits(32):08x}"
    with (
        httpx.Client(base_url=server_url, headers=headers, timeout=60) as api,
        lms.client(connections=2) as scim,
    ):

        def act(i: int) -> Callable[[], bool]:
            email = f"new.hire.{tag}.{i}@example.com"
            body = {
                "employee_number": f"H-{tag}-{i:05d}",
                "first_name": "Newly",
                "last_name": f"Hired {i}",
                "work_email": email,
                "job_title": "Analyst",
                "hire_date": date.today().isoformat(),
            }
            answer = api.post("/api/v1/employees", json=body)
            if answer.status_code != 201:
                raise RuntimeError(f"hire answered {answer.status_code}: {answer.text}")

            def exists() -> bool:
                found = scim.get("/Users", params={"filter": f'userName eq "{email}"'})
                return found.status_code == 200 and int(found.json().get("totalResults", 0)) > 0

            return exists

        return _measure(count, budget, act, poll=poll, sample_timeout=sample_timeout)


@dataclass
class LookupCost:
    """What one email lookup costs the LMS, as lmsync asks it for a new hire."""

    users: int
    email_seconds: float  # GET /Users?filter=emails.value eq "..."
    user_name_seconds: float  # GET /Users?filter=userName eq "..." (for comparison)


def lookup_cost(lms: Lms) -> LookupCost:
    """Time one ``emails.value eq`` and one ``userName eq`` lookup of an unknown address."""
    with lms.client(connections=1) as http:
        users = int(http.get("/Users", params={"count": 0}).json().get("totalResults", 0))
        timings = []
        for attribute in ("emails.value", "userName"):
            started = time.perf_counter()
            answer = http.get(
                "/Users", params={"filter": f'{attribute} eq "nobody.at.all@example.com"'}
            )
            answer.raise_for_status()
            timings.append(time.perf_counter() - started)
    return LookupCost(users, timings[0], timings[1])


# -- B5 ------------------------------------------------------------------------------------------


class IndexedFakeLms(FakeLms):
    """FakeLms with an index of the emails taken, so that ``create`` is O(1), and a time of
    last modification per user, so that it answers "the users changed since" (a
    ``ChangeReader``, as a SCIM LMS with ``meta.lastModified`` is) from a sorted list.

    FakeLms checks uniqueness by walking every user on each create (O(N²) over an activation),
    which would measure the fake rather than the engine.
    """

    def __init__(self) -> None:
        super().__init__()
        self._taken: set[str] = set()
        self._listing: list[RemoteUser] | None = None  # the users as listed, until a write
        self._stamp_lock = threading.Lock()
        self._modified_of: dict[str, datetime] = {}  # user id -> its last modification
        # (time, user id), sorted; an entry whose pair is not in _modified_of is stale.
        self._by_modified: list[tuple[datetime, str]] = []

    def _touch(self, user_id: str) -> None:
        with self._stamp_lock:
            now = datetime.now(UTC)
            self._modified_of[user_id] = now
            bisect.insort(self._by_modified, (now, user_id))  # an append: the clock goes on

    def changed_since(self, since: datetime) -> ChangedUsers:
        """The users modified after ``since``."""
        self._count("changed_since")
        with self._stamp_lock:
            start = bisect.bisect_left(self._by_modified, (since,))
            ids = [
                user_id
                for modified, user_id in self._by_modified[start:]
                if modified > since and self._modified_of.get(user_id) == modified
            ]
        return ChangedUsers([self._remote(user_id) for user_id in ids], datetime.now(UTC))

    def server_time(self) -> datetime | None:
        return datetime.now(UTC)

    def list_page(self, start_index: int, count: int) -> UserPage:
        """Pages of one listing (FakeLms copies the whole user list for every page)."""
        self._count("list_page")
        if self._listing is None:
            self._listing = [self._remote(user_id) for user_id in self.users]
        page = self._listing[start_index - 1 : start_index - 1 + count]
        return UserPage(users=page, total=len(self._listing))

    def update(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        changed: Collection[str],
        active: bool | None = None,
    ) -> None:
        self._listing = None
        super().update(user_id, fields, changed, active)
        self._touch(user_id)

    def add_user(self, email: str, *, active: bool = True, **fields: Any) -> str:
        self._taken.add(email.casefold())
        user_id = super().add_user(email, active=active, **fields)
        self._touch(user_id)
        return user_id

    def create(self, fields: Mapping[str, Any], create_only: Mapping[str, Any]) -> RemoteUser:
        self._write("create")
        key = str(fields.get("email", "")).casefold()
        with self._lock:
            if key in self._taken:
                raise AlreadyExistsError("userName already taken")
            self._taken.add(key)
            self._listing = None
            user_id = f"u{next(self._ids)}"
            self.users[user_id] = {**fields, **create_only, "active": True}
        self._touch(user_id)
        return self._remote(user_id)


@dataclass
class EngineResult:
    seconds: float
    employees: int
    counts: dict[str, int]
    writes: int
    # Then lmsync's own share of B4: the incremental hourly pass with nothing to change...
    pass_seconds: float
    pass_writes: int
    pass_read_changes: bool  # it asked the in-memory LMS for the users changed (an incremental)
    # ... and the daily full sweep with nothing to change.
    sweep_seconds: float
    sweep_writes: int

    @property
    def per_second(self) -> float:
        return self.employees / self.seconds if self.seconds else float("nan")


def engine_alone(database_url: str, data_dir: Path, persons: list[Person]) -> EngineResult:
    """The first activation of ``persons`` on the in-memory LMS, in this process."""
    setup = dataset.build(
        database_url, data_dir, persons, interface={"base_url": "http://fake.invalid"}
    )
    fake = IndexedFakeLms()
    seeds, _ = dataset.seed_users(persons)
    for user in seeds:
        fake.add_user(
            user["emails"][0]["value"],
            first_name=user["name"]["givenName"],
            last_name=user["name"]["familyName"],
        )

    def factory(interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
        return fake

    engine = make_engine(database_url)
    try:
        sessions = make_session_factory(engine)
        box = SecretBox.from_settings(None, data_dir)
        sync = SyncEngine(sessions, box, connector_factory=factory)
        with transaction(sessions) as session:
            interface = session.get_one(LmsInterface, setup.account_id)
            interface.active = True
            interface.activated_at = utcnow()
        started = time.perf_counter()
        summary = sync.run(
            setup.account_id, RunOptions(trigger="activation", full=True, activating=True)
        )
        seconds = time.perf_counter() - started
        writes = fake.writes()
        # As on the LMS (``mark_previous_pass``): the previous pass ran just now.
        time.sleep(1.1)
        with transaction(sessions) as session:
            interface = session.get_one(LmsInterface, setup.account_id)
            interface.lms_changes_since = utcnow() - MARK_BACK
        reads = fake.calls.get("changed_since", 0)
        started = time.perf_counter()
        sync.run(setup.account_id, RunOptions(trigger="hourly", incremental=True))
        pass_seconds = time.perf_counter() - started
        pass_writes = fake.writes() - writes
        read_changes = fake.calls.get("changed_since", 0) > reads
        before_sweep = fake.writes()
        started = time.perf_counter()
        sync.run(setup.account_id, RunOptions(trigger="hourly", full=True))
        sweep_seconds = time.perf_counter() - started
        sweep_writes = fake.writes() - before_sweep
    finally:
        engine.dispose()
    return EngineResult(
        seconds,
        len(persons),
        dict(summary.counts),
        writes,
        pass_seconds,
        pass_writes,
        read_changes,
        sweep_seconds,
        sweep_writes,
    )
