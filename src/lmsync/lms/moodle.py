"""The Moodle connector: Moodle's web services over the REST protocol, on httpx.

Every call is ``POST <site>/webservice/rest/server.php`` with a form body; the token travels in
the body (never in a URL, which proxies and access logs keep). ``MoodleConnector._call`` is the one
place where answers become typed errors: Moodle answers its errors with HTTP 200 and a JSON
``exception``/``errorcode``/``message``. Only the error code and our own words reach people:
Moodle's messages are generic ("Invalid parameter value detected"), and its ``debuginfo`` may
quote the whole database row it failed to write.

What a real Moodle does, and what this module does about it (each seen on Moodle 5.0):

- ``core_user_create_users`` is all or nothing per call: a refused batch is split in halves
  until the refused user stands alone, whose reason is then found by looking (is the username
  taken? the email?) rather than read from the generic message;
- a call with more form fields than PHP's ``max_input_vars`` is refused: batches are sized by
  fields (``batch_limit``), and the ids that came back are checked against the users sent;
- ``core_user_update_users`` reports each user's failure as a warning (``invaliduserid``,
  ``usernotupdateddeleted``, ``usernotupdatedadmin``...), the others are updated;
- a deleted user still answers ``get_users_by_field(id)``: ``get_users`` with an ``id``
  criterion is the "does it exist" question;
- ``get_users_by_field(email)`` is case-sensitive and ``get_users``' email criterion is a LIKE
  (``_`` and ``%`` are wildcards): matches are decided here, exactly and case-insensitively;
- custom profile fields that do not exist are dropped silently: the first user created by a
  connector is read back, and a configured field that did not stick becomes a ``notice``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from lmsync.i18n import N_, Msg, _
from lmsync.lms.base import (
    AlreadyExistsError,
    ConflictError,
    ConnectionReport,
    DryRunWriteError,
    LmsError,
    MisconfiguredError,
    NotFoundError,
    RejectedError,
    RemoteUser,
    TransientError,
    UpdateRequest,
    UserPage,
)
from lmsync.lms.moodle_fields import (
    CREATE_ONLY_PROFILE_FIELDS,
    MAINTAINED_PROFILE_FIELDS,
    MoodleMapping,
    custom_values,
    neutral_fields,
    phone_problem,
    profile_value,
    shape,
    user_values,
)
from lmsync.lms.remote_text import RemoteText

SERVER_PATH = "/webservice/rest/server.php"
READ_FUNCTIONS = frozenset(
    {"core_webservice_get_site_info", "core_user_get_users", "core_user_get_users_by_field"}
)
WRITE_FUNCTIONS = frozenset({"core_user_create_users", "core_user_update_users"})
NEEDED_FUNCTIONS = READ_FUNCTIONS | WRITE_FUNCTIONS
# Error codes that mean "nothing will work until the configuration is fixed".
_MISCONFIGURED = {
    "invalidtoken": N_("the web-service token was refused"),
    "invalidtokensession": N_("the web-service token was refused"),
    "accessexception": N_(
        "the token's service does not allow this function, or its user lacks a capability"
    ),
    "servicenotavailable": N_("the token's web service is disabled"),
    "webservicenotenabled": N_("web services are disabled on this Moodle"),
    "wsaccessuserdeleted": N_("the token's user was deleted"),
    "wsaccessusersuspended": N_("the token's user is suspended"),
    "wsaccessusernologin": N_("the token's user cannot log in (auth method nologin)"),
    "usernotfullysetup": N_("the token's user must complete its profile first"),
    "nopermissions": N_("the token's user lacks a capability"),
    "requireloginerror": N_("the token's user cannot log in"),
    "sitepolicynotagreed": N_("the token's user has not agreed to the site policy"),
    "invalidrecord": N_("the token's service lacks a function lmsync needs"),
    "forcepasswordchangenotice": N_("the token's user must change its password first"),
}
# update_users warnings by code.
_GONE = {"invaliduserid", "usernotupdateddeleted"}
# Moodle's default username rule (PARAM_USERNAME without "extendedusernamechars").
_USERNAME = re.compile(r"[a-z0-9_\-.@]+")
FORM_FIELDS_MARGIN = 20  # max_input_vars counts every field of the request's body


@dataclass(frozen=True)
class MoodleSettings:
    """How to reach one Moodle site and what its users look like (the LMS interface)."""

    base_url: str
    token: str | None = None
    mapping: MoodleMapping = field(default_factory=MoodleMapping)
    auth_method: str = "manual"  # manual (Moodle mails a generated password) | an SSO plugin
    create_password: bool = True  # manual only: Moodle generates a password and mails it
    batch_size: int = 100  # users per call, at most (max_input_vars bounds it further)
    max_input_vars: int = 5000  # the site's PHP max_input_vars (Moodle's minimum)
    extended_username_chars: bool = False  # the site's "extendedusernamechars" setting
    timeout: float = 60.0

    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + SERVER_PATH


class MoodleDryRunGuard(httpx.BaseTransport):
    """Dry runs are enforced at the transport: a call to a function that writes raises before it
    leaves the process."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        function = request.url.params.get("wsfunction", "")
        if function not in READ_FUNCTIONS:
            raise DryRunWriteError(f"dry run: {function or 'a call'} refused")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def form(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """PHP's nested form fields: ``users[0][customfields][1][type]=...``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            form(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            form(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, str(value)))


def _customfields(custom: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"type": short, "value": value} for short, value in sorted(custom.items())]


class MoodleConnector:
    """One Moodle site. Thread-safe: the engine calls it from several worker threads."""

    def __init__(
        self,
        settings: MoodleSettings,
        *,
        dry_run: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.mapping = settings.mapping
        self.dry_run = dry_run
        self._text = RemoteText(settings.token)
        inner = transport or httpx.HTTPTransport(retries=0)
        self._http = httpx.Client(
            timeout=settings.timeout,
            transport=MoodleDryRunGuard(inner) if dry_run else inner,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.batch_size = max(1, min(settings.batch_size, self.batch_limit()))
        self.notices: list[str] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._self_id: int | None = None
        self._all: list[dict[str, Any]] | None = None
        self._checked_read_back = False

    def close(self) -> None:
        self._http.close()

    # -- the HTTP edge ----------------------------------------------------------------------
    def _call(self, function: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        """One web-service call; its decoded answer, or a typed error."""
        self.requests += 1
        body = [("wstoken", self.settings.token or ""), *params]
        query = {"wsfunction": function, "moodlewsrestformat": "json"}
        try:
            response = self._http.post(self.settings.endpoint(), params=query, data=dict(body))
        except LmsError:  # the transport's own refusals: dry run, host policy
            raise
        except httpx.RequestError as exc:
            message = self._text.clean(f"{function}: {self._text.transport(exc)}")
            raise TransientError(message) from self._text.cause(exc)
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientError(self._text.clean(f"{function}: HTTP status {status}"))
        if 300 <= status < 400:
            raise MisconfiguredError(
                _(
                    "{function}: HTTP status {status}: the site redirects elsewhere, which lmsync "
                    "does not follow; set the interface's URL to the site's final address",
                    function=function,
                    status=status,
                )
            )
        if status != 200:
            raise MisconfiguredError(
                _(
                    "{function}: HTTP status {status}: is this the site's address, with web "
                    "services and the REST protocol enabled?",
                    function=function,
                    status=status,
                )
            )
        try:
            answer = response.json()
        except ValueError:
            raise MisconfiguredError(
                _(
                    "{function}: the answer is not JSON: is this the site's address, with the "
                    "REST protocol enabled?",
                    function=function,
                )
            ) from None
        if isinstance(answer, dict) and "exception" in answer and "errorcode" in answer:
            raise self._error(function, answer)
        return answer

    def _error(self, function: str, answer: Mapping[str, Any]) -> LmsError:
        code = str(answer.get("errorcode") or "")
        safe_code = self._text.clean(code, 60)
        if code in _MISCONFIGURED:
            return MisconfiguredError(
                _(
                    "{function}: {problem} (Moodle: {code})",
                    function=function,
                    problem=Msg(_MISCONFIGURED[code]),
                    code=safe_code,
                )
            )
        if code in ("dmlwriteexception", "dmlreadexception"):
            return RejectedError(f"{function}: Moodle could not write the user ({safe_code})")
        return RejectedError(f"{function}: Moodle refused the data ({safe_code})")

    def _users(self, answer: Any) -> list[dict[str, Any]]:
        users = answer.get("users") if isinstance(answer, dict) else answer
        if not isinstance(users, list):
            raise MisconfiguredError(_("unexpected answer from Moodle (no user list)"))
        return [u for u in users if isinstance(u, dict) and _user_id(u) is not None]

    # -- reading ----------------------------------------------------------------------------------
    def _own_id(self) -> int:
        """The token's own user: never matched, never managed (suspending it would cut lmsync
        off)."""
        with self._lock:
            if self._self_id is not None:
                return self._self_id
        info = self._call("core_webservice_get_site_info")
        user_id = info.get("userid") if isinstance(info, dict) else None
        if not isinstance(user_id, int):
            raise MisconfiguredError(_("core_webservice_get_site_info: no user id in the answer"))
        with self._lock:
            self._self_id = user_id
        return user_id

    def ping(self) -> None:
        """The site's information: the cheapest call the token must be allowed."""
        self._call("core_webservice_get_site_info")

    def _managed(self, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
        own = self._own_id()
        return [u for u in users if u.get("username") != "guest" and _user_id(u) != own]

    def _get_users(self, key: str, value: str) -> list[dict[str, Any]]:
        params = [("criteria[0][key]", key), ("criteria[0][value]", value)]
        return self._users(self._call("core_user_get_users", params))

    def _by_field(self, name: str, values: Sequence[str]) -> list[dict[str, Any]]:
        params: list[tuple[str, str]] = [("field", name)]
        params += [(f"values[{i}]", v) for i, v in enumerate(values)]
        return self._users(self._call("core_user_get_users_by_field", params))

    def find_by_email(self, email: str) -> list[RemoteUser]:
        key = email.strip().casefold()
        if not key:
            return []
        # A LIKE: wildcards widen the answer, the exact comparison is ours.
        found = self._managed(self._get_users("email", email.strip()))
        return [self.from_user(u) for u in found if str(u.get("email", "")).casefold() == key]

    def find_by_external_id(self, external_id: str) -> RemoteUser | None:
        return None  # Moodle keeps no lmsync identifier

    def search(self, text: str, limit: int) -> list[RemoteUser]:
        """Users whose first name, last name or email contains ``text`` (linking by hand)."""
        pattern = f"%{text.strip()}%"
        found: dict[int, dict[str, Any]] = {}
        for key in ("lastname", "firstname", "email"):
            for user in self._managed(self._get_users(key, pattern)):
                user_id = _user_id(user)
                if user_id is not None:
                    found.setdefault(user_id, user)
        return [self.from_user(u) for u in list(found.values())[:limit]]

    def list_page(self, start_index: int, count: int) -> UserPage:
        # core_user_get_users has no paging: one call lists everyone, pages are cut from it.
        with self._lock:
            listed = self._all
        if listed is None or start_index == 1:
            listed = self._managed(self._get_users("email", "%"))
            with self._lock:
                self._all = listed
        page = listed[start_index - 1 : start_index - 1 + count]
        return UserPage(users=[self.from_user(u) for u in page], total=len(listed))

    def get(self, user_id: str) -> RemoteUser:
        found = self._get_users("id", user_id)  # [] for a deleted user, unlike get_users_by_field
        if not found:
            raise NotFoundError(f"Moodle user {self._text.clean(user_id, 40)} not found")
        return self.from_user(found[0])

    def from_user(self, user: Mapping[str, Any]) -> RemoteUser:
        user_id = _user_id(user)
        if user_id is None:
            raise RejectedError(_("Moodle returned a user without id"))
        email = user.get("email")
        return RemoteUser(
            id=str(user_id),
            active=not user.get("suspended"),
            email_key=email.strip().casefold() if isinstance(email, str) and email else None,
            fields=neutral_fields(self.mapping, user),
        )

    # -- writing: batches -------------------------------------------------------------------------
    def batch_limit(self) -> int:
        """Users per call that keep the request under PHP's ``max_input_vars``."""
        per_user = 16 + 2 * (len(MAINTAINED_PROFILE_FIELDS) + len(CREATE_ONLY_PROFILE_FIELDS) + 1)
        return max(1, (self.settings.max_input_vars - FORM_FIELDS_MARGIN) // per_user)

    def _create_form(
        self, fields: Mapping[str, Any], create_only: Mapping[str, Any]
    ) -> dict[str, Any]:
        shaped = shape(self.mapping, fields)
        core, custom = user_values(self.mapping, shaped)
        core = {k: v for k, v in core.items() if v != ""}  # nothing to clear on a new user
        custom = {k: v for k, v in custom.items() if v != ""}
        for name in CREATE_ONLY_PROFILE_FIELDS:
            short = self.mapping.profile_field(name)
            if short and create_only.get(name) is not None:
                custom[short] = profile_value(name, create_only[name])
        user: dict[str, Any] = {"auth": self.settings.auth_method, **core}
        if self.settings.auth_method == "manual" and self.settings.create_password:
            user["createpassword"] = "1"
        if custom:
            user["customfields"] = _customfields(custom)
        return user

    def _check_create(self, fields: Mapping[str, Any]) -> LmsError | None:
        """What Moodle would refuse, found before sending (one refused user fails a call)."""
        if not str(fields.get("email") or "").strip():
            return RejectedError(_("a Moodle user needs an email"))
        for name, without in (
            ("first_name", _("Moodle refuses a user without first name")),
            ("last_name", _("Moodle refuses a user without last name")),
        ):
            if not str(fields.get(name) or "").strip():
                return RejectedError(without)
        if problem := phone_problem(fields) or self._username_problem(fields):
            return RejectedError(problem)
        if self.settings.auth_method == "manual" and not self.settings.create_password:
            return MisconfiguredError(
                _("the manual auth method needs 'create password' on: lmsync sends no password")
            )
        return None

    def _username_problem(self, fields: Mapping[str, Any]) -> str | None:
        """Why the work email cannot be a Moodle username (Moodle would refuse the call)."""
        username = str(fields.get("email") or "").strip().lower()
        if self.settings.extended_username_chars or _USERNAME.fullmatch(username):
            return None
        return _(
            "the work email cannot be a Moodle username: Moodle allows only a-z 0-9 _ - . @ "
            "unless its 'Allow extended characters in usernames' setting is on"
        )

    def create_many(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[RemoteUser | LmsError]:
        results: list[RemoteUser | LmsError | None] = [None] * len(items)
        forms: list[tuple[int, dict[str, Any]]] = []
        for index, (fields, create_only) in enumerate(items):
            problem = self._check_create(fields)
            if isinstance(problem, MisconfiguredError):
                raise problem
            if problem is not None:
                results[index] = problem
            else:
                forms.append((index, self._create_form(fields, create_only)))
        for start in range(0, len(forms), self.batch_size):
            chunk = forms[start : start + self.batch_size]
            for (index, _form), result in zip(chunk, self._create_chunk(chunk), strict=True):
                results[index] = result
        self._read_back_first(results, items)
        return [r if r is not None else RejectedError("not sent") for r in results]

    def _create_chunk(self, chunk: list[tuple[int, dict[str, Any]]]) -> list[RemoteUser | LmsError]:
        params: list[tuple[str, str]] = []
        for position, (_index, user) in enumerate(chunk):
            form(f"users[{position}]", user, params)
        try:
            answer = self._call("core_user_create_users", params)
        except RejectedError:
            if len(chunk) == 1:
                return [self._why_refused(chunk[0][1])]
            half = len(chunk) // 2  # all or nothing: isolate the refused user
            return self._create_chunk(chunk[:half]) + self._create_chunk(chunk[half:])
        listed = answer if isinstance(answer, list) else []
        made = {str(u.get("username")): u for u in listed if isinstance(u, dict)}
        if len(made) != len(chunk):
            # Some PHP builds drop the fields past max_input_vars instead of refusing the call.
            raise MisconfiguredError(
                f"core_user_create_users: Moodle made {len(made)} users of the {len(chunk)} sent:"
                " lower the batch size (is PHP's max_input_vars lower than configured?)"
            )
        out: list[RemoteUser | LmsError] = []
        for _index, user in chunk:
            created = made.get(user["username"])
            user_id = _user_id(created) if created else None
            if user_id is None:
                out.append(RejectedError(_("Moodle did not return the new user's id")))
                continue
            fields = self._sent_fields(user)
            out.append(RemoteUser(str(user_id), True, user["email"].strip().casefold(), fields))
        return out

    def _sent_fields(self, user: Mapping[str, Any]) -> dict[str, Any]:
        as_read = dict(user)
        as_read["customfields"] = [
            {"shortname": c["type"], "value": c["value"]} for c in user.get("customfields", [])
        ]
        as_read["id"] = 0
        return neutral_fields(self.mapping, as_read)

    def _why_refused(self, user: Mapping[str, Any]) -> LmsError:
        """The reason a single user was refused, found by looking (Moodle's message is generic)."""
        username, email = str(user["username"]), str(user["email"])
        try:
            holders = self._by_field("username", [username])
            if holders:
                holder = holders[0]
                if str(holder.get("email", "")).casefold() == email.casefold():
                    return AlreadyExistsError("a Moodle user with this username and email exists")
                return ConflictError(
                    _(
                        "the Moodle username {username} is taken by another Moodle user (id {id}) "
                        "with a different email",
                        username=repr(username),
                        id=_user_id(holder),
                    )
                )
            if self.find_by_email(email):
                return AlreadyExistsError("a Moodle user already has this email")
        except LmsError as exc:
            return exc
        lang = user.get("lang")
        if lang:
            return RejectedError(
                _(
                    "Moodle refused the user's data (is the language pack {pack} installed?)",
                    pack=repr(lang),
                )
            )
        return RejectedError(_("Moodle refused the user's data"))

    def _read_back_first(
        self,
        results: Sequence[RemoteUser | LmsError | None],
        items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
    ) -> None:
        """Once per connector: read the first user created back and say which custom profile
        fields did not stick (no web service lists their definitions)."""
        first = next(
            ((r, items[i]) for i, r in enumerate(results) if isinstance(r, RemoteUser)), None
        )
        with self._lock:
            if first is None or self._checked_read_back:
                return
            self._checked_read_back = True
        user, (fields, create_only) = first
        sent = self._create_form(fields, create_only)
        expected = {c["type"] for c in sent.get("customfields", [])}
        try:
            found = self._get_users("id", user.id)
        except LmsError:
            return
        if not found:
            return
        held = set(custom_values(found[0]))
        missing = sorted(expected - held)
        hidden = sorted(p for p in ("phone1", "phone2") if sent.get(p) and p not in found[0])
        if hidden:
            self.notices.append(
                "Moodle does not show " + " and ".join(hidden) + " to the web-service user: "
                "lmsync writes them but cannot see changes made in Moodle (add them to Site "
                "administration > Users > Permissions > Show user identity)"
            )
        if missing:
            self.notices.append(
                "custom profile fields missing on Moodle (values not kept): "
                + ", ".join(missing)
                + ". Create them (Site administration > Users > User profile fields) or clear "
                "their names in the interface"
            )

    def create(self, fields: Mapping[str, Any], create_only: Mapping[str, Any]) -> RemoteUser:
        result = self.create_many([(fields, create_only)])[0]
        if isinstance(result, LmsError):
            raise result
        return result

    def _update_form(self, request: UpdateRequest) -> dict[str, Any] | None:
        shaped = shape(self.mapping, request.fields)
        core, custom = user_values(self.mapping, shaped, set(request.changed))
        user: dict[str, Any] = {"id": request.user_id, **core}
        if request.active is not None:
            user["suspended"] = "0" if request.active else "1"
        if custom:
            user["customfields"] = _customfields(custom)
        return user if len(user) > 1 else None

    def update_many(self, items: Sequence[UpdateRequest]) -> list[LmsError | None]:
        results: list[LmsError | None] = [None] * len(items)
        own = str(self._own_id())
        sent: list[tuple[int, dict[str, Any]]] = []
        for index, request in enumerate(items):
            if request.user_id == own:
                results[index] = ConflictError(
                    _("this Moodle user is the web-service user lmsync signs in as: never changed")
                )
                continue
            names = set(request.changed)
            problem = None
            if names & {"home_phone", "cell_phone"}:
                problem = phone_problem(shape(self.mapping, request.fields))
            if "email" in names:
                problem = problem or self._username_problem(request.fields)
            if problem is not None:
                results[index] = RejectedError(problem)
                continue
            user = self._update_form(request)
            if user is not None:
                sent.append((index, user))
        for start in range(0, len(sent), self.batch_size):
            chunk = sent[start : start + self.batch_size]
            for (index, _form), result in zip(chunk, self._update_chunk(chunk), strict=True):
                results[index] = result
        return results

    def _update_chunk(self, chunk: list[tuple[int, dict[str, Any]]]) -> list[LmsError | None]:
        params: list[tuple[str, str]] = []
        for position, (_index, user) in enumerate(chunk):
            form(f"users[{position}]", user, params)
        try:
            answer = self._call("core_user_update_users", params)
        except RejectedError as exc:
            if len(chunk) == 1:
                return [exc]
            half = len(chunk) // 2  # a refused parameter fails the call: isolate it
            return self._update_chunk(chunk[:half]) + self._update_chunk(chunk[half:])
        warnings = answer.get("warnings") if isinstance(answer, dict) else None
        failed: dict[str, LmsError] = {}
        for warning in warnings if isinstance(warnings, list) else []:
            if not isinstance(warning, dict):
                continue
            failed[str(warning.get("itemid"))] = self._warning(warning)
        return [failed.get(str(user["id"])) for _index, user in chunk]

    def _warning(self, warning: Mapping[str, Any]) -> LmsError:
        code = str(warning.get("warningcode") or "")
        if code in _GONE:
            return NotFoundError(_("the Moodle user no longer exists"))
        if code == "usernotupdatedadmin":
            return ConflictError(
                _(
                    "this Moodle user is a site administrator: Moodle refuses to change it "
                    "through web services"
                )
            )
        if code == "useremailduplicate":
            return ConflictError(_("another Moodle user already has this email"))
        return RejectedError(f"Moodle refused the update ({self._text.clean(code, 60)})")

    def update(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        changed: Collection[str],
        active: bool | None = None,
    ) -> None:
        result = self.update_many([UpdateRequest(user_id, fields, changed, active)])[0]
        if result is not None:
            raise result

    # -- test connection -------------------------------------------------------------------------
    def test(self) -> ConnectionReport:
        report = ConnectionReport()
        try:
            info = self._call("core_webservice_get_site_info")
        except LmsError as exc:
            report.add("error", exc.message)
            return report
        if not isinstance(info, dict):
            report.add("error", _("core_webservice_get_site_info: unexpected answer"))
            return report
        name = self._text.clean(str(info.get("sitename") or "?"), 120)
        release = self._text.clean(str(info.get("release") or info.get("version") or "?"), 60)
        report.add(
            "ok",
            _(
                "Moodle site {name}, release {release}: token accepted",
                name=repr(name),
                release=release,
            ),
        )
        functions = {f.get("name") for f in info.get("functions") or [] if isinstance(f, dict)}
        missing = sorted(NEEDED_FUNCTIONS - functions)
        if missing:
            report.add(
                "error", _("the token's service lacks: {functions}", functions=", ".join(missing))
            )
        else:
            report.add("ok", _("the token's service has every function lmsync needs"))
        if isinstance(info.get("userid"), int):
            self._self_id = info["userid"]
        languages = ", ".join(self.mapping.languages) or _("none")
        report.add(
            "ok",
            _(
                "languages lmsync will use (installed packs, as configured): {languages}; an "
                "employee's language without a pack gets the first one",
                languages=languages,
            ),
        )
        method = repr(self.settings.auth_method)
        if self.settings.auth_method == "manual" and self.settings.create_password:
            auth = _(
                "new users get the {method} auth method, and Moodle mails them a password",
                method=method,
            )
        else:
            auth = _("new users get the {method} auth method", method=method)
        report.add("ok", auth)
        report.add(
            "ok",
            _(
                "up to {count} users per call (PHP max_input_vars {limit})",
                count=self.batch_size,
                limit=self.settings.max_input_vars,
            ),
        )
        if "core_user_get_users" in functions:
            self._check_profile_fields(report)
        return report

    def _check_profile_fields(self, report: ConnectionReport) -> None:
        configured = {
            name: short
            for name in (*MAINTAINED_PROFILE_FIELDS, *CREATE_ONLY_PROFILE_FIELDS)
            if (short := self.mapping.profile_field(name))
        }
        if self.mapping.job_title_field:
            configured["job_title"] = self.mapping.job_title_field
        try:
            users = self._get_users("id", str(self._own_id()))
        except LmsError as exc:
            report.add("error", _("reading users: {error}", error=exc.message))
            return
        seen = set(custom_values(users[0])) if users else set()
        found = sorted(short for short in configured.values() if short in seen)
        unseen = sorted(short for short in configured.values() if short not in seen)
        if found:
            report.add("ok", _("custom profile fields found: {fields}", fields=", ".join(found)))
        if unseen:
            report.add(
                "warning",
                _(
                    "custom profile fields not seen yet (Moodle lists only fields holding a "
                    "value; they are checked on the first user created): {fields}",
                    fields=", ".join(unseen),
                ),
            )


def _user_id(user: Mapping[str, Any] | None) -> int | None:
    value = user.get("id") if user else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
