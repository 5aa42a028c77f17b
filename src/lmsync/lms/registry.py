"""The one wiring point from an account's LMS interface configuration to a connector.

Connectors are built under the operator's host policy (``host_policy``): their transport checks
every request's host, and they follow no redirect.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import certifi
import httpx

from lmsync.i18n import _
from lmsync.lms.base import Connector, MisconfiguredError
from lmsync.lms.host_policy import HostPolicy, PolicyTransport
from lmsync.lms.moodle import MoodleConnector, MoodleSettings
from lmsync.lms.moodle_fields import DEFAULT_PROFILE_FIELDS, MoodleMapping, shape
from lmsync.lms.scim import (
    DEFAULT_EXTENSION_ATTRIBUTES,
    DEFAULT_EXTENSION_URN,
    ScimConnector,
    ScimSettings,
)
from lmsync.metrics import CountingTransport
from lmsync.settings import Settings
from lmsync.storage.tables import LmsInterface

ConnectorFactory = Callable[[LmsInterface, "str | None", bool], Connector]

CONNECTORS: dict[str, str] = {
    "scim": "SCIM 2.0 (RFC 7643/7644)",
    "moodle": "Moodle web services (REST)",
}
Shaper = Callable[[Mapping[str, Any]], dict[str, Any]]


def scim_settings(interface: LmsInterface, secret: str | None) -> ScimSettings:
    options: dict[str, Any] = interface.options or {}
    urn = options.get("extension_urn", DEFAULT_EXTENSION_URN)
    return ScimSettings(
        base_url=interface.base_url,
        auth_type=interface.auth_type,
        secret=secret,
        auth_header=interface.auth_header,
        username=interface.username,
        user_name_field=options.get("user_name_field", "email"),
        extension_urn=urn or None,
        extension_attributes={
            **DEFAULT_EXTENSION_ATTRIBUTES,
            **(options.get("extension_attributes") or {}),
        },
        use_patch=bool(options.get("use_patch", True)),
        use_bulk=bool(options.get("use_bulk", True)),
        portal_id=(interface.portal_id or "").strip() or None,
        portal_id_in=options.get("portal_id_in") or "header",
        portal_id_header=options.get("portal_id_header") or ScimSettings.portal_id_header,
    )


def moodle_mapping(options: Mapping[str, Any]) -> MoodleMapping:
    profile = {**DEFAULT_PROFILE_FIELDS, **(options.get("profile_fields") or {})}
    return MoodleMapping(
        languages=tuple(options.get("languages") or ("en",)),
        job_title_field=options.get("job_title_field") or None,
        profile_fields=profile,
    )


def moodle_settings(interface: LmsInterface, secret: str | None) -> MoodleSettings:
    options: dict[str, Any] = interface.options or {}
    return MoodleSettings(
        base_url=interface.base_url,
        token=secret,
        mapping=moodle_mapping(options),
        auth_method=options.get("auth_method") or "manual",
        create_password=bool(options.get("create_password", True)),
        batch_size=int(options.get("batch_size") or MoodleSettings.batch_size),
        max_input_vars=int(options.get("max_input_vars") or MoodleSettings.max_input_vars),
        extended_username_chars=bool(options.get("extended_username_chars", False)),
    )


def shaper(interface: LmsInterface | None) -> Shaper | None:
    """The desired fields as the interface's LMS can hold them (see ``moodle_fields.shape``);
    None when it holds them all as they are."""
    if interface is None or interface.connector != "moodle":
        return None
    mapping = moodle_mapping(interface.options or {})
    return lambda desired: shape(mapping, desired)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context of every connector (httpx's defaults: certifi's CA bundle). Loading the
    bundle costs about 35 ms of CPU, half of an hourly pass's: once per process, not once per
    run. An SSLContext is safe to share across threads."""
    return ssl.create_default_context(cafile=certifi.where())


class Connectors:
    """A ``ConnectorFactory`` whose connectors may only reach the hosts ``policy`` allows."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Connectors:
        return cls(HostPolicy.from_settings(settings))

    def __call__(self, interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
        """A connector for ``interface``; ``dry_run`` makes its transport refuse every write."""
        if not interface.base_url:
            raise MisconfiguredError(_("the LMS interface has no URL"))
        self.policy.check_url(interface.base_url)
        if interface.connector not in CONNECTORS:
            raise MisconfiguredError(f"unknown connector {interface.connector!r}")
        transport = CountingTransport(
            PolicyTransport(httpx.HTTPTransport(retries=0, verify=tls_context()), self.policy),
            interface.connector,
        )
        if interface.connector == "scim":
            return ScimConnector(
                scim_settings(interface, secret), dry_run=dry_run, transport=transport
            )
        if interface.connector == "moodle":
            return MoodleConnector(
                moodle_settings(interface, secret), dry_run=dry_run, transport=transport
            )
        raise MisconfiguredError(f"unknown connector {interface.connector!r}")


def build_connector(interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
    """A connector under the host policy of the environment's settings (``LMSYNC_*``); the app
    builds its ``Connectors`` from the settings it was given instead."""
    return Connectors.from_settings(Settings())(interface, secret, dry_run)


def host_policy_of(factory: ConnectorFactory) -> HostPolicy:
    """The host policy ``factory`` enforces; the environment's for any other factory (e.g. the
    fakes of the tests), so that saving an interface is checked all the same."""
    if isinstance(factory, Connectors):
        return factory.policy
    return HostPolicy.from_settings(Settings())
