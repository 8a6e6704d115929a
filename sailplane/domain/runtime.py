"""The run runtime's pure rules: run tokens, item size limits, usage totals.

A *run token* lets the work of one attempt talk back to Sailplane (`/v1/runtime/...`).
It is stateless: `spr_` + base64url(JSON `{o, r, a}`: organization, run, attempt) + `.`
+ base64url(HMAC-SHA256 of that part under a server-side key). Nothing secret is stored
anywhere: the key is derived from the secrets key the server already has, and whether the
token still acts is decided at each request from the run's state (its attempt must be the
run's current one, dispatched or executing). docs/runs-v1.md has the rules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

RUN_TOKEN_PREFIX = "spr_"
DEFAULT_MAX_ITEM_BYTES = 1 << 20  # one telemetry item (a chunk, an output, a checkpoint...)
MAX_RESULT_BYTES = 64 << 10  # a result is an event: kept small, the log is read by every view


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class RunTokenClaims:
    organization_id: str
    run_id: str
    attempt: int


class RunTokens:
    """Mints and checks run tokens under `keys` (the first signs; every one verifies, so a
    rotated secrets key keeps the tokens of executing attempts valid)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("run tokens need at least one key")
        self.keys = list(keys)

    def mint(self, organization_id: str, run_id: str, attempt: int) -> str:
        body = _b64(
            json.dumps(
                {"o": organization_id, "r": run_id, "a": attempt}, separators=(",", ":")
            ).encode()
        )
        return f"{RUN_TOKEN_PREFIX}{body}.{_b64(self._mac(self.keys[0], body))}"

    def verify(self, token: str) -> RunTokenClaims | None:
        """The claims of a token signed by one of the keys, else None."""
        if not token.startswith(RUN_TOKEN_PREFIX) or len(token) > 2048:
            return None
        body, _, signature = token[len(RUN_TOKEN_PREFIX) :].partition(".")
        # The signature's text is compared, not its decoding: base64 has several spellings
        # of the same bytes (the unused bits of the last character), only one is ours.
        if not any(hmac.compare_digest(signature, _b64(self._mac(k, body))) for k in self.keys):
            return None
        try:
            claims = json.loads(_unb64(body))
            return RunTokenClaims(str(claims["o"]), str(claims["r"]), int(claims["a"]))
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _mac(key: bytes, body: str) -> bytes:
        return hmac.new(key, body.encode(), hashlib.sha256).digest()


def is_run_token(token: str) -> bool:
    return token.startswith(RUN_TOKEN_PREFIX)


def encoded_size(value: Any) -> int:
    """The bytes `value` takes as compact JSON (what a telemetry row stores)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def oversized(items: Iterable[tuple[str, Any]], limit: int) -> tuple[str, int] | None:
    """The first (kind, size) of `items` whose body is over `limit` bytes, else None."""
    for kind, body in items:
        size = encoded_size(body)
        if size > limit:
            return kind, size
    return None


@dataclass
class RuntimeSettings:
    """How the run runtime behaves here (server settings; docs/runs-v1.md).

    `api_url`: where the work reaches this server (`SAILPLANE_API_URL`); set once the
    server knows its address. `heartbeat_seconds`: how often `sailplane.runtime` heartbeats;
    an executing attempt that heartbeated once and is then silent for `crash_after_seconds`
    ends `crashed` (and is retried like any failure)."""

    api_url: str | None = None
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES
    heartbeat_seconds: float = 10.0
    crash_after_seconds: float = 60.0
