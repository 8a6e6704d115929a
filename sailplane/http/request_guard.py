"""The request checks every endpoint shares, made before any handler reads the body.

The guard runs after authentication (an unauthenticated request is answered 401 without
its body ever being read) and before anything else reads the body:

- a NUL character (U+0000) in the path, the query or the body is 400 `invalid_character`:
  PostgreSQL text cannot hold it, so it would fail a query or be saved in an event no view
  can store;
- a body larger than `MAX_BODY_BYTES` is 413 `request_too_large`: refused from its
  `Content-Length` before reading anything, or as soon as a body without one grows past
  the limit; an unparsable `Content-Length` is 400;
- a body whose `Content-Type` is not JSON (`application/json` or `*/*+json`) is 415
  `unsupported_media_type` (a body without a `Content-Type` is read as JSON);
- a JSON body nested deeper than `MAX_JSON_DEPTH` arrays and objects is 400 `too_deep`:
  no event may hold a value that its readers cannot decode again.

Only then is the body, now known to be bounded, handed to the application.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate
from typing import Any

import anyio
import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from sailplane.http.errors import error_body

MAX_BODY_BYTES = 10_000_000
MAX_JSON_DEPTH = 400
INLINE_CHECK_BYTES = 65536

# `\u0000` in JSON text, unless its backslash is itself escaped (`\\u0000` is plain text).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
_STEP = bytes.maketrans(b"[{]}", bytes([1, 1, 255, 255]))  # as signed bytes: +1, +1, -1, -1
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
NUL_MESSAGE = "The request contains a NUL character (U+0000), which no field accepts."


def has_nul(path: str, query_string: bytes, body: bytes) -> bool:
    return (
        "\x00" in path
        or b"\x00" in query_string
        or b"%00" in query_string
        or b"\x00" in body
        or ((b"\\u0000" in body or b"\\U0000" in body) and _JSON_NUL.search(body) is not None)
    )


def json_depth_exceeds(text: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON `text` opens more than `limit` arrays and objects at any point (an
    unclosed one counts: a parser would descend into it)."""
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    steps = array("b")  # +1 for an opening bracket, -1 for a closing one
    steps.frombytes(_outside_strings(text).translate(_STEP, _NOT_BRACKETS))
    depth = 0
    for start in range(0, len(steps), 65536):  # a chunk at a time: deep input stops early
        chunk = steps[start : start + 65536]
        if max(accumulate(chunk, initial=depth)) > limit:
            return True
        depth += sum(chunk)
    return False


def _outside_strings(text: bytes) -> bytes:
    """JSON `text` without its strings: escape pairs go first (so every quote left
    delimits a string), then every other quote-delimited part."""
    unescaped = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def is_json_media_type(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_head(scope)
            messages = await _read_body(receive)
            body = b"".join(m.get("body", b"") for m in messages)
            if len(body) > INLINE_CHECK_BYTES:  # a large body is checked off the event loop
                await anyio.to_thread.run_sync(_check_body, body)
            else:
                _check_body(body)
        except _Refused as refused:
            await _send_error(send, refused)
            return
        if messages and messages[-1]["type"] == "http.request":
            messages = [{"type": "http.request", "body": body, "more_body": False}]
        await self.app(scope, _replay(messages, receive), send)


def _check_head(scope: Scope) -> None:
    if has_nul(scope.get("path", ""), scope.get("query_string", b""), b""):
        raise _Refused(400, NUL_MESSAGE, "invalid_character")
    headers = _headers(scope)
    announced = headers.get(b"content-length")
    length = None
    if announced is not None:
        if not announced.strip().isdigit():
            raise _Refused(400, "Content-Length is not a number of bytes.", "invalid_request")
        length = int(announced)
        _check_size(length)
    has_body = b"transfer-encoding" in headers or bool(length)
    content_type = headers.get(b"content-type", b"").decode("latin-1")
    if has_body and content_type and not is_json_media_type(content_type):
        raise _Refused(
            415,
            f"Request bodies are JSON (application/json), not {content_type!r}.",
            "unsupported_media_type",
        )


def _check_size(size: int) -> None:
    if size > MAX_BODY_BYTES:
        raise _Refused(
            413,
            f"The request body is larger than {MAX_BODY_BYTES} bytes.",
            "request_too_large",
        )


async def _read_body(receive: Receive) -> list[Message]:
    """The body's messages, read only while their total stays within the limit."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":  # the client went away
            return messages
        size += len(message.get("body", b""))
        _check_size(size)
        if not message.get("more_body", False):
            return messages


def _check_body(body: bytes) -> None:
    if has_nul("", b"", body):
        raise _Refused(400, NUL_MESSAGE, "invalid_character")
    if json_depth_exceeds(body):
        raise _Refused(
            400,
            f"The JSON body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep.",
            "too_deep",
        )


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _replay(messages: list[Any], then: Receive) -> Receive:
    """The messages already read, then the client's own (a disconnect, for streams)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive


async def _send_error(send: Send, refused: _Refused) -> None:
    body = msgspec.json.encode(error_body(refused.message, refused.code))
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
