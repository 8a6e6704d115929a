"""Run metrics and logs in PostgreSQL: samples per instance, bucketed series (cores averaged over a
run's instances, bytes summed, a job's runs added up), an unknown name as that entry's
error, deletion with the run; and what each executor reports as an attempt's usage."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from sailplane.infra_adapters.executors import Submission, Target, Work
from sailplane.infra_adapters.executors.kubernetes import KubernetesExecutor, job_name
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.infra_adapters.executors.metrics import RunMetrics, RunSampler, Usage
from sailplane.storage import Database
from tests.k8s_double import KubernetesDouble, kubernetes_double

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def metrics(fresh_db: Database) -> RunMetrics:
    run_metrics = RunMetrics(fresh_db)
    run_metrics.create_table()
    return run_metrics


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_series_averages_cores_and_sums_bytes_over_instances_and_adds_up_runs(
    metrics: RunMetrics,
) -> None:
    for second in (0, 5):  # run A: two instances; run B: one, in the same buckets
        metrics.record(
            "RUNA", 1, "JOB1", at(second), [Usage("a-0", 1.0, 100), Usage("a-1", 3.0, 300)]
        )
        metrics.record("RUNB", 1, "JOB1", at(second), [Usage("b-0", 0.5, 50)])
    metrics.record("RUNA", 1, "JOB1", at(12), [Usage("a-0", 2.0, 200)])
    metrics.record("RUNC", 1, "JOB2", at(0), [Usage("c-0", 9.0, 900)])  # another job

    cpu, memory = metrics.series(
        ["cpu_usage", "memory_usage"], start=at(0), end=at(20), step_seconds=10, job_id="JOB1"
    )
    assert (cpu["name"], cpu["status"], cpu["unit"], cpu["error"]) == (
        "cpu_usage",
        "success",
        "cores",
        None,
    )
    assert [(p["timestamp"], p["value"]) for p in cpu["points"]] == [
        (at(0), 2.0 + 0.5),  # A's instances averaged (1 and 3), plus B
        (at(10), 2.0),
    ]
    assert [(p["timestamp"], p["value"]) for p in memory["points"]] == [
        (at(0), 400 + 50),  # A's instances summed, plus B
        (at(10), 200),
    ]
    (one_run,) = metrics.series(
        ["memory_usage"], start=at(0), end=at(20), step_seconds=20, run_id="RUNB"
    )
    assert [p["value"] for p in one_run["points"]] == [50]


def test_an_unknown_name_is_that_entrys_error_and_the_others_answer(metrics: RunMetrics) -> None:
    metrics.record("RUNA", 1, "JOB1", at(0), [Usage("a-0", 1.0, 100)])
    cpu, bogus = metrics.series(
        ["cpu_usage", "bogus"], start=at(0), end=at(10), step_seconds=5, job_id="JOB1"
    )
    assert cpu["status"] == "success" and [p["value"] for p in cpu["points"]] == [1.0]
    assert (bogus["name"], bogus["status"], bogus["points"]) == ("bogus", "error", [])
    assert "bogus" in bogus["error"] and "cpu_usage" in bogus["error"]


def test_samples_go_with_their_run_or_job(metrics: RunMetrics) -> None:
    metrics.record("RUNA", 1, "JOB1", at(0), [Usage("a-0", 1.0, 100)])
    metrics.record("RUNB", 1, "JOB1", at(0), [Usage("b-0", 1.0, 100)])
    metrics.record("RUNC", 1, "JOB2", at(0), [Usage("c-0", 1.0, 100)])
    metrics.delete(run_id="RUNA")
    window = {"start": at(0), "end": at(10), "step_seconds": 10}
    assert metrics.series(["memory_usage"], job_id="JOB1", **window)[0]["points"][0]["value"] == 100
    metrics.delete(job_id="JOB1")
    assert metrics.series(["memory_usage"], job_id="JOB1", **window)[0]["points"] == []
    assert metrics.series(["memory_usage"], job_id="JOB2", **window)[0]["points"] != []


def test_the_sampler_records_each_executing_attempt_and_skips_one_it_cannot_read(
    metrics: RunMetrics,
) -> None:
    rows = [
        {"id": "RUNA", "attempt": 2, "job_id": "JOB1"},
        {"id": "RUNX", "attempt": 1, "job_id": "JOB1"},
        {"id": "RUNB", "attempt": 1, "job_id": "JOB1"},
    ]

    def usage(row: dict) -> list[Usage]:
        if row["id"] == "RUNX":
            raise RuntimeError("gone")
        return [Usage("local", 0.25, 4096)]

    sampler = RunSampler(lambda: rows, usage, metrics, lambda: at(1))
    assert sampler.sample() == 2
    (memory,) = metrics.series(
        ["memory_usage"], start=at(0), end=at(10), step_seconds=10, job_id="JOB1"
    )
    assert [p["value"] for p in memory["points"]] == [8192]


@pytest.fixture
def double() -> Iterator[KubernetesDouble]:
    with kubernetes_double() as d:
        yield d


def test_a_pods_usage_comes_from_metrics_k8s_io(
    double: KubernetesDouble, fresh_db: Database
) -> None:
    executor = KubernetesExecutor(RunLogs(fresh_db))
    target = Target(
        executor="kubernetes",
        settings={"kubeconfig": double.kubeconfig(namespace="runs"), "namespace": "runs"},
    )
    work = Work(container={"image": "busybox", "argv": ["sleep", "60"], "env": {}})
    executor.submit(Submission("RUNK8SUSE1", 1, "ORG0000001", "JOB0000001", work, target))
    assert executor.usage("RUNK8SUSE1", 1, target) == []  # no metrics-server answer yet
    (pod,) = double.pods_of_job("runs", job_name("RUNK8SUSE1", 1))
    double.set_pod_usage("runs", pod["metadata"]["name"], cpu="1500m", memory="64Mi")
    assert executor.usage("RUNK8SUSE1", 1, target) == [
        Usage(pod["metadata"]["name"], 1.5, 64 * 1024 * 1024)
    ]


def test_a_log_window_is_the_newest_lines_written_in_it_oldest_first(fresh_db: Database) -> None:
    logs = RunLogs(fresh_db)
    logs.create_table()
    logs.append("RUNA", 1, ["a0", "a5 match", "a9"], times=[at(0), at(5), at(9)])
    logs.append("RUNA", 1, ["a6 oops match"], stream="stderr", times=[at(6)])
    logs.append("RUNB", 1, ["b7 match"], times=[at(7)])
    logs.append("RUNC", 1, ["c7 match"], times=[at(7)])  # not asked for

    rows = logs.window(["RUNA", "RUNB"], start=at(1), end=at(9), limit=100)
    assert [(r["line"], r["stream"]) for r in rows] == [
        ("a5 match", "stdout"),
        ("a6 oops match", "stderr"),
        ("b7 match", "stdout"),
    ]
    newest_two = logs.window(["RUNA", "RUNB"], start=at(0), end=at(10), limit=2)
    assert [r["line"] for r in newest_two] == ["b7 match", "a9"]
    matching = logs.window(["RUNA", "RUNB"], start=at(0), end=at(10), limit=100, contains="oops")
    assert [r["line"] for r in matching] == ["a6 oops match"]
