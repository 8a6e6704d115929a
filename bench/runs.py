"""Job-run benchmarks, each next to a baseline measured in the same run.

    .venv/bin/python bench/runs.py [--runs 1000] [--latency 50]

1. ready -> running latency (p50/p99) of `SELECT 1` runs on a local Sail server, one run
   at a time, through the dispatcher (event loop, claim, submit, child process start).
2. N trivial runs created at once -> all completed, against the same work submitted
   straight to Sail in the same run: (a) N Spark Connect queries in one session, (b) N
   child processes running the query, as the local executor does, at the same parallelism.

Prints a table and writes bench/runs-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402
from tests.runs_support import GivenJobVersions, wait_until  # noqa: E402

ORG = "ORGBENCH01"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    from sailplane.domain.base import Actor
    from sailplane.domain.runs import JobVersionSnapshot
    from sailplane.infra_adapters.executors import FixedTarget
    from sailplane.system import System, WorkerHost

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=50)
    args = parser.parse_args()
    parallel = max(2, 2 * (os.cpu_count() or 1))
    member = Actor("member", "MEMBER0001", ORG)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "parallel": parallel}}
    with (
        services.postgres_server() as server,
        services.fresh_database(server, prefix="sailplane_bench") as database,
        services.sail_server() as sail,
    ):
        versions = GivenJobVersions()
        system = System(
            database,
            job_versions=versions,
            run_targets=FixedTarget(sail),
            executor_options={"max_parallel": parallel},
        )
        system.prepare()
        stop, host = threading.Event(), WorkerHost()
        host.start(system.worker("projections"), stop)
        host.start(system.worker("dispatcher"), stop)
        try:
            job = versions.add(
                ORG,
                JobVersionSnapshot(
                    job_id="BENCHJOB01", version=1, cluster_id="L", sql_source="SELECT 1"
                ),
            )

            def row(run_id: str) -> dict[str, Any] | None:
                return system.runs.view.run(ORG, job.job_id, run_id)

            latencies = []
            for _ in range(args.latency):
                run_id, position = system.runs.commands.create_run(job.job_id, by=member)
                system.wait_for_views(position)
                done = wait_until(
                    lambda r=run_id: (x := row(r)) and x["status"] == "completed" and x, timeout=120
                )
                latencies.append(
                    (done["runner_started_at"] - done["created_at"]).total_seconds() * 1000
                )
            results["latency"] = {
                "runs": args.latency,
                "ready_to_running_p50_ms": percentile(latencies, 0.5),
                "ready_to_running_p99_ms": percentile(latencies, 0.99),
            }
            print(f"latency done: {results['latency']}", file=sys.stderr, flush=True)

            start = time.perf_counter()
            ids = [
                system.runs.commands.create_run(job.job_id, by=member)[0] for _ in range(args.runs)
            ]
            wait_until(
                lambda: (
                    system.runs.view.fetch_one(
                        "SELECT count(*) AS n FROM {job_runs} WHERE id = ANY(%s) AND status = 'completed'",
                        (ids,),
                    )["n"]
                    == len(ids)
                ),
                timeout=3600,
                what="every run completed",
            )
            sailplane_s = time.perf_counter() - start
        finally:
            stop.set()
            host.join(timeout=30)
            system.close()

        from pyspark.sql.connect.session import SparkSession

        session = SparkSession.builder.remote(sail).create()
        start = time.perf_counter()
        for _ in range(args.runs):
            session.sql("SELECT 1").collect()
        session_s = time.perf_counter() - start
        session.stop()

        work = Path(tempfile.mkdtemp()) / "work.json"
        work.write_text(json.dumps({"sql": "SELECT 1"}))
        env = {**os.environ, "SPARK_REMOTE": sail, "PYTHONPATH": str(ROOT)}

        def child(_: int) -> None:
            subprocess.run(
                [sys.executable, "-m", "sailplane.infra_adapters.executors.child", str(work)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )

        start = time.perf_counter()
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(child, range(args.runs)))
        process_s = time.perf_counter() - start
    results["throughput"] = {
        "runs": args.runs,
        "sailplane_s": sailplane_s,
        "sailplane_runs_per_s": args.runs / sailplane_s,
        "straight_session_s": session_s,
        "straight_processes_s": process_s,
        "ratio_to_processes": sailplane_s / process_s,
        "ratio_to_session": sailplane_s / session_s,
    }
    (ROOT / "bench" / "runs-results.json").write_text(json.dumps(results, indent=2))
    lat, thr = results["latency"], results["throughput"]
    print(
        f"ready -> running p50 / p99: {lat['ready_to_running_p50_ms']:.0f} / {lat['ready_to_running_p99_ms']:.0f} ms"
    )
    print(
        f"{thr['runs']} runs created -> completed: {thr['sailplane_s']:.1f} s "
        f"(straight to Sail, same processes: {thr['straight_processes_s']:.1f} s, ratio "
        f"{thr['ratio_to_processes']:.2f}; one Spark Connect session: {thr['straight_session_s']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
