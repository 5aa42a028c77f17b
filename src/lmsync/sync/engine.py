"""The sync engine: runs the rules for one account's due (or all) employees and records the result.

Reads HR state and links, asks ``rules.decide`` for each employee (looking work emails up in the
LMS for the unlinked ones, by paging through all LMS users once when there are many), stops before
writing when too many deactivations are planned, then carries the actions out with bounded
concurrency and records links, per-employee states and the run's outcomes in batches.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from lmsync import metrics
from lmsync.domain.employment import is_active
from lmsync.domain.errors import Conflict, NotFound
from lmsync.i18n import N_, _
from lmsync.lms.base import (
    AlreadyExistsError,
    BatchConnector,
    ChangeReader,
    Connector,
    FilterUnsupportedError,
    LmsError,
    MisconfiguredError,
    MixedBatchConnector,
    NotFoundError,
    Pingable,
    RejectedError,
    RemoteUser,
    TransientError,
    UpdateRequest,
)
from lmsync.lms.registry import ConnectorFactory, Shaper, build_connector, shaper
from lmsync.security import SecretBox
from lmsync.storage.tables import (
    Account,
    Employee,
    LmsInterface,
    LmsState,
    SyncOutcome,
    SyncRun,
    utcnow,
)
from lmsync.sync import guard, lease, rules, snapshot
from lmsync.sync.guard import GuardDecision, GuardSettings
from lmsync.sync.lease import Claim, LeaseLost
from lmsync.sync.mapping import create_only_fields, desired_fields, shown
from lmsync.sync.recording import Planned, Result, record_batch, record_plan
from lmsync.sync.rules import Action, EmployeeView, Kind, LinkView, Scope
from lmsync.sync.snapshot import EmployeeRecord, LinkRecord, StateRecord
from lmsync.sync.unlinked import record as record_unlinked

log = structlog.get_logger("lmsync.sync")
T = TypeVar("T")

LOCK_LEASE = timedelta(seconds=60)  # renewed every third of it while the run lives
BATCH = 500  # results recorded per transaction
# Above this many unlinked employees, page through all LMS users once instead of one lookup each.
LIST_ALL_THRESHOLD = 50
# Users per list page; servers cap it at their own maximum (RFC 7644 §3.4.2.4) and paging
# follows what they return.
LIST_PAGE_SIZE = 1000
# Writes go to the worker threads in chunks of up to this many employees (fewer when there is
# little to do, so that every worker gets some): a chunk costs one hand-over between threads.
MAX_CHUNK = 32


# The next incremental read starts this long before the previous one did (by the LMS's clock,
# or ours when it is behind): a user saved while the pages were read, or stamped by a server
# whose clock lags a little, is read again rather than missed.
CHANGES_OVERLAP = timedelta(minutes=2)

YIELD_CHECK_SECONDS = 1.0
_DEFERRED = "deferred"  # a write not handed out: the run yielded; the employee stays due

# Counts of a run's results that mean the LMS took (or already had) what was asked.
_SUCCEEDED_WRITES = ("create", "link", "update", "deactivate", "reactivate")

_AFTER_LISTING = Action(Kind.NONE, N_("decided once the LMS users are read"))

# What a run stores (outcome reasons, its message) in English; ``sync.reasons.stored`` says the
# ones below again in the reader's language.
LOOKUP_FAILED = N_("email lookup failed: {error}")
EXISTS_NOT_FOUND = N_("the LMS says the user exists but it cannot be found")
GONE_DROPPED = N_("LMS user gone; link dropped")
GONE_SEVERAL = N_("LMS user gone and several LMS users have this email")
GONE_CREATED = N_("LMS user gone; created again")
HELD = N_("waiting for an HR manager's approval (too many deactivations at once)")
LEFT_FOR_NEXT_RUN = N_("{count} employees left to the next run: a termination went first")
NOTHING_WENT_THROUGH = N_("no write went through ({failed} failed); most often: {reason}")
SEE_OUTCOMES = N_("see the run's outcomes")
INTERNAL_ERROR = N_("internal error ({error})")


class SyncBusy(Conflict):
    """Another sync of the same account is running."""


class RunTakenOver(Conflict):
    """A queued run was started, ended or taken over by another server meanwhile."""


@dataclass
class RunOptions:
    trigger: str  # hourly | manual | change | activation | approval
    dry_run: bool = False
    full: bool = False
    employee_ids: list[str] | None = None
    approved: bool = False  # the deactivation guard was approved for this run
    activating: bool = False  # the first activation: the interface counts as active
    actor_user_id: str | None = None
    run_id: str | None = None  # a run row created beforehand (status "queued")
    # A due run of the job queue: only the terminations in effect (``sync_deactivate``), and at
    # most ``limit`` employees (the rest stay due for the next slice).
    terminations_only: bool = False
    limit: int | None = None
    # An hourly pass that costs what changed: the due employees, and those whose LMS user was
    # modified since the previous pass (``filter=meta.lastModified gt``), instead of everyone.
    incremental: bool = False
    # Asked every second while the writes go on: True when more urgent work waits for this
    # account (a termination, behind this run's lock). The run then hands out no more writes,
    # leaves the rest due and ends (``RunSummary.more``). For due runs and activations only:
    # what they leave is still due; a full pass's in-sync employees are not.
    yield_to: Callable[[], bool] | None = None

    _STORED = ("employee_ids", "approved", "activating", "actor_user_id")

    def stored(self) -> dict[str, Any]:
        """What the run row keeps of the options, so another server can carry a queued run
        out (trigger, full and dry run have columns of their own)."""
        return {name: getattr(self, name) for name in self._STORED}

    @classmethod
    def from_run(cls, run: SyncRun) -> RunOptions:
        stored = run.options or {}
        return cls(
            trigger=run.trigger,
            dry_run=run.dry_run,
            full=run.full,
            run_id=run.id,
            **{name: stored[name] for name in cls._STORED if name in stored},
        )


@dataclass(frozen=True)
class PassMarks:
    """What an hourly pass knows of the previous ones (from the interface)."""

    modified_filter: bool | None  # the LMS filters on meta.lastModified (None: not known yet)
    changes_since: datetime | None  # read the LMS users changed after this (the LMS's clock)
    base_url: str  # the LMS they are about (moved elsewhere meanwhile: nothing is kept)


@dataclass
class LmsChanges:
    """The LMS users an incremental pass read (None: it could not ask), and where the next
    read starts."""

    users: dict[str, RemoteUser] | None
    next_since: datetime | None
    modified_filter: bool | None  # what this read found out (None: nothing)


@dataclass
class RunSummary:
    run_id: str
    status: str
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    more: bool = False  # the run's ``limit`` left due employees for another run


def _delay(error: BaseException | None, attempt: int) -> float:
    """How long to wait after failed attempt number ``attempt`` (Retry-After when given)."""
    if isinstance(error, TransientError) and error.retry_after is not None:
        return min(error.retry_after, 30.0)
    return float(min(0.25 * 2 ** (attempt - 1), 8.0))


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    return _delay(error, state.attempt_number + 1)  # +1: the first attempt ran before tenacity


def with_retries(fn: Callable[[], Any], attempts: int = 5) -> Any:
    """Call ``fn``, retrying transient LMS failures with backoff (Retry-After when given).

    The first call goes straight through: tenacity's bookkeeping (7 µs a call, paid once per LMS
    request) starts only once something failed."""
    try:
        return fn()
    except TransientError as exc:
        if attempts <= 1:
            raise
        time.sleep(_delay(exc, 1))
    for attempt in Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(attempts - 1),
        wait=_wait,
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover


class SyncEngine:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secrets: SecretBox,
        *,
        connector_factory: ConnectorFactory = build_connector,
        concurrency: int = 16,
        retry_attempts: int = 5,
        owner: str | None = None,
        lock_lease: timedelta = LOCK_LEASE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.secrets = secrets
        self.connector_factory = connector_factory
        self.concurrency = concurrency
        self.retry_attempts = retry_attempts
        self.owner = owner or uuid.uuid4().hex
        self.lock_lease = lock_lease
        self.clock = clock  # "now" for the rules (a termination takes effect at a boundary)
        self._claims_by_run: dict[str, Claim] = {}  # the runs this engine carries out now

    def connector_for(self, interface: LmsInterface, *, dry_run: bool) -> Connector:
        secret = (
            self.secrets.decrypt(interface.secret_encrypted) if interface.secret_encrypted else None
        )
        return self.connector_factory(interface, secret, dry_run)

    # -- the run -------------------------------------------------------------------------------
    def run(self, account_id: str, options: RunOptions) -> RunSummary:
        """Run the rules for ``account_id``. Raises ``SyncBusy`` when a sync already runs."""
        if options.dry_run:
            return self._run(account_id, options, None)
        claim = lease.acquire(self.sessions, account_id, self.owner, self.lock_lease)
        if claim is None:
            raise SyncBusy(_("a sync of this account is already running"))
        stop = threading.Event()
        renewer = threading.Thread(
            target=lease.keep_renewed, args=(self.sessions, claim, stop), daemon=True
        )
        renewer.start()
        try:
            return self._run(account_id, options, claim)
        finally:
            stop.set()
            renewer.join()
            if claim.run_id is not None:
                self._claims_by_run.pop(claim.run_id, None)
            lease.release(self.sessions, claim)

    def _start_run(
        self, session: Session, account_id: str, options: RunOptions, claim: Claim | None
    ) -> SyncRun:
        run = session.get(SyncRun, options.run_id) if options.run_id else None
        if run is None:
            run = SyncRun(
                id=options.run_id or str(uuid.uuid4()),
                account_id=account_id,
                trigger=options.trigger,
                dry_run=options.dry_run,
                full=options.full,
                options=options.stored(),
            )
            session.add(run)
        elif run.status != "queued":
            # Taken over (interrupted, or run by another server) while this one waited.
            raise RunTakenOver(_("this run is {status}, not queued any more", status=run.status))
        run.status = "running"
        run.started_at = utcnow()
        if claim is not None:
            run.owner, run.fence, run.heartbeat_at = claim.owner, claim.fence, utcnow()
        return run

    def _run(self, account_id: str, options: RunOptions, claim: Claim | None) -> RunSummary:
        with self.sessions() as session, session.begin():
            account = session.get(Account, account_id)
            interface = session.get(LmsInterface, account_id)
            if account is None or interface is None:
                raise NotFound(_("this account has no LMS interface"))
            run = self._start_run(session, account_id, options, claim)
            run_id = run.id
            if claim is not None:
                claim.run_id = run_id
                self._claims_by_run[run_id] = claim
            if options.activating and not options.dry_run:
                # Active only from here, under the account's lock: the worker (which looks at
                # active interfaces only) cannot slip a change run in before the activation.
                interface.active = True
                interface.activated_at = interface.activated_at or self.clock()
                session.flush()  # before the expunge below, which would drop the change
            scope = Scope(
                user_sync_enabled=account.user_sync_enabled,
                interface_active=interface.active or options.activating,
                sync_users=interface.sync_users,
                deactivate_terminated=interface.deactivate_terminated,
            )
            guard = GuardSettings(
                interface.guard_percent,
                interface.guard_minimum,
                timedelta(minutes=interface.guard_window_minutes or 60),
            )
            concurrency = int((interface.options or {}).get("max_concurrency", self.concurrency))
            marks = PassMarks(
                interface.modified_filter, interface.lms_changes_since, interface.base_url
            )
            session.expunge(account)
            session.expunge(interface)
        bound = log.bind(account_id=account_id, run_id=run_id, trigger=options.trigger)
        bound.info("sync started", dry_run=options.dry_run, full=options.full)
        try:
            connector = self.connector_for(interface, dry_run=options.dry_run)
        except (LmsError, ValueError) as exc:
            return self._finish(run_id, "failed", {}, getattr(exc, "message", str(exc)))
        try:
            now = self.clock()
            changes = self._read_changes(connector, marks) if options.incremental else None
            with self.sessions() as session:
                planned, more = self._load(
                    session, account, scope, options, now, shaper(interface), changes
                )
            summary = self._run_with(
                connector,
                account,
                scope,
                guard,
                run_id,
                options,
                bound,
                concurrency,
                planned,
                now,
                changes,
                marks.base_url,
            )
            summary.more = summary.more or more
            return summary
        except LeaseLost as exc:
            # Another server holds the account now: record nothing more, only say so.
            bound.warning("sync stopped", reason=exc.message)
            return self._interrupted(run_id, exc.message)
        except LmsError as exc:
            # The LMS could not be read (down, misconfigured) after the retries: nothing more
            # can be done this run; what it recorded stays, and the reason is the run's message.
            bound.warning("sync failed", error=exc.message)
            return self._finish(run_id, "failed", None, exc.message)
        except Exception as exc:
            # The batches recorded so far stay; the run says it stopped instead of "running".
            bound.exception("sync failed")
            with contextlib.suppress(LeaseLost):
                message = INTERNAL_ERROR.format(error=type(exc).__name__)
                self._finish(run_id, "failed", None, message)
            raise
        finally:
            connector.close()

    def _run_with(
        self,
        connector: Connector,
        account: Account,
        scope: Scope,
        guard: GuardSettings,
        run_id: str,
        options: RunOptions,
        bound: Any,
        concurrency: int,
        planned: list[Planned],
        now: datetime,
        changes: LmsChanges | None = None,
        base_url: str | None = None,
    ) -> RunSummary:
        remote_all: dict[str, RemoteUser] | None = None
        unlinked = [p for p in planned if p.action.kind == Kind.CORRELATE]
        sweep_mark = utcnow()  # the real clock: compared with the LMS's timestamps
        if options.full or len(unlinked) > LIST_ALL_THRESHOLD:
            remote_all = self._list_all(connector)
        self._correlate(connector, account.id, planned, scope, remote_all, concurrency)
        if options.dry_run:
            self._record_plan(
                run_id, account.id, planned, "planned", create_only_fields(account, now)
            )
            return self._finish(run_id, "succeeded", _count(planned), None)
        decision = None
        if not options.approved:
            decision = self._guard(run_id, account.id, planned, guard, now)
        held = decision is not None and decision.hold
        deferred = self._execute(
            connector,
            account,
            planned,
            run_id,
            now,
            concurrency,
            hold=held,
            yield_to=options.yield_to,
        )
        with self.sessions() as session, session.begin():
            self._fence(session, run_id)
            run = session.get_one(SyncRun, run_id)
            final = dict(run.counts or {})
            if options.full or options.incremental:
                interface = session.get_one(LmsInterface, account.id)
                interface.last_full_pass_at = now
                # What was read is about this LMS: kept unless the interface moved meanwhile
                # (its save reset it for a sweep of the new one).
                same = base_url is None or interface.base_url == base_url
                if options.full:
                    interface.last_sweep_at = now
                    if same:
                        interface.lms_changes_since = _next_since(sweep_mark, connector)
                elif changes is not None and same:
                    if changes.modified_filter is not None:
                        interface.modified_filter = changes.modified_filter
                    if changes.next_since is not None:
                        interface.lms_changes_since = changes.next_since
        if options.full and remote_all is not None:
            record_unlinked(self.sessions, account.id, remote_all, now)
        bound.info("sync finished", **final)
        if decision is not None and decision.hold:
            bound.warning("deactivations held by the guard", held=final.get("held", 0))
            if decision.join is None:
                return self._finish(run_id, "held", final, decision.message)
        failed = final.get("failed", 0)
        message = decision.message if decision is not None and decision.join else None
        if deferred:
            left = LEFT_FOR_NEXT_RUN.format(count=deferred)
            message = f"{message}; {left}" if message else left
        for notice in getattr(connector, "notices", None) or []:
            message = f"{message}; {notice}" if message else notice
        if failed and not any(final.get(kind, 0) for kind in _SUCCEEDED_WRITES):
            # Nothing went through: the run failed, and the reason most of it did is the news.
            reason = self._commonest_failure(run_id)
            message = NOTHING_WENT_THROUGH.format(failed=failed, reason=reason)
            return self._finish(run_id, "failed", final, message)
        summary = self._finish(run_id, "succeeded" if not failed else "partial", final, message)
        summary.more = bool(deferred)
        return summary

    def _commonest_failure(self, run_id: str) -> str:
        with self.sessions() as session:
            row = session.execute(
                select(SyncOutcome.reason, func.count().label("n"))
                .where(SyncOutcome.run_id == run_id, SyncOutcome.outcome == "failed")
                .group_by(SyncOutcome.reason)
                .order_by(func.count().desc(), SyncOutcome.reason)
                .limit(1)
            ).first()
        return str(row[0]) if row is not None else SEE_OUTCOMES

    def _guard(
        self,
        run_id: str,
        account_id: str,
        planned: list[Planned],
        settings: GuardSettings,
        now: datetime,
    ) -> GuardDecision | None:
        """Decide whether this run's deactivations may go through (see ``guard``); when they
        join a held run, add them to its held set now, so that its approval covers them."""
        deactivating = [p for p in planned if p.action.kind == Kind.DEACTIVATE]
        if not deactivating:
            return None
        with self.sessions() as session, session.begin():
            window = guard.read_window(session, account_id, now - settings.window)
            decision = guard.decide(settings, window, len(deactivating))
            if decision.join is None:
                return decision
            already = set(guard.held_employee_ids(session, decision.join))
            joining = [p for p in deactivating if p.employee.id not in already]
            counts = session.scalar(
                select(SyncRun.counts).where(SyncRun.id == decision.join).with_for_update()
            )
            merged = dict(counts or {})
            merged["held"] = merged.get("held", 0) + len(joining)
            # Conditional: the hold may have been approved or rejected meanwhile.
            joined = session.execute(
                update(SyncRun)
                .where(SyncRun.id == decision.join, SyncRun.status == "held")
                .values(counts=merged)
            )
            if getattr(joined, "rowcount", 0):
                record_plan(session.connection(), decision.join, account_id, joining, "held", now)
                return decision
        # The hold was decided meanwhile: decide again without it.
        window = replace(window, open_hold=None)
        return guard.decide(settings, window, len(deactivating))

    def _load(
        self,
        session: Session,
        account: Account,
        scope: Scope,
        options: RunOptions,
        now: datetime,
        shape: Shaper | None = None,
        changes: LmsChanges | None = None,
    ) -> tuple[list[Planned], bool]:
        """The employees this run looks at, with their links and states, and whether its
        ``limit`` left some due employees for another run.

        An incremental run reads only the due employees' rows, so its cost does not grow with
        the size of the account."""
        due_only = not options.full and options.employee_ids is None
        employees = snapshot.employees(
            session,
            account.id,
            employee_ids=options.employee_ids,
            due_only=due_only,
            now=now,
            terminated_only=due_only and options.terminations_only,
        )
        ids = None if options.full else [e.id for e in employees]
        states = snapshot.by_employee(session, StateRecord, account.id, ids)
        more = False
        if due_only and (options.trigger == "change" or options.incremental):
            employees = [e for e in employees if _ready(e, states.get(e.id), now)]
            if options.limit is not None and len(employees) > options.limit:
                employees.sort(key=lambda e: (e.lms_due_at or now, e.id))  # the oldest first
                employees, more = employees[: options.limit], True
            ids = [e.id for e in employees]
        remote = changes.users if changes is not None and changes.users else {}
        if remote and due_only:
            extra = _touched(session, account.id, remote, {e.id for e in employees})
            if extra:
                added = snapshot.employees(
                    session, account.id, employee_ids=extra, due_only=False, now=now
                )
                employees.extend(added)
                states.update(snapshot.by_employee(session, StateRecord, account.id, extra))
                ids = [e.id for e in employees]
        links = snapshot.by_employee(session, LinkRecord, account.id, ids)
        keys = {e.work_email_key for e in employees if e.work_email_key}
        among = keys if not options.full and len(keys) <= 500 else None
        shared = snapshot.shared_email_keys(session, account.id, among, now)
        # Terminations first: they are the ones that must not wait.
        active = {e.id: is_active(e.access_ends_at, now) for e in employees}
        employees.sort(key=lambda e: (active[e.id], e.id))
        planned = []
        for employee in employees:
            view = EmployeeView(
                id=employee.id,
                active=active[employee.id],
                excluded=employee.lms_excluded,
                email_key=employee.work_email_key,
                email_shared=employee.work_email_key in shared,
                desired=desired_fields(employee, account, shape),
            )
            link = links.get(employee.id)
            if link is not None and options.full:
                # A full pass reads every LMS user first; linked employees are decided against
                # what the LMS holds then (_correlate), not twice.
                action = _AFTER_LISTING
            else:
                link_view = (
                    LinkView(
                        link.lms_user_id,
                        link.lms_active,
                        link.written,
                        remote=remote.get(link.lms_user_id),
                    )
                    if link
                    else None
                )
                action = rules.decide(view, link_view, scope)
            planned.append(Planned(employee, view, link, states.get(employee.id), action))
        return planned, more

    def _read_changes(self, connector: Connector, marks: PassMarks) -> LmsChanges:
        """The LMS users modified since the previous pass, when the LMS can say which."""
        if (
            marks.modified_filter is False
            or marks.changes_since is None
            or not isinstance(connector, ChangeReader)
        ):
            self._ping(connector)
            return LmsChanges(None, None, None)
        since = marks.changes_since
        mark = utcnow()
        try:
            read = with_retries(partial(connector.changed_since, since), self.retry_attempts)
        except FilterUnsupportedError:
            # Remembered: from now on the daily sweep alone reads the LMS.
            log.warning("the LMS does not filter on meta.lastModified; daily sweep only")
            return LmsChanges(None, None, False)  # it answered: reached
        users = {user.id: user for user in read.users}
        return LmsChanges(users, _next_since(mark, connector), True)

    def _ping(self, connector: Connector) -> None:
        """Nothing to read from the LMS: still one cheap request, so that a pass against an LMS
        that is down fails (and says why) rather than succeeding without having reached it."""
        if isinstance(connector, Pingable):
            with_retries(connector.ping, self.retry_attempts)

    def _list_all(self, connector: Connector) -> dict[str, RemoteUser]:
        users: dict[str, RemoteUser] = {}
        start, page_size = 1, LIST_PAGE_SIZE
        while True:
            page = with_retries(partial(connector.list_page, start, page_size), self.retry_attempts)
            new = [u for u in page.users if u.id not in users]
            for user in page.users:
                users[user.id] = user
            start += len(page.users)
            # Stop at totalResults, on an empty page, or when a page brings nothing new (some
            # servers return page 1 again past the end).
            if not page.users or not new or start > page.total:
                break
        return users

    def _claims(self, account_id: str, user_ids: set[str]) -> dict[str, str]:
        """Which of these LMS users are already linked, and to whom."""
        with self.sessions() as session:
            return snapshot.claimed_users(session, account_id, user_ids)

    def _correlate(
        self,
        connector: Connector,
        account_id: str,
        planned: list[Planned],
        scope: Scope,
        remote_all: dict[str, RemoteUser] | None,
        concurrency: int,
    ) -> None:
        by_email: dict[str, list[RemoteUser]] = {}
        if remote_all is not None:
            for user in remote_all.values():
                if user.email_key:
                    by_email.setdefault(user.email_key, []).append(user)
        lookups: dict[int, Future[list[RemoteUser]]] = {}
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for index, item in enumerate(planned):
                if item.action.kind == Kind.CORRELATE and remote_all is None:
                    email = item.employee.work_email or ""
                    lookups[index] = pool.submit(
                        with_retries,
                        partial(connector.find_by_email, email),
                        self.retry_attempts,
                    )
            found_by_index: dict[int, list[RemoteUser]] = {}
            for index, item in enumerate(planned):
                link = item.link
                if (
                    remote_all is not None
                    and link is not None
                    and item.action.kind != Kind.CORRELATE
                ):
                    remote = remote_all.get(link.lms_user_id)
                    view = LinkView(
                        link.lms_user_id,
                        link.lms_active,
                        link.written,
                        gone=remote is None,
                        remote=remote,
                    )
                    item.action = rules.decide(item.view, view, scope)
                if item.action.kind != Kind.CORRELATE:
                    continue
                try:
                    if remote_all is not None:
                        found_by_index[index] = by_email.get(item.view.email_key or "", [])
                    else:
                        found_by_index[index] = lookups[index].result()
                except LmsError as exc:
                    item.action = Action(Kind.CORRELATE, LOOKUP_FAILED.format(error=exc.message))
        claimed = self._claims(
            account_id, {u.id for found in found_by_index.values() for u in found}
        )
        for index, found in found_by_index.items():
            item = planned[index]
            matches = tuple(
                RemoteUser(u.id, u.active, u.email_key, u.fields, claimed.get(u.id)) for u in found
            )
            gone_view = (
                LinkView(item.link.lms_user_id, item.link.lms_active, item.link.written, gone=True)
                if item.link is not None
                else None
            )
            item.action = rules.decide(item.view, gone_view, scope, matches)
            if item.action.kind == Kind.LINK and item.action.lms_user_id is not None:
                # Within one run, an LMS user can be claimed by one employee only.
                owner = claimed.setdefault(item.action.lms_user_id, item.employee.id)
                if owner != item.employee.id:
                    item.action = Action(
                        Kind.CONFLICT, rules.LINKED_ELSEWHERE.format(employee=owner)
                    )

    # -- carrying the actions out ------------------------------------------------------------------
    def _execute(
        self,
        connector: Connector,
        account: Account,
        planned: list[Planned],
        run_id: str,
        now: datetime,
        concurrency: int,
        *,
        hold: bool = False,
        yield_to: Callable[[], bool] | None = None,
    ) -> int:
        """Carry the writes out on the worker threads; record the results in plan order.
        ``hold``: the deactivations wait for approval instead (recorded as held). Returns how
        many writes were not handed out because ``yield_to`` said so."""
        create_only = create_only_fields(account, now)
        results: list[Result | None] = [
            _held(item)
            if hold and item.action.kind == Kind.DEACTIVATE
            else None
            if item.action.writes
            else _no_write(item)
            for item in planned
        ]
        writes = [index for index, result in enumerate(results) if result is None]
        size = max(1, min(MAX_CHUNK, len(writes) // (concurrency * 4)))
        # A lone write (a termination) goes as a single request: no batch to ask the LMS about.
        batch = _batch_connector(connector) if len(writes) > 1 else None
        if batch is not None:
            # A chunk is a request (or a few): as large as the connector takes, spread over
            # the workers.
            size = max(1, min(batch.batch_size, -(-len(writes) // concurrency)))
        chunks = [writes[start : start + size] for start in range(0, len(writes), size)]
        claim = self._claims_by_run.get(run_id)
        stop, done = threading.Event(), threading.Event()
        watcher = None
        if yield_to is not None and writes:
            watcher = threading.Thread(
                target=_watch, args=(yield_to, stop, done), name="lmsync-yield", daemon=True
            )
            watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                jobs = [
                    (
                        chunk,
                        pool.submit(
                            self._apply_all,
                            connector,
                            batch,
                            [planned[i] for i in chunk],
                            create_only,
                            claim,
                            stop,
                        ),
                    )
                    for chunk in chunks
                ]
                try:
                    return self._collect(jobs, results, run_id, account.id)
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # stop handing out writes
                    raise
        finally:
            done.set()
            if watcher is not None:
                watcher.join()

    def _collect(
        self,
        jobs: list[tuple[list[int], Future[list[Result]]]],
        results: list[Result | None],
        run_id: str,
        account_id: str,
    ) -> int:
        """Record the results in plan order, in batches, as the chunks finish; returns how many
        were deferred (not recorded: those employees stay due)."""
        total = len(results)
        deferred = 0
        # Jobs hold increasing indexes, so the first missing result is in the next job.
        next_job = 0
        pending: list[Result] = []
        done = 0
        for index in range(total):
            while results[index] is None:
                indexes, future = jobs[next_job]
                for i, applied in zip(indexes, future.result(), strict=True):
                    results[i] = applied
                next_job += 1
            result = results[index]
            assert result is not None
            if result.outcome == _DEFERRED:
                deferred += 1
                continue
            pending.append(result)
            if len(pending) >= BATCH:
                done += len(pending)
                self._record(run_id, account_id, pending, done, total)
                pending = []
        done += len(pending)
        self._record(run_id, account_id, pending, done, total)
        return deferred

    def _apply_all(
        self,
        connector: Connector,
        batch: BatchConnector | None,
        items: list[Planned],
        create_only: Mapping[str, Any],
        claim: Claim | None,
        stop: threading.Event,
    ) -> list[Result]:
        if batch is not None:  # decided once per run (``_batch_connector``)
            return self._apply_batched(batch, items, create_only, claim, stop)
        results = []
        for item in items:
            if stop.is_set():  # the run yields: this write is left for the next run
                results.append(Result(item, _DEFERRED, str(item.action.kind)))
                continue
            if claim is not None:
                claim.check()  # a server that lost the account's lock writes nothing more
            results.append(self._apply(connector, item, create_only))
        return results

    def _apply_batched(
        self,
        connector: BatchConnector,
        items: list[Planned],
        create_only: Mapping[str, Any],
        claim: Claim | None,
        stop: threading.Event,
    ) -> list[Result]:
        """The chunk's creates in one ``create_many``, its updates in one ``update_many`` (the
        connector splits them into requests); what follows from an answer (linking a user that
        already existed, correlating again a user that is gone) one by one."""
        if stop.is_set():
            return [Result(item, _DEFERRED, str(item.action.kind)) for item in items]
        if claim is not None:
            claim.check()
        results: list[Result | None] = [None] * len(items)
        creates = [i for i, item in enumerate(items) if item.action.kind == Kind.CREATE]
        updates = [
            i
            for i, item in enumerate(items)
            if item.action.kind in _UPDATES and item.action.lms_user_id is not None
        ]
        wanted = [dict(items[i].view.desired) for i in creates]
        requests = [_update_request(items[i]) for i in updates]
        made, errors = self._write_batch(connector, wanted, requests, create_only)
        for i, desired, user in zip(creates, wanted, made, strict=True):
            item = items[i]
            if isinstance(user, MisconfiguredError):
                raise user
            if isinstance(user, AlreadyExistsError):
                results[i] = self._guarded(item, partial(self._exists, connector, item, desired))
            elif isinstance(user, LmsError):
                results[i] = _failed(item, user)
            else:
                results[i] = _created(item, user, desired, create_only)
        for i, error in zip(updates, errors, strict=True):
            item = items[i]
            if error is None:
                results[i] = _updated(item)
            elif isinstance(error, MisconfiguredError):
                raise error
            elif isinstance(error, NotFoundError) and item.action.kind != Kind.LINK:
                desired = dict(item.view.desired)
                results[i] = self._guarded(
                    item, partial(self._relink, connector, item, desired, create_only)
                )
            else:
                results[i] = _failed(item, error)
        return [
            result if result is not None else self._apply(connector, items[i], create_only)
            for i, result in enumerate(results)
        ]

    def _write_batch(
        self,
        connector: BatchConnector,
        wanted: list[dict[str, Any]],
        requests: list[UpdateRequest],
        create_only: Mapping[str, Any],
    ) -> tuple[list[RemoteUser | LmsError], list[LmsError | None]]:
        """A chunk's creations and updates, in the same requests when the connector mixes them
        (one bulk request for both), each user's transient failure sent again."""
        count = len(wanted)
        if not isinstance(connector, MixedBatchConnector):
            # Separate requests, retried apart: a failed update never sends the creations again.
            made = self._each_with_retries(
                lambda picked: connector.create_many([(wanted[k], create_only) for k in picked]),
                count,
            )
            updated = self._each_with_retries(
                lambda picked: connector.update_many([requests[k] for k in picked]),
                len(requests),
            )
            return made, [r if isinstance(r, LmsError) else None for r in updated]
        mixed = connector

        def send(picked: list[int]) -> list[RemoteUser | LmsError | None]:
            creates = [(wanted[k], create_only) for k in picked if k < count]
            updates = [requests[k - count] for k in picked if k >= count]
            made, errors = mixed.write_many(creates, updates)
            return [*made, *errors]  # ``picked`` is ascending: the creations come first

        results = self._each_with_retries(send, count + len(requests))
        made = [r for r in results[:count] if r is not None]
        assert len(made) == count
        return made, [r if isinstance(r, LmsError) else None for r in results[count:]]

    def _each_with_retries(
        self, send: Callable[[list[int]], list[T]], count: int
    ) -> list[T | LmsError]:
        """``send(indexes)``'s per-user results for all ``count`` users; the users whose own
        result is a transient failure (a 503 or 429 inside a bulk answer) are sent again, alone
        with the others in that case, with the same backoff as single requests."""
        if count == 0:
            return []
        results = self._whole_batch(lambda: send(list(range(count))), count)
        for attempt in range(1, self.retry_attempts):
            again = [i for i, result in enumerate(results) if isinstance(result, TransientError)]
            if not again:
                break
            first = results[again[0]]
            time.sleep(_delay(first if isinstance(first, TransientError) else None, attempt))
            redone = self._whole_batch(partial(send, again), len(again))
            for i, result in zip(again, redone, strict=True):
                results[i] = result
        return results

    def _whole_batch(self, call: Callable[[], list[T]], count: int) -> list[T | LmsError]:
        """``call``'s per-user results, retried while the whole request fails transiently; when
        it still fails, that error for each of its ``count`` users (a misconfiguration stops the
        run)."""
        try:
            results: list[T | LmsError] = list(with_retries(call, self.retry_attempts))
        except MisconfiguredError:
            raise
        except LmsError as exc:
            return [exc] * count
        return results

    def _guarded(self, item: Planned, step: Callable[[], Result]) -> Result:
        """``step``'s result, or the failure it raised (a misconfiguration stops the run)."""
        try:
            return step()
        except MisconfiguredError:
            raise
        except LmsError as exc:
            return _failed(item, exc)

    def _apply(self, connector: Connector, item: Planned, create_only: Mapping[str, Any]) -> Result:
        return self._guarded(
            item, lambda: self._apply_action(connector, item, item.action, create_only)
        )

    def _apply_action(
        self, connector: Connector, item: Planned, action: Action, create_only: Mapping[str, Any]
    ) -> Result:
        desired = dict(item.view.desired)
        retry = self.retry_attempts
        kind = action.kind
        if kind == Kind.CREATE:
            try:
                user = with_retries(lambda: connector.create(desired, create_only), retry)
            except AlreadyExistsError:
                return self._exists(connector, item, desired)
            return _created(item, user, desired, create_only)
        if kind == Kind.LINK and not (action.changes or action.reactivate):
            return _updated(item)  # linked as it is: nothing to write
        request = _update_request(item)
        try:
            with_retries(
                lambda: connector.update(
                    request.user_id, request.fields, request.changed, request.active
                ),
                retry,
            )
        except NotFoundError:
            if kind == Kind.LINK:  # the user just found is gone: that employee's failure
                raise
            return self._relink(connector, item, desired, create_only)
        return _updated(item)

    def _exists(self, connector: Connector, item: Planned, desired: dict[str, Any]) -> Result:
        """The LMS said the user exists (created meanwhile, or by an earlier attempt that
        crashed): look it up and link."""
        retry = self.retry_attempts
        found = with_retries(lambda: connector.find_by_email(desired["email"] or ""), retry)
        if len(found) != 1:
            by_id = with_retries(lambda: connector.find_by_external_id(item.employee.id), retry)
            found = [by_id] if by_id else found
        if len(found) != 1:
            raise RejectedError(EXISTS_NOT_FOUND) from None
        return self._link_existing(connector, item, found[0], desired, "link")

    def _link_existing(
        self,
        connector: Connector,
        item: Planned,
        user: RemoteUser,
        desired: dict[str, Any],
        verb: str,
    ) -> Result:
        owner = self._claims(item.employee.account_id, {user.id})
        if owner.get(user.id, item.employee.id) != item.employee.id:
            # Found at write time (the LMS said "exists", or the linked user was gone): the
            # plan's check could not see it, and two employees must never share an LMS user.
            raise RejectedError(rules.LINKED_ELSEWHERE.format(employee=owner[user.id]))
        changes = rules.diff(desired, user.fields)
        if changes or not user.active:
            with_retries(
                lambda: connector.update(
                    user.id, desired, list(changes), None if user.active else True
                ),
                self.retry_attempts,
            )
        return Result(
            item,
            "done",
            verb,
            rules.MATCHED_BY_EMAIL,
            lms_user_id=user.id,
            made_by="matched",
            lms_active=True,
            written=desired,
            drop_link=item.link is not None,
            after=changes or None,
        )

    def _relink(
        self,
        connector: Connector,
        item: Planned,
        desired: dict[str, Any],
        create_only: Mapping[str, Any],
    ) -> Result:
        """The linked LMS user is gone (404): drop the link and correlate again."""
        if not item.view.active or item.view.email_key is None:
            return Result(item, "done", "none", GONE_DROPPED, drop_link=True)
        found = with_retries(
            lambda: connector.find_by_email(item.employee.work_email or ""), self.retry_attempts
        )
        if len(found) == 1:
            return self._link_existing(connector, item, found[0], desired, "link")
        if found:
            raise RejectedError(GONE_SEVERAL)
        user = with_retries(lambda: connector.create(desired, create_only), self.retry_attempts)
        return Result(
            item,
            "done",
            "create",
            GONE_CREATED,
            lms_user_id=user.id,
            made_by="created",
            lms_active=True,
            written=desired,
            drop_link=True,
            after=desired,
        )

    # -- recording ---------------------------------------------------------------------------------
    def _fence(self, session: Session, run_id: str) -> None:
        """Before recording: the run's claim on the account still holds (``LeaseLost``
        otherwise), renewed inside this transaction. Dry runs hold no claim."""
        claim = self._claims_by_run.get(run_id)
        if claim is not None:
            claim.renew(session.connection())

    def _record(
        self, run_id: str, account_id: str, results: list[Result], done: int, total: int
    ) -> None:
        """Keep one batch of results (see ``recording``): one transaction, a few statements."""
        with self.sessions() as session, session.begin():
            self._fence(session, run_id)
            record_batch(
                session.connection(), run_id, account_id, results, done, total, self.clock()
            )

    def _record_plan(
        self,
        run_id: str,
        account_id: str,
        planned: list[Planned],
        outcome: str,
        create_only: Mapping[str, Any],
    ) -> None:
        now = self.clock()
        for start in range(0, len(planned), 1000):
            with self.sessions() as session, session.begin():
                self._fence(session, run_id)
                chunk = planned[start : start + 1000]
                record_plan(
                    session.connection(), run_id, account_id, chunk, outcome, now, create_only
                )

    def _interrupted(self, run_id: str, message: str) -> RunSummary:
        """End a run this server can no longer carry out (its own row only, if still ours)."""
        with self.sessions() as session, session.begin():
            session.execute(
                update(SyncRun)
                .where(
                    SyncRun.id == run_id,
                    SyncRun.status == "running",
                    SyncRun.owner == self.owner,
                )
                .values(status="interrupted", message=message, finished_at=utcnow())
            )
        return RunSummary(run_id=run_id, status="interrupted", message=message)

    def _finish(
        self, run_id: str, status: str, counts: Mapping[str, int] | None, message: str | None
    ) -> RunSummary:
        """End the run; ``counts`` None keeps what the recorded batches counted."""
        with self.sessions() as session, session.begin():
            self._fence(session, run_id)
            run = session.get_one(SyncRun, run_id)
            run.status = status
            if counts is not None:
                run.counts = dict(counts)
            run.message = message
            run.finished_at = utcnow()
            final = dict(run.counts or {})
            interface = session.get(LmsInterface, run.account_id)
            connector = interface.connector if interface is not None else "unknown"
            started = run.started_at
            seconds = (run.finished_at - started).total_seconds() if started else None
            trigger = run.trigger
        metrics.run_finished(connector, trigger, status, seconds)  # committed: counted once
        return RunSummary(run_id=run_id, status=status, counts=final, message=message)


