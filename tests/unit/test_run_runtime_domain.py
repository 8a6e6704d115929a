"""The run runtime's pure rules: run tokens, item sizes, and what the work's reports do to
the JobRun aggregate (result, waiting for children, pause at a checkpoint, debug flag)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sailplane.domain.errors import ConflictError
from sailplane.domain.runs import JobRun, queue_status
from sailplane.domain.runtime import RunTokens, encoded_size, is_run_token, oversized
from tests.unit.test_run_queue_domain import EXECUTOR, MEMBER, T0, new_run

WORK = EXECUTOR  # who reports does not matter to the rules

ids = st.text(alphabet="ABCDEFGHJKMNPQRSTVWXYZ0123456789", min_size=1, max_size=20)


@given(org=ids, run=ids, attempt=st.integers(min_value=1, max_value=10**6))
def test_a_run_token_names_its_run_and_attempt_and_no_other(
    org: str, run: str, attempt: int
) -> None:
    tokens = RunTokens([b"k" * 32])
    token = tokens.mint(org, run, attempt)
    assert is_run_token(token)
    claims = tokens.verify(token)
    assert claims is not None
    assert (claims.organization_id, claims.run_id, claims.attempt) == (org, run, attempt)
    # Another key, or any changed character, is refused.
    assert RunTokens([b"x" * 32]).verify(token) is None
    body, _, signature = token.partition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert tokens.verify(f"{body}.{flipped}") is None


def test_a_rotated_key_still_verifies_tokens_minted_before() -> None:
    old = RunTokens([b"old" * 11])
    token = old.mint("O", "R", 1)
    assert RunTokens([b"new" * 11, b"old" * 11]).verify(token) is not None
    assert RunTokens([b"k" * 32]).verify("sp_not_a_run_token") is None
    assert RunTokens([b"k" * 32]).verify("spr_garbage") is None


@given(st.text(max_size=300))
def test_an_item_is_oversized_exactly_when_its_json_is_over_the_limit(text: str) -> None:
    size = encoded_size({"text": text})
    assert oversized([("chunk", {"text": text})], size) is None
    assert oversized([("chunk", {"text": text})], size - 1) == ("chunk", size)


def executing() -> JobRun:
    run = new_run()
    run.dispatch(executor="local", by=EXECUTOR, at=T0)
    run.start(1, by=EXECUTOR, at=T0)
    return run


def test_the_result_is_recorded_only_by_the_current_attempt() -> None:
    run = executing()
    run.report_result(1, {"answer": 42}, by=WORK, at=T0)
    assert run.result == {"answer": 42}
    # The same result sent again (its answer was lost) records nothing; another value does.
    events = len(run.pending_events)
    assert not run.report_result(1, {"answer": 42}, by=WORK, at=T0)
    assert len(run.pending_events) == events
    assert run.report_result(1, {"answer": 43}, by=WORK, at=T0)
    assert run.result == {"answer": 43}
    with pytest.raises(ConflictError) as stale:
        run.report_result(2, {"answer": 0}, by=WORK, at=T0)
    assert stale.value.code == "attempt_not_current"


def test_waiting_for_children_shows_waiting_then_executing() -> None:
    run = executing()
    assert run.await_children(1, ["C1", "C2"], by=WORK, at=T0)
    assert not run.await_children(1, ["C1"], by=WORK, at=T0)  # already waiting
    assert queue_status(run.status, run.status_reason, None, T0) == "waiting"
    assert run.continue_work(1, by=WORK, at=T0)
    assert queue_status(run.status, run.status_reason, None, T0) == "executing"
    assert not run.continue_work(1, by=WORK, at=T0)


def test_an_executing_run_pauses_only_at_a_checkpoint_and_resumes_with_a_new_attempt() -> None:
    run = executing()
    with pytest.raises(ConflictError) as never:
        run.pause(by=MEMBER, at=T0)
    assert never.value.code == "run_not_pausable"
    assert "checkpoint()" in never.value.message
    assert not run.suspend(1, by=WORK, at=T0)  # a checkpoint without a pause asked goes on
    run.pause(by=MEMBER, at=T0, checkpointed=True)
    assert (run.status, run.status_reason) == ("running", "pause_requested")
    with pytest.raises(ConflictError):
        run.pause(by=MEMBER, at=T0, checkpointed=True)
    assert run.suspend(1, by=WORK, at=T0)
    assert (run.status, run.status_reason, run.attempt) == ("pending", "paused", 2)
    assert queue_status(run.status, run.status_reason, None, T0) == "waiting"
    # The old attempt's reports are stale now.
    assert not run.complete(1, by=EXECUTOR, at=T0)
    run.resume(by=MEMBER, at=T0)
    assert (run.status, run.status_reason) == ("ready", "resumed")
    assert run.dispatch(executor="local", by=EXECUTOR, at=T0) == 2


def test_debug_mode_is_an_event_only_when_it_changes() -> None:
    run = new_run()
    assert run.set_debug_mode(True, by=MEMBER, at=T0)
    assert run.options.debug_mode
    assert not run.set_debug_mode(True, by=MEMBER, at=T0)
    assert [type(e).__name__ for e in run.collect_events()][-1] == "DebugModeSet"


def test_the_usage_totals_ride_on_the_final_event() -> None:
    run = executing()
    totals = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost_microusd": 4}
    run.complete(1, by=EXECUTOR, at=T0, usage=totals)
    assert run.collect_events()[-1].usage == totals


def test_the_runtime_module_needs_only_the_standard_library_and_has_exactly_its_names() -> None:
    """`sailplane/runtime.py` travels alone into pods: nothing but the standard library."""
    import ast
    import sys
    from pathlib import Path

    import sailplane.runtime as runtime

    tree = ast.parse(Path(runtime.__file__).read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)
    assert set(runtime.__all__) == {
        "RuntimeRefused",
        "payload",
        "result",
        "checkpoint",
        "last_checkpoint",
        "usage",
        "tool_call",
        "output",
        "chunk",
        "set_state",
        "get_state",
        "event",
        "spawn",
        "wait_for",
        "debug_mode",
    }
