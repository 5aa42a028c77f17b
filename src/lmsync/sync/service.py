"""The LMS interface as an HR manager uses it: configure, test, activate, sync, review, approve.

Thin application service over the engine; the web and the CLI call it. Real runs go to a small
background pool (the caller gets the run id at once); dry runs answer synchronously.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import structlog
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.employment import is_active
from lmsync.domain.errors import (
    CheckFinding,
    Conflict,
    FieldError,
    LmsCheckFailed,
    NotFound,
    ValidationFailed,
)
from lmsync.domain.interface import InterfaceIn
from lmsync.hr.employees import status_condition, text_condition
from lmsync.i18n import N_, _
from lmsync.jobs.queue import Deferrer
from lmsync.lms.base import ConnectionReport, LmsError
from lmsync.lms.host_policy import NOT_ALLOWED
from lmsync.lms.registry import host_policy_of, shaper
from lmsync.security import SecretBox
from lmsync.storage.database import lock_row, transaction
from lmsync.storage.tables import (
    Account,
    Employee,
    LmsInterface,
    LmsLink,
    LmsState,
    SyncOutcome,
    SyncRun,
    utcnow,
)
from lmsync.sync import held_back, reasons, recovery, rules, snapshot
from lmsync.sync.engine import RunOptions, RunSummary, RunTakenOver, SyncBusy, SyncEngine
from lmsync.sync.guard import held_employee_ids
from lmsync.sync.mapping import create_only_fields, desired_fields, shown
from lmsync.sync.worker import SyncWorker, next_sweep

log = structlog.get_logger("lmsync.sync")

# Runs whose heartbeat is older than RECOVERY_LEASES account leases are ended (running) or taken
# over (queued); the keeper looks (and renews this server's queued runs) every sixth of a lease.
RECOVERY_LEASES = 1.5

# Stored as the employees' LMS state reason (English; said again by ``reasons.stored``).
REJECTED_HOLD = N_("deactivation rejected by an HR manager; proposed again at the next full pass")
# Stored as the message of a run that failed in the background.
UNEXPECTED = N_("unexpected error; see the server log")

ENABLE_SYNC_FIRST = _(
    "user synchronization is not enabled for this account; please contact a product expert"
)
NOT_CONFIGURED = _("the LMS interface is not configured yet")


def minute_for(account_id: str) -> int:
    """Spread accounts over the hour: a stable minute derived from the account id."""
    return int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % 60


@dataclass(frozen=True)
class InterfaceSaved:
    """A saved interface, the connection test run once the save was committed, and what its
    switches hold back (``held_back``: the switches that are off) or just made due
    (``caught_up``: the switches turned back on); see ``sync.held_back``."""

    interface: LmsInterface
    connection_test: ConnectionReport
    held_back: dict[str, int]
    caught_up: dict[str, int]


@dataclass(frozen=True)
class EmployeeLmsState:
    """``reason``, ``next_action_when`` and the sentence ``next_action`` may be are Msgs (the
    reader's language where shown); ``state``, ``made_by`` and the other ``next_action`` values
    are codes."""

    state: str  # not_linked | linked | deactivated | skipped | conflict | error | held | excluded
    made_by: str | None  # created | matched
    lms_user_id: str | None
    lms_active: bool | None
    reason: str
    last_sync_at: datetime | None
    next_action: str  # a rules.Kind value, "none", or the sentence for a lookup
    next_action_at: datetime | None
    next_action_when: str


class SyncService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secrets: SecretBox,
        engine: SyncEngine,
        worker: SyncWorker | None = None,
        *,
        deferrer: Deferrer | None = None,
    ) -> None:
        self.sessions = sessions
        self.secrets = secrets
        self.engine = engine
        self.worker = worker
        # The procrastinate queue, when configured: queued runs become jobs instead of
        # running in this process's pool.
        self.deferrer = deferrer
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lmsync-run")
        self._closing = threading.Event()
        self._queued: set[str] = set()  # queued runs in this server's pool (heartbeats)
        self._queued_lock = threading.Lock()
        self._keeper: threading.Thread | None = None

    def start(self) -> None:
        """Recover at once, then keep this server's queued runs alive and sweep for runs whose
        server is gone, every sixth of a lease (the web app starts this with its worker)."""
        seconds = self.engine.lock_lease.total_seconds() / 6
        self._keeper = threading.Thread(
            target=self._keep, args=(seconds,), name="lmsync-run-keeper", daemon=True
        )
        self._keeper.start()

    def _keep(self, seconds: float) -> None:
        while not self._closing.is_set():
            try:
                self.recover()
            except Exception:  # a database hiccup: the next round tries again
                log.warning("run recovery failed", exc_info=True)
            self._closing.wait(seconds)

    def close(self) -> None:
        self._closing.set()
        if self._keeper is not None:
            self._keeper.join(timeout=30)
        self._pool.shutdown(wait=True)

    def recover(self, now: datetime | None = None) -> recovery.Swept:
        """One round: heartbeat this server's queued runs, end the runs of servers that are
        gone, and carry out the queued runs taken over (and the resumed ones)."""
        now = now or utcnow()
        owner = self.engine.owner
        with self._queued_lock:
            mine = sorted(self._queued)
        recovery.heartbeat(self.sessions, owner, mine, now)
        stale = self.engine.lock_lease * RECOVERY_LEASES
        swept = recovery.sweep(self.sessions, owner, now, stale)
        for run_id in swept.interrupted:
            log.warning("run interrupted: its server stopped", run_id=run_id)
        for run_id in [*swept.resumed, *swept.adopted]:
            with self.sessions() as session:
                run = session.get_one(SyncRun, run_id)
                account_id, options = run.account_id, RunOptions.from_run(run)
            log.info("carrying out a run taken over", run_id=run_id, account_id=account_id)
            self._submit(account_id, options)
        return swept

    def changed(self) -> None:
        """An HR change was committed: let the worker look at once."""
        if self.worker is not None:
            self.worker.wake()

    # -- configuration -------------------------------------------------------------------------
    @staticmethod
    def get_interface(session: Session, account_id: str) -> LmsInterface:
        interface = session.get(LmsInterface, account_id)
        if interface is None:
            raise NotFound(NOT_CONFIGURED)
        return interface

    def save_interface(self, account_id: str, data: InterfaceIn) -> InterfaceSaved:
        """Save the interface (``put_interface``) and count what its switches hold back, in one
        transaction; then wake the worker for what a switch turned back on made due, and run the
        connection test. The save is kept whatever the test finds."""
        with self.sessions() as session, session.begin():
            account = session.get(Account, account_id)
            if account is None:
                raise NotFound(_("account not found"))
            interface, caught_up = self._put(session, account_id, data)
            counts = held_back.count(session, account, interface, self.engine.clock())
            session.refresh(interface)  # server-set values, readable once the session is closed
        self.changed()
        report = self.test_interface(account_id)
        return InterfaceSaved(interface, report, counts, caught_up)

    def put_interface(self, session: Session, account_id: str, data: InterfaceIn) -> LmsInterface:
        """Save the interface in the caller's transaction (see ``_put``)."""
        return self._put(session, account_id, data)[0]

    def _put(
        self, session: Session, account_id: str, data: InterfaceIn
    ) -> tuple[LmsInterface, dict[str, int]]:
        """Save the interface. Refused (``ValidationFailed``) when the URL is outside the
        operator's host policy, or when the stored secret would go to another address or in
        another way (URL, authentication type, basic user name, API key header) without being
        entered again. Omitted ``guard_*`` fields keep their stored values. A switch turned
        back on makes what it held back due in the same transaction; returns how many employees
        each such switch made due."""

        base_url = str(data.base_url).rstrip("/")
        interface = session.get(LmsInterface, account_id)
        problems: list[FieldError] = []
        if host_policy_of(self.engine.connector_factory).refuses_url(base_url):
            problems.append(FieldError("base_url", NOT_ALLOWED))
        if (
            interface is not None
            and interface.secret_encrypted
            and data.secret is None
            and (
                interface.base_url != base_url
                or interface.connector != data.connector
                or interface.auth_type != data.auth_type
                or (data.auth_type == "basic" and interface.username != data.username)
                or (
                    data.auth_type == "api_key"
                    and interface.auth_header.casefold() != data.auth_header.casefold()
                )
            )
        ):
            problems.append(
                FieldError(
                    "secret",
                    _(
                        "the URL or the authentication changed: enter the secret again (the "
                        "stored one is never sent elsewhere)"
                    ),
                )
            )
        if problems:
            raise ValidationFailed(problems)
        was_off: set[str] = set()
        if interface is None:
            interface = LmsInterface(account_id=account_id, minute_of_hour=minute_for(account_id))
            session.add(interface)
        else:
            was_off = {name for name, on in held_back.switches_of(interface).items() if not on}
        if (interface.base_url, interface.connector, interface.portal_id) != (
            base_url,
            data.connector,
            data.portal_id,
        ):
            # Another LMS (or portal): what was known of the previous one's changes is void;
            # the next hourly pass is a full sweep.
            interface.lms_changes_since = interface.modified_filter = None
        interface.connector = data.connector
        interface.base_url = base_url
        interface.auth_type = data.auth_type
        interface.auth_header = data.auth_header
        interface.username = data.username
        interface.portal_id = data.portal_id
        interface.hourly_transfer = data.hourly_transfer
        interface.sync_users = data.sync_users
        interface.deactivate_terminated = data.deactivate_terminated
        interface.options = data.options.model_dump()
        for guard in ("guard_percent", "guard_minimum", "guard_window_minutes", "sweep_hour"):
            # A new row has none yet (the column default comes at the insert).
            if guard in data.model_fields_set or getattr(interface, guard) is None:
                setattr(interface, guard, getattr(data, guard))
        if data.secret is not None:
            interface.secret_encrypted = self.secrets.encrypt(data.secret) if data.secret else None
        session.flush()
        turned_on = [name for name in held_back.SWITCHES if name in was_off and getattr(data, name)]
        if not turned_on:
            return interface, {}
        account = session.get_one(Account, account_id)
        now = self.engine.clock()
        return interface, held_back.catch_up(session, account, interface, turned_on, now)

    def test_interface(self, account_id: str) -> ConnectionReport:
        with self.sessions() as session:
            interface = self.get_interface(session, account_id)
            session.expunge(interface)
        try:
            connector = self.engine.connector_for(interface, dry_run=True)
        except LmsError as exc:
            report = ConnectionReport()
            report.add("error", exc.message)
            return report
        try:
            report = connector.test()
        finally:
            connector.close()
        if report.modified_filter is not None:
            self._remember_filter(account_id, interface.base_url, report.modified_filter)
        return report

    def _remember_filter(self, account_id: str, base_url: str, supported: bool) -> None:
        """Keep what Test connection found (unless the interface moved to another URL since)."""
        with transaction(self.sessions) as session:
            session.execute(
                update(LmsInterface)
                .where(LmsInterface.account_id == account_id, LmsInterface.base_url == base_url)
                .values(modified_filter=supported)
            )

    def check_lms(self, account_id: str) -> None:
        """Run the connection test; ``LmsCheckFailed`` with its findings when it reports an
        error (before an activation or its preview: nothing is written then)."""
        report = self.test_interface(account_id)
        if not report.ok:
            raise LmsCheckFailed([CheckFinding(f.level, f.message) for f in report.findings])

    # -- runs ------------------------------------------------------------------------------------
    def _new_queued(
        self, session: Session, account_id: str, options: RunOptions, **extra: Any
    ) -> SyncRun:
        """The row of a run to carry out in the background, held by this server."""
        now = utcnow()
        run = SyncRun(
            account_id=account_id,
            trigger=options.trigger,
            dry_run=False,
            full=options.full,
            status="queued",
            options=options.stored(),
            owner=self.engine.owner,
            heartbeat_at=now,
            started_at=now,
            **extra,
        )
        session.add(run)
        session.flush()
        options.run_id = run.id
        return run

    def _queue(self, account_id: str, options: RunOptions) -> str:
        """Create the run row now and run it in the background (after the account's current run,
        if any); returns its id. A run of the same kind already queued and not started is
        answered instead of a second one (a double click, two HR managers at once)."""
        with self.sessions() as session, session.begin():
            self.get_interface(session, account_id)
            lock_row(session, LmsInterface.account_id, account_id)
            if options.activating and self.get_interface(session, account_id).active:
                raise Conflict(_("the LMS interface is already active; use Sync now"))
            twin = _queued_twin(session, account_id, options)
            if twin is not None:
                return twin
            run_id = self._new_queued(session, account_id, options).id
        self._submit(account_id, options)
        return run_id

    def _submit(self, account_id: str, options: RunOptions) -> None:
        assert options.run_id is not None
        if self.deferrer is not None:
            # A worker carries it out. Should this process stop before the job is deferred,
            # recovery adopts the stale queued run and submits it again.
            with transaction(self.sessions) as session:
                self.deferrer.run_queued(session, account_id, options.run_id, options.trigger)
            return
        with self._queued_lock:
            self._queued.add(options.run_id)
        self._pool.submit(self._run_logged, account_id, options)

    def _run_logged(self, account_id: str, options: RunOptions) -> None:
        # A queued run waits for the account's current run (e.g. the worker's) as long as it
        # takes; its heartbeat says this server still holds it. At shutdown it stays queued
        # and another server (or this one, restarted) carries it out.
        try:
            while not self._closing.is_set():
                try:
                    self.engine.run(account_id, options)
                    return
                except RunTakenOver:
                    return
                except SyncBusy:
                    self._closing.wait(0.25)
                except Exception:
                    log.exception(
                        "background sync failed", account_id=account_id, run_id=options.run_id
                    )
                    self._fail_queued(options.run_id, UNEXPECTED)
                    return
        finally:
            with self._queued_lock:
                self._queued.discard(options.run_id or "")

    def _fail_queued(self, run_id: str | None, message: str) -> None:
        with self.sessions() as session, session.begin():
            run = session.get(SyncRun, run_id) if run_id else None
            if run is not None and run.status in ("queued", "running"):
                run.status, run.message, run.finished_at = "failed", message, utcnow()

    def run_now(self, account_id: str, options: RunOptions) -> RunSummary:
        """Run synchronously (dry runs, the CLI, tests)."""
        return self.engine.run(account_id, options)

    def create_only_preview(self, account_id: str) -> dict[str, Any]:
        """The create-only values every LMS user created now gets (docs/field-mapping.md), as the
        plan and the run's history show them."""
        with self.sessions() as session:
            account = session.get_one(Account, account_id)
            return shown(create_only_fields(account, self.engine.clock()))

    def activate(self, account_id: str, *, dry_run: bool, actor: str | None) -> RunSummary | str:
        """First activation. A dry run returns the preview; otherwise the activation run starts
        (every employee: match by email, create the rest) and makes the interface active. Both
        run the connection test first and are refused (``LmsCheckFailed``), with nothing
        written, when it reports an error."""
        with self.sessions() as session, session.begin():
            account = session.get_one(Account, account_id)
            active = self.get_interface(session, account_id).active
            if not account.user_sync_enabled:
                raise Conflict(ENABLE_SYNC_FIRST)
        if dry_run or not active:
            # An active interface is answered by _queue (the activation run already queued or
            # running, or "already active"), under the interface's row lock.
            self.check_lms(account_id)
        options = RunOptions(
            trigger="activation", dry_run=dry_run, full=True, activating=True, actor_user_id=actor
        )
        if dry_run:
            return self.engine.run(account_id, options)
        return self._queue(account_id, options)

    def sync(
        self, account_id: str, *, dry_run: bool, full: bool, actor: str | None
    ) -> RunSummary | str:
        with self.sessions() as session:
            account = session.get_one(Account, account_id)
            interface = self.get_interface(session, account_id)
            if not account.user_sync_enabled:
                raise Conflict(ENABLE_SYNC_FIRST)
            if not interface.active and not dry_run:
                raise Conflict(_("activate the LMS interface first"))
        options = RunOptions(trigger="manual", dry_run=dry_run, full=full, actor_user_id=actor)
        if dry_run:
            return self.engine.run(account_id, options)
        return self._queue(account_id, options)

    def sync_employee(self, account_id: str, employee_id: str, actor: str | None) -> str:
        options = RunOptions(trigger="manual", employee_ids=[employee_id], actor_user_id=actor)
        with self.sessions() as session:
            employee = session.get(Employee, employee_id)
            if employee is None or employee.account_id != account_id:
                raise NotFound("employee not found")
        return self._queue(account_id, options)

    def decide_held(self, account_id: str, run_id: str, *, approve: bool, actor: str) -> str | None:
        """Approve or reject a held run. Approving queues a run that carries out exactly the
        deactivations it holds (those that joined it included), past the guard, and returns
        its id. The decision is a conditional update: of two concurrent decisions, one wins
        and the other is told the run is no longer held."""
        with self.sessions() as session, session.begin():
            decided = session.execute(
                update(SyncRun)
                .where(
                    SyncRun.id == run_id,
                    SyncRun.account_id == account_id,
                    SyncRun.status == "held",
                )
                .values(status="approved" if approve else "rejected", decided_by=actor)
            )
            if not getattr(decided, "rowcount", 0):
                run = session.get(SyncRun, run_id)
                if run is None or run.account_id != account_id:
                    raise NotFound(_("run not found"))
                raise Conflict(
                    _(
                        "only a held run can be approved or rejected (this one is {status})",
                        status=run.status,
                    )
                )
            held = held_employee_ids(session, run_id)
            if not approve:
                for chunk in snapshot.chunks(held):
                    session.execute(
                        update(LmsState)
                        .where(LmsState.employee_id.in_(chunk), LmsState.outcome == "held")
                        .values(reason=REJECTED_HOLD)
                    )
                return None
            options = RunOptions(
                trigger="approval", employee_ids=held, approved=True, actor_user_id=actor
            )
            new_id = self._new_queued(session, account_id, options, approved_run_id=run_id).id
        self._submit(account_id, options)
        return new_id

    # -- reading ---------------------------------------------------------------------------------
    @staticmethod
    def list_runs(
        session: Session, account_id: str, *, limit: int, offset: int
    ) -> tuple[list[SyncRun], int]:
        query = select(SyncRun).where(SyncRun.account_id == account_id)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(SyncRun.started_at.desc(), SyncRun.id).limit(limit).offset(offset)
        )
        return list(rows), total

    @staticmethod
    def get_run(session: Session, account_id: str, run_id: str) -> SyncRun:
        run = session.get(SyncRun, run_id)
        if run is None or run.account_id != account_id:
            raise NotFound(_("run not found"))
        return run

    @staticmethod
    def list_outcomes(
        session: Session,
        run_id: str,
        *,
        where: Iterable[ColumnElement[bool]] = (),
        limit: int,
        offset: int,
    ) -> tuple[list[SyncOutcome], int]:
        """One page of a run's rows (those matching every ``where``), in order, and their total."""
        query = select(SyncOutcome).where(SyncOutcome.run_id == run_id, *where)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(SyncOutcome.at, SyncOutcome.id).limit(limit).offset(offset)
        )
        return list(rows), total

    def employee_state(
        self, session: Session, account_id: str, employee_id: str, now: datetime | None = None
    ) -> EmployeeLmsState:
        now = now or self.engine.clock()
        employee = session.get(Employee, employee_id)
        if employee is None or employee.account_id != account_id:
            raise NotFound("employee not found")
        account = session.get_one(Account, account_id)
        interface = session.get(LmsInterface, account_id)
        link = session.get(LmsLink, employee_id)
        state = session.get(LmsState, employee_id)
        if employee.lms_excluded:
            label = "excluded"
        elif state is not None and state.outcome in ("skipped", "conflict", "error", "held"):
            label = state.outcome
        elif link is not None:
            label = "linked" if link.lms_active else "deactivated"
        else:
            label = "not_linked"
        scope = rules.Scope(
            user_sync_enabled=account.user_sync_enabled,
            interface_active=bool(interface and interface.active),
            sync_users=bool(interface is None or interface.sync_users),
            deactivate_terminated=bool(interface is None or interface.deactivate_terminated),
        )
        view = rules.EmployeeView(
            id=employee.id,
            active=is_active(employee.access_ends_at, now),
            excluded=employee.lms_excluded,
            email_key=employee.work_email_key,
            email_shared=_email_shared(session, employee, now),
            desired=desired_fields(employee, account, shaper(interface)),
        )
        link_view = (
            rules.LinkView(link.lms_user_id, link.lms_active, link.written) if link else None
        )
        action = rules.decide(view, link_view, scope)
        next_action: str = action.kind.value
        if action.kind == rules.Kind.CORRELATE:
            next_action = _("look up the work email in the LMS, then link or create")
        when, at = _when(action, employee, interface, state, account.timezone)
        reason = reasons.stored(
            (state.reason if state and label in ("skipped", "conflict", "error", "held") else "")
            or (
                action.reason
                if action.kind in (rules.Kind.SKIP, rules.Kind.CONFLICT, rules.Kind.NONE)
                else ""
            )
        )
        next_action = next_action if action.kind != rules.Kind.NONE else "none"
        ends, last_day = employee.access_ends_at, employee.termination_date
        if (
            action.kind == rules.Kind.NONE
            and view.active
            and ends is not None
            and last_day is not None
            and link is not None
            and not employee.lms_excluded
            and scope.deactivate_terminated
        ):
            # Leaving: nothing to do before the last day worked ends; then, deactivation.
            next_action, at = "deactivate", ends
            when = _("when {day} ends (the last day worked)", day=last_day.isoformat())
            reason = _("leaving on {day}", day=last_day.isoformat())
        return EmployeeLmsState(
            state=label,
            made_by=link.made_by if link else None,
            lms_user_id=link.lms_user_id if link else None,
            lms_active=link.lms_active if link else None,
            reason=reason or "",
            last_sync_at=state.at if state else None,
            next_action=next_action,
            next_action_at=at,
            next_action_when=when,
        )


