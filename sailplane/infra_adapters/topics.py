"""The Kafka topic each context's events are published on (and consumers read from)."""

from __future__ import annotations

TOPIC_BY_CONTEXT: dict[str, str] = {
    "identity": "sailplane.identity",
    "infra": "sailplane.infra",
    "workloads": "sailplane.workloads",
    "runs": "sailplane.job-runs",
    "notifications": "sailplane.notifications",
}
KAFKA_TOPICS = tuple(TOPIC_BY_CONTEXT.values())
