"""The run queue drained, next to procrastinate draining the same jobs on the same PostgreSQL.

    .venv/bin/python bench/run_queue.py [--runs 10000] [--keys 100] [--priorities 5] [--quick]

Sailplane: N runs of one job (a container command `true` on the local executor, the
cheapest work it runs: one process a run, no engine session), each with one of `--keys`
concurrency keys and one of `--priorities` priorities at random, `concurrencyPolicy:
queue` with `maxConcurrentRuns: 1` (one run a key at a time, so each key's claim order is
observable). The runs are made (1,000 a transaction) while no dispatcher runs; then the
dispatcher starts and drains them: its event loop meets the creations oldest first, its
monitor sweeps the due runs, the executor runs at most its default number of attempts at
once. procrastinate 3.10.0 (its own virtualenv, bench/peers/.venv-procrastinate, never
the project's) defers the same N no-op jobs, each key a `lock` (one job a lock at a time)
with the same priority, into a database of its own on the same server, then one worker
(as many concurrent jobs as the executor's slots) drains them. Both in the same run.

Figures, for each: claim order (within each key: priority, then age), claims/s over the
drain, queued -> executing p50/p99 (a run's wait from the drain's start, or its creation
if later, to its start), claimed -> executing p50/p99, and the ratios. Prints a table
and the machine's load; writes bench/run-queue-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import venv
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import percentile  # noqa: E402
from tests import services  # noqa: E402
from tests.runs_support import GivenJobVersions  # noqa: E402

ORG = "ORGQUEUE01"
PROCRASTINATE = "procrastinate==3.10.0"
PEER_VENV = ROOT / "bench" / "peers" / ".venv-procrastinate"
RESULTS = ROOT / "bench" / "run-queue-results.json"


def peer_python() -> Path:
    """procrastinate's own virtualenv, made and filled on first use."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".installed"
    if not stamp.exists() or stamp.read_text() != PROCRASTINATE:
        if not python.exists():
            venv.EnvBuilder(with_pip=True).create(PEER_VENV)
        print(f"installing {PROCRASTINATE} into {PEER_VENV} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                PROCRASTINATE,
            ],
            check=True,
        )
        stamp.write_text(PROCRASTINATE)
    return python


def figures(jobs: list[dict[str, Any]], drain_started: datetime) -> dict[str, Any]:
    """Claim order, claims/s and latencies of drained jobs: each has `key`, `priority`,
    `rank` (creation order), `created`, `claimed`, `started` (datetimes)."""
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        by_key[job["key"]].append(job)
    inversions = keys_in_order = 0
    for members in by_key.values():
        claimed = sorted(members, key=lambda j: (j["claimed"], j["rank"]))
        expected = sorted(members, key=lambda j: (-j["priority"], j["rank"]))
        keys_in_order += claimed == expected
        # Pairs of one key claimed in the wrong order (a run claimed before one it ranks after).
        for i, early in enumerate(claimed):
            for late in claimed[i + 1 :]:
                inversions += (-late["priority"], late["rank"]) < (
                    -early["priority"],
                    early["rank"],
                )
    last_claim = max(j["claimed"] for j in jobs)
    drain = (max(j["started"] for j in jobs) - drain_started).total_seconds()
    waits = [(j["started"] - max(j["created"], drain_started)).total_seconds() * 1000 for j in jobs]
    handovers = [(j["started"] - j["claimed"]).total_seconds() * 1000 for j in jobs]
    return {
        "jobs": len(jobs),
        "keys": len(by_key),
        "keys_in_order": keys_in_order,
        "out_of_order_pairs": inversions,
        "claims_per_s": len(jobs) / max((last_claim - drain_started).total_seconds(), 1e-3),
        "drain_s": drain,
        "queued_to_executing_p50_ms": percentile(waits, 0.5),
        "queued_to_executing_p99_ms": percentile(waits, 0.99),
        "claimed_to_executing_p50_ms": percentile(handovers, 0.5),
        "claimed_to_executing_p99_ms": percentile(handovers, 0.99),
    }