_UPDATES = frozenset({Kind.LINK, Kind.UPDATE, Kind.DEACTIVATE, Kind.REACTIVATE})


def _batch_connector(connector: Connector) -> BatchConnector | None:
    """The connector, when it writes several users per request now (a SCIM server with Bulk)."""
    if isinstance(connector, BatchConnector) and connector.batch_size > 1:
        return connector
    return None


def _next_since(mark: datetime, connector: Connector) -> datetime:
    """Where the next incremental read starts: before ``mark`` (taken before this read) by our
    clock and by the LMS's, whichever is earlier, less the overlap."""
    server = connector.server_time() if isinstance(connector, ChangeReader) else None
    start = min(mark, server) if server is not None else mark
    return start - CHANGES_OVERLAP


def _touched(
    session: Session, account_id: str, remote: Mapping[str, RemoteUser], have: set[str]
) -> list[str]:
    """Employees an incremental pass must look at because of these changed LMS users, besides
    the ``have`` it already holds: the ones linked to them, and the unlinked ones with their
    email (a user created or corrected by hand in the LMS may now match)."""
    linked = snapshot.claimed_users(session, account_id, set(remote))
    keys = {u.email_key for u in remote.values() if u.email_key and u.id not in linked}
    found = list(linked.values()) + snapshot.unlinked_with_email(session, account_id, keys)
    return [employee_id for employee_id in dict.fromkeys(found) if employee_id not in have]


