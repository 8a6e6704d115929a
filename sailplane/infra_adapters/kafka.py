"""Kafka: the relay that publishes the event log, and the Kafka side of consumer input.

The relay follows the log from its tracked position (`follower_positions`, name
`relay`), sends each published event to its context topic keyed by aggregate id, waits
until the broker acknowledged the whole batch (acks=all), and only then moves its
position. A crash between the two republishes the tail of the last batch: delivery is
at least once, and consumers deduplicate by position or event id.

One relay publishes at a time: it leads through the scheduler's `Leadership` (a session
advisory lock on a connection of its own), checked before every batch, and it records
its position on that same connection, so a relay whose lock connection died cannot
write a position after another relay took over. The position only ever moves forward.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from sailplane.infra_adapters import cloudevents
from sailplane.infra_adapters.consumers import Delivery
from sailplane.infra_adapters.scheduler import Leadership
from sailplane.infra_adapters.topics import KAFKA_TOPICS, TOPIC_BY_CONTEXT
from sailplane.notices import Signal
from sailplane.projections.event_log import decode
from sailplane.storage import EventLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    partitions: int = 3
    replication_factor: int = 1
    # `retention.ms` of the topics the relay creates: -1 keeps every event (audit consumers
    # replay from the start; the relay never republishes what it sent).
    retention_ms: int = -1
    # kafka-python reports every connection and group step at INFO; its warnings suffice.
    client_log_level: str = "WARNING"
    # Short group timeouts suit tests and single-node brokers; raise them for real clusters.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


def new_topic(settings: KafkaSettings, name: str) -> NewTopic:
    return NewTopic(
        name=name,
        num_partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        topic_configs={"retention.ms": str(settings.retention_ms)},
    )


def ensure_topics(settings: KafkaSettings, topics: tuple[str, ...] = KAFKA_TOPICS) -> None:
    """Create the missing topics (every Kafka user of Sailplane calls this first)."""
    logging.getLogger("kafka").setLevel(settings.client_log_level.upper())
    admin = KafkaAdminClient(bootstrap_servers=settings.servers, client_id="sailplane-admin")
    try:
        existing = set(admin.list_topics())
        missing = [new_topic(settings, t) for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


class KafkaRelay:
    """`sailplane worker relay`: the event log, published to Kafka."""

    name = "relay"
    POSITION = "relay"

    def __init__(
        self, event_log: EventLog, settings: KafkaSettings, *, batch_size: int = 500
    ) -> None:
        self.event_log = event_log
        self.settings = settings
        self.batch_size = batch_size
        self.published = 0
        self.leadership = Leadership(event_log.database, "relay")

    def _producer(self) -> KafkaProducer:
        return KafkaProducer(
            bootstrap_servers=self.settings.servers,
            client_id="sailplane-relay",
            acks="all",
            linger_ms=2,
            retries=10,
            # One request in flight per connection keeps retries from reordering a partition.
            max_in_flight_requests_per_connection=1,
        )

    def position(self) -> int:
        rows = self.event_log.query(
            "SELECT position FROM follower_positions WHERE name = %s", (self.POSITION,)
        )
        return int(rows[0]["position"]) if rows else 0

    def publish_batch(self, producer: KafkaProducer) -> int:
        """Publish the next batch if this relay leads; return how many log entries it
        covered (0 when caught up or not leading)."""
        if not self.leadership.try_lead():
            return 0
        position = self.position()
        notifications = self.event_log.recorder.select_notifications(
            start=position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0
        futures = []
        for notification in notifications:
            event = decode(self.event_log, notification)
            if event is not None:
                futures.append(
                    producer.send(
                        TOPIC_BY_CONTEXT[event.context],
                        key=event.aggregate_id.encode(),
                        value=cloudevents.encode(event),
                        headers=cloudevents.HEADERS,
                    )
                )
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused a message: the position stays put
        if not self._record(notifications[-1].id):
            log.warning("the relay lost its leadership while publishing; standing by")
            return 0
        self.published += len(futures)
        return len(notifications)

    def _record(self, position: int) -> bool:
        """Move the position forward, on the leader's connection (False: no longer leading)."""
        return self.leadership.execute_as_leader(
            "INSERT INTO follower_positions (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position "
            "WHERE follower_positions.position < EXCLUDED.position",
            (self.POSITION, position),
        )

    def run(self, stop: threading.Event, new_events: Signal) -> None:
        ensure_topics(self.settings)
        producer: KafkaProducer | None = None
        try:
            seen = new_events.generation
            while not stop.is_set():
                if not self.leadership.try_lead():
                    stop.wait(1.0)  # another relay leads: try again in a second
                    continue
                if producer is None:
                    producer = self._producer()
                if self.publish_batch(producer) < self.batch_size:
                    seen = new_events.wait(seen, timeout=1.0)
        finally:
            if producer is not None:
                producer.close(timeout=10)
            self.leadership.step_down()


class KafkaEventSource:
    """Consumer input from Kafka topics, committed after each handled batch."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        topics: tuple[str, ...],
        max_handle_seconds: float | None = None,
    ) -> None:
        ensure_topics(settings, topics)
        # A consumer whose messages may each take long (`max_handle_seconds`) takes them one
        # per poll, and the group keeps it (and its partitions) while it handles one instead
        # of redelivering the message to another instance after kafka-python's 300 s.
        self.max_records = 500 if max_handle_seconds is None else 1
        self.max_poll_interval_ms = (
            300_000 if max_handle_seconds is None else int(max_handle_seconds * 1000) + 60_000
        )
        self._consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=settings.servers,
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
        )

    def poll(self, timeout: float) -> list[Delivery]:
        records: dict[Any, list[Any]] = self._consumer.poll(
            timeout_ms=int(timeout * 1000), max_records=self.max_records
        )
        deliveries = []
        for batch in records.values():
            for record in batch:
                message = cloudevents.decode(record.value)
                deliveries.append(
                    Delivery(
                        position=message.sailplaneposition,
                        topic=message.sailplaneclass,
                        event=cloudevents.to_domain_event(message),
                    )
                )
        return sorted(deliveries, key=lambda d: d.position)

    def commit(self) -> None:
        self._consumer.commit()

    def close(self) -> None:
        self._consumer.close()
