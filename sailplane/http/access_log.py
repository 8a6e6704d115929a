"""Secrets that travel in request URLs stay out of the access log.

An invitation token is the path of `GET /org/invites/{token}` and of its `accept`, and an
email verification token is the `token` query parameter of `/auth/verify-email`: both
are bearer secrets (whoever holds one joins or verifies). The request log
(logger `sailplane.http`, one line per request from `metrics.py`) shows each replaced by
`[redacted]`.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"
# (what precedes the secret, the secret)
SECRETS_IN_URLS = re.compile(r"(/org/invites/)[^/?#\s\"]+|([?&]token=)[^&#\s\"]+")


def redact_url(url: str) -> str:
    """The URL (path and query) with every secret it carries replaced."""
    return SECRETS_IN_URLS.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, url)
