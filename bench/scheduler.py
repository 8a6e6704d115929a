"""Scheduler benchmark: many active schedules, fire latency and the scheduler's CPU.

    .venv/bin/python bench/scheduler.py [--schedules 10000] [--bursts 5]

Each job fires hourly at minute `i % 60`, so every minute boundary makes about
schedules/60 slots due at once. The clock is the real one plus an offset: between
bursts the offset jumps to 3 s before the next boundary, so no simulated time passes
idle, while each burst runs in real time with the worker's real 1 s tick.

1. Fire latency, slot due -> run `ready` (its creation committed), p50/p99 over the
   bursts; the baseline is the runs create use case alone, called directly one at a time
   in the same run (what one fired slot costs without the scheduler).
2. Scheduler CPU (the worker thread's CPU time): an idle tick, the full load a new leader
   does, and per fired slot (including the run's save), each per 1,000 schedules, and the
   share of one core 1,000 hourly schedules need.

Prints a table and writes bench/scheduler-results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ShiftedClock:
    """The real clock plus an offset the benchmark moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def main() -> int:
    from sailplane.domain.base import Actor
    from sailplane.infra_adapters.scheduler import (
        Leadership,
        RunsForScheduler,
        Scheduler,
        SchedulerWorker,
    )
    from sailplane.system import System, WorkerHost
    from tests.conftest import found_org, local_cluster_id

    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--bursts", type=int, default=5)
    args = parser.parse_args()
    n = args.schedules
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "schedules": n}
    clock = ShiftedClock()
    with (
        services.postgres_server() as server,
        services.fresh_database(server, prefix="sailplane_bench") as database,
    ):
        system = System(database, clock=clock)
        system.prepare()
        stop, host = threading.Event(), WorkerHost()
        host.start(system.worker("projections"), stop)
        try:
            org = found_org(system)
            cluster = local_cluster_id(system, org.id)
            team, _ = system.identity.commands.create_team(
                name="bench", default_role_id=None, by=org.owner
            )
            started = time.perf_counter()
            position = 0
            for i in range(n):
                _, position = system.workloads.commands.create_job(
                    job_key=f"job-{i}",
                    description=None,
                    status="active",
                    spec={
                        "cluster_id": cluster,
                        "config": {"sql": {"source": "SELECT 1"}},
                        "cron_expression": f"{i % 60} * * * *",
                        "concurrency_policy": "allow",
                    },
                    team_ids=[team],
                    by=org.owner,
                )
            system.wait_for_views(position)
            results["setup_seconds"] = round(time.perf_counter() - started, 1)
            print(f"{n} jobs in {results['setup_seconds']} s", file=sys.stderr, flush=True)

            # Baseline: the runs use case alone, for jobs that are not part of the bursts.
            baseline = []
            for i in range(200):
                t0 = time.perf_counter()
                system.runs.commands.create_run(
                    system.workloads.jobs.job_by_key(org.id, f"job-{i}")["id"],
                    by=Actor.system("bench", org.id),
                    trigger="schedule",
                )
                baseline.append(time.perf_counter() - t0)

            # A new leader's full load of every schedule.
            cold = Scheduler(
                system.workloads.schedules, RunsForScheduler(system.runs.commands), clock
            )
            t0 = time.thread_time()
            cold.refresh()
            full_load_cpu = time.thread_time() - t0
            assert len(cold.jobs) == n

            latencies: list[float] = []
            creating: list[float] = []  # CPU seconds of each run creation
            ticks: list[tuple[float, int]] = []  # (CPU seconds, slots fired)
            measure_from = [clock() + timedelta(days=365)]

            class Timed(RunsForScheduler):
                def create_scheduled_run(self, organization_id, job_id, *, run_id, slot):  # type: ignore[no-untyped-def]
                    t0 = time.thread_time()  # bursts are created on pool threads: count them too
                    created = super().create_scheduled_run(
                        organization_id, job_id, run_id=run_id, slot=slot
                    )
                    creating.append(time.thread_time() - t0)
                    if created and slot >= measure_from[0]:
                        latencies.append((clock() - slot).total_seconds())
                    return created

            class Measured(Scheduler):
                def tick(self):  # type: ignore[no-untyped-def]
                    t0 = time.thread_time()
                    fired = super().tick()
                    ticks.append((time.thread_time() - t0, len(fired)))
                    return fired

            scheduler = Measured(system.workloads.schedules, Timed(system.runs.commands), clock)
            worker = SchedulerWorker(scheduler, Leadership(database, "scheduler"))

            def jump_before_next_boundary() -> datetime:
                now = clock()
                boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
                if (boundary - now).total_seconds() < 3:
                    boundary += timedelta(minutes=1)
                clock.offset += boundary - timedelta(seconds=3) - now
                return boundary

            first = jump_before_next_boundary()
            host.start(worker, stop)
            deadline = time.monotonic() + 30
            while not any(f for _, f in ticks) and time.monotonic() < deadline:
                time.sleep(0.1)  # the first tick fires the previous minute's slots (warm-up)
            per_burst = len([i for i in range(n) if i % 60 == first.minute])
            for _ in range(args.bursts):
                boundary = jump_before_next_boundary()
                measure_from[0] = min(measure_from[0], boundary)
                target = len(latencies) + len([i for i in range(n) if i % 60 == boundary.minute])
                deadline = time.monotonic() + 120
                while len(latencies) < target and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(latencies) >= target, "a burst did not complete"
            idle = [cpu for cpu, fired in ticks if fired == 0]
            busy = [(cpu, fired) for cpu, fired in ticks if fired]
            per_fire = (sum(c for c, _ in busy) + sum(creating)) / max(1, sum(f for _, f in busy))
            idle_tick = sum(idle) / max(1, len(idle))
            per_1000 = n / 1000
            results["latency"] = {
                "runs": len(latencies),
                "per_burst": per_burst,
                "p50_ms": round(percentile(latencies, 0.5) * 1000, 1),
                "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                "baseline_create_p50_ms": round(percentile(baseline, 0.5) * 1000, 2),
                "baseline_create_p99_ms": round(percentile(baseline, 0.99) * 1000, 2),
            }
            results["cpu"] = {
                "idle_tick_ms_per_1000": round(idle_tick / per_1000 * 1000, 3),
                "full_load_ms_per_1000": round(full_load_cpu / per_1000 * 1000, 1),
                "per_fired_slot_ms": round(per_fire * 1000, 2),
                # 1,000 hourly schedules: 3,600 ticks and 1,000 fired slots per hour.
                "core_share_per_1000_hourly": round(
                    (3600 * idle_tick / per_1000 + 1000 * per_fire) / 3600, 5
                ),
            }
        finally:
            stop.set()
            host.join(timeout=30)
            system.close()
    print(json.dumps(results, indent=2))
    (ROOT / "bench" / "scheduler-results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
