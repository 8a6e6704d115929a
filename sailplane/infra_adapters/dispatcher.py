"""The dispatcher: `sailplane worker dispatcher` (also in-process under `serve`).

Two loops in one worker:

- **Events** (`sailplane.job-runs` and `sailplane.workloads`, from Kafka or the log): a
  run that became ready is claimed at once (`Runs.dispatch_run`, which applies the
  concurrency rule and records `dispatched`), then submitted to its cluster's executor
  with run id + attempt as the idempotency key. A cancelled run's attempt is stopped. A
  completed run releases the runs waiting for its job. A deleted job's runs are
  cancelled when unfinished (their work is stopped), then deleted with their logs. Each delivery passes its tracking row to the one use case it calls.
- **Monitor** (a tick every `interval` seconds, clock injected): claims due ready runs
  (backoff over, a concurrency slot or the cluster free again, an event missed), reads
  back every dispatched or running attempt from its executor and records `running`,
  `completed`, `failed` (retried with backoff up to `maxRetries`), `timeout` (past
  `timeoutSeconds`; the work is stopped), and `executor_lost` (its worker died: retried,
  or `dead_letter` once retries are spent). A dispatched attempt the executor never
  received (the dispatcher died between recording and submitting) is submitted again
  under the same key, which can start it at most once.

Claims of one job's runs are serialized by a PostgreSQL advisory lock held while the
views catch up with the log, so two dispatchers never both see a free slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from eventsourcing.persistence import Tracking
from psycopg_pool import ConnectionPool

from sailplane.commands.base import Clock
from sailplane.commands.runs import Runs
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.jobs import container_argv
from sailplane.domain.runs import (
    COMMAND_NOT_FOUND as COMMAND_NOT_FOUND_REASON,
)
from sailplane.domain.runs import (
    CRASHED,
    DISPATCHED,
    EXECUTION_FAILED,
    EXECUTOR_LOST,
    QUERY_NOT_FOUND,
    READY,
    RUNNING,
    SUBMISSION_FAILED,
    JobRun,
    JobVersionSnapshot,
)
from sailplane.domain.runs import (
    IMAGE_PULL_FAILED as IMAGE_PULL_FAILED_REASON,
)
from sailplane.domain.runtime import RuntimeSettings, RunTokens
from sailplane.infra_adapters.consumers import Consumer, ConsumerWorker, Delivery, EventSource
from sailplane.infra_adapters.executors import (
    CANCELLED,
    COMMAND_NOT_FOUND,
    FAILED,
    IMAGE_PULL_FAILED,
    KILLED_BY_SIGNAL,
    LOST,
    OUT_OF_MEMORY,
    SUBMITTED,
    SUCCEEDED,
    UNKNOWN,
    Executor,
    RunTargets,
    Submission,
    Target,
    Work,
)
from sailplane.infra_adapters.executors.logs import RunLogs
from sailplane.infra_adapters.executors.metrics import RunMetrics, RunSampler, Usage
from sailplane.infra_adapters.run_telemetry import RunTelemetry
from sailplane.projections.runs import RunsView
from sailplane.storage import EventLog

log = logging.getLogger(__name__)

READY_EVENTS = (
    JobRun.Created,
    JobRun.Released,
    JobRun.Retried,
    JobRun.RetryScheduled,
    JobRun.Resumed,
    JobRun.Rescheduled,
    JobRun.Restarted,
)
TARGET_TTL = 5.0
# A queue head that is no longer claimable is passed over for the next this many times.
HEAD_TRIES = 3
# The run's reason for an attempt an executor reports failed with a known cause.
REASON_BY_CAUSE = {
    OUT_OF_MEMORY: CRASHED,
    KILLED_BY_SIGNAL: CRASHED,
    IMAGE_PULL_FAILED: IMAGE_PULL_FAILED_REASON,
    COMMAND_NOT_FOUND: COMMAND_NOT_FOUND_REASON,
}


class QueryTexts:
    """The text of a saved query a job version names (`config.sql.queryId`)."""

    def __init__(self, lookup: Callable[[str, str], dict[str, Any] | None]) -> None:
        self.lookup = lookup

    def text(self, organization_id: str, query_id: str) -> str | None:
        row = self.lookup(organization_id, query_id)
        return row["query_text"] if row else None


class RunDispatcher(Consumer):
    name = "dispatcher"
    kafka_topics = ("sailplane.job-runs", "sailplane.workloads")

    def __init__(
        self,
        *,
        runs: Runs,
        view: RunsView,
        executors: dict[str, Executor],
        targets: RunTargets,
        queries: QueryTexts,
        logs: RunLogs,
        metrics: RunMetrics,
        telemetry: RunTelemetry,
        tokens: RunTokens,
        runtime: RuntimeSettings,
        pool: ConnectionPool,
        catch_up: Callable[[], bool],
        clock: Clock,
        submit_grace: timedelta = timedelta(seconds=15),
    ) -> None:
        self.runs = runs
        self.view = view
        self.executors = executors
        self.targets = targets
        self.queries = queries
        self.logs = logs
        self.metrics = metrics
        self.telemetry = telemetry
        self.tokens = tokens
        self.runtime = runtime
        self.pool = pool  # for the claim locks
        self.catch_up = catch_up  # wait until the views hold every event in the log
        self.clock = clock
        self.submit_grace = submit_grace
        self._local_locks: dict[str, threading.Lock] = {}
        self._targets: dict[tuple[str, str | None], tuple[float, Target | None]] = {}
        self._guard = threading.Lock()

    def _target(self, organization_id: str, cluster_id: str | None) -> Target | None:
        """The cluster's target, remembered for TARGET_TTL seconds (the monitor asks often)."""
        key = (organization_id, cluster_id)
        now = time.monotonic()
        cached = self._targets.get(key)
        if cached is not None and now - cached[0] < TARGET_TTL:
            return cached[1]
        target = self.targets.target(organization_id, cluster_id)
        self._targets[key] = (now, target)
        return target

    def actor(self, organization_id: str, component: str = "dispatcher") -> Actor:
        return Actor.system(component, organization_id)

    # --- events ------------------------------------------------------------------------

    def handle(self, delivery: Delivery) -> None:
        event = delivery.event
        tracking = delivery.tracking(self.name)
        if isinstance(event, JobRun.Restarted) and event.stopped_attempt is not None:
            self.stop_execution(event.originator_id, event.stopped_attempt)
        if isinstance(event, READY_EVENTS) and event.status == READY:
            self.claim(event.originator_id, tracking=tracking)
        elif isinstance(event, JobRun.Cancelled):
            self.stop_execution(event.originator_id)
        elif isinstance(event, JobRun.Completed):
            self.catch_up()  # the dependency check reads this completion from the view
            row = self.view.fetch_one(
                "SELECT job_key FROM {job_runs} WHERE id = %s", (event.originator_id,)
            )
            if row and row["job_key"]:
                waiting = self.view.waiting_run_ids(event.organization_id, row["job_key"])
                if waiting:
                    self.runs.release_waiting_runs(
                        event.organization_id,
                        waiting,
                        by=self.actor(event.organization_id),
                        tracking=tracking,
                    )
        elif delivery.topic.endswith(":Job.Deleted"):
            self.catch_up()
            run_ids = self.view.run_ids_of_job(event.organization_id, event.originator_id)
            if run_ids:
                self.runs.remove_job_runs(
                    event.organization_id,
                    run_ids,
                    by=self.actor(event.organization_id),
                    tracking=tracking,
                )
                for run_id in run_ids:
                    self.logs.delete(run_id)
                    self.telemetry.delete(run_id)
                self.metrics.delete(job_id=event.originator_id)

    # --- claiming and submitting -----------------------------------------------------------

    def claim(self, run_id: str, *, tracking: Tracking | None = None) -> str:
        """Claim a ready run if it is due; returns the action taken.

        A (job, concurrency key) queue starts its runs highest priority first, then oldest:
        when another due run of the queue is ahead of this one, that run is claimed
        instead. When that run waits (no free slot), this one waits behind it, unclaimed:
        a slot freed between the two decisions (a completion the monitor records outside
        this lock) must go to the run ahead, not to this one. A run ahead that is no longer
        claimable (gone, expired, skipped since the view was read) is passed over for the
        next head, a few times; only then is this one tried."""
        run = self.runs.run_state(run_id)
        if run is None or run.status != READY:
            return "none"
        target = self._target(run.organization_id, run.spec.cluster_id)
        kind = target.executor if target is not None and target.executor in self.executors else None
        by, key = self.actor(run.organization_id), run.options.concurrency_key
        with self._job_lock(run.job_id, key):
            outcome = None
            for _ in range(HEAD_TRIES):
                self.catch_up()  # the views have what the last try changed
                head = self.view.queue_head(run.organization_id, run.job_id, key, self.clock())
                if head is None or head == run_id:
                    break
                outcome = self.runs.dispatch_run(head, executor=kind, by=by, tracking=tracking)
                tracking = None  # recorded with the run ahead's claim
                if outcome.action in ("submit", "wait"):
                    break
                outcome = None
            if outcome is None:
                outcome = self.runs.dispatch_run(run_id, executor=kind, by=by, tracking=tracking)
        if outcome.action == "submit" and outcome.spec is not None:
            self.submit(
                run.organization_id,
                outcome.run_id,
                outcome.attempt,
                outcome.spec,
                timeout_seconds=outcome.timeout_seconds,
                debug_mode=outcome.debug_mode,  # of the run claimed (maybe the queue's head)
            )
        return outcome.action

    def submit(
        self,
        organization_id: str,
        run_id: str,
        attempt: int,
        spec: JobVersionSnapshot,
        *,
        timeout_seconds: int | None,
        debug_mode: bool = False,
    ) -> None:
        by = self.actor(organization_id)
        work = self._work(organization_id, spec)
        if work is None:
            self.runs.record_failed(
                run_id,
                attempt,
                reason=QUERY_NOT_FOUND,
                message=f"Saved query {spec.sql_query_id} was not found.",
                by=by,
            )
            return
        target = self._target(organization_id, spec.cluster_id)
        if target is None or target.executor not in self.executors:
            self.runs.record_failed(
                run_id,
                attempt,
                reason=SUBMISSION_FAILED,
                message="The cluster is not usable.",
                by=by,
            )
            return
        try:
            self.executors[target.executor].submit(
                Submission(
                    run_id=run_id,
                    attempt=attempt,
                    organization_id=organization_id,
                    job_id=spec.job_id,
                    work=work,
                    target=target,
                    timeout_seconds=timeout_seconds,
                    variables=self.runtime_variables(
                        organization_id, run_id, attempt, debug_mode=debug_mode
                    ),
                )
            )
        except Exception as error:
            log.exception("submitting %s attempt %s failed", run_id, attempt)
            self.runs.record_failed(
                run_id,
                attempt,
                reason=SUBMISSION_FAILED,
                message=f"Submission failed: {error}",
                by=by,
            )

    def runtime_variables(
        self, organization_id: str, run_id: str, attempt: int, *, debug_mode: bool
    ) -> dict[str, str]:
        """What `sailplane.runtime` in the work needs: where to talk back, and the attempt's
        run token (stateless: minted again for a resubmission, never stored)."""
        variables = {
            "SAILPLANE_RUN_ID": run_id,
            "SAILPLANE_ATTEMPT": str(attempt),
            "SAILPLANE_RUN_TOKEN": self.tokens.mint(organization_id, run_id, attempt),
            "SAILPLANE_HEARTBEAT_SECONDS": str(self.runtime.heartbeat_seconds),
        }
        if self.runtime.api_url:
            variables["SAILPLANE_API_URL"] = self.runtime.api_url
        if debug_mode:
            variables["SAILPLANE_DEBUG"] = "1"
        return variables

    def _work(self, organization_id: str, spec: JobVersionSnapshot) -> Work | None:
        if spec.sql_source:
            return Work(sql=spec.sql_source)
        if spec.sql_query_id:
            text = self.queries.text(organization_id, spec.sql_query_id)
            return Work(sql=text) if text else None
        if spec.container:
            return Work(
                container={
                    "image": spec.container["image"],
                    "argv": container_argv(spec.container["command"]),
                    "env": spec.container.get("env") or {},
                }
            )
        return Work(python=spec.python)

    def stop_execution(self, run_id: str, attempt: int | None = None) -> None:
        """Stop the run's current attempt (or `attempt`, one a restart left behind)."""
        run = self.runs.run_state(run_id)
        if run is None or run.executor is None:
            return
        if attempt is None and run.dispatched_at is None:
            return
        executor = self.executors.get(run.executor)
        if executor is not None:
            executor.cancel(
                run_id,
                run.attempt if attempt is None else attempt,
                self._target(run.organization_id, run.spec.cluster_id),
            )

    @contextlib.contextmanager
    def _job_lock(self, job_id: str, concurrency_key: str | None) -> Any:
        """Claims of one (job, concurrency key) queue are serialized; other keys go on."""
        name = job_id if concurrency_key is None else f"{job_id}\x00{concurrency_key}"
        with self._guard:
            local = self._local_locks.setdefault(name, threading.Lock())
        key = int.from_bytes(
            hashlib.sha256(f"job-run-claims:{name}".encode()).digest()[:8], "big", signed=True
        )
        # A transaction-level lock on a pooled connection: released by the commit, or by
        # the rollback when the claim raises, so the connection returns to the pool clean.
        with local, self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            yield

    # --- the monitor -----------------------------------------------------------------------

    def tick(self) -> None:
        """One pass: expire runs not started in time, claim due ready runs (highest
        priority first), then read back every active attempt."""
        now = self.clock()
        for row in self.view.expirable_runs(now):
            try:
                self.runs.expire_run(row["id"], by=self.actor(row["organization_id"]))
            except ConflictError:
                continue
        full: set[tuple[str, str | None]] = set()  # queues whose head waits for a slot
        for row in self.view.due_runs(now):
            queue = (row["job_id"], row["concurrency_key"])
            if queue in full:
                continue  # the runs behind a waiting head wait too
            try:
                if self.claim(row["id"]) == "wait":
                    full.add(queue)
            except ConflictError:
                continue  # another dispatcher or the event loop got there first
        for row in self.view.runs_in((DISPATCHED, RUNNING)):
            try:
                self.check(row, now)
            except ConflictError:
                continue

    def usage(self, row: Mapping[str, Any]) -> list[Usage]:
        """What a running run's current attempt uses, from the executor it runs on."""
        executor = self.executors.get(row["executor"] or "")
        if executor is None:
            return []
        target = self._target(row["organization_id"], row["cluster_id"])
        return executor.usage(row["id"], row["attempt"], target)

    def check(self, row: dict[str, Any], now: datetime) -> None:
        run = self.runs.run_state(row["id"])
        if run is None or run.status not in (DISPATCHED, RUNNING) or run.executor is None:
            return
        executor = self.executors.get(run.executor)
        if executor is None:
            return
        attempt, org = run.attempt, run.organization_id
        by = self.actor(org, "executor")
        target = self._target(org, run.spec.cluster_id)
        status = executor.status(run.id, attempt, target)
        if status.state == UNKNOWN:
            if run.status == RUNNING:  # its Job or its cluster is gone
                self.runs.record_failed(
                    run.id, attempt, reason=EXECUTOR_LOST, message="The execution is gone.", by=by
                )
            elif run.dispatched_at is not None and now - run.dispatched_at > self.submit_grace:
                # never received: the same key again
                self.submit(
                    org,
                    run.id,
                    attempt,
                    run.spec,
                    timeout_seconds=run.timeout_seconds,
                    debug_mode=run.options.debug_mode,
                )
            return
        if status.state == SUBMITTED:
            return
        if status.state == RUNNING or (
            status.state in (SUCCEEDED, FAILED) and run.status == DISPATCHED
        ):
            if run.status == DISPATCHED:
                self.runs.record_started(run.id, attempt, by=by)
                run = self.runs.run_state(run.id) or run
            deadline = run.deadline()
            if status.state == RUNNING and deadline is not None and now >= deadline:
                executor.cancel(run.id, attempt, target)
                self.runs.record_timeout(run.id, attempt, by=by, trace=status.trace)
                return
            if status.state == RUNNING and self._silent(run.id, attempt):
                executor.cancel(run.id, attempt, target)
                self.runs.record_failed(
                    run.id,
                    attempt,
                    reason=CRASHED,
                    message=f"The work sent no heartbeat for {self.runtime.crash_after_seconds:g} "
                    "seconds (hung or killed).",
                    by=by,
                    usage=self._usage(run.id),
                )
                return
        if status.state == SUCCEEDED:
            self.runs.record_completed(
                run.id,
                attempt,
                by=by,
                exit_code=status.exit_code,
                trace=status.trace,
                usage=self._usage(run.id),
            )
        elif status.state == FAILED:
            self.runs.record_failed(
                run.id,
                attempt,
                reason=REASON_BY_CAUSE.get(status.cause or "", EXECUTION_FAILED),
                message=status.message or "Failed.",
                by=by,
                exit_code=status.exit_code,
                trace=status.trace,
                usage=self._usage(run.id),
            )
        elif status.state in (LOST, CANCELLED):
            self.runs.record_failed(
                run.id,
                attempt,
                reason=EXECUTOR_LOST,
                message=status.message or "The execution stopped without finishing.",
                by=by,
            )

    def _silent(self, run_id: str, attempt: int) -> bool:
        """The attempt's work heartbeated through the runtime, then went silent too long."""
        silent = self.telemetry.silent_for(run_id, attempt)
        return silent is not None and silent > self.runtime.crash_after_seconds

    def _usage(self, run_id: str) -> dict[str, int] | None:
        """The run's usage totals for its last event (None when it reported none)."""
        return self.telemetry.usage_totals([run_id]).get(run_id)


class DispatcherWorker:
    """The dispatcher's event loop and its monitor loop, stopped together."""

    name = "dispatcher"

    def __init__(
        self,
        dispatcher: RunDispatcher,
        source: EventSource,
        event_log: EventLog,
        *,
        interval: float = 0.2,
        sampler: RunSampler | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.consumer = ConsumerWorker(dispatcher, source, event_log)
        self.interval = interval
        self.sampler = sampler

    def monitor(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.dispatcher.tick()
            except Exception:
                log.exception("dispatcher monitor tick failed; retrying")

    def run(self, stop: threading.Event) -> None:
        monitor = threading.Thread(
            target=self.monitor, args=(stop,), name="dispatcher-monitor", daemon=True
        )
        monitor.start()
        loops = [monitor]
        if self.sampler is not None:
            loops.append(
                threading.Thread(
                    target=self.sampler.run, args=(stop,), name="run-metrics", daemon=True
                )
            )
            loops[-1].start()
        try:
            self.consumer.run(stop)
        finally:
            stop.set()
            for loop in loops:
                loop.join(timeout=10)
            for executor in self.dispatcher.executors.values():
                executor.close()