def sailplane(database: Any, plan: list[tuple[str, int]], warm: int) -> tuple[dict[str, Any], int]:
    from sailplane.commands.runs import RunRequest
    from sailplane.domain.base import Actor
    from sailplane.domain.runs import JobVersionSnapshot, RunOptions
    from sailplane.infra_adapters.executors import FixedTarget
    from sailplane.infra_adapters.executors.local import default_max_parallel
    from sailplane.projections.runs import RunFilter
    from sailplane.system import System, WorkerHost

    versions = GivenJobVersions()
    system = System(
        database,
        job_versions=versions,
        run_targets=FixedTarget(""),  # a command needs no engine: no Sail server
        executor_options={"warm_children": warm},
    )
    system.prepare()
    member = Actor("member", "MEMBER0001", ORG)
    job = versions.add(
        ORG,
        JobVersionSnapshot(
            job_id="QUEUEJOB01",
            version=1,
            cluster_id="L",
            container={"image": "none", "command": ["true"]},
            concurrency_policy="queue",
            max_concurrent_runs=1,
            team_ids=("TEAM000001",),
        ),
    )
    stop, host = threading.Event(), WorkerHost()
    host.start(system.worker("projections"), stop)
    try:
        made = time.perf_counter()
        ranks: dict[str, int] = {}
        for start in range(0, len(plan), 1000):
            requests = [
                RunRequest(job.job_id, RunOptions(priority=p, concurrency_key=k))
                for k, p in plan[start : start + 1000]
            ]
            created, position = system.runs.commands.create_runs(
                requests, batch_id=f"B{start:09d}", trigger="api", by=member
            )
            for offset, (run_id, _) in enumerate(created):
                ranks[run_id] = start + offset
        system.wait_for_views(position)
        print(
            f"sailplane: {len(plan)} runs made in {time.perf_counter() - made:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        drain_started = datetime.now(UTC)
        host.start(system.worker("dispatcher"), stop)
        where = RunFilter(team_ids=["TEAM000001"], job_id=job.job_id)
        while True:
            time.sleep(1.0)
            left = system.runs.view.fetch_one(
                "SELECT count(*) AS n FROM {job_runs} WHERE job_id = %s AND status <> 'completed'",
                (job.job_id,),
            )["n"]
            print(f"sailplane: {left} runs left", file=sys.stderr, flush=True)
            if left == 0:
                break
        rows = system.runs.view.filtered_runs(
            ORG, where, now=datetime.now(UTC), limit=len(plan) + 1
        )
    finally:
        stop.set()
        host.join(timeout=60)
        system.close()
    jobs = [
        {
            "key": r["concurrency_key"],
            "priority": r["priority"],
            "rank": ranks[r["id"]],
            "created": r["created_at"],
            "claimed": r["dispatched_at"],
            "started": r["runner_started_at"],
        }
        for r in rows
    ]
    return figures(jobs, drain_started), default_max_parallel()


def procrastinate(database: Any, plan: list[tuple[str, int]], concurrency: int) -> dict[str, Any]:
    given = {"conninfo": database.conninfo, "concurrency": concurrency, "jobs": plan}
    done = subprocess.run(
        [str(peer_python()), str(ROOT / "bench" / "peers" / "procrastinate_drain.py")],
        input=json.dumps(given).encode(),
        capture_output=True,
        check=True,
    )
    answer = json.loads(done.stdout)
    jobs = [
        {
            "key": lock,
            "priority": priority,
            "rank": job_id,  # ids in deferral order
            "created": datetime.fromisoformat(deferred),
            # A job is claimed and started in one step (its status set to `doing`).
            "claimed": datetime.fromisoformat(started),
            "started": datetime.fromisoformat(started),
        }
        for lock, priority, job_id, deferred, started, _ in answer["jobs"]
    ]
    return figures(jobs, datetime.fromisoformat(answer["drain_started_at"]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--priorities", type=int, default=5)
    parser.add_argument("--warm", type=int, default=0, help="warm children (a command needs none)")
    parser.add_argument("--quick", action="store_true", help="500 runs")
    args = parser.parse_args()
    runs = 500 if args.quick else args.runs
    rng = random.Random(14)
    plan = [
        (f"key-{rng.randrange(args.keys)}", rng.randrange(args.priorities) * 10)
        for _ in range(runs)
    ]
    load_before = os.getloadavg()
    begun = time.perf_counter()
    with services.postgres_server() as server:
        with services.fresh_database(server, prefix="sailplane_bench_queue") as database:
            ours, slots = sailplane(database, plan, args.warm)
        print(f"sailplane: {ours}", file=sys.stderr, flush=True)
        with services.fresh_database(server, prefix="procrastinate_bench") as database:
            peer = procrastinate(database, plan, slots)
        print(f"procrastinate: {peer}", file=sys.stderr, flush=True)
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "seconds": time.perf_counter() - begun,
        },
        "runs": runs,
        "keys": args.keys,
        "priorities": args.priorities,
        "slots": slots,
        "warm_children": args.warm,
        "sailplane": ours,
        "procrastinate": peer,
    }
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"{runs} runs, {args.keys} keys, {args.priorities} priorities, {slots} at once")
    print(f"{'figure':<34} {'sailplane':>12} {'procrastinate':>14} {'ratio':>8}")
    for name in (
        "keys_in_order",
        "out_of_order_pairs",
        "claims_per_s",
        "drain_s",
        "queued_to_executing_p50_ms",
        "queued_to_executing_p99_ms",
        "claimed_to_executing_p50_ms",
        "claimed_to_executing_p99_ms",
    ):
        a, b = ours[name], peer[name]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{name:<34} {a:>12.1f} {b:>14.1f} {ratio:>8}")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
