"""Run runtime benchmark: telemetry ingest and chunk latency, each next to a baseline
measured in the same run.

    .venv/bin/python bench/runtime.py [--batches 50] [--batch 200] [--chunks 200]

1. Ingest: usage rows and chunks (half each) sent as the work's runtime sends them,
   `POST /v1/runtime/batch` of `--batch` items and a `batch_id` with the attempt's run
   token, over HTTP to the app on a real server, from one run and from 20 runs at once
   (one client thread per run). Baseline: the same rows inserted straight into the same table (`executemany`,
   one transaction per batch) from 1 and 20 threads. Rows per second of each.
2. Chunk latency: the work calls `sailplane.runtime.chunk()` (buffered, flushed by its
   thread within 50 ms) every 20 ms; a client reads `GET /v1/runs/{id}/stream/chunks`
   (SSE); latency = the client's receipt - the work's call, p50/p99. Baseline in the same
   run: a plain `INSERT` of the row and a reader polling the table every 50 ms.

The runs are dispatched (their attempt current) but no executor runs them: only the
runtime's path is measured. Prints a table and writes bench/runtime-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402
from tests.conftest import found_org  # noqa: E402
from tests.runs_support import GivenJobVersions  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def items(batch: int, salt: int) -> list[dict[str, Any]]:
    half = batch // 2
    usage = [
        {
            "kind": "usage",
            "provider": "fake",
            "model": "m",
            "prompt_tokens": i,
            "completion_tokens": 1,
        }
        for i in range(half)
    ]
    chunks = [{"kind": "chunk", "text": f"token {salt}-{i} "} for i in range(batch - half)]
    return usage + chunks


def executing_runs(system: Any, job: Any, member: Any, count: int) -> list[str]:
    """`count` runs dispatched to the local executor kind (no executor runs them)."""
    run_ids = []
    for _ in range(count):
        run_id, position = system.runs.commands.create_run(job.job_id, by=member)
        system.wait_for_views(position)
        system.wait_for_views(
            system.runs.commands.dispatch_run(run_id, executor="local", by=member).position
        )
        run_ids.append(run_id)
    return run_ids


def ingest_http(api: str, tokens: list[str], batches: int, batch: int) -> float:
    """Rows per second of `batches` batches per run token, all runs at once."""

    def send(token: str) -> None:
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}) as client:
            for n in range(batches):
                # With an id, as `sailplane.runtime` sends it (a repeat would store nothing).
                body = {"batch_id": uuid.uuid4().hex, "items": items(batch, n)}
                answer = client.post("/v1/runtime/batch", json=body)
                assert answer.status_code == 200, answer.text

    started = time.perf_counter()
    with ThreadPoolExecutor(len(tokens)) as pool:
        list(pool.map(send, tokens))
    return len(tokens) * batches * batch / (time.perf_counter() - started)


def ingest_plain(database: Any, run_ids: list[str], batches: int, batch: int) -> float:
    """The same rows inserted by hand into the same table, one transaction per batch."""
    from psycopg.types.json import Jsonb

    def send(run_id: str) -> None:
        for n in range(batches):
            with pool.connection() as conn, conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO sailplane_run_telemetry (run_id, attempt, kind, body) "
                    "VALUES (%s, 1, %s, %s)",
                    [(run_id, i.pop("kind"), Jsonb(i)) for i in items(batch, n)],
                )

    # At most as many connections as the server's telemetry writes may take (8 here).
    pool = database.pool(name="bench-plain", min_size=1, max_size=8)
    started = time.perf_counter()
    with ThreadPoolExecutor(len(run_ids)) as threads:
        list(threads.map(send, run_ids))
    pool.close()
    return len(run_ids) * batches * batch / (time.perf_counter() - started)


def chunk_latency(
    api: str, org_token: str, run_id: str, run_token: str, chunks: int
) -> list[float]:
    """The work's `runtime.chunk()` to an SSE client's receipt, in ms."""
    os.environ.update(
        {"SAILPLANE_API_URL": api, "SAILPLANE_RUN_TOKEN": run_token, "SAILPLANE_RUN_ID": run_id}
    )
    from sailplane import runtime

    latencies: list[float] = []
    ready = threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {org_token}"}
        with (
            httpx.Client(base_url=api, headers=headers, timeout=60) as client,
            client.stream("GET", f"/v1/runs/{run_id}/stream/chunks") as stream,
        ):
            ready.set()
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    sent = float(json.loads(line[5:])["text"])
                    latencies.append((time.perf_counter() - sent) * 1000)
                    if len(latencies) == chunks:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait()
    time.sleep(0.3)
    for _ in range(chunks):
        runtime.chunk(repr(time.perf_counter()))
        time.sleep(0.02)
    reader.join(timeout=60)
    return latencies


def plain_latency(database: Any, chunks: int) -> list[float]:
    """Baseline: a plain INSERT per chunk, a reader polling the table every 50 ms."""
    from psycopg.types.json import Jsonb

    latencies: list[float] = []
    done = threading.Event()

    def read() -> None:
        after = 0
        with database.connect() as conn:
            conn.autocommit = True
            while len(latencies) < chunks:
                for seq, body in conn.execute(
                    "SELECT seq, body FROM sailplane_run_telemetry WHERE run_id = 'PLAIN' "
                    "AND kind = 'chunk' AND seq > %s ORDER BY seq",
                    (after,),
                ).fetchall():
                    after = seq
                    latencies.append((time.perf_counter() - float(body["text"])) * 1000)
                time.sleep(0.05)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    with database.connect() as conn:
        conn.autocommit = True
        for _ in range(chunks):
            conn.execute(
                "INSERT INTO sailplane_run_telemetry (run_id, attempt, kind, body) "
                "VALUES ('PLAIN', 1, 'chunk', %s)",
                (Jsonb({"text": repr(time.perf_counter())}),),
            )
            time.sleep(0.02)
    done.wait(timeout=60)
    return latencies


def main() -> int:
    from sailplane.domain.base import Actor
    from sailplane.domain.runs import JobVersionSnapshot
    from sailplane.http.app import create_app
    from sailplane.system import System, WorkerHost

    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=50, help="batches per run")
    parser.add_argument("--batch", type=int, default=200, help="items per batch")
    parser.add_argument("--chunks", type=int, default=200)
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "batch": args.batch}
    with (
        services.postgres_server() as server,
        services.fresh_database(server, prefix="sailplane_bench") as database,
    ):
        versions = GivenJobVersions()
        system = System(database, job_versions=versions)
        system.prepare()
        stop, host = threading.Event(), WorkerHost()
        host.start(system.worker("projections"), stop)
        try:
            org = found_org(system)
            member = Actor("member", org.owner_member_id, org.id)
            job = versions.add(
                org.id,
                JobVersionSnapshot(
                    job_id="BENCHJOB01",
                    version=1,
                    cluster_id="L",
                    python={"source": "pass"},
                    max_concurrent_runs=100,
                ),
            )
            with services.api_server(create_app(system)) as api:
                run_ids = executing_runs(system, job, member, 21)
                tokens = [system.runs.tokens.mint(org.id, r, 1) for r in run_ids]
                ingest: dict[str, Any] = {}
                for runs in (1, 20):
                    ingest[f"{runs} run(s)"] = {
                        "runtime_rows_per_s": round(
                            ingest_http(api, tokens[:runs], args.batches, args.batch)
                        ),
                        "plain_inserts_rows_per_s": round(
                            ingest_plain(database, run_ids[:runs], args.batches, args.batch)
                        ),
                    }
                results["ingest"] = ingest
                # The organization's owner reads the chunk stream (an organization role).
                lat = chunk_latency(api, org.token, run_ids[20], tokens[20], args.chunks)
                base = plain_latency(database, args.chunks)
                results["chunk_latency_ms"] = {
                    "runtime_sse": {
                        "p50": round(percentile(lat, 0.5), 1),
                        "p99": round(percentile(lat, 0.99), 1),
                        "n": len(lat),
                    },
                    "plain_insert_poll_50ms": {
                        "p50": round(percentile(base, 0.5), 1),
                        "p99": round(percentile(base, 0.99), 1),
                        "n": len(base),
                    },
                }
        finally:
            stop.set()
            host.join(timeout=10)
            system.close()
    print(json.dumps(results, indent=2))
    (ROOT / "bench" / "runtime-results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
