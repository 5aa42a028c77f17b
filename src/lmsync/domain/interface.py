"""The LMS interface configuration as an HR manager submits it (Settings → Interfaces → LMS)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal, Self

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from lmsync.i18n import Msg, _

AuthType = Literal["bearer", "api_key", "basic"]
PortalIdIn = Literal["header", "path"]
DEFAULT_PORTAL_HEADER = "X-Portal-Id"

# An HTTP field name is a token (RFC 9110 §5.1, §5.6.2).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers the portal identifier may not take: HTTP's own (hop-by-hop, framing, content, host,
# caching), authentication, cookies, proxies and forwarding, and what lmsync sets itself.
_RESERVED_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "authorization",
        "connection",
        "cookie",
        "date",
        "expect",
        "forwarded",
        "host",
        "keep-alive",
        "max-forwards",
        "origin",
        "referer",
        "set-cookie",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "via",
        "www-authenticate",
        "x-real-ip",
    }
)
_RESERVED_PREFIXES = ("content-", "proxy-", "sec-", "x-forwarded-", "if-", "cache-")


# The characters a header name may hold besides letters and digits (a parameter of the message,
# so that no translator has to copy them).
_SYMBOLS = "!#$%&'*+-.^_`|~"


def portal_header_problem(name: str) -> Msg | None:
    """Why ``name`` cannot carry the portal identifier; None when it can."""
    if not _TOKEN.fullmatch(name):
        return _(
            "must be an HTTP header name: letters, digits and {symbols} only", symbols=_SYMBOLS
        )
    folded = name.casefold()
    if folded in _RESERVED_HEADERS or folded.startswith(_RESERVED_PREFIXES):
        return _(
            "{name} is reserved for HTTP, authentication or proxies: choose another header "
            "(e.g. {example})",
            name=name,
            example=DEFAULT_PORTAL_HEADER,
        )
    return None


def _field_error(loc: tuple[str, ...], message: Msg, value: object) -> ValidationError:
    """A validation error on the field at ``loc`` (raised by a model validator, which would
    otherwise report it on the whole model). Its ``ctx`` keeps the :class:`Msg`, as pydantic
    does for a validator's ``ValueError`` (``domain.validation.message`` finds it there)."""
    error = InitErrorDetails(
        type=PydanticCustomError("value_error", message, {"error": ValueError(message)}),
        loc=loc,
        input=value,
    )
    return ValidationError.from_exception_data("InterfaceIn", [error])


def _no_control(value: str | None) -> str | None:
    if value is not None and any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise ValueError(_("must not contain control characters"))
    return value


class ScimOptionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_name_field: Literal["email", "employee_number"] = Field(
        default="email", description="What the SCIM `userName` carries."
    )
    extension_urn: str | None = Field(
        default="urn:ietf:params:scim:schemas:extension:lms:2.0:User",
        description="URN of the LMS extension schema holding registration and expiration dates, "
        "notifications and access mode; null to send none.",
        max_length=300,
    )
    extension_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="Attribute names in that schema, by lmsync field: registration_date, "
        "expiration_date, notifications_enabled, access_mode (defaults: camelCase).",
    )
    use_patch: bool = Field(default=True, description="false: update with PUT (no PATCH).")
    use_bulk: bool = Field(
        default=True,
        description="Send creations, updates and deactivations in SCIM Bulk requests when the "
        "server supports them (its ServiceProviderConfig says so); false: one request per user.",
    )
    max_concurrency: int = Field(
        default=16,
        ge=1,
        le=64,
        description="LMS requests in flight at once during a sync: lower it for an LMS that "
        "limits its rate, raise it for a distant LMS that answers slowly.",
    )
    portal_id_in: PortalIdIn = Field(
        default="header",
        description="How the portal identifier (when set) travels with every request: "
        "`header` (in the `portal_id_header` header) or `path` (a path segment appended to "
        "the URL, percent-encoded: `<URL>/<portal id>/Users`).",
    )
    portal_id_header: str = Field(
        default=DEFAULT_PORTAL_HEADER,
        max_length=100,
        description="The header carrying the portal identifier (`portal_id_in: header`). "
        "HTTP's own, authentication, cookie, proxy and forwarding headers are refused.",
    )

    @field_validator("portal_id_header")
    @classmethod
    def _usable_header(cls, value: str) -> str:
        problem = portal_header_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("extension_attributes")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {"registration_date", "expiration_date", "notifications_enabled", "access_mode"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(_("unknown lmsync fields: {names}", names=", ".join(unknown)))
        for name in value.values():
            _no_control(name)
        return value

    _plain_urn = field_validator("extension_urn")(_no_control)


# A Moodle custom profile field's short name, and a language pack's code (``fr``, ``fr_ca``).
_SHORT_NAME = r"^[A-Za-z0-9_]{1,100}$"
_PACK = re.compile(r"[a-z]{2,3}(_[a-z0-9]{1,8})*")
MOODLE_PROFILE_FIELDS = {
    "province": "province",
    "postal_code": "postalcode",
    "registration_date": "registrationdate",
    "expiration_date": "expirationdate",
    "notifications_enabled": "notificationsenabled",
    "access_mode": "accessmode",
}


class MoodleOptionsIn(BaseModel):
    """The options of a Moodle interface (``connector: moodle``)."""

    model_config = ConfigDict(extra="forbid")

    auth_method: str = Field(
        default="manual",
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="The auth plugin of the users lmsync creates: `manual` (Moodle generates a "
        "password and mails it to the new user) or a single sign-on method such as `oauth2`, "
        "`saml2`, `ldap`.",
    )
    create_password: bool = Field(
        default=True,
        description="`manual` only: Moodle generates the new user's password and mails it. "
        "lmsync never sends a password, so `manual` requires it.",
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        min_length=1,
        max_length=100,
        description="The language packs installed on the site, in Moodle's codes (`en`, `fr`, "
        "`fr_ca`); the first is the site's default. An employee's language goes to its pack "
        "(`fr-CA` → `fr_ca`, else `fr`), else to the first. No web service lists the packs, "
        "and Moodle refuses or silently drops a language it does not have.",
    )
    job_title_field: str | None = Field(
        default=None,
        pattern=_SHORT_NAME,
        description="The custom profile field holding the job title; null: the core "
        "`department` field.",
    )
    profile_fields: dict[str, str | None] = Field(
        default_factory=dict,
        description="Short names of the custom profile fields, by lmsync field: "
        + ", ".join(f"{k} (default `{v}`)" for k, v in MOODLE_PROFILE_FIELDS.items())
        + ". null: not sent.",
    )
    batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Users per web-service call at most; PHP's `max_input_vars` bounds it further.",
    )
    max_input_vars: int = Field(
        default=5000,
        ge=1000,
        le=1_000_000,
        description="The site's PHP `max_input_vars` (Moodle's minimum, 5000, is what most "
        "sites keep): a call with more form fields is refused.",
    )
    extended_username_chars: bool = Field(
        default=False,
        description="The site's 'Allow extended characters in usernames' setting: off, a work "
        "email with characters other than a-z 0-9 _ - . @ (a `+`, say) cannot be a username, "
        "and that employee is refused with the reason.",
    )
    max_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Web-service calls in flight at once during a sync.",
    )

    @field_validator("auth_method")
    @classmethod
    def _creatable(cls, value: str) -> str:
        if value in ("mnet", "webservice"):
            raise ValueError(
                _("Moodle does not create users with the {method} auth method", method=value)
            )
        return value

    @field_validator("languages")
    @classmethod
    def _packs(cls, value: list[str]) -> list[str]:
        out = []
        for code in value:
            code = code.strip().lower().replace("-", "_")
            if not _PACK.fullmatch(code):
                raise ValueError(
                    _(
                        "{code} is not a Moodle language pack code (e.g. en, fr_ca)",
                        code=repr(code),
                    )
                )
            out.append(code)
        return list(dict.fromkeys(out))

    @field_validator("profile_fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(set(value) - set(MOODLE_PROFILE_FIELDS))
        if unknown:
            raise ValueError(_("unknown lmsync fields: {names}", names=", ".join(unknown)))
        for name in value.values():
            if name is not None and not re.fullmatch(_SHORT_NAME, name):
                raise ValueError(_("{name} is not a profile field short name", name=repr(name)))
        return {**MOODLE_PROFILE_FIELDS, **value}

    @model_validator(mode="after")
    def _password(self) -> Self:
        if self.auth_method == "manual" and not self.create_password:
            raise _field_error(
                ("create_password",),
                _("lmsync sends no password: the manual auth method needs Moodle to create one"),
                self.create_password,
            )
        return self


class InterfaceIn(BaseModel):
    """``PUT /lms/interface``. ``secret`` is write-only: omit it to keep the stored one, except
    when the URL, the authentication type, the user name (basic) or the API key header changes:
    then it must be sent again. The ``guard_*`` fields and ``sweep_hour``, when omitted, keep
    their stored values."""

    model_config = ConfigDict(extra="forbid")

    connector: Literal["scim", "moodle"] = Field(
        default="scim",
        description="`scim`: SCIM 2.0; `moodle`: Moodle's web services (REST), with the "
        "web-service token as the secret and the site's address as the URL.",
    )
    base_url: AnyHttpUrl = Field(examples=["https://lms.example.com/scim/v2"])
    auth_type: AuthType = "bearer"
    auth_header: str = Field(
        default="X-API-Key",
        max_length=100,
        pattern=r"^[A-Za-z0-9-]+$",
        description="API key header",
    )
    username: str | None = Field(default=None, max_length=200, description="basic auth only")
    secret: str | None = Field(default=None, max_length=4000, description="write-only")
    portal_id: str | None = Field(
        default=None,
        max_length=200,
        description="The portal (tenant) of an LMS that serves several behind one URL; sent "
        "with every request as `options.portal_id_in` says. Surrounding spaces are removed; "
        "empty: none.",
    )
    hourly_transfer: bool = Field(
        default=True, description="Activate automatic transfer to LMS at each hour"
    )
    sync_users: bool = Field(default=True, description="Synchronize LMS users")
    deactivate_terminated: bool = Field(
        default=True, description="Deactivate LMS users of terminated employees"
    )
    options: ScimOptionsIn | MoodleOptionsIn = Field(
        default_factory=ScimOptionsIn,
        validate_default=True,
        description="The connector's options: those of SCIM or of Moodle.",
    )
    guard_percent: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Deactivation guard: more deactivations within the window than this "
        "percentage of the linked LMS users wait for an HR manager's approval.",
    )
    guard_minimum: int = Field(
        default=20,
        ge=0,
        le=100_000,
        description="Deactivation guard: up to this many deactivations within the window always "
        "go through (the threshold is the larger of the two).",
    )
    guard_window_minutes: int = Field(
        default=60,
        ge=5,
        le=1440,
        description="Deactivation guard: the sliding window, in minutes, over which "
        "deactivations are counted.",
    )
    sweep_hour: int = Field(
        default=3,
        ge=0,
        le=23,
        description="The hour, in the account's time zone, of the daily full sweep that reads "
        "every LMS user (users deleted in the LMS, LMS without the meta.lastModified filter). "
        "The hourly passes read only what changed. Omitted: the stored value is kept.",
    )

    _plain = field_validator("username")(_no_control)

    @field_validator("options", mode="wrap")
    @classmethod
    def _options_of_connector(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> ScimOptionsIn | MoodleOptionsIn:
        model = MoodleOptionsIn if info.data.get("connector") == "moodle" else ScimOptionsIn
        if isinstance(value, BaseModel):
            value = value.model_dump(exclude_unset=True)
        return model.model_validate(value)

    @field_validator("portal_id")
    @classmethod
    def _trimmed_portal(cls, value: str | None) -> str | None:
        value = _no_control(value)
        return (value.strip() or None) if value is not None else None

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        # The URL is shown to every reader of the interface: credentials go in the secret.
        if value.username or value.password:
            raise ValueError(_("put no user name or password in the URL: use the secret field"))
        return value

    @field_validator("secret")
    @classmethod
    def _header_safe_secret(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A token or key travels as a header value as is (a basic password is encoded).
        basic = info.data.get("auth_type") == "basic"
        if value and not basic and not (value.isascii() and value.isprintable()):
            raise ValueError(_("a token or API key may only hold printable ASCII characters"))
        return _no_control(value)

    @model_validator(mode="after")
    def _portal_fits(self) -> Self:
        """The portal identifier must fit where it goes; its header must not be the API key's."""
        options, portal = self.options, self.portal_id
        if isinstance(options, MoodleOptionsIn):
            if portal is not None:
                raise _field_error(
                    ("portal_id",),
                    _("Moodle has no portal identifier: leave it empty (one interface per site)"),
                    portal,
                )
            return self
        if (
            options.portal_id_in == "header"
            and self.auth_type == "api_key"
            and options.portal_id_header.casefold() == self.auth_header.casefold()
        ):
            raise _field_error(
                ("options", "portal_id_header"),
                _("the API key header cannot also carry the portal identifier"),
                options.portal_id_header,
            )
        if portal is None:
            return self
        if options.portal_id_in == "header" and not (portal.isascii() and portal.isprintable()):
            raise _field_error(
                ("portal_id",),
                _(
                    "sent in a header, the portal identifier may only hold printable ASCII "
                    "characters: send it as a path segment instead"
                ),
                portal,
            )
        if options.portal_id_in == "path" and portal in (".", ".."):
            raise _field_error(("portal_id",), _("cannot be a path segment"), portal)
        return self
