"""lmsync.lms.host_policy: the operator's allow and deny lists of LMS hosts, checked on the URL
and, in the connector's transport, on every address a host name resolves to."""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import httpx
import pytest

from lmsync.lms.base import MisconfiguredError
from lmsync.lms.host_policy import (
    NOT_ALLOWED,
    HostNotAllowed,
    HostPolicy,
    IPAddress,
    PolicyTransport,
    literal_address,
)
from lmsync.lms.registry import Connectors, host_policy_of
from lmsync.lms.scim import ScimConnector, ScimSettings
from lmsync.settings import Settings
from lmsync.storage.tables import LmsInterface

DEFAULT = HostPolicy.from_settings(Settings())
MULTI_TENANT = HostPolicy.parse(
    "",
    "127.0.0.0/8,::1/128,0.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,"
    "fe80::/10,fc00::/7,*.internal.example",
)


# --- the lists --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/scim",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[::ffff:a9fe:a9fe]/",
        "http://2852039166/",  # 169.254.169.254 as one number
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://169.254.169.254.:80/",
    ],
)
def test_link_local_is_denied_by_default(url: str) -> None:
    assert DEFAULT.refuses_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8123/scim/v2",  # the embedded test LMS
        "https://lms.example.com/scim/v2",
        "http://localhost:8000/",
        "https://10.1.2.3/",
    ],
)
def test_other_hosts_are_allowed_by_default(url: str) -> None:
    assert not DEFAULT.refuses_url(url)


def test_default_settings_deny_link_local_networks() -> None:
    assert Settings().lms_denied_hosts == "169.254.0.0/16,fe80::/10"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.8.9.10/",
        "http://[::1]/",
        "http://0.0.0.0:8000/",  # reaches this machine
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://192.168.1.10/",
        "http://svc.internal.example/",
        "http://A.B.Internal.Example./",
    ],
)
def test_a_multi_tenant_deny_list(url: str) -> None:
    assert MULTI_TENANT.refuses_url(url)


def test_a_denied_name_still_passes_the_save_check_when_only_its_addresses_are_denied() -> None:
    # Only the resolution tells that localhost is 127.0.0.1: the transport checks it (below).
    assert not MULTI_TENANT.refuses_url("http://localhost/")
    assert not MULTI_TENANT.permits("localhost", [ip_address("127.0.0.1")])


def test_wildcards_match_names_below_only() -> None:
    policy = HostPolicy.parse("*.lms.example.com,exact.example.org", "")

    assert not policy.refuses_url("https://acme.lms.example.com/scim")
    assert not policy.refuses_url("https://a.b.lms.example.com/scim")
    assert not policy.refuses_url("https://EXACT.example.org./")
    assert policy.refuses_url("https://lms.example.com/")
    assert policy.refuses_url("https://evillms.example.com/")
    assert policy.refuses_url("https://lms.example.com.evil.test/")
    assert policy.refuses_url("https://sub.exact.example.org/")
    assert policy.refuses_url("https://203.0.113.5/")


def test_the_deny_list_wins() -> None:
    policy = HostPolicy.parse("*.example.com,10.0.0.0/8", "bad.example.com,10.9.0.0/16")

    assert policy.refuses_url("https://bad.example.com/")
    assert policy.refuses_url("https://10.9.1.1/")
    assert not policy.refuses_url("https://good.example.com/")
    assert not policy.refuses_url("https://10.1.1.1/")
    # Allowed by name, but resolving into a denied network.
    assert not policy.permits("good.example.com", [ip_address("10.9.0.7")])


def test_an_allowed_network_needs_every_address_in_it() -> None:
    policy = HostPolicy.parse("203.0.113.0/24", "")

    assert not policy.refuses_url("https://lms.example.com/")  # known once resolved
    assert policy.permits("lms.example.com", [ip_address("203.0.113.9")])
    assert not policy.permits("lms.example.com", [ip_address("203.0.113.9"), ip_address("8.8.8.8")])
    assert not policy.permits("lms.example.com", [])


def test_idn_names_compare_in_their_ascii_form() -> None:
    policy = HostPolicy.parse("", "bücher.example")

    assert policy.refuses_url("https://BÜCHER.example/")
    assert policy.refuses_url("https://xn--bcher-kva.example/")


@pytest.mark.parametrize("entry", ["not a host", "http://x.example", "*", "a..b", "10.0.0.0/33"])
def test_an_unreadable_entry_names_the_setting(entry: str) -> None:
    with pytest.raises(ValueError, match="LMSYNC_LMS_DENIED_HOSTS") as info:
        HostPolicy.parse("", f"169.254.0.0/16, {entry}")
    assert entry in str(info.value)


