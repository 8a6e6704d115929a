"""The JobRun aggregate: its rules one by one, the concurrency rule, and the whole
machine against a model under random sequences of commands and executor outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError, InvalidValueError
from sailplane.domain.runs import (
    RETRYABLE,
    TERMINAL,
    JobRun,
    JobVersionSnapshot,
    decide_concurrency,
    retry_backoff,
)
from tests.unit.run_machine import RunModelMachine

MEMBER = Actor("member", "MEMBER0001", "ORG0000001")
DISPATCHER = Actor.system("dispatcher", "ORG0000001")
EXECUTOR = Actor.system("executor", "ORG0000001")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(**fields: object) -> JobVersionSnapshot:
    return JobVersionSnapshot(
        **{
            "job_id": "JOB0000001",
            "version": 3,
            "cluster_id": "CLUSTER001",
            "sql_source": "SELECT 1",
            **fields,
        }  # type: ignore[arg-type]
    )


def new_run(*, hold: bool = False, waiting_for: tuple[str, ...] = (), **fields: object) -> JobRun:
    return JobRun.create(
        id="RUN0000001",
        spec=spec(**fields),
        trigger="manual",
        hold=hold,
        waiting_for=waiting_for,
        by=MEMBER,
        at=T0,
    )


def test_create_is_ready_or_pending_held_or_waiting() -> None:
    assert new_run().status == "ready"
    held = new_run(hold=True)
    assert (held.status, held.status_reason) == ("pending", "held")
    waiting = new_run(waiting_for=("upstream",))
    assert (waiting.status, waiting.status_reason) == ("pending", "waiting_for_dependencies")
    assert "upstream" in (waiting.status_message or "")
    assert new_run().job_version == 3 and new_run().attempt == 1


def test_create_rejects_unknown_trigger_and_cleanup_mode() -> None:
    with pytest.raises(InvalidValueError):
        JobRun.create(id="R", spec=spec(), trigger="cron", hold=False, by=MEMBER, at=T0)
    with pytest.raises(InvalidValueError):
        JobRun.create(
            id="R",
            spec=spec(),
            trigger="api",
            hold=False,
            resource_cleanup_mode="x",
            by=MEMBER,
            at=T0,
        )


def test_snapshot_survives_the_event_round_trip() -> None:
    run = new_run(python={"entryPoint": "m:f"}, depends_on=("a",), max_retries=2)
    created = run.collect_events()[0]
    assert JobVersionSnapshot.from_dict(created.job_version) == run.spec
    assert run.spec.depends_on == ("a",)


def test_release_only_from_pending() -> None:
    run = new_run(hold=True)
    run.release(by=MEMBER, at=T0)
    assert (run.status, run.status_reason) == ("ready", "released")
    with pytest.raises(ConflictError) as error:
        run.release(by=MEMBER, at=T0)
    assert error.value.code == "run_not_pending"


def run_to(status: str, **fields: object) -> JobRun:
    run = new_run(**fields)
    if status == "ready":
        return run
    attempt = run.dispatch(executor="local", by=DISPATCHER, at=T0)
    if status == "dispatched":
        return run
    run.start(attempt, by=EXECUTOR, at=T0)
    if status == "running":
        return run
    if status == "completed":
        run.complete(attempt, by=EXECUTOR, at=T0)
    elif status == "failed":
        run.fail(attempt, reason="execution_failed", message="boom", by=EXECUTOR, at=T0)
    elif status == "timeout":
        run.time_out(attempt, by=EXECUTOR, at=T0)
    elif status == "dead_letter":
        run.fail(attempt, reason="executor_lost", message="gone", by=EXECUTOR, at=T0)
    elif status == "cancelled":
        run.cancel(by=MEMBER, at=T0)
    return run


@pytest.mark.parametrize("status", ["pending", "ready", "dispatched", "running", "completed"])
def test_retry_is_409_unless_failed_timeout_cancelled_or_dead_letter(status: str) -> None:
    run = new_run(hold=True) if status == "pending" else run_to(status)
    with pytest.raises(ConflictError) as error:
        run.retry(hold=False, by=MEMBER, at=T0)
    assert error.value.code == "run_not_retryable"


@pytest.mark.parametrize("status", sorted(RETRYABLE))
@pytest.mark.parametrize("hold", [False, True])
def test_retry_keeps_the_id_and_counts_the_attempt(status: str, hold: bool) -> None:
    run = run_to(status)
    run.retry(hold=hold, by=MEMBER, at=T0)
    assert run.id == "RUN0000001"
    assert run.attempt == 2 and run.trigger == "retry"
    assert run.status == ("pending" if hold else "ready")


@pytest.mark.parametrize("status", ["completed", "failed", "timeout", "dead_letter", "cancelled"])
def test_cancel_is_409_from_a_terminal_status(status: str) -> None:
    run = run_to(status)
    with pytest.raises(ConflictError) as error:
        run.cancel(by=MEMBER, at=T0)
    assert error.value.code == "run_finished"


@pytest.mark.parametrize("status", ["ready", "dispatched", "running"])
def test_delete_is_409_unless_terminal(status: str) -> None:
    with pytest.raises(ConflictError) as error:
        run_to(status).delete(by=MEMBER, at=T0)
    assert error.value.code == "run_not_finished"


def test_failures_retry_with_backoff_then_fail_or_dead_letter() -> None:
    run = run_to("running", max_retries=1)
    assert run.fail(1, reason="execution_failed", message="boom", by=EXECUTOR, at=T0)
    assert (run.status, run.status_reason, run.attempt) == ("ready", "retry_backoff", 2)
    assert run.not_before == T0 + retry_backoff(1)
    assert not run.is_due(T0)
    with pytest.raises(ConflictError):
        run.dispatch(executor="local", by=DISPATCHER, at=T0)
    run.dispatch(executor="local", by=DISPATCHER, at=T0 + timedelta(seconds=5))
    assert run.fail(2, reason="executor_lost", message="gone", by=EXECUTOR, at=T0)
    assert (run.status, run.status_reason) == ("dead_letter", "executor_lost")


def test_stale_executor_reports_change_nothing() -> None:
    run = run_to("running")
    assert not run.complete(2, by=EXECUTOR, at=T0)  # another attempt
    run.cancel(by=MEMBER, at=T0)
    assert not run.complete(1, by=EXECUTOR, at=T0)  # finished already
    assert run.status == "cancelled"


def test_waiting_records_only_changes_of_reason() -> None:
    run = new_run()
    run.collect_events()
    assert run.wait("concurrency_limit", "1 of 1 running", by=DISPATCHER, at=T0)
    assert not run.wait("concurrency_limit", "1 of 1 running", by=DISPATCHER, at=T0)
    assert len(run.collect_events()) == 1
    assert run.status_reason == "concurrency_limit"


def test_deadline_from_timeout_seconds() -> None:
    run = run_to("running", timeout_seconds=2)
    assert run.deadline() == T0 + timedelta(seconds=2)
    assert run_to("running").deadline() is None


# --- the concurrency rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "limit", "active", "action", "cancel"),
    [
        ("allow", None, ["A", "B", "C"], "start", ()),
        ("allow", 2, ["A"], "start", ()),
        ("allow", 2, ["A", "B"], "wait", ()),
        ("queue", None, [], "start", ()),
        ("queue", None, ["A"], "wait", ()),
        ("queue", 1, ["A"], "wait", ()),
        ("skip", 1, ["A"], "skip", ()),
        ("skip", 2, ["A"], "start", ()),
        ("replace", 1, ["A"], "start", ("A",)),
        ("replace", 2, ["A", "B", "C"], "start", ("A", "B")),
        ("replace", 2, ["A"], "start", ()),
    ],
)
def test_decide_concurrency(
    policy: str, limit: int | None, active: list[str], action: str, cancel: tuple[str, ...]
) -> None:
    decision = decide_concurrency(policy, limit, active)
    assert (decision.action, decision.cancel_run_ids) == (action, cancel)


def test_decide_concurrency_rejects_unknown_policy() -> None:
    with pytest.raises(InvalidValueError):
        decide_concurrency("sometimes", 1, [])


@pytest.mark.parametrize("policy", ["allow", "skip", "queue", "replace"])
def test_decide_concurrency_never_exceeds_the_limit(policy: str) -> None:
    for limit in range(1, 4):
        for active in range(6):
            ids = [f"R{i}" for i in range(active)]
            d = decide_concurrency(policy, limit, ids)
            if d.starts:
                assert active - len(d.cancel_run_ids) + 1 <= limit


# --- the machine against a model -------------------------------------------------------


class RunMachine(RunModelMachine):
    """Commands and executor outcomes in any order; the aggregate must agree with a model."""

    @initialize(hold=st.booleans(), max_retries=st.integers(0, 2))
    def create(self, hold: bool, max_retries: int) -> None:
        self.now = T0
        self.run = JobRun.create(
            id="RUN0000001",
            spec=spec(max_retries=max_retries),
            trigger="api",
            hold=hold,
            by=MEMBER,
            at=self.now,
        )
        self.max_retries = max_retries
        self.status = "pending" if hold else "ready"
        self.attempt = 1
        self.retries = 0
        self.deleted = False
        self.events = list(self.run.collect_events())

    @rule()
    def release(self) -> None:
        if self._expect(
            self.status == "pending", lambda: self.run.release(by=MEMBER, at=self._tick())
        ):
            self.status = "ready"

    @rule(hold=st.booleans())
    def retry(self, hold: bool) -> None:
        if self._expect(
            self.status in RETRYABLE, lambda: self.run.retry(hold=hold, by=MEMBER, at=self._tick())
        ):
            self.status = "pending" if hold else "ready"
            self.attempt += 1
            self.retries = 0

    @rule()
    def cancel(self) -> None:
        if self._expect(
            self.status not in TERMINAL, lambda: self.run.cancel(by=MEMBER, at=self._tick())
        ):
            self.status = "cancelled"

    @precondition(lambda self: not self.deleted)
    @rule()
    def delete(self) -> None:
        if self._expect(
            self.status in TERMINAL, lambda: self.run.delete(by=MEMBER, at=self._tick())
        ):
            self.deleted = True

    @rule(wait=st.integers(0, 400))
    def dispatch(self, wait: int) -> None:
        at = self._tick(wait)
        due = self.status == "ready" and (self.run.not_before is None or self.run.not_before <= at)
        if self._expect(due, lambda: self.run.dispatch(executor="local", by=DISPATCHER, at=at)):
            self.status = "dispatched"

    @rule(stale=st.booleans())
    def start(self, stale: bool) -> None:
        attempt = self.attempt + (1 if stale else 0)
        changed = self.run.start(attempt, by=EXECUTOR, at=self._tick())
        assert changed == (not stale and self.status == "dispatched")
        if changed:
            self.status = "running"

    @rule(outcome=st.sampled_from(["complete", "execution_failed", "executor_lost", "timeout"]))
    def executor_reports(self, outcome: str) -> None:
        active = self.status in ("dispatched", "running")
        at = self._tick()
        if outcome == "complete":
            changed = self.run.complete(self.attempt, by=EXECUTOR, at=at)
            new = "completed"
        elif outcome == "timeout":
            changed = self.run.time_out(self.attempt, by=EXECUTOR, at=at)
            new = "timeout"
        else:
            changed = self.run.fail(self.attempt, reason=outcome, message="x", by=EXECUTOR, at=at)
            if self.retries < self.max_retries:
                new = "ready"
            else:
                new = "failed" if outcome == "execution_failed" else "dead_letter"
        assert changed == active
        if changed:
            if new == "ready":
                self.attempt += 1
                self.retries += 1
            self.status = new

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.run.status == self.status
        assert self.run.attempt == self.attempt
        assert self.run.retries_used == self.retries
        assert self.run.deleted == self.deleted
        assert (self.run.finished_at is not None) == (self.status in TERMINAL)

    @invariant()
    def replay_gives_the_same_run(self) -> None:
        self.events += self.run.collect_events()
        replayed = None
        for event in self.events:
            replayed = event.mutate(replayed)
        assert replayed is not None
        assert (replayed.status, replayed.attempt, replayed.version) == (
            self.run.status,
            self.run.attempt,
            self.run.version,
        )


TestRunMachine = RunMachine.TestCase


# --- notifications ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        ("completed", "job_run.completed"),
        ("failed", "job_run.failed"),
        ("timeout", "job_run.timeout"),
        ("cancelled", "job_run.cancelled"),
        ("dead_letter", "job_run.dead_letter"),
    ],
)
def test_terminal_transitions_are_notable(status: str, event_type: str) -> None:
    from sailplane.domain.notification_sources import NOTIFICATION_SOURCES

    run = run_to(status, team_ids=("TEAM000001",), job_key="nightly")
    events = run.collect_events()

    def lookup(aggregate_id: str, version: int | None = None) -> JobRun | None:
        replayed = None
        for e in events:
            if version is None or e.originator_version <= version:
                replayed = e.mutate(replayed)
        return replayed

    notables = [NOTIFICATION_SOURCES.notable(e, lookup) for e in events]
    assert [n.event_type for n in notables if n is not None] == [event_type]
    notable = next(n for n in notables if n is not None)
    assert notable.resource_id == run.id and notable.related_ids == ("JOB0000001",)
    assert notable.team_ids == ("TEAM000001",) and notable.member_id == "MEMBER0001"
    assert notable.payload["status"] == status and "nightly" in notable.subject


def test_skipped_runs_are_notable() -> None:
    from sailplane.domain.notification_sources import NOTIFICATION_SOURCES

    run = new_run()
    run.skip(by=DISPATCHER, at=T0, message="limit")
    events = run.collect_events()
    notable = NOTIFICATION_SOURCES.notable(events[-1], lambda i, v=None: run)
    assert notable is not None and notable.event_type == "job_run.skipped"
