"""Email over SMTP (the standard library's smtplib): verification links and invitations."""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

from sailplane.commands.ports import EmailOutcome

log = logging.getLogger(__name__)


class Mailer(Protocol):
    def send(self, to: str, subject: str, body: str) -> bool: ...


# What became of an email the server meant to send; recorded and shown (invitations,
# email verification) instead of dropped silently.
EMAIL_SENT = "sent"
EMAIL_FAILED = "failed"
EMAIL_NOT_CONFIGURED = "not_configured"
NOT_CONFIGURED = "email is not configured on this server (SAILPLANE_SMTP_HOST)"


class Email:
    """The mail port (`commands.ports.Mail`): sends through the SMTP server when one is
    configured, and says what happened either way."""

    def __init__(self, mailer: Mailer | None) -> None:
        self.mailer = mailer  # None: email is not configured (tests point it elsewhere)

    def send(self, to: str, subject: str, body: str) -> EmailOutcome:
        if self.mailer is None:
            return EmailOutcome(EMAIL_NOT_CONFIGURED, NOT_CONFIGURED)
        if not self.mailer.send(to, subject, body):
            return EmailOutcome(
                EMAIL_FAILED,
                f"the SMTP server did not accept the message to {to} (see the server log)",
            )
        return EmailOutcome(EMAIL_SENT)


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int = 25
    sender: str = "sailplane@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0

    def send(self, to: str, subject: str, body: str) -> bool:
        """Deliver one plain-text message; False (and a log line) when the server refuses it."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(
                "could not send email to %s through %s:%s: %s", to, self.host, self.port, exc
            )
            return False
        return True
