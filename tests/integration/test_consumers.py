"""Consumers take input from the log or from Kafka; redelivery changes nothing."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from eventsourcing.persistence import Tracking

from sailplane.commands.base import SailplaneApplication
from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.identity import Team
from sailplane.infra_adapters.consumers import (
    Consumer,
    ConsumerWorker,
    Delivery,
    EventSource,
    LogEventSource,
)
from sailplane.infra_adapters.kafka import KafkaEventSource, KafkaRelay, KafkaSettings
from sailplane.notices import Signal
from sailplane.storage import Database, EventLog
from tests import services
from tests.services import Broker


class Tally(SailplaneAggregate):
    """Counts the teams a consumer saw created (a stand-in for a real consumer's state)."""

    class Created(SailplaneAggregate.Created):
        def apply(self, aggregate: Tally) -> None:
            super().apply(aggregate)
            aggregate.seen = []

    class Counted(SailplaneAggregate.Event):
        team_id: str

        def apply(self, aggregate: Tally) -> None:
            aggregate.seen.append(self.team_id)

    def count(self, team_id: str, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Counted, by=by, at=at, team_id=team_id)


class Tallies(SailplaneApplication):
    def count(self, tally_id: str, team_id: str, *, by: Actor, tracking: Tracking) -> int:
        tally = self._find(Tally, tally_id) or Tally._create_as(id=tally_id, by=by, at=self.clock())
        tally.count(team_id, by=by, at=self.clock())
        return self._commit(tally, tracking=tracking)


class TallyConsumer(Consumer):
    name = "tally"
    kafka_topics = ("sailplane.identity",)

    def __init__(self, tallies: Tallies, tally_id: str) -> None:
        self.tallies = tallies
        self.tally_id = tally_id

    def handle(self, delivery: Delivery) -> None:
        if isinstance(delivery.event, Team.Created):
            by = Actor.system("tally", delivery.event.organization_id)
            self.tallies.count(
                self.tally_id,
                delivery.event.originator_id,
                by=by,
                tracking=delivery.tracking(self.name),
            )


class TwiceSource:
    """Delivers every batch twice, as a broker may after a rebalance or a crash."""

    def __init__(self, inner: EventSource) -> None:
        self.inner = inner

    def poll(self, timeout: float) -> list[Delivery]:
        batch = self.inner.poll(timeout)
        return batch + batch

    def commit(self) -> None:
        self.inner.commit()

    def close(self) -> None:
        self.inner.close()


def _make_teams(event_log: EventLog, count: int) -> tuple[list[str], Actor]:
    from sailplane.commands.identity import Identity

    identity = Identity(event_log)
    founded = identity.found_organization(
        name="Consumer Org", owner_email="c@example.com", owner_name="C"
    )
    actor = Actor("member", founded.owner_member_id, founded.organization_id)
    return [
        identity.create_team(name=f"c-{i}", default_role_id=None, by=actor)[0] for i in range(count)
    ], actor


def _run_until(worker: ConsumerWorker, done, timeout: float = 60.0) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not done():
            assert time.monotonic() < deadline, "consumer did not catch up"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=30)


def test_log_source_with_every_delivery_twice_counts_each_event_once(fresh_db: Database) -> None:
    event_log = EventLog(fresh_db)
    team_ids, _ = _make_teams(event_log, 25)
    tallies = Tallies(event_log)
    source = LogEventSource(
        event_log, consumer="tally", kafka_topics=("sailplane.identity",), new_events=Signal()
    )
    worker = ConsumerWorker(TallyConsumer(tallies, "TALLY00001"), TwiceSource(source), event_log)
    _run_until(worker, lambda: len(getattr(tallies._find(Tally, "TALLY00001"), "seen", [])) >= 25)
    assert sorted(tallies._find(Tally, "TALLY00001").seen) == sorted(team_ids)

    # A restarted worker resumes after its inbox and does nothing twice.
    again = ConsumerWorker(
        TallyConsumer(tallies, "TALLY00001"),
        LogEventSource(
            event_log, consumer="tally", kafka_topics=("sailplane.identity",), new_events=Signal()
        ),
        event_log,
    )
    stop = threading.Event()
    stop.set()
    again.run(stop)
    assert sorted(tallies._find(Tally, "TALLY00001").seen) == sorted(team_ids)
    event_log.close()


