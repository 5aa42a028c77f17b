"""What the pages call the fields, actions, outcomes and reasons of a sync run, in the reader's
language: "Active: yes → no" for a stored ``{"active": True}`` → ``{"active": False}``.

A run's rows keep machine values (English codes, snake_case field names, stored reasons); these
functions say them at display time, in the current language (``lmsync.i18n.current``), so they
are called while a page renders (templates reach them as the global ``labels``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from lmsync import i18n
from lmsync.i18n import N_, Msg, _
from lmsync.sync import reasons, rules

# Field -> label: the LMS fields a run writes (sync.mapping) and the HR fields a history shows.
FIELD_LABELS: dict[str, str] = {
    "external_id": N_("External ID"),
    "employee_number": N_("Employee number"),
    "first_name": N_("First name"),
    "last_name": N_("Last name"),
    "language": N_("Language"),
    "email": N_("Work email"),  # the LMS user's email is the employee's work email
    "work_email": N_("Work email"),
    "company_name": N_("Company name"),
    "job_title": N_("Job title"),
    "home_phone": N_("Home phone"),
    "cell_phone": N_("Cell phone"),
    "address": N_("Address"),
    "city": N_("City"),
    "province": N_("Province"),
    "country": N_("Country"),
    "postal_code": N_("Postal code"),
    "notifications_enabled": N_("Notifications"),
    "registration_date": N_("Registration date"),
    "expiration_date": N_("Expiration date"),
    "access_mode": N_("Access mode"),
    "active": N_("Active"),
    "hire_date": N_("Hire date"),
    "termination_date": N_("Last day worked"),
    "termination_reason": N_("Termination reason"),
    "termination_immediate": N_("Effective immediately"),
    "lms_excluded": N_("Excluded from the LMS interface"),
}
_DATES = frozenset({"registration_date", "expiration_date", "hire_date", "termination_date"})
_SUBDIVISION = re.compile(r"^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$")

# A run's actions (SyncOutcome.action), as a verb.
ACTION_LABELS: dict[str, str] = {
    "create": N_("Create"),
    "link": N_("Link"),
    "update": N_("Update"),
    "reactivate": N_("Reactivate"),
    "deactivate": N_("Deactivate"),
    "skip": N_("Skip"),
    "conflict": N_("Conflict"),
    "correlate": N_("Look up by email"),
    "none": N_("Nothing to do"),
}
# A row's outcome (SyncOutcome.outcome); "failed" and "held" read the same for a whole run.
OUTCOME_LABELS: dict[str, str] = {
    "done": N_("done"),
    "failed": N_("failed"),
    "planned": N_("planned"),
    "held": N_("held"),
    "none": N_("no change"),
}
# A run's status (SyncRun.status).
STATUS_LABELS: dict[str, str] = {
    "queued": N_("queued"),
    "running": N_("running"),
    "succeeded": N_("succeeded"),
    "partial": N_("partial"),
    "failed": N_("failed"),
    "held": N_("held"),
    "approved": N_("approved"),
    "rejected": N_("rejected"),
    "interrupted": N_("interrupted"),
}
# What started a run (SyncRun.trigger).
TRIGGER_LABELS: dict[str, str] = {
    "activation": N_("activation"),
    "manual": N_("manual"),
    "change": N_("change"),
    "hourly": N_("hourly"),
    "approval": N_("approval"),
}
# A run's counts (SyncRun.counts): how many employees ended up under each result, in the order
# the pages show them. The run page's filter offers the same keys (web.pages.lms_pages).
RESULT_LABELS: dict[str, str] = {
    "create": N_("Creations"),
    "link": N_("Links"),
    "update": N_("Updates"),
    "reactivate": N_("Reactivations"),
    "deactivate": N_("Deactivations"),
    "skip": N_("Skipped"),
    "conflict": N_("Conflicts"),
    "failed": N_("Failed"),
    "held": N_("Held for approval"),
    "none": N_("No change"),
    "excluded": N_("Excluded"),
}

# Two stored reasons the pages say better than ``sync.reasons.stored`` can: the fields changed,
# by their labels, and the last day worked, as a date in the reader's format.
_CHANGED = re.compile(r"^changed: (?P<fields>[a-z_, ]+)$")
_LEAVING = re.compile(r"^leaving on (?P<day>\d{4}-\d{2}-\d{2})$")


def _say(table: Mapping[str, str], code: str | None) -> str:
    if code is None:
        return ""
    label = table.get(code)
    return i18n.gettext(label) if label is not None else code


def field(name: str) -> str:
    """A field's label ("work_email" -> "Work email"); an unknown name is shown as it is."""
    return _say(FIELD_LABELS, name)


