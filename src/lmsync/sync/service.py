"""The LMS interface as an HR manager uses it: configure, test, activate, sync, review, approve.

Thin application service over the engine; the web and the CLI call it. Real runs go to a small
background pool (the caller gets the run id at once); dry runs answer synchronously.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from lmsync.domain.errors import Conflict, NotFound
from lmsync.domain.interface import InterfaceIn
from lmsync.hr.employees import text_condition
from lmsync.lms.base import ConnectionReport, LmsError
from lmsync.security import SecretBox
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
from lmsync.sync import rules
from lmsync.sync.engine import RunOptions, RunSummary, SyncBusy, SyncEngine
from lmsync.sync.mapping import desired_fields
from lmsync.sync.worker import SyncWorker, next_full_pass

log = structlog.get_logger("lmsync.sync")

QUEUE_PATIENCE = 120.0  # seconds a queued run waits for the account's lock

ENABLE_SYNC_FIRST = (
    "user synchronization is not enabled for this account; please contact a product expert"
)


def minute_for(account_id: str) -> int:
    """Spread accounts over the hour: a stable minute derived from the account id."""
    return int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % 60


@dataclass(frozen=True)
class EmployeeLmsState:
    state: str  # not_linked | linked | deactivated | skipped | conflict | error | excluded
    made_by: str | None  # created | matched
    lms_user_id: str | None
    lms_active: bool | None
    reason: str
    last_sync_at: datetime | None
    next_action: str
    next_action_at: datetime | None
    next_action_when: str


class SyncService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secrets: SecretBox,
        engine: SyncEngine,
        worker: SyncWorker | None = None,
    ) -> None:
        self.sessions = sessions
        self.secrets = secrets
        self.engine = engine
        self.worker = worker
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lmsync-run")
        self._closing = threading.Event()

    def close(self) -> None:
        self._closing.set()
        self._pool.shutdown(wait=True)

    def changed(self) -> None:
        """An HR change was committed: let the worker look at once."""
        if self.worker is not None:
            self.worker.wake()

    # -- configuration -------------------------------------------------------------------------
    @staticmethod
    def get_interface(session: Session, account_id: str) -> LmsInterface:
        interface = session.get(LmsInterface, account_id)
        if interface is None:
            raise NotFound("the LMS interface is not configured yet")
        return interface

    def put_interface(self, session: Session, account_id: str, data: InterfaceIn) -> LmsInterface:
        interface = session.get(LmsInterface, account_id)
        if interface is None:
            interface = LmsInterface(account_id=account_id, minute_of_hour=minute_for(account_id))
            session.add(interface)
        interface.connector = data.connector
        interface.base_url = str(data.base_url).rstrip("/")
        interface.auth_type = data.auth_type
        interface.auth_header = data.auth_header
        interface.username = data.username
        interface.portal_id = data.portal_id
        interface.hourly_transfer = data.hourly_transfer
        interface.sync_users = data.sync_users
        interface.deactivate_terminated = data.deactivate_terminated
        interface.options = data.options.model_dump()
        interface.guard_percent = data.guard_percent
        interface.guard_minimum = data.guard_minimum
        if data.secret is not None:
            interface.secret_encrypted = self.secrets.encrypt(data.secret) if data.secret else None
        session.flush()
        return interface

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
            return connector.test()
        finally:
            connector.close()

    # -- runs ------------------------------------------------------------------------------------
    def _queue(self, account_id: str, options: RunOptions) -> str:
        """Create the run row now and run it in the background (after the account's current run,
        if any); returns its id."""
        with self.sessions() as session, session.begin():
            self.get_interface(session, account_id)
            run = SyncRun(
                account_id=account_id,
                trigger=options.trigger,
                dry_run=False,
                full=options.full,
                status="queued",
            )
            session.add(run)
            session.flush()
            options.run_id = run.id
        self._pool.submit(self._run_logged, account_id, options)
        return options.run_id

    def _run_logged(self, account_id: str, options: RunOptions) -> None:
        # A queued run waits (a while) for the account's current run, e.g. the worker's.
        deadline = time.monotonic() + QUEUE_PATIENCE
        while True:
            try:
                self.engine.run(account_id, options)
                return
            except SyncBusy:
                if time.monotonic() > deadline or self._closing.is_set():
                    self._fail_queued(options.run_id, "another sync of this account kept running")
                    return
                self._closing.wait(0.25)
            except Exception:
                log.exception(
                    "background sync failed", account_id=account_id, run_id=options.run_id
                )
                self._fail_queued(options.run_id, "unexpected error; see the server log")
                return

    def _fail_queued(self, run_id: str | None, message: str) -> None:
        with self.sessions() as session, session.begin():
            run = session.get(SyncRun, run_id) if run_id else None
            if run is not None and run.status in ("queued", "running"):
                run.status, run.message, run.finished_at = "failed", message, utcnow()

    def run_now(self, account_id: str, options: RunOptions) -> RunSummary:
        """Run synchronously (dry runs, the CLI, tests)."""
        return self.engine.run(account_id, options)

    def activate(self, account_id: str, *, dry_run: bool, actor: str | None) -> RunSummary | str:
        """First activation. A dry run returns the preview; otherwise the activation run starts
        (every employee: match by email, create the rest) and makes the interface active."""
        with self.sessions() as session, session.begin():
            account = session.get_one(Account, account_id)
            interface = self.get_interface(session, account_id)
            if not account.user_sync_enabled:
                raise Conflict(ENABLE_SYNC_FIRST)
            if interface.active and not dry_run:
                raise Conflict("the LMS interface is already active; use Sync now")
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
                raise Conflict("activate the LMS interface first")
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
        """Approve (runs it again past the guard; returns the new run id) or reject a held run."""
        with self.sessions() as session, session.begin():
            run = session.get(SyncRun, run_id)
            if run is None or run.account_id != account_id:
                raise NotFound("run not found")
            if run.status != "held":
                raise Conflict(
                    f"only a held run can be approved or rejected (this one is {run.status})"
                )
            run.status = "approved" if approve else "rejected"
            run.decided_by = actor
            full = run.full
        if not approve:
            return None
        options = RunOptions(trigger="approval", full=full, approved=True, actor_user_id=actor)
        new_id = self._queue(account_id, options)
        with self.sessions() as session, session.begin():
            session.get_one(SyncRun, new_id).approved_run_id = run_id
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
            raise NotFound("run not found")
        return run

    @staticmethod
    def list_outcomes(
        session: Session,
        run_id: str,
        *,
        action: str | None,
        outcome: str | None,
        limit: int,
        offset: int,
    ) -> tuple[list[SyncOutcome], int]:
        query = select(SyncOutcome).where(SyncOutcome.run_id == run_id)
        if action:
            query = query.where(SyncOutcome.action == action)
        if outcome:
            query = query.where(SyncOutcome.outcome == outcome)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(SyncOutcome.at, SyncOutcome.id).limit(limit).offset(offset)
        )
        return list(rows), total

    def employee_state(
        self, session: Session, account_id: str, employee_id: str
    ) -> EmployeeLmsState:
        employee = session.get(Employee, employee_id)
        if employee is None or employee.account_id != account_id:
            raise NotFound("employee not found")
        account = session.get_one(Account, account_id)
        interface = session.get(LmsInterface, account_id)
        link = session.get(LmsLink, employee_id)
        state = session.get(LmsState, employee_id)
        if employee.lms_excluded:
            label = "excluded"
        elif state is not None and state.outcome in ("skipped", "conflict", "error"):
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
            active=employee.status == "active",
            excluded=employee.lms_excluded,
            email_key=employee.work_email_key,
            email_shared=_email_shared(session, employee),
            desired=desired_fields(employee, account),
        )
        link_view = (
            rules.LinkView(link.lms_user_id, link.lms_active, link.written) if link else None
        )
        action = rules.decide(view, link_view, scope)
        next_action = {
            rules.Kind.CORRELATE: "look up the work email in the LMS, then link or create",
        }.get(action.kind, action.kind.value)
        when, at = _when(action, employee, interface, state)
        return EmployeeLmsState(
            state=label,
            made_by=link.made_by if link else None,
            lms_user_id=link.lms_user_id if link else None,
            lms_active=link.lms_active if link else None,
            reason=(state.reason if state and label in ("skipped", "conflict", "error") else "")
            or (
                action.reason
                if action.kind in (rules.Kind.SKIP, rules.Kind.CONFLICT, rules.Kind.NONE)
                else ""
            ),
            last_sync_at=state.at if state else None,
            next_action=next_action if action.kind != rules.Kind.NONE else "none",
            next_action_at=at,
            next_action_when=when,
        )


def _email_shared(session: Session, employee: Employee) -> bool:
    if employee.work_email_key is None:
        return False
    count = session.scalar(
        select(func.count())
        .select_from(Employee)
        .where(
            Employee.account_id == employee.account_id,
            Employee.work_email_key == employee.work_email_key,
            Employee.status == "active",
            Employee.lms_excluded.is_(False),
        )
    )
    return (count or 0) > 1


def _when(
    action: rules.Action,
    employee: Employee,
    interface: LmsInterface | None,
    state: LmsState | None,
) -> tuple[str, datetime | None]:
    if action.kind == rules.Kind.NONE:
        return "nothing to do", None
    if interface is None or not interface.active:
        return "when the LMS interface is activated", None
    if not interface.hourly_transfer:
        return "at the next manual sync", None
    if state is not None and state.outcome == "error" and state.next_attempt_at is not None:
        return "automatic retry", state.next_attempt_at
    if employee.lms_due_at is not None:
        return "within seconds", employee.lms_due_at
    return "at the next hourly pass", next_full_pass(
        interface.last_full_pass_at, interface.minute_of_hour, interface.activated_at
    )


LMS_STATES = ("not_linked", "linked", "deactivated", "skipped", "conflict", "error", "excluded")


def lms_state_column() -> Any:
    """The employee's LMS state as a SQL expression (same labels as ``employee_state``)."""
    from sqlalchemy import case

    return case(
        (Employee.lms_excluded.is_(True), "excluded"),
        (LmsState.outcome.in_(("skipped", "conflict", "error")), LmsState.outcome),
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
        query = query.where(Employee.status == status)
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
