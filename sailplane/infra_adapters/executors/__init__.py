"""Executors: where a run's attempt actually executes, behind one port.

`Executor.submit(submission)` starts one attempt of one run; it is keyed by run id +
attempt, so submitting the same attempt again (a redelivered message, a restarted
dispatcher) never executes it twice. `status` reads back what the attempt is doing,
`cancel` stops it (a deadline, then a forced stop), and `executions` counts how often an
attempt really started executing (the figure the exactly-once tests check).

Adapters: `local.LocalExecutor` (Sail on this machine through Spark Connect; the work
runs in a child process with `SPARK_REMOTE` set) and `kubernetes.KubernetesExecutor`
(one batch/v1 Job per attempt, named from run id and attempt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Usage:
    """What one instance of an attempt uses now (a process tree, a pod). Defined here, not
    beside the samples' table, so that the attempt's own process (`child.py`, started as
    this package's module) imports no database client."""

    instance: str
    cpu_cores: float
    memory_bytes: int


# What an attempt is doing, as executors report it.
SUBMITTED, RUNNING, SUCCEEDED, FAILED, CANCELLED, LOST, UNKNOWN = (
    "submitted",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "lost",
    "unknown",
)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED, LOST})


@dataclass(frozen=True)
class Target:
    """Where a cluster runs work: the executor kind and how to reach its Sail server."""

    executor: str  # "local" | "kubernetes"
    spark_remote: str | None = None  # sc://host:port for Spark Connect clients
    settings: dict[str, Any] = field(default_factory=dict)  # e.g. namespace, image, kubeconfig


@dataclass(frozen=True)
class Work:
    """The work of one attempt: SQL text, a Python entry point (`config.python`), or a
    command with its image and environment (`config.container` as `{image, argv, env}`)."""

    sql: str | None = None
    python: dict[str, Any] | None = None
    container: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sql": self.sql, "python": self.python, "container": self.container}


@dataclass(frozen=True)
class Submission:
    run_id: str
    attempt: int
    organization_id: str
    job_id: str
    work: Work
    target: Target
    timeout_seconds: int | None = None
    # The run runtime's variables (SAILPLANE_API_URL, SAILPLANE_RUN_TOKEN, ...): the work's
    # environment gets them; the run token among them is a credential (a Secret on
    # Kubernetes), never logged.
    variables: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The idempotency key: one execution per (run, attempt)."""
        return f"{self.run_id}-{self.attempt}"


# Why an attempt failed, where the executor can tell the work's own failure from the rest.
OUT_OF_MEMORY, IMAGE_PULL_FAILED, COMMAND_NOT_FOUND = (
    "out_of_memory",
    "image_pull_failed",
    "command_not_found",
)
KILLED_BY_SIGNAL = "killed_by_signal"  # the work's process died of a signal (kill -9, OOM)


@dataclass(frozen=True)
class Status:
    state: str
    message: str | None = None
    exit_code: int | None = None  # the work's exit status, once it has one
    cause: str | None = (
        None  # OUT_OF_MEMORY, IMAGE_PULL_FAILED, COMMAND_NOT_FOUND, KILLED_BY_SIGNAL
    )
    # What the executor measured of the attempt, where it can: `submitted_at` (it took the
    # submission), `started_at` (the work was handed to its process), `connect_ms` (from
    # then until the work's engine session answered), `first_output_at` and
    # `last_output_at` (the first and last line of output read); times as ISO 8601 in UTC.
    trace: dict[str, Any] | None = None


class Executor(Protocol):
    kind: str

    def submit(self, submission: Submission) -> bool:
        """Start the attempt unless it was submitted before; True when this call started it."""

    def status(self, run_id: str, attempt: int, target: Target | None = None) -> Status:
        """What the attempt is doing; `target` says where it was submitted."""

    def cancel(self, run_id: str, attempt: int, target: Target | None = None) -> None:
        """Stop the attempt: ask it to stop, then force it after the grace period."""

    def executions(self, run_id: str, attempt: int) -> int:
        """How many times this attempt started executing (0 or 1 when all is well)."""

    def usage(self, run_id: str, attempt: int, target: Target | None = None) -> list[Usage]:
        """What the executing attempt uses now, per instance (none when it is not running
        here, or nothing can be read)."""

    def close(self) -> None: ...


class RunTargets(Protocol):
    def target(self, organization_id: str, cluster_id: str | None) -> Target | None:
        """Where the cluster runs work, or None when it is not usable (not active, gone)."""


class FixedTarget:
    """Every cluster runs on one Sail server (tests, and a single-machine setup)."""

    def __init__(self, spark_remote: str) -> None:
        self.spark_remote = spark_remote

    def target(self, organization_id: str, cluster_id: str | None) -> Target | None:
        return Target(executor="local", spark_remote=self.spark_remote)


class NoTargets:
    """Until a cluster provider is wired in, no cluster is usable."""

    def target(self, organization_id: str, cluster_id: str | None) -> Target | None:
        return None
