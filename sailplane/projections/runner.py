"""Following the event log: the batched projection runner, rebuilds, and view positions.

Each batch is one transaction: take the view's advisory lock, read the tracking row,
read up to `batch_size` events after it, let the projection write its rows, move the
tracking row, and `NOTIFY sailplane_views`. The advisory lock lets any number of runner
instances (the in-process one of `serve`, `sailplane worker projections`, a rebuild)
follow one view without processing an event twice.

An event whose class this code does not know (a class renamed or removed without an
alias, or written by a newer version) stops the runner just before it: the views keep
everything up to that event, the runner logs an error and stays stopped, and `/readyz`
answers 503 naming the event. Skipping it would leave every view silently wrong.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent, Tracking
from psycopg_pool import ConnectionPool

from sailplane.notices import Signal, advisory_key
from sailplane.projections.base import REBUILD_SUFFIX, Projection, View, event_class_of
from sailplane.storage import POSITIONS_TABLE, EventLog, discarded_on_error

log = logging.getLogger(__name__)

VIEWS_CHANNEL = "sailplane_views"
SET_POSITIONS = (
    f"INSERT INTO {POSITIONS_TABLE} (name, position) SELECT unnest(%s::text[]), %s "
    "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position"
)
SELECT_EVENTS = (
    "SELECT notification_id, originator_id, originator_version, topic, state "
    f"FROM {EventLog.EVENTS_TABLE} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
)


class UnknownEvent(Exception):
    """The log holds an event whose class this code cannot resolve; views stop before it."""

    def __init__(self, position: int, topic: str) -> None:
        super().__init__(
            f"the event at position {position} has the unknown class {topic!r}; the views "
            "stopped before it (deploy the code that defines it, or register the old topic)"
        )
        self.position = position
        self.topic = topic


class Positions:
    """Where each view stands, for read-your-writes waits in this process."""

    def __init__(self, names: Iterable[str]) -> None:
        self._positions = dict.fromkeys(names, 0)
        # The newest position at which each view's rows changed (a cache built on a view
        # stays valid while this is not past what the cache read).
        self._changed = dict.fromkeys(self._positions, 0)
        self._condition = threading.Condition()
        self.stopped: UnknownEvent | None = None  # why this process's runner stopped

    def stop(self, reason: UnknownEvent) -> None:
        """The views of this process stopped: waits for them end now instead of timing out."""
        with self._condition:
            self.stopped = reason
            self._condition.notify_all()

    def advance(self, name: str, position: int, changed: int | None = None) -> None:
        """The view is at `position`; its rows last changed at `changed` (unknown: now)."""
        with self._condition:
            if name in self._changed:
                self._changed[name] = max(
                    self._changed[name], position if changed is None else changed
                )
            if position > self._positions.get(name, 0):
                self._positions[name] = position
                self._condition.notify_all()

    def advance_from_payload(self, payload: str) -> None:
        """Space-separated `name:position` or `name:position:changed` entries (see
        `ProjectionRunner._batch`)."""
        for entry in payload.split():
            name, position, *changed = entry.split(":")
            if name in self._positions and position.isdigit():
                known = changed[0] if changed and changed[0].isdigit() else position
                self.advance(name, int(position), int(known))

    def stamp(self, names: Iterable[str]) -> int:
        """A position the views had all reached; a read made now sees at least this much."""
        with self._condition:
            return min(self._positions[n] for n in names)

    def changed_after(self, names: Iterable[str], stamp: int) -> bool:
        """Whether any of these views changed after `stamp` (as far as this process heard)."""
        with self._condition:
            return any(self._changed[n] > stamp for n in names)

    def lowest(self) -> int:
        with self._condition:
            return min(self._positions.values(), default=0)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until every view has processed `position` (or the timeout passes)."""
        if position <= 0:
            return True
        with self._condition:
            return (
                self._condition.wait_for(
                    lambda: (
                        self.stopped is not None
                        or min(self._positions.values(), default=position) >= position
                    ),
                    timeout=timeout,
                )
                and min(self._positions.values(), default=position) >= position
            )

    def load(self, pool: ConnectionPool) -> None:
        with pool.connection() as conn, conn.cursor() as cursor:
            for row in cursor.execute(f"SELECT name, position FROM {POSITIONS_TABLE}").fetchall():
                if row["name"] in self._positions:
                    self.advance(row["name"], int(row["position"]))


