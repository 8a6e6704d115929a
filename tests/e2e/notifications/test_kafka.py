"""The notifier fed by Kafka: a message delivered again, even to a worker whose inbox does
not have it (another consumer group, a lost inbox), sends nothing a second time."""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest

from sailplane.domain.base import Actor
from sailplane.infra_adapters.consumers import ConsumerWorker, Delivery, EventSource
from sailplane.infra_adapters.kafka import KafkaEventSource, KafkaRelay, KafkaSettings
from sailplane.infra_adapters.notifier import Notifier
from sailplane.infra_adapters.webhooks import Backoff
from sailplane.system import System
from tests.conftest import Org
from tests.e2e.notifications.test_channels_and_rules import webhook_channel
from tests.e2e.notifications.test_delivery import deliveries, rule
from tests.integration.test_consumers import _run_until
from tests.notification_support import NotifierDriver, Receiver, SampleRun, SampleRuns
from tests.services import Broker


class OnlyFinishedRunsOf:
    """The broker is shared: hand the notifier only this test's run events."""

    def __init__(self, inner: EventSource, organization_id: str) -> None:
        self.inner = inner
        self.organization_id = organization_id
        self.seen = 0

    def poll(self, timeout: float) -> list[Delivery]:
        batch = [
            d
            for d in self.inner.poll(timeout)
            if isinstance(d.event, SampleRun.Finished)
            and d.event.organization_id == self.organization_id
        ]
        self.seen += len(batch)
        return batch

    def commit(self) -> None:
        self.inner.commit()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.kafka
def test_a_message_redelivered_by_kafka_is_delivered_once(
    system: System,
    client: httpx.Client,
    org: Org,
    runs: SampleRuns,
    receiver: Receiver,
    notifier: NotifierDriver,
    kafka: Broker,
) -> None:
    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:8]}"}).json()["team"]
    hook = webhook_channel(client, receiver.url, teamId=team["id"])
    rule(client, team["id"], [hook["id"]])
    runs.finish("failed", by=Actor.system("test-runs", org.id), team_ids=(team["id"],))

    settings = KafkaSettings(kafka.bootstrap_servers, session_timeout_ms=6000)
    relay_stop = threading.Event()
    relay = threading.Thread(
        target=KafkaRelay(system.event_log, settings).run, args=(relay_stop, system.new_events)
    )
    relay.start()

    def worker(group: str, inbox_name: str) -> tuple[ConsumerWorker, OnlyFinishedRunsOf]:
        one = Notifier(system.notifications, clock=notifier.clock, backoff=Backoff(2))
        one.name = inbox_name  # type: ignore[misc]  # a worker with an inbox of its own
        source = OnlyFinishedRunsOf(
            KafkaEventSource(settings, group_id=group, topics=one.kafka_topics), org.id
        )
        return ConsumerWorker(one, source, system.event_log), source

    try:
        first, _ = worker(f"n-{uuid.uuid4().hex[:6]}", f"notifier-{uuid.uuid4().hex[:6]}")
        _run_until(first, lambda: len(receiver.requests) == 1)
        # Another group reads the same message again, into a worker whose inbox is empty.
        second, again = worker(f"n-{uuid.uuid4().hex[:6]}", f"notifier-{uuid.uuid4().hex[:6]}")
        _run_until(second, lambda: again.seen >= 1)
    finally:
        relay_stop.set()
        relay.join(timeout=30)
    system.wait_for_views(system.event_log.recorder.max_notification_id() or 0)
    assert len(receiver.requests) == 1
    [delivered] = deliveries(client, channelId=hook["id"])
    assert delivered["status"] == "delivered"
