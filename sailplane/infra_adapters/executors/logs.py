"""Run logs: the text lines an attempt writes, kept in PostgreSQL outside the event log.

Lines are numbered by one global sequence (`seq`), so a page or a stream resumes after
the last number it saw; they survive restarts and are deleted with their run. Each line
keeps when the work wrote it (`at`, as its executor saw it) and its stream (`stdout` or
`stderr`), so a time window of one run or of all a job's runs can be read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from sailplane.storage import Database

LOGS_TABLE = "sailplane_run_logs"
MAX_LINE = 16_384


class RunLogs:
    def __init__(self, database: Database, *, pool: ConnectionPool | None = None) -> None:
        self.pool = pool or database.pool(name="run-logs", min_size=1, max_size=4)

    def create_table(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LOGS_TABLE} ("
                "seq bigserial PRIMARY KEY, run_id text NOT NULL, attempt integer NOT NULL, "
                "at timestamptz NOT NULL DEFAULT now(), line text NOT NULL)"
            )
            conn.execute(
                f"ALTER TABLE {LOGS_TABLE} ADD COLUMN IF NOT EXISTS "
                "stream text NOT NULL DEFAULT 'stdout'"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {LOGS_TABLE}_run ON {LOGS_TABLE} (run_id, seq)"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {LOGS_TABLE}_run_at ON {LOGS_TABLE} (run_id, at)"
            )

    def append(
        self,
        run_id: str,
        attempt: int,
        lines: Sequence[str],
        *,
        stream: str = "stdout",
        times: Sequence[datetime | None] | None = None,
    ) -> None:
        """Store lines of one stream; `times` (one per line) says when each was written,
        else it is now."""
        if not lines:
            return
        written = list(times) if times is not None else [None] * len(lines)
        with self.pool.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {LOGS_TABLE} (run_id, attempt, stream, at, line) "
                "VALUES (%s, %s, %s, coalesce(%s, now()), %s)",
                [
                    (run_id, attempt, stream, at, line[:MAX_LINE])
                    for line, at in zip(lines, written, strict=True)
                ],
            )

    def window(
        self,
        run_ids: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        limit: int,
        contains: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest `limit` lines of these runs written in [start, end) (holding
        `contains`, when given), oldest first."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM ("
                f"  SELECT seq, run_id, attempt, stream, at, line FROM {LOGS_TABLE} "
                "  WHERE run_id = ANY(%s) AND at >= %s AND at < %s "
                "  AND (%s::text IS NULL OR strpos(line, %s::text) > 0) "
                "  ORDER BY at DESC, seq DESC LIMIT %s"
                ") newest ORDER BY at, seq",
                (list(run_ids), start, end, contains, contains, limit),
            ).fetchall()

    def page(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(
                f"SELECT seq, attempt, at, line FROM {LOGS_TABLE} WHERE run_id = %s AND seq > %s "
                "ORDER BY seq LIMIT %s",
                (run_id, after, limit),
            ).fetchall()

    def delete(self, run_id: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(f"DELETE FROM {LOGS_TABLE} WHERE run_id = %s", (run_id,))
