"""Unit tests of lmsync.domain.normalize: good and bad values for every normalizer."""

from __future__ import annotations

import unicodedata

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmsync.domain.normalize import (
    NormalizationError,
    clean_text,
    normalize_country,
    normalize_email,
    normalize_language,
    normalize_name,
    normalize_phone,
    normalize_province,
)

ALL_COUNTRIES = sorted(pycountry.countries, key=lambda c: c.alpha_2)
ALL_SUBDIVISIONS = sorted(pycountry.subdivisions, key=lambda s: s.code)


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


# --- NormalizationError ----------------------------------------------------------------------


def test_normalization_error_carries_message_and_is_a_value_error() -> None:
    error = NormalizationError('unknown country "Atlantis"')
    assert isinstance(error, ValueError)
    assert error.message == 'unknown country "Atlantis"'
    assert str(error) == 'unknown country "Atlantis"'


# --- clean_text ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("\n\t ", None),
        ("abc", "abc"),
        ("  abc  ", "abc"),
        ("a   b    c", "a b c"),
        ("a\u00a0\u00a0b", "a b"),  # no-break spaces collapse to one plain space
        ("a\u2003b", "a b"),  # em space
        ("Tremblay\n", "Tremblay"),  # surrounding newline is only whitespace
        (_nfd("Zoë"), "Zoë"),  # decomposed input comes out composed (NFC)
        ("x" * 10, "x" * 10),  # exactly max_length
        ("  " + "x" * 10 + "  ", "x" * 10),  # length counted after trimming
    ],
)
def test_clean_text_good(value: str | None, expected: str | None) -> None:
    assert clean_text(value, max_length=10) == expected


def test_clean_text_nfc_result_is_composed() -> None:
    result = clean_text(_nfd("é"), max_length=10)
    assert result == "\u00e9"
    assert len(result) == 1


@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",  # NUL
        "a\tb",  # inner tab is a control character
        "a\nb",  # inner newline
        "a\x1bb",  # escape
        "a\x7fb",  # delete
        "a\u200bb",  # zero-width space (Cf)
        "a\u202eb",  # right-to-left override (Cf)
        "\ufeffabc",  # byte order mark (Cf)
    ],
)
def test_clean_text_rejects_control_characters(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        clean_text(value, max_length=100)
    assert info.value.message == "must not contain control characters"


@pytest.mark.parametrize(("value", "max_length"), [("x" * 11, 10), ("ab cd", 4), ("é" * 3, 2)])
def test_clean_text_rejects_too_long(value: str, max_length: int) -> None:
    with pytest.raises(NormalizationError) as info:
        clean_text(value, max_length=max_length)
    assert info.value.message == f"must be at most {max_length} characters"


@given(st.text(max_size=60))
def test_clean_text_output_is_clean_and_stable(value: str) -> None:
    try:
        result = clean_text(value, max_length=40)
    except NormalizationError:
        return
    if result is None:
        assert value.strip() == ""
        return
    assert result == result.strip()
    assert result == " ".join(result.split())
    assert unicodedata.is_normalized("NFC", result)
    assert len(result) <= 40
    assert not any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in result)
    assert clean_text(result, max_length=40) == result


# --- normalize_name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Zoë Lévesque-Ngô", "Zoë Lévesque-Ngô"),
        (_nfd("Zoë Lévesque-Ngô"), "Zoë Lévesque-Ngô"),
        ("  Jean   Tremblay ", "Jean Tremblay"),
        ("O'Brien", "O'Brien"),
        ("李小龍", "李小龍"),
        ("x" * 100, "x" * 100),
    ],
)
def test_normalize_name_good(value: str, expected: str) -> None:
    assert normalize_name(value) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "\t\n"])
def test_normalize_name_blank_is_required(value: str | None) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_name(value)
    assert info.value.message == "is required"


def test_normalize_name_too_long() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_name("x" * 101)
    assert info.value.message == "must be at most 100 characters"


def test_normalize_name_custom_max_length() -> None:
    assert normalize_name("abcde", max_length=5) == "abcde"
    with pytest.raises(NormalizationError) as info:
        normalize_name("abcdef", max_length=5)
    assert info.value.message == "must be at most 5 characters"


