"""Job runs: one execution request of a job, from creation to a terminal status.

A run copies what it needs from the job version it uses into a `JobVersionSnapshot`
value object when it is created, so the run machine never reads the job again (a later
version, a paused or deleted job change nothing in a run already made).

Statuses: `pending` (held, or waiting for dependencies), `ready` (eligible for dispatch),
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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

TRIGGERS = ("manual", "schedule", "retry", "dependency", "api")
CLEANUP_MODES = ("always", "never", "on_success")

# statusReason of a run that is not running (DECISIONS.md) ...
HELD = "held"
WAITING_FOR_DEPENDENCIES = "waiting_for_dependencies"
CONCURRENCY_LIMIT = "concurrency_limit"
CLUSTER_NOT_ACTIVE = "cluster_not_active"
DISPATCHING = "dispatching"
RETRY_BACKOFF = "retry_backoff"
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
# Failures of the system rather than of the work: once retries are spent they end in dead_letter.
SYSTEM_FAILURES = frozenset({EXECUTOR_LOST, SUBMISSION_FAILED, CLUSTER_NOT_ACTIVE})

CONCURRENCY_POLICIES = ("allow", "skip", "queue", "replace")
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
    """Exponential backoff before automatic retry number `retries_used` (1-based)."""
    delay = RETRY_BACKOFF_BASE * (2 ** max(retries_used - 1, 0))
    return min(delay, RETRY_BACKOFF_MAX)


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

        def apply(self, aggregate: JobRun) -> None:
            super().apply(aggregate)
            aggregate.job_id = self.job_id
            aggregate.scheduled_for = self.scheduled_for
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
            aggregate.not_before = None
            aggregate.dispatched_at = None
            aggregate.runner_started_at = None
            aggregate.runner_completed_at = None
            aggregate.exit_code = None
            aggregate.finished_at = None
            aggregate.executor = None
            aggregate.deleted = False
            aggregate.created_by = self.actor

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
            aggregate.attempt = self.attempt
            aggregate.retries_used = 0
            aggregate.hold = self.hold
            aggregate.trigger = "retry"
            aggregate.not_before = None
            aggregate.finished_at = None
            aggregate.dispatched_at = None
            aggregate.runner_started_at = None
            aggregate.runner_completed_at = None

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
        by: Actor,
        at: datetime,
    ) -> JobRun:
        """A new run: `pending` when held or waiting for `waiting_for` (job keys), else `ready`."""
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
        else:
            status, reason, message = READY, QUEUED, None
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
        )

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
        return self.status == READY and (self.not_before is None or self.not_before <= now)

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
        self, attempt: int, *, by: Actor, at: datetime, exit_code: int | None = None
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
    ) -> bool:
        """The attempt failed: a new attempt after a backoff while retries are left, else
        `failed` (the work failed) or `dead_letter` (the system failed)."""
        if not self._current(attempt, DISPATCHED, RUNNING):
            return False
        if self.retries_used < self.spec.max_retries:
            used = self.retries_used + 1
            self._trigger(
                self.RetryScheduled,
                by=by,
                at=at,
                status=READY,
                reason=RETRY_BACKOFF,
                message=f"Attempt {attempt} failed ({reason}): {message} Retry {used} of "
                f"{self.spec.max_retries}.",
                attempt=attempt + 1,
                not_before=at + retry_backoff(used),
            )
            return True
        if reason in SYSTEM_FAILURES:
            self._trigger(
                self.DeadLettered,
                by=by,
                at=at,
                status=DEAD_LETTER,
                reason=reason,
                message=f"{message} ({RETRIES_EXHAUSTED}: {self.spec.max_retries} retries spent)",
                attempt=attempt,
                exit_code=exit_code,
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
            )
        return True

    def time_out(self, attempt: int, *, by: Actor, at: datetime) -> bool:
        if not self._current(attempt, DISPATCHED, RUNNING):
            return False
        self._trigger(
            self.TimedOut,
            by=by,
            at=at,
            status=TIMEOUT,
            reason=TIMED_OUT,
            message=f"Stopped after timeoutSeconds={self.spec.timeout_seconds}.",
            attempt=attempt,
        )
        return True

    def deadline(self) -> datetime | None:
        """When the running attempt times out (None without timeoutSeconds or not running)."""
        if (
            self.status != RUNNING
            or not self.spec.timeout_seconds
            or self.runner_started_at is None
        ):
            return None
        return self.runner_started_at + timedelta(seconds=self.spec.timeout_seconds)


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
