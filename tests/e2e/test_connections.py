"""PostgreSQL connections: creating 500 runs over HTTP, with every consumer (dispatcher,
notifier, provisioner) and the projections following the log, starts a bounded number of
server processes, none per request or per event; and pooled connections, handed out
without a check, are still replaced when the server closed them.

The count is PostgreSQL's own (`services.sessions_started`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from sailplane.http.app import create_app
from sailplane.storage import Database, EventLog
from sailplane.system import System, WorkerHost
from tests import services
from tests.conftest import found_org, http_client, local_cluster_id, running_system
from tests.runs_support import wait_until

RUNS = 500
CONSUMERS = ("dispatcher", "notifier")  # those that follow `sailplane.job-runs`


def inbox_rows_after(database: Database, consumer: str, position: int) -> int:
    with database.connect(autocommit=True) as conn:
        return int(
            conn.execute(
                f"SELECT count(*) FROM {EventLog.INBOX_TABLE} "
                "WHERE application_name = %s AND notification_id > %s",
                (consumer, position),
            ).fetchone()[0]
        )


def new_job(system: System, client: httpx.Client, organization_id: str) -> str:
    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:6]}"})
    job = client.post(
        "/workloads/jobs",
        json={
            "jobKey": f"job-{uuid.uuid4().hex[:8]}",
            "clusterId": local_cluster_id(system, organization_id),
            "teamIds": [team.json()["team"]["id"]],
            "config": {"sql": {"source": "SELECT 1"}},
        },
    )
    assert job.status_code == 201, job.text
    return str(job.json()["id"])


@pytest.fixture
def served(fresh_db: Database) -> Iterator[tuple[System, httpx.Client, str]]:
    """Everything `serve` runs, on the test's own database: the system, an owner's HTTP
    client and a job whose runs the tests create."""
    with running_system(fresh_db) as system:
        stop = threading.Event()
        host = WorkerHost()
        for worker in system.in_process_workers():
            if worker.name != "projections":  # running_system runs it already
                host.start(worker, stop)
        try:
            with (
                services.api_server(create_app(system)) as base_url,
                http_client(base_url, (org := found_org(system)).token) as client,
            ):
                yield system, client, new_job(system, client, org.id)
            assert not host.errors, host.errors  # no worker died
        finally:
            stop.set()
            host.join(timeout=20)


def test_creating_runs_starts_a_bounded_number_of_postgresql_sessions(
    served: tuple[System, httpx.Client, str], fresh_db: Database
) -> None:
    system, client, job_id = served
    # Warm every pool and worker first, then count from here.
    assert client.post(f"/workloads/jobs/{job_id}/runs", json={"hold": True}).is_success
    head = system.event_log.head()
    for consumer in CONSUMERS:
        wait_until(lambda c=consumer: inbox_rows_after(fresh_db, c, 0) > 0, what=consumer)
    before = services.sessions_started(fresh_db)

    def create(_: int) -> Any:
        # Held runs: every consumer of the runs topic receives each creation.
        created = client.post(f"/workloads/jobs/{job_id}/runs", json={"hold": True})
        assert created.status_code == 201, created.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(create, range(RUNS)))
    for consumer in CONSUMERS:
        wait_until(
            lambda c=consumer: inbox_rows_after(fresh_db, c, head) >= RUNS,
            timeout=300,
            what=f"{consumer} handled every creation",
        )
    started = services.sessions_started(fresh_db) - before

    # Pools may grow under load and the test's own look-ups count too, but nothing may
    # scale with the number of requests or events (one per event would be >= 1000 here).
    assert started < 60, f"{started} PostgreSQL sessions started for {RUNS} runs"


def test_connections_the_server_closed_are_replaced_without_failing_a_request(
    served: tuple[System, httpx.Client, str], fresh_db: Database
) -> None:
    system, client, job_id = served
    first = client.post(f"/workloads/jobs/{job_id}/runs", json={"hold": True}).json()
    # Every server process of the database but this one ends: each pool now holds
    # connections that look idle and are dead.
    with fresh_db.connect(autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()) t"
        ).fetchone()[0]
    assert ended > 0
    # Reads and writes go on, on new connections, from the first request.
    assert client.get(f"/workloads/jobs/{job_id}/runs/{first['id']}").status_code == 200
    assert client.get(f"/workloads/jobs/{job_id}/runs").json()["total"] == 1
    created = client.post(f"/workloads/jobs/{job_id}/runs", json={"hold": True})
    assert created.status_code == 201, created.text
    assert client.get(f"/workloads/jobs/{job_id}/runs").json()["total"] == 2
    # The consumers follow on too.
    position = system.event_log.head()
    for consumer in CONSUMERS:
        wait_until(
            lambda c=consumer: inbox_rows_after(fresh_db, c, position - 1) > 0, what=consumer
        )