def test_normalize_name_control_character() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_name("Zoë\x00Lévesque")
    assert info.value.message == "must not contain control characters"


# --- normalize_email -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored", "key"),
    [
        (
            "Jean.Tremblay+hr@Example.CA",
            "Jean.Tremblay+hr@Example.CA",
            "jean.tremblay+hr@example.ca",
        ),
        ("  Jean.Tremblay@example.ca \n", "Jean.Tremblay@example.ca", "jean.tremblay@example.ca"),
        ("josé@exämple.ca", "josé@exämple.ca", "josé@exämple.ca"),
        ("José@Exämple.CA", "José@Exämple.CA", "josé@exämple.ca"),
        (_nfd("josé@exämple.ca"), "josé@exämple.ca", "josé@exämple.ca"),
        ("STRASSE@example.de", "STRASSE@example.de", "strasse@example.de"),
        ("Straße@example.de", "Straße@example.de", "strasse@example.de"),  # casefold, not lower
        ("a@b.co", "a@b.co", "a@b.co"),
    ],
)
def test_normalize_email_good(value: str, stored: str, key: str) -> None:
    assert normalize_email(value) == (stored, key)


def test_normalize_email_keys_match_across_letter_case() -> None:
    first = normalize_email("Jean.Tremblay+hr@Example.CA")
    second = normalize_email("jean.tremblay+HR@example.ca")
    assert first[0] != second[0]
    assert first[1] == second[1]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("abc", "@-sign"),
        ("jean.tremblay.example.ca", "@-sign"),
        ("@example.ca", "before the @-sign"),
        ("jean@", "after the @-sign"),
        ("jean@example", "after the @-sign"),
        ("jean tremblay@example.ca", "before the @-sign"),
        ("jean@@example.ca", "after the @-sign"),
        ("jean@exa_mple.ca", "after the @-sign"),
    ],
)
def test_normalize_email_bad_uses_email_validator_message(value: str, fragment: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_email(value)
    assert fragment in info.value.message


@pytest.mark.parametrize("value", ["", "   "])
def test_normalize_email_blank_is_required(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_email(value)
    assert info.value.message == "is required"


def test_normalize_email_too_long() -> None:
    domain = ".".join(["a" * 60] * 4) + ".ca"  # 246 characters
    address = "abcdefgh@" + domain  # 255 characters
    assert len(address) == 255
    with pytest.raises(NormalizationError) as info:
        normalize_email(address)
    assert info.value.message == "must be at most 254 characters"


# --- normalize_country -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Canada", "CA"),
        ("canada", "CA"),
        ("  CANADA  ", "CA"),
        ("CAN", "CA"),
        ("can", "CA"),
        ("ca", "CA"),
        ("CA", "CA"),
        ("Allemagne", "DE"),
        ("allemagne", "DE"),
        ("Germany", "DE"),
        ("DEU", "DE"),
        ("United States", "US"),
        ("United States of America", "US"),
        ("États-Unis", "US"),
        ("etats-unis", "US"),
        ("ETATS-UNIS", "US"),
        ("Viet Nam", "VN"),  # name
        ("Vietnam", "VN"),  # common_name
        ("Socialist Republic of Viet Nam", "VN"),  # official_name
        ("Royaume-Uni", "GB"),
        ("Mexique", "MX"),
        ("Côte d'Ivoire", "CI"),
        ("cote d'ivoire", "CI"),
    ],
)
def test_normalize_country_good(value: str, expected: str) -> None:
    assert normalize_country(value) == expected


