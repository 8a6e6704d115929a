"""Consumers: components that act on the world when events happen.

A consumer (dispatcher, provisioner, notifier, scheduler) takes its input from one
`EventSource` interface, fed either by Kafka (`KafkaEventSource`, when
KAFKA_BOOTSTRAP_SERVERS is set) or straight from the event log (`LogEventSource`, the
single-process default). Either way a delivery carries the event's global position.

Exactly-once effects on Sailplane's own state: a handler passes
`delivery.tracking(consumer)` to the one use case it calls; the use case saves its new
events and the inbox row `(consumer, position)` in one transaction. A redelivered message
finds its inbox row and is skipped. Effects outside (AWS, Kubernetes, SMTP, webhooks) use
ids derived from the event as idempotency keys, so repeating them changes nothing.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from eventsourcing.persistence import StoredEvent, Tracking

from sailplane.domain.errors import ConflictError
from sailplane.infra_adapters.topics import TOPIC_BY_CONTEXT
from sailplane.notices import Signal
from sailplane.projections.event_log import context_of
from sailplane.storage import EventLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    position: int
    topic: str  # the library topic of the event class
    event: Any

    def tracking(self, consumer: str) -> Tracking:
        return Tracking(consumer, self.position)


class EventSource(Protocol):
    def poll(self, timeout: float) -> list[Delivery]: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


class LogEventSource:
    """Consumer input straight from the event log, from the consumer's last inbox row."""

    def __init__(
        self,
        event_log: EventLog,
        *,
        consumer: str,
        kafka_topics: tuple[str, ...],
        new_events: Signal,
    ) -> None:
        self.event_log = event_log
        self.kafka_topics = kafka_topics
        self.new_events = new_events
        self._seen = new_events.generation
        self._position = event_log.recorder.max_tracking_id(consumer) or 0
        self._batch = 500

    def poll(self, timeout: float) -> list[Delivery]:
        notifications = self.event_log.recorder.select_notifications(
            start=self._position + 1, limit=self._batch
        )
        if not notifications:
            self._seen = self.new_events.wait(self._seen, timeout)
            return []
        self._position = notifications[-1].id
        deliveries = []
        for n in notifications:
            context = context_of(n.topic)
            if context is not None and TOPIC_BY_CONTEXT[context] in self.kafka_topics:
                event = self.event_log.mapper.to_domain_event(
                    StoredEvent(n.originator_id, n.originator_version, n.topic, n.state)
                )
                deliveries.append(Delivery(position=n.id, topic=n.topic, event=event))
        return deliveries

    def commit(self) -> None:
        """The log source's position is the consumer's inbox: nothing else to commit."""

    def close(self) -> None:
        """Nothing to release."""


class Consumer(ABC):
    name: ClassVar[str]
    kafka_topics: ClassVar[tuple[str, ...]]
    # The longest one `handle` may take: a Kafka consumer that polls no sooner than its
    # limit loses its partitions to another instance, which handles the message again.
    # None: quick handlers (500 messages a poll within the client's default 300 s).
    max_handle_seconds: ClassVar[float | None] = None

    @abstractmethod
    def handle(self, delivery: Delivery) -> None:
        """Act on one event; pass `delivery.tracking(self.name)` to the use case called."""

    def tick(self) -> None:  # noqa: B027 - optional hook, most consumers have nothing to do
        """Work due by time rather than by an event (digests, replays); called between polls."""


class ConsumerWorker:
    """Runs one consumer over an event source, skipping what its inbox already holds."""

    MAX_ATTEMPTS = 5

    def __init__(self, consumer: Consumer, source: EventSource, event_log: EventLog) -> None:
        self.consumer = consumer
        self.source = source
        self.event_log = event_log
        self.name = consumer.name

    def handled(self, positions: list[int]) -> set[int]:
        """Which of these positions the consumer's inbox holds: one query for a whole batch."""
        if not positions:
            return set()
        rows = self.event_log.query(
            f"SELECT notification_id FROM {EventLog.INBOX_TABLE} "
            "WHERE application_name = %s AND notification_id = ANY(%s)",
            (self.name, positions),
        )
        return {int(row["notification_id"]) for row in rows}

    def process_batch(self, deliveries: list[Delivery]) -> None:
        """Handle a polled batch, skipping what the inbox held when the batch was checked,
        then record what was handled in one statement."""
        done = self.handled([d.position for d in deliveries])
        handled = []
        for delivery in deliveries:
            if delivery.position not in done and self._handle(delivery, True):
                handled.append(delivery.position)
        self._record(handled)

    def process(self, delivery: Delivery) -> None:
        """Handle one delivery unless its inbox row exists, and record it."""
        if self._handle(delivery, False):
            self._record([delivery.position])

    def _handle(self, delivery: Delivery, checked: bool) -> bool:
        """Handle unless the inbox has it (`checked`: just looked, absent); False if skipped."""
        for attempt in range(1, self.MAX_ATTEMPTS + 1):
            if not (checked and attempt == 1) and self.handled([delivery.position]):
                return False
            try:
                self.consumer.handle(delivery)
            except ConflictError:
                # Either another worker processed this delivery (its inbox row now exists),
                # or an aggregate changed under us: look again and retry with fresh state.
                if attempt == self.MAX_ATTEMPTS:
                    raise
                continue
            return True
        return False

    def _record(self, positions: list[int]) -> None:
        """Mark deliveries processed that the handlers' use cases did not (no events to
        save): one statement for a batch, and no error (nor a discarded connection) for
        those a use case recorded together with its events."""
        if positions:
            self.event_log.query(
                f"INSERT INTO {EventLog.INBOX_TABLE} (application_name, notification_id) "
                "SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
                (self.name, positions),
                commit=True,
            )

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                deliveries = self.source.poll(timeout=1.0)
                if deliveries:
                    self.process_batch(deliveries)
                    self.source.commit()
                self.consumer.tick()
        finally:
            self.source.close()
