"""`Idempotency-Key` on every mutating request.

The first request with a key runs and its completion is recorded (an event on the key's
aggregate: status and resource id; the response itself is kept sealed outside the log);
the same key with the same method, path, query and body within 24 hours gets that
response again, with `Idempotent-Replayed: true`, and changes nothing. The same key
with a different request is 422; a key whose first request is still running is 409. A
request that failed on the server side (5xx) releases its key, so it can be retried. A
claim left by a server that stopped is taken again after its lease only if its request
saved no change; otherwise the retry is 409 `idempotency_response_lost` (see
`sailplane.domain.requests`): a retried POST never runs its command twice.
Keys are scoped to the caller: two callers never see each other's responses.
"""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from sailplane.commands.base import RequestFence, current_request
from sailplane.commands.requests import Requests
from sailplane.domain.requests import ClaimOutcome
from sailplane.http.auth import Principal
from sailplane.http.errors import error_body

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, requests: Requests) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        key = _header(scope, HEADER)
        principal = scope.get("user")
        if key is None or not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            await _send_json(
                send,
                400,
                error_body(
                    f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
                    "invalid_idempotency_key",
                ),
            )
            return

        body = await _read_body(receive)
        fingerprint = hashlib.sha256(
            b"\x1f".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode(),
                    scope.get("query_string", b""),
                    body,
                ]
            )
        ).hexdigest()
        requests = self.requests
        claim = await anyio.to_thread.run_sync(
            lambda: requests.claim(key, fingerprint, by=principal.actor)
        )

        if claim.outcome is ClaimOutcome.REPLAY:
            await _send_raw(
                send, claim.status_code, claim.content_type, claim.body.encode(), replayed=True
            )
            return
        if claim.outcome is ClaimOutcome.REPLAY_UNAVAILABLE:
            await _send_json(
                send,
                409,
                error_body(
                    f"The request with this Idempotency-Key completed with status "
                    f"{claim.status_code}, but its response can no longer be replayed; "
                    "read the resource instead.",
                    "idempotency_replay_unavailable",
                ),
            )
            return
        if claim.outcome is ClaimOutcome.MISMATCH:
            await _send_json(
                send,
                422,
                error_body(
                    "This Idempotency-Key was already used with a different request.",
                    "idempotency_key_reused",
                ),
            )
            return
        if claim.outcome is ClaimOutcome.RESPONSE_LOST:
            await _send_json(
                send,
                409,
                error_body(
                    "The request with this Idempotency-Key saved its change, but the server "
                    "stopped before answering it; read the resource instead.",
                    "idempotency_response_lost",
                ),
            )
            return
        if claim.outcome is ClaimOutcome.IN_PROGRESS:
            await _send_json(
                send,
                409,
                error_body(
                    "A request with this Idempotency-Key is still being processed.",
                    "idempotency_key_in_progress",
                ),
            )
            return

        # The response is held back until its record is saved, so a client that retries
        # the moment it has an answer always finds the key completed.
        held: list[Message] = []

        async def replay_receive() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def holding_send(message: Message) -> None:
            held.append(message)

        assert claim.request is not None
        fence = current_request.set(RequestFence(claim.request, principal.actor))
        try:
            await self.app(scope, replay_receive, holding_send)
        except BaseException:
            await anyio.to_thread.run_sync(
                lambda: requests.abandon(claim.request_id, by=principal.actor)
            )
            raise
        finally:
            current_request.reset(fence)
        start = next((m for m in held if m["type"] == "http.response.start"), None)
        status = start["status"] if start else 500
        if status >= 500:
            await anyio.to_thread.run_sync(
                lambda: requests.abandon(claim.request_id, by=principal.actor)
            )
        else:
            text = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            content_type = (
                _header_value(start.get("headers", []), b"content-type") or "" if start else ""
            )
            await anyio.to_thread.run_sync(
                lambda: requests.complete(
                    claim.request_id,
                    status_code=status,
                    content_type=content_type,
                    body=text.decode("utf-8", errors="replace"),
                    by=principal.actor,
                )
            )
        for message in held:
            await send(message)


def _header(scope: Scope, name: bytes) -> str | None:
    return _header_value(scope.get("headers", []), name)


def _header_value(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await _send_raw(send, status, "application/json", msgspec.json.encode(payload))


async def _send_raw(
    send: Send, status: int, content_type: str, body: bytes, *, replayed: bool = False
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