@pytest.mark.parametrize("value", ["Atlantis", "Canadaa", "XX", "ZZZ", "Québec", "12"])
def test_normalize_country_unknown(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_country(value)
    assert info.value.message == (
        f'unknown country "{value}"; use an ISO 3166 code such as CA or a country name'
    )


def test_normalize_country_unknown_message_is_trimmed() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_country("  Atlantis ")
    assert info.value.message.startswith('unknown country "Atlantis";')


@pytest.mark.parametrize("value", ["", "   "])
def test_normalize_country_blank_is_required(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_country(value)
    assert info.value.message == "is required"


@given(st.sampled_from(ALL_COUNTRIES), st.sampled_from(["alpha_2", "alpha_3", "name"]))
def test_normalize_country_accepts_every_pycountry_code_and_name(
    country: pycountry.db.Country, attribute: str
) -> None:
    value = getattr(country, attribute)
    assert normalize_country(value) == country.alpha_2
    assert normalize_country(value.lower()) == country.alpha_2
    assert normalize_country(_strip_accents(value).upper()) == country.alpha_2


@given(st.sampled_from(ALL_COUNTRIES))
def test_normalize_country_is_idempotent(country: pycountry.db.Country) -> None:
    once = normalize_country(country.name)
    assert normalize_country(once) == once


# --- normalize_province ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("QC", "CA", "CA-QC"),
        ("qc", "CA", "CA-QC"),
        ("  QC ", "CA", "CA-QC"),
        ("CA-QC", "CA", "CA-QC"),
        ("ca-qc", "CA", "CA-QC"),
        ("Québec", "CA", "CA-QC"),
        ("Quebec", "CA", "CA-QC"),
        ("quebec", "CA", "CA-QC"),
        ("QUÉBEC", "CA", "CA-QC"),
        ("Colombie-Britannique", "CA", "CA-BC"),
        ("colombie britannique", "CA", "CA-BC"),
        ("British Columbia", "CA", "CA-BC"),
        ("Ontario", "CA", "CA-ON"),
        ("ON", "CA", "CA-ON"),
        ("Terre-Neuve-et-Labrador", "CA", "CA-NL"),
        ("Nouveau-Brunswick", "CA", "CA-NB"),
        ("NY", "US", "US-NY"),
        ("New York", "US", "US-NY"),
        ("Bavière", "DE", "DE-BY"),
        ("Bayern", "DE", "DE-BY"),
        ("QC", "ca", "CA-QC"),  # a lower-case country code is tolerated
        # Two subdivisions are named "La Rioja" (the community and its province):
        # the top-level one wins.
        ("La Rioja", "ES", "ES-RI"),
    ],
)
def test_normalize_province_known(value: str, country: str, expected: str) -> None:
    assert normalize_province(value, country) == expected


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("NY", "CA", "NY"),  # not a Canadian subdivision
        ("New York", "CA", "New York"),
        ("  Narnia   Province ", "CA", "Narnia Province"),  # unknown: cleaned, kept as entered
        ("us-ny", "CA", "us-ny"),  # another country's code is not rewritten
        ("Ontario", "ZZ", "Ontario"),  # country without known subdivisions
        ("Quebec", None, "Quebec"),  # no country: names are not looked up
        ("qc", None, "qc"),
    ],
)
def test_normalize_province_unknown_kept_as_entered(
    value: str, country: str | None, expected: str
) -> None:
    assert normalize_province(value, country) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("CA-QC", "CA-QC"), ("ca-qc", "CA-QC"), (" us-ny ", "US-NY")]
)
def test_normalize_province_full_code_without_country(value: str, expected: str) -> None:
    assert normalize_province(value, None) == expected


