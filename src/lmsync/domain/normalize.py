"""Validate and normalize the fields of an employee as entered by a person or an HR export.

Pure functions, no I/O: each takes a raw value and returns the value to store (and, where useful,
a canonical form for comparison), or raises :class:`NormalizationError` with a message a person
can act on. Formats are checked with the dedicated libraries (email-validator,
phonenumbers, pycountry, langcodes), not with hand-written patterns.
"""

from __future__ import annotations

import functools
import gettext
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

import email_validator
import langcodes
import phonenumbers
import pycountry
from langcodes.tag_parser import LanguageTagError

from lmsync.i18n import N_, Msg, _

__all__ = [
    "NormalizationError",
    "clean_text",
    "normalize_country",
    "normalize_email",
    "normalize_language",
    "normalize_name",
    "normalize_phone",
    "normalize_province",
]

EMAIL_MAX_LENGTH = 254
COUNTRY_MAX_LENGTH = 100
PROVINCE_MAX_LENGTH = 100
PHONE_MAX_LENGTH = 50
LANGUAGE_MAX_LENGTH = 64

_CONTROL_CATEGORIES = frozenset({"Cc", "Cf"})
# Any region phonenumbers knows; only used to tell "no country" from "bad +code" apart.
_PROBE_REGION = "US"


class NormalizationError(ValueError):
    """A value was refused; ``message`` says why in words a user can act on (a :class:`Msg`
    where lmsync wrote it, so it can be said in the reader's language)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- text ------------------------------------------------------------------------------------


def clean_text(value: str | None, *, max_length: int) -> str | None:
    """Return ``value`` in NFC, trimmed, with inner whitespace runs collapsed; ``None`` if empty.

    Control and format characters (Unicode categories Cc and Cf) inside the text are refused;
    at either end they are only removed when they are whitespace (a trailing newline, a tab).
    """
    if value is None:
        return None
    text = unicodedata.normalize("NFC", value).strip()
    if any(unicodedata.category(ch) in _CONTROL_CATEGORIES for ch in text):
        raise NormalizationError(_("must not contain control characters"))
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) > max_length:
        raise NormalizationError(
            _("must be at most {max_length} characters", max_length=max_length)
        )
    return text


def normalize_name(value: str | None, *, max_length: int = 100) -> str:
    """Return a required person name, cleaned by :func:`clean_text`; letters are kept as typed."""
    return _required(value, max_length=max_length)


def _required(value: str | None, *, max_length: int) -> str:
    """:func:`clean_text`, with an empty value refused as "is required"."""
    text = clean_text(value, max_length=max_length)
    if text is None:
        raise NormalizationError(_("is required"))
    return text


def fold(value: str) -> str:
    """Case- and accent-insensitive form ("Émirats" -> "emirats"), to look up or sort names."""
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _match_key(value: str) -> str:
    """Case-, accent- and punctuation-insensitive form used to look names and codes up."""
    spaced = "".join(ch if ch.isalnum() else " " for ch in fold(value))
    return " ".join(spaced.split())


# --- email -----------------------------------------------------------------------------------


def normalize_email(value: str) -> tuple[str, str]:
    """Return ``(stored, key)`` for an email address.

    ``stored`` is the address as entered (trimmed, NFC), keeping the user's letter case;
    ``key`` is its case-folded form, to compare addresses. Internationalized addresses are
    accepted; deliverability (DNS) is not checked.
    """
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise NormalizationError(_("is required"))
    if len(text) > EMAIL_MAX_LENGTH:
        raise NormalizationError(
            _("must be at most {max_length} characters", max_length=EMAIL_MAX_LENGTH)
        )
    try:
        email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise NormalizationError(_email_message(str(exc))) from exc
    return text, unicodedata.normalize("NFC", text.casefold())


# email-validator's messages (its English), so that the usual ones can be said in French too;
# any other is shown as the library wrote it.
_EMAIL_MESSAGES = frozenset(
    {
        N_("An email address must have an @-sign."),
        N_("There must be something before the @-sign."),
        N_("There must be something after the @-sign."),
        N_("The part after the @-sign is not valid. It should have a period."),
        N_("The part after the @-sign is not valid. It is not within a valid top-level domain."),
        N_("An email address cannot have two periods in a row."),
        N_("An email address cannot start with a period."),
        N_("An email address cannot end with a period."),
        N_("An email address cannot end with a hyphen."),
        N_("An email address cannot have a period immediately before the @-sign."),
        N_("An email address cannot have a period immediately after the @-sign."),
        N_("An email address cannot have a hyphen immediately after the @-sign."),
        N_("An email address cannot have a period and a hyphen next to each other."),
        N_("A bracketed IP address after the @-sign is not allowed here."),
        N_(
            "The part after the @-sign is a special-use or reserved name that cannot be used "
            "with email."
        ),
    }
)
_EMAIL_PATTERNS = (
    (
        re.compile(
            r"The email address contains invalid characters before the @-sign: (.+)\.", re.S
        ),
        N_("The email address contains invalid characters before the @-sign: {characters}."),
    ),
    (
        re.compile(r"The part after the @-sign contains invalid characters: (.+)\.", re.S),
        N_("The part after the @-sign contains invalid characters: {characters}."),
    ),
    (
        re.compile(r"The email address contains unsafe characters: (.+)\.", re.S),
        N_("The email address contains unsafe characters: {characters}."),
    ),
)


def _email_message(text: str) -> str:
    """email-validator's message, as a translatable :class:`Msg` when it is a known one."""
    if text in _EMAIL_MESSAGES:
        return Msg(text)
    for pattern, template in _EMAIL_PATTERNS:
        found = pattern.fullmatch(text)
        if found:
            return Msg(template, characters=found[1])
    return text


