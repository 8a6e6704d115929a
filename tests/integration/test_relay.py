"""The Kafka relay against a real Kafka-protocol broker (tansu), killed part-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaConsumer

from sailplane.commands.identity import Identity
from sailplane.domain.base import Actor
from sailplane.domain.ids import new_id
from sailplane.infra_adapters import cloudevents
from sailplane.infra_adapters.kafka import KafkaRelay, KafkaSettings, ensure_topics, new_topic
from sailplane.infra_adapters.topics import KAFKA_TOPICS
from sailplane.notices import advisory_key
from sailplane.storage import MAX_EVENT_BYTES, Database, EventLog
from tests.services import Broker

pytestmark = pytest.mark.kafka


def _relay_position(database: Database) -> int:
    with database.connect() as conn:
        row = conn.execute(
            "SELECT position FROM follower_positions WHERE name = 'relay'"
        ).fetchone()
    return int(row[0]) if row else 0


def _start_relay(database: Database, broker: Broker) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database.conninfo,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "SAILPLANE_KAFKA_PARTITIONS": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sailplane.cli", "--log-level", "WARNING", "worker", "relay"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _reader(kafka: Broker, *topics: str) -> KafkaConsumer:
    """A consumer of `topics` from their beginning that stops when nothing more comes."""
    return KafkaConsumer(
        *topics,
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )


def _wait(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


def _organization_with_teams(
    database: Database, name: str, teams: int
) -> tuple[EventLog, Identity, Actor, list[str]]:
    """A founded organization with `teams` teams: a few hundred events for a relay to publish."""
    event_log = EventLog(database)
    identity = Identity(event_log)
    slug = name.lower().replace(" ", "-")
    founded = identity.found_organization(
        name=name, owner_email=f"{slug}@example.com", owner_name=name[0]
    )
    actor = Actor("member", founded.owner_member_id, founded.organization_id)
    team_ids = [
        identity.create_team(name=f"{slug}-{i}", default_role_id=None, by=actor)[0]
        for i in range(teams)
    ]
    return event_log, identity, actor, team_ids


def test_relay_killed_part_way_publishes_every_event_in_order_per_aggregate(
    fresh_db: Database, kafka: Broker
) -> None:
    event_log, identity, actor, team_ids = _organization_with_teams(fresh_db, "Relay Org", 300)
    for round_number in range(3):
        for team_id in team_ids:
            identity.update_team(
                team_id, name=f"relay-{team_id}-{round_number}", default_role_id=None, by=actor
            )
    head = event_log.head()

    relay = _start_relay(fresh_db, kafka)
    _wait(lambda: _relay_position(fresh_db) > 0)
    relay.send_signal(signal.SIGKILL)  # no clean shutdown: whatever was in flight is lost
    relay.wait()
    stopped_at = _relay_position(fresh_db)
    assert 0 < stopped_at < head, "the relay must be killed part-way for this test to mean anything"

    relay = _start_relay(fresh_db, kafka)
    try:
        _wait(lambda: _relay_position(fresh_db) == head)
    finally:
        relay.terminate()
        relay.wait(timeout=30)

    consumer = _reader(kafka, *KAFKA_TOPICS)
    messages = [cloudevents.decode(record.value) for record in consumer]
    consumer.close()
    ours = [m for m in messages if m.sailplaneorg == actor.organization_id]

    published = {}
    versions_seen = defaultdict(list)
    for message in ours:
        if message.id not in published:  # a consumer that deduplicates by event id
            published[message.id] = message
            versions_seen[message.subject].append(message.sailplaneversion)
    notifications = event_log.recorder.select_notifications(start=1, limit=head)
    expected = [n for n in notifications if n.topic.startswith("sailplane.domain.identity")]
    assert len(published) == len(expected)
    for aggregate_id, versions in versions_seen.items():
        assert versions == list(range(1, len(versions) + 1)), (
            f"{aggregate_id} out of order: {versions}"
        )
    assert all(m.specversion == "1.0" and m.type.startswith("sailplane.identity.") for m in ours)
    event_log.close()


def test_cloud_event_round_trip_rebuilds_the_domain_event() -> None:
    from sailplane.domain.identity import Team
    from sailplane.projections.event_log import logged_event

    actor = Actor("member", "M1", "ORG1")
    team = Team.create(
        id=new_id(), name="Round trip", default_role_id=None, by=actor, at=datetime.now(UTC)
    )
    team.update(name="Round trip 2", default_role_id="TEAMADMIN", by=actor, at=team.modified_on)
    for position, event in enumerate(team.collect_events(), start=1):
        topic = f"{type(event).__module__}:{type(event).__qualname__}"
        message = cloudevents.decode(cloudevents.encode(logged_event(position, topic, event)))
        assert cloudevents.to_domain_event(message) == event
        assert message.sequence == f"{position:020d}"


class _CutOffProducer:
    """A producer that, once, runs `meanwhile` after sending and before the relay records."""

    def __init__(self, producer: Any, meanwhile: Any) -> None:
        self.producer = producer
        self.meanwhile = meanwhile

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self.producer.send(*args, **kwargs)

    def flush(self) -> None:
        self.producer.flush()
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()


def _lock_holder(database: Database, role: str) -> int | None:
    """The backend pid holding the session advisory lock of a leadership role."""
    key = advisory_key("leader:" + role) & 0xFFFFFFFFFFFFFFFF
    with database.connect() as conn:
        row = conn.execute(
            # Advisory locks are per database: another database's relay holds the same key.
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
    return int(row[0]) if row else None


def test_a_relay_that_loses_its_lock_connection_never_moves_the_position_back(
    fresh_db: Database, kafka: Broker
) -> None:
    event_log, _, _, _ = _organization_with_teams(fresh_db, "Relay Lock Org", 40)
    head = event_log.head()
    settings = KafkaSettings(kafka.bootstrap_servers)
    ensure_topics(settings)
    first = KafkaRelay(event_log, settings, batch_size=10)
    second = KafkaRelay(event_log, settings, batch_size=1000)
    first_producer, second_producer = first._producer(), second._producer()
    try:
        assert first.publish_batch(first_producer) == 10
        assert second.publish_batch(second_producer) == 0, "one relay leads at a time"
        assert _relay_position(fresh_db) == first.position() > 0

        def lose_the_lock_and_let_the_other_take_over() -> None:
            pid = _lock_holder(fresh_db, "relay")
            assert pid is not None
            with fresh_db.connect(autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            _wait(lambda: second.publish_batch(second_producer) > 0)
            while second.publish_batch(second_producer):
                pass
            assert _relay_position(fresh_db) == head

        # The first relay sends its next batch, then loses its lock connection while the
        # second relay takes over and publishes everything: its late record must not land.
        cut_off = _CutOffProducer(first_producer, lose_the_lock_and_let_the_other_take_over)
        assert first.publish_batch(cut_off) == 0
        assert _relay_position(fresh_db) == head
        assert first.publish_batch(first_producer) == 0, "the other relay leads now"
        assert _lock_holder(fresh_db, "relay") is not None
    finally:
        for relay, producer in ((first, first_producer), (second, second_producer)):
            producer.close(timeout=10)
            relay.leadership.step_down()
        event_log.close()


def test_messages_follow_the_cloudevents_kafka_binding_in_structured_mode(
    fresh_db: Database, kafka: Broker
) -> None:
    """What a consumer with the official SDK sees: the binding's header, short extension
    names, the REST API's field names in `data`; and topics that keep every event."""
    import logging

    from cloudevents.v1.kafka import KafkaMessage, from_structured

    event_log, _, actor, [team_id] = _organization_with_teams(fresh_db, "Binding Org", 1)
    settings = KafkaSettings(kafka.bootstrap_servers, retention_ms=-1)
    logging.getLogger("kafka").setLevel(logging.DEBUG)
    ensure_topics(settings)
    assert logging.getLogger("kafka").getEffectiveLevel() == logging.WARNING
    relay = KafkaRelay(event_log, settings)
    producer = relay._producer()
    try:
        while relay.publish_batch(producer):
            pass
    finally:
        producer.close(timeout=10)
        relay.leadership.step_down()

    consumer = _reader(kafka, "sailplane.identity")
    records = [r for r in consumer if cloudevents.decode(r.value).subject == team_id]
    consumer.close()
    assert [cloudevents.decode(r.value).type for r in records] == [
        "sailplane.identity.Team.Created"
    ]
    record = records[0]
    assert dict(record.headers) == {"content-type": b"application/cloudevents+json"}
    event = from_structured(KafkaMessage(dict(record.headers), record.key, record.value))
    assert event["type"] == "sailplane.identity.Team.Created"
    assert event["sailplaneorg"] == actor.organization_id
    assert event.get_data() == {"name": "binding-org-0", "defaultRoleId": "TEAMMEMBER"}
    assert all(len(name) <= 20 for name in event.get_attributes())
    # Sailplane's own consumers still rebuild the event from the camelCase data.
    rebuilt = cloudevents.to_domain_event(cloudevents.decode(record.value))
    assert (rebuilt.name, rebuilt.default_role_id) == ("binding-org-0", "TEAMMEMBER")

    # The topics were created with the retention setting (the broker accepted it).
    assert new_topic(settings, "sailplane.identity").topic_configs == {"retention.ms": "-1"}
    assert KafkaSettings("k:9092").retention_ms == -1, "by default topics keep every event"
    event_log.close()