def _queued_twin(session: Session, account_id: str, options: RunOptions) -> str | None:
    """A run asked for the same way that has not finished starting (an activation: or runs)."""
    statuses = ("queued", "running") if options.activating else ("queued",)
    candidates = session.scalars(
        select(SyncRun).where(
            SyncRun.account_id == account_id,
            SyncRun.trigger == options.trigger,
            SyncRun.full.is_(options.full),
            SyncRun.status.in_(statuses),
        )
    )
    wanted = options.stored()
    for run in candidates:
        if run.options == wanted or options.activating:
            return run.id
    return None


def _email_shared(session: Session, employee: Employee, now: datetime) -> bool:
    if employee.work_email_key is None:
        return False
    count = session.scalar(
        select(func.count())
        .select_from(Employee)
        .where(
            Employee.account_id == employee.account_id,
            Employee.work_email_key == employee.work_email_key,
            status_condition("active", now),
            Employee.lms_excluded.is_(False),
        )
    )
    return (count or 0) > 1


def _when(
    action: rules.Action,
    employee: Employee,
    interface: LmsInterface | None,
    state: LmsState | None,
    timezone: str = "UTC",
) -> tuple[str, datetime | None]:
    if action.kind == rules.Kind.NONE:
        return _("nothing to do"), None
    if interface is None or not interface.active:
        return _("when the LMS interface is activated"), None
    if state is not None and state.outcome == "held" and action.kind == rules.Kind.DEACTIVATE:
        return _("once an HR manager approves the held deactivations"), None
    if not interface.hourly_transfer:
        return _("at the next manual sync"), None
    if state is not None and state.outcome == "error" and state.next_attempt_at is not None:
        return _("automatic retry"), state.next_attempt_at
    if employee.lms_due_at is not None:
        return _("within seconds"), employee.lms_due_at
    # Not due: the hourly pass looks at it only if its LMS user changes; the sweep always does.
    return _("at the next daily full sweep"), next_sweep(
        interface.last_sweep_at, interface.sweep_hour, interface.minute_of_hour, timezone
    )


