"""Unit tests of lmsync.lms.moodle_fields (the pure mapping between lmsync's neutral fields and a
Moodle user) and of the Moodle options of ``InterfaceIn``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from lmsync.domain.interface import InterfaceIn, MoodleOptionsIn, ScimOptionsIn
from lmsync.lms.moodle_fields import (
    DEFAULT_PROFILE_FIELDS,
    PHONE_MAX,
    MoodleMapping,
    moodle_lang,
    neutral_fields,
    neutral_lang,
    phone_problem,
    shape,
    user_values,
)

MOODLE_URL = "https://moodle.example.test"

# Every maintained field (lmsync.sync.mapping.MAINTAINED_FIELDS), filled.
FIELDS: dict[str, Any] = {
    "external_id": "0b7c1c1e-3a52-4c55-9d5e-0d1f3c0e2a11",
    "employee_number": "E-042",
    "first_name": "Jean",
    "last_name": "Tremblay",
    "language": "fr-CA",
    "email": "Jean.Tremblay@Example.ca",
    "company_name": "Acme Inc.",
    "job_title": "Welder",
    "home_phone": "+15145550100",
    "cell_phone": "+15145550199",
    "address": "1 rue Principale",
    "city": "Montréal",
    "province": "QC",
    "country": "ca",
    "postal_code": "H2X 1Y4",
    "notifications_enabled": True,
}
CREATE_ONLY_SHORT_NAMES = {"registrationdate", "expirationdate", "accessmode"}


def _mapping(**kwargs: Any) -> MoodleMapping:
    return MoodleMapping(**kwargs)


# -- languages --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "installed", "expected"),
    [
        ("fr-CA", ("en", "fr", "fr_ca"), "fr_ca"),
        ("fr-CA", ("en", "fr"), "fr"),
        ("fr-CA", ("en",), None),
        ("fr-CA", (), None),
        ("FR-ca", ("fr_ca",), "fr_ca"),
        ("fr_CA", ("fr_ca",), "fr_ca"),
        (" fr-ca ", ("fr_ca",), "fr_ca"),
        ("fr", ("fr_ca",), None),  # a region pack never stands in for its base language
        ("fr", ("en", "fr"), "fr"),
        ("EN", ("en",), "en"),
        ("pt-BR", ("pt", "pt_br"), "pt_br"),
        ("pt-PT", ("pt_br",), None),
        (None, ("en",), None),
        ("", ("en",), None),
    ],
)
def test_moodle_lang(
    language: str | None, installed: tuple[str, ...], expected: str | None
) -> None:
    assert moodle_lang(language, installed) == expected


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("fr_ca", "fr-CA"),
        ("fr", "fr"),
        ("en", "en"),
        ("pt_br", "pt-BR"),
        ("", None),
        (None, None),
    ],
)
def test_neutral_lang(lang: str | None, expected: str | None) -> None:
    assert neutral_lang(lang) == expected


@pytest.mark.parametrize("pack", ["en", "fr", "fr_ca", "pt_br"])
def test_neutral_lang_round_trips_through_moodle_lang(pack: str) -> None:
    assert moodle_lang(neutral_lang(pack), (pack,)) == pack


# -- shape ------------------------------------------------------------------------------------


def test_shape_drops_external_id_and_upper_cases_the_country() -> None:
    shaped = shape(_mapping(languages=("en", "fr_ca")), FIELDS)
    assert "external_id" not in shaped
    assert shaped["country"] == "CA"
    assert shaped["first_name"] == "Jean"
    assert shaped["email"] == "Jean.Tremblay@Example.ca"  # shape does not touch the email


@pytest.mark.parametrize(
    ("language", "installed", "expected"),
    [
        ("fr-CA", ("en", "fr_ca"), "fr-CA"),
        ("fr-CA", ("en", "fr"), "fr"),
        ("fr-CA", ("de", "en"), "de"),  # no pack fits: the first one (the site's default)
        ("es", ("en", "fr"), "en"),
        (None, ("fr", "en"), "fr"),
        ("", ("fr", "en"), "fr"),
        ("fr-CA", (), None),
    ],
)
def test_shape_maps_the_language_to_an_installed_pack(
    language: str | None, installed: tuple[str, ...], expected: str | None
) -> None:
    shaped = shape(_mapping(languages=installed), {"language": language})
    assert shaped == {"language": expected}


def test_shape_without_language_adds_none() -> None:
    assert "language" not in shape(_mapping(), {"first_name": "Jean"})


@pytest.mark.parametrize("name", ["province", "postal_code", "notifications_enabled"])
def test_shape_drops_profile_fields_without_short_name(name: str) -> None:
    profile = {**DEFAULT_PROFILE_FIELDS, name: None}
    shaped = shape(_mapping(profile_fields=profile), FIELDS)
    assert name not in shaped
    kept = {"province", "postal_code", "notifications_enabled"} - {name}
    assert kept <= set(shaped)


def test_shape_keeps_profile_fields_with_short_names() -> None:
    shaped = shape(_mapping(), FIELDS)
    assert shaped["province"] == "QC"
    assert shaped["postal_code"] == "H2X 1Y4"
    assert shaped["notifications_enabled"] is True


@pytest.mark.parametrize("name", ["city", "address", "home_phone", "province", "job_title"])
def test_shape_reads_empty_text_as_none(name: str) -> None:
    assert shape(_mapping(), {**FIELDS, name: ""})[name] is None


# -- user_values -------------------------------------------------------------------------------


def test_user_values_core_fields() -> None:
    shaped = shape(_mapping(languages=("en", "fr_ca")), FIELDS)
    core, custom = user_values(_mapping(languages=("en", "fr_ca")), shaped)
    assert core == {
        "firstname": "Jean",
        "lastname": "Tremblay",
        "email": "Jean.Tremblay@Example.ca",
        "username": "jean.tremblay@example.ca",
        "idnumber": "E-042",
        "institution": "Acme Inc.",
        "department": "Welder",
        "phone1": "+15145550100",
        "phone2": "+15145550199",
        "address": "1 rue Principale",
        "city": "Montréal",
        "country": "CA",
        "lang": "fr_ca",
    }
    assert custom == {"province": "QC", "postalcode": "H2X 1Y4", "notificationsenabled": "1"}


def test_user_values_sends_no_create_only_field() -> None:
    _, custom = user_values(_mapping(), shape(_mapping(), FIELDS))
    assert not CREATE_ONLY_SHORT_NAMES & set(custom)


def test_user_values_job_title_in_a_custom_field() -> None:
    mapping = _mapping(job_title_field="jobtitle")
    core, custom = user_values(mapping, shape(mapping, FIELDS))
    assert "department" not in core
    assert custom["jobtitle"] == "Welder"


@pytest.mark.parametrize(
    ("email", "username"),
    [
        ("Ann.Lee@Example.COM", "ann.lee@example.com"),
        ("  ann@x.com ", "ann@x.com"),
        ("ann@x.com", "ann@x.com"),
    ],
)
def test_user_values_username_is_the_lower_cased_email(email: str, username: str) -> None:
    core, _ = user_values(_mapping(), {"email": email})
    assert core["username"] == username
    assert core["email"] == email.strip()


def test_user_values_sends_cleared_values_empty() -> None:
    mapping = _mapping(job_title_field="jobtitle")
    cleared = {"city": None, "home_phone": None, "job_title": None, "province": None}
    core, custom = user_values(mapping, cleared)
    assert core == {"city": "", "phone1": ""}
    assert custom == {"jobtitle": "", "province": ""}


def test_user_values_cleared_department() -> None:
    core, _ = user_values(_mapping(), {"job_title": None})
    assert core == {"department": ""}


def test_user_values_only_the_names_asked() -> None:
    core, custom = user_values(_mapping(), shape(_mapping(), FIELDS), {"city", "province"})
    assert core == {"city": "Montréal"}
    assert custom == {"province": "QC"}


def test_user_values_notifications_off() -> None:
    _, custom = user_values(_mapping(), {"notifications_enabled": False})
    assert custom == {"notificationsenabled": "0"}


def test_user_values_language_without_pack_is_not_sent() -> None:
    core, _ = user_values(_mapping(languages=("en",)), {"language": "de"})
    assert "lang" not in core


# -- neutral_fields ---------------------------------------------------------------------------

MOODLE_USER: dict[str, Any] = {
    "id": 7,
    "username": "ann@x.com",
    "firstname": "Ann",
    "lastname": "Lee",
    "email": "ann@x.com",
    "idnumber": "E-1",
    "institution": "",
    "department": "Nurse",
    "address": "",
    "city": "Québec",
    "country": "CA",
    "lang": "fr_ca",
    "customfields": [
        {"shortname": "province", "value": "QC", "type": "text"},
        {"shortname": "notificationsenabled", "value": "1", "type": "checkbox"},
        {"shortname": "jobtitle", "value": "Head nurse", "type": "text"},
    ],
}


def test_neutral_fields_reads_core_and_custom_fields() -> None:
    fields = neutral_fields(_mapping(), MOODLE_USER)
    assert fields["first_name"] == "Ann"
    assert fields["employee_number"] == "E-1"
    assert fields["company_name"] is None  # "" reads as None
    assert fields["address"] is None
    assert fields["job_title"] == "Nurse"
    assert fields["language"] == "fr-CA"
    assert fields["province"] == "QC"
    assert "postal_code" not in fields  # not listed by Moodle: unknown, not empty
    assert fields["notifications_enabled"] is True
    assert "external_id" not in fields


def test_neutral_fields_phones_absent_are_unknown() -> None:
    fields = neutral_fields(_mapping(), MOODLE_USER)
    assert "home_phone" not in fields
    assert "cell_phone" not in fields


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        ({"phone1": "+15145550100"}, {"home_phone": "+15145550100"}),
        ({"phone2": "+15145550199"}, {"cell_phone": "+15145550199"}),
        ({"phone1": "", "phone2": "5"}, {"home_phone": None, "cell_phone": "5"}),
    ],
)
def test_neutral_fields_phones_present_are_read(
    shown: dict[str, str], expected: dict[str, Any]
) -> None:
    fields = neutral_fields(_mapping(), {**MOODLE_USER, **shown})
    assert {k: fields[k] for k in ("home_phone", "cell_phone") if k in fields} == expected


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), (1, True), (0, False)])
def test_neutral_fields_checkbox(value: object, expected: bool) -> None:
    user = {**MOODLE_USER, "customfields": [{"shortname": "notificationsenabled", "value": value}]}
    assert neutral_fields(_mapping(), user)["notifications_enabled"] is expected


def test_neutral_fields_job_title_from_custom_field() -> None:
    fields = neutral_fields(_mapping(job_title_field="jobtitle"), MOODLE_USER)
    assert fields["job_title"] == "Head nurse"


def test_neutral_fields_skips_profile_fields_without_short_name() -> None:
    profile = {**DEFAULT_PROFILE_FIELDS, "province": None}
    fields = neutral_fields(_mapping(profile_fields=profile), MOODLE_USER)
    assert "province" not in fields


def test_neutral_fields_match_what_shape_and_user_values_write() -> None:
    """What lmsync writes reads back equal to the shaped desired fields (no rewrite each pass)."""
    mapping = _mapping(languages=("en", "fr_ca"))
    shaped = shape(mapping, FIELDS)
    core, custom = user_values(mapping, shaped)
    stored = {
        "id": 9,
        **core,
        "customfields": [{"shortname": k, "value": v} for k, v in custom.items()],
    }
    assert neutral_fields(mapping, stored) == shaped


# -- phone_problem ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"home_phone": "1" * PHONE_MAX}, None),
        ({"cell_phone": "1" * 20}, None),
        ({"home_phone": None, "cell_phone": None}, None),
        ({}, None),
        ({"home_phone": "1" * 21}, "home phone has 21"),
        ({"cell_phone": "1" * 21}, "cell phone has 21"),
        ({"home_phone": "1" * 20, "cell_phone": "2" * 30}, "cell phone has 30"),
    ],
)
def test_phone_problem(fields: dict[str, Any], problem: str | None) -> None:
    found = phone_problem(fields)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


# -- InterfaceIn with connector "moodle" ------------------------------------------------------


def _interface(**kwargs: Any) -> InterfaceIn:
    return InterfaceIn.model_validate({"base_url": MOODLE_URL, **kwargs})


def _locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[int | str, ...]]:
    return [tuple(error["loc"]) for error in exc.value.errors()]


def test_moodle_options_defaults() -> None:
    interface = _interface(connector="moodle")
    assert isinstance(interface.options, MoodleOptionsIn)
    assert interface.options.languages == ["en"]
    assert interface.options.auth_method == "manual"
    assert interface.options.create_password is True
    assert interface.options.batch_size == 100
    assert interface.options.max_input_vars == 5000


def test_scim_options_defaults() -> None:
    assert isinstance(_interface().options, ScimOptionsIn)
    assert isinstance(_interface(connector="scim", options={}).options, ScimOptionsIn)


def test_moodle_options_given() -> None:
    options = {"auth_method": "oauth2", "create_password": False, "batch_size": 50}
    interface = _interface(connector="moodle", options=options)
    assert isinstance(interface.options, MoodleOptionsIn)
    assert interface.options.auth_method == "oauth2"
    assert interface.options.create_password is False
    assert interface.options.batch_size == 50


@pytest.mark.parametrize("key", ["nope", "use_patch", "portal_id_in"])
def test_moodle_options_unknown_key(key: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="moodle", options={key: "x"})
    assert _locs(exc) == [("options", key)]


def test_moodle_manual_needs_create_password() -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="moodle", options={"create_password": False})
    assert _locs(exc) == [("options", "create_password")]


@pytest.mark.parametrize("method", ["webservice", "mnet"])
def test_moodle_auth_methods_that_cannot_create(method: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="moodle", options={"auth_method": method})
    assert _locs(exc) == [("options", "auth_method")]
    assert method in exc.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("languages", "expected"),
    [
        (["fr-CA"], ["fr_ca"]),
        (["fr-CA", " EN ", "fr_ca"], ["fr_ca", "en"]),
        (["pt_BR", "en"], ["pt_br", "en"]),
    ],
)
def test_moodle_languages_normalised(languages: list[str], expected: list[str]) -> None:
    interface = _interface(connector="moodle", options={"languages": languages})
    assert isinstance(interface.options, MoodleOptionsIn)
    assert interface.options.languages == expected


@pytest.mark.parametrize("languages", [["fr!"], ["e"], ["en", "fr ca"], [""], []])
def test_moodle_invalid_language_refused(languages: list[str]) -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="moodle", options={"languages": languages})
    assert _locs(exc) == [("options", "languages")]


def test_moodle_refuses_a_portal_id() -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="moodle", portal_id="tenant-1")
    assert _locs(exc) == [("portal_id",)]


def test_moodle_blank_portal_id_is_none() -> None:
    assert _interface(connector="moodle", portal_id="  ").portal_id is None


@pytest.mark.parametrize("key", ["nope", "batch_size", "languages", "auth_method"])
def test_scim_options_still_validated(key: str) -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="scim", options={key: 5})
    assert _locs(exc) == [("options", key)]


def test_scim_options_value_checked() -> None:
    with pytest.raises(ValidationError) as exc:
        _interface(connector="scim", options={"max_concurrency": 0})
    assert _locs(exc) == [("options", "max_concurrency")]