def _update_request(item: Planned) -> UpdateRequest:
    """The one update a planned LINK, UPDATE, DEACTIVATE or REACTIVATE writes."""
    action = item.action
    assert action.lms_user_id is not None
    desired = dict(item.view.desired)
    if action.kind == Kind.DEACTIVATE:
        return UpdateRequest(action.lms_user_id, desired, [], False)
    # ``reactivate`` is set on every REACTIVATE, and on a LINK to a deactivated user.
    active = True if action.reactivate else None
    return UpdateRequest(action.lms_user_id, desired, list(action.changes), active)


def _updated(item: Planned) -> Result:
    """The result of ``_update_request(item)`` once the LMS took it."""
    action = item.action
    desired = dict(item.view.desired)
    if action.kind == Kind.LINK:
        result = _matched(item, desired)
        result.before = dict.fromkeys(action.changes) if action.changes else None
        result.after = dict(action.changes) or None
        return result
    link = item.link
    assert link is not None
    if action.kind == Kind.DEACTIVATE:
        return Result(
            item,
            "done",
            "deactivate",
            action.reason,
            lms_user_id=action.lms_user_id,
            lms_active=False,
            written=dict(link.written),
            before={"active": True},
            after={"active": False},
        )
    before = {k: link.written.get(k) for k in action.changes}
    after = dict(action.changes)
    if action.kind == Kind.REACTIVATE:
        before["active"], after["active"] = False, True
    return Result(
        item,
        "done",
        action.kind.value,
        action.reason,
        lms_user_id=action.lms_user_id,
        lms_active=True,
        written=desired,
        before=before,
        after=after,
    )


