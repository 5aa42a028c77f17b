"""How lmsync's neutral fields (docs/field-mapping.md) map onto a Moodle user, as pure functions.

Moodle keeps no lmsync identifier, stores a language only when its pack is installed, and keeps
province, postal code, notifications and the create-only values in custom profile fields whose
short names each site chooses. ``shape`` turns the desired fields into what this Moodle can hold,
so that what lmsync compares (desired against read back) is what Moodle stores: a value Moodle
cannot keep would otherwise be written again on every pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lmsync.i18n import N_, Msg

PHONE_MAX = 20  # Moodle's phone1/phone2 columns: a longer value fails the whole call
# lmsync field -> default short name of the custom profile field holding it.
DEFAULT_PROFILE_FIELDS: dict[str, str] = {
    "province": "province",
    "postal_code": "postalcode",
    "registration_date": "registrationdate",
    "expiration_date": "expirationdate",
    "notifications_enabled": "notificationsenabled",
    "access_mode": "accessmode",
}
MAINTAINED_PROFILE_FIELDS = ("province", "postal_code", "notifications_enabled")
CREATE_ONLY_PROFILE_FIELDS = ("registration_date", "expiration_date", "access_mode")
# Core user fields: lmsync name -> Moodle name (job_title goes to department unless configured).
CORE_FIELDS: dict[str, str] = {
    "first_name": "firstname",
    "last_name": "lastname",
    "email": "email",
    "employee_number": "idnumber",
    "company_name": "institution",
    "home_phone": "phone1",
    "cell_phone": "phone2",
    "address": "address",
    "city": "city",
    "country": "country",
}
# Moodle answers these only when the site's "Show user identity" setting lists them; absent, they
# are unknown (not read as empty): the engine compares them with what it last wrote.
HIDDEN_UNLESS_SHOWN = frozenset({"home_phone", "cell_phone"})
# Moodle has nowhere to keep these: not compared, not written.
NOT_KEPT = ("external_id",)


@dataclass(frozen=True)
class MoodleMapping:
    """The site-specific part of the mapping (from the interface's options)."""

    languages: tuple[str, ...] = ("en",)  # installed packs, Moodle codes; the first: site default
    job_title_field: str | None = None  # a custom profile field; None: the core department
    profile_fields: Mapping[str, str | None] = field(
        default_factory=lambda: dict(DEFAULT_PROFILE_FIELDS)
    )

    def profile_field(self, name: str) -> str | None:
        return self.profile_fields.get(name)


def moodle_lang(language: str | None, installed: tuple[str, ...]) -> str | None:
    """The installed pack for a BCP 47 tag: ``fr-CA`` → ``fr_ca``, else ``fr``; None when no
    installed pack fits (Moodle then uses the site's default)."""
    if not language:
        return None
    code = language.strip().lower().replace("-", "_")
    base = code.split("_", 1)[0]
    for candidate in (code, base):
        if candidate in installed:
            return candidate
    return None


def neutral_lang(lang: str | None) -> str | None:
    """A Moodle pack code as a BCP 47 tag: ``fr_ca`` → ``fr-CA``."""
    if not lang:
        return None
    base, _, region = lang.partition("_")
    return f"{base}-{region.upper()}" if region else base


def _blank(value: Any) -> Any:
    return None if value == "" else value


def shape(mapping: MoodleMapping, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The desired fields as this Moodle would hold them (see the module's docstring)."""
    out = {k: _blank(v) for k, v in desired.items() if k not in NOT_KEPT}
    if "language" in out:
        pack = moodle_lang(out["language"], mapping.languages) or (
            mapping.languages[0] if mapping.languages else None
        )
        out["language"] = neutral_lang(pack)
    if isinstance(out.get("country"), str):
        out["country"] = out["country"].upper()
    for name in MAINTAINED_PROFILE_FIELDS:
        if name in out and not mapping.profile_field(name):
            del out[name]
    return out


def unix_time(value: Any) -> str:
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return str(value)


def profile_value(name: str, value: Any) -> str:
    if name == "notifications_enabled":
        return "1" if value else "0"
    if name in ("registration_date", "expiration_date"):
        return unix_time(value)
    return "" if value is None else str(value)


def user_values(
    mapping: MoodleMapping,
    fields: Mapping[str, Any],
    names: set[str] | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """(core Moodle fields, custom profile fields by short name) for the ``names`` of ``fields``
    (all of them when None). A cleared value is sent empty, so that Moodle clears it too."""
    wanted = set(fields) if names is None else names & set(fields)
    core: dict[str, str] = {}
    custom: dict[str, str] = {}
    for name in wanted:
        value = fields[name]
        if name in CORE_FIELDS:
            text = "" if value is None else str(value)
            core[CORE_FIELDS[name]] = text.upper() if name == "country" else text
        elif name == "language":
            pack = moodle_lang(value, mapping.languages)
            if pack is not None:
                core["lang"] = pack
        elif name == "job_title":
            if mapping.job_title_field:
                custom[mapping.job_title_field] = "" if value is None else str(value)
            else:
                core["department"] = "" if value is None else str(value)
        elif (short := mapping.profile_field(name)) is not None:
            custom[short] = profile_value(name, value)
    if "email" in core:
        core["username"] = core["email"].strip().lower()
        core["email"] = core["email"].strip()
    return core, custom


def _custom(user: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in user.get("customfields") or []:
        if isinstance(item, dict) and isinstance(item.get("shortname"), str):
            values[item["shortname"]] = item.get("value")
    return values


def custom_values(user: Mapping[str, Any]) -> dict[str, Any]:
    """A Moodle user's custom profile field values, by short name."""
    return _custom(user)


def neutral_fields(mapping: MoodleMapping, user: Mapping[str, Any]) -> dict[str, Any]:
    """The maintained fields as Moodle holds them, in lmsync's neutral names (for diffs)."""
    custom = _custom(user)
    out: dict[str, Any] = {
        name: _blank(user.get(moodle))
        for name, moodle in CORE_FIELDS.items()
        if name not in HIDDEN_UNLESS_SHOWN or moodle in user
    }
    out["email"] = _blank(user.get("email"))
    out["language"] = neutral_lang(_blank(user.get("lang")))
    # Moodle lists a custom field only when it holds a value (and not at all when the site lacks
    # it): absent, it is unknown, and compared with what lmsync last wrote.
    if not mapping.job_title_field:
        out["job_title"] = _blank(user.get("department"))
    elif mapping.job_title_field in custom:
        out["job_title"] = _blank(custom[mapping.job_title_field])
    for name in MAINTAINED_PROFILE_FIELDS:
        short = mapping.profile_field(name)
        if not short or short not in custom:
            continue
        value = custom[short]
        if name == "notifications_enabled":
            out[name] = str(value) == "1"
        else:
            out[name] = _blank(value)
    return out


def phone_problem(fields: Mapping[str, Any]) -> str | None:
    """Why Moodle cannot hold a phone number of ``fields`` (it would fail the whole call)."""
    for name, problem in (
        ("home_phone", N_("the home phone has {count} characters; Moodle holds at most {limit}")),
        ("cell_phone", N_("the cell phone has {count} characters; Moodle holds at most {limit}")),
    ):
        value = fields.get(name)
        if value is not None and len(str(value)) > PHONE_MAX:
            return Msg(problem, count=len(str(value)), limit=PHONE_MAX)
    return None
