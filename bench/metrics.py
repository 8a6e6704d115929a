"""Run metrics benchmark: the container-jobs metrics query over a day of samples.

    .venv/bin/python bench/metrics.py [--runs 100] [--hours 24] [--queries 200]

100 runs of one job, each sampled every 5 s for 24 hours (17,280 samples a run, 1.7 M
rows), written straight into the samples table. Then, alternating in the same run:

1. `RunMetrics.series` as the API calls it: a job's `cpu_usage` and `memory_usage` over
   a random 1-hour window with 60 s steps, and over the whole day with 5-minute steps;
2. the baseline: the same figures written by hand as one plain `GROUP BY` over the same
   table and index (what a developer would type into psql).

p50/p99 of each, and their ratio. Prints a table and writes bench/metrics-results.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402

SAMPLE_SECONDS = 5
START = datetime(2026, 12, 1, tzinfo=UTC)
BY_HAND = (
    # Both figures in one query: each run's mean per step, added up over the runs.
    "SELECT bucket, sum(cpu) AS cpu, sum(memory) AS memory FROM ("
    "  SELECT run_id, date_bin(make_interval(secs => %(step)s), at, %(start)s) AS bucket, "
    "  avg(cpu_cores) AS cpu, avg(memory_bytes) AS memory FROM sailplane_run_metrics "
    "  WHERE job_id = %(job)s AND at >= %(start)s AND at < %(end)s GROUP BY run_id, bucket"
    ") per_run GROUP BY bucket ORDER BY bucket"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load(database: Any, runs: int, hours: int) -> int:
    """Write the samples with COPY: `runs` runs of job JOB1, one instance each."""
    from sailplane.infra_adapters.executors.metrics import RunMetrics

    RunMetrics(database).create_table()
    samples = hours * 3600 // SAMPLE_SECONDS
    rows = 0
    with database.connect() as conn, conn.cursor() as cursor:
        for r in range(runs):
            with cursor.copy(
                "COPY sailplane_run_metrics (run_id, attempt, job_id, instance, at, cpu_cores, "
                "memory_bytes) FROM STDIN"
            ) as copy:
                for i in range(samples):
                    at = START + timedelta(seconds=i * SAMPLE_SECONDS)
                    copy.write_row(
                        (f"RUN{r:07d}", 1, "JOB1", "local", at, random.random(), 2**27 + i)
                    )
            rows += samples
        conn.commit()
        cursor.execute("ANALYZE sailplane_run_metrics")
    return rows


def measure(database: Any, hours: int, queries: int) -> dict[str, Any]:
    from sailplane.infra_adapters.executors.metrics import RunMetrics

    metrics = RunMetrics(database)
    shapes = {
        "1 h window, 60 s steps": (timedelta(hours=1), 60),
        f"{hours} h window, 300 s steps": (timedelta(hours=hours), 300),
    }
    results: dict[str, Any] = {}
    with database.connect() as conn:
        for name, (length, step) in shapes.items():
            ours, hand = [], []
            for _ in range(queries):
                latest = START + timedelta(hours=hours) - length
                offset = random.random() * (latest - START).total_seconds()
                start = START + timedelta(seconds=offset)
                window = {"start": start, "end": start + length, "step_seconds": step}
                began = time.perf_counter()
                metrics.series(["cpu_usage", "memory_usage"], job_id="JOB1", **window)
                ours.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                conn.execute(
                    BY_HAND,
                    {"step": step, "start": start, "end": start + length, "job": "JOB1"},
                ).fetchall()
                hand.append((time.perf_counter() - began) * 1000)
            results[name] = {
                "sailplane_p50_ms": percentile(ours, 0.5),
                "sailplane_p99_ms": percentile(ours, 0.99),
                "by_hand_p50_ms": percentile(hand, 0.5),
                "by_hand_p99_ms": percentile(hand, 0.99),
                "ratio_p50": percentile(ours, 0.5) / percentile(hand, 0.5),
            }
    metrics.pool.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    random.seed(7)
    with (
        services.postgres_server() as server,
        services.fresh_database(server, prefix="sailplane_bench") as database,
    ):
        print("writing samples ...", file=sys.stderr, flush=True)
        rows = load(database, args.runs, args.hours)
        print(f"{rows} samples; querying ...", file=sys.stderr, flush=True)
        results = {
            "samples": rows,
            "runs": args.runs,
            **measure(database, args.hours, args.queries),
        }
    print(f"{rows:,} samples of {args.runs} runs over {args.hours} h (one every 5 s)")
    print(
        f"{'query (cpu_usage + memory_usage of the job)':<46}{'Sailplane p50/p99 ms':<24}"
        f"{'by hand p50/p99 ms':<22}ratio p50"
    )
    for name, r in results.items():
        if isinstance(r, dict):
            print(
                f"{name:<46}{r['sailplane_p50_ms']:.1f} / {r['sailplane_p99_ms']:.1f}".ljust(70)
                + f"{r['by_hand_p50_ms']:.1f} / {r['by_hand_p99_ms']:.1f}".ljust(22)
                + f"{r['ratio_p50']:.2f}"
            )
    (ROOT / "bench" / "metrics-results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