def _created(
    item: Planned, user: RemoteUser, desired: dict[str, Any], create_only: Mapping[str, Any]
) -> Result:
    return Result(
        item,
        "done",
        "create",
        item.action.reason,
        lms_user_id=user.id,
        made_by="created",
        lms_active=True,
        written=desired,
        drop_link=item.action.drop_link,
        after={**desired, **shown(create_only)},
    )


def _failed(item: Planned, error: LmsError) -> Result:
    return Result(
        item,
        "failed",
        item.action.kind.value,
        error.message,
        error=error,
        lms_user_id=item.action.lms_user_id,
    )


def _watch(yield_to: Callable[[], bool], stop: threading.Event, done: threading.Event) -> None:
    """Ask ``yield_to`` every second until the writes are done; set ``stop`` when it says so."""
    while not done.wait(YIELD_CHECK_SECONDS):
        try:
            if yield_to():
                stop.set()
                return
        except Exception:  # a failed check never stops a run: it is asked again
            log.warning("yield check failed", exc_info=True)


def _ready(employee: EmployeeRecord, state: StateRecord | None, now: datetime) -> bool:
    """Due work that may run now: not waiting for a retry, not a rejection of the same record."""
    if state is None:
        return True
    if state.next_attempt_at is not None and state.next_attempt_at > now:
        return False
    return not (
        state.rejected_record_at is not None and employee.updated_at <= state.rejected_record_at
    )


