"""Run with procrastinate's own interpreter (bench/peers/.venv-procrastinate): defer the
jobs described on stdin, then drain them with one worker; prints each job's times as JSON.

stdin: {"conninfo": ..., "concurrency": C, "jobs": [[lock, priority], ...]} in creation
order. Each job is the no-op task, deferred with its `lock` (procrastinate runs one job
of a lock at a time: a concurrency key with one slot) and its `priority`. The worker
starts once every job is deferred and stops when the queue is empty (`wait=False`).
stdout: {"drain_started_at": ISO, "jobs": [[lock, priority, id, deferred_at, started_at,
finished_at], ...]} with the times of procrastinate's own events table.
"""

import asyncio
import json
import sys
from datetime import UTC, datetime

import procrastinate

SELECT = (
    "SELECT j.id, j.lock, j.priority, "
    "min(e.at) FILTER (WHERE e.type = 'deferred') AS deferred_at, "
    "min(e.at) FILTER (WHERE e.type = 'started') AS started_at, "
    "min(e.at) FILTER (WHERE e.type = 'succeeded') AS finished_at "
    "FROM procrastinate_jobs j JOIN procrastinate_events e ON e.job_id = j.id "
    "GROUP BY j.id ORDER BY j.id"
)


async def main() -> None:
    given = json.load(sys.stdin)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=given["conninfo"]))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for lock, priority in given["jobs"]:
            await noop.configure(lock=lock, priority=priority).defer_async()
        started = datetime.now(UTC)
        await app.run_worker_async(concurrency=given["concurrency"], wait=False)
        rows = await app.connector.execute_query_all_async(SELECT)
    json.dump(
        {
            "drain_started_at": started.isoformat(),
            "jobs": [
                [
                    r["lock"],
                    r["priority"],
                    r["id"],
                    r["deferred_at"].isoformat(),
                    r["started_at"].isoformat() if r["started_at"] else None,
                    r["finished_at"].isoformat() if r["finished_at"] else None,
                ]
                for r in rows
            ],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    asyncio.run(main())
