"""The SCIM 2.0 connector (RFC 7643/7644) on httpx.

Requests are built by pure functions (``user_resource``, ``patch_operations``) and sent by
``ScimConnector._request``, the one place where HTTP statuses become typed errors. scim2-models
reads the server's discovery documents in ``test()``. Every error message is made by
``remote_text.RemoteText``: what the server answered is quoted only as a sanitized SCIM error
detail, never as a body, and never with the credentials. The interface's portal identifier, when
set, goes with every request: in a header, or as a path segment of the root URL
(``ScimSettings.root_url``).
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from scim2_models import ServiceProviderConfig

from lmsync.domain.interface import DEFAULT_PORTAL_HEADER, portal_header_problem
from lmsync.i18n import Msg, _
from lmsync.lms import scim_bulk
from lmsync.lms.base import (
    AlreadyExistsError,
    ChangedUsers,
    ConnectionReport,
    DryRunWriteError,
    FilterUnsupportedError,
    LmsError,
    MisconfiguredError,
    NotFoundError,
    RejectedError,
    RemoteUser,
    TransientError,
    UpdateRequest,
    UserPage,
)
from lmsync.lms.remote_text import RemoteText
from lmsync.lms.scim_bulk import BulkLimits, Operation, OperationResult

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEFAULT_EXTENSION_URN = "urn:ietf:params:scim:schemas:extension:lms:2.0:User"
DEFAULT_EXTENSION_ATTRIBUTES: dict[str, str] = {
    "registration_date": "registrationDate",
    "expiration_date": "expirationDate",
    "notifications_enabled": "notificationsEnabled",
    "access_mode": "accessMode",
}
SCIM_JSON = "application/scim+json"
T = TypeVar("T")
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class ScimSettings:
    """How to reach and talk to one SCIM server (from the account's LMS interface)."""

    base_url: str
    auth_type: str = "bearer"  # bearer | api_key | basic
    secret: str | None = None
    auth_header: str = "X-API-Key"
    username: str | None = None
    user_name_field: str = "email"  # the SCIM userName: "email" or "employee_number"
    extension_urn: str | None = DEFAULT_EXTENSION_URN  # None: do not send the LMS extension
    extension_attributes: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_EXTENSION_ATTRIBUTES)
    )
    use_patch: bool = True  # False: PUT the whole user (servers without PATCH)
    use_bulk: bool = True  # False: never /Bulk, even when the server supports it
    timeout: float = 15.0
    page_size: int = 500
    # The portal (tenant) of an LMS serving several behind one URL, sent with every request:
    # in the ``portal_id_header`` header, or as a path segment appended to ``base_url``.
    portal_id: str | None = None
    portal_id_in: str = "header"  # header | path
    portal_id_header: str = DEFAULT_PORTAL_HEADER

    def root_url(self) -> str:
        """The SCIM root the requests' paths (``/Users``...) are appended to."""
        root = self.base_url.rstrip("/")
        if self.portal_id and self.portal_id_in == "path":
            root = f"{root}/{quote(self.portal_id, safe='')}"
        return root

    def portal_finding(self, text: RemoteText) -> Msg | None:
        """How the portal identifier is sent (for the connection test); None without one."""
        if not self.portal_id:
            return None
        if self.portal_id_in == "path":
            return _("portal identifier sent as a path segment of the URL")
        return _(
            "portal identifier sent as header {header}", header=text.clean(self.portal_id_header)
        )


class DryRunGuard(httpx.BaseTransport):
    """Dry runs are enforced at the transport: any write raises before it leaves the process."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method in _WRITE_METHODS and not request.url.path.endswith("/.search"):
            raise DryRunWriteError(f"dry run: {request.method} {request.url.path} refused")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _portal_header_value(settings: ScimSettings) -> str:
    """The portal identifier as its header's value; ``MisconfiguredError`` if it cannot be."""
    name, value = settings.portal_id_header, settings.portal_id or ""
    problem = portal_header_problem(name)
    api_key = settings.auth_header if settings.auth_type == "api_key" else None
    if problem is None and api_key is not None and name.casefold() == api_key.casefold():
        problem = _("it is the API key header")
    if problem is not None:
        raise MisconfiguredError(
            _("the portal identifier header is not usable: {problem}", problem=problem)
        )
    if not (value.isascii() and value.isprintable()):
        raise MisconfiguredError(
            _(
                "the portal identifier holds characters a header cannot carry: send it as a "
                "path segment instead"
            )
        )
    return value