# --- country ---------------------------------------------------------------------------------


def _french(domain: str) -> gettext.NullTranslations:
    return gettext.translation(domain, pycountry.LOCALES_DIR, languages=["fr"], fallback=True)


@functools.cache
def _country_table() -> dict[str, str]:
    """Match key -> alpha-2 for every code, English name and French name of pycountry."""
    french = _french("iso3166-1")
    codes: dict[str, str] = {}
    english: dict[str, str] = {}
    translated: dict[str, str] = {}
    for country in pycountry.countries:
        alpha_2 = str(country.alpha_2)
        codes.setdefault(_match_key(alpha_2), alpha_2)
        codes.setdefault(_match_key(str(country.alpha_3)), alpha_2)
        for attribute in ("name", "official_name", "common_name"):
            name = getattr(country, attribute, None)
            if name:
                english.setdefault(_match_key(str(name)), alpha_2)
                translated.setdefault(_match_key(french.gettext(str(name))), alpha_2)
    # Codes win over names, English names over French ones.
    return {**translated, **english, **codes}


def normalize_country(value: str) -> str:
    """Return the ISO 3166-1 alpha-2 code for a code (alpha-2/alpha-3) or an English/French name."""
    text = _required(value, max_length=COUNTRY_MAX_LENGTH)
    code = _country_table().get(_match_key(text))
    if code is None:
        raise NormalizationError(
            _(
                'unknown country "{value}"; use an ISO 3166 code such as CA or a country name',
                value=text,
            )
        )
    return code


# --- province / subdivision ------------------------------------------------------------------


def _unambiguous(
    candidates: Iterable[tuple[str, str, bool]],
) -> dict[str, str]:
    """Build key -> code from (key, code, is_top_level) triples, dropping ambiguous keys.

    When a key names several subdivisions, a single top-level one (no parent) wins; otherwise
    the key is left out, and the value will be kept as entered.
    """
    grouped: defaultdict[str, dict[str, bool]] = defaultdict(dict)
    for key, code, top_level in candidates:
        if key:
            grouped[key][code] = top_level
    table: dict[str, str] = {}
    for key, codes in grouped.items():
        if len(codes) == 1:
            table[key] = next(iter(codes))
            continue
        top = [code for code, top_level in codes.items() if top_level]
        if len(top) == 1:
            table[key] = top[0]
    return table