def test_the_largest_event_one_write_may_record_is_relayed(
    fresh_db: Database, kafka: Broker
) -> None:
    """The per-event limit (MAX_EVENT_BYTES) keeps every event within one Kafka message."""
    from tests.conftest import found_org, running_system

    with running_system(fresh_db) as system:
        org = found_org(system, "Large events")
        # Within queryText's 1,000,000 characters; two-byte characters bring the stored
        # event to just under the per-event limit.
        wide = 39_000
        text = "x" * (1_000_000 - wide) + "é" * wide
        query_id, position = system.workloads.commands.create_query(
            name="Largest",
            description=None,
            catalog_schema=None,
            catalog_id=None,
            query_text=text,
            tags=[],
            team_ids=[],
            by=org.owner,
        )
        [stored] = system.event_log.recorder.select_notifications(start=position, limit=1)
        assert MAX_EVENT_BYTES - 2_000 < len(stored.state) <= MAX_EVENT_BYTES

        settings = KafkaSettings(kafka.bootstrap_servers, partitions=1)
        ensure_topics(settings)
        relay = KafkaRelay(system.event_log, settings)
        producer = relay._producer()
        try:
            while relay.publish_batch(producer):
                pass
        finally:
            producer.close()
        assert _relay_position(fresh_db) == system.event_log.head()

        consumer = _reader(kafka, "sailplane.workloads")
        found = [
            m for m in (cloudevents.decode(r.value) for r in consumer) if m.subject == query_id
        ]
        consumer.close()
        assert [m.data["queryText"] for m in found] == [text]
