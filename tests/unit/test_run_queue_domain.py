"""The run-queue rules of the JobRun aggregate: queue options, delays, expiry, pause and
resume, reschedule, restart, replay, idempotency-key reset, the crash and dead-letter
rule, and the seed-003 status each internal state shows as."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.runs import (
    CRASHED,
    EXECUTION_FAILED,
    EXECUTOR_LOST,
    QUERY_NOT_FOUND,
    QUEUE_STATUSES,
    JobRun,
    JobVersionSnapshot,
    RunOptions,
    queue_status,
)
from tests.unit.run_machine import RunModelMachine

MEMBER = Actor("member", "MEMBER0001", "ORG0000001")
EXECUTOR = Actor.system("executor", "ORG0000001")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)


def new_run(
    options: RunOptions | None = None,
    *,
    not_before: datetime | None = None,
    expires_at: datetime | None = None,
    hold: bool = False,
    max_retries: int = 0,
    timeout_seconds: int | None = None,
) -> JobRun:
    return JobRun.create(
        id="RUN0000001",
        spec=JobVersionSnapshot(
            job_id="JOB0000001",
            version=1,
            cluster_id="C1",
            sql_source="SELECT 1",
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
        ),
        trigger="manual",
        hold=hold,
        options=options,
        not_before=not_before,
        expires_at=expires_at,
        by=MEMBER,
        at=T0,
    )


def reloaded(run: JobRun) -> JobRun:
    """The run rebuilt from its events, as the repository loads it."""
    events = run.collect_events()
    copy = None
    for event in events:
        copy = event.mutate(copy)
    assert copy is not None
    return copy


def shown(run: JobRun, now: datetime = T0) -> str:
    return queue_status(run.status, run.status_reason, run.not_before, now)


def test_options_survive_the_event_round_trip() -> None:
    options = RunOptions(
        payload={"a": [1, 2]},
        tags={"team": "x"},
        metadata={"k": "v"},
        priority=5,
        concurrency_key="acme",
        idempotency_key="key-1",
        max_attempts_override=3,
        retry_backoff="fixed",
        debug_mode=True,
    )
    run = reloaded(new_run(options, expires_at=LATER))
    assert run.options == options
    assert run.expires_at == LATER
    assert run.idempotency_key_held


def test_old_created_events_load_with_default_options() -> None:
    run = new_run()
    assert run.options == RunOptions()
    assert run.expires_at is None and run.not_before is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", 10**7),
        ("retry_backoff", "linear"),
        ("max_attempts_override", 0),
        ("payload", [1]),
        ("tags", {"k": 1}),
        ("concurrency_key", ""),
    ],
)
def test_options_refuse_bad_values(field: str, value: object) -> None:
    with pytest.raises(InvalidValueError):
        RunOptions(**{field: value})  # type: ignore[arg-type]


def test_a_future_start_is_delayed_then_queued() -> None:
    run = new_run(not_before=LATER)
    assert (run.status, run.status_reason) == ("ready", "delayed")
    assert shown(run) == "delayed"
    assert not run.is_due(T0)
    assert run.is_due(LATER)
    assert shown(run, LATER) == "queued"


def test_expiry_must_follow_the_start() -> None:
    with pytest.raises(InvalidValueError):
        new_run(not_before=LATER, expires_at=LATER)


def test_an_unstarted_run_expires_and_shows_expired() -> None:
    run = new_run(expires_at=LATER)
    assert not run.expire(by=EXECUTOR, at=T0)
    assert not run.is_due(LATER)
    assert run.expire(by=EXECUTOR, at=LATER)
    assert (run.status, run.status_reason) == ("cancelled", "expired")
    assert shown(run) == "expired"


def test_a_dispatched_run_never_expires() -> None:
    run = new_run(expires_at=LATER)
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    assert not run.expire(by=EXECUTOR, at=LATER)


def test_pause_and_resume_return_to_where_the_run_was() -> None:
    run = new_run()
    run.pause(by=MEMBER, at=T0)
    assert (run.status, run.status_reason, shown(run)) == ("pending", "paused", "waiting")
    with pytest.raises(ConflictError) as again:
        run.pause(by=MEMBER, at=T0)
    assert again.value.code == "run_paused"
    run.resume(by=MEMBER, at=T0)
    assert (run.status, run.status_reason) == ("ready", "resumed")
    held = new_run(hold=True)
    held.pause(by=MEMBER, at=T0)
    held.resume(by=MEMBER, at=T0)
    assert (held.status, held.status_reason) == ("pending", "held")


def test_pause_of_an_executing_or_finished_run_and_resume_of_an_unpaused_one_are_409() -> None:
    run = new_run()
    with pytest.raises(ConflictError) as not_paused:
        run.resume(by=MEMBER, at=T0)
    assert not_paused.value.code == "run_not_paused"
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    with pytest.raises(ConflictError) as executing:
        run.pause(by=MEMBER, at=T0)
    assert executing.value.code == "run_executing"
    run.complete(1, by=EXECUTOR, at=T0)
    with pytest.raises(ConflictError) as finished:
        run.pause(by=MEMBER, at=T0)
    assert finished.value.code == "run_finished"


def test_reschedule_only_before_the_run_starts() -> None:
    run = new_run()
    run.reschedule(LATER, by=MEMBER, at=T0)
    assert (run.status_reason, run.not_before, shown(run)) == ("delayed", LATER, "delayed")
    run.reschedule(T0, by=MEMBER, at=T0)
    assert shown(run) == "queued"
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    with pytest.raises(ConflictError) as started:
        run.reschedule(LATER, by=MEMBER, at=T0)
    assert started.value.code == "run_not_reschedulable"


def test_reschedule_past_the_expiry_is_422() -> None:
    run = new_run(expires_at=LATER)
    with pytest.raises(InvalidValueError):
        run.reschedule(LATER, by=MEMBER, at=T0)


def test_restart_stops_the_executing_attempt_and_takes_overrides() -> None:
    run = new_run(RunOptions(priority=1))
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    run.start(1, by=EXECUTOR, at=T0)
    run.restart(RunOptions(priority=9, timeout_secs_override=5), by=MEMBER, at=T0)
    restarted = run.collect_events()[-1]
    assert isinstance(restarted, JobRun.Restarted)
    assert restarted.stopped_attempt == 1
    assert (run.status, run.attempt, run.options.priority) == ("ready", 2, 9)
    assert run.timeout_seconds == 5
    assert not run.complete(1, by=EXECUTOR, at=T0)  # the stopped attempt's report is stale


@pytest.mark.parametrize("end", ["complete", "cancel"])
def test_restart_of_a_completed_or_cancelled_run_is_409(end: str) -> None:
    run = new_run()
    if end == "complete":
        run.dispatch(executor="local", by=EXECUTOR, at=T0)
        run.complete(1, by=EXECUTOR, at=T0)
    else:
        run.cancel(by=MEMBER, at=T0)
    with pytest.raises(ConflictError) as error:
        run.restart(run.options, by=MEMBER, at=T0)
    assert error.value.code == "run_not_restartable"


def test_replay_continues_a_failed_run_one_level_deeper() -> None:
    run = new_run(RunOptions(payload={"x": 1}, tags={"t": "1"}, idempotency_key="k"))
    with pytest.raises(ConflictError):
        run.replay_options()  # unfinished
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    run.fail(1, reason=EXECUTION_FAILED, message="x", by=EXECUTOR, at=T0)
    options = run.replay_options(batch_id="B1")
    assert options.payload == {"x": 1} and options.tags == {"t": "1"}
    assert (options.continuation_of, options.lineage_depth, options.batch_id) == (
        "RUN0000001",
        1,
        "B1",
    )
    assert options.idempotency_key is None
    with pytest.raises(ConflictError) as not_dlq:
        run.replayed("RUN0000002", dead_letter_only=True, by=MEMBER, at=T0)
    assert not_dlq.value.code == "run_not_dead_lettered"
    run.replayed("RUN0000002", dead_letter_only=False, by=MEMBER, at=T0)
    assert run.replayed_by == "RUN0000002"


def test_dlq_replay_takes_a_dead_lettered_run_out_once() -> None:
    run = new_run()
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    run.fail(1, reason=EXECUTOR_LOST, message="gone", by=EXECUTOR, at=T0)
    assert shown(run) == "dead_letter"
    run.replayed("RUN0000002", dead_letter_only=True, by=MEMBER, at=T0)
    with pytest.raises(ConflictError):
        run.replayed("RUN0000003", dead_letter_only=True, by=MEMBER, at=T0)


def test_idempotency_key_reset_once() -> None:
    run = new_run(RunOptions(idempotency_key="k"))
    assert run.reset_idempotency_key(by=MEMBER, at=T0) == "k"
    assert not run.idempotency_key_held
    with pytest.raises(ConflictError) as again:
        run.reset_idempotency_key(by=MEMBER, at=T0)
    assert again.value.code == "no_idempotency_key"


def _fail_every_attempt(run: JobRun, reason: str) -> None:
    at = T0
    while run.status not in ("failed", "dead_letter"):
        at = (run.not_before or at) + timedelta(seconds=1)
        run.dispatch(executor="local", by=EXECUTOR, at=at)
        run.fail(run.attempt, reason=reason, message="x", by=EXECUTOR, at=at)


def test_a_crash_without_retries_ends_crashed() -> None:
    run = new_run()
    _fail_every_attempt(run, CRASHED)
    assert (run.status, shown(run)) == ("failed", "crashed")


def test_crashes_that_spend_the_retries_end_in_the_dead_letter_queue() -> None:
    run = new_run(RunOptions(max_attempts_override=3))
    _fail_every_attempt(run, CRASHED)
    assert (run.status, run.attempt, shown(run)) == ("dead_letter", 3, "dead_letter")


def test_a_platform_failure_shows_system_failed_and_a_work_failure_failed() -> None:
    platform, work = new_run(), new_run()
    _fail_every_attempt(platform, QUERY_NOT_FOUND)
    _fail_every_attempt(work, EXECUTION_FAILED)
    assert shown(platform) == "system_failed"
    assert shown(work) == "failed"


def test_max_attempts_override_replaces_the_versions_retries() -> None:
    run = new_run(RunOptions(max_attempts_override=1), max_retries=5)
    _fail_every_attempt(run, EXECUTION_FAILED)
    assert run.attempt == 1


@pytest.mark.parametrize(
    ("options", "delays"),
    [
        (RunOptions(), [1, 2, 4]),
        (RunOptions(retry_backoff="fixed", retry_initial_delay_secs=7), [7, 7, 7]),
        (RunOptions(retry_initial_delay_secs=10, retry_max_delay_secs=25), [10, 20, 25]),
    ],
)
def test_retry_backoff_options(options: RunOptions, delays: list[int]) -> None:
    assert [options.backoff(n).total_seconds() for n in (1, 2, 3)] == delays


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("pending", "held", "waiting"),
        ("dispatched", "dispatching", "dequeued"),
        ("running", "started", "executing"),
        ("completed", "succeeded", "completed"),
        ("timeout", "timed_out", "timed_out"),
        ("cancelled", "cancel_requested", "canceled"),
        ("skipped", "concurrency_skip", "canceled"),
        ("dead_letter", "executor_lost", "dead_letter"),
    ],
)
def test_queue_status(status: str, reason: str, expected: str) -> None:
    assert queue_status(status, reason, None, T0) == expected


# --- the extended machine against a model ------------------------------------------------

UNSTARTED_STATUSES = ("pending", "ready")
EXECUTING = ("dispatched", "running")
FINISHED = ("completed", "failed", "timeout", "cancelled", "dead_letter")
OUTCOMES = (
    "complete",
    "execution_failed",
    "crashed",
    "executor_lost",
    "query_not_found",
    "timeout",
)


class QueueMachine(RunModelMachine):
    """Creates with delay and expiry, pause, resume, reschedule, restart, cancel, replay,
    expiry and executor outcomes in any order; the aggregate must agree with a model."""

    @initialize(
        delay=st.sampled_from([None, 0, 30, 300]),
        expiry=st.sampled_from([None, 60, 600]),
        hold=st.booleans(),
        attempts=st.sampled_from([None, 1, 2, 3]),
        max_retries=st.integers(0, 1),
    )
    def create(
        self,
        delay: int | None,
        expiry: int | None,
        hold: bool,
        attempts: int | None,
        max_retries: int,
    ) -> None:
        self.now = T0
        not_before = None if delay is None else T0 + timedelta(seconds=delay)
        expires_at = None if expiry is None else T0 + timedelta(seconds=expiry + (delay or 0))
        self.run = new_run(
            RunOptions(max_attempts_override=attempts, retry_initial_delay_secs=5),
            not_before=not_before,
            expires_at=expires_at,
            hold=hold,
            max_retries=max_retries,
        )
        self.max_retries = max_retries if attempts is None else attempts - 1
        self.status = "pending" if hold else "ready"
        self.paused = False
        self.resume_to = self.status
        self.not_before = not_before
        self.expires_at = expires_at
        self.attempt, self.retries = 1, 0
        self.replayed = False
        self.events = list(self.run.collect_events())

    @rule()
    def pause(self) -> None:
        allowed = self.status in UNSTARTED_STATUSES and not self.paused
        if self._expect(allowed, lambda: self.run.pause(by=MEMBER, at=self._tick())):
            self.resume_to, self.status, self.paused = self.status, "pending", True

    @rule()
    def resume(self) -> None:
        if self._expect(self.paused, lambda: self.run.resume(by=MEMBER, at=self._tick())):
            self.status, self.paused = self.resume_to, False

    @rule(seconds=st.integers(0, 400))
    def reschedule(self, seconds: int) -> None:
        at = self._tick()
        target = at + timedelta(seconds=seconds)
        try:
            self.run.reschedule(target, by=MEMBER, at=at)
        except ConflictError:
            assert self.status not in UNSTARTED_STATUSES
            return
        except InvalidValueError:
            assert self.expires_at is not None and target >= self.expires_at
            return
        assert self.status in UNSTARTED_STATUSES
        self.not_before = target

    @rule()
    def restart(self) -> None:
        restartable = self.status in (
            "pending",
            "ready",
            *EXECUTING,
            "failed",
            "timeout",
            "dead_letter",
        )
        if self._expect(
            restartable, lambda: self.run.restart(self.run.options, by=MEMBER, at=self._tick())
        ):
            self.status, self.paused, self.not_before = "ready", False, None
            self.attempt, self.retries = self.attempt + 1, 0

    @rule()
    def cancel(self) -> None:
        if self._expect(
            self.status not in FINISHED, lambda: self.run.cancel(by=MEMBER, at=self._tick())
        ):
            self.status, self.paused = "cancelled", False

    @rule(dead_letter_only=st.booleans())
    def replay(self, dead_letter_only: bool) -> None:
        allowed = self.status in ("failed", "timeout", "cancelled", "dead_letter") and (
            not dead_letter_only or (self.status == "dead_letter" and not self.replayed)
        )
        if self._expect(
            allowed,
            lambda: self.run.replayed(
                "RUN0000002", dead_letter_only=dead_letter_only, by=MEMBER, at=self._tick()
            ),
        ):
            self.replayed = True

    @rule(wait=st.integers(0, 700))
    def expire_sweep(self, wait: int) -> None:
        at = self._tick(wait)
        expires = (
            self.status in UNSTARTED_STATUSES
            and self.expires_at is not None
            and self.expires_at <= at
        )
        assert self.run.expire(by=EXECUTOR, at=at) == expires
        if expires:
            self.status, self.paused = "cancelled", False

    @rule(wait=st.integers(0, 400))
    def dispatch(self, wait: int) -> None:
        at = self._tick(wait)
        due = (
            self.status == "ready"
            and (self.not_before is None or self.not_before <= at)
            and (self.expires_at is None or self.expires_at > at)
        )
        if self._expect(due, lambda: self.run.dispatch(executor="local", by=EXECUTOR, at=at)):
            self.status, self.not_before = "dispatched", None

    @rule()
    def start(self) -> None:
        if self.run.start(self.attempt, by=EXECUTOR, at=self._tick()):
            assert self.status == "dispatched"
            self.status = "running"

    @rule(outcome=st.sampled_from(OUTCOMES))
    def executor_reports(self, outcome: str) -> None:
        active = self.status in EXECUTING
        at = self._tick()
        if outcome == "complete":
            changed, new = self.run.complete(self.attempt, by=EXECUTOR, at=at), "completed"
        elif outcome == "timeout":
            changed, new = self.run.time_out(self.attempt, by=EXECUTOR, at=at), "timeout"
        else:
            changed = self.run.fail(self.attempt, reason=outcome, message="x", by=EXECUTOR, at=at)
            if self.retries < self.max_retries:
                new = "ready"
            elif outcome == "executor_lost" or (outcome == "crashed" and self.max_retries > 0):
                new = "dead_letter"
            else:
                new = "failed"
        assert changed == active
        if changed:
            if new == "ready":
                self.attempt, self.retries = self.attempt + 1, self.retries + 1
                self.not_before = self.run.not_before
            self.status = new

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.run.status == self.status
        assert self.run.attempt == self.attempt
        assert self.run.retries_used == self.retries
        assert (self.run.status_reason == "paused") == self.paused
        assert (self.run.replayed_by is not None) == self.replayed
        if self.status == "ready":
            assert self.run.not_before == self.not_before
        shown = queue_status(self.run.status, self.run.status_reason, self.run.not_before, self.now)
        assert shown in QUEUE_STATUSES

    @invariant()
    def the_events_rebuild_the_same_run(self) -> None:
        self.events += self.run.collect_events()
        rebuilt = None
        for event in self.events:
            rebuilt = event.mutate(rebuilt)
        assert rebuilt is not None
        assert (rebuilt.status, rebuilt.status_reason, rebuilt.attempt, rebuilt.not_before) == (
            self.run.status,
            self.run.status_reason,
            self.run.attempt,
            self.run.not_before,
        )
        assert rebuilt.options == self.run.options


TestQueueMachine = QueueMachine.TestCase
