"""Sending one email through the operator's SMTP server (stdlib ``smtplib``), from settings."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from lmsync.settings import Settings

SMTP_TIMEOUT = 20.0


@dataclass(frozen=True)
class Mailer:
    host: str
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password: str | None = None
    sender: str = "lmsync <lmsync@localhost>"

    @classmethod
    def from_settings(cls, settings: Settings) -> Mailer | None:
        """None when no SMTP host is configured (notifications off)."""
        if not settings.smtp_host:
            return None
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_security,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_from,
        )

    def send(
        self, to: Sequence[str], subject: str, body: str, *, language: str | None = None
    ) -> None:
        """One message to ``to``, written in ``language`` ("fr_CA", "en": its Content-Language,
        RFC 3282); raises ``OSError``/``smtplib.SMTPException`` on failure."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="lmsync")
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        message.set_content(body)
        if language:  # after set_content, which drops every Content-* header
            message["Content-Language"] = language.replace("_", "-")
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=SMTP_TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=SMTP_TIMEOUT)
        with client:
            if self.security == "starttls":
                client.starttls(context=context)
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(message)
