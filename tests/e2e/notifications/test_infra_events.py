"""Infrastructure events reach notification rules through the registry the infra context
registers with (the mapping itself: tests/unit/test_infra_notifications.py)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from sailplane.system import System
from tests.conftest import Org
from tests.e2e.notifications.test_channels_and_rules import webhook_channel
from tests.e2e.notifications.test_delivery import deliveries, rule
from tests.e2e.test_infra import finished
from tests.notification_support import NotifierDriver, Receiver


@pytest.mark.usefixtures("provisioner")
def test_a_cluster_becoming_active_notifies_a_rule_on_its_connection(
    system: System, client: httpx.Client, org: Org, receiver: Receiver, notifier: NotifierDriver
) -> None:
    team = client.post("/org/teams", json={"name": f"t-{uuid.uuid4().hex[:8]}"}).json()["team"][
        "id"
    ]
    connection_id = client.post(
        "/infra/connections", json={"name": "laptop", "provider": "local"}
    ).json()["id"]
    hook = webhook_channel(client, receiver.url, teamId=team)
    watching = rule(client, team, [hook["id"]], eventTypes=["cluster.active"],
                    scopeType="resource", scopeId=connection_id)  # fmt: skip

    base = f"/infra/connections/{connection_id}"
    network_id = client.post(f"{base}/networks", json={"name": "loop", "config": {}}).json()["id"]
    assert (
        finished(client, client.post(f"{base}/networks/{network_id}/provision").json())["status"]
        == "succeeded"
    )
    created = client.post(f"{base}/clusters", json={"networkId": network_id, "name": "c"}).json()
    done = finished(client, client.post(f"{base}/clusters/{created['id']}/provision").json())
    assert done["status"] == "succeeded", done
    notifier.pump()

    [delivery] = deliveries(client, ruleId=watching["id"])
    assert delivery["status"] == "delivered"
    event = receiver.bodies()[0]
    assert event["type"] == "sailplane.notification.cluster.active"
    assert event["subject"] == created["clusterId"]
    assert event["data"]["payload"]["externalClusterId"] == created["id"]
    # A network becoming active is not a cluster event: one delivery only.
    assert len(receiver.requests) == 1