@functools.cache
def _subdivision_tables() -> dict[str, dict[str, str]]:
    """Country alpha-2 -> (match key -> ISO 3166-2 code), for codes and English/French names."""
    french = _french("iso3166-2")
    by_country: defaultdict[str, list[tuple[str, str, str, bool]]] = defaultdict(list)
    for subdivision in pycountry.subdivisions:
        code = str(subdivision.code)
        name = str(subdivision.name)
        top_level = getattr(subdivision, "parent_code", None) is None
        by_country[str(subdivision.country_code)].append(
            (code, name, french.gettext(name), top_level)
        )
    tables: dict[str, dict[str, str]] = {}
    for country, entries in by_country.items():
        codes = _unambiguous(
            (_match_key(text), code, top)
            for code, _, _, top in entries
            for text in (code, code.partition("-")[2])
        )
        names = _unambiguous(
            (_match_key(text), code, top)
            for code, english, french_name, top in entries
            for text in (english, french_name)
        )
        # A code wins over a name that looks the same.
        tables[country] = {**names, **codes}
    return tables


@functools.cache
def _all_subdivision_codes() -> dict[str, str]:
    """Match key of a full ISO 3166-2 code ("ca qc") -> the code ("CA-QC")."""
    return {_match_key(str(s.code)): str(s.code) for s in pycountry.subdivisions}


def normalize_province(value: str, country: str | None) -> str:
    """Return the ISO 3166-2 code of a province/state of ``country`` where it is known.

    Accepts the code ("QC" or "CA-QC") or the English or French name, ignoring case and
    accents. A value that matches nothing (or any value when the country is unknown, unless it
    is a full ISO 3166-2 code) is returned cleaned but otherwise as entered: it is not an error.
    """
    text = _required(value, max_length=PROVINCE_MAX_LENGTH)
    key = _match_key(text)
    if country is None:
        return _all_subdivision_codes().get(key, text)
    table = _subdivision_tables().get(country.strip().upper(), {})
    return table.get(key, text)


# --- phone -----------------------------------------------------------------------------------


def normalize_phone(value: str, country: str | None) -> tuple[str, str | None]:
    """Return ``(as_entered, e164)`` for a phone number.

    ``country`` (alpha-2) is the region assumed for national numbers. ``e164`` is ``None``
    when the number can be read but is not a valid number; an extension is not part of E.164.
    """
    text = _required(value, max_length=PHONE_MAX_LENGTH)
    region = country.strip().upper() if country else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise NormalizationError(_phone_error(text, exc)) from exc
    if not phonenumbers.is_valid_number(number):
        return text, None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return text, str(e164)


def _phone_error(text: str, exc: phonenumbers.NumberParseException) -> Msg:
    if exc.error_type != phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
        return _('not a phone number: "{value}"', value=text)
    # Either there is no +code and no usable country, or the +code itself is unknown:
    # reading the number with a known region tells which.
    try:
        phonenumbers.parse(text, _PROBE_REGION)
    except phonenumbers.NumberParseException as probe:
        if probe.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return _('unknown country calling code in "{value}"', value=text)
        return _('not a phone number: "{value}"', value=text)
    return _(
        'cannot tell the country of "{value}": add the country code (+1 ...) or set the country',
        value=text,
    )


# --- language --------------------------------------------------------------------------------


def normalize_language(value: str) -> str:
    """Return a standardized BCP 47 language tag ("FR-ca" -> "fr-CA", "en_US" -> "en-US").

    Tags without a known language subtag ("zz", "und", private-use only "x-...") are refused.
    """
    text = value.strip()
    if len(text) > LANGUAGE_MAX_LENGTH or not langcodes.tag_is_valid(text):
        raise NormalizationError(_not_a_language(text))
    try:
        tag = str(langcodes.standardize_tag(text))
    except LanguageTagError as exc:
        raise NormalizationError(_not_a_language(text)) from exc
    language = langcodes.Language.get(tag).language
    # "und" (undetermined) has no language subtag; langcodes files a private-use-only tag
    # ("x-foo") as its language: neither names a language.
    if language is None or str(language).startswith("x-"):
        raise NormalizationError(_not_a_language(text))
    return tag


def _not_a_language(text: str) -> Msg:
    return _('not a language tag: "{value}"; use a BCP 47 tag such as fr, en or fr-CA', value=text)
