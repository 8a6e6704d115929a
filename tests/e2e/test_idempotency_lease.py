"""An `Idempotency-Key` claim whose lease expired never lets a command run twice."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import httpx
import pytest

from sailplane.commands.base import RequestFence, current_request
from sailplane.domain.errors import ConflictError
from sailplane.domain.requests import IN_PROGRESS_LEASE
from sailplane.system import System
from tests.conftest import Org


class ServerStopped(Exception):
    """Stands for the server dying between saving the change and recording the answer."""


def _teams_named(system: System, name: str) -> int:
    system.wait_for_views(system.event_log.head())
    return len(system.identity.teams.fetch_all("SELECT id FROM {teams} WHERE name = %s", (name,)))


def test_a_retry_after_the_lease_of_a_crashed_request_does_not_run_it_again(
    system: System, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"lease-{uuid.uuid4().hex[:8]}"
    key = {"Idempotency-Key": uuid.uuid4().hex}

    def stopped(*args: object, **kwargs: object) -> None:
        raise ServerStopped

    with monkeypatch.context() as patched:
        patched.setattr(system.requests, "complete", stopped)
        lost = client.post("/org/teams", json={"name": name}, headers=key)
        assert lost.status_code == 500  # the client never got the answer
    assert _teams_named(system, name) == 1

    # The lease of the claim left in progress expires; the client retries.
    later = system.requests.clock() + IN_PROGRESS_LEASE + timedelta(seconds=1)
    monkeypatch.setattr(system.requests, "clock", lambda: later)
    retried = client.post("/org/teams", json={"name": name}, headers=key)
    assert retried.status_code == 409, retried.text
    assert retried.json()["code"] == "idempotency_response_lost"
    assert _teams_named(system, name) == 1


def test_a_request_whose_claim_was_taken_over_cannot_save_its_change(
    system: System, org: Org, client: httpx.Client
) -> None:
    """A request still running past its lease, and the retry that took its claim over:
    only one of them saves the change."""
    key = uuid.uuid4().hex
    name = f"slow-{uuid.uuid4().hex[:8]}"
    slow = system.requests.claim(key, "fingerprint", by=org.owner)
    assert slow.request is not None
    # The retry, after the lease: the claim is taken over (nothing was saved yet).
    later = system.requests.clock() + IN_PROGRESS_LEASE + timedelta(seconds=1)
    original_clock = system.requests.clock
    system.requests.clock = lambda: later  # type: ignore[method-assign]
    try:
        retry = system.requests.claim(key, "fingerprint", by=org.owner)
    finally:
        system.requests.clock = original_clock  # type: ignore[method-assign]
    assert retry.request is not None

    def run_as(claim_request: object, team_name: str) -> None:
        token = current_request.set(RequestFence(claim_request, org.owner))  # type: ignore[arg-type]
        try:
            system.identity.commands.create_team(name=team_name, default_role_id=None, by=org.owner)
        finally:
            current_request.reset(token)

    results: list[BaseException | None] = []
    thread = threading.Thread(target=lambda: results.append(_capture(run_as, retry.request, name)))
    thread.start()
    thread.join()
    assert results == [None]
    # The original request goes on (a team of another name, so only the claim can stop it).
    with pytest.raises(ConflictError):
        run_as(slow.request, name + "-late")
    assert _teams_named(system, name) == 1
    assert _teams_named(system, name + "-late") == 0


def _capture(function: object, *args: object) -> BaseException | None:
    try:
        function(*args)  # type: ignore[operator]
    except BaseException as exc:  # reported by the caller's assertion
        return exc
    return None
