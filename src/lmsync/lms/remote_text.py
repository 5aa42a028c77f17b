"""The one place where what an LMS answered, or how reaching it failed, becomes text for people.

Everything a connector puts in an error message passes through ``RemoteText``, so findings,
``lms_states.reason``, ``sync_outcomes.reason``, logs, the CLI and the pages only ever get text
that:

- never quotes what we sent (request headers, request bodies): only the answer is read;
- has the stored secret redacted, also in the forms it travels in (``Bearer``, basic-auth base64,
  URL-encoded, JSON-escaped); a SCIM error detail that holds it (an echo of our request, with
  its other headers and body) is not quoted at all;
- has no control or invisible formatting characters, and is at most ``MAX_LENGTH`` characters;
- describes an answer that is not a SCIM error document by its category only (HTTP status,
  content type), never by its body: an HTML page or some JSON of an internal service is not
  quoted. Only a SCIM error's ``detail`` and ``scimType`` (RFC 7644 §3.12) are;
- describes failing connections with as few categories as possible (cannot connect, timed out,
  TLS error), so that refused, reset, unreachable and unknown hosts cannot be told apart (no map
  of open ports through Test connection).
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import unicodedata
from urllib.parse import quote, quote_plus

import httpx

MAX_LENGTH = 300
MAX_DETAIL = 200  # a quoted SCIM detail, so that the message around it stays readable
REDACTED = "[redacted]"
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

CANNOT_CONNECT = "cannot connect to the LMS"
TIMED_OUT = "the LMS did not answer in time"
TLS_FAILED = "TLS error: the secure connection to the LMS failed (certificate or protocol)"
UNREADABLE = "the LMS's answer could not be read"
ECHOED = "its message, which repeated our request's credentials, is not shown"

_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_SCIM_TYPE = re.compile(r"^[A-Za-z]{1,40}$")
_SPACES = re.compile(r"\s+")
_MAX_JSON_BYTES = 64 * 1024  # a SCIM error document is small; a larger body is not parsed


def _visible(text: str) -> str:
    """Whitespace of any kind (newlines, tabs, separators) becomes one space; other control
    characters and invisible ones (bidirectional overrides, zero-width characters) are dropped."""
    out = []
    for char in text:
        if char.isspace():
            out.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cf", "Co", "Cs", "Cn"):
            out.append(char)
    return _SPACES.sub(" ", "".join(out)).strip()


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def media_type(response: httpx.Response) -> str:
    """The answer's media type, lower case without parameters; "none" or "unknown" when absent
    or when it does not look like one (it is a header the server chose: never quoted as is)."""
    value = response.headers.get("Content-Type", "")
    kind = value.split(";", 1)[0].strip().lower()
    if not kind:
        return "none"
    return kind if _MEDIA_TYPE.match(kind) else "unknown"


def is_json(kind: str) -> bool:
    return kind in ("application/json", "application/scim+json") or kind.endswith("+json")


def _transport_kind(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return TIMED_OUT
    if isinstance(exc, httpx.DecodingError):
        return UNREADABLE
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return TLS_FAILED
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    # Refused, reset, unreachable, unknown host, not HTTP at all: one message for all of them.
    return CANNOT_CONNECT


class RemoteText:
    """Safe text about one LMS, knowing the credentials that must never show."""

    def __init__(self, secret: str | None, username: str | None = None) -> None:
        self._hidden = _secret_forms(secret, username)

    # -- the building blocks ---------------------------------------------------------------------
    def redact(self, text: str) -> str:
        for form in self._hidden:
            text = text.replace(form, REDACTED)
        return text

    def holds_secret(self, text: str) -> bool:
        """Whether ``text`` holds the secret, in one of its forms, as received or as shown."""
        return self.redact(text) != text or self.redact(_visible(text)) != _visible(text)

    def clean(self, text: str, limit: int = MAX_LENGTH) -> str:
        """Visible characters only, the secret redacted, at most ``limit`` characters.

        Redacted as received and again as shown (a secret split by invisible characters joins
        up once they are dropped); cut last, so that a cut never leaves part of a whole secret."""
        return _bounded(self.redact(_visible(self.redact(text))), limit)

    # -- describing answers and failures ---------------------------------------------------------
    def response(self, response: httpx.Response) -> str:
        """An unexpected answer: its status, plus the SCIM error's detail when it is one, or the
        content type when it is not SCIM at all (never the body)."""
        status = f"HTTP status {response.status_code}"
        kind = media_type(response)
        if not is_json(kind):
            return f"{status} (not a SCIM answer: content type {kind})"
        document = self._scim_error(response)
        if document is None:
            return f"{status} (not a SCIM error document)"
        detail, scim_type = document
        text = status
        if detail:
            text += f": {detail}"
        if scim_type:
            text += f" (scimType {scim_type})"
        return text

    def not_json(self, response: httpx.Response) -> str:
        """A successful answer that is not JSON: not a SCIM server (or not its SCIM endpoint)."""
        return f"not a SCIM server (content type {media_type(response)}): the answer is not JSON"

    def transport(self, exc: BaseException) -> str:
        """A failed exchange, by category only (see the module's docstring)."""
        return _transport_kind(exc)

    def cause(self, exc: httpx.RequestError) -> httpx.RequestError:
        """A stand-in for ``exc`` to chain to the ``LmsError``: same type, a safe message, and no
        request (httpx keeps ours, with its headers, on the exception)."""
        message = f"{_transport_kind(exc)} ({self.clean(str(exc), 200) or type(exc).__name__})"
        try:
            return type(exc)(message)
        except TypeError:  # a subclass with another signature
            return httpx.TransportError(message)

    def operation(self, status: int, document: object) -> str:
        """One operation's failure inside a bulk answer (RFC 7644 §3.7.3): its status, plus the
        SCIM error's detail when ``document`` is one (never anything else of it)."""
        text = f"HTTP status {status}"
        found = self._document(document)
        if found is None:
            return text
        detail, scim_type = found
        if detail:
            text += f": {detail}"
        if scim_type:
            text += f" (scimType {scim_type})"
        return text

    def _scim_error(self, response: httpx.Response) -> tuple[str, str] | None:
        """(detail, scimType) of an RFC 7644 §3.12 error document, both made safe; None when the
        answer is not one."""
        if len(response.content) > _MAX_JSON_BYTES:
            return None
        try:
            body = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            return None
        return self._document(body)

    def _document(self, body: object) -> tuple[str, str] | None:
        if not isinstance(body, dict):
            return None
        schemas = body.get("schemas")
        if not isinstance(schemas, list) or SCIM_ERROR not in schemas:
            return None
        detail = body.get("detail")
        scim_type = body.get("scimType")
        if not isinstance(detail, str):
            detail = ""
        elif self.holds_secret(detail):
            # An echo of our request: its other headers are no business of the reader either.
            detail = ECHOED
        if not isinstance(scim_type, str) or not _SCIM_TYPE.match(scim_type):
            scim_type = ""
        return self.clean(detail, MAX_DETAIL), self.clean(scim_type)


def _secret_forms(secret: str | None, username: str | None) -> tuple[str, ...]:
    """The secret as it may come back: as is, in the headers we build from it, encoded."""
    if not secret:
        return ()
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    visible = _visible(secret)  # what the secret becomes once ``clean`` has passed over it
    if visible:
        forms.add(visible)
    raw = [secret.encode()]
    if username is not None:
        raw.append(f"{username}:{secret}".encode())
    for value in raw:
        for encoded in (base64.b64encode(value), base64.urlsafe_b64encode(value)):
            text = encoded.decode()
            forms.update({text, text.rstrip("=")})
    # Longest first: a form that contains another one is replaced whole.
    return tuple(sorted((f for f in forms if f), key=len, reverse=True))
