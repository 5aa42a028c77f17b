"""French (Canada) and English: the message catalogues, the language of the moment, and the
formatting of dates, numbers and place names in it.

A message a user reads is written in English in the code, marked with ``_`` (or ``{% trans %}``
and ``_()`` in the templates) and extracted by Babel into ``locale/<lang>/LC_MESSAGES/
messages.po`` (``scripts/i18n.sh``). In Python, ``_("...", name=value)`` returns a :class:`Msg`:
a ``str`` whose value is the English text (so logs, the API's stable codes and comparisons stay
English) that remembers its template and parameters, so :func:`localize` can say it again in
the reader's language where it is shown (pages, problem details, emails, the CLI).

The language of the moment lives in a context variable holding a mutable box: the HTTP
middleware puts one in with the browser's Accept-Language; the session lookup (which runs in a
worker thread, whose context is a copy) updates the same box with the user's or the account's
choice, and every later step of the request sees it.

The catalogues are compiled by Babel when first needed (a few milliseconds), not by a build
step: editable installs, wheels and the demo then share one path and no stale ``.mo`` exists.
"""

from __future__ import annotations

import gettext as gettext_module
import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo

import pycountry
from babel import Locale, UnknownLocaleError
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
Language = Literal["en", "fr_CA"]
LANGUAGES: tuple[Language, ...] = ("en", "fr_CA")
DEFAULT: Language = "en"
# Shown in the language pickers, each in its own language.
LANGUAGE_NAMES: dict[Language, str] = {"en": "English", "fr_CA": "Français (Canada)"}


class Msg(str):
    """A user-facing message: English as a ``str``, translatable by :func:`localize`.

    ``template`` is the catalogue's msgid ("{field} must be a date"), ``params`` fill its
    ``{placeholders}``; a parameter that is itself a Msg is localized too.
    """

    template: str
    params: Mapping[str, Any]

    def __new__(cls, template: str, /, **params: Any) -> Self:
        text = template.format(**params) if params else template
        obj = super().__new__(cls, text)
        obj.template = template
        obj.params = params
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.template, dict(self.params)))

    @property
    def code(self) -> str:
        """A stable English code for machines: the template, without its parameters."""
        return self.template


def _rebuild(template: str, params: dict[str, Any]) -> Msg:
    return Msg(template, **params)


class PluralMsg(Msg):
    """A message whose words follow a count ``n``: English's singular (n == 1) or plural as a
    ``str``; :func:`localize` takes the reader's language's form (French says "0 employé")."""

    plural: str
    n: int

    def __new__(cls, singular: str, plural: str, n: int, /, **params: Any) -> Self:
        obj = super().__new__(cls, singular if n == 1 else plural, **params)
        obj.template = singular  # the catalogue's msgid, and the message's code
        obj.plural = plural
        obj.n = n
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_plural, (self.template, self.plural, self.n, dict(self.params)))

    @property
    def english(self) -> str:
        return self.template if self.n == 1 else self.plural


def _rebuild_plural(singular: str, plural: str, n: int, params: dict[str, Any]) -> PluralMsg:
    return PluralMsg(singular, plural, n, **params)


def _(template: str, /, **params: Any) -> Msg:
    """Mark ``template`` for translation (Babel extracts the calls to ``_``)."""
    return Msg(template, **params)


def _n(singular: str, plural: str, n: int, /, **params: Any) -> PluralMsg:
    """Mark a message with a singular and a plural (Babel's keyword ``_n:1,2``)."""
    return PluralMsg(singular, plural, n, **params)


def N_(template: str, /) -> str:  # noqa: N802 - the gettext convention
    """Mark a string for extraction only; it is translated where it is shown (``localize``)."""
    return template


@dataclass
class LocaleBox:
    """The request's (or command's) language; mutable so a worker thread can set it."""

    language: Language = DEFAULT


_CURRENT: ContextVar[LocaleBox | None] = ContextVar("lmsync_locale", default=None)


def current() -> Language:
    box = _CURRENT.get()
    return box.language if box is not None else DEFAULT


def begin(language: Language = DEFAULT) -> LocaleBox:
    """A new box for this context (a request, a command); later ``choose`` calls update it."""
    box = LocaleBox(language)
    _CURRENT.set(box)
    return box


def choose(language: Language) -> None:
    """Switch the current box (made by ``begin``) to ``language``; outside one, start one."""
    box = _CURRENT.get()
    if box is None:
        begin(language)
    else:
        box.language = language


@contextmanager
def using(language: Language) -> Iterator[None]:
    """Run a block in ``language`` (an email to an account, a test), then restore."""
    token = _CURRENT.set(LocaleBox(language))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def supported(tag: str | None) -> Language | None:
    """The supported language a BCP 47 / POSIX tag asks for ("fr", "fr-FR", "fr_CA" -> fr_CA)."""
    if not tag:
        return None
    primary = tag.replace("_", "-").split("-")[0].strip().casefold()
    if primary == "fr":
        return "fr_CA"
    if primary == "en":
        return "en"
    return None


