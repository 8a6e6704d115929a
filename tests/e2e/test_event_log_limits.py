"""What one write may record, and how long it may wait for the event log, over HTTP.

Each test holds the log's table lock (`LOCK TABLE sailplane_events IN EXCLUSIVE MODE`, the
lock every append takes) from its own connection. A write that reaches the store then
waits for it and, past the lock timeout, answers 503; a write refused by a limit answers
413 or 422 under that same lock, which shows it was refused before any lock was taken.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest

from sailplane.http.app import create_app
from sailplane.storage import MAX_EVENT_BYTES, Database, EventLog, WriteTimeouts
from sailplane.system import System
from tests import services
from tests.conftest import Org, found_org, http_client, local_cluster_id, running_system


@pytest.fixture(scope="module")
def guarded(pg_server: Database) -> Iterator[tuple[System, str]]:
    """A server whose appends wait at most half a second for the log's lock."""
    with (
        services.fresh_database(pg_server) as database,
        running_system(database, write_timeouts=WriteTimeouts(lock=0.5, statement=30)) as system,
        services.api_server(create_app(system)) as base_url,
    ):
        yield system, base_url


@pytest.fixture
def org(guarded: tuple[System, str]) -> Org:
    return found_org(guarded[0])


@pytest.fixture
def client(guarded: tuple[System, str], org: Org) -> Iterator[httpx.Client]:
    with http_client(guarded[1], org.token) as client:
        yield client


@contextmanager
def log_locked(database: Database) -> Iterator[None]:
    """The event log's table lock, held by another transaction."""
    with psycopg.connect(database.conninfo) as conn:
        conn.execute(f"LOCK TABLE {EventLog.EVENTS_TABLE} IN EXCLUSIVE MODE")
        yield
        conn.rollback()


def _team(client: httpx.Client) -> str:
    response = client.post("/org/teams", json={"name": f"team-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return response.json()["team"]["id"]


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"message", "code"} and body["code"] == code, body
    return body


def test_a_write_behind_a_held_log_lock_answers_503_then_the_next_one_succeeds(
    guarded: tuple[System, str], client: httpx.Client
) -> None:
    system = guarded[0]
    head = system.event_log.head()
    with log_locked(system.database):
        blocked = client.post("/org/teams", json={"name": "Waits for the lock"})
        _error(blocked, 503, "event_log_busy")
        assert blocked.headers["Retry-After"] == "1"
    assert system.event_log.head() == head, "nothing of the refused write was recorded"
    assert client.post("/org/teams", json={"name": "Waits for the lock"}).status_code == 201


def test_oversized_values_are_refused_before_the_log_is_locked(
    guarded: tuple[System, str], client: httpx.Client, org: Org
) -> None:
    system = guarded[0]
    team = _team(client)
    cluster = local_cluster_id(system, org.id)
    head = system.event_log.head()

    def job(**body: Any) -> httpx.Response:
        key = f"job-{uuid.uuid4().hex[:8]}"
        return client.post(
            "/workloads/jobs", json={"jobKey": key, "clusterId": cluster, "teamIds": [team], **body}
        )

    with log_locked(system.database):
        two_megabytes = client.post(
            "/workloads/queries", json={"name": "Too long", "queryText": "x" * 2_000_000}
        )
        assert _error(two_megabytes, 422, "value_too_large")["field"] == "queryText"

        big_config = job(config={"blob": "x" * 1_100_000})
        assert _error(big_config, 422, "value_too_large")["field"] == "config"

        # Every field within its own limit, the event over its limit: 600,000 characters
        # of two bytes each.
        wide_text = client.post(
            "/workloads/queries", json={"name": "Wide", "queryText": "é" * 600_000}
        )
        _error(wide_text, 413, "event_too_large")
        half = "x" * (MAX_EVENT_BYTES // 2 + 1000)
        _error(job(config={"blob": half}, sourceConfig={"blob": half}), 413, "event_too_large")

        # The same lock stops any write that reaches the store: this one does.
        _error(client.post("/org/teams", json={"name": "Reaches"}), 503, "event_log_busy")
    assert system.event_log.head() == head
