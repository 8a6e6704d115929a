"""Job runs: one execution request of a job, from creation to a terminal status.

A run copies what it needs from the job version it uses into a `JobVersionSnapshot`
value object when it is created, so the run machine never reads the job again (a later
version, a paused or deleted job change nothing in a run already made).

Statuses: `pending` (held, paused, or waiting for dependencies), `ready` (eligible for
dispatch; *delayed* while `not_before` is in the future),
`dispatched` (claimed by a dispatcher, submitted to the cluster's executor), `running`
(the executor reported it started), then terminal `completed`, `failed`, `timeout`,
`cancelled`, `skipped` (the concurrency policy `skip` refused it) and `dead_letter`
(system failures spent the retries). Every transition is an event carrying its time, its
cause (the actor: `member:ID`, `service_account:ID`, `system:scheduler`,
`system:dispatcher`, `system:executor`) and a reason code; `status_reason` keeps the
last reason code and `status_message` the human text.

An *attempt* is one submission to an executor. The run id plus the attempt number is the
executor's idempotency key: a resubmitted attempt never executes twice. Automatic retries
(`config.lakesail.maxRetries`) and a manual retry each start a new attempt under the same
run id.

Queue options (`RunOptions`, all optional, absent from runs created before them): a
payload, tags and metadata, a priority (higher is claimed first), a concurrency key
(`maxConcurrentRuns` counts per job and key), a per-job idempotency key, a start time
(`not_before`) and an expiry (`expires_at`: a run not started by then ends `cancelled`
with reason `expired`), retry and timeout overrides, a debug flag, the batch it was
created in and the run it continues (replay lineage). The seed-003 statuses are a pure
function of (status, reason, not_before, now): `queue_status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.notification_sources import NOTIFICATION_SOURCES, Lookup, Notable

PENDING, READY, DISPATCHED, RUNNING = "pending", "ready", "dispatched", "running"
COMPLETED, FAILED, TIMEOUT, CANCELLED = "completed", "failed", "timeout", "cancelled"
SKIPPED, DEAD_LETTER = "skipped", "dead_letter"

STATUSES = (
    PENDING,
    READY,
    DISPATCHED,
    RUNNING,
    COMPLETED,
    FAILED,
    TIMEOUT,
    CANCELLED,
    SKIPPED,
    DEAD_LETTER,
)
ACTIVE = frozenset({DISPATCHED, RUNNING})
TERMINAL = frozenset({COMPLETED, FAILED, TIMEOUT, CANCELLED, SKIPPED, DEAD_LETTER})
RETRYABLE = frozenset({FAILED, TIMEOUT, CANCELLED, DEAD_LETTER})

TRIGGERS = ("manual", "schedule", "retry", "dependency", "api", "spawn")
CLEANUP_MODES = ("always", "never", "on_success")

# statusReason of a run that is not running (DECISIONS.md) ...
HELD = "held"
WAITING_FOR_DEPENDENCIES = "waiting_for_dependencies"
CONCURRENCY_LIMIT = "concurrency_limit"
CLUSTER_NOT_ACTIVE = "cluster_not_active"
DISPATCHING = "dispatching"
RETRY_BACKOFF = "retry_backoff"
PAUSED = "paused"
WAITING_REASONS = (CONCURRENCY_LIMIT, CLUSTER_NOT_ACTIVE)
# ... and the reason codes of the other transitions.
QUEUED = "queued"  # ready, nothing in the way yet
RELEASED = "released"
DEPENDENCIES_COMPLETED = "dependencies_completed"
STARTED = "started"
SUCCEEDED = "succeeded"
EXECUTION_FAILED = "execution_failed"
EXECUTOR_LOST = "executor_lost"
SUBMISSION_FAILED = "submission_failed"
TIMED_OUT = "timed_out"
RETRIES_EXHAUSTED = "retries_exhausted"
CANCELLED_BY_REQUEST = "cancel_requested"
JOB_DELETED = "job_deleted"
REPLACED = "replaced"
SKIPPED_BY_POLICY = "concurrency_skip"
RETRIED = "retried"
DELAYED = "delayed"  # ready, but not before a requested start time
RESUMED = "resumed"
RESCHEDULED = "rescheduled"
RESTARTED = "restarted"
EXPIRED = "expired"  # cancelled: not started by expires_at
CRASHED = "crashed"  # the work's process died (killed by a signal, e.g. out of memory)
# The run runtime (docs/runs-v1.md): an executing run waiting for the children it spawned
# (seed 003 shows it `waiting`), asked to pause at its next checkpoint, or back at work.
WAITING_FOR_CHILDREN = "waiting_for_children"
PAUSE_REQUESTED = "pause_requested"
CONTINUED = "continued"
QUERY_NOT_FOUND = "query_not_found"  # the platform could not build the work ...
IMAGE_PULL_FAILED = "image_pull_failed"  # ... pull the container's image ...
COMMAND_NOT_FOUND = "command_not_found"  # ... or find the container's command
# Failures of the platform rather than of the work: they show as `system_failed`.
PLATFORM_FAILURES = frozenset({QUERY_NOT_FOUND, IMAGE_PULL_FAILED, COMMAND_NOT_FOUND})
# Failures of the system rather than of the work: once retries are spent they end in dead_letter.
SYSTEM_FAILURES = frozenset({EXECUTOR_LOST, SUBMISSION_FAILED, CLUSTER_NOT_ACTIVE})

CONCURRENCY_POLICIES = ("allow", "skip", "queue", "replace")
RETRY_BACKOFFS = ("fixed", "exponential")
# Statuses a run can be restarted from: unfinished, or ended by a failure.
RESTARTABLE = frozenset({PENDING, READY, DISPATCHED, RUNNING, FAILED, TIMEOUT, DEAD_LETTER})
# Statuses a replay (a new run continuing this one) starts from: finished, not completed.
REPLAYABLE = frozenset({FAILED, TIMEOUT, CANCELLED, SKIPPED, DEAD_LETTER})
UNSTARTED = frozenset({PENDING, READY})

# The seed-003 run-queue statuses, each a projection of (status, reason, not_before, now).
QUEUE_STATUSES = (
    "delayed",
    "queued",
    "dequeued",
    "executing",
    "waiting",
    "completed",
    "failed",
    "timed_out",
    "crashed",
    "system_failed",
    "canceled",
    "expired",
    "dead_letter",
)
QUEUE_TRIGGERS = {
    "manual": "manual",
    "api": "manual",
    "schedule": "cron",
    "dependency": "workflow",
    "retry": "retry",
    "spawn": "spawn",
}
RETRY_BACKOFF_BASE = timedelta(seconds=1)
RETRY_BACKOFF_MAX = timedelta(minutes=5)


@dataclass(frozen=True)
class JobVersionSnapshot:
    """What a run takes from the job version it uses; never changes for the run."""

    job_id: str
    version: int
    cluster_id: str | None
    job_key: str = ""
    sql_source: str | None = None
    sql_query_id: str | None = None
    python: dict[str, Any] | None = None  # config.python as the version holds it
    container: dict[str, Any] | None = None  # config.container: image, command, env
    timeout_seconds: int | None = None
    max_retries: int = 0
    concurrency_policy: str = "allow"
    max_concurrent_runs: int | None = None
    depends_on: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.concurrency_policy not in CONCURRENCY_POLICIES:
            raise InvalidValueError(
                f"concurrencyPolicy must be one of {', '.join(CONCURRENCY_POLICIES)}.",
                field="concurrencyPolicy",
            )

    @property
    def has_work(self) -> bool:
        return bool(self.sql_source or self.sql_query_id or self.python or self.container)

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        value["depends_on"] = list(self.depends_on)
        value["team_ids"] = list(self.team_ids)
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> JobVersionSnapshot:
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        known["depends_on"] = tuple(known.get("depends_on") or ())
        known["team_ids"] = tuple(known.get("team_ids") or ())
        return cls(**known)


MAX_PRIORITY = 1_000_000
MAX_LABELS = 64


def _labels(value: dict[str, Any], name: str) -> dict[str, str]:
    if len(value) > MAX_LABELS or not all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 128 and len(v) <= 1024
        for k, v in value.items()
    ):
        raise InvalidValueError(
            f"{name} must map at most {MAX_LABELS} keys (<= 128 characters) to strings "
            "(<= 1024 characters).",
            field=name,
        )
    return dict(value)


@dataclass(frozen=True)
class RunOptions:
    """How one run is queued and retried, beyond what its job version says.

    Every field is optional; `RunOptions()` is a run as the seed-004 API made them before
    these existed. `max_attempts_override` and `timeout_secs_override` replace the
    version's `maxRetries + 1` and `timeoutSeconds`; `retry_backoff` (`fixed` or
    `exponential`, default exponential) with `retry_initial_delay_secs` (default 1) and
    `retry_max_delay_secs` (default 300) replace the default backoff.
    """

    payload: dict[str, Any] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    concurrency_key: str | None = None
    idempotency_key: str | None = None
    max_attempts_override: int | None = None
    timeout_secs_override: int | None = None
    retry_backoff: str | None = None
    retry_initial_delay_secs: float | None = None
    retry_max_delay_secs: float | None = None
    debug_mode: bool = False
    batch_id: str | None = None
    continuation_of: str | None = None
    lineage_depth: int = 0
    parent_run_id: str | None = None  # the run that spawned this one (trigger `spawn`)

    def __post_init__(self) -> None:
        if self.payload is not None and not isinstance(self.payload, dict):
            raise InvalidValueError("payload must be a JSON object.", field="payload")
        object.__setattr__(self, "tags", _labels(self.tags, "tags"))
        object.__setattr__(self, "metadata", _labels(self.metadata, "metadata"))
        if not -MAX_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise InvalidValueError(
                f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}.", field="priority"
            )
        for name in ("concurrency_key", "idempotency_key"):
            value = getattr(self, name)
            if value is not None and not 1 <= len(value) <= 256:
                raise InvalidValueError(f"{name} must have 1 to 256 characters.", field=name)
        for name in ("max_attempts_override", "timeout_secs_override"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 1_000_000:
                raise InvalidValueError(f"{name} must be between 1 and 1000000.", field=name)
        if self.retry_backoff is not None and self.retry_backoff not in RETRY_BACKOFFS:
            raise InvalidValueError(
                "retry_backoff must be fixed or exponential.", field="retry_backoff"
            )
        for name in ("retry_initial_delay_secs", "retry_max_delay_secs"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 86_400:
                raise InvalidValueError(f"{name} must be between 0 and 86400.", field=name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> RunOptions:
        known = {k: v for k, v in (value or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def backoff(self, retries_used: int) -> timedelta:
        """The wait before automatic retry number `retries_used` (1-based)."""
        initial = (
            RETRY_BACKOFF_BASE
            if self.retry_initial_delay_secs is None
            else timedelta(seconds=self.retry_initial_delay_secs)
        )
        ceiling = (
            RETRY_BACKOFF_MAX
            if self.retry_max_delay_secs is None
            else timedelta(seconds=self.retry_max_delay_secs)
        )
        if self.retry_backoff == "fixed":
            return min(initial, ceiling)
        return min(initial * (2 ** min(max(retries_used - 1, 0), 30)), ceiling)


def queue_status(status: str, reason: str, not_before: datetime | None, now: datetime) -> str:
    """The seed-003 status of a run (docs/runs-v1.md has the table)."""
    if status == PENDING or (status == RUNNING and reason == WAITING_FOR_CHILDREN):
        return "waiting"
    if status == READY:
        return "delayed" if not_before is not None and not_before > now else "queued"
    if status == FAILED:
        if reason == CRASHED:
            return "crashed"
        return "system_failed" if reason in PLATFORM_FAILURES else "failed"
    if status == CANCELLED:
        return "expired" if reason == EXPIRED else "canceled"
    return {
        DISPATCHED: "dequeued",
        RUNNING: "executing",
        COMPLETED: "completed",
        TIMEOUT: "timed_out",
        SKIPPED: "canceled",
        DEAD_LETTER: "dead_letter",
    }[status]


# --- the concurrency rule the dispatcher and the scheduler share -----------------------------


@dataclass(frozen=True)
class ConcurrencyDecision:
    """What to do with a run that is ready to start, given the job's active runs.

    `start`: start it now (after cancelling `cancel_run_ids`, for `replace`);
    `wait`: leave it ready with statusReason `concurrency_limit`;
    `skip`: end it as `skipped`.
    """

    action: str  # "start" | "wait" | "skip"
    cancel_run_ids: tuple[str, ...] = ()

    @property
    def starts(self) -> bool:
        return self.action == "start"


def decide_concurrency(
    policy: str, max_concurrent_runs: int | None, active_run_ids: Sequence[str]
) -> ConcurrencyDecision:
    """The one concurrency rule: `maxConcurrentRuns` and `concurrencyPolicy`.

    `active_run_ids` are the job's runs already dispatched or running, oldest first.
    The limit is `max_concurrent_runs`; without one, `allow` has no limit and the other
    policies allow one run at a time. Under the limit the run starts. At the limit:
    `allow` and `queue` wait (the run stays ready, statusReason `concurrency_limit`),
    `skip` ends the run as skipped, `replace` cancels the oldest active runs so that
    this one fits, and starts it.
    """
    if policy not in CONCURRENCY_POLICIES:
        raise InvalidValueError(
            f"concurrencyPolicy must be one of {', '.join(CONCURRENCY_POLICIES)}.",
            field="concurrencyPolicy",
        )
    if max_concurrent_runs is None:
        if policy == "allow":
            return ConcurrencyDecision("start")
        limit = 1
    else:
        limit = max(max_concurrent_runs, 1)
    active = list(active_run_ids)
    if len(active) < limit:
        return ConcurrencyDecision("start")
    if policy == "skip":
        return ConcurrencyDecision("skip")
    if policy == "replace":
        return ConcurrencyDecision("start", cancel_run_ids=tuple(active[: len(active) - limit + 1]))
    return ConcurrencyDecision("wait")


def retry_backoff(retries_used: int) -> timedelta:
    """The default backoff before automatic retry number `retries_used` (1-based)."""
    return RunOptions().backoff(retries_used)


# --- the aggregate -------------------------------------------------------------------------


class JobRun(SailplaneAggregate):
    job_id: str
    job_version: int
    spec: JobVersionSnapshot
    trigger: str
    hold: bool
    resource_cleanup_mode: str
    status: str
    status_reason: str
    status_message: str | None
    attempt: int
    retries_used: int
    not_before: datetime | None
    dispatched_at: datetime | None
    runner_started_at: datetime | None
    runner_completed_at: datetime | None
    finished_at: datetime | None
    executor: str | None
    deleted: bool
    scheduled_for: datetime | None  # the slot of a run the scheduler made
    created_by: str  # the actor that created the run (member:ID, service_account:ID, system:...)
    options: RunOptions
    expires_at: datetime | None
    idempotency_key_held: bool  # the run still owns its idempotency key (not reset)
    replayed_by: str | None  # the newest run that replays this one
    paused_from: tuple[str, str, str | None]  # (status, reason, message) a resume returns to
    result: Any  # what the work reported with `sailplane.runtime.result` (None: nothing yet)

    class Created(SailplaneAggregate.Created):
        job_id: str
        job_version: dict[str, Any]
        trigger: str
        hold: bool
        resource_cleanup_mode: str
        status: str
        reason: str
        message: str | None
        scheduled_for: datetime | None = None  # the slot, for a run the scheduler made
        options: dict[str, Any] | None = None  # RunOptions; absent before they existed
        not_before: datetime | None = None  # a requested start time
        expires_at: datetime | None = None

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.job_id = self.job_id
            aggregate.scheduled_for = self.scheduled_for
            aggregate.options = RunOptions.from_dict(self.options)
            aggregate.expires_at = self.expires_at
            aggregate.idempotency_key_held = aggregate.options.idempotency_key is not None
            aggregate.replayed_by = None
            aggregate.spec = JobVersionSnapshot.from_dict(self.job_version)
            aggregate.job_version = aggregate.spec.version
            aggregate.trigger = self.trigger
            aggregate.hold = self.hold
            aggregate.resource_cleanup_mode = self.resource_cleanup_mode
            aggregate.status = self.status
            aggregate.status_reason = self.reason
            aggregate.status_message = self.message
            aggregate.attempt = 1
            aggregate.retries_used = 0
            aggregate.not_before = self.not_before
            aggregate.dispatched_at = None
            aggregate.runner_started_at = None
            aggregate.runner_completed_at = None
            aggregate.exit_code = None
            aggregate.finished_at = None
            aggregate.executor = None
            aggregate.deleted = False
            aggregate.created_by = self.actor
            aggregate.result = None

    class Transition(SailplaneAggregate.Event):
        """Base of the status changes: the new status, the reason code and message."""

        status: str
        reason: str
        message: str | None

        def apply(self, aggregate: JobRun) -> None:
            aggregate.status = self.status
            aggregate.status_reason = self.reason
            aggregate.status_message = self.message
            if self.status in TERMINAL:
                aggregate.finished_at = self.timestamp

    class Released(Transition):
        pass

    class Waiting(Transition):
        """Still ready, but something is in the way (concurrency_limit, cluster_not_active)."""

    class Dispatched(Transition):
        attempt: int
        executor: str

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.executor = self.executor
            aggregate.dispatched_at = self.timestamp
            aggregate.runner_started_at = None
            aggregate.runner_completed_at = None
            aggregate.exit_code = None
            aggregate.not_before = None

    class Started(Transition):
        attempt: int

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.runner_started_at = self.timestamp

    class Finished(Transition):
        """Base of the ends of an attempt that end the run too."""

        attempt: int
        exit_code: int | None = None  # the work's exit status, when the executor saw one
        # What the executor measured of the attempt (`executors.Status.trace`): when it took
        # the submission and started the work, the engine session's opening, the first and
        # last output. Timings only; absent before it existed.
        trace: dict[str, Any] | None = None
        # The sums of the usage the work reported (tokens, cost), on the run's last event.
        usage: dict[str, int] | None = None

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.runner_completed_at = self.timestamp
            aggregate.exit_code = self.exit_code

    class Completed(Finished):
        pass

    class Failed(Finished):
        pass

    class TimedOut(Finished):
        pass

    class DeadLettered(Finished):
        pass

    class RetryScheduled(Transition):
        """An attempt failed with retries left: a new attempt waits for its backoff."""

        attempt: int  # the new attempt
        not_before: datetime

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.attempt = self.attempt
            aggregate.retries_used += 1
            aggregate.not_before = self.not_before
            aggregate.runner_completed_at = self.timestamp

    class Cancelled(Transition):
        pass

    class Skipped(Transition):
        pass

    class Retried(Transition):
        """A manual retry: a new attempt under the same id, automatic retries counted afresh."""

        attempt: int
        hold: bool

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            _start_afresh(aggregate, self.attempt, hold=self.hold)
            aggregate.trigger = "retry"

    class Paused(Transition):
        """Held until resumed; `resume_*` is where a resume returns it."""

        resume_status: str
        resume_reason: str
        resume_message: str | None

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.paused_from = (self.resume_status, self.resume_reason, self.resume_message)

    class Resumed(Transition):
        pass

    class Rescheduled(Transition):
        not_before: datetime

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.not_before = self.not_before

    class Restarted(Transition):
        """A new attempt of the same run from where it stood, with the options it now has.

        `stopped_attempt`: the attempt that was dispatched or running, which the
        dispatcher stops (None when nothing was executing)."""

        attempt: int
        stopped_attempt: int | None
        options: dict[str, Any]

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            _start_afresh(aggregate, self.attempt, hold=False)
            aggregate.options = RunOptions.from_dict(self.options)

    class Replayed(SailplaneAggregate.Event):
        """A new run (`by_run_id`) continues this finished one."""

        by_run_id: str

        def apply(self, aggregate: JobRun) -> None:
            aggregate.replayed_by = self.by_run_id

    class IdempotencyKeyReset(SailplaneAggregate.Event):
        """The run gave up its idempotency key: the next create with it makes a new run."""

        def apply(self, aggregate: JobRun) -> None:
            aggregate.idempotency_key_held = False

    class ResultReported(SailplaneAggregate.Event):
        """The work reported its result (`sailplane.runtime.result`, or a SQL run's rows)."""

        attempt: int
        value: Any

        def apply(self, aggregate: JobRun) -> None:
            aggregate.result = self.value

    class DebugModeSet(SailplaneAggregate.Event):
        enabled: bool

        def apply(self, aggregate: JobRun) -> None:
            aggregate.options = replace(aggregate.options, debug_mode=self.enabled)

    class AwaitingChildren(Transition):
        """The executing work waits for runs it spawned (`wait_for`)."""

        attempt: int
        run_ids: list[str]

    class Continued(Transition):
        """The work is back at it: its children finished, or it stopped waiting."""

        attempt: int

    class PauseRequested(Transition):
        """Pause asked while executing: the work stops at its next checkpoint."""

    class Suspended(Transition):
        """The work saved a checkpoint after a pause was asked and its attempt ended: the
        run waits, paused; resuming starts `attempt` (the next), which reads that checkpoint."""

        attempt: int

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.attempt = self.attempt
            aggregate.not_before = None
            aggregate.dispatched_at = None
            aggregate.runner_started_at = None
            aggregate.runner_completed_at = None
            aggregate.paused_from = (READY, RESUMED, None)

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: JobRun) -> None:
            aggregate.deleted = True

    # --- create ----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        id: str,
        spec: JobVersionSnapshot,
        trigger: str,
        hold: bool,
        waiting_for: Sequence[str] = (),
        resource_cleanup_mode: str = "always",
        scheduled_for: datetime | None = None,
        options: RunOptions | None = None,
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
        by: Actor,
        at: datetime,
    ) -> JobRun:
        """A new run: `pending` when held or waiting for `waiting_for` (job keys), else
        `ready` (reason `delayed` when `not_before` is still to come)."""
        if trigger not in TRIGGERS:
            raise InvalidValueError(
                f"trigger must be one of {', '.join(TRIGGERS)}.", field="trigger"
            )
        if resource_cleanup_mode not in CLEANUP_MODES:
            raise InvalidValueError(
                f"resourceCleanupMode must be one of {', '.join(CLEANUP_MODES)}.",
                field="resourceCleanupMode",
            )
        if hold:
            status, reason, message = PENDING, HELD, "Held until released."
        elif waiting_for:
            status, reason = PENDING, WAITING_FOR_DEPENDENCIES
            message = f"Waiting for job(s) {', '.join(waiting_for)} to complete."
        elif not_before is not None and not_before > at:
            status, reason, message = READY, DELAYED, f"Not before {not_before.isoformat()}."
        else:
            status, reason, message = READY, QUEUED, None
        if expires_at is not None and not_before is not None and expires_at <= not_before:
            raise InvalidValueError("expires_at must be after scheduled_at.", field="expires_at")
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            job_id=spec.job_id,
            job_version=spec.to_dict(),
            trigger=trigger,
            hold=hold,
            resource_cleanup_mode=resource_cleanup_mode,
            status=status,
            reason=reason,
            message=message,
            scheduled_for=scheduled_for,
            options=(options or RunOptions()).to_dict(),
            not_before=not_before,
            expires_at=expires_at,
        )

    # --- the effective settings: the version's, unless the run overrides them ----------------

    @property
    def max_retries(self) -> int:
        override = self.options.max_attempts_override
        return self.spec.max_retries if override is None else override - 1

    @property
    def timeout_seconds(self) -> int | None:
        return self.options.timeout_secs_override or self.spec.timeout_seconds

    # --- requests from people and the scheduler ---------------------------------------------

    def release(self, *, by: Actor, at: datetime, reason: str = RELEASED) -> None:
        """pending -> ready (409 from any other status)."""
        if self.status != PENDING:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only a pending run can be released.",
                code="run_not_pending",
            )
        self._trigger(self.Released, by=by, at=at, status=READY, reason=reason, message=None)

    def retry(self, *, hold: bool, by: Actor, at: datetime) -> None:
        """failed | timeout | cancelled | dead_letter -> ready (or pending when held)."""
        if self.status not in RETRYABLE:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only a failed, timed-out, cancelled or "
                "dead-lettered run can be retried.",
                code="run_not_retryable",
            )
        self._trigger(
            self.Retried,
            by=by,
            at=at,
            status=PENDING if hold else READY,
            reason=HELD if hold else RETRIED,
            message="Held until released." if hold else None,
            attempt=self.attempt + 1,
            hold=hold,
        )

    def cancel(
        self,
        *,
        by: Actor,
        at: datetime,
        reason: str = CANCELLED_BY_REQUEST,
        message: str | None = None,
    ) -> None:
        """Any non-terminal status -> cancelled (409 from a terminal one).

        A dispatched or running attempt is then stopped by its executor: the dispatcher
        sees this event and stops the work, with a deadline after which it is killed.
        """
        if self.status in TERMINAL:
            raise ConflictError(
                f"Job run {self.id} is already {self.status}; only an unfinished run can be cancelled.",
                code="run_finished",
            )
        self._trigger(
            self.Cancelled,
            by=by,
            at=at,
            status=CANCELLED,
            reason=reason,
            message=message or f"Cancelled by {by}.",
        )

    def pause(self, *, by: Actor, at: datetime, checkpointed: bool = False) -> None:
        """pending | ready -> pending (paused) until `resume`. An executing run whose work
        has checkpointed (`checkpointed`) is asked to stop at its next checkpoint
        (`PauseRequested`); one that never checkpointed cannot be paused (409
        `run_not_pausable`), nor can a dispatched one that has not started (409)."""
        if self.status == RUNNING:
            if self.status_reason == PAUSE_REQUESTED:
                raise ConflictError(f"Job run {self.id} is already pausing.", code="run_paused")
            if not checkpointed:
                raise ConflictError(
                    f"Job run {self.id} is executing and its work has never called "
                    "checkpoint(): it can only be paused at a checkpoint, so it cannot be "
                    "paused now (cancel it, or let it finish).",
                    code="run_not_pausable",
                )
            self._trigger(
                self.PauseRequested,
                by=by,
                at=at,
                status=RUNNING,
                reason=PAUSE_REQUESTED,
                message=f"Pause asked by {by}: the work stops at its next checkpoint.",
            )
            return
        if self.status in ACTIVE:
            raise ConflictError(
                f"Job run {self.id} is dequeued and has not started executing; it cannot be "
                "paused until it executes.",
                code="run_executing",
            )
        if self.status in TERMINAL:
            raise _finished(self, "paused")
        if self.status_reason == PAUSED:
            raise ConflictError(f"Job run {self.id} is already paused.", code="run_paused")
        self._trigger(
            self.Paused,
            by=by,
            at=at,
            status=PENDING,
            reason=PAUSED,
            message=f"Paused by {by}.",
            resume_status=self.status,
            resume_reason=self.status_reason,
            resume_message=self.status_message,
        )

    def resume(self, *, by: Actor, at: datetime) -> None:
        """A paused run returns to where it was: ready (reason `resumed`), or still pending
        when it was held or waiting for dependencies."""
        if self.status != PENDING or self.status_reason != PAUSED:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only a paused run can be resumed.",
                code="run_not_paused",
            )
        status, reason, message = self.paused_from
        if status == READY:
            reason, message = RESUMED, None
        self._trigger(self.Resumed, by=by, at=at, status=status, reason=reason, message=message)

    def reschedule(self, not_before: datetime, *, by: Actor, at: datetime) -> None:
        """A run not started yet gets a new start time (409 once dispatched or finished)."""
        if self.status not in UNSTARTED:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only a run not started yet can be "
                "rescheduled.",
                code="run_not_reschedulable",
            )
        if self.expires_at is not None and not_before >= self.expires_at:
            raise InvalidValueError(
                "scheduled_at must be before the run's expires_at.", field="scheduled_at"
            )
        if self.status == READY:
            reason = DELAYED if not_before > at else RESCHEDULED
        else:
            reason = self.status_reason
        self._trigger(
            self.Rescheduled,
            by=by,
            at=at,
            status=self.status,
            reason=reason,
            message=f"Not before {not_before.isoformat()}.",
            not_before=not_before,
        )

    def expire(self, *, by: Actor, at: datetime) -> bool:
        """A run still not started at its `expires_at` ends cancelled (reason `expired`)."""
        if self.status not in UNSTARTED or self.expires_at is None or self.expires_at > at:
            return False
        self._trigger(
            self.Cancelled,
            by=by,
            at=at,
            status=CANCELLED,
            reason=EXPIRED,
            message=f"Not started by its expires_at {self.expires_at.isoformat()}.",
        )
        return True

    def restart(self, options: RunOptions, *, by: Actor, at: datetime) -> None:
        """A new attempt of this run from any unfinished or failed status, with `options`
        (the run's own, possibly overridden); an executing attempt is stopped."""
        if self.status not in RESTARTABLE:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only an unfinished or failed run can be "
                "restarted.",
                code="run_not_restartable",
            )
        self._trigger(
            self.Restarted,
            by=by,
            at=at,
            status=READY,
            reason=RESTARTED,
            message=None,
            attempt=self.attempt + 1,
            stopped_attempt=self.attempt if self.status in ACTIVE else None,
            options=options.to_dict(),
        )

    def replay_options(self, *, batch_id: str | None = None) -> RunOptions:
        """The options of a new run that replays this one (409 unless it may be replayed)."""
        self._require_replayable()
        return RunOptions(
            payload=self.options.payload,
            tags=self.options.tags,
            metadata=self.options.metadata,
            priority=self.options.priority,
            concurrency_key=self.options.concurrency_key,
            debug_mode=self.options.debug_mode,
            batch_id=batch_id,
            continuation_of=self.id,
            lineage_depth=self.options.lineage_depth + 1,
        )

    def replayed(self, by_run_id: str, *, dead_letter_only: bool, by: Actor, at: datetime) -> None:
        """Record the run that replays this one; a dead-lettered run then leaves the DLQ."""
        if dead_letter_only and (self.status != DEAD_LETTER or self.replayed_by is not None):
            raise ConflictError(
                f"Job run {self.id} is not in the dead-letter queue.", code="run_not_dead_lettered"
            )
        self._require_replayable()
        self._trigger(self.Replayed, by=by, at=at, by_run_id=by_run_id)

    def _require_replayable(self) -> None:
        if self.status not in REPLAYABLE:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only a run that finished without "
                "completing can be replayed.",
                code="run_not_replayable",
            )

    def reset_idempotency_key(self, *, by: Actor, at: datetime) -> str:
        """Give up the run's idempotency key; returns it (409 when it holds none)."""
        key = self.options.idempotency_key
        if key is None or not self.idempotency_key_held:
            raise ConflictError(
                f"Job run {self.id} holds no idempotency key.", code="no_idempotency_key"
            )
        self._trigger(self.IdempotencyKeyReset, by=by, at=at)
        return key

    # --- what the work reports through the run runtime ---------------------------------------

    def report_result(self, attempt: int, value: Any, *, by: Actor, at: datetime) -> bool:
        """Record the work's result; False when the run holds that value already (the work
        sent it again after its answer was lost), which records nothing."""
        self._require_current(attempt)
        if self.result is not None and self.result == value:
            return False
        self._trigger(self.ResultReported, by=by, at=at, attempt=attempt, value=value)
        return True

    def set_debug_mode(self, enabled: bool, *, by: Actor, at: datetime) -> bool:
        """Turn debug mode on or off (for the next attempt's work); False when unchanged."""
        if self.options.debug_mode == enabled:
            return False
        self._trigger(self.DebugModeSet, by=by, at=at, enabled=enabled)
        return True

    def await_children(self, attempt: int, run_ids: list[str], *, by: Actor, at: datetime) -> bool:
        """The executing work waits for `run_ids`: seed 003 shows the run `waiting`."""
        self._require_current(attempt)
        if self.status_reason == WAITING_FOR_CHILDREN:
            return False
        self._trigger(
            self.AwaitingChildren,
            by=by,
            at=at,
            status=RUNNING,
            reason=WAITING_FOR_CHILDREN,
            message=f"Waiting for run(s) {', '.join(run_ids)}.",
            attempt=attempt,
            run_ids=list(run_ids),
        )
        return True

    def continue_work(self, attempt: int, *, by: Actor, at: datetime) -> bool:
        self._require_current(attempt)
        if self.status_reason != WAITING_FOR_CHILDREN:
            return False
        self._trigger(
            self.Continued,
            by=by,
            at=at,
            status=RUNNING,
            reason=CONTINUED,
            message=None,
            attempt=attempt,
        )
        return True

    def suspend(self, attempt: int, *, by: Actor, at: datetime) -> bool:
        """After a checkpoint: when a pause was asked, end the attempt and wait, paused."""
        self._require_current(attempt)
        if self.status_reason != PAUSE_REQUESTED:
            return False
        self._trigger(
            self.Suspended,
            by=by,
            at=at,
            status=PENDING,
            reason=PAUSED,
            message=f"Paused at a checkpoint of attempt {attempt}.",
            attempt=attempt + 1,
        )
        return True

    def _require_current(self, attempt: int) -> None:
        if not self._current(attempt, DISPATCHED, RUNNING):
            raise ConflictError(
                f"Attempt {attempt} of job run {self.id} is not executing (the run is "
                f"{self.status}, attempt {self.attempt}).",
                code="attempt_not_current",
            )

    def delete(self, *, by: Actor, at: datetime) -> None:
        if self.status not in TERMINAL:
            raise ConflictError(
                f"Job run {self.id} is {self.status}; only a finished run can be deleted "
                "(cancel it first).",
                code="run_not_finished",
            )
        self._trigger(self.Deleted, by=by, at=at)

    # --- the dispatcher ----------------------------------------------------------------------

    def is_due(self, now: datetime) -> bool:
        return (
            self.status == READY
            and (self.not_before is None or self.not_before <= now)
            and (self.expires_at is None or self.expires_at > now)
        )

    def wait(self, reason: str, message: str, *, by: Actor, at: datetime) -> bool:
        """Stay ready because of `reason`; records an event only when the reason changes."""
        if reason not in WAITING_REASONS:
            raise ValueError(f"not a waiting reason: {reason}")
        if self.status != READY or (
            self.status_reason == reason and self.status_message == message
        ):
            return False
        self._trigger(self.Waiting, by=by, at=at, status=READY, reason=reason, message=message)
        return True

    def skip(self, *, by: Actor, at: datetime, message: str) -> None:
        if self.status != READY:
            raise _conflict_status(self, "skipped", READY)
        self._trigger(
            self.Skipped, by=by, at=at, status=SKIPPED, reason=SKIPPED_BY_POLICY, message=message
        )

    def dispatch(self, *, executor: str, by: Actor, at: datetime) -> int:
        """ready -> dispatched; returns the attempt to submit (the idempotency key's half)."""
        if not self.is_due(at):
            raise _conflict_status(self, "dispatched", READY)
        self._trigger(
            self.Dispatched,
            by=by,
            at=at,
            status=DISPATCHED,
            reason=DISPATCHING,
            message=f"Attempt {self.attempt} submitted to the {executor} executor.",
            attempt=self.attempt,
            executor=executor,
        )
        return self.attempt

    # --- what the executor reports: ignored when stale (another attempt, or finished) ---------

    def _current(self, attempt: int, *statuses: str) -> bool:
        return self.attempt == attempt and self.status in statuses

    def start(self, attempt: int, *, by: Actor, at: datetime) -> bool:
        if not self._current(attempt, DISPATCHED):
            return False
        self._trigger(
            self.Started,
            by=by,
            at=at,
            status=RUNNING,
            reason=STARTED,
            message=None,
            attempt=attempt,
        )
        return True

    def complete(
        self,
        attempt: int,
        *,
        by: Actor,
        at: datetime,
        exit_code: int | None = None,
        trace: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
    ) -> bool:
        if not self._current(attempt, DISPATCHED, RUNNING):
            return False
        self._trigger(
            self.Completed,
            by=by,
            at=at,
            status=COMPLETED,
            reason=SUCCEEDED,
            message=None,
            attempt=attempt,
            exit_code=exit_code,
            trace=trace,
            usage=usage,
        )
        return True

    def fail(
        self,
        attempt: int,
        *,
        reason: str,
        message: str,
        by: Actor,
        at: datetime,
        exit_code: int | None = None,
        trace: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
    ) -> bool:
        """The attempt failed: a new attempt after a backoff while retries are left, else
        `failed` (the work failed) or `dead_letter`.

        The dead-letter rule: a run whose last attempt was lost by the platform
        (`SYSTEM_FAILURES`: executor_lost, submission_failed, cluster_not_active) ends
        `dead_letter` once its retries are spent (with none configured, at once); a run
        whose work crashed (`crashed`: killed by a signal) ends `dead_letter` when it had
        automatic retries and all were spent on such failures, else `failed` with reason
        `crashed`. Every other failure ends `failed` with its reason."""
        if not self._current(attempt, DISPATCHED, RUNNING):
            return False
        if self.retries_used < self.max_retries:
            used = self.retries_used + 1
            self._trigger(
                self.RetryScheduled,
                by=by,
                at=at,
                status=READY,
                reason=RETRY_BACKOFF,
                message=f"Attempt {attempt} failed ({reason}): {message} Retry {used} of "
                f"{self.max_retries}.",
                attempt=attempt + 1,
                not_before=at + self.options.backoff(used),
            )
            return True
        if reason in SYSTEM_FAILURES or (reason == CRASHED and self.max_retries > 0):
            self._trigger(
                self.DeadLettered,
                by=by,
                at=at,
                status=DEAD_LETTER,
                reason=reason,
                message=f"{message} ({RETRIES_EXHAUSTED}: {self.max_retries} retries spent)",
                attempt=attempt,
                exit_code=exit_code,
                trace=trace,
                usage=usage,
            )
        else:
            self._trigger(
                self.Failed,
                by=by,
                at=at,
                status=FAILED,
                reason=reason,
                message=message,
                attempt=attempt,
                exit_code=exit_code,
                trace=trace,
                usage=usage,
            )
        return True

    def time_out(
        self, attempt: int, *, by: Actor, at: datetime, trace: dict[str, Any] | None = None
    ) -> bool:
        if not self._current(attempt, DISPATCHED, RUNNING):
            return False
        self._trigger(
            self.TimedOut,
            by=by,
            at=at,
            status=TIMEOUT,
            reason=TIMED_OUT,
            message=f"Stopped after timeoutSeconds={self.timeout_seconds}.",
            attempt=attempt,
            trace=trace,
        )
        return True

    def deadline(self) -> datetime | None:
        """When the running attempt times out (None without timeoutSeconds or not running)."""
        if self.status != RUNNING or not self.timeout_seconds or self.runner_started_at is None:
            return None
        return self.runner_started_at + timedelta(seconds=self.timeout_seconds)