def from_environment(environ: Mapping[str, str]) -> Language:
    """The language the POSIX locale environment asks for (the command line's).

    The first non-empty of LC_ALL, LC_MESSAGES, LANG ("fr_CA.UTF-8", "fr_FR@euro"...); unset,
    "C" or "POSIX" is English. As in GNU gettext, LANGUAGE ("fr_CA:fr:en") comes first unless
    that locale is "C" or "POSIX": its first supported entry wins. Otherwise English.
    """
    posix = next((environ[n] for n in ("LC_ALL", "LC_MESSAGES", "LANG") if environ.get(n)), "")
    posix = posix.split(".")[0].split("@")[0].strip()
    if posix in ("", "C", "POSIX"):
        return DEFAULT
    for entry in environ.get("LANGUAGE", "").split(":"):
        language = supported(entry.split(".")[0].split("@")[0])
        if language is not None:
            return language
    return supported(posix) or DEFAULT


def negotiate(accept_language: str | None) -> Language:
    """The best supported language of an Accept-Language header (RFC 9110 q-values)."""
    best: tuple[float, int, Language] | None = None
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _sep, rest = part.strip().partition(";")
        q = 1.0
        for param in rest.split(";"):
            name, _eq, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        language = supported(tag)
        if language is None or q <= 0:
            continue
        if best is None or (q, -position) > (best[0], -best[1]):
            best = (q, position, language)
    return best[2] if best else DEFAULT


def resolve(
    user_choice: str | None, account_choice: str | None, accept_language: str | None
) -> Language:
    """The signed-in user's choice, else the account's language, else the browser's."""
    return supported(user_choice) or supported(account_choice) or negotiate(accept_language)


@cache
def translations(language: Language) -> gettext_module.NullTranslations:
    """The compiled catalogue of ``language`` (English: the messages as written)."""
    po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == DEFAULT or not po.exists():
        return gettext_module.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext(message: str) -> str:
    """``message`` in the current language (itself when the catalogue lacks it)."""
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current()).ngettext(singular, plural, n)


def localize(value: Any) -> Any:
    """A Msg said in the current language; any other value unchanged."""
    if not isinstance(value, Msg):
        return value
    if isinstance(value, PluralMsg):
        template, english = ngettext(value.template, value.plural, value.n), value.english
    else:
        template, english = gettext(value.template), value.template
    if not value.params:
        return template
    params = {k: localize(v) for k, v in value.params.items()}
    try:
        return template.format(**params)
    except (KeyError, IndexError, ValueError):  # a broken translation: say it in English
        return english.format(**params)


def text(value: Any) -> str:
    """``localize`` for a place that needs a ``str`` (None is "")."""
    return "" if value is None else str(localize(value))


# --- formatting ---------------------------------------------------------------------------


def babel_locale(language: Language | None = None) -> Locale:
    return Locale.parse(language or current())


def format_date(value: date | None, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return babel_dates.format_date(value, format=fmt, locale=babel_locale())


def format_datetime(value: datetime | None, tz: str | None = None) -> str:
    """A moment in ``tz`` (an IANA name; UTC when absent or unknown), to the minute:
    "2 déc. 2026 10 h 00" / "Dec 2, 2026, 10:00 AM"."""
    if value is None:
        return ""
    try:
        zone = ZoneInfo(tz or "UTC")
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    if value.tzinfo is None:  # the database's naive UTC
        value = value.replace(tzinfo=ZoneInfo("UTC"))
    local = value.astimezone(zone)
    locale = babel_locale()
    day = babel_dates.format_date(local.date(), format="medium", locale=locale)
    time = babel_dates.format_time(local.time(), format="short", locale=locale)
    return str(locale.datetime_formats["medium"]).format(time, day)


def format_number(value: float | int | None) -> str:
    if value is None:
        return ""
    return babel_numbers.format_decimal(value, locale=babel_locale())


def country_name(code: str | None) -> str:
    """The country's name in the current language (CLDR), else the code itself."""
    if not code:
        return ""
    return str(babel_locale().territories.get(code.upper(), code))


def language_name(tag: str | None) -> str:
    """A BCP 47 tag's name in the current language ("fr-CA" -> "français canadien")."""
    if not tag:
        return ""
    try:
        name = babel_locale().languages.get(tag.replace("-", "_"))
        if name is None:
            name = Locale.parse(tag.replace("-", "_")).get_display_name(babel_locale())
    except (ValueError, UnknownLocaleError):
        return tag
    return name or tag


@cache
def _subdivision_translations(language: Language) -> gettext_module.NullTranslations:
    if language == DEFAULT:
        return gettext_module.NullTranslations()
    return gettext_module.translation(
        "iso3166-2", pycountry.LOCALES_DIR, languages=[language.split("_")[0]], fallback=True
    )


def subdivision_name(code: str | None) -> str:
    """An ISO 3166-2 subdivision's name ("CA-QC" -> "Québec"), else the code itself."""
    if not code:
        return ""
    found = pycountry.subdivisions.get(code=code.upper())  # type: ignore[no-untyped-call]
    if found is None:
        return code
    return _subdivision_translations(current()).gettext(found.name)
