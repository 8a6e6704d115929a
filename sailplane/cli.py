"""`sailplane`: serve the API, run workers, rebuild views, administer.

    sailplane serve [--host 127.0.0.1] [--port 8000] [--data-dir DIR] [--no-workers]
    sailplane worker {projections,relay,...}
    sailplane projections rebuild [NAME]
    sailplane admin create-token [--member ID] [--name NAME] [--service-account USERNAME --role ROLE]
    sailplane events export [--after N]

Without DATABASE_URL every command uses the embedded PostgreSQL in the data directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sailplane.settings import Settings
from sailplane.storage import Database

log = logging.getLogger("sailplane")


@contextlib.contextmanager
def database_for(settings: Settings) -> Iterator[Database]:
    """DATABASE_URL when set, else the embedded server in the data directory (stopped on exit)."""
    from sailplane.infra_adapters.isolation import private_directory

    private_directory(settings.data_dir)  # the secrets key, the database: no one else's
    if settings.database_url:
        database = Database.from_url(settings.database_url)
        database.ensure_exists()
        yield database
        return
    from sailplane.infra_adapters.postgres import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir.resolve())
    database = embedded.start()
    try:
        yield database
    finally:
        embedded.stop()


def _system(settings: Settings, database: Database):
    from sailplane.system import System

    return System.from_settings(settings, database)


def serve(settings: Settings, *, workers: bool) -> int:
    import uvicorn

    from sailplane.http.access_log import redact_access_log
    from sailplane.http.app import create_app
    from sailplane.system import WorkerHost, start_up

    with database_for(settings) as database:
        system = _system(settings, database)
        system.prepare()
        stop = threading.Event()
        host = WorkerHost()
        if workers:
            for worker in system.in_process_workers():
                host.start(worker, stop)
        start_up(system, settings)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(system), host=settings.host, port=settings.port, log_level="info"
            )
        )
        redact_access_log()  # after uvicorn configured its loggers

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
    from sailplane.system import WorkerHost

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
    from sailplane.projections.runner import rebuild
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
                position = rebuild(
                    event_log,
                    projection_class,
                    pool,
                    progress=lambda done, head, n=view_name: _bar(n, done, head),
                )
                print(f"\n{view_name}: rebuilt up to position {position}", file=sys.stderr)
        finally:
            pool.close()
            event_log.close()
    return 0


def _bar(name: str, done: int, head: int) -> None:
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
            system.worker("projections").runner.catch_up()  # type: ignore[attr-defined]
            owner = system.directory.first_owner()
            if owner is None:
                print("no organization yet: start the server once first", file=sys.stderr)
                return 1
            by = Actor.system("admin-cli", owner["organization_id"])
            try:
                token = _issue(system, by, member_id or owner["id"], name, service_account, roles)
            except DomainError as exc:
                print(exc.message, file=sys.stderr)
                return 1
            print(token)
        finally:
            system.close()
    return 0


def _issue(
    system: Any,
    by: Any,
    member_id: str,
    name: str,
    service_account: str | None,
    roles: list[str] | None,
) -> str:
    """A member's API key, or a new service account's (with the given roles)."""
    if service_account is None:
        token, _ = system.identity.issue_api_key(member_id=member_id, name=name, by=by)
        return token
    account_id, _ = system.identity.create_service_account(
        username=service_account, description=name, role_ids=roles or ["MEMBER"], by=by
    )
    token, _ = system.identity.issue_service_account_key(
        service_account_id=account_id, name=name, by=by
    )
    return token


def export_events(settings: Settings, after: int) -> int:
    from sailplane.projections.event_log import jsonable, read_log
    from sailplane.storage import EventLog

    with database_for(settings) as database:
        event_log = EventLog(database)
        try:
            position = after
            while True:
                events, next_position = read_log(event_log, after=position, limit=500)
                for e in events:
                    record = {k: jsonable(v) for k, v in vars(e).items() if k != "kafka_topic"}
                    print(json.dumps(record, separators=(",", ":")))
                if next_position == position:
                    return 0
                position = next_position
        finally:
            event_log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sailplane", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the embedded PostgreSQL keeps its data (default .sailplane)",
    )
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)
    # Every command also takes --data-dir after its name.
    common = argparse.ArgumentParser(add_help=False)
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

    worker_cmd = commands.add_parser("worker", parents=[common], help="run one worker")
    worker_cmd.add_argument("name")

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

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    data_dir = args.data_dir
    settings = Settings.from_env(
        data_dir=data_dir, host=getattr(args, "host", None), port=getattr(args, "port", None)
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