def test_literal_addresses_in_every_form_a_resolver_reads() -> None:
    assert literal_address("127.1") == ip_address("127.0.0.1")
    assert literal_address("0x7f000001") == ip_address("127.0.0.1")
    assert literal_address("[::1]") == ip_address("::1")
    assert literal_address("lms.example.com") is None
    assert literal_address("deadbeef") is None  # a name, not hexadecimal


# --- the transport: every request, every resolved address --------------------------------------


class Inner(httpx.BaseTransport):
    """Records what would go on the wire; ``refuse`` addresses fail to connect."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.sent: list[httpx.Request] = []
        self.refuse = refuse

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in self.refuse:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        self.sent.append(request)
        return httpx.Response(200, json={"Resources": [], "totalResults": 0})


def resolver(*addresses: str) -> Callable[[str, int], list[IPAddress]]:
    return lambda host, port: [ip_address(a) for a in addresses]


def send(transport: httpx.BaseTransport, url: str) -> httpx.Response:
    with httpx.Client(transport=transport) as client:
        return client.get(url)


@pytest.mark.parametrize(
    "addresses",
    [("169.254.169.254",), ("203.0.113.7", "169.254.169.254"), ("::ffff:169.254.169.254",)],
)
def test_a_name_resolving_to_a_denied_address_is_refused(addresses: tuple[str, ...]) -> None:
    inner = Inner()
    transport = PolicyTransport(inner, DEFAULT, resolver(*addresses))

    with pytest.raises(HostNotAllowed) as info:
        send(transport, "http://metadata.attacker.example/latest/meta-data/")

    assert info.value.message == NOT_ALLOWED
    assert inner.sent == []


def test_the_connection_goes_to_the_checked_address_with_the_same_host_and_sni() -> None:
    inner = Inner()
    transport = PolicyTransport(inner, DEFAULT, resolver("203.0.113.7"))

    send(transport, "https://LMS.Example.com:8443/scim/v2/Users?count=1")

    (request,) = inner.sent
    assert str(request.url) == "https://203.0.113.7:8443/scim/v2/Users?count=1"
    assert request.headers["Host"] == "lms.example.com:8443"
    assert request.extensions["sni_hostname"] == "lms.example.com"


def test_an_address_that_refuses_is_skipped_for_the_next_checked_one() -> None:
    inner = Inner(refuse=("::1",))
    transport = PolicyTransport(inner, DEFAULT, resolver("::1", "127.0.0.1"))

    send(transport, "http://localhost:9000/")

    assert [r.url.host for r in inner.sent] == ["127.0.0.1"]
    assert "sni_hostname" not in inner.sent[0].extensions


def test_a_literal_address_is_checked_without_resolution() -> None:
    def no_lookup(host: str, port: int) -> list[IPAddress]:
        raise AssertionError("no DNS lookup for a literal address")

    inner = Inner()
    transport = PolicyTransport(inner, DEFAULT, no_lookup)

    send(transport, "http://127.0.0.1:9000/x")
    with pytest.raises(HostNotAllowed):
        send(transport, "http://169.254.169.254/x")
    assert len(inner.sent) == 1


def test_a_name_that_does_not_resolve_cannot_connect() -> None:
    def unknown(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    transport = PolicyTransport(Inner(), DEFAULT, unknown)

    with pytest.raises(httpx.ConnectError):
        send(transport, "http://nowhere.invalid/")


# --- wired: the registry's connectors, the connector itself ------------------------------------


def interface(url: str) -> LmsInterface:
    return LmsInterface(account_id="a", connector="scim", base_url=url, auth_type="bearer")


def test_connectors_refuse_a_denied_url_before_building() -> None:
    factory = Connectors(DEFAULT)

    with pytest.raises(HostNotAllowed):
        factory(interface("http://169.254.169.254/scim"), "s3cret", True)
    assert host_policy_of(factory) is DEFAULT


def test_connectors_check_each_request_after_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "lms.attacker.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    connector = Connectors(DEFAULT)(interface("http://lms.attacker.example/scim"), "s3cret", True)
    try:
        report = connector.test()
    finally:
        connector.close()

    assert [f.message for f in report.findings] == [f"ServiceProviderConfig: {NOT_ALLOWED}"]


def test_any_other_factory_is_checked_with_the_environment_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LMSYNC_LMS_DENIED_HOSTS", "lms.blocked.example")

    policy = host_policy_of(lambda interface, secret, dry_run: None)  # type: ignore[arg-type,return-value]

    assert policy.refuses_url("https://lms.blocked.example/")


def test_redirects_are_not_followed() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/"})

    connector = ScimConnector(
        ScimSettings(base_url="https://lms.example.test/scim/v2", secret="s3cret"),
        transport=httpx.MockTransport(handler),
    )
    try:
        with pytest.raises(MisconfiguredError) as info:
            connector.get("u-1")
    finally:
        connector.close()

    assert len(seen) == 1
    assert "HTTP status 302" in info.value.message
    assert "redirect" in info.value.message
    assert "169.254" not in info.value.message
