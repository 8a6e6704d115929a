"""`sailplane`: serve the API, run workers, rebuild views, administer.

    sailplane serve [--host 127.0.0.1] [--port 8000] [--data-dir DIR] [--no-workers]
    sailplane worker {projections,relay,...}
    sailplane projections rebuild [NAME]
    sailplane admin create-token [--member ID] [--name NAME] [--service-account USERNAME --role ROLE]
    sailplane events export [--after N]

Without DATABASE_URL every command uses the embedded PostgreSQL in the data directory.
A configuration error is one line naming the variable or flag, and exit code 2.

As a client of a running server (sailplane/client_cli.py):

    sailplane login URL [--token TOKEN]
    sailplane jobs list | get | create -f job.yaml | run JOB [--follow] | logs JOB [--follow]
    sailplane runs list [JOB] | get | cancel | retry | watch JOB RUN
    sailplane teams list | create NAME;  sailplane clusters list;  sailplane api METHOD PATH
    sailplane completion bash
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sailplane import client_cli
from sailplane.observability import configure_logging
from sailplane.settings import ConfigurationError, Settings
from sailplane.storage import Database

if TYPE_CHECKING:
    from sailplane.commands.identity import Identity
    from sailplane.domain.base import Actor

log = logging.getLogger("sailplane")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@contextlib.contextmanager
def database_for(settings: Settings) -> Iterator[Database]:
    """DATABASE_URL when set, else the embedded server in the data directory (stopped on exit)."""
    from sailplane.infra_adapters.isolation import private_directory

    private_directory(settings.data_dir)  # the secrets key, the database: no one else's
    if settings.database_url:
        yield _reachable_database(settings.database_url)
        return
    from sailplane.infra_adapters.postgres import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir.resolve())
    database = embedded.start()
    try:
        yield database
    finally:
        embedded.stop()


def _reachable_database(url: str) -> Database:
    import psycopg

    try:
        database = Database.from_url(url)
        database.ensure_exists()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"DATABASE_URL: cannot use it: {reason}") from None
    return database


def check_kafka(settings: Settings, timeout: float = 5.0) -> None:
    """KAFKA_BOOTSTRAP_SERVERS names at least one broker that accepts connections."""
    servers = settings.kafka_bootstrap_servers
    if not servers:
        return
    addresses = []
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(
                f"KAFKA_BOOTSTRAP_SERVERS: {server.strip()!r} is not host:port"
            )
        addresses.append((host.strip("[]"), int(port)))
    for address in addresses:
        with contextlib.suppress(OSError), socket.create_connection(address, timeout=timeout):
            return
    raise ConfigurationError(f"KAFKA_BOOTSTRAP_SERVERS: no broker answers at {servers}")


def check_port_free(host: str, port: int) -> None:
    """The API's address can be bound (checked before any first-start work)."""
    if not 0 < port < 65536:
        raise ConfigurationError(f"--port: {port} is not a TCP port (1-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigurationError(f"--host: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise ConfigurationError(
                f"--port: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None


def _system(settings: Settings, database: Database):
    from sailplane.system import System

    return System.from_settings(settings, database)


def serve(settings: Settings, *, workers: bool) -> int:
    from sailplane.http.app import create_app
    from sailplane.http.serving import Server
    from sailplane.system import WorkerHost, start_up

    check_port_free(settings.host, settings.port)
    check_kafka(settings)
    with database_for(settings) as database:
        system = _system(settings, database)
        system.prepare()
        stop = threading.Event()
        host = WorkerHost()
        if workers:
            for worker in system.in_process_workers():
                host.start(worker, stop)
        start_up(system, settings)
        server = Server(
            create_app(system),
            host=settings.host,
            port=settings.port,
            grace=settings.shutdown_timeout,
            cancel=system.cancel_appends,
        )

        def stop_server_when_a_worker_fails() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=stop_server_when_a_worker_fails, daemon=True).start()
        # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; ours turns that into
        # a normal return, so the workers, the pools and the embedded database stop cleanly.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _raise_shutdown)
        try:
            server.run()
        except _Shutdown:
            pass
        finally:
            stop.set()
        return _finish(host, system)


class _Shutdown(Exception):
    """A termination signal arrived after the server shut down gracefully."""


def _raise_shutdown(signum: int, frame: object) -> None:
    raise _Shutdown


def run_worker(settings: Settings, name: str) -> int:
    from sailplane.system import System, WorkerHost

    if name not in System.worker_names():
        raise ConfigurationError(
            f"worker: unknown worker {name!r}; known: {', '.join(System.worker_names())}"
        )
    check_kafka(settings)
    with database_for(settings) as database:
        system = _system(settings, database)
        system.prepare()
        worker = system.worker(name)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        host = WorkerHost()
        host.start(worker, stop)
        while not stop.wait(0.5):
            pass
        return _finish(host, system)


def _finish(host: Any, system: Any) -> int:
    """Wait for the workers to stop and release the system; 1 if a worker failed."""
    try:
        host.join(timeout=15)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    finally:
        system.close()
    return 0


def rebuild_views(settings: Settings, name: str | None) -> int:
    from sailplane.projections.runner import UnknownEvent, rebuild
    from sailplane.storage import EventLog
    from sailplane.system import PROJECTIONS

    chosen = [p for p in PROJECTIONS if name in (None, p.view_class.name)]
    if not chosen:
        print(
            f"unknown view {name!r}; views: {', '.join(p.view_class.name for p in PROJECTIONS)}",
            file=sys.stderr,
        )
        return 2
    with database_for(settings) as database:
        event_log = EventLog(database)
        pool = database.pool(name="rebuild", max_size=4)
        try:
            for projection_class in chosen:
                view_name = projection_class.view_class.name
                try:
                    position = rebuild(
                        event_log,
                        projection_class,
                        pool,
                        progress=lambda done, head, n=view_name: _bar(n, done, head),
                    )
                except UnknownEvent as exc:
                    print(f"sailplane: {view_name} was not rebuilt: {exc}", file=sys.stderr)
                    return 1
                if sys.stderr.isatty():
                    print(file=sys.stderr)
                print(f"{view_name}: rebuilt up to position {position}", file=sys.stderr)
        finally:
            pool.close()
            event_log.close()
    return 0


def _bar(name: str, done: int, head: int) -> None:
    """A progress bar on stderr, drawn only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return
    width = 40
    fraction = 1.0 if head <= 0 else min(done / head, 1.0)
    filled = int(width * fraction)
    print(
        f"\r{name:<12} [{'#' * filled}{'.' * (width - filled)}] {done}/{head}",
        end="",
        file=sys.stderr,
        flush=True,
    )


def create_token(
    settings: Settings,
    member_id: str | None,
    name: str,
    service_account: str | None = None,
    roles: list[str] | None = None,
) -> int:
    from sailplane.domain.base import Actor
    from sailplane.domain.errors import DomainError

    with database_for(settings) as database:
        system = _system(settings, database)
        try:
            system.prepare()
            system.catch_up_views()
            identity = system.identity
            owner = identity.directory.first_owner()
            if owner is None:
                print("no organization yet: start the server once first", file=sys.stderr)
                return 1
            by = Actor.system("admin-cli", owner["organization_id"])
            try:
                token = _issue(
                    identity.commands, by, member_id or owner["id"], name, service_account, roles
                )
            except DomainError as exc:
                print(exc.message, file=sys.stderr)
                return 1
            print(token)
        finally:
            system.close()
    return 0


def _issue(
    identity: Identity,
    by: Actor,
    member_id: str,
    name: str,
    service_account: str | None,
    roles: list[str] | None,
) -> str:
    """A member's API key, or a new service account's (with the given roles)."""
    if service_account is None:
        token, _ = identity.issue_api_key(member_id=member_id, name=name, by=by)
        return token
    account_id, _ = identity.create_service_account(
        username=service_account, description=name, role_ids=roles or ["MEMBER"], by=by
    )
    token, _ = identity.issue_service_account_key(service_account_id=account_id, name=name, by=by)
    return token


def export_events(settings: Settings, after: int) -> int:
    from sailplane.projections.event_log import jsonable, read_log
    from sailplane.storage import EventLog

    with database_for(settings) as database:
        event_log = EventLog(database)
        try:
            position = after
            head = event_log.head()
            while True:
                events, next_position = read_log(event_log, after=position, limit=500)
                for e in events:
                    record = {k: jsonable(v) for k, v in vars(e).items() if k != "context"}
                    print(json.dumps(record, separators=(",", ":")))
                _bar("export", next_position, head)
                if next_position == position:
                    if sys.stderr.isatty():
                        print(file=sys.stderr)
                    return 0
                position = next_position
        finally:
            event_log.close()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sailplane")
    except PackageNotFoundError:
        return "unknown"


def _worker_names(argv: list[str]) -> str:
    """The worker names, read only when help is asked for (they need the whole system)."""
    if not {"-h", "--help"} & set(argv):
        return "see --help"
    from sailplane.system import System

    return ", ".join(System.worker_names())


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the flag (exit code 2), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _Parser(
        prog="sailplane",
        description=__doc__,
        epilog=client_cli.describe_exit_codes(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sailplane {_version()}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the embedded PostgreSQL keeps its data (default .sailplane)",
    )
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS)
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command also takes --data-dir after its name.
    common = _Parser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    serve_cmd = commands.add_parser(
        "serve", help="run the API (and, by default, every worker in-process)"
    )
    serve_cmd.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="embedded PostgreSQL data (default .sailplane)",
    )
    serve_cmd.add_argument("--host", default=None)
    serve_cmd.add_argument("--port", type=int, default=None)
    serve_cmd.add_argument(
        "--no-workers", action="store_true", help="API only; run workers as separate processes"
    )

    workers = _worker_names(argv)
    worker_cmd = commands.add_parser("worker", parents=[common], help=f"run one worker: {workers}")
    worker_cmd.add_argument("name", help=f"one of: {workers}")

    views_cmd = commands.add_parser("projections", parents=[common], help="manage the views")
    views_sub = views_cmd.add_subparsers(dest="action", required=True)
    rebuild_cmd = views_sub.add_parser(
        "rebuild", parents=[common], help="replay the log into fresh tables and swap them in"
    )
    rebuild_cmd.add_argument("name", nargs="?")

    admin_cmd = commands.add_parser("admin", parents=[common], help="administration")
    admin_sub = admin_cmd.add_subparsers(dest="action", required=True)
    token_cmd = admin_sub.add_parser(
        "create-token", parents=[common], help="issue an API key (for the owner by default)"
    )
    token_cmd.add_argument("--member", default=None)
    token_cmd.add_argument("--name", default="cli key")
    token_cmd.add_argument(
        "--service-account",
        default=None,
        metavar="USERNAME",
        help="create a service account with this username and issue its key",
    )
    token_cmd.add_argument(
        "--role",
        action="append",
        default=None,
        help="the service account's organization role (repeatable; default MEMBER)",
    )

    events_cmd = commands.add_parser("events", parents=[common], help="the event log")
    events_sub = events_cmd.add_subparsers(dest="action", required=True)
    export_cmd = events_sub.add_parser(
        "export", parents=[common], help="print the log as JSON lines"
    )
    export_cmd.add_argument("--after", type=int, default=0)
    client_cli.register(commands, parser)

    args = parser.parse_args(argv)
    if hasattr(args, "entry"):
        return args.entry(args)
    try:
        configure_logging(args.log_level, os.environ.get("SAILPLANE_LOG_FORMAT", "text"))
        return _server_command(parser, args)
    except ConfigurationError as exc:
        print(f"sailplane: {exc}", file=sys.stderr)
        return 2


def _server_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    settings = Settings.from_env(
        data_dir=args.data_dir, host=getattr(args, "host", None), port=getattr(args, "port", None)
    )

    if args.command == "serve":
        return serve(settings, workers=not args.no_workers)
    if args.command == "worker":
        return run_worker(settings, args.name)
    if args.command == "projections":
        return rebuild_views(settings, args.name)
    if args.command == "admin":
        return create_token(
            settings, args.member, args.name, args.service_account, args.role or ["MEMBER"]
        )
    if args.command == "events":
        return export_events(settings, args.after)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
