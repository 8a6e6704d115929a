"""Wake-ups and locks shared by the read side and the adapters, none of them a projection.

`Signal` is an in-process broadcast; `ChannelListener` turns PostgreSQL NOTIFY on named
channels into Signals (new events in the log, views that moved); `advisory_key` names a
pg_advisory lock by a string (a view's runner, a leader, an operation's worker).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable

import psycopg

from sailplane.storage import Database

log = logging.getLogger(__name__)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory locks named by a string."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Signal:
    """A broadcast: waiters wake when the generation moves past the one they saw."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self.generation = 0

    def fire(self) -> None:
        with self._condition:
            self.generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._condition:
            self._condition.wait_for(lambda: self.generation != seen, timeout=timeout)
            return self.generation


class ChannelListener:
    """LISTENs on PostgreSQL channels in a thread and fires a Signal per channel."""

    def __init__(self, database: Database, channels: Iterable[str]) -> None:
        self.database = database
        self.signals = {channel: Signal() for channel in channels}
        self.payload_handlers: dict[str, Callable[[str], None]] = {}
        # Called on every (re)connection: what was notified while not listening is lost.
        self.on_connect: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="pg-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self.database.connect(autocommit=True) as conn:
                    for channel in self.signals:
                        conn.execute(f'LISTEN "{channel}"')
                    for hook in self.on_connect:
                        hook()
                    for signal in self.signals.values():
                        signal.fire()  # anything may have happened while we were not listening
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=0.5, stop_after=1):
                            self.signals[notify.channel].fire()
                            handler = self.payload_handlers.get(notify.channel)
                            if handler is not None and notify.payload:
                                handler(notify.payload)
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    return
                log.warning("lost the LISTEN connection (%s); reconnecting", exc)
                time.sleep(0.5)
