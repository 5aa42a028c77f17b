"""Which hosts an LMS interface may reach: the operator's allow and deny lists.

From ``LMSYNC_LMS_ALLOWED_HOSTS`` and ``LMSYNC_LMS_DENIED_HOSTS`` (see ``Settings``):
comma-separated host names (``lms.example.com``), wildcards (``*.example.com``: any name below
it) and networks (``10.0.0.0/8``, ``fe80::/10``, a single address). The deny list wins; an
empty allow list allows any host that is not denied.

The policy is checked when an interface is saved (its name or literal address) and again for
every request, in the connector's transport (``PolicyTransport``): the host name is resolved, every
address it resolves to must pass, and the connection goes to one of those checked addresses. A DNS
answer that changes between the check and the connection, or a name that points to a denied
address (169.254.169.254), cannot get around it; nor can a redirect, which the connector never
follows.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import httpx

from lmsync.i18n import _
from lmsync.lms.base import MisconfiguredError
from lmsync.settings import Settings

IPAddress = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Resolver = Callable[[str, int], list[IPAddress]]

NOT_ALLOWED = _("this LMS address is not allowed by the server's configuration")
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_NUMERIC = re.compile(r"^[0-9a-fx.]+$")  # what inet_aton may read as an IPv4 address
_LOOPBACK = (IPv4Address("127.0.0.1"), IPv6Address("::1"))


class HostNotAllowed(MisconfiguredError):
    """The interface's host, or an address it resolves to, is outside the operator's policy."""

    def __init__(self) -> None:
        super().__init__(NOT_ALLOWED)


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one, in any form a resolver reads without DNS
    (``127.1``, ``0x7f000001`` and ``2130706433`` are 127.0.0.1 to ``getaddrinfo``)."""
    host = host.strip("[]")
    try:
        return ip_address(host)
    except ValueError:
        pass
    if _NUMERIC.match(host.lower()):
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _equivalents(address: IPAddress) -> list[IPAddress]:
    """The addresses a connection to ``address`` really reaches."""
    out: list[IPAddress] = [address]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        out.append(address.ipv4_mapped)
    if any(a.is_unspecified for a in out):  # 0.0.0.0 and :: reach this machine
        out.extend(_LOOPBACK)
    return out


def host_name(url: httpx.URL) -> str:
    """The URL's host as the policy compares it: ASCII (IDNA), lower case, no final dot."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


@dataclass(frozen=True)
class HostRules:
    """One list: exact names, ``*.`` suffixes and networks."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str, setting: str) -> HostRules:
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[Network] = []
        for raw in text.split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            wildcard = entry.startswith("*.")
            name = entry.removeprefix("*.")
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                name = ""
            if not _NAME.match(name):
                raise ValueError(
                    f"{setting}: {raw.strip()!r} is neither a host name, a *. wildcard "
                    "nor a network"
                )
            if wildcard:
                suffixes.append("." + name)
            else:
                names.add(name)
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    @property
    def empty(self) -> bool:
        return not (self.names or self.suffixes or self.networks)

    def has_name(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def has_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class HostPolicy:
    allowed: HostRules
    denied: HostRules

    @classmethod
    def parse(cls, allowed: str, denied: str) -> HostPolicy:
        """Raises ``ValueError`` naming the setting and the entry it cannot read."""
        return cls(
            HostRules.parse(allowed, "LMSYNC_LMS_ALLOWED_HOSTS"),
            HostRules.parse(denied, "LMSYNC_LMS_DENIED_HOSTS"),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        return cls.parse(settings.lms_allowed_hosts, settings.lms_denied_hosts)

    def permits(self, host: str, addresses: Sequence[IPAddress]) -> bool:
        """Whether ``host`` (normalized as ``host_name`` does), resolved to ``addresses``, may
        be reached: denied by none, and allowed by name or with every address in an allowed
        network."""
        if self.denied.has_name(host):
            return False
        if any(self.denied.has_address(e) for a in addresses for e in _equivalents(a)):
            return False
        if self.allowed.empty or self.allowed.has_name(host):
            return True
        return bool(addresses) and all(self.allowed.has_address(_plain(a)) for a in addresses)

    def refuses_url(self, url: str) -> bool:
        """Whether ``url`` is refused before any lookup: a literal address outside the policy,
        or a name the lists settle (an allow list with networks waits for the resolution)."""
        host = host_name(httpx.URL(url))
        literal = literal_address(host)
        if literal is not None:
            return not self.permits(host, [literal])
        if self.denied.has_name(host):
            return True
        if self.allowed.empty or self.allowed.has_name(host):
            return False
        return not self.allowed.networks

    def check_url(self, url: str) -> None:
        if self.refuses_url(url):
            raise HostNotAllowed()


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


class PolicyTransport(httpx.BaseTransport):
    """Checks each request's host against the policy, then connects to a checked address."""

    def __init__(
        self, inner: httpx.BaseTransport, policy: HostPolicy, resolver: Resolver = resolve
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.resolver = resolver

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = host_name(url)
        literal = literal_address(host)
        if literal is not None:
            if not self.policy.permits(host, [literal]):
                raise HostNotAllowed()
            return self.inner.handle_request(request)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError, ValueError):
            addresses = []
        if not addresses:
            raise httpx.ConnectError("the host name did not resolve", request=request)
        if not self.policy.permits(host, addresses):
            raise HostNotAllowed()
        failure: httpx.ConnectError | None = None
        for address in addresses:
            try:
                return self.inner.handle_request(_pinned(request, address, host))
            except httpx.ConnectError as exc:  # nothing was sent: the next address may answer
                failure = exc
        assert failure is not None
        raise failure

    def close(self) -> None:
        self.inner.close()


def _pinned(request: httpx.Request, address: IPAddress, host: str) -> httpx.Request:
    """``request`` sent to ``address``: same Host header, and for TLS the same server name (SNI
    and certificate check) as the URL's host."""
    extensions = dict(request.extensions)
    if request.url.scheme == "https":
        extensions["sni_hostname"] = host
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(address)),
        headers=request.headers,
        stream=request.stream,
        extensions=extensions,
    )
