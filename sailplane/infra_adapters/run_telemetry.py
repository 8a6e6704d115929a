"""Run telemetry: what the work of a run reports through `sailplane.runtime`, kept in
PostgreSQL outside the event log (like run logs and metrics), and deleted with its run.

- `sailplane_run_telemetry`: one row per item, numbered by one global sequence (`seq`), of
  a `kind`: `event`, `usage`, `tool_call`, `output`, `checkpoint`, `chunk`. A reader (a
  page, the chunk stream) resumes after the last number it saw.
- `sailplane_run_state`: the run's key/value state, one row per key (upserted).
- `sailplane_run_liveness`: one row per attempt, the work's last heartbeat (crash
  detection reads it; `heartbeat_at` on the run object shows it).
- `sailplane_run_batches`: one row per write the work sent with an id (a batch, a
  checkpoint) and the sequence numbers of its items, stored with them: the same write sent
  again (its answer was lost) stores nothing and gets the first one's numbers.

None of it is an event: every projection reads every event and a rebuild replays them, so
high-volume rows (chunks, usage, heartbeats) stay here. What changes a run's state (its
result, pause, spawn, the debug flag) is an event (`domain/runs.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from sailplane.storage import Database

TELEMETRY_TABLE = "sailplane_run_telemetry"
STATE_TABLE = "sailplane_run_state"
LIVENESS_TABLE = "sailplane_run_liveness"
BATCHES_TABLE = "sailplane_run_batches"
KINDS = ("event", "usage", "tool_call", "output", "checkpoint", "chunk")


class RunTelemetry:
    def __init__(self, database: Database, *, pool: ConnectionPool | None = None) -> None:
        self.pool = pool or database.pool(name="run-telemetry", min_size=1, max_size=4)

    def create_table(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TELEMETRY_TABLE} ("
                "seq bigserial PRIMARY KEY, run_id text NOT NULL, attempt integer NOT NULL, "
                "kind text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), "
                "body jsonb NOT NULL)"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {TELEMETRY_TABLE}_run "
                f"ON {TELEMETRY_TABLE} (run_id, kind, seq)"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} ("
                "run_id text NOT NULL, key text NOT NULL, value jsonb NOT NULL, "
                "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, key))"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LIVENESS_TABLE} ("
                "run_id text NOT NULL, attempt integer NOT NULL, "
                "heartbeat_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, attempt))"
            )
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {BATCHES_TABLE} ("
                "run_id text NOT NULL, batch_id text NOT NULL, attempt integer NOT NULL, "
                "seqs bigint[] NOT NULL DEFAULT '{}', PRIMARY KEY (run_id, batch_id))"
            )

    # --- writes -------------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        attempt: int,
        items: Sequence[tuple[str, Any]],
        state: Mapping[str, Any] | None = None,
        *,
        batch_id: str | None = None,
    ) -> list[int]:
        """Store items (kind, body) in order and upsert `state`, in one transaction; the
        items' sequence numbers. Also counts as a heartbeat of the attempt. With a
        `batch_id` the run has stored already, nothing is stored again: the numbers are
        the first time's (a repeat racing the first waits for it on the batch's key)."""
        with self.pool.connection() as conn, conn.transaction():
            if batch_id is not None and not self._claim(conn, run_id, batch_id, attempt):
                seqs = self._stored(conn, run_id, batch_id) or []
            else:
                seqs = self._insert(conn, run_id, attempt, items, state)
                if batch_id is not None and seqs:
                    conn.execute(
                        f"UPDATE {BATCHES_TABLE} SET seqs = %s WHERE run_id = %s AND batch_id = %s",
                        (seqs, run_id, batch_id),
                    )
            # No NOTIFY: a commit that notifies takes a lock every notifying commit of the
            # database shares; the chunk stream polls its run's rows instead.
            self._beat(conn, run_id, attempt)
        return seqs

    @staticmethod
    def _insert(
        conn: Any,
        run_id: str,
        attempt: int,
        items: Sequence[tuple[str, Any]],
        state: Mapping[str, Any] | None,
    ) -> list[int]:
        seqs: list[int] = []
        if items:
            rows = conn.execute(
                f"INSERT INTO {TELEMETRY_TABLE} (run_id, attempt, kind, body) "
                "SELECT %s, %s, k, b FROM unnest(%s::text[], %s::jsonb[]) "
                "WITH ORDINALITY AS u(k, b, n) ORDER BY n RETURNING seq",
                (run_id, attempt, [k for k, _ in items], [Jsonb(b) for _, b in items]),
            ).fetchall()
            seqs = sorted(r["seq"] for r in rows)
        for key, value in (state or {}).items():
            conn.execute(
                f"INSERT INTO {STATE_TABLE} (run_id, key, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, "
                "updated_at = now()",
                (run_id, key, Jsonb(value)),
            )
        return seqs

    @staticmethod
    def _claim(conn: Any, run_id: str, batch_id: str, attempt: int) -> bool:
        """Record the batch; False when the run has stored it already."""
        return (
            conn.execute(
                f"INSERT INTO {BATCHES_TABLE} (run_id, batch_id, attempt) VALUES (%s, %s, %s) "
                "ON CONFLICT (run_id, batch_id) DO NOTHING RETURNING 1",
                (run_id, batch_id, attempt),
            ).fetchone()
            is not None
        )

    def stored(self, run_id: str, attempt: int, batch_id: str) -> list[int] | None:
        """The sequence numbers of the items of a batch the attempt sent, once stored."""
        with self.pool.connection() as conn:
            return self._stored(conn, run_id, batch_id, attempt)

    @staticmethod
    def _stored(
        conn: Any, run_id: str, batch_id: str, attempt: int | None = None
    ) -> list[int] | None:
        row = conn.execute(
            f"SELECT seqs FROM {BATCHES_TABLE} WHERE run_id = %s AND batch_id = %s "
            "AND (%s::integer IS NULL OR attempt = %s::integer)",
            (run_id, batch_id, attempt, attempt),
        ).fetchone()
        return None if row is None else list(row["seqs"])

    def heartbeat(self, run_id: str, attempt: int) -> None:
        with self.pool.connection() as conn:
            self._beat(conn, run_id, attempt)

    @staticmethod
    def _beat(conn: Any, run_id: str, attempt: int) -> None:
        conn.execute(
            f"INSERT INTO {LIVENESS_TABLE} (run_id, attempt) VALUES (%s, %s) "
            "ON CONFLICT (run_id, attempt) DO UPDATE SET heartbeat_at = now()",
            (run_id, attempt),
        )

    def delete(self, run_id: str) -> None:
        with self.pool.connection() as conn, conn.transaction():
            for table in (TELEMETRY_TABLE, STATE_TABLE, LIVENESS_TABLE, BATCHES_TABLE):
                conn.execute(f"DELETE FROM {table} WHERE run_id = %s", (run_id,))

    # --- reads --------------------------------------------------------------------------

    def rows(
        self, run_id: str, kind: str, *, after: int = 0, limit: int = 10_000
    ) -> list[dict[str, Any]]:
        """The run's items of `kind` in order: seq, attempt, at, body, and `sequence` (1, 2,
        ... over all of the run's items of that kind)."""
        with self.pool.connection() as conn:
            return conn.execute(
                "SELECT * FROM (SELECT seq, attempt, at, body, "
                "row_number() OVER (ORDER BY seq) AS sequence "
                f"FROM {TELEMETRY_TABLE} WHERE run_id = %s AND kind = %s) items "
                "WHERE seq > %s ORDER BY seq LIMIT %s",
                (run_id, kind, after, limit),
            ).fetchall()

    def last(self, run_id: str, kind: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return conn.execute(
                f"SELECT seq, attempt, at, body FROM {TELEMETRY_TABLE} "
                "WHERE run_id = %s AND kind = %s ORDER BY seq DESC LIMIT 1",
                (run_id, kind),
            ).fetchone()

    def state(self, run_id: str, key: str | None = None) -> list[dict[str, Any]]:
        """The run's state entries (or the one of `key`), by key: key, value, updated_at."""
        with self.pool.connection() as conn:
            return conn.execute(
                f"SELECT key, value, updated_at FROM {STATE_TABLE} WHERE run_id = %s "
                "AND (%s::text IS NULL OR key = %s::text) ORDER BY key",
                (run_id, key, key),
            ).fetchall()

    def heartbeats(self, run_ids: Sequence[str]) -> dict[str, datetime]:
        """The last heartbeat of each run's newest attempt that sent one."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT ON (run_id) run_id, heartbeat_at FROM {LIVENESS_TABLE} "
                "WHERE run_id = ANY(%s) ORDER BY run_id, attempt DESC",
                (list(run_ids),),
            ).fetchall()
        return {r["run_id"]: r["heartbeat_at"] for r in rows}

    def silent_for(self, run_id: str, attempt: int) -> float | None:
        """Seconds since the attempt's last heartbeat; None when it never sent one (work that
        does not use the runtime is not watched this way)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM now() - heartbeat_at)::float8 AS silent "
                f"FROM {LIVENESS_TABLE} WHERE run_id = %s AND attempt = %s",
                (run_id, attempt),
            ).fetchone()
        return None if row is None else float(row["silent"])

    def usage_totals(self, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per run: the sums of its usage rows (runs without any are left out)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT run_id, sum((body->>'prompt_tokens')::bigint) AS prompt_tokens, "
                "sum((body->>'completion_tokens')::bigint) AS completion_tokens, "
                "sum(coalesce((body->>'cost_microusd')::bigint, 0)) AS cost_microusd "
                f"FROM {TELEMETRY_TABLE} WHERE run_id = ANY(%s) AND kind = 'usage' "
                "GROUP BY run_id",
                (list(run_ids),),
            ).fetchall()
        return {
            r["run_id"]: {
                "prompt_tokens": int(r["prompt_tokens"] or 0),
                "completion_tokens": int(r["completion_tokens"] or 0),
                "total_tokens": int(r["prompt_tokens"] or 0) + int(r["completion_tokens"] or 0),
                "cost_microusd": int(r["cost_microusd"] or 0),
            }
            for r in rows
        }
