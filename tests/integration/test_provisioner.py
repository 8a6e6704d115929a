"""The provisioner performs operations exactly once, even when it dies in the middle of one,
and the local provider's Sail servers are supervised."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from sailplane.commands.ports import ClusterSpec, ConnectionSpec, Progress, resource_name
from sailplane.domain.infra import Operation
from sailplane.infra_adapters.consumers import Delivery
from sailplane.infra_adapters.providers.local import LocalProvider, SailServers, spark_sql_ok
from sailplane.storage import Database
from sailplane.system import System, WorkerHost
from tests.conftest import Org, found_org, running_system


class WorkerDied(BaseException):
    """Stands for the process being killed: nothing in the worker catches it."""


class DiesAfterProvisioning:
    """The real local adapter, except that the worker dies right after the cluster step ran
    (the server is up) and before the outcome is recorded."""

    def __init__(self, real: LocalProvider) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def provision_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        self.real.provision_cluster(connection, cluster, token=token, progress=progress)
        raise WorkerDied


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def run_provisioner(system: System) -> tuple[WorkerHost, threading.Event]:
    stop = threading.Event()
    host = WorkerHost()
    host.start(system.worker("provisioner"), stop)
    return host, stop


@pytest.fixture
def isolated(fresh_db: Database) -> Any:
    with running_system(fresh_db) as system:
        yield system


def _cluster_to_provision(system: System, org: Org, name: str) -> tuple[str, str, int]:
    """A cluster on the organization's local connection and its provision operation:
    (cluster id, operation id, the operation's log position)."""
    local = system.infra.commands.ensure_local_cluster(org.id)
    external_id, _ = system.infra.commands.create_cluster(
        local.connection_id,
        network_id=local.network_id,
        name=name,
        region=None,
        config={},
        by=org.owner,
    )
    operation_id, position = system.infra.commands.provision_cluster(
        local.connection_id, external_id, by=org.owner
    )
    return external_id, operation_id, position


def test_a_provisioner_killed_mid_operation_finishes_it_once_after_a_restart(
    isolated: System,
) -> None:
    system = isolated
    org = found_org(system)
    external_id, operation_id, _ = _cluster_to_provision(system, org, "k")
    first: LocalProvider = system.infra.providers.adapters["local"]  # type: ignore[assignment]
    system.infra.providers.adapters["local"] = DiesAfterProvisioning(first)  # type: ignore[assignment]

    host, stop = run_provisioner(system)
    wait_until(stop.is_set)  # the worker died
    with pytest.raises(RuntimeError, match="WorkerDied"):
        host.join(timeout=10)
    operation = system.infra.commands.repository.get(operation_id)
    assert operation.status == "running"
    assert first.servers.starts == 1
    name = resource_name("cluster", external_id, org.id)
    server_pid = first.servers.pid(name)
    assert server_pid is not None

    # A new worker, with a fresh adapter as a restarted process would have: it finds the
    # running server by its name instead of starting a second one, and finishes the operation.
    second = LocalProvider(SailServers(first.servers.state_dir))
    system.infra.providers.adapters["local"] = second
    host, stop = run_provisioner(system)
    try:
        wait_until(lambda: system.infra.commands.repository.get(operation_id).status != "running")
    finally:
        stop.set()
        host.join(timeout=10)
    events = list(system.infra.commands.events.get(operation_id))
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("Started") == 1
    assert kinds.count("Succeeded") == 1 and "Failed" not in kinds
    assert second.servers.starts == 0
    assert second.servers.pid(name) == server_pid
    assert system.infra.clusters.external_cluster(org.id, external_id)["status"] == "active"

    # A redelivered message changes nothing: the operation has finished.
    provisioner = system.worker("provisioner").consumer  # type: ignore[attr-defined]
    delivery = type("D", (), {"tracking": lambda self, name: None})()
    provisioner.perform(operation_id, delivery)
    assert len(list(system.infra.commands.events.get(operation_id))) == len(events)
    assert isinstance(events[0], Operation.Created)

    first.servers.stop(name)
    first.close()
    assert second.servers.find(name) is None


def test_a_dead_sail_server_is_restarted_on_its_port(tmp_path: Any) -> None:
    servers = SailServers(tmp_path)
    try:
        port = servers.ensure("sailplane-cluster-test")
        pid = servers.pid("sailplane-cluster-test")
        assert pid is not None
        psutil.Process(pid).kill()
        psutil.Process(pid).wait(timeout=10)
        assert servers.restart_dead() == ["sailplane-cluster-test"]
        assert servers.ensure("sailplane-cluster-test") == port
        assert servers.pid("sailplane-cluster-test") != pid
        assert spark_sql_ok(f"sc://127.0.0.1:{port}") == (True, "SELECT 1 answered.")
    finally:
        servers.close()
    assert servers.find("sailplane-cluster-test") is None


def test_a_stopped_server_stays_stopped_and_its_port_is_free(tmp_path: Any) -> None:
    servers = SailServers(tmp_path)
    try:
        port = servers.ensure("a")
        servers.stop("a")
        assert servers.restart_dead() == []
        assert servers.find("a") is None
        with socket.socket() as s:  # the port is free again
            s.bind(("127.0.0.1", port))
    finally:
        servers.close()


class GatedProvisioning:
    """The real local adapter, except that the cluster step waits for a gate and is counted."""

    def __init__(self, real: LocalProvider) -> None:
        self.real = real
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def provision_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.real.provision_cluster(connection, cluster, token=token, progress=progress)


def _lock_waiters(system: System) -> int:
    with system.database.connect() as conn:
        row = conn.execute(
            # Advisory locks are per database: count only this test's database.
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    return int(row[0])


def test_an_operation_redelivered_to_a_second_instance_mid_step_is_performed_once(
    isolated: System,
) -> None:
    """A rebalance hands the message of a running operation to another instance: it waits
    for the first instead of running the step again, then finds the operation finished."""
    system = isolated
    org = found_org(system)
    external_id, operation_id, position = _cluster_to_provision(system, org, "twice")
    real: LocalProvider = system.infra.providers.adapters["local"]  # type: ignore[assignment]
    gated = GatedProvisioning(real)
    system.infra.providers.adapters["local"] = gated  # type: ignore[assignment]
    [created] = [
        e
        for e in system.infra.commands.events.get(operation_id)
        if isinstance(e, Operation.Created)
    ]
    delivery = Delivery(position=position, topic="", event=created)
    first = system.worker("provisioner").consumer  # type: ignore[attr-defined]
    second = system.worker("provisioner").consumer  # type: ignore[attr-defined]
    errors: list[BaseException] = []

    def perform(provisioner: Any) -> None:
        try:
            provisioner.handle(delivery)
        except BaseException as exc:  # reported by the assertions below
            errors.append(exc)

    threads = [threading.Thread(target=perform, args=(p,)) for p in (first, second)]
    try:
        threads[0].start()
        assert gated.entered.wait(60)
        threads[1].start()
        wait_until(lambda: _lock_waiters(system) >= 1)  # the second waits for the first
        assert gated.calls == 1
    finally:
        gated.gate.set()
        for thread in threads:
            thread.join(timeout=60)
        system.infra.providers.adapters["local"] = real
    assert errors == []
    assert gated.calls == 1
    kinds = [type(e).__name__ for e in system.infra.commands.events.get(operation_id)]
    assert kinds.count("Started") == 1 and kinds.count("Succeeded") == 1
    real.servers.stop(resource_name("cluster", external_id, org.id))