def test_a_consumer_opens_no_connection_per_event(fresh_db: Database) -> None:
    """Its inbox checks, its handlers' use cases (which record the inbox row with their
    events) and its own inbox rows for the rest all use pooled connections."""
    event_log = EventLog(fresh_db)
    _make_teams(event_log, 300)
    tallies = Tallies(event_log)
    source = LogEventSource(
        event_log, consumer="tally", kafka_topics=("sailplane.identity",), new_events=Signal()
    )
    worker = ConsumerWorker(TallyConsumer(tallies, "TALLY00003"), source, event_log)
    before = services.sessions_started(fresh_db)
    _run_until(worker, lambda: len(getattr(tallies._find(Tally, "TALLY00003"), "seen", [])) >= 300)
    started = services.sessions_started(fresh_db) - before
    assert started < 20, f"{started} PostgreSQL sessions started for 300 events"
    # Every delivery is in the inbox, those the use case recorded and the others.
    inbox = worker.handled(list(range(1, event_log.head() + 1)))
    assert len(inbox) == _identity_events(event_log)
    event_log.close()


@pytest.mark.kafka
def test_kafka_source_redelivered_to_a_new_group_changes_nothing(
    fresh_db: Database, kafka: Broker
) -> None:
    event_log = EventLog(fresh_db)
    team_ids, _ = _make_teams(event_log, 15)
    settings = KafkaSettings(
        kafka.bootstrap_servers, session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    relay = KafkaRelay(event_log, settings)
    relay_stop = threading.Event()
    relay_thread = threading.Thread(target=relay.run, args=(relay_stop, Signal()))
    relay_thread.start()
    tallies = Tallies(event_log)
    organization = tallies.repository.get(team_ids[0]).organization_id

    def counted() -> list[str]:
        tally = tallies._find(Tally, "TALLY00002")
        return [] if tally is None else tally.seen

    def ours(worker_group: str) -> tuple[ConsumerWorker, _OnlyOrg]:
        source = _OnlyOrg(
            KafkaEventSource(settings, group_id=worker_group, topics=("sailplane.identity",)),
            organization,
        )
        return ConsumerWorker(TallyConsumer(tallies, "TALLY00002"), source, event_log), source

    try:
        first, _ = ours("group-a")
        _run_until(first, lambda: len(counted()) >= 15)
        # A different consumer group receives every message again: the inbox absorbs them.
        before = list(counted())
        second, redelivered = ours("group-b")
        _run_until(second, lambda: redelivered.delivered >= _identity_events(event_log))
        assert counted() == before
        assert sorted(counted()) == sorted(team_ids)
    finally:
        relay_stop.set()
        relay_thread.join(timeout=30)
        event_log.close()


class _OnlyOrg:
    """Other tests share the broker: only this test's organization is handled."""

    def __init__(self, inner: EventSource, organization_id: str) -> None:
        self.inner = inner
        self.organization_id = organization_id
        self.delivered = 0

    def poll(self, timeout: float) -> list[Delivery]:
        batch = [
            d for d in self.inner.poll(timeout) if d.event.organization_id == self.organization_id
        ]
        self.delivered += len(batch)
        return batch

    def commit(self) -> None:
        self.inner.commit()

    def close(self) -> None:
        self.inner.close()


def _identity_events(event_log: EventLog) -> int:
    notifications = event_log.recorder.select_notifications(start=1, limit=10_000)
    return sum(1 for n in notifications if n.topic.startswith("sailplane.domain.identity"))
