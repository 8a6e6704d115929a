"""Secrets that travel in request URLs stay out of the access log.

An invitation token is the path of `GET /org/invites/{token}` and of its `accept`, and an
email verification token is the `token` query parameter of `/auth/verify-email`: both
are bearer secrets (whoever holds one joins or verifies). The access log shows each
replaced by `[redacted]`; the filter sits on the logger, so every handler and format
(plain or JSON) gets the redacted line.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
# (what precedes the secret, the secret)
SECRETS_IN_URLS = re.compile(r"(/org/invites/)[^/?#\s\"]+|([?&]token=)[^&#\s\"]+")
ACCESS_LOGGER = "uvicorn.access"


def redact_url(url: str) -> str:
    """The URL (path and query) with every secret it carries replaced."""
    return SECRETS_IN_URLS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, url)


class RedactSecrets(logging.Filter):
    """Redacts secrets in a record's string arguments (the access log's request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def redact_access_log(logger_name: str = ACCESS_LOGGER) -> None:
    """Install the filter on the access logger (once; call after logging is configured)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())
