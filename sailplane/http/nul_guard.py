"""Refuse NUL characters anywhere in a request, before any handler sees it.

PostgreSQL text cannot hold U+0000. A NUL in a path, a query parameter or a JSON string
would otherwise fail a query (a 500) or, worse, be saved in an event that no view can
then store. The guard answers 400 `invalid_character` instead.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from sailplane.http.errors import error_body

# `\u0000` in JSON text, unless its backslash is itself escaped (`\\u0000` is plain text).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
MESSAGE = "The request contains a NUL character (U+0000), which no field accepts."


def has_nul(path: str, query_string: bytes, body: bytes) -> bool:
    return (
        "\x00" in path
        or b"\x00" in query_string
        or b"%00" in query_string
        or b"\x00" in body
        or _JSON_NUL.search(body) is not None
    )


class NulGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if has_nul(scope.get("path", ""), scope.get("query_string", b""), body):
            await _reject(send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _replay(messages: list[Any], then: Receive) -> Receive:
    """The messages already read, then the client's own (a disconnect, for streams)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive


async def _reject(send: Send) -> None:
    body = msgspec.json.encode(error_body(MESSAGE, "invalid_character"))
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