def action(code: str | None) -> str:
    return _say(ACTION_LABELS, code)


def outcome(code: str | None) -> str:
    return _say(OUTCOME_LABELS, code)


def status(code: str | None) -> str:
    return _say(STATUS_LABELS, code)


def trigger(code: str | None) -> str:
    return _say(TRIGGER_LABELS, code)


def result(key: str | None) -> str:
    return _say(RESULT_LABELS, key)


def results(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """A run's counts in the pages' order (known keys first, then any other), zeros left out."""
    known = [(k, counts[k]) for k in RESULT_LABELS if counts.get(k)]
    return known + sorted((k, n) for k, n in counts.items() if k not in RESULT_LABELS and n)


def day(raw: Any) -> str:
    """A stored ISO date (or the date of a date-time) as the reader writes a date; "—" for
    nothing; text that is not a date as it is."""
    if raw is None or raw == "":
        return "—"
    try:
        return i18n.format_date(date.fromisoformat(str(raw)[:10]))
    except ValueError:
        return str(raw)


def value(name: str, raw: Any) -> str:
    """A field's value as a person reads it: yes/no, a date, a language or place name; "—" for
    nothing."""
    if raw is None or raw == "":
        return "—"
    if isinstance(raw, bool):
        return i18n.gettext(N_("yes")) if raw else i18n.gettext(N_("no"))
    if name in _DATES and isinstance(raw, str):
        return day(raw)
    if isinstance(raw, str):
        if name == "language":
            return i18n.language_name(raw)
        if name == "country" and len(raw) == 2:
            return i18n.country_name(raw)
        if name == "province" and _SUBDIVISION.match(raw):
            return i18n.subdivision_name(raw)
    if isinstance(raw, int | float):
        return i18n.format_number(raw)
    return str(raw)


def change(name: str, before: Any, after: Any) -> str:
    """One changed field: "Active: yes → no", "Work email: a@x → b@x"."""
    return i18n.text(
        _(
            "{field}: {before} → {after}",
            field=field(name),
            before=value(name, before),
            after=value(name, after),
        )
    )


def written(name: str, after: Any) -> str:
    """One field written where nothing was before (a creation): "First name: Zoë"."""
    return i18n.text(_("{field}: {value}", field=field(name), value=value(name, after)))


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """A row's before → after, one line a field (fields without a value on either side are left
    out); without any ``before`` (a creation, a plan), the values written."""
    lines: list[str] = []
    for name, new in (after or {}).items():
        if before is None:
            if new is not None:
                lines.append(written(name, new))
            continue
        old = before.get(name)
        if new is not None or old is not None:
            lines.append(change(name, old, new))
    return lines


def field_list(names: Iterable[str]) -> str:
    """Labels of several fields, comma-separated, in the reader's language."""
    return ", ".join(field(name.strip()) for name in names if name.strip())


def reason(text: str | None) -> str:
    """A stored reason or run message in the reader's language (an LMS's own error text stays
    as it is)."""
    if not text:
        return ""
    if found := _CHANGED.match(text):
        return i18n.text(Msg(rules.CHANGED, fields=field_list(found["fields"].split(","))))
    if found := _LEAVING.match(text):
        return i18n.text(_("leaving on {day}", day=day(found["day"])))
    return i18n.text(reasons.stored(text))