class ProjectionRunner:
    """Feeds projections from the log in batches: one transaction per batch for all of them.

    Every event is read and decoded once and handed to each projection that handles it
    and has not seen it yet; each view keeps its own tracking row (a rebuilt view may be
    ahead of the others). One transaction for all views keeps the cost of a write's
    read-your-writes wait independent of how many views there are.
    """

    def __init__(
        self,
        event_log: EventLog,
        projections: Projection[Any] | list[Projection[Any]],
        *,
        batch_size: int = 500,
        positions: Positions | None = None,
    ) -> None:
        self.event_log = event_log
        self.projections = projections if isinstance(projections, list) else [projections]
        self.views: list[View] = [p.view for p in self.projections]
        self.pool = self.views[0].pool
        self.batch_size = batch_size
        self.positions = positions
        self.lock_keys = sorted(advisory_key("view:" + v.tracking_name) for v in self.views)
        self._changed: dict[str, int] = {}

    @property
    def view(self) -> View:
        """The view of a single-projection runner (rebuilds, tests)."""
        return self.views[0]

    def run_batch(self, cursor: psycopg.Cursor[Any] | None = None) -> tuple[int, int]:
        """Process one batch; return (events read, new position). Zero read means caught up.

        Raises `UnknownEvent` once the views stand just before an event of an unknown class
        (the events before it in the batch are kept)."""
        if cursor is not None:
            read, position, unknown = self._batch(cursor)
        else:
            # A failed batch may leave the connection's prepared statements out of step with
            # the server (its pipeline was cut short): it is discarded, not reused.
            with (
                discarded_on_error(self.pool.connection()) as conn,
                conn.transaction(),
                conn.cursor() as cur,
            ):
                read, position, unknown = self._batch(cur)
            if read and self.positions is not None:
                for view in self.views:
                    name = view.tracking_name
                    self.positions.advance(name, position, self._changed.get(name, 0))
        if unknown is not None:
            raise unknown
        return read, position

    def _batch(self, cursor: psycopg.Cursor[Any]) -> tuple[int, int, UnknownEvent | None]:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k ORDER BY k",
            (self.lock_keys,),
        )
        # Every view's position in one statement (not one per view).
        names = [view.tracking_name for view in self.views]
        stored = cursor.execute(
            f"SELECT name, position FROM {POSITIONS_TABLE} WHERE name = ANY(%s)", (names,)
        ).fetchall()
        seen = dict.fromkeys(names, 0) | {r["name"]: int(r["position"]) for r in stored}
        start = min(seen.values())
        rows = cursor.execute(SELECT_EVENTS, (start, self.batch_size)).fetchall()
        unknown = next(
            (
                UnknownEvent(row["notification_id"], row["topic"])
                for row in rows
                if event_class_of(row["topic"]) is None
            ),
            None,
        )
        if unknown is not None:
            rows = [row for row in rows if row["notification_id"] < unknown.position]
        if not rows:
            return 0, start, unknown
        mapper = self.event_log.mapper
        self._changed: dict[str, int] = {}  # view -> the last position that wrote its rows
        # Pipeline mode sends the batch's statements, then the positions and the notice,
        # without waiting for each reply.
        with cursor.connection.pipeline(), contextlib.ExitStack() as batches:
            for view in self.views:
                batches.enter_context(view.batch(cursor))
            for row in rows:
                position, topic = row["notification_id"], row["topic"]
                takers = [
                    p
                    for p in self.projections
                    if seen[p.view.tracking_name] < position and type(p).handles(topic)
                ]
                if not takers:
                    continue
                event = mapper.to_domain_event(
                    StoredEvent(
                        originator_id=row["originator_id"],
                        originator_version=row["originator_version"],
                        topic=topic,
                        state=bytes(row["state"]),
                    )
                )
                tracking = Tracking(EventLog.NAME, position)
                for projection in takers:
                    projection.process_event(event, tracking)
                    self._changed[projection.view.tracking_name] = position
            position = rows[-1]["notification_id"]
            moved = [v.tracking_name for v in self.views if seen[v.tracking_name] < position]
            # One statement moves every view's tracking row, one notice says where they are.
            cursor.execute(SET_POSITIONS, (moved, position))
            notice = " ".join(f"{n}:{position}:{self._changed.get(n, 0)}" for n in moved)
            cursor.execute("SELECT pg_notify(%s, %s)", (VIEWS_CHANNEL, notice))
        return len(rows), position, unknown

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        position = 0
        while True:
            read, position = self.run_batch()
            if progress is not None:
                progress(position)
            if read < self.batch_size:
                return position

    def run_forever(self, stop: threading.Event, new_events: Signal) -> None:
        """Follow the log until `stop`; before an unknown event, stop following (loudly)."""
        seen = new_events.generation
        while not stop.is_set():
            try:
                read, _ = self.run_batch()
            except UnknownEvent as exc:
                names = ", ".join(v.tracking_name for v in self.views)
                log.error("views %s stopped: %s", names, exc)
                if self.positions is not None:
                    self.positions.stop(exc)
                stop.wait()
                return
            except psycopg.OperationalError as exc:
                # Pooled connections are not checked before use: one the server closed
                # fails here, is discarded, and the batch runs again on another.
                log.warning("a view batch lost its connection (%s); running it again", exc)
                stop.wait(0.1)
                continue
            if read < self.batch_size:
                seen = new_events.wait(seen, timeout=1.0)


