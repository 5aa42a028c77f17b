"""The language of the moment and the formatting in it: table tests, no server."""

from __future__ import annotations

import pickle
from datetime import UTC, date, datetime

import pytest

from lmsync import i18n


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("fr-CA", "fr_CA"),
        ("fr", "fr_CA"),
        ("fr-FR,fr;q=0.9", "fr_CA"),
        ("de-DE, en;q=0.5", "en"),
        ("de-DE, fr;q=0.5", "fr_CA"),
        ("en;q=0.4, fr;q=0.8", "fr_CA"),
        ("fr;q=0, en", "en"),
        ("fr;q=nonsense, en;q=0.1", "en"),
        ("*", "en"),
        ("en-US,en;q=0.9,fr-CA;q=0.8", "en"),
    ],
)
def test_accept_language_negotiation(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header) == expected


@pytest.mark.parametrize(
    ("user", "account", "header", "expected"),
    [
        ("fr_CA", "en", "en", "fr_CA"),  # the user's choice first
        (None, "fr_CA", "en", "fr_CA"),  # then the account's
        (None, None, "fr-CA", "fr_CA"),  # then the browser's
        ("en", "fr_CA", "fr", "en"),
        (None, None, None, "en"),
        ("xx", None, "fr", "fr_CA"),  # an unknown stored value is ignored
    ],
)
def test_language_precedence(
    user: str | None, account: str | None, header: str | None, expected: str
) -> None:
    assert i18n.resolve(user, account, header) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "en"),
        ({"LANG": "fr_CA.UTF-8"}, "fr_CA"),
        ({"LANG": "fr-CA.UTF-8"}, "fr_CA"),
        ({"LANG": "fr_FR@euro"}, "fr_CA"),
        ({"LANG": "fr"}, "fr_CA"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "en"),  # not supported: English
        ({"LANG": "C"}, "en"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "POSIX"}, "en"),
        ({"LC_ALL": "fr_CA.UTF-8", "LANG": "en_US.UTF-8"}, "fr_CA"),  # LC_ALL first
        ({"LC_ALL": "C", "LANG": "fr_CA.UTF-8"}, "en"),
        ({"LC_MESSAGES": "fr_CA.UTF-8", "LANG": "en_US.UTF-8"}, "fr_CA"),  # then LC_MESSAGES
        ({"LC_ALL": "en_CA.UTF-8", "LC_MESSAGES": "fr_CA.UTF-8"}, "en"),
        ({"LC_ALL": "", "LC_MESSAGES": "", "LANG": "fr_CA.UTF-8"}, "fr_CA"),  # empty: skipped
        ({"LANGUAGE": "fr_CA:en", "LANG": "en_US.UTF-8"}, "fr_CA"),  # LANGUAGE before them
        ({"LANGUAGE": "en:fr", "LC_ALL": "fr_CA.UTF-8"}, "en"),
        ({"LANGUAGE": "de:fr", "LANG": "en_US.UTF-8"}, "fr_CA"),  # its first supported entry
        ({"LANGUAGE": "de", "LANG": "fr_CA.UTF-8"}, "fr_CA"),  # none supported: the locale
        ({"LANGUAGE": "fr_CA", "LANG": "C"}, "en"),  # ignored in the C locale
        ({"LANGUAGE": "fr_CA"}, "en"),  # ... which an unset locale is
        ({"LANGUAGE": "", "LANG": "fr_CA.UTF-8"}, "fr_CA"),
    ],
)
def test_the_posix_locale_environment_picks_the_language(
    environ: dict[str, str], expected: str
) -> None:
    assert i18n.from_environment(environ) == expected


def test_a_msg_is_english_text_that_remembers_its_template() -> None:
    msg = i18n._("{count} employees", count=3)
    assert msg == "3 employees"
    assert isinstance(msg, str)
    assert msg.code == "{count} employees"
    assert pickle.loads(pickle.dumps(msg)).params == {"count": 3}  # noqa: S301 - our own value


def test_localize_leaves_other_values_alone() -> None:
    assert i18n.localize(5) == 5
    assert i18n.localize("plain") == "plain"
    assert i18n.text(None) == ""


def test_a_nested_message_is_localized_too() -> None:
    inner = i18n._("Saved.")
    outer = i18n._("{what} ({when})", what=inner, when="now")
    with i18n.using("fr_CA"):
        assert i18n.localize(outer) == f"{i18n.gettext('Saved.')} (now)"


def test_using_restores_the_language() -> None:
    i18n.begin("en")
    with i18n.using("fr_CA"):
        assert i18n.current() == "fr_CA"
    assert i18n.current() == "en"
    i18n.choose("fr_CA")
    assert i18n.current() == "fr_CA"
    i18n.begin("en")


@pytest.mark.parametrize(
    ("language", "expected_date", "expected_number", "country", "province"),
    [
        ("en", "Dec 2, 2026", "12,345.5", "Canada", "Quebec"),
        ("fr_CA", "2 déc. 2026", "12\xa0345,5", "Canada", "Québec"),
    ],
)
def test_formats_follow_the_language(
    language: i18n.Language, expected_date: str, expected_number: str, country: str, province: str
) -> None:
    with i18n.using(language):
        assert i18n.format_date(date(2026, 12, 2)) == expected_date
        assert i18n.format_number(12345.5) == expected_number
        assert i18n.country_name("ca") == country
        assert i18n.subdivision_name("CA-QC") == province
        assert i18n.country_name("XQ") == "XQ"
        assert i18n.subdivision_name("nowhere") == "nowhere"


def test_a_moment_is_shown_in_the_account_time_zone() -> None:
    moment = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    with i18n.using("fr_CA"):
        assert i18n.format_datetime(moment, "America/Toronto") == "2 déc. 2026, 10 h 00"
    with i18n.using("en"):
        naive_utc = moment.replace(tzinfo=None)
        assert "10:00" in i18n.format_datetime(naive_utc, "America/Toronto")
        assert "3:00" in i18n.format_datetime(naive_utc, "Not/AZone")  # unknown zone: UTC


@pytest.mark.parametrize(
    ("n", "english", "french"),
    [
        (0, "0 employees cannot be synchronized", "0 employé ne peut pas"),  # French: 0 is one
        (1, "1 employee cannot be synchronized", "1 employé ne peut pas"),
        (2, "2 employees cannot be synchronized", "2 employés ne peuvent pas"),
    ],
)
def test_a_plural_message_takes_the_form_of_the_reader_language(
    n: int, english: str, french: str
) -> None:
    singular = (
        "{count} employee cannot be synchronized until someone settles a conflict (a shared "
        "email, or an LMS user that matches several people)."
    )
    plural = singular.replace("employee cannot", "employees cannot")
    message = i18n._n(singular, plural, n, count=n)
    assert message.startswith(english)  # the English text is the str itself
    assert message.code == singular
    copied = pickle.loads(pickle.dumps(message))  # noqa: S301 - our own value
    assert copied == message
    with i18n.using("fr_CA"):
        assert i18n.text(message).startswith(french)
        assert i18n.text(copied).startswith(french)
