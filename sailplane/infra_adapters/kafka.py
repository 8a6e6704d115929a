"""Kafka: the relay that publishes the event log, and the Kafka side of consumer input.

The relay follows the log from its tracked position (`follower_positions`, name
`relay`), sends each published event to its context topic keyed by aggregate id, waits
until the broker acknowledged the whole batch (acks=all), and only then moves its
position. A crash between the two republishes the tail of the last batch: delivery is
at least once, and consumers deduplicate by position or event id. One relay publishes at
a time (a PostgreSQL advisory lock held for the relay's life); others wait to take over.
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
from sailplane.projections.event_log import KAFKA_TOPICS, decode
from sailplane.projections.runner import Signal, advisory_key
from sailplane.storage import EventLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    partitions: int = 3
    replication_factor: int = 1
    # Short group timeouts suit tests and single-node brokers; raise them for real clusters.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


def ensure_topics(settings: KafkaSettings, topics: tuple[str, ...] = KAFKA_TOPICS) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.servers, client_id="sailplane-admin")
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name=t,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            )
            for t in topics
            if t not in existing
        ]
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
        """Publish the next batch; return how many log entries it covered."""
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
                        event.kafka_topic,
                        key=event.aggregate_id.encode(),
                        value=cloudevents.encode(event),
                    )
                )
        producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused a message: the position stays put
        self._record(notifications[-1].id)
        self.published += len(futures)
        return len(notifications)

    def _record(self, position: int) -> None:
        self.event_log.query(
            "INSERT INTO follower_positions (name, position) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position",
            (self.POSITION, position),
            commit=True,
        )

    def run(self, stop: threading.Event, new_events: Signal) -> None:
        ensure_topics(self.settings)
        with self.event_log.database.connect(autocommit=True) as leader:
            while not leader.execute(
                "SELECT pg_try_advisory_lock(%s)", (advisory_key("relay"),)
            ).fetchone()[0]:
                if stop.wait(1.0):
                    return
            producer = self._producer()
            try:
                seen = new_events.generation
                while not stop.is_set():
                    if self.publish_batch(producer) < self.batch_size:
                        seen = new_events.wait(seen, timeout=1.0)
            finally:
                producer.close(timeout=10)


class KafkaEventSource:
    """Consumer input from Kafka topics, committed after each handled batch."""

    def __init__(self, settings: KafkaSettings, *, group_id: str, topics: tuple[str, ...]) -> None:
        ensure_topics(settings, topics)
        self._consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=settings.servers,
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
        )

    def poll(self, timeout: float) -> list[Delivery]:
        records: dict[Any, list[Any]] = self._consumer.poll(
            timeout_ms=int(timeout * 1000), max_records=500
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
