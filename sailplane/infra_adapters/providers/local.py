"""The `local` provider: clusters are Sail Spark Connect servers on this host.

A cluster is one `sail spark server` process on a free loopback port, supervised here:
started on provision or on first use (`spark_endpoint`), restarted (on its port when it is
still free) if it dies, stopped on destroy and when Sailplane shuts down. The network is
the loopback network; the one instance type and region describe this host.

A server is user work (Sail's file reader reads any file its process can): it runs in a
private workspace as the identity `Isolation` gives long-lived work, with a built
environment, never as the server.

Idempotency: a server is named by `resource_name("cluster", ...)` and its pid and port are
kept in `<state_dir>/<name>.json`, so a second provision, a redelivered message or another
Sailplane process on this host finds the running server instead of starting a second one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from sailplane.commands.ports import (
    ClusterSpec,
    ConnectionSpec,
    Health,
    InstanceTypeQuery,
    NetworkSpec,
    Progress,
    ProviderError,
    Template,
    Unsupported,
    Verification,
    resource_name,
)
from sailplane.domain.errors import InvalidValueError
from sailplane.infra_adapters.isolation import Isolation

log = logging.getLogger(__name__)

REGION = "local"
INSTANCE_TYPE = "local"
LOOPBACK = "loopback"
MIB = 1024 * 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def _architecture() -> str:
    machine = platform.machine().lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"


@dataclass
class _Server:
    name: str
    port: int
    process: subprocess.Popen[bytes] | None  # None: started by another process on this host
    pid: int
    # Ours to stop on close: started here, or adopted from a starter that died (kill -9).
    owned: bool = True


class SailServers:
    """Sail Spark Connect servers on this host, by name: start, find, supervise, stop."""

    START_TIMEOUT = 30.0

    def __init__(
        self,
        state_dir: Path,
        *,
        sail_binary: Path | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self.state_dir = state_dir
        self._own_isolation = isolation is None
        self.isolation = isolation or Isolation.detect()
        self.sail_binary = sail_binary or Path(sys.executable).parent / "sail"
        self.servers: dict[str, _Server] = {}
        self.wanted: set[str] = set()  # names to keep running (restarted if they die)
        self.starts = 0  # servers this object started (tests check idempotency with it)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    def _state_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def _alive(self, server: _Server) -> bool:
        if server.process is not None:
            return server.process.poll() is None and _listening(server.port)
        return psutil.pid_exists(server.pid) and _listening(server.port)

    def _adopt(self, name: str) -> _Server | None:
        """A live server another process (or an earlier run) started under this name."""
        try:
            state = json.loads(self._state_file(name).read_text())
        except (OSError, ValueError):
            return None
        server = _Server(name, int(state["port"]), None, int(state["pid"]), owned=False)
        if not self._alive(server):
            return None
        owner = state.get("owner")
        if owner is None or not psutil.pid_exists(int(owner)):
            # Its starter died without stopping it: this process takes it over, so a clean
            # stop of this process stops it too and nothing is left running.
            server.owned = True
            self._record(name, server.pid, server.port)
            log.info("took over Sail server %s (pid %s) from a stopped process", name, server.pid)
        return server

    def _record(self, name: str, pid: int, port: int) -> None:
        self._state_file(name).write_text(
            json.dumps({"pid": pid, "port": port, "owner": os.getpid()})
        )

    def find(self, name: str) -> _Server | None:
        with self._lock:
            server = self.servers.get(name) or self._adopt(name)
            if server is not None and self._alive(server):
                self.servers[name] = server
                return server
            return None

    def ensure(self, name: str) -> int:
        """The port of the running server named `name`, started if it is not running."""
        with self._lock:
            self.wanted.add(name)
            server = self.find(name)
            if server is None:
                previous = self.servers.get(name)
                server = self._start(name, previous.port if previous else None)
            self._supervise()
            return server.port

    def _start(self, name: str, port: int | None) -> _Server:
        if port is None or _listening(port):
            port = _free_port()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        process = self.isolation.spawn(
            [str(self.sail_binary), "spark", "server", "--ip", "127.0.0.1", "--port", str(port)],
            self.isolation.workspace(f"sail-{name}", attempt=False),
            {},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                raise ProviderError(
                    f"The Sail server {name} did not start listening on port {port}.",
                    code="sail_start_failed",
                )
            time.sleep(0.05)
        server = _Server(name, port, process, process.pid)
        self.servers[name] = server
        self.starts += 1
        self._record(name, process.pid, port)
        log.info("started Sail server %s on port %s (pid %s)", name, port, process.pid)
        return server

    def stop(self, name: str) -> None:
        """Stop the server and forget it (a destroy); nothing running is fine."""
        with self._lock:
            self.wanted.discard(name)
            server = self.servers.pop(name, None) or self._adopt(name)
            if server is not None:
                self._terminate(server)
            with contextlib.suppress(FileNotFoundError):
                self._state_file(name).unlink()

    def _terminate(self, server: _Server) -> None:
        if server.process is not None:
            server.process.terminate()
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)
        else:
            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(server.pid)
                process.terminate()
                try:
                    process.wait(timeout=10)
                except psutil.TimeoutExpired:
                    process.kill()

    def pid(self, name: str) -> int | None:
        server = self.find(name)
        return server.pid if server else None

    # --- supervision ---------------------------------------------------------------------

    def _supervise(self) -> None:
        if self._supervisor is None or not self._supervisor.is_alive():
            self._stop.clear()
            self._supervisor = threading.Thread(
                target=self._watch, name="sail-supervisor", daemon=True
            )
            self._supervisor.start()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self.restart_dead()

    def restart_dead(self) -> list[str]:
        """Restart every wanted server that died (on its old port when free); their names."""
        restarted = []
        with self._lock:
            for name in sorted(self.wanted):
                server = self.servers.get(name)
                if server is not None and server.process is not None and self._alive(server):
                    continue
                if self.find(name) is not None:
                    continue
                try:
                    self._start(name, server.port if server else None)
                    restarted.append(name)
                except ProviderError:
                    log.exception("could not restart Sail server %s", name)
        return restarted

    def close(self) -> None:
        """Stop supervising and stop the servers this process owns (Sailplane shuts down)."""
        self._stop.set()
        with self._lock:
            for name, server in list(self.servers.items()):
                if server.owned:
                    self._terminate(server)
                    with contextlib.suppress(FileNotFoundError):
                        self._state_file(name).unlink()
            self.servers.clear()
            self.wanted.clear()
        if self._own_isolation:
            self.isolation.close()


def spark_sql_ok(url: str) -> tuple[bool, str]:
    """Run `SELECT 1` through a Spark Connect client: (ok, message)."""
    from pyspark.sql import SparkSession

    try:
        session = SparkSession.builder.remote(url).create()
    except Exception as exc:
        return False, f"Cannot connect to {url}: {exc}"
    try:
        rows = session.sql("SELECT 1 AS one").collect()
        ok = [r["one"] for r in rows] == [1]
        return ok, "SELECT 1 answered." if ok else f"SELECT 1 answered {rows!r}."
    except Exception as exc:
        return False, f"SELECT 1 failed: {exc}"
    finally:
        with contextlib.suppress(Exception):
            session.stop()


class LocalProvider:
    name = "local"
    supports_templates = False
    verified_settings: tuple[str, ...] = ()

    def __init__(self, servers: SailServers) -> None:
        self.servers = servers

    # --- connections --------------------------------------------------------------------

    def check_config(
        self, config: dict[str, Any], *, connection_id: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        if config:
            raise InvalidValueError(
                f"A local connection takes no providerConfig settings; got {', '.join(sorted(config))}.",
                field="providerConfig",
                code="invalid_provider_config",
            )
        return {}, {}

    def initial_status(self) -> str:
        return "active"

    def verify(self, connection: ConnectionSpec, *, role_arn: str | None) -> Verification:
        if not self.servers.sail_binary.exists():
            return Verification(
                False, f"Sail is not installed here ({self.servers.sail_binary}).", {}
            )
        return Verification(True, f"Sail runs on this host ({socket.gethostname()}).", {})

    def regions(self, connection: ConnectionSpec) -> list[dict[str, Any]]:
        return [
            {
                "provider": self.name,
                "regionCode": REGION,
                "regionName": f"This host ({socket.gethostname()})",
                "group": self.name,
            }
        ]

    def instance_types(
        self, connection: ConnectionSpec, wanted: InstanceTypeQuery
    ) -> list[dict[str, Any]]:
        vcpus = os.cpu_count() or 1
        memory = psutil.virtual_memory().total // MIB
        item = {
            "provider": self.name,
            "instanceType": INSTANCE_TYPE,
            "vCpus": vcpus,
            "memoryMiB": memory,
            "architecture": _architecture(),
            "gpuCount": 0,
            "instanceFamily": self.name,
            "maxPods": 0,
            "group": self.name,
            "allocatableMilliCpu": vcpus * 1000,
        }
        if (
            (wanted.region is not None and wanted.region != REGION)
            or (wanted.architecture not in (None, item["architecture"]))
            or (wanted.min_vcpus is not None and vcpus < wanted.min_vcpus)
            or (wanted.min_memory_mib is not None and memory < wanted.min_memory_mib)
        ):
            return []
        return [item]

    def provider_networks(
        self, connection: ConnectionSpec, *, region: str | None
    ) -> list[dict[str, Any]]:
        return [
            {
                "id": LOOPBACK,
                "name": LOOPBACK,
                "region": REGION,
                "cidr": "127.0.0.0/8",
                "subnets": [],
            }
        ]

    def template(self, connection: ConnectionSpec, *, download_url: str) -> Template:
        raise Unsupported(
            f"Connection {connection.id} is local: it has no infrastructure template."
        )

    def sync_template(
        self, connection: ConnectionSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        raise Unsupported(
            f"Connection {connection.id} is local: it has no infrastructure template."
        )

    # --- networks and clusters -----------------------------------------------------------

    def provision_network(
        self, connection: ConnectionSpec, network: NetworkSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        progress(
            "network",
            "The loopback network needs nothing provisioned.",
            [_resource("network", network.id, "create", "succeeded")],
        )
        return {"providerNetworkId": LOOPBACK, "cidr": "127.0.0.0/8"}

    def destroy_network(
        self, connection: ConnectionSpec, network: NetworkSpec, *, token: str, progress: Progress
    ) -> None:
        progress(
            "network",
            "The loopback network needs nothing destroyed.",
            [_resource("network", network.id, "delete", "succeeded")],
        )

    def _name(self, cluster: ClusterSpec) -> str:
        return resource_name("cluster", cluster.id, cluster.organization_id)

    def provision_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        name = self._name(cluster)
        progress(
            "server",
            f"Starting the Sail server {name}.",
            [_resource("sail-server", name, "create", "running")],
        )
        port = self.servers.ensure(name)
        url = f"sc://127.0.0.1:{port}"
        progress(
            "health",
            f"Checking the Sail server at {url}.",
            [_resource("sail-server", name, "create", "succeeded")],
        )
        ok, message = spark_sql_ok(url)
        if not ok:
            raise ProviderError(message, code="sail_unhealthy")
        return {"serverName": name, "endpoint": url}

    def update_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> dict[str, Any]:
        return self.provision_cluster(connection, cluster, token=token, progress=progress)

    def destroy_cluster(
        self, connection: ConnectionSpec, cluster: ClusterSpec, *, token: str, progress: Progress
    ) -> None:
        name = self._name(cluster)
        progress(
            "server",
            f"Stopping the Sail server {name}.",
            [_resource("sail-server", name, "delete", "running")],
        )
        self.servers.stop(name)

    # --- running clusters ----------------------------------------------------------------

    def health(self, connection: ConnectionSpec, cluster: ClusterSpec) -> Health:
        try:
            url = self.spark_endpoint(connection, cluster)
        except ProviderError as exc:
            return Health("unhealthy", exc.message)
        ok, message = spark_sql_ok(url)
        return Health(
            "healthy" if ok else "unhealthy",
            message,
            [{"name": "select1", "ok": ok, "message": message}],
        )

    def metrics(
        self,
        connection: ConnectionSpec,
        cluster: ClusterSpec,
        *,
        start: datetime,
        end: datetime,
        period_seconds: int,
    ) -> dict[str, list[dict[str, Any]]]:
        series: dict[str, list[dict[str, Any]]] = {
            "cpuUtilization": [],
            "memoryUtilization": [],
            "estimatedCost": [],
            "activeJobCount": [],
        }
        pid = self.servers.pid(self._name(cluster))
        now = datetime.now(UTC)
        if pid is None or not (start <= now <= end + timedelta(seconds=max(period_seconds, 60))):
            return series
        try:
            process = psutil.Process(pid)
            cpu = process.cpu_percent(interval=0.1) / (os.cpu_count() or 1)
            memory = process.memory_info().rss / psutil.virtual_memory().total * 100
        except psutil.NoSuchProcess:
            return series
        stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        series["cpuUtilization"].append({"timestamp": stamp, "value": round(cpu, 3)})
        series["memoryUtilization"].append({"timestamp": stamp, "value": round(memory, 3)})
        series["estimatedCost"].append({"timestamp": stamp, "value": 0})
        return series

    def kubeconfig(self, connection: ConnectionSpec, cluster: ClusterSpec) -> str:
        raise Unsupported(f"Cluster {cluster.id} is a local Sail server: it has no kubeconfig.")

    def spark_endpoint(self, connection: ConnectionSpec, cluster: ClusterSpec) -> str:
        return f"sc://127.0.0.1:{self.servers.ensure(self._name(cluster))}"

    def close(self) -> None:
        self.servers.close()


def _resource(kind: str, name: str, operation: str, status: str) -> dict[str, Any]:
    return {
        "urn": f"local:{kind}:{name}",
        "type": kind,
        "name": name,
        "operation": operation,
        "status": status,
    }
