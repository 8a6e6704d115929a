"""The HTTP server `sailplane serve` runs: uvicorn, with a shutdown that always ends.

After a termination signal (or a failed worker) the server stops accepting requests and
gives the ones in flight `grace` seconds. Past that uvicorn cuts them off, but a request
thread still waiting in an append to the event log (behind the log's lock, say) would keep
the process alive, so the appends still in flight are cancelled then: they answer 503.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn


class Server(uvicorn.Server):
    def __init__(self, app: Any, *, host: str, port: int, grace: float, cancel: Callable[[], None]):
        super().__init__(
            # Logging stays Sailplane's (one format, request ids); the app logs each request.
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=grace,
            )
        )
        self._cancel = threading.Timer(grace, cancel)
        self._cancel.daemon = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._cancel.start()
        try:
            await super().shutdown(sockets)
        finally:
            self._cancel.cancel()