def prepare_view(
    event_log: EventLog, projection_class: type[Projection[Any]], pool: ConnectionPool
) -> None:
    """Create a view's tables on first use; rebuild it if its version (tables or handlers)
    changed."""
    view = projection_class.view_class(pool)
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", (advisory_key("view:" + view.tracking_name),)
        )
        stored = view.stored_schema_hash(cursor)
        if stored is None:
            view.drop_tables(cursor)
            view.create_tables(cursor)
            view.set_position(cursor, 0)
            view.set_version(cursor, projection_class.version())
            return
        if stored == projection_class.version():
            return
    log.warning(
        "view %s changed its tables or handlers; rebuilding it from the event log", view.name
    )
    rebuild(event_log, projection_class, pool)


def rebuild(
    event_log: EventLog,
    projection_class: type[Projection[Any]],
    pool: ConnectionPool,
    *,
    batch_size: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Replay the whole log into fresh tables, then swap them in; return the final position.

    Reads keep using the live tables until the swap, which happens in one short
    transaction under the view's lock after a last catch-up.
    """
    live = projection_class.view_class(pool)
    fresh = projection_class.view_class(pool, suffix=REBUILD_SUFFIX)
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        fresh.drop_tables(cursor)
        fresh.create_tables(cursor)
        fresh.set_position(cursor, 0)
    runner = ProjectionRunner(event_log, projection_class(fresh), batch_size=batch_size)
    head = event_log.head()
    runner.catch_up(progress=(lambda position: progress(position, head)) if progress else None)
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", (advisory_key("view:" + live.tracking_name),)
        )
        while True:
            read, position = runner.run_batch(cursor)
            if read < batch_size:
                break
        for table, next_name in fresh.names.items():
            cursor.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')
            cursor.execute(f'ALTER TABLE "{next_name}" RENAME TO "{table}"')
        live.set_position(cursor, position)
        live.set_version(cursor, projection_class.version())
        cursor.execute(f"DELETE FROM {POSITIONS_TABLE} WHERE name = %s", (fresh.tracking_name,))
        cursor.execute(
            "SELECT pg_notify(%s, %s)", (VIEWS_CHANNEL, f"{live.tracking_name}:{position}")
        )
    if progress is not None:
        progress(position, max(head, position))
    return position