def _count(value: Any) -> int | None:
    """A count the server sent as a number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _shifted(call: Callable[[int], T], offset: int, index: int) -> T:
    return call(offset + index)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def scim_datetime(when: datetime) -> str:
    """An RFC 7643 dateTime in UTC, as a filter compares it (``2026-12-02T14:00:00Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ScimConnector:
    """One SCIM server. Thread-safe: the engine calls it from several worker threads."""

    def __init__(
        self,
        settings: ScimSettings,
        *,
        dry_run: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._text = RemoteText(settings.secret, settings.username)
        inner = transport or httpx.HTTPTransport(retries=0)
        headers = {"Accept": SCIM_JSON, "Content-Type": SCIM_JSON}
        if settings.portal_id_in not in ("header", "path"):
            raise MisconfiguredError(f"unknown portal identifier form {settings.portal_id_in!r}")
        if settings.portal_id and settings.portal_id_in == "header":
            # Checked again here: what is stored was only checked when it was saved.
            headers[settings.portal_id_header] = _portal_header_value(settings)
        auth: httpx.Auth | None = None
        if settings.auth_type == "bearer" and settings.secret:
            headers["Authorization"] = f"Bearer {settings.secret}"
        elif settings.auth_type == "api_key" and settings.secret:
            headers[settings.auth_header] = settings.secret
        elif settings.auth_type == "basic":
            auth = httpx.BasicAuth(settings.username or "", settings.secret or "")
        self._http = httpx.Client(
            base_url=settings.root_url(),
            headers=headers,
            auth=auth,
            timeout=settings.timeout,
            transport=DryRunGuard(inner) if dry_run else inner,
            # A redirect could lead anywhere (a host the policy would refuse): never followed.
            follow_redirects=False,
            # Up to the highest max_concurrency an interface may set.
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self.requests = 0
        self._first_date: datetime | None = None
        self._bulk_lock = threading.Lock()
        self._bulk_read = False
        self._bulk_limits: BulkLimits | None = None

    def close(self) -> None:
        self._http.close()

    # -- the HTTP edge ----------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        ok: Collection[int] = (200,),
    ) -> httpx.Response:
        self.requests += 1
        try:
            response = self._http.request(method, path, json=json, params=params)
        except LmsError:  # the transport's own refusals: dry run, host policy
            raise
        except httpx.RequestError as exc:
            message = self._text.clean(f"{method} {path}: {self._text.transport(exc)}")
            raise TransientError(message) from self._text.cause(exc)
        if self._first_date is None:
            self._first_date = _http_date(response.headers.get("Date"))
        status = response.status_code
        if status in ok:
            return response
        where = f"{method} {path}"
        described = self._text.response(response)
        if status == 429 or status >= 500:
            raise TransientError(
                self._text.clean(f"{where}: {described}"), retry_after=_retry_after(response)
            )
        if 300 <= status < 400:
            raise MisconfiguredError(
                self._text.clean(
                    f"{where}: {described}: the LMS redirects elsewhere, which lmsync does not "
                    "follow; set the interface's URL to the final address"
                )
            )
        if status in (401, 403):
            raise MisconfiguredError(
                self._text.clean(f"{where}: the LMS refused the credentials ({described})")
            )
        if status == 404:
            raise NotFoundError(self._text.clean(f"{where}: {described}"))
        if status == 409:
            raise AlreadyExistsError(self._text.clean(f"{where}: {described}"), payload=json)
        raise RejectedError(
            self._text.clean(f"the LMS refused the data: {described}"), payload=json
        )

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        path = response.request.url.path
        try:
            body = response.json()
        except ValueError:
            # Not chained: the decoding error holds the whole body (``doc``).
            raise MisconfiguredError(
                self._text.clean(f"{path}: {self._text.not_json(response)}")
            ) from None
        if not isinstance(body, dict):
            raise MisconfiguredError(self._text.clean(f"{path}: unexpected answer (not an object)"))
        return body

    # -- reading ----------------------------------------------------------------------------------
    def _search(self, filter_: str) -> list[dict[str, Any]]:
        params = {"filter": filter_, "count": self.settings.page_size}
        return _resources(self._json(self._request("GET", "/Users", params=params)))

    def find_by_email(self, email: str) -> list[RemoteUser]:
        key = email.strip().casefold()
        found: dict[str, RemoteUser] = {}
        # Compliant servers compare emails case-insensitively (RFC 7643 §4.1.2); for the others
        # also ask with the lower-cased address, and always check the answers locally.
        variants = dict.fromkeys([email.strip(), email.strip().lower()])
        for value in variants:
            quoted = value.replace("\\", "\\\\").replace('"', '\\"')
            for resource in self._search(f'emails.value eq "{quoted}"'):
                user = self.from_resource(resource)
                if user.email_key == key or key in _all_email_keys(resource):
                    found[user.id] = user
        return list(found.values())

    def find_by_external_id(self, external_id: str) -> RemoteUser | None:
        quoted = external_id.replace("\\", "\\\\").replace('"', '\\"')
        for resource in self._search(f'externalId eq "{quoted}"'):
            if resource.get("externalId") == external_id:
                return self.from_resource(resource)
        return None

    def search(self, text: str, limit: int) -> list[RemoteUser]:
        """Users whose name, userName or email contains ``text`` (for linking by hand)."""
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        filter_ = " or ".join(
            f'{path} co "{quoted}"'
            for path in ("name.familyName", "name.givenName", "userName", "emails.value")
        )
        params = {"filter": filter_, "count": limit}
        found = _resources(self._json(self._request("GET", "/Users", params=params)))
        return [self.from_resource(r) for r in found[:limit]]

    def list_page(self, start_index: int, count: int) -> UserPage:
        params = {"startIndex": start_index, "count": count}
        body = self._json(self._request("GET", "/Users", params=params))
        resources = _resources(body)
        try:
            total = int(body.get("totalResults", len(resources)))
        except (TypeError, ValueError):
            # Not chained: int()'s error quotes the value.
            raise MisconfiguredError(
                self._text.clean("/Users: totalResults is not a number")
            ) from None
        return UserPage(users=[self.from_resource(r) for r in resources], total=total)

    def get(self, user_id: str) -> RemoteUser:
        return self.from_resource(self._json(self._request("GET", f"/Users/{user_id}")))

    def changed_since(self, since: datetime) -> ChangedUsers:
        """Every user modified after ``since``, paged (RFC 7644 §3.4.2.2 on ``meta``)."""
        filter_ = f'meta.lastModified gt "{scim_datetime(since)}"'
        users: dict[str, RemoteUser] = {}
        start = 1
        while True:
            params = {"filter": filter_, "startIndex": start, "count": self.settings.page_size}
            try:
                body = self._json(self._request("GET", "/Users", params=params))
            except RejectedError as exc:
                if start > 1:  # the filter was taken for the first page: another problem
                    raise
                # 400 (invalidFilter): the server cannot answer this question.
                raise FilterUnsupportedError(
                    self._text.clean(f"the LMS does not filter on meta.lastModified: {exc}")
                ) from None
            resources = _resources(body)
            new = [self.from_resource(r) for r in resources]
            fresh = [u for u in new if u.id not in users]
            users.update((u.id, u) for u in new)
            start += len(resources)
            total = _count(body.get("totalResults"))
            # Stop at totalResults (unknown: at an empty page), or when a page brings nothing
            # new (some servers return page 1 again past the end).
            if not resources or not fresh or (total is not None and start > total):
                return ChangedUsers(list(users.values()), self._first_date)

    def server_time(self) -> datetime | None:
        return self._first_date

    def ping(self) -> None:
        self._request("GET", "/Users", params={"count": 1})

    # -- writing ---------------------------------------------------------------------------------
    def create(self, fields: Mapping[str, Any], create_only: Mapping[str, Any]) -> RemoteUser:
        resource = user_resource(self.settings, fields, create_only)
        response = self._request("POST", "/Users", json=resource, ok=(200, 201))
        return self.from_resource(self._json(response))

    def update(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        changed: Collection[str],
        active: bool | None = None,
    ) -> None:
        if self.settings.use_patch:
            ops = patch_operations(self.settings, fields, changed, active)
            if not ops:
                return
            body = {"schemas": [PATCH_OP], "Operations": ops}
            self._request("PATCH", f"/Users/{user_id}", json=body, ok=(200, 204))
            return
        current = self._json(self._request("GET", f"/Users/{user_id}"))
        merged = merge_for_put(self.settings, current, fields, changed, active)
        self._request("PUT", f"/Users/{user_id}", json=merged, ok=(200, 204))

    # -- writing in bulk (RFC 7644 §3.7) ----------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Users written per request: the server's bulk limit, or 1 without Bulk."""
        bulk = self._bulk()
        return bulk.max_operations if bulk is not None else 1

    def _bulk(self) -> BulkLimits | None:
        """The server's bulk limits, read once per connector (one request per run); None when
        Bulk is off, unsupported, or the configuration cannot be read."""
        if not self.settings.use_bulk:
            return None
        with self._bulk_lock:
            if not self._bulk_read:
                try:
                    config = self._json(self._request("GET", "/ServiceProviderConfig"))
                except MisconfiguredError:
                    raise
                except LmsError:
                    config = {}
                self._bulk_limits = scim_bulk.limits(config)
                self._bulk_read = True
            return self._bulk_limits

    def create_many(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]
    ) -> list[RemoteUser | LmsError]:
        return self.write_many(items, [])[0]

    def update_many(self, items: Sequence[UpdateRequest]) -> list[LmsError | None]:
        return self.write_many([], items)[1]

    def write_many(
        self,
        creates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
        updates: Sequence[UpdateRequest],
    ) -> tuple[list[RemoteUser | LmsError], list[LmsError | None]]:
        """Creations and updates together, in as few bulk requests as the server takes (one
        request per user without Bulk): the users made or why not, and each update's error."""
        resources = [user_resource(self.settings, fields, extra) for fields, extra in creates]
        operations = [
            Operation("POST", "/Users", f"c{i}", resource) for i, resource in enumerate(resources)
        ]
        singles: list[Callable[[], object]] = [
            partial(self.create, fields, extra) for fields, extra in creates
        ]
        errors: list[LmsError | None] = [None] * len(updates)
        patched: list[int] = []  # the update behind each PATCH operation
        for index, item in enumerate(updates):
            single = partial(self.update, item.user_id, item.fields, item.changed, item.active)
            if not self.settings.use_patch:  # PUT needs the user read first: one by one
                errors[index] = self._attempt(single)
                continue
            ops = patch_operations(self.settings, item.fields, item.changed, item.active)
            if ops:  # nothing to write: done without a request, as ``update`` does
                body = {"schemas": [PATCH_OP], "Operations": ops}
                operations.append(Operation("PATCH", f"/Users/{item.user_id}", f"u{index}", body))
                singles.append(single)
                patched.append(index)
        answers = self._send(operations, lambda i: singles[i]())
        made: list[RemoteUser | LmsError] = []
        for index, answer in enumerate(answers[: len(creates)]):
            if isinstance(answer, OperationResult):
                made.append(self._created(resources[index], answer))
            elif isinstance(answer, (LmsError, RemoteUser)):
                made.append(answer)
            else:  # pragma: no cover - ``create`` returns a RemoteUser
                raise TypeError(type(answer).__name__)
        for index, answer in zip(patched, answers[len(creates) :], strict=True):
            errors[index] = answer if isinstance(answer, LmsError) else None
        return made, errors

    def _created(
        self, resource: Mapping[str, Any], answer: OperationResult
    ) -> RemoteUser | LmsError:
        user_id = answer.resource_id
        if user_id is None:
            # Made, but where? Tried again, it answers 409 and the user is found and linked.
            return TransientError("the LMS's bulk answer did not say which user it created")
        returned = answer.response if isinstance(answer.response, dict) else {}
        try:
            return self.from_resource({**resource, **returned, "id": user_id})
        except LmsError as exc:
            return exc

    def _attempt(self, call: Callable[[], T]) -> T | LmsError:
        """``call()``, or the error it raised (a misconfiguration stops everything)."""
        try:
            return call()
        except MisconfiguredError:
            raise
        except LmsError as exc:
            return exc

    def _send(
        self, operations: list[Operation], one: Callable[[int], T]
    ) -> list[OperationResult | T | LmsError]:
        """Each operation's result: in bulk requests when the server takes them, else (and for
        a lone operation) by ``one(index)``, the single request."""
        out: list[OperationResult | T | LmsError] = []
        bulk = self._bulk() if len(operations) > 1 else None
        if bulk is None:
            return [self._attempt(partial(one, i)) for i in range(len(operations))]
        start = 0
        for group in scim_bulk.pack(operations, bulk):
            out.extend(self._bulk_request(group, partial(_shifted, one, start)))
            start += len(group)
        return out

    def _bulk_request(
        self, group: list[Operation], one: Callable[[int], T]
    ) -> list[OperationResult | T | LmsError]:
        """One POST /Bulk; each operation's result, or its error as a single request's."""
        body = scim_bulk.request_body(group)
        try:
            response = self._request("POST", "/Bulk", json=body, ok=(200, 400, 404, 405, 413, 501))
        except TransientError as exc:
            # Whether the server applied some is unknown: each is retried, and a creation it
            # made answers 409 then, so the user is found and linked (never made twice).
            return [exc] * len(group)
        except MisconfiguredError:
            raise
        except LmsError:
            # Refused as a whole (409, 415, 422...): each user on its own gets its own answer.
            return [self._attempt(partial(one, i)) for i in range(len(group))]
        status = response.status_code
        if status == 413 and len(group) > 1:  # too large after all: in halves
            half = len(group) // 2
            first = self._bulk_request(group[:half], one)
            return first + self._bulk_request(group[half:], partial(_shifted, one, half))
        if status != 200:
            if status in (404, 405, 501):  # no Bulk at this URL, whatever the config says
                self._bulk_limits = None
            return [self._attempt(partial(one, i)) for i in range(len(group))]
        try:
            answered = self._json(response)
        except MisconfiguredError:
            answered = {}
        found = scim_bulk.results(answered, group)
        if all(result is None for result in found):
            # An answer that reports nothing: this server's Bulk is not to be trusted.
            self._bulk_limits = None
        return [
            self._operation(operation, result)
            for operation, result in zip(group, found, strict=True)
        ]

    def _operation(
        self, operation: Operation, result: OperationResult | None
    ) -> OperationResult | LmsError:
        """A successful result as it is; a failed one as the error its single request raises."""
        if result is None:
            return TransientError("the LMS's bulk answer did not report this operation")
        status = result.status
        if 200 <= status < 300:
            return result
        where = f"{operation.method} {operation.path} (bulk)"
        described = self._text.clean(f"{where}: {self._text.operation(status, result.response)}")
        if status == 429 or status >= 500:
            return TransientError(described)
        if status in (401, 403):
            # One user refused among others (a protected account): that user's rejection; a
            # refused credential refuses the whole request, which stops the run.
            refused = self._text.operation(status, result.response)
            return RejectedError(self._text.clean(f"the LMS refused this user: {refused}"))
        if status == 404:
            return NotFoundError(described)
        if status == 409:
            return AlreadyExistsError(described)
        refused = self._text.operation(status, result.response)
        return RejectedError(self._text.clean(f"the LMS refused the data: {refused}"))

    # -- test connection -------------------------------------------------------------------------
    def test(self) -> ConnectionReport:
        report = ConnectionReport()
        if portal := self.settings.portal_finding(self._text):
            # Said first: a wrong portal shows as failures below (404, authentication).
            report.add("ok", portal)
        try:
            config_body = self._json(self._request("GET", "/ServiceProviderConfig"))
        except LmsError as exc:
            report.add("error", _("ServiceProviderConfig: {error}", error=exc.message))
            return report
        try:
            config = ServiceProviderConfig.model_validate(config_body)
            patch = bool(config.patch and config.patch.supported)
            filtering = bool(config.filter and config.filter.supported)
        except ValidationError:
            report.add("warning", _("ServiceProviderConfig does not follow RFC 7643 §5"))
            patch = _supported(config_body, "patch")
            filtering = _supported(config_body, "filter")
        report.add("ok", _("the server answers as a SCIM 2.0 service provider"))
        bulk = scim_bulk.limits(config_body)
        if not self.settings.use_bulk:
            report.add("ok", _("Bulk is off for this interface: one request per user"))
        elif bulk is not None:
            report.add(
                "ok",
                _("Bulk supported: up to {count} users per request", count=bulk.max_operations),
            )
        else:
            report.add("ok", _("the server does not support Bulk: one request per user"))
        if not patch and self.settings.use_patch:
            report.add("error", _("the server does not support PATCH: switch the interface to PUT"))
        if not filtering:
            report.add(
                "warning", _("the server cannot filter: each lookup will page through all users")
            )
        try:
            self._request("GET", "/Users", params={"count": 1})
            report.add("ok", _("authentication accepted"))
        except MisconfiguredError as exc:
            report.add("error", _("authentication failed: {error}", error=exc.message))
            return report
        except LmsError as exc:
            report.add("error", _("/Users: {error}", error=exc.message))
            return report
        self._check_schemas(report)
        self._probe_modified_filter(report)
        return report

    def _probe_modified_filter(self, report: ConnectionReport) -> None:
        """Whether the server answers "the users changed since" (remembered by the interface:
        the hourly pass then reads only those)."""
        since = datetime.now(UTC) - timedelta(minutes=1)
        params = {"filter": f'meta.lastModified gt "{scim_datetime(since)}"', "count": 1}
        try:
            self._request("GET", "/Users", params=params)
        except (RejectedError, NotFoundError):
            report.modified_filter = False
            report.add(
                "warning",
                _(
                    "the server cannot filter users on meta.lastModified: the hourly pass reads "
                    "the LMS only at the daily full sweep, where changes made in the LMS are "
                    "corrected"
                ),
            )
            return
        except LmsError as exc:
            report.add(
                "warning", _("filter on meta.lastModified not checked: {error}", error=exc.message)
            )
            return
        report.modified_filter = True
        report.add(
            "ok",
            _(
                "the server filters users on meta.lastModified: the hourly pass reads only the "
                "LMS users changed since the previous one"
            ),
        )

    def _check_schemas(self, report: ConnectionReport) -> None:
        try:
            schemas = self._json(self._request("GET", "/Schemas"))
            types = self._json(self._request("GET", "/ResourceTypes"))
        except LmsError as exc:
            report.add("warning", _("cannot read the schemas: {error}", error=exc.message))
            return
        published = {
            str(s.get("id")): {str(a.get("name")) for a in _dicts(s.get("attributes"))}
            for s in _resources(schemas)
        }
        user_type = next((t for t in _resources(types) if t.get("name") == "User"), {})
        extensions = {str(e.get("schema")) for e in _dicts(user_type.get("schemaExtensions"))}
        if CORE_USER not in published:
            report.add("error", _("the server does not publish the core User schema"))
        if ENTERPRISE_USER not in extensions:
            report.add(
                "warning",
                _("the enterprise extension is not declared: company and number are sent anyway"),
            )
        urn = self.settings.extension_urn
        if urn:
            if urn not in published or urn not in extensions:
                report.add(
                    "error", _("the LMS extension schema {urn} is missing on the server", urn=urn)
                )
            else:
                missing = sorted(set(self.settings.extension_attributes.values()) - published[urn])
                if missing:
                    report.add(
                        "error",
                        _(
                            "the LMS extension lacks attributes: {attributes}",
                            attributes=", ".join(missing),
                        ),
                    )
                else:
                    report.add(
                        "ok", _("LMS extension {urn} found with all its attributes", urn=urn)
                    )

    # -- reading a resource --------------------------------------------------------------------
    def from_resource(self, resource: Mapping[str, Any]) -> RemoteUser:
        user_id = resource.get("id")
        if not isinstance(user_id, str) or not user_id:
            raise RejectedError(self._text.clean("the LMS returned a user without id"))
        try:
            keys = _all_email_keys(resource)
            primary = _primary_email(resource)
            fields = neutral_fields(self.settings, resource)
        except (AttributeError, KeyError, TypeError, ValueError):
            # Not chained: these errors may quote what the server sent.
            raise RejectedError(
                self._text.clean("the LMS returned a user that does not follow RFC 7643")
            ) from None
        return RemoteUser(
            id=user_id,
            active=resource.get("active") is not False,
            email_key=primary.strip().casefold() if primary else (keys[0] if keys else None),
            fields=fields,
        )


# -- pure request building and reading ---------------------------------------------------------


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The objects of a JSON array (nothing when ``value`` is not one)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _resources(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return _dicts(body.get("Resources"))


def _supported(config: Mapping[str, Any], feature: str) -> bool:
    value = config.get(feature)
    return isinstance(value, dict) and bool(value.get("supported"))


def _primary_email(resource: Mapping[str, Any]) -> str | None:
    emails = [e for e in resource.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    for rank in (
        lambda e: e.get("primary") is True,
        lambda e: e.get("type") == "work",
        lambda e: True,
    ):
        for item in emails:
            if rank(item):
                return str(item["value"])
    return None


def _all_email_keys(resource: Mapping[str, Any]) -> list[str]:
    return [
        str(e["value"]).strip().casefold()
        for e in resource.get("emails") or []
        if isinstance(e, dict) and e.get("value")
    ]


def _phones(fields: Mapping[str, Any]) -> list[dict[str, str]]:
    out = []
    if fields.get("home_phone"):
        out.append({"value": str(fields["home_phone"]), "type": "home"})
    if fields.get("cell_phone"):
        out.append({"value": str(fields["cell_phone"]), "type": "mobile"})
    return out


_ADDRESS_PARTS = {
    "address": "streetAddress",
    "city": "locality",
    "province": "region",
    "postal_code": "postalCode",
    "country": "country",
}


def _address(fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts = {scim: fields[n] for n, scim in _ADDRESS_PARTS.items() if fields.get(n)}
    if not parts:
        return []
    return [{"type": "work", "primary": True, **parts}]


def _scim_datetime(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def user_name(settings: ScimSettings, fields: Mapping[str, Any]) -> str:
    if settings.user_name_field == "employee_number":
        return str(fields["employee_number"])
    return str(fields["email"])


def user_resource(
    settings: ScimSettings, fields: Mapping[str, Any], create_only: Mapping[str, Any]
) -> dict[str, Any]:
    """The SCIM User sent on creation (all maintained fields plus the create-only ones)."""
    schemas = [CORE_USER, ENTERPRISE_USER]
    resource: dict[str, Any] = {
        "userName": user_name(settings, fields),
        "externalId": fields["external_id"],
        "name": {"givenName": fields["first_name"], "familyName": fields["last_name"]},
        "displayName": f"{fields['first_name']} {fields['last_name']}",
        "emails": [{"value": fields["email"], "type": "work", "primary": True}],
        "active": True,
    }
    if fields.get("language"):
        resource["preferredLanguage"] = fields["language"]
    if fields.get("job_title"):
        resource["title"] = fields["job_title"]
    if phones := _phones(fields):
        resource["phoneNumbers"] = phones
    if address := _address(fields):
        resource["addresses"] = address
    enterprise = {"employeeNumber": fields.get("employee_number")}
    if fields.get("company_name"):
        enterprise["organization"] = fields["company_name"]
    resource[ENTERPRISE_USER] = enterprise
    if settings.extension_urn:
        values = {**create_only, "notifications_enabled": fields.get("notifications_enabled")}
        resource[settings.extension_urn] = {
            attribute: _scim_datetime(values[name])
            for name, attribute in settings.extension_attributes.items()
            if values.get(name) is not None
        }
        schemas.append(settings.extension_urn)
    resource["schemas"] = schemas
    return resource


def _set(path: str, value: Any) -> dict[str, Any]:
    if value is None or value == []:
        return {"op": "remove", "path": path}
    return {"op": "replace", "path": path, "value": value}


def patch_operations(
    settings: ScimSettings,
    fields: Mapping[str, Any],
    changed: Collection[str],
    active: bool | None,
) -> list[dict[str, Any]]:
    """RFC 7644 §3.5.2 operations writing the ``changed`` maintained fields (and ``active``)."""
    ops: list[dict[str, Any]] = []
    changed = set(changed)
    simple = {
        "external_id": "externalId",
        "first_name": "name.givenName",
        "last_name": "name.familyName",
        "language": "preferredLanguage",
        "job_title": "title",
        "employee_number": f"{ENTERPRISE_USER}:employeeNumber",
        "company_name": f"{ENTERPRISE_USER}:organization",
    }
    for name, path in simple.items():
        if name in changed:
            ops.append(_set(path, fields.get(name)))
    if changed & {"first_name", "last_name"}:
        ops.append(_set("displayName", f"{fields['first_name']} {fields['last_name']}"))
    if "email" in changed:
        ops.append(_set("emails", [{"value": fields["email"], "type": "work", "primary": True}]))
        if settings.user_name_field == "email":
            ops.append(_set("userName", fields["email"]))
    if settings.user_name_field == "employee_number" and "employee_number" in changed:
        ops.append(_set("userName", fields["employee_number"]))
    if changed & {"home_phone", "cell_phone"}:
        ops.append(_set("phoneNumbers", _phones(fields)))
    if changed & set(_ADDRESS_PARTS):
        ops.append(_set("addresses", _address(fields)))
    attribute = settings.extension_attributes.get("notifications_enabled")
    if "notifications_enabled" in changed and settings.extension_urn and attribute:
        ops.append(_set(f"{settings.extension_urn}:{attribute}", fields["notifications_enabled"]))
    if active is not None:
        ops.append({"op": "replace", "path": "active", "value": active})
    return ops


def merge_for_put(
    settings: ScimSettings,
    current: Mapping[str, Any],
    fields: Mapping[str, Any],
    changed: Collection[str],
    active: bool | None,
) -> dict[str, Any]:
    """The whole user for PUT: the server's copy with lmsync's maintained fields laid over it
    (create-only values and attributes lmsync does not manage are kept)."""
    fresh = user_resource(settings, fields, {})
    merged = {k: v for k, v in current.items() if k != "meta"}
    extensions = {ENTERPRISE_USER, settings.extension_urn}
    for key, value in fresh.items():
        if key == "schemas":
            merged[key] = list(dict.fromkeys([*(current.get("schemas") or []), *value]))
        elif key in extensions and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif key != "active":
            merged[key] = value
    # A field cleared in HR is absent from ``fresh``: clear it on the server too.
    for key in _CLEARABLE:
        if key not in fresh:
            merged.pop(key, None)
    enterprise = merged.get(ENTERPRISE_USER)
    if isinstance(enterprise, dict) and "organization" not in fresh.get(ENTERPRISE_USER, {}):
        enterprise.pop("organization", None)
    if active is not None:
        merged["active"] = active
    return merged


_CLEARABLE = ("preferredLanguage", "title", "phoneNumbers", "addresses")


def neutral_fields(settings: ScimSettings, resource: Mapping[str, Any]) -> dict[str, Any]:
    """The maintained fields as the LMS holds them, in lmsync's neutral names (for diffs)."""
    name = resource.get("name") or {}
    enterprise = resource.get(ENTERPRISE_USER) or {}
    phones = {
        p.get("type"): p.get("value")
        for p in resource.get("phoneNumbers") or []
        if isinstance(p, dict)
    }
    addresses = [a for a in resource.get("addresses") or [] if isinstance(a, dict)]
    address = next((a for a in addresses if a.get("primary")), addresses[0] if addresses else {})
    extension = resource.get(settings.extension_urn or "", {}) or {}
    notifications_attribute = settings.extension_attributes.get("notifications_enabled", "")
    out: dict[str, Any] = {
        "external_id": resource.get("externalId"),
        "employee_number": enterprise.get("employeeNumber"),
        "first_name": name.get("givenName"),
        "last_name": name.get("familyName"),
        "language": resource.get("preferredLanguage"),
        "email": _primary_email(resource),
        "company_name": enterprise.get("organization"),
        "job_title": resource.get("title"),
        "home_phone": phones.get("home"),
        "cell_phone": phones.get("mobile"),
        # Without an LMS extension there is nowhere to keep it: nothing to compare.
        "notifications_enabled": extension.get(notifications_attribute)
        if settings.extension_urn
        else True,
    }
    for neutral, scim in _ADDRESS_PARTS.items():
        out[neutral] = address.get(scim)
    return out