def _start_afresh(run: JobRun, attempt: int, *, hold: bool) -> None:
    """A new attempt by request (retry, restart): automatic retries are counted afresh."""
    run.attempt = attempt
    run.retries_used = 0
    run.hold = hold
    run.not_before = None
    run.finished_at = None
    run.dispatched_at = None
    run.runner_started_at = None
    run.runner_completed_at = None


def _finished(run: JobRun, action: str) -> ConflictError:
    return ConflictError(
        f"Job run {run.id} is already {run.status}; a finished run cannot be {action}.",
        code="run_finished",
    )


def _conflict_status(run: JobRun, action: str, required: str) -> ConflictError:
    return ConflictError(
        f"Job run {run.id} is {run.status}; it can be {action} only when {required}.",
        code="run_status_conflict",
    )


# --- what the notifier hears about ------------------------------------------------------------

NOTIFIED_STATUSES = TERMINAL  # job_run.completed|failed|timeout|cancelled|skipped|dead_letter


@NOTIFICATION_SOURCES.maps(JobRun.Transition)
def _run_finished(event: JobRun.Transition, lookup: Lookup) -> Notable | None:
    """A transition into a terminal status notifies `job_run.<status>`."""
    if event.status not in NOTIFIED_STATUSES:
        return None
    run = lookup(event.originator_id, event.originator_version)
    if run is None:
        return None
    kind, _, ident = run.created_by.partition(":")
    return Notable(
        event_type=f"job_run.{event.status}",
        resource_type="job_run",
        resource_id=event.originator_id,
        related_ids=(run.job_id,),
        team_ids=tuple(run.spec.team_ids),
        member_id=ident if kind == "member" else None,
        subject=f"Run {event.originator_id} of job {run.spec.job_key or run.job_id} {event.status}",
        payload={
            "jobId": run.job_id,
            "jobKey": run.spec.job_key,
            "jobVersion": run.job_version,
            "status": event.status,
            "reason": event.reason,
            "message": event.message,
            "attempt": run.attempt,
            "trigger": run.trigger,
        },
    )