def _held(item: Planned) -> Result:
    """A deactivation the guard holds until an HR manager approves it."""
    return Result(
        item,
        "held",
        "deactivate",
        HELD,
        lms_user_id=item.action.lms_user_id,
    )


def _matched(item: Planned, desired: dict[str, Any]) -> Result:
    """The result of linking to the LMS user the plan matched by email."""
    action = item.action
    return Result(
        item,
        "done",
        "link",
        action.reason,
        lms_user_id=action.lms_user_id,
        made_by="matched",
        lms_active=True,
        written=desired,
        drop_link=action.drop_link,
    )


def _no_write(item: Planned) -> Result:
    action = item.action
    if action.kind == Kind.CORRELATE:  # the lookup failed; reported as an error, retried later
        return Result(
            item, "failed", "correlate", action.reason, error=TransientError(action.reason)
        )
    if action.kind == Kind.LINK:  # the matched LMS user already holds the desired values
        return _matched(item, dict(item.view.desired))
    # Dropping the link of an LMS user that is gone needs no LMS write (a leaver, a skip...).
    result = Result(
        item,
        "none" if action.kind == Kind.NONE else "done",
        str(action.kind),  # StrEnum: str() is the value, without the slow .value property
        action.reason,
        lms_user_id=action.lms_user_id,
        drop_link=action.drop_link,
    )
    refresh, link = action.refresh, item.link
    if refresh is not None and link is not None and refresh.lms_active != link.lms_active:
        # (De)activated in the LMS outside lmsync: kept in the run's history too.
        result.lms_user_id = link.lms_user_id
        result.before, result.after = {"active": link.lms_active}, {"active": refresh.lms_active}
    return result


