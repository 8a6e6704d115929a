"""Run logs: the text lines an attempt writes, kept in PostgreSQL outside the event log.

Lines are numbered by one global sequence (`seq`), so a page or a stream resumes after
the last number it saw; they survive restarts and are deleted with their run.
"""

from __future__ import annotations

from collections.abc import Sequence
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
                f"CREATE INDEX IF NOT EXISTS {LOGS_TABLE}_run ON {LOGS_TABLE} (run_id, seq)"
            )

    def append(self, run_id: str, attempt: int, lines: Sequence[str]) -> None:
        if not lines:
            return
        with self.pool.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {LOGS_TABLE} (run_id, attempt, line) VALUES (%s, %s, %s)",
                [(run_id, attempt, line[:MAX_LINE]) for line in lines],
            )

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
