"""Where Sailplane's data lives: one PostgreSQL database holding the event log and the views.

Sailplane keeps one ordered log (`sailplane_events`) for every bounded context. Each
context has its own `Application` subclass (Identity, Infra, Workloads, Runs,
Notifications) whose methods are the use cases; they all append to the same log through
one recorder, so a global position orders every change, read-your-writes needs a single
number, and the relay and consumers follow one sequence. The context of an event is the
domain module that defines it (`sailplane.domain.identity` -> `identity`).

The recorder is a process recorder: a consumer that reacts to an event saves its new
events together with an inbox row `(consumer, position)` in one transaction, so a
redelivered message finds its row and changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    InfrastructureFactory,
    InterfaceError,
    JSONTranscoder,
    Mapper,
    OperationalError,
    ProcessRecorder,
    UUIDAsHex,
)
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import Environment, retry
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


@dataclass(frozen=True)
class Database:
    """Where the event store and the views live (one PostgreSQL database)."""

    conninfo: str

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(conninfo=make_conninfo(url))

    @property
    def params(self) -> dict[str, Any]:
        return conninfo_to_dict(self.conninfo)

    def eventsourcing_env(self, *, pool_size: int = 4) -> dict[str, str]:
        """The `eventsourcing` settings for this database.

        The library's database functions stay off: with them, live followers lose events.
        """
        p = self.params
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": str(p.get("dbname", "postgres")),
            "POSTGRES_HOST": str(p.get("host", "127.0.0.1")),
            "POSTGRES_PORT": str(p.get("port", "5432")),
            "POSTGRES_USER": str(p.get("user", "postgres")),
            # The library insists on a non-empty password, even under trust authentication.
            "POSTGRES_PASSWORD": str(p.get("password") or "trust"),
            "POSTGRES_POOL_SIZE": str(pool_size),
            "POSTGRES_MAX_OVERFLOW": str(pool_size * 2),
            "POSTGRES_CONNECT_TIMEOUT": "10",
            # No round trip before each use: a statement that finds its connection broken
            # is retried by the recorder on another (the broken one is closed, replaced).
            "POSTGRES_PRE_PING": "n",
            "ORIGINATOR_ID_TYPE": "text",
        }

    def with_dbname(self, dbname: str) -> Database:
        return Database(conninfo=make_conninfo(self.conninfo, dbname=dbname))

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.conninfo, **kwargs)

    def pool(self, *, name: str, min_size: int = 1, max_size: int = 8) -> ConnectionPool:
        """Pooled connections, handed out without a round trip to check them first: a
        connection found broken in use is discarded and replaced by the pool, and reads
        run again on another (`View.fetch_all`)."""
        return ConnectionPool(
            self.conninfo,
            name=name,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": True},
            open=True,
        )

    def ensure_exists(self) -> None:
        """Create the database if the server does not have it yet."""
        dbname = self.params.get("dbname", "postgres")
        admin = make_conninfo(self.conninfo, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)
            ).fetchone()
            if not found:
                conn.execute(
                    psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname))
                )

    def drop(self) -> None:
        dbname = self.params.get("dbname")
        admin = make_conninfo(self.conninfo, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(dbname)
                )
            )


POSITIONS_TABLE = "follower_positions"
CREATE_POSITIONS_TABLE = f"""
CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    schema_hash text NOT NULL DEFAULT ''
)
"""


class EventLog:
    """The event store every application appends to, and every follower reads."""

    NAME = "sailplane"
    EVENTS_TABLE = "sailplane_events"
    INBOX_TABLE = "consumer_inbox"

    def __init__(self, database: Database, *, pool_size: int = 4) -> None:
        env = database.eventsourcing_env(pool_size=pool_size)
        # Consumers record one inbox row per processed position (multi-row tracking),
        # which is what makes redelivery from Kafka, in any order, a no-op.
        env["SINGLE_ROW_TRACKING"] = "n"
        self.database = database
        self.env = Environment(self.NAME, env)
        factory = InfrastructureFactory.construct(self.env)
        assert isinstance(factory, PostgresFactory)
        self.factory: PostgresFactory = factory
        _discard_failed_connections(factory.datastore)
        recorder = PostgresProcessRecorder(
            datastore=factory.datastore,
            events_table_name=self.EVENTS_TABLE,
            tracking_table_name=self.INBOX_TABLE,
        )
        recorder.create_table()
        self.recorder: ProcessRecorder = recorder
        self.mapper: Mapper[str] = factory.mapper(transcoder=_transcoder())
        self.channel = recorder.channel_name
        # Where each follower (view, relay) stands in the log.
        with factory.datastore.transaction(commit=True) as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(7423019)")
            cursor.execute(CREATE_POSITIONS_TABLE)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def query(
        self, statement: str, params: Sequence[Any] = (), *, commit: bool = False
    ) -> list[dict[str, Any]]:
        """One statement on a pooled connection of the event store; its rows (none for a write).

        For followers' own reads and writes (inbox checks, positions), so that none opens a
        connection per event. Like the recorder's statements, it runs again on another
        connection when the one it had broke (the failed one is closed and replaced).
        """
        with self.factory.datastore.transaction(commit=commit) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def head(self) -> int:
        """The position of the newest event (0 for an empty log)."""
        return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        self.factory.close()


def _discard_failed_connections(datastore: PostgresDatastore) -> None:
    """A connection whose use raised is closed, so the pool replaces it.

    The recorder inserts inside a psycopg pipeline. When a statement there fails (a lost
    optimistic-concurrency race, a redelivered inbox row: Sailplane provokes both on
    purpose), the server skips the rest of the pipeline, including the Parse of a
    statement that has just reached psycopg's prepare threshold; psycopg keeps the name
    anyway, and the pooled connection then fails every later use of that statement with
    `prepared statement "_pg3_N" does not exist`. A new connection has no stale names.
    (Disabling prepared statements instead made psycopg end such a pipeline with
    `PipelineAborted`, which the recorder retries as an OperationalError on the same
    connection.) See tests/integration/test_event_store_connections.py.
    """
    take = datastore.get_connection

    def get_connection() -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return discarded_on_error(take())

    datastore.get_connection = get_connection  # type: ignore[method-assign]


@contextmanager
def discarded_on_error(
    pooled: contextlib.AbstractContextManager[psycopg.Connection[Any]],
) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection, closed (so the pool replaces it) when its use raises.

    For every connection that runs statements in a psycopg pipeline: after a failure
    there, its prepared-statement names may not exist on the server (see above).
    """
    with pooled as conn:
        try:
            yield conn
        except BaseException:
            conn.close()  # the pool replaces it; its prepared-statement names go with it
            raise


def _transcoder() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


@contextmanager
def transaction(pool: ConnectionPool) -> Iterator[psycopg.Cursor[Any]]:
    """One transaction on a pooled connection, yielding a dict-row cursor."""
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        yield cursor
