"""What the infra context tells the notifier: its event mappings, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from sailplane.domain.base import Actor
from sailplane.domain.infra import Operation
from sailplane.domain.notification_sources import NOTIFICATION_SOURCES


def test_a_failed_operation_is_an_operation_failed_notification_owned_by_its_member() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    member = Actor("member", "MEMBER0001", "ORG0000001")
    operation = Operation.create(
        id="OPER000001", operation="provision_network", resource_id="NETWORK001",
        connection_id="CONN000001", by=member, at=at,
    )  # fmt: skip
    operation.fail(code="quota", message="no more VPCs", retryable=False, by=member, at=at)
    failed = operation.collect_events()[-1]

    notable = NOTIFICATION_SOURCES.notable(failed, lambda _id, _version=None: operation)
    assert notable is not None
    assert (notable.event_type, notable.resource_id, notable.member_id) == (
        "operation.failed", "OPER000001", "MEMBER0001",
    )  # fmt: skip
    assert notable.related_ids == ("NETWORK001", "CONN000001")
    assert notable.payload["error"]["message"] == "no more VPCs"