@pytest.mark.parametrize("value", ["", "  "])
def test_normalize_province_blank_is_required(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_province(value, "CA")
    assert info.value.message == "is required"


def test_normalize_province_too_long() -> None:
    assert normalize_province("x" * 100, "CA") == "x" * 100
    with pytest.raises(NormalizationError) as info:
        normalize_province("x" * 101, "CA")
    assert info.value.message == "must be at most 100 characters"


def test_normalize_province_control_character() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_province("Qué\x00bec", "CA")
    assert info.value.message == "must not contain control characters"


@given(st.sampled_from(ALL_SUBDIVISIONS))
def test_normalize_province_keeps_every_pycountry_code(
    subdivision: pycountry.SubdivisionHierarchy,
) -> None:
    code = subdivision.code
    country = subdivision.country_code
    suffix = code.partition("-")[2]
    assert normalize_province(code, country) == code
    assert normalize_province(code.lower(), country) == code
    assert normalize_province(suffix, country) == code
    assert normalize_province(code, None) == code


# --- normalize_phone -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "country", "expected"),
    [
        ("514 555-0199", "CA", ("514 555-0199", "+15145550199")),
        ("  514 555-0199 ", "CA", ("514 555-0199", "+15145550199")),
        ("(514) 555-0199", "ca", ("(514) 555-0199", "+15145550199")),
        ("+1 (514) 555-0199 ext. 12", "CA", ("+1 (514) 555-0199 ext. 12", "+15145550199")),
        ("+1 (514) 555-0199 ext. 12", None, ("+1 (514) 555-0199 ext. 12", "+15145550199")),
        ("+1 514 555 0199", "FR", ("+1 514 555 0199", "+15145550199")),  # +code wins
        ("01 23 45 67 89", "FR", ("01 23 45 67 89", "+33123456789")),
        ("+33 1 23 45 67 89", None, ("+33 1 23 45 67 89", "+33123456789")),
    ],
)
def test_normalize_phone_valid(
    value: str, country: str | None, expected: tuple[str, str | None]
) -> None:
    assert normalize_phone(value, country) == expected


@pytest.mark.parametrize(
    ("value", "country"),
    [
        ("+1 555 555 5555", None),  # 555 is not an area code
        ("555-0100", "CA"),  # too short for a North American number
        ("+1 (123) 555-0199", "CA"),
    ],
)
def test_normalize_phone_parseable_but_invalid_has_no_e164(value: str, country: str | None) -> None:
    assert normalize_phone(value, country) == (value, None)


@pytest.mark.parametrize(
    ("value", "country", "message"),
    [
        ("abc", "CA", 'not a phone number: "abc"'),
        ("abc", None, 'not a phone number: "abc"'),
        ("1", "CA", 'not a phone number: "1"'),
        ("12345678901234567890", "CA", 'not a phone number: "12345678901234567890"'),
        (
            "514 555-0199",
            None,
            'cannot tell the country of "514 555-0199": '
            "add the country code (+1 ...) or set the country",
        ),
        (
            "514 555-0199",
            "ZZ",
            'cannot tell the country of "514 555-0199": '
            "add the country code (+1 ...) or set the country",
        ),
        ("+999 1234", None, 'unknown country calling code in "+999 1234"'),
        ("+999 1234", "CA", 'unknown country calling code in "+999 1234"'),
    ],
)
def test_normalize_phone_unparseable(value: str, country: str | None, message: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_phone(value, country)
    assert info.value.message == message


@pytest.mark.parametrize("value", ["", "   "])
def test_normalize_phone_blank_is_required(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_phone(value, "CA")
    assert info.value.message == "is required"


def test_normalize_phone_too_long() -> None:
    value = "514 555-0199 " + "x" * 38  # 51 characters
    assert len(value) == 51
    with pytest.raises(NormalizationError) as info:
        normalize_phone(value, "CA")
    assert info.value.message == "must be at most 50 characters"


# --- normalize_language ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fr", "fr"),
        ("FR", "fr"),
        ("en", "en"),
        ("FR-ca", "fr-CA"),
        ("fr-CA", "fr-CA"),
        ("en_US", "en-US"),
        ("  en-gb ", "en-GB"),
        ("es-419", "es-419"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("iw", "he"),  # deprecated code replaced
    ],
)
def test_normalize_language_good(value: str, expected: str) -> None:
    assert normalize_language(value) == expected


@pytest.mark.parametrize(
    "value",
    ["french", "zz", "xx-YY", "", "   ", "und", "x-private", "en-", "fr--CA", "f", "123"],
)
def test_normalize_language_bad(value: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_language(value)
    assert info.value.message == (
        f'not a language tag: "{value.strip()}"; use a BCP 47 tag such as fr, en or fr-CA'
    )


def test_normalize_language_bad_message_example() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_language("french")
    assert info.value.message == (
        'not a language tag: "french"; use a BCP 47 tag such as fr, en or fr-CA'
    )
