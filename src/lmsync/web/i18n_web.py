"""The templates' side of i18n: gettext in Jinja, every printed Msg said in the reader's
language, and filters for dates, numbers and place names."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from lmsync import i18n


def _html_lang() -> str:
    return i18n.current().replace("_", "-")


def install(env: Environment) -> None:
    """Make ``env`` speak the current language (``jinja2.ext.i18n`` must be loaded)."""
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True
    )
    # Every {{ value }}: a Msg (a domain error, a history line, a flash) in the reader's language.
    env.finalize = i18n.localize
    env.globals["html_lang"] = _html_lang
    env.globals["current_language"] = i18n.current
    env.globals["LANGUAGE_NAMES"] = i18n.LANGUAGE_NAMES
    filters: dict[str, Any] = {
        "l10n": i18n.text,
        "date": i18n.format_date,
        "datetime": i18n.format_datetime,
        "number": i18n.format_number,
        "country": i18n.country_name,
        "province": i18n.subdivision_name,
        "language": i18n.language_name,
    }
    env.filters.update(filters)
