"""The event store's appends against real PostgreSQL: lost races, large events, waits.

The library's recorder inserted inside a psycopg pipeline. When a statement of the
pipeline failed (a redelivered consumer's inbox row, a lost optimistic-concurrency race),
the server skipped the statements queued after it, and psycopg could keep the name of a
prepared statement the server never had: later saves and reads on that pooled connection
failed with `prepared statement "_pg3_N" does not exist` (seeds 1-3 below). Appends are
now plain transactions (sailplane/storage.py `EventRecorder`), which also ends the stall
of a large pipelined append.
"""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from psycopg.conninfo import make_conninfo

from sailplane.domain.errors import EventLogBusyError, PayloadTooLargeError
from sailplane.storage import MAX_EVENT_BYTES, Database, EventLog, EventRecorder, WriteTimeouts
from tests.services import fresh_database


def _event(originator_id: str, version: int) -> StoredEvent:
    return StoredEvent(
        originator_id=originator_id, originator_version=version, topic="t:T", state=b"{}"
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_saves_and_reads_keep_working_among_lost_races_and_redeliveries(
    fresh_db: Database, seed: int
) -> None:
    """Saves, reads, lost races and redelivered inbox rows interleaved on a small pool:
    only the lost races fail, and only with IntegrityError."""
    log = EventLog(fresh_db, pool_size=1)
    recorder = log.recorder
    rnd = random.Random(seed)
    aggregates = [f"a-{uuid.uuid4().hex}" for _ in range(5)]
    versions = dict.fromkeys(aggregates, 0)
    inbox = 0
    unexpected: list[tuple[int, str, str]] = []
    try:
        for step in range(300):
            op = rnd.choice(["save", "save", "race", "redelivery", "read", "batch", "batch_race"])
            a = rnd.choice(aggregates)
            try:
                if op == "save":
                    recorder.insert_events([_event(a, versions[a] + 1)])
                    versions[a] += 1
                elif op == "batch":
                    n = rnd.randint(2, 7)
                    inbox += 1
                    recorder.insert_events(
                        [_event(a, versions[a] + i + 1) for i in range(n)],
                        tracking=Tracking("consumer", inbox),
                    )
                    versions[a] += n
                elif op == "race" and versions[a]:
                    with pytest.raises(IntegrityError):
                        recorder.insert_events([_event(a, versions[a])])
                elif op == "batch_race" and versions[a]:
                    with pytest.raises(IntegrityError):
                        recorder.insert_events([_event(a, versions[a] + 1), _event(a, versions[a])])
                elif op == "redelivery" and inbox:
                    with pytest.raises(IntegrityError):
                        recorder.insert_events(
                            [_event(a, versions[a] + 1)], tracking=Tracking("consumer", inbox)
                        )
                elif op == "read":
                    assert len(recorder.select_events(a)) == versions[a]
                    recorder.select_notifications(1, 10)
                    assert recorder.max_tracking_id("consumer") == (inbox or None)
            except Exception as exc:
                unexpected.append((step, op, f"{type(exc).__name__}: {exc}"))
    finally:
        log.close()
    assert unexpected == []


def _locked(database: Database) -> psycopg.Connection:
    """A connection holding the log's table lock (roll it back to release)."""
    conn = psycopg.connect(database.conninfo)
    conn.execute(f"LOCK TABLE {EventLog.EVENTS_TABLE} IN EXCLUSIVE MODE")
    return conn


@pytest.mark.parametrize(
    "timeouts",
    [WriteTimeouts(lock=0.2, statement=600), WriteTimeouts(lock=600, statement=0.2)],
    ids=["lock_timeout", "statement_timeout"],
)
def test_an_append_behind_a_held_lock_gives_up_with_a_503_error(
    fresh_db: Database, timeouts: WriteTimeouts
) -> None:
    """Either timeout alone ends the wait (each is set on the append's transaction)."""
    log = EventLog(fresh_db, pool_size=1, timeouts=timeouts)
    holder = _locked(fresh_db)
    try:
        with pytest.raises(EventLogBusyError) as refused:
            log.recorder.insert_events([_event("waits", 1)])
        assert refused.value.code == "event_log_busy"
    finally:
        holder.rollback()
        holder.close()
    assert log.recorder.insert_events([_event("waits", 1)]) == [1]
    log.close()


def test_the_largest_event_over_a_unix_socket_is_recorded(pg_server: Database) -> None:
    """A pipelined append of a few hundred KB stalled over a unix socket (ClientRead)."""
    socket_dir = pg_server.params.get("host", "")
    if not socket_dir.startswith("/"):
        socket_dir = "/var/run/postgresql"  # the same server's socket, when it has one
    if not Path(socket_dir, f".s.PGSQL.{pg_server.params.get('port', 5432)}").exists():
        pytest.skip("this PostgreSQL server has no unix socket here")
    with fresh_database(Database(make_conninfo(pg_server.conninfo, host=socket_dir))) as db:
        log = EventLog(db, pool_size=1)
        try:
            state = b"x" * MAX_EVENT_BYTES
            assert log.recorder.insert_events([_event_with("big", state)]) == [1]
            assert log.recorder.insert_events([_event("after", 1)]) == [2]
            with pytest.raises(PayloadTooLargeError):
                log.recorder.insert_events([_event_with("over", state + b"x")])
            assert log.head() == 2
        finally:
            log.close()


def _event_with(originator_id: str, state: bytes) -> StoredEvent:
    return StoredEvent(originator_id=originator_id, originator_version=1, topic="t:T", state=state)


class _StallingRecorder(EventRecorder):
    """Stalls the first append after its table lock is taken, as a hung writer would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.locked, self.release = threading.Event(), threading.Event()

    def _insert_stored_events(self, curs: Any, stored_events: Any, **kwargs: Any) -> None:
        super()._insert_stored_events(curs, stored_events, **kwargs)
        if not self.locked.is_set():
            self.locked.set()
            self.release.wait(timeout=120)


def test_a_writer_that_stalls_holding_the_lock_is_ended_by_the_database(
    fresh_db: Database,
) -> None:
    """idle_in_transaction_session_timeout ends the stalled append's session, which frees
    the lock for everyone else; the stalled append fails as busy (503), recording nothing."""
    stalled = EventLog(fresh_db, pool_size=1, timeouts=WriteTimeouts(lock=30, statement=0.5))
    stalled.recorder = _StallingRecorder(
        datastore=stalled.factory.datastore,
        events_table_name=EventLog.EVENTS_TABLE,
        tracking_table_name=EventLog.INBOX_TABLE,
        timeouts=stalled.recorder.timeouts,
    )
    others = EventLog(fresh_db, pool_size=1, timeouts=WriteTimeouts(lock=30, statement=30))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(stalled.recorder.insert_events, [_event("stalls", 1)])
        try:
            assert stalled.recorder.locked.wait(timeout=60)
            # Waits for the lock until the database ends the stalled session, then goes on.
            assert others.recorder.insert_events([_event("goes-on", 1)])
        finally:
            stalled.recorder.release.set()
        with pytest.raises(EventLogBusyError):
            first.result(timeout=60)
    recorded = others.recorder.select_notifications(start=1, limit=10)
    assert [n.originator_id for n in recorded] == ["goes-on"]
    stalled.close()
    others.close()
