"""pydantic's validation errors as field errors in lmsync's own, translatable words.

pydantic's messages are its English ("Input should be a valid integer..."): a reader gets ours
instead, one per common error type, with the limits as placeholders; a type not listed here is
"invalid value". A model can add the domain's own errors to pydantic's with :func:`custom`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from lmsync.domain.errors import FieldError
from lmsync.i18n import Msg, _

# The error type of a domain message carried in a pydantic ValidationError (see ``custom``).
DOMAIN_ERROR = "lmsync_field"

INVALID = _("invalid value")
REQUIRED = _("is required")
MUST_BE_A_DATE = _("must be a date (YYYY-MM-DD)")

_Ctx = Mapping[str, Any]


def _expected(ctx: _Ctx, key: str = "expected") -> str:
    """pydantic's "'a', 'b' or 'c'" (English "or") as "a, b, c"."""
    text = str(ctx.get(key, ""))
    parts = re.split(r", | or ", text)
    return ", ".join(part.strip().strip("'") for part in parts if part.strip())


def _too_short(ctx: _Ctx) -> Msg:
    if ctx.get("min_length") == 1:
        return _("must not be empty")
    return _("must be at least {min_length} characters", min_length=ctx.get("min_length"))


def _own_words(ctx: _Ctx) -> str:
    """A ``ValueError`` raised by one of lmsync's validators: its message (a Msg, or text)."""
    error = ctx.get("error")
    if isinstance(error, Exception) and error.args and isinstance(error.args[0], str):
        return error.args[0]
    return INVALID


_BY_TYPE: dict[str, Callable[[_Ctx], str]] = {
    "missing": lambda ctx: REQUIRED,
    "extra_forbidden": lambda ctx: _("unknown field"),
    "string_type": lambda ctx: _("must be text"),
    "string_unicode": lambda ctx: _("must be text"),
    "string_too_long": lambda ctx: _(
        "must be at most {max_length} characters", max_length=ctx.get("max_length")
    ),
    "string_too_short": _too_short,
    "string_pattern_mismatch": lambda ctx: _("is not in the expected format"),
    "bool_type": lambda ctx: _("must be true or false"),
    "bool_parsing": lambda ctx: _("must be true or false"),
    "int_type": lambda ctx: _("must be a whole number"),
    "int_parsing": lambda ctx: _("must be a whole number"),
    "int_from_float": lambda ctx: _("must be a whole number"),
    "int_parsing_size": lambda ctx: _("is out of range"),
    "float_type": lambda ctx: _("must be a number"),
    "float_parsing": lambda ctx: _("must be a number"),
    "finite_number": lambda ctx: _("must be a number"),
    "greater_than": lambda ctx: _("must be greater than {gt}", gt=ctx.get("gt")),
    "greater_than_equal": lambda ctx: _("must be at least {ge}", ge=ctx.get("ge")),
    "less_than": lambda ctx: _("must be less than {lt}", lt=ctx.get("lt")),
    "less_than_equal": lambda ctx: _("must be at most {le}", le=ctx.get("le")),
    "date_type": lambda ctx: MUST_BE_A_DATE,
    "date_parsing": lambda ctx: MUST_BE_A_DATE,
    "date_from_datetime_parsing": lambda ctx: MUST_BE_A_DATE,
    "date_from_datetime_inexact": lambda ctx: MUST_BE_A_DATE,
    "datetime_type": lambda ctx: _("must be a date and time (ISO 8601)"),
    "datetime_parsing": lambda ctx: _("must be a date and time (ISO 8601)"),
    "datetime_from_date_parsing": lambda ctx: _("must be a date and time (ISO 8601)"),
    "datetime_object_invalid": lambda ctx: _("must be a date and time (ISO 8601)"),
    "literal_error": lambda ctx: _("must be one of: {expected}", expected=_expected(ctx)),
    "enum": lambda ctx: _("must be one of: {expected}", expected=_expected(ctx)),
    "union_tag_invalid": lambda ctx: _(
        "must be one of: {expected}", expected=_expected(ctx, "expected_tags")
    ),
    "model_type": lambda ctx: _("must be a JSON object"),
    "model_attributes_type": lambda ctx: _("must be a JSON object"),
    "dict_type": lambda ctx: _("must be a JSON object"),
    "mapping_type": lambda ctx: _("must be a JSON object"),
    "list_type": lambda ctx: _("must be a list"),
    "too_long": lambda ctx: _(
        "must have at most {max_length} items", max_length=ctx.get("max_length")
    ),
    "too_short": lambda ctx: _(
        "must have at least {min_length} items", min_length=ctx.get("min_length")
    ),
    "url_type": lambda ctx: _("must be a URL"),
    "url_parsing": lambda ctx: _("must be a URL"),
    "url_syntax_violation": lambda ctx: _("must be a URL"),
    "url_scheme": lambda ctx: _(
        "must be a URL starting with one of: {expected}",
        expected=_expected(ctx, "expected_schemes"),
    ),
    "url_too_long": lambda ctx: _(
        "must be at most {max_length} characters", max_length=ctx.get("max_length")
    ),
    "uuid_type": lambda ctx: _("must be a UUID"),
    "uuid_parsing": lambda ctx: _("must be a UUID"),
    "value_error": _own_words,
    "assertion_error": _own_words,
    DOMAIN_ERROR: lambda ctx: ctx.get("message") or INVALID,
}


def message(error: ErrorDetails) -> str:
    """Our words for one of pydantic's errors (a :class:`Msg`, or an lmsync validator's text)."""
    words = _BY_TYPE.get(error["type"])
    return words(error.get("ctx") or {}) if words is not None else INVALID


def field_errors(errors: Iterable[ErrorDetails], *, skip: int = 0) -> list[FieldError]:
    """Field errors for pydantic's errors; ``skip`` drops that many leading location parts
    (FastAPI's "body", "query"...)."""
    return [
        FieldError(".".join(str(part) for part in error["loc"][skip:]), message(error))
        for error in errors
    ]


def custom(field: str, words: str, value: Any = None) -> InitErrorDetails:
    """A domain error on ``field`` as a pydantic error (``DOMAIN_ERROR``), to raise with
    pydantic's own in one ``ValidationError``: :func:`message` gives ``words`` back."""
    return InitErrorDetails(
        type=PydanticCustomError(DOMAIN_ERROR, "{message}", {"message": words}),
        loc=(field,),
        input=value,
    )


def line_errors(errors: Sequence[ErrorDetails]) -> list[InitErrorDetails]:
    """pydantic's errors as they can be raised again (with others) in a new ValidationError."""
    out: list[InitErrorDetails] = []
    for error in errors:
        line = InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"])
        if "ctx" in error:
            line["ctx"] = error["ctx"]
        out.append(line)
    return out
