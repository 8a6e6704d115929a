"""Views and projections.

A view is a set of PostgreSQL tables plus one tracking row (its position in the event
log); it implements the library's `TrackingRecorder`. A projection is the library's
`Projection[SomeView]` whose `process_event` is a `singledispatchmethod`: one handler per
event class, writing through `self.view`. The runner in `runner.py` feeds projections in
batches, one transaction per batch holding the view rows and the tracking row together.

View SQL names tables through format fields (`{teams}`), so the same projection can fill
a fresh copy of its tables during a rebuild (`teams__next`) while reads go on against
the live ones, and the copy is swapped in at the end.

A view's version (`Projection.version()`, kept in its tracking row) covers its table
definitions and the source of its projection's classes: changing either a table or a
handler rebuilds the view from the log at the next start.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking, TrackingRecorder
from eventsourcing.projection import Projection as LibraryProjection
from eventsourcing.utils import resolve_topic
from psycopg_pool import ConnectionPool

from sailplane.storage import POSITIONS_TABLE

REBUILD_SUFFIX = "__next"


class View(TrackingRecorder):
    """Tables that one projection writes and the HTTP layer reads."""

    name: ClassVar[str]
    tables: ClassVar[
        dict[str, str]
    ]  # live table name -> CREATE TABLE statement naming tables as {fields}
    indexes: ClassVar[
        tuple[str, ...]
    ] = ()  # CREATE INDEX statements, unnamed, naming tables as {fields}

    def __init__(self, pool: ConnectionPool, *, suffix: str = "") -> None:
        self.pool = pool
        self.suffix = suffix
        self.names = {table: table + suffix for table in self.tables}
        self._statements: dict[str, str] = {}
        self._cursor: psycopg.Cursor[Any] | None = None

    @property
    def tracking_name(self) -> str:
        return self.name + self.suffix

    @classmethod
    def schema_hash(cls) -> str:
        ddl = "\n".join([*cls.tables.values(), *cls.indexes])
        return hashlib.sha256(ddl.encode()).hexdigest()[:16]

    def sql(self, template: str) -> str:
        """The statement with this copy's table names filled in."""
        statement = self._statements.get(template)
        if statement is None:
            statement = self._statements[template] = template.format_map(self.names)
        return statement

    # --- writing, inside a runner's batch -------------------------------------------------

    @property
    def cursor(self) -> psycopg.Cursor[Any]:
        if self._cursor is None:
            raise RuntimeError(
                f"view {self.tracking_name} is written only inside a projection batch"
            )
        return self._cursor

    @contextmanager
    def batch(self, cursor: psycopg.Cursor[Any]) -> Iterator[None]:
        self._cursor = cursor
        try:
            yield
        finally:
            self._cursor = None

    def execute(
        self, template: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> psycopg.Cursor[Any]:
        """Run a write statement in the current batch."""
        return self.cursor.execute(self.sql(template), params)

    def create_tables(self, cursor: psycopg.Cursor[Any]) -> None:
        for ddl in [*self.tables.values(), *self.indexes]:
            cursor.execute(self.sql(ddl))

    def drop_tables(self, cursor: psycopg.Cursor[Any]) -> None:
        for table in self.names.values():
            cursor.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')

    # --- the tracking row --------------------------------------------------------------

    def position(self, cursor: psycopg.Cursor[Any]) -> int:
        row = cursor.execute(
            f"SELECT position FROM {POSITIONS_TABLE} WHERE name = %s", (self.tracking_name,)
        ).fetchone()
        return int(row["position"]) if row else 0

    def set_position(self, cursor: psycopg.Cursor[Any], position: int) -> None:
        cursor.execute(
            f"INSERT INTO {POSITIONS_TABLE} (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
            (self.tracking_name, position),
        )

    def set_version(self, cursor: psycopg.Cursor[Any], version: str) -> None:
        """Record which version of the view (tables and handlers) the rows were made by."""
        cursor.execute(
            f"UPDATE {POSITIONS_TABLE} SET schema_hash = %s WHERE name = %s",
            (version, self.tracking_name),
        )

    def stored_schema_hash(self, cursor: psycopg.Cursor[Any]) -> str | None:
        row = cursor.execute(
            f"SELECT schema_hash FROM {POSITIONS_TABLE} WHERE name = %s", (self.tracking_name,)
        ).fetchone()
        return row["schema_hash"] if row else None

    def insert_tracking(self, tracking: Tracking) -> None:
        if self._cursor is not None:
            self.set_position(self._cursor, tracking.notification_id)
            return
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            self.set_position(cursor, tracking.notification_id)

    def max_tracking_id(self, application_name: str) -> int | None:
        with self.pool.connection() as conn, conn.cursor() as cursor:
            return self.position(cursor) or None

    # --- reading, for the HTTP layer ---------------------------------------------------

    def fetch_all(
        self, template: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> list[dict[str, Any]]:
        # The pool hands connections out unchecked (no round trip per read): one that the
        # server closed while it sat idle fails here, the pool discards it, and the read
        # runs again on another, at most once per connection the pool can hold.
        retries = self.pool.max_size
        while True:
            with self.pool.connection() as conn:
                try:
                    return conn.execute(self.sql(template), params).fetchall()
                except psycopg.OperationalError:
                    if not conn.broken or retries == 0:
                        raise
            retries -= 1

    def fetch_one(
        self, template: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> dict[str, Any] | None:
        rows = self.fetch_all(template, params)
        return rows[0] if rows else None


TView = TypeVar("TView", bound=View)


class Projection(LibraryProjection[TView], Generic[TView]):
    """Turns events into view rows. Handlers are registered per event class."""

    view_class: ClassVar[type[View]]

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Events without a handler change nothing in this view."""

    @classmethod
    def handles(cls, topic: str) -> bool:
        """Whether an event with this topic has a handler here (decided once per topic).

        The topic must name a known event class (`event_class_of`); the runner stops
        before an event that does not, instead of letting every view skip it."""
        return _handles(cls, topic)

    @classmethod
    def version(cls) -> str:
        """The view's tables and this projection's handlers, as one short hash."""
        return _version(cls)


@cache
def event_class_of(topic: str) -> type | None:
    """The event class a stored topic names, or None when this code has no such class."""
    try:
        return resolve_topic(topic)  # type: ignore[no-any-return]
    except Exception:  # the library raises TopicError, or the import's own error
        return None


def _version(projection_class: type[Projection[Any]]) -> str:
    digest = hashlib.sha256(projection_class.view_class.schema_hash().encode())
    for klass in projection_class.__mro__:
        if isinstance(klass, type) and issubclass(klass, Projection) and klass is not Projection:
            digest.update(_source_of(klass))
    return digest.hexdigest()[:16]


def _source_of(klass: type) -> bytes:
    try:
        return inspect.getsource(klass).encode()
    except (OSError, TypeError):  # installed without sources: the compiled module stands in
        return Path(sys.modules[klass.__module__].__file__ or "").read_bytes()


@cache
def _handles(projection_class: type[Projection[Any]], topic: str) -> bool:
    event_class = event_class_of(topic)
    if event_class is None:
        return False
    method = next(
        k.__dict__["process_event"]
        for k in projection_class.__mro__
        if "process_event" in k.__dict__
    )
    method.__get__(None, projection_class)  # applies registrations deferred at class creation
    dispatch = method.dispatcher.dispatch
    return dispatch(event_class) is not dispatch(object)
