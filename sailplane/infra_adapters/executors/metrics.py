"""Run metrics: CPU and memory samples of executing attempts, outside the event log.

While an attempt executes, `RunSampler` asks its executor every `interval` seconds what the
attempt uses (`Executor.usage`: the local process tree through psutil, or a pod's
`metrics.k8s.io` usage) and stores one row per instance: cores in use and resident bytes.
Samples are operational data, like run logs: never events, deleted with their run.

`RunMetrics.series` answers the container-jobs metrics API: per time bucket of `step`
seconds, `cpu_usage` is the cores a run uses averaged over its instances and
`memory_usage` the bytes summed over them; a job's series adds up its runs that were
executing in the same bucket. A name it does not know is that entry's error, never the
request's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from sailplane.infra_adapters.executors import Usage
from sailplane.storage import Database

log = logging.getLogger(__name__)

METRICS_TABLE = "sailplane_run_metrics"
# The metrics a series can show, each a column of one query: name -> unit.
METRICS: dict[str, str] = {"cpu_usage": "cores", "memory_usage": "bytes"}
MAX_POINTS = 10_000


class RunMetrics:
    def __init__(self, database: Database, *, pool: ConnectionPool | None = None) -> None:
        self.pool = pool or database.pool(name="run-metrics", min_size=1, max_size=2)

    def create_table(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {METRICS_TABLE} ("
                "run_id text NOT NULL, attempt integer NOT NULL, job_id text NOT NULL, "
                "instance text NOT NULL, at timestamptz NOT NULL, "
                "cpu_cores double precision NOT NULL, memory_bytes bigint NOT NULL)"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {METRICS_TABLE}_run ON {METRICS_TABLE} (run_id, at)"
            )
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {METRICS_TABLE}_job ON {METRICS_TABLE} (job_id, at)"
            )

    def record(
        self, run_id: str, attempt: int, job_id: str, at: datetime, usage: Sequence[Usage]
    ) -> None:
        if not usage:
            return
        with self.pool.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {METRICS_TABLE} "
                "(run_id, attempt, job_id, instance, at, cpu_cores, memory_bytes) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (run_id, attempt, job_id, u.instance, at, u.cpu_cores, u.memory_bytes)
                    for u in usage
                ],
            )

    def series(
        self,
        names: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        step_seconds: int,
        job_id: str | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """One entry per name asked, in that order: `{name, status, unit, points, error}`."""
        column, key = ("run_id", run_id) if run_id is not None else ("job_id", job_id)
        rows: list[dict[str, Any]] = []
        failure = None
        if any(name in METRICS for name in names):
            try:
                rows = self._buckets(column, key, start, end, step_seconds)
            except Exception as error:  # the metrics' error; the request still answers
                log.exception("run metrics could not be read")
                failure = f"The samples could not be read: {error}"
        entries: list[dict[str, Any]] = []
        for name in names:
            if name not in METRICS:
                known = ", ".join(METRICS)
                entries.append(_error(name, f"Unknown metric {name!r}; known: {known}."))
            elif failure is not None:
                entries.append(_error(name, failure, METRICS[name]))
            else:
                points = [{"timestamp": r["bucket"], "value": r[name]} for r in rows]
                entries.append(
                    {
                        "name": name,
                        "status": "success",
                        "unit": METRICS[name],
                        "points": points,
                        "error": None,
                    }
                )
        return entries

    def _buckets(
        self, column: str, key: str | None, start: datetime, end: datetime, step_seconds: int
    ) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(
                # Each instance's mean in the bucket, then the run's figure over its instances
                # (cores averaged, bytes summed), then the runs of the bucket added up.
                "WITH per_instance AS ("
                "  SELECT run_id, avg(cpu_cores) AS cpu, avg(memory_bytes) AS memory, "
                "  date_bin(make_interval(secs => %(step)s), at, %(start)s) AS bucket "
                f"  FROM {METRICS_TABLE} WHERE {column} = %(key)s "
                "  AND at >= %(start)s AND at < %(end)s GROUP BY run_id, instance, bucket), "
                "per_run AS (SELECT bucket, avg(cpu) AS cpu, sum(memory) AS memory "
                "  FROM per_instance GROUP BY run_id, bucket) "
                "SELECT bucket, sum(cpu)::double precision AS cpu_usage, "
                "sum(memory)::double precision AS memory_usage FROM per_run "
                "GROUP BY bucket ORDER BY bucket",
                {"step": step_seconds, "start": start, "end": end, "key": key},
            ).fetchall()

    def delete(self, *, run_id: str | None = None, job_id: str | None = None) -> None:
        column, key = ("run_id", run_id) if run_id is not None else ("job_id", job_id)
        with self.pool.connection() as conn:
            conn.execute(f"DELETE FROM {METRICS_TABLE} WHERE {column} = %s", (key,))


def _error(name: str, message: str, unit: str | None = None) -> dict[str, Any]:
    return {"name": name, "status": "error", "unit": unit, "points": [], "error": message}


class RunSampler:
    """Every `interval` seconds, the usage of each executing attempt, from its executor."""

    def __init__(
        self,
        executing: Callable[[], Sequence[Mapping[str, Any]]],
        usage: Callable[[Mapping[str, Any]], Sequence[Usage]],
        metrics: RunMetrics,
        clock: Callable[[], datetime],
        *,
        interval: float = 5.0,
    ) -> None:
        self.executing = executing  # rows with id, attempt, job_id and what `usage` needs
        self.usage = usage
        self.metrics = metrics
        self.clock = clock
        self.interval = interval

    def sample(self) -> int:
        """One pass over the executing attempts; how many instances were sampled."""
        sampled = 0
        for row in self.executing():
            try:
                usage = self.usage(row)
            except Exception:
                log.warning("could not sample run %s", row["id"], exc_info=True)
                continue
            self.metrics.record(row["id"], row["attempt"], row["job_id"], self.clock(), usage)
            sampled += len(usage)
        return sampled

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.sample()
            except Exception:
                log.exception("run metrics sampling failed; retrying")
