"""Messages of the HR core and the sync said in the reader's language: the stored English reasons
read back as translatable messages, pydantic's and email-validator's messages, field errors.
Their English never changes (the API, the logs and the stored rows keep it)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from lmsync import i18n
from lmsync.domain.errors import FieldError, ValidationFailed
from lmsync.domain.interface import InterfaceIn
from lmsync.domain.normalize import NormalizationError, normalize_country, normalize_email
from lmsync.hr.csv_import import pydantic_field_errors
from lmsync.i18n import Msg, _
from lmsync.sync import engine, guard, reasons, rules
from lmsync.web.pages import field_labels


@pytest.mark.parametrize(
    ("stored", "template"),
    [
        (rules.WORK_EMAIL_REQUIRED, rules.WORK_EMAIL_REQUIRED),
        (rules.SYNC_USERS_OFF, rules.SYNC_USERS_OFF),
        ("changed: email, job_title", rules.CHANGED),
        ("several LMS users have this email (u1, u2)", rules.SEVERAL_USERS),
        (rules.LINKED_ELSEWHERE.format(employee="e-1"), rules.LINKED_ELSEWHERE),
        (guard.JOINED.format(count=3), guard.JOINED),
        (
            guard.ABOVE_THRESHOLD.format(planned=30, done=2, minutes=60, threshold=20),
            guard.ABOVE_THRESHOLD,
        ),
        (engine.LEFT_FOR_NEXT_RUN.format(count=7), engine.LEFT_FOR_NEXT_RUN),
        (engine.HELD, engine.HELD),
    ],
)
def test_a_stored_reason_reads_back_as_its_message(stored: str, template: str) -> None:
    message = reasons.stored(stored)
    assert isinstance(message, Msg)
    assert message == stored  # the English is the stored text, unchanged
    assert message.template == template


def test_a_parameter_that_is_a_stored_reason_is_read_back_too() -> None:
    stored = engine.NOTHING_WENT_THROUGH.format(failed=4, reason=engine.GONE_SEVERAL)
    message = reasons.stored(stored)
    assert isinstance(message, Msg)
    assert message.template == engine.NOTHING_WENT_THROUGH
    assert message.params["reason"] == engine.GONE_SEVERAL
    assert isinstance(message.params["reason"], Msg)


@pytest.mark.parametrize(
    "stored", ["GET /Users: HTTP status 503", "held by the guard; another note", ""]
)
def test_a_text_the_sync_did_not_write_stays_as_stored(stored: str) -> None:
    assert reasons.stored(stored) == stored
    with i18n.using("fr_CA"):
        assert i18n.text(reasons.stored(stored)) == stored  # not in the catalogue
    assert reasons.stored(None) is None


def test_every_stored_template_is_a_reason_with_named_placeholders() -> None:
    for template in reasons.TEMPLATES:
        assert "{" in template
        names = reasons._PLACEHOLDER.findall(template)
        filled = template.format(**{name: f"<{name}>" for name in names})
        message = reasons.stored(filled)
        assert isinstance(message, Msg)
        assert message.template == template
    assert all("{" not in fixed for fixed in reasons.FIXED)


class _Form(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        raise ValueError(_("{name} is taken", name=value))


def test_our_validators_messages_stay_translatable_through_pydantic() -> None:
    with pytest.raises(ValidationError) as info:
        _Form.model_validate({"name": "Zoë"})
    [error] = pydantic_field_errors(info.value)
    assert error.field == "name"
    assert isinstance(error.message, Msg)
    assert error.message == "Zoë is taken"


@pytest.mark.parametrize(
    ("body", "field", "english"),
    [
        (
            {"portal_id": "..", "options": {"portal_id_in": "path"}},
            "portal_id",
            "cannot be a path segment",
        ),
        ({"portal_id": "a\nb"}, "portal_id", "must not contain control characters"),
        (
            {"connector": "moodle", "options": {"languages": ["??"]}},
            "options.languages",
            "'??' is not a Moodle language pack code (e.g. en, fr_ca)",
        ),
    ],
)
def test_interface_field_errors_are_messages(
    body: dict[str, object], field: str, english: str
) -> None:
    with pytest.raises(ValidationError) as info:
        InterfaceIn.model_validate({"base_url": "https://lms.example.com", **body})
    errors = {e.field: e.message for e in pydantic_field_errors(info.value)}
    assert errors[field] == english
    assert isinstance(errors[field], Msg)


def test_a_validation_failure_message_is_said_field_by_field() -> None:
    failed = ValidationFailed(
        [FieldError("work_email", _("is required")), FieldError("days", "plain text")]
    )
    assert failed.message == "work_email: is required; days: plain text"
    assert isinstance(failed.message, Msg)
    assert i18n.text(failed.message) == "work_email: is required; days: plain text"


@pytest.mark.parametrize(
    ("value", "template"),
    [
        ("abc", "An email address must have an @-sign."),
        ("jean@", "There must be something after the @-sign."),
        (
            "jean@exa_mple.ca",
            "The part after the @-sign contains invalid characters: {characters}.",
        ),
    ],
)
def test_email_validator_messages_are_translatable(value: str, template: str) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_email(value)
    assert isinstance(info.value.message, Msg)
    assert info.value.message.template == template


def test_a_normalization_message_keeps_its_value_as_a_parameter() -> None:
    with pytest.raises(NormalizationError) as info:
        normalize_country("Atlantis")
    message = info.value.message
    assert isinstance(message, Msg)
    assert message.params == {"value": "Atlantis"}
    assert message.startswith('unknown country "Atlantis";')


@pytest.mark.parametrize(
    ("stored", "english", "french"),
    [
        (
            "changed: job_title, city",
            "changed: Job title, City",
            "modifications\xa0: Titre du poste, Ville",
        ),
        ("leaving on 2027-01-02", "leaving on Jan 2, 2027", "départ le 2 janv. 2027"),
        ("up to date", "up to date", "à jour"),
        (
            rules.LINKED_ELSEWHERE.format(employee="E-9"),
            "the LMS user with this email is already linked to employee E-9",
            "l'utilisateur du SGA qui a ce courriel est déjà associé à l'employé E-9",
        ),
        ("HTTP 500 from the LMS", "HTTP 500 from the LMS", "HTTP 500 from the LMS"),
    ],
)
def test_the_pages_say_a_stored_reason_with_labels_and_dates(
    stored: str, english: str, french: str
) -> None:
    """Pages say the fields changed by their labels and a last day as a date; every other stored
    reason as ``reasons.stored`` says it; an LMS's own text as it came."""
    assert field_labels.reason(stored) == english
    with i18n.using("fr_CA"):
        assert field_labels.reason(stored) == french
