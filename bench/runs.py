"""Job-run benchmarks, each next to a baseline measured in the same run.

    .venv/bin/python bench/runs.py [--runs 40] [--latency 50]

1. ready -> running latency (p50/p99) of `SELECT 1` runs on a local Sail server, one run
   at a time, through the dispatcher (event loop, claim, submit, child process start).
2. created -> completed (p50/p99) of `SELECT 1` runs, one at a time, as a client polling
   every 10 ms sees it, without warm children and with two (`warm_children`), in
   alternating rounds of the same run: runs arriving `--spacing` seconds apart (the pool
   refills in between), and back to back (the next created when the last completed).
3. N trivial runs created at once -> all completed, against the same work submitted
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


def created_to_completed(system: Any, job: Any, member: Any, args: Any) -> dict[str, Any]:
    """`SELECT 1` runs one at a time, created -> completed as a polling client sees it, with
    no warm children and with two, alternating which goes first each round; each mode gets a
    dispatcher of its own whose first run (cold: it has the pool filled) is not counted."""
    from sailplane.system import WorkerHost

    times: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        modes = (0, 2) if round_ % 2 == 0 else (2, 0)
        for warm in modes:
            stop, host = threading.Event(), WorkerHost()
            system.executor_options = {"warm_children": warm}
            host.start(system.worker("projections"), stop)
            host.start(system.worker("dispatcher"), stop)
            try:
                one_run(system, job, member)
                for pace, pause in (("spaced", args.spacing), ("back to back", 0.0)):
                    name = f"{pace}, warm children {warm}"
                    for _ in range(args.completions):
                        time.sleep(pause)
                        times.setdefault(name, []).append(one_run(system, job, member))
            finally:
                stop.set()
                host.join(timeout=30)
            print(f"round {round_} warm {warm} done", file=sys.stderr, flush=True)
    return {
        name: {
            "runs": len(values),
            "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99),
            "max_ms": max(values),
        }
        for name, values in times.items()
    }


def one_run(system: Any, job: Any, member: Any) -> float:
    """Milliseconds from creating one run to reading it `completed` (polled every 10 ms)."""
    start = time.perf_counter()
    run_id, _ = system.runs.commands.create_run(job.job_id, by=member)
    while True:
        row = system.runs.view.run(ORG, job.job_id, run_id)
        if row is not None and row["status"] in ("completed", "failed", "timeout"):
            if row["status"] != "completed":
                raise RuntimeError(f"run {run_id} ended {row['status']}")
            return (time.perf_counter() - start) * 1000
        if time.perf_counter() - start > 120:
            raise TimeoutError(f"run {run_id} not completed in 120 s")
        time.sleep(0.01)


def main() -> int:
    from sailplane.domain.base import Actor
    from sailplane.domain.runs import JobVersionSnapshot
    from sailplane.infra_adapters.executors import FixedTarget
    from sailplane.system import System, WorkerHost

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--latency", type=int, default=50)
    parser.add_argument("--completions", type=int, default=40, help="runs per mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=1.5)
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

            stop.set()  # the created -> completed rounds run their own dispatchers
            host.join(timeout=30)
            results["completed"] = created_to_completed(system, job, member, args)
            print(f"completed done: {results['completed']}", file=sys.stderr, flush=True)
            stop, host = threading.Event(), WorkerHost()
            host.start(system.worker("projections"), stop)
            system.executor_options = {"max_parallel": parallel}
            host.start(system.worker("dispatcher"), stop)

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

        assignment = json.dumps({"work": {"sql": "SELECT 1"}, "variables": {}}) + "\n"
        env = {**os.environ, "SPARK_REMOTE": sail, "PYTHONPATH": str(ROOT)}

        def child(_: int) -> None:
            subprocess.run(
                [
                    *(sys.executable, "-m", "sailplane.infra_adapters.executors.child"),
                    "--assignment-on-stdin",
                ],
                input=assignment.encode(),
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
    for name, figures in results["completed"].items():
        print(
            f"created -> completed, {name}: p50 / p99 / max "
            f"{figures['p50_ms']:.0f} / {figures['p99_ms']:.0f} / {figures['max_ms']:.0f} ms "
            f"({figures['runs']} runs)"
        )
    print(
        f"{thr['runs']} runs created -> completed: {thr['sailplane_s']:.1f} s "
        f"(straight to Sail, same processes: {thr['straight_processes_s']:.1f} s, ratio "
        f"{thr['ratio_to_processes']:.2f}; one Spark Connect session: {thr['straight_session_s']:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
