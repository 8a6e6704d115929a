"""Fixtures every test level shares.

- `pg_server`: the PostgreSQL server (127.0.0.1:5432 when it answers, else embedded).
- `database`: one fresh database for the whole test session; `fresh_db`: one per test.
- `system`: the composition root on `database`, with the projections running.
- `api`: the app behind a real HTTP server; `org`: a new organization per test with its
  owner's token; `client`: an HTTP client acting as that owner; `member_client`: one
  acting as a plain Member of the same organization.
- `kafka`, `moto`, `sail`: real brokers/emulators on free ports, started on first use.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sailplane.domain.access import MEMBER
from sailplane.domain.base import Actor
from sailplane.domain.runtime import RuntimeSettings
from sailplane.http.app import create_app
from sailplane.storage import Database
from sailplane.system import System, WorkerHost
from tests import services


@contextlib.contextmanager
def running_system(database: Database, **kwargs: Any) -> Iterator[System]:
    """A System with its views prepared and the projections worker running."""
    system = System(database, **kwargs)
    system.prepare()
    stop = threading.Event()
    host = WorkerHost()
    host.start(system.worker("projections"), stop)
    try:
        yield system
    finally:
        stop.set()
        host.join(timeout=10)
        system.close()


@dataclass(frozen=True)
class Org:
    """An organization created for one test, with its owner's API token."""

    id: str
    owner_member_id: str
    token: str

    @property
    def owner(self) -> Actor:
        return Actor("member", self.owner_member_id, self.id)


def found_org(system: System, name: str = "Test Org") -> Org:
    founded = system.identity.commands.found_organization(
        name=name, owner_email=f"owner-{uuid.uuid4().hex[:8]}@example.com", owner_name="Owner"
    )
    system.wait_for_views(founded.position)
    # Every organization has its active `local` cluster (the start-up hook does this in serve).
    system.wait_for_views(
        system.infra.commands.ensure_local_cluster(founded.organization_id).position
    )
    return Org(founded.organization_id, founded.owner_member_id, founded.token)


def local_cluster_id(system: System, organization_id: str) -> str:
    """The id of the organization's active `local` workload cluster."""
    local = system.infra.commands.ensure_local_cluster(organization_id)
    system.wait_for_views(local.position)
    return local.cluster_id


def add_member_with_token(system: System, org: Org, role_ids: list[str]) -> tuple[str, str]:
    """A new member of `org` with the given roles, and an API key for them."""
    member_id, _ = system.identity.commands.add_member(
        email=f"member-{uuid.uuid4().hex[:8]}@example.com",
        display_name="Member",
        role_ids=role_ids,
        by=org.owner,
    )
    token, position = system.identity.commands.issue_api_key(
        member_id=member_id, name="test", by=org.owner
    )
    system.wait_for_views(position)
    return member_id, token


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Database]:
    with services.postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def database(pg_server: Database) -> Iterator[Database]:
    with services.fresh_database(pg_server) as database:
        yield database


@pytest.fixture
def fresh_db(pg_server: Database) -> Iterator[Database]:
    with services.fresh_database(pg_server) as database:
        yield database


@pytest.fixture(scope="session")
def system(database: Database) -> Iterator[System]:
    # Providers poll their steps every 50 ms here (minutes apart in production). The test
    # webhook receivers listen on 127.0.0.1, so private webhook targets are allowed here.
    # Runs' CPU and memory are sampled every second (5 s by default). The run runtime's
    # work heartbeats every half second and is crashed after 4 s of silence (10 s and 60 s).
    with running_system(
        database,
        provider_poll_seconds=0.05,
        webhook_allow_private=True,
        run_metrics_interval=1.0,
        runtime=RuntimeSettings(heartbeat_seconds=0.5, crash_after_seconds=4.0),
    ) as system:
        yield system


@pytest.fixture(scope="session")
def api(system: System) -> Iterator[str]:
    with services.api_server(create_app(system)) as base_url:
        system.runs.runtime.api_url = base_url  # where runs' work talks back
        yield base_url


@pytest.fixture
def org(system: System) -> Org:
    return found_org(system)


def http_client(base_url: str, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url + "/api/v1", headers=headers, timeout=30)


@pytest.fixture
def client(api: str, org: Org) -> Iterator[httpx.Client]:
    with http_client(api, org.token) as c:
        yield c


@pytest.fixture
def member_client(api: str, system: System, org: Org) -> Iterator[httpx.Client]:
    _, token = add_member_with_token(system, org, [MEMBER.id])
    with http_client(api, token) as c:
        yield c


@contextlib.contextmanager
def enterable_tmpdir(prefix: str = "sailplane-test-") -> Iterator[Path]:
    """A fresh directory outside pytest's temporary root, which other users may enter.

    The embedded PostgreSQL and the runs' work run as users of their own, and pytest makes
    its root (`/tmp/pytest-of-<user>`) private again whenever any pytest session starts on
    the machine: a data directory or a gate below `tmp_path` could be cut off mid-test."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def open_tmp_path() -> Iterator[Path]:
    """`tmp_path` for what other users must reach: a served data directory, a run's files."""
    with enterable_tmpdir() as folder:
        yield folder


@pytest.fixture
def gate(open_tmp_path: Path) -> Path:
    """A file the test creates to let a run's work go on (`runs_support.until_opened`), in a
    directory the work can see: it runs as another user, which cannot enter `tmp_path`."""
    return open_tmp_path / "gate"


@pytest.fixture(scope="session")
def kafka() -> Iterator[services.Broker]:
    with services.kafka_broker() as broker:
        yield broker


@pytest.fixture(scope="session")
def moto() -> Iterator[str]:
    with services.moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def sail() -> Iterator[str]:
    with services.sail_server() as url:
        yield url


@pytest.fixture(scope="session")
def provisioner(system: System) -> Iterator[None]:
    """The provisioner worker on the session's system: operations and sessions complete."""
    stop = threading.Event()
    host = WorkerHost()
    host.start(system.worker("provisioner"), stop)
    try:
        yield
    finally:
        stop.set()
        host.join(timeout=30)
