"""The one wiring point from an account's LMS interface configuration to a connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmsync.lms.base import Connector, MisconfiguredError
from lmsync.lms.scim import (
    DEFAULT_EXTENSION_ATTRIBUTES,
    DEFAULT_EXTENSION_URN,
    ScimConnector,
    ScimSettings,
)
from lmsync.storage.tables import LmsInterface

ConnectorFactory = Callable[[LmsInterface, "str | None", bool], Connector]

CONNECTORS: dict[str, str] = {"scim": "SCIM 2.0 (RFC 7643/7644)"}


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
    )


def build_connector(interface: LmsInterface, secret: str | None, dry_run: bool) -> Connector:
    """A connector for ``interface``; ``dry_run`` makes its transport refuse every write."""
    if not interface.base_url:
        raise MisconfiguredError("the LMS interface has no URL")
    if interface.connector == "scim":
        return ScimConnector(scim_settings(interface, secret), dry_run=dry_run)
    raise MisconfiguredError(f"unknown connector {interface.connector!r}")