def _count(planned: list[Planned]) -> dict[str, int]:
    """Planned actions by kind; excluded employees are counted apart from the other no-ops."""
    counts: dict[str, int] = {}
    for item in planned:
        key = "excluded" if item.view.excluded else str(item.action.kind)
        counts[key] = counts.get(key, 0) + 1
    return counts


def has_ready_work(
    session: Session, account_id: str, now: datetime, *, terminations_only: bool = False
) -> bool:
    """Whether some employee of the account is due and may be synchronized now (among those
    whose access has ended, with ``terminations_only``)."""
    query = (
        select(Employee.id)
        .outerjoin(LmsState, LmsState.employee_id == Employee.id)
        .where(
            Employee.account_id == account_id,
            Employee.lms_due_at <= now,
            (LmsState.next_attempt_at.is_(None)) | (LmsState.next_attempt_at <= now),
            (LmsState.rejected_record_at.is_(None))
            | (Employee.updated_at > LmsState.rejected_record_at),
        )
        .limit(1)
    )
    if terminations_only:
        query = query.where(Employee.access_ends_at <= now)
    return session.scalar(query) is not None


def next_due(session: Session, account_id: str, now: datetime) -> datetime | None:
    """When the account's next employee falls due after ``now`` (a scheduled termination)."""
    return session.scalar(
        select(func.min(Employee.lms_due_at)).where(
            Employee.account_id == account_id, Employee.lms_due_at > now
        )
    )