LmsStateName = Literal[
    "not_linked",
    "linked",
    "deactivated",
    "skipped",
    "conflict",
    "error",
    "held",
    "excluded",
]
LMS_STATES: tuple[str, ...] = get_args(LmsStateName)


def lms_state_column() -> Any:
    """The employee's LMS state as a SQL expression (same labels as ``employee_state``)."""
    from sqlalchemy import case

    return case(
        (Employee.lms_excluded.is_(True), "excluded"),
        (LmsState.outcome.in_(("skipped", "conflict", "error", "held")), LmsState.outcome),
        (LmsLink.employee_id.is_not(None) & LmsLink.lms_active.is_(True), "linked"),
        (LmsLink.employee_id.is_not(None), "deactivated"),
        else_="not_linked",
    )


def employees_with_state(
    session: Session,
    account_id: str,
    *,
    text: str | None,
    status: str | None,
    excluded: bool | None,
    lms_state: str | None,
    limit: int,
    offset: int,
    now: datetime | None = None,
) -> tuple[list[tuple[Employee, str]], int]:
    """A page of employees with their LMS state, filtered like the employees list."""
    state_col = lms_state_column().label("lms_state")
    query = (
        select(Employee, state_col)
        .outerjoin(LmsLink, LmsLink.employee_id == Employee.id)
        .outerjoin(LmsState, LmsState.employee_id == Employee.id)
        .where(Employee.account_id == account_id)
    )
    if status:
        query = query.where(status_condition(status, now or utcnow()))
    if excluded is not None:
        query = query.where(Employee.lms_excluded.is_(excluded))
    if lms_state:
        query = query.where(lms_state_column() == lms_state)
    if text:
        query = query.where(text_condition(text))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(
        query.order_by(Employee.last_name, Employee.first_name, Employee.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return [(row[0], str(row[1])) for row in rows], total


def employees_by_id(session: Session, account_id: str, ids: list[str]) -> dict[str, Employee]:
    """The account's employees among ``ids`` (e.g. those of a page of run outcomes), by id."""
    found: dict[str, Employee] = {}
    for chunk in snapshot.chunks(sorted(set(ids))):
        query = select(Employee).where(Employee.account_id == account_id, Employee.id.in_(chunk))
        found.update((employee.id, employee) for employee in session.scalars(query))
    return found
