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
import threading
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
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import Environment, retry
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from sailplane.domain.errors import EventLogBusyError, PayloadTooLargeError


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

    def __init__(
        self, database: Database, *, pool_size: int = 4, timeouts: WriteTimeouts | None = None
    ) -> None:
        env = database.eventsourcing_env(pool_size=pool_size)
        # Consumers record one inbox row per processed position (multi-row tracking),
        # which is what makes redelivery from Kafka, in any order, a no-op.
        env["SINGLE_ROW_TRACKING"] = "n"
        self.database = database
        self.env = Environment(self.NAME, env)
        factory = InfrastructureFactory.construct(self.env)
        assert isinstance(factory, PostgresFactory)
        self.factory: PostgresFactory = factory
        recorder = EventRecorder(
            datastore=factory.datastore,
            events_table_name=self.EVENTS_TABLE,
            tracking_table_name=self.INBOX_TABLE,
            timeouts=timeouts or WriteTimeouts(),
        )
        recorder.create_table()
        self.recorder: EventRecorder = recorder
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
        """Cancel the appends still in flight (a stopping server waits for none), then close."""
        self.recorder.cancel_appends()
        self.factory.close()


# One event's stored state at most: a whole event travels as one Kafka message, whose
# default size limit is 1 MiB; the rest of that MiB is left for the CloudEvents envelope.
MAX_EVENT_BYTES = 1_040_000


@dataclass(frozen=True)
class WriteTimeouts:
    """How long one append to the log may wait, in seconds.

    `lock` bounds the wait for the log's table lock (appends are serialized by it);
    `statement` bounds each statement of the append, and the time its transaction may sit
    idle waiting for the client: a writer that stalls can hold the lock no longer than that.
    """

    lock: float = 5.0
    statement: float = 30.0


class EventRecorder(PostgresProcessRecorder):
    """The recorder of `sailplane_events`: bounded events, bounded waits, no pipeline.

    The library's recorder sends an append as one psycopg pipeline and then calls
    `Pipeline.sync()`. That sync sends what it can of a large message without blocking and,
    when the socket cannot take the rest yet (a large event, soon over a unix socket: a few
    hundred KB), stops sending and waits for the server's answer, while the server waits
    for the rest of the message (`ClientRead`). The append never ends and its transaction
    keeps the table lock that every append needs: every later write waits forever. Here an
    append is a plain transaction; each statement is sent whole before its answer is read.
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str,
        tracking_table_name: str,
        timeouts: WriteTimeouts,
    ) -> None:
        super().__init__(
            datastore,
            events_table_name=events_table_name,
            tracking_table_name=tracking_table_name,
        )
        self.timeouts = timeouts
        self._in_flight: set[psycopg.Connection[Any]] = set()
        self._in_flight_lock = threading.Lock()

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        for stored_event in stored_events:
            check_event_size(stored_event)
        with (
            self.datastore.get_connection() as conn,
            self._appending(conn),
            conn.transaction(),
            conn.cursor() as curs,
        ):
            curs.execute(
                "SELECT set_config('lock_timeout', %s, true),"
                " set_config('statement_timeout', %s, true),"
                " set_config('idle_in_transaction_session_timeout', %s, true)",
                (
                    _milliseconds(self.timeouts.lock),
                    _milliseconds(self.timeouts.statement),
                    _milliseconds(self.timeouts.statement),
                ),
            )
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    @contextmanager
    def _appending(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Track the connection while it appends; a timeout or a cancel becomes a 503
        (nothing of the append was recorded)."""
        with self._in_flight_lock:
            self._in_flight.add(conn)
        try:
            yield
        except (
            psycopg.errors.LockNotAvailable,
            psycopg.errors.QueryCanceled,
            psycopg.errors.IdleInTransactionSessionTimeout,
        ) as exc:
            raise EventLogBusyError(
                "The event log is busy; nothing was changed: try again in a moment."
            ) from exc
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(conn)

    def _lock_table(self, curs: psycopg.Cursor[Any]) -> None:
        # The library's version also sets its own lock_timeout (none), replacing ours.
        curs.execute(
            psycopg.sql.SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE").format(
                psycopg.sql.Identifier(self.datastore.schema),
                psycopg.sql.Identifier(self.events_table_name),
            )
        )

    def cancel_appends(self) -> None:
        """Cancel the statements of the appends in flight (each answers 503)."""
        with self._in_flight_lock:
            in_flight = list(self._in_flight)
        for conn in in_flight:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=5)


def check_event_size(stored_event: StoredEvent) -> None:
    """Refuse an event over MAX_EVENT_BYTES, before any connection or lock is taken."""
    if len(stored_event.state) > MAX_EVENT_BYTES:
        raise PayloadTooLargeError(
            f"The change is too large to record: {len(stored_event.state)} bytes, "
            f"at most {MAX_EVENT_BYTES} in one event.",
            code="event_too_large",
        )


def _milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


@contextmanager
def discarded_on_error(
    pooled: contextlib.AbstractContextManager[psycopg.Connection[Any]],
) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection, closed (so the pool replaces it) when its use raises.

    For every connection that runs statements in a psycopg pipeline. When a statement
    there fails, the server skips the rest of the pipeline, including the Parse of a
    statement that has just reached psycopg's prepare threshold; psycopg keeps the name
    anyway, and the pooled connection then fails every later use of that statement with
    `prepared statement "_pg3_N" does not exist`. A new connection has no stale names.
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
