"""Job-run use cases: create, release, retry, cancel, delete; dispatch and executor reports.

Two ports keep this module free of I/O: `JobVersions` turns a job id (and optionally a
version number) into the `JobVersionSnapshot` a run keeps, and `RunHistory` answers
which `dependsOn` jobs have not completed since the job's last run and which runs of a
job are active (the dispatcher's input to the concurrency rule).

A run may be created under a caller-supplied deterministic id (`derived_id(...)`): a
second create with the same id fails on the event store's version check and becomes a
409 `run_exists`, so the scheduler makes one run per (job, slot) even when a slot is
delivered twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from eventsourcing.persistence import Tracking

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError, NotFoundError
from sailplane.domain.ids import new_id
from sailplane.domain.runs import (
    ACTIVE,
    CLUSTER_NOT_ACTIVE,
    CONCURRENCY_LIMIT,
    DEPENDENCIES_COMPLETED,
    JOB_DELETED,
    PENDING,
    REPLACED,
    TERMINAL,
    WAITING_FOR_DEPENDENCIES,
    JobRun,
    JobVersionSnapshot,
    RunOptions,
    decide_concurrency,
)
from sailplane.domain.uniqueness import UniqueKey
from sailplane.storage import EventLog


class JobVersions(Protocol):
    def snapshot(
        self, organization_id: str, job_id: str, version: int | None = None
    ) -> JobVersionSnapshot | None:
        """The job's active version (or the given published one), None if there is none."""


class RunHistory(Protocol):
    def unmet_dependencies(
        self, organization_id: str, job_id: str, depends_on: Sequence[str]
    ) -> list[str]:
        """The job keys in `depends_on` without a completed run since `job_id`'s last run."""

    def active_run_ids(
        self, organization_id: str, job_id: str, concurrency_key: str | None = None
    ) -> list[str]:
        """The job's dispatched or running runs with this concurrency key, oldest first."""


class NoJobVersions:
    """Until a jobs context is wired in, no job has a version."""

    def snapshot(
        self, organization_id: str, job_id: str, version: int | None = None
    ) -> JobVersionSnapshot | None:
        return None


@dataclass(frozen=True)
class Dispatch:
    """The dispatcher's claim: what it must submit (attempt) or why it did not."""

    run_id: str
    action: str  # "submit" | "wait" | "skip" | "expired" | "none"
    position: int
    attempt: int = 0
    spec: JobVersionSnapshot | None = None
    cancelled_run_ids: tuple[str, ...] = ()
    timeout_seconds: int | None = None  # the run's, which may override the version's
    debug_mode: bool = False  # the run's work gets SAILPLANE_DEBUG=1


@dataclass(frozen=True)
class RunRequest:
    """One run to create: the job, its queue options, start time and expiry."""

    job_id: str
    options: RunOptions = field(default_factory=RunOptions)
    not_before: datetime | None = None
    expires_at: datetime | None = None


IDEMPOTENCY_KEY_KIND = "run_idempotency_key"
# How often a report of the work is applied again after losing a race with Sailplane's own
# writes to the run (`RunCommands._as_work`).
WORK_REPORT_TRIES = 5
T = TypeVar("T")


def _run_exists(run_id: str) -> ConflictError:
    return ConflictError(f"Job run {run_id} already exists.", code="run_exists")


def _idempotency_scope(organization_id: str, job_id: str) -> str:
    """Idempotency keys are unique per job."""
    return f"{organization_id}/{job_id}"


