"""The responses an `Idempotency-Key` replays: sealed, outside the event log, gone after a day.

A recorded response can hold a secret shown only once (a TOTP secret, recovery codes, an
invitation token, a reset's temporary password, a session token), and the event log is
append-only, paged by `/api/v1/events` and published to Kafka, so the log records only
that the request completed (status, resource id) and the body lives here.

Each body is sealed with the key of the day it was recorded (a Fernet key of its own,
itself sealed with the server's secret box in `sailplane_replay_keys`). A body expires 24
hours after it was recorded and is deleted at the next recording after that; a day's key
is dropped once every body it sealed has expired. A copy of a body made before its
deletion (a backup, a replica, a dump) then cannot be opened by anyone: the key that
sealed it no longer exists.
"""

from __future__ import annotations

import threading
from datetime import date, datetime

from cryptography.fernet import Fernet
from psycopg_pool import ConnectionPool

from sailplane.commands.workloads import SecretBox
from sailplane.domain.errors import ConflictError
from sailplane.domain.requests import REPLAY_WINDOW
from sailplane.infra_adapters.secret_box import FernetSecretBox

BODIES_TABLE = "sailplane_replay_bodies"
KEYS_TABLE = "sailplane_replay_keys"


class SealedReplayBodies:
    def __init__(self, pool: ConnectionPool, secret_box: SecretBox) -> None:
        self.pool = pool
        self.secret_box = secret_box
        self._boxes: dict[date, FernetSecretBox] = {}
        self._lock = threading.Lock()

    def create_table(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (day date PRIMARY KEY, key text NOT NULL)"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {BODIES_TABLE} ("
                "request_id text PRIMARY KEY, day date NOT NULL, "
                "expires_at timestamptz NOT NULL, content_type text NOT NULL, body text NOT NULL)"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {BODIES_TABLE}_expiry ON {BODIES_TABLE} (expires_at)"
            )

    def keep(self, request_id: str, content_type: str, body: str, *, at: datetime) -> None:
        """Seal and keep `body` as the replay of `request_id` for 24 hours from `at`."""
        day = at.date()
        sealed = self._box(day, create=True).seal(body)
        with self.pool.connection() as conn:
            conn.execute(
                f"INSERT INTO {BODIES_TABLE} VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (request_id) DO UPDATE SET day = EXCLUDED.day, "
                "expires_at = EXCLUDED.expires_at, content_type = EXCLUDED.content_type, "
                "body = EXCLUDED.body",
                (request_id, day, at + REPLAY_WINDOW, content_type, sealed),
            )
        self.expire(at)

    def find(self, request_id: str, *, at: datetime) -> tuple[str, str] | None:
        """(content type, body) of `request_id`'s replay; None once expired or unreadable."""
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT day, content_type, body FROM {BODIES_TABLE} "
                "WHERE request_id = %s AND expires_at > %s",
                (request_id, at),
            ).fetchone()
        if row is None:
            return None
        try:
            box = self._box(row["day"], create=False)
            return None if box is None else (row["content_type"], box.open(row["body"]))
        except ConflictError:  # sealed with a key this server does not have
            return None

    def expire(self, at: datetime) -> None:
        """Delete expired bodies, then drop the keys of days whose bodies have all expired."""
        with self.pool.connection() as conn:
            conn.execute(f"DELETE FROM {BODIES_TABLE} WHERE expires_at <= %s", (at,))
            conn.execute(
                f"DELETE FROM {KEYS_TABLE} k WHERE day < %s AND NOT EXISTS "
                f"(SELECT 1 FROM {BODIES_TABLE} b WHERE b.day = k.day)",
                ((at - REPLAY_WINDOW).date(),),
            )
        with self._lock:
            for day in [d for d in self._boxes if d < (at - REPLAY_WINDOW).date()]:
                del self._boxes[day]

    def _box(self, day: date, *, create: bool) -> FernetSecretBox | None:
        with self._lock:
            if day in self._boxes:
                return self._boxes[day]
        with self.pool.connection() as conn:
            if create:
                conn.execute(
                    f"INSERT INTO {KEYS_TABLE} VALUES (%s, %s) ON CONFLICT (day) DO NOTHING",
                    (day, self.secret_box.seal(Fernet.generate_key().decode())),
                )
            row = conn.execute(f"SELECT key FROM {KEYS_TABLE} WHERE day = %s", (day,)).fetchone()
        if row is None:
            return None
        box = FernetSecretBox.from_setting(self.secret_box.open(row["key"]))
        with self._lock:
            self._boxes[day] = box
        return box
