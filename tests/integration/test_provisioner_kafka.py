"""The provisioner behind Kafka: the relay publishes the operation, the provisioner (a
consumer group on `sailplane.infra`) performs it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from sailplane.infra_adapters.consumers import ConsumerWorker
from sailplane.infra_adapters.kafka import KafkaEventSource, KafkaSettings
from sailplane.storage import Database
from sailplane.system import CONSUMERS, WorkerHost
from tests import services
from tests.conftest import found_org, running_system
from tests.integration.test_consumers import _OnlyOrg
from tests.services import Broker


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker for this test alone: another database's events on a shared broker would
    carry log positions that collide with this one's in the provisioner's inbox."""
    with services.kafka_broker() as broker:
        yield broker


@pytest.mark.kafka
def test_an_operation_published_to_kafka_is_performed(
    fresh_db: Database, own_broker: Broker
) -> None:
    kafka = own_broker
    settings = KafkaSettings(
        kafka.bootstrap_servers, session_timeout_ms=6000, heartbeat_interval_ms=500
    )
    with running_system(fresh_db, kafka=settings) as system:
        org = found_org(system)
        local = system.infra.commands.ensure_local_cluster(org.id)
        network_id, _ = system.infra.commands.create_network(
            local.connection_id, name="n", region=None, config={}, by=org.owner
        )
        operation_id, position = system.infra.commands.provision_network(
            local.connection_id, network_id, by=org.owner
        )
        system.wait_for_views(position)
        stop = threading.Event()
        host = WorkerHost()
        host.start(system.worker("relay"), stop)
        # The provisioner as `sailplane worker provisioner` runs it, in its own consumer group;
        # other tests share the broker, so only this organization's messages reach it.
        provisioner = CONSUMERS["provisioner"](system)
        source = _OnlyOrg(
            KafkaEventSource(
                settings,
                group_id=f"provisioner-{uuid.uuid4().hex[:8]}",
                topics=provisioner.kafka_topics,
            ),
            org.id,
        )
        host.start(ConsumerWorker(provisioner, source, system.event_log), stop)
        try:
            deadline = (
                time.monotonic() + 120
            )  # generous: a loaded host joins consumer groups slowly
            while system.infra.clusters.operation(org.id, operation_id)["status"] != "succeeded":
                assert not stop.is_set(), host.errors
                assert time.monotonic() < deadline, "the operation did not finish through Kafka"
                time.sleep(0.1)
        finally:
            stop.set()
            host.join(timeout=30)
        assert system.infra.clusters.network(org.id, network_id)["status"] == "active"


@pytest.mark.kafka
def test_the_provisioner_stays_in_its_kafka_group_through_a_long_step(
    fresh_db: Database, kafka: Broker
) -> None:
    """kafka-python's default 300 s poll interval would hand a message whose AWS step takes
    an hour to another instance: the provisioner takes one message a poll and its group
    keeps it for longer than its longest step."""
    settings = KafkaSettings(kafka.bootstrap_servers)
    with running_system(fresh_db, kafka=settings) as system:
        provisioner = CONSUMERS["provisioner"](system)
        source = system._source_for(provisioner)
        try:
            config = source._consumer.config  # type: ignore[attr-defined]
            assert provisioner.max_handle_seconds >= 3600
            assert config["max_poll_interval_ms"] > provisioner.max_handle_seconds * 1000
            assert source.max_records == 1  # type: ignore[attr-defined]
            notifier = system._source_for(CONSUMERS["notifier"](system))
            assert notifier._consumer.config["max_poll_interval_ms"] == 300_000  # type: ignore[attr-defined]
            notifier.close()
        finally:
            source.close()