class Runs(SailplaneApplication):
    def __init__(
        self,
        log: EventLog,
        *,
        job_versions: JobVersions,
        history: RunHistory,
        clock: Clock = utc_now,
    ) -> None:
        self.job_versions = job_versions
        self.history = history
        super().__init__(log, clock=clock)

    # --- people, service accounts and the scheduler ----------------------------------------

    def create_run(
        self,
        job_id: str,
        *,
        by: Actor,
        trigger: str = "manual",
        hold: bool = False,
        job_version: int | None = None,
        resource_cleanup_mode: str = "always",
        run_id: str | None = None,
        scheduled_for: datetime | None = None,
        tracking: Tracking | None = None,
        spec: JobVersionSnapshot | None = None,
        options: RunOptions | None = None,
        not_before: datetime | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[str, int]:
        """Create a run of the job's active version (or `job_version`); returns (id, position).

        `run_id`: a deterministic id (`derived_id(job_id, slot)`) makes a repeated create
        a 409 `run_exists` instead of a second run. `scheduled_for`: the slot of a
        scheduled run. `spec`: that version, when the caller has just read it from
        `job_versions` (to check access), so it is not read twice. `options`,
        `not_before` and `expires_at`: how the run is queued. When `options` carries an
        idempotency key that a run of this job holds, nothing is created and that run's
        id is returned with position 0: also when another create claimed the key first
        while this one was being made (the race is lost on the key's first event).
        """
        request = RunRequest(job_id, options or RunOptions(), not_before, expires_at)
        created = self._new_run(
            request,
            by=by,
            trigger=trigger,
            hold=hold,
            job_version=job_version,
            resource_cleanup_mode=resource_cleanup_mode,
            run_id=run_id,
            scheduled_for=scheduled_for,
            spec=spec,
            claimed_keys={},
        )
        if isinstance(created, str):
            return created, 0
        run_id = created[0].id
        try:
            return run_id, self._commit(*created, conflict=_run_exists(run_id), tracking=tracking)
        except ConflictError:
            holder = self._key_holder(by.organization_id, request)
            if holder is None or holder == run_id:
                raise
            return holder, 0

    def create_runs(
        self,
        requests: Sequence[RunRequest],
        *,
        batch_id: str,
        trigger: str,
        by: Actor,
        retried: bool = False,
    ) -> tuple[list[tuple[str, bool]], int]:
        """Create runs of several jobs in one transaction under one `batch_id`.

        Returns ((run id, created) per request, position); `created` is False for a
        request whose idempotency key named an existing run (or an earlier request of the
        batch), which is returned instead.
        """
        results: list[tuple[str, bool]] = []
        changed: list[JobRun | UniqueKey] = []
        claimed: dict[str, str] = {}
        for request in requests:
            batched = replace(request, options=replace(request.options, batch_id=batch_id))
            created = self._new_run(batched, by=by, trigger=trigger, claimed_keys=claimed)
            if isinstance(created, str):
                results.append((created, False))
            else:
                results.append((created[0].id, True))
                changed.extend(created)
        try:
            return results, self._commit(*changed)
        except ConflictError:
            if not claimed or retried:
                raise
            # Another create claimed one of its keys meanwhile: made again, that key now
            # answers the other create's run.
            return self.create_runs(
                requests, batch_id=batch_id, trigger=trigger, by=by, retried=True
            )

    def _key_holder(self, organization_id: str, request: RunRequest) -> str | None:
        """The run that holds the request's idempotency key now, if any."""
        key = request.options.idempotency_key
        if key is None:
            return None
        scope = _idempotency_scope(organization_id, request.job_id)
        holder = self._find(UniqueKey, UniqueKey.id_for(IDEMPOTENCY_KEY_KIND, scope, key))
        return holder.owner_id if holder is not None else None

    def _new_run(
        self,
        request: RunRequest,
        *,
        by: Actor,
        trigger: str,
        claimed_keys: dict[str, str],
        hold: bool = False,
        job_version: int | None = None,
        resource_cleanup_mode: str = "always",
        run_id: str | None = None,
        scheduled_for: datetime | None = None,
        spec: JobVersionSnapshot | None = None,
    ) -> list[JobRun | UniqueKey] | str:
        """The new run (then its claimed idempotency key), or the id of the run that holds
        the key already. `claimed_keys`: keys claimed earlier in the same transaction."""
        job_id = request.job_id
        spec = spec or self.job_versions.snapshot(by.organization_id, job_id, job_version)
        if spec is None:
            if job_version is not None and self.job_versions.snapshot(by.organization_id, job_id):
                raise InvalidValueError(
                    f"Job {job_id} has no published version {job_version}.",
                    field="jobVersion",
                    code="job_version_not_found",
                )
            raise NotFoundError.of("job", job_id)
        if not spec.has_work:
            raise InvalidValueError(
                f"Version {spec.version} of job {job_id} has nothing to run "
                "(config.sql.source, config.sql.queryId or config.python).",
                field="config",
                code="job_version_without_work",
            )
        run_id = run_id or new_id()
        key = request.options.idempotency_key
        holder: UniqueKey | None = None
        if key is not None:
            scope = _idempotency_scope(by.organization_id, job_id)
            if f"{scope}/{key}" in claimed_keys:
                return claimed_keys[f"{scope}/{key}"]
            try:
                holder = self._claim_key(
                    IDEMPOTENCY_KEY_KIND,
                    key,
                    run_id,
                    by=by,
                    conflict=_run_exists(run_id),
                    scope=scope,
                )
            except ConflictError:  # a run holds the key: it answers this request
                held_by = self._key_holder(by.organization_id, request)
                if held_by is None:
                    raise
                return held_by
            claimed_keys[f"{scope}/{key}"] = run_id
        waiting = (
            []
            if hold or not spec.depends_on
            else self.history.unmet_dependencies(by.organization_id, job_id, spec.depends_on)
        )
        run = JobRun.create(
            id=run_id,
            spec=spec,
            trigger=trigger,
            hold=hold,
            waiting_for=waiting,
            resource_cleanup_mode=resource_cleanup_mode,
            scheduled_for=scheduled_for,
            options=request.options,
            not_before=request.not_before,
            expires_at=request.expires_at,
            by=by,
            at=self.clock(),
        )
        return [run] if holder is None else [run, holder]

    def release_run(self, job_id: str, run_id: str, *, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        run.release(by=by, at=self.clock())
        return self._commit(run)

    def retry_run(self, job_id: str, run_id: str, *, hold: bool, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        run.retry(hold=hold, by=by, at=self.clock())
        return self._commit(run)

    def cancel_run(self, job_id: str, run_id: str, *, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        run.cancel(by=by, at=self.clock())
        return self._commit(run)

    def delete_run(self, job_id: str, run_id: str, *, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        run.delete(by=by, at=self.clock())
        return self._commit(run, self._free_key(run, by))

    def pause_run(self, job_id: str, run_id: str, *, by: Actor, checkpointed: bool = False) -> int:
        """Pause a run; an executing one only when its work has checkpointed (`checkpointed`,
        which the caller reads from the run's telemetry)."""
        run = self._run(job_id, run_id, by)
        run.pause(by=by, at=self.clock(), checkpointed=checkpointed)
        return self._commit(run)

    def set_debug_mode(self, job_id: str, run_id: str, enabled: bool, *, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        changed = run.set_debug_mode(enabled, by=by, at=self.clock())
        return self._commit(run) if changed else 0

    def resume_run(self, job_id: str, run_id: str, *, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        run.resume(by=by, at=self.clock())
        return self._commit(run)

    def reschedule_run(self, job_id: str, run_id: str, not_before: datetime, *, by: Actor) -> int:
        run = self._run(job_id, run_id, by)
        run.reschedule(not_before, by=by, at=self.clock())
        return self._commit(run)

    def restart_run(
        self,
        job_id: str,
        run_id: str,
        *,
        by: Actor,
        priority: int | None = None,
        payload: dict[str, object] | None = None,
        timeout_secs_override: int | None = None,
        max_attempts_override: int | None = None,
        debug_mode: bool | None = None,
    ) -> int:
        """A new attempt of the run; the given values replace the run's own."""
        run = self._run(job_id, run_id, by)
        overrides = {
            name: value
            for name, value in (
                ("priority", priority),
                ("payload", payload),
                ("timeout_secs_override", timeout_secs_override),
                ("max_attempts_override", max_attempts_override),
                ("debug_mode", debug_mode),
            )
            if value is not None
        }
        run.restart(replace(run.options, **overrides), by=by, at=self.clock())
        return self._commit(run)

    def replay_run(
        self,
        job_id: str,
        run_id: str,
        *,
        by: Actor,
        dead_letter_only: bool = False,
        batch_id: str | None = None,
    ) -> tuple[str, int]:
        """A new run of the job's active version continuing a finished, not completed run
        (same payload, tags and metadata; lineage depth + 1); returns (new id, position).
        `dead_letter_only`: the source must be in the dead-letter queue, which it leaves."""
        source = self._run(job_id, run_id, by)
        options = source.replay_options(batch_id=batch_id)
        spec = self.job_versions.snapshot(by.organization_id, job_id)
        if spec is None:
            raise NotFoundError.of("job", job_id)
        replay = JobRun.create(
            id=new_id(),
            spec=spec,
            trigger="retry",
            hold=False,
            options=options,
            by=by,
            at=self.clock(),
        )
        source.replayed(replay.id, dead_letter_only=dead_letter_only, by=by, at=self.clock())
        return replay.id, self._commit(replay, source)

    def reset_idempotency_key(self, job_id: str, run_id: str, *, by: Actor) -> int:
        """The run gives up its idempotency key: the next create with it makes a new run."""
        run = self._run(job_id, run_id, by)
        run.reset_idempotency_key(by=by, at=self.clock())
        return self._commit(run, self._free_key(run, by))

    def _free_key(self, run: JobRun, by: Actor) -> UniqueKey | None:
        key = run.options.idempotency_key
        if key is None:
            return None
        return self._release_key(
            IDEMPOTENCY_KEY_KIND,
            key,
            run.id,
            by=by,
            scope=_idempotency_scope(run.organization_id, run.job_id),
        )

    def remove_job_runs(
        self, organization_id: str, run_ids: Sequence[str], *, by: Actor, tracking: Tracking | None
    ) -> int:
        """The job was deleted: cancel its unfinished runs, then delete them all (one commit)."""
        runs = [r for r in (self._find(JobRun, i) for i in run_ids) if r is not None]
        changed = []
        for run in runs:
            if run.organization_id != organization_id or run.deleted:
                continue
            if run.status not in TERMINAL:
                run.cancel(
                    by=by, at=self.clock(), reason=JOB_DELETED, message="The job was deleted."
                )
            run.delete(by=by, at=self.clock())
            changed.append(run)
        return self._commit(*changed, tracking=tracking)

    def release_waiting_runs(
        self, organization_id: str, run_ids: Sequence[str], *, by: Actor, tracking: Tracking | None
    ) -> int:
        """A job completed: release the given runs waiting for dependencies, if now met."""
        released = []
        for run in (self._find(JobRun, i) for i in run_ids):
            if (
                run is None
                or run.organization_id != organization_id
                or run.status != PENDING
                or run.status_reason != WAITING_FOR_DEPENDENCIES
            ):
                continue
            if not self.history.unmet_dependencies(
                organization_id, run.job_id, run.spec.depends_on
            ):
                run.release(by=by, at=self.clock(), reason=DEPENDENCIES_COMPLETED)
                released.append(run)
        return self._commit(*released, tracking=tracking)

    # --- the dispatcher ------------------------------------------------------------------

    def dispatch_run(
        self,
        run_id: str,
        *,
        executor: str | None,
        by: Actor,
        tracking: Tracking | None = None,
    ) -> Dispatch:
        """Claim a due ready run: apply the concurrency rule, then record `dispatched`.

        `executor` is the kind of executor of the run's cluster, None when the cluster is
        not usable (the run stays ready with `cluster_not_active`). The caller submits
        `attempt` only after this returns "submit": two dispatchers racing for one run
        meet on the store's version check and only one of them submits.
        """
        run = self._find(JobRun, run_id)
        now = self.clock()
        if run is not None and not run.deleted and run.expire(by=by, at=now):
            return Dispatch(run_id, "expired", self._commit(run, tracking=tracking))
        if run is None or run.deleted or not run.is_due(now):
            return Dispatch(run_id, "none", self._commit(tracking=tracking))
        if executor is None:
            run.wait(
                CLUSTER_NOT_ACTIVE,
                f"Cluster {run.spec.cluster_id} is not active.",
                by=by,
                at=now,
            )
            return Dispatch(run_id, "wait", self._commit(run, tracking=tracking))
        key = run.options.concurrency_key
        active = [
            i
            for i in self.history.active_run_ids(run.organization_id, run.job_id, key)
            if i != run.id
        ]
        decision = decide_concurrency(
            run.spec.concurrency_policy, run.spec.max_concurrent_runs, active
        )
        if decision.action == "wait":
            run.wait(
                CONCURRENCY_LIMIT,
                f"{len(active)} run(s) of the job"
                + ("" if key is None else f" with concurrency key {key}")
                + f" active; maxConcurrentRuns is {run.spec.max_concurrent_runs or 1}.",
                by=by,
                at=now,
            )
            return Dispatch(run_id, "wait", self._commit(run, tracking=tracking))
        if decision.action == "skip":
            run.skip(
                by=by,
                at=now,
                message=f"Skipped: {len(active)} run(s) of the job active and concurrencyPolicy is skip.",
            )
            return Dispatch(run_id, "skip", self._commit(run, tracking=tracking))
        replaced = []
        for other_id in decision.cancel_run_ids:
            other = self._find(JobRun, other_id)
            if other is not None and other.status in ACTIVE:
                other.cancel(
                    by=by, at=now, reason=REPLACED, message=f"Replaced by job run {run.id}."
                )
                replaced.append(other)
        attempt = run.dispatch(executor=executor, by=by, at=now)
        position = self._commit(run, *replaced, tracking=tracking)
        return Dispatch(
            run_id,
            "submit",
            position,
            attempt=attempt,
            spec=run.spec,
            cancelled_run_ids=tuple(r.id for r in replaced),
            timeout_seconds=run.timeout_seconds,
            debug_mode=run.options.debug_mode,
        )

    def expire_run(self, run_id: str, *, by: Actor) -> int:
        """The monitor's sweep: a run not started by its expires_at ends `expired`."""
        return self._report(run_id, lambda run: run.expire(by=by, at=self.clock()))

    # --- the run runtime: what the work of an attempt reports (docs/runs-v1.md) ----------

    def report_result(self, run_id: str, attempt: int, value: object, *, by: Actor) -> int:
        return self._as_work(
            run_id,
            attempt,
            by,
            lambda run: run.report_result(attempt, value, by=by, at=self.clock()),
        )[1]

    def await_children(
        self, run_id: str, attempt: int, child_ids: Sequence[str], *, by: Actor
    ) -> int:
        return self._as_work(
            run_id,
            attempt,
            by,
            lambda run: run.await_children(attempt, list(child_ids), by=by, at=self.clock()),
        )[1]

    def continue_work(self, run_id: str, attempt: int, *, by: Actor) -> int:
        return self._as_work(
            run_id, attempt, by, lambda run: run.continue_work(attempt, by=by, at=self.clock())
        )[1]

    def suspend_run(self, run_id: str, attempt: int, *, by: Actor) -> tuple[bool, int]:
        """After the work's checkpoint: (whether the attempt must end, position)."""
        return self._as_work(
            run_id, attempt, by, lambda run: run.suspend(attempt, by=by, at=self.clock())
        )

    def _as_work(
        self, run_id: str, attempt: int, by: Actor, change: Callable[[JobRun], T]
    ) -> tuple[T, int]:
        """Apply what the work of `attempt` reports to the run as it is now, and save it.

        Sailplane writes to the same run meanwhile (the dispatcher records the start the
        work's first call may also record), so a save that loses that race is applied again
        to the newer run, a few times, rather than failing the work over the platform's own
        bookkeeping; a change the newer run refuses raises as usual."""
        for tries_left in reversed(range(WORK_REPORT_TRIES)):
            run = self._executing(run_id, attempt, by)
            outcome = change(run)
            try:
                return outcome, self._commit(run)
            except ConflictError as error:
                if error.code != "concurrent_modification" or not tries_left:
                    raise
        raise AssertionError("unreachable")

    def spawn_run(
        self, parent_id: str, attempt: int, job_id: str, options: RunOptions, *, by: Actor
    ) -> tuple[str, int]:
        """A child run of `job_id` (trigger `spawn`, `parent_run_id` = the parent). An
        idempotency key that names a child of this parent answers it (a spawn sent again);
        one that names any other run is a conflict, never that run as a child."""
        self._executing(parent_id, attempt, by)
        child_id, position = self.create_run(
            job_id, by=by, trigger="spawn", options=replace(options, parent_run_id=parent_id)
        )
        if position == 0:  # the key's run, made before
            child = self._find(JobRun, child_id)
            if child is None or child.options.parent_run_id != parent_id:
                raise ConflictError(
                    f"Idempotency key {options.idempotency_key!r} belongs to run {child_id}, "
                    f"which run {parent_id} did not spawn; use another key.",
                    code="idempotency_key_in_use",
                )
        return child_id, position

    def _executing(self, run_id: str, attempt: int, by: Actor) -> JobRun:
        """The run whose `attempt` the work reports from; a dispatched one is recorded as
        started (the work talking back is proof it runs)."""
        run = self._load(JobRun, run_id, organization_id=by.organization_id, kind="job_run")
        run.start(attempt, by=by, at=self.clock())
        return run

    def record_started(self, run_id: str, attempt: int, *, by: Actor) -> int:
        return self._report(run_id, lambda run: run.start(attempt, by=by, at=self.clock()))

    def record_completed(
        self,
        run_id: str,
        attempt: int,
        *,
        by: Actor,
        exit_code: int | None = None,
        trace: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
    ) -> int:
        return self._report(
            run_id,
            lambda run: run.complete(
                attempt, by=by, at=self.clock(), exit_code=exit_code, trace=trace, usage=usage
            ),
        )

    def record_failed(
        self,
        run_id: str,
        attempt: int,
        *,
        reason: str,
        message: str,
        by: Actor,
        exit_code: int | None = None,
        trace: dict[str, Any] | None = None,
        usage: dict[str, int] | None = None,
    ) -> int:
        return self._report(
            run_id,
            lambda run: run.fail(
                attempt,
                reason=reason,
                message=message,
                by=by,
                at=self.clock(),
                exit_code=exit_code,
                trace=trace,
                usage=usage,
            ),
        )

    def record_timeout(
        self, run_id: str, attempt: int, *, by: Actor, trace: dict[str, Any] | None = None
    ) -> int:
        return self._report(
            run_id, lambda run: run.time_out(attempt, by=by, at=self.clock(), trace=trace)
        )

    def run_state(self, run_id: str) -> JobRun | None:
        """The run as the dispatcher's monitor needs it (its current attempt and status)."""
        return self._find(JobRun, run_id)

    # --- helpers -------------------------------------------------------------------------

    def _report(self, run_id: str, change: object) -> int:
        """Apply an executor report; a stale one (other attempt, finished run) changes nothing."""
        run = self._find(JobRun, run_id)
        if run is None or not change(run):  # type: ignore[operator]
            return 0
        return self._commit(run)

    def _run(self, job_id: str, run_id: str, by: Actor) -> JobRun:
        run = self._load(JobRun, run_id, organization_id=by.organization_id, kind="job_run")
        if run.job_id != job_id:
            raise NotFoundError.of("job_run", run_id)
        return run
