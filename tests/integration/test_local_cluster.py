"""Every organization has an active `local` cluster, created once with derived ids."""

from __future__ import annotations

import time
import uuid

import pytest

from sailplane.commands.infra import local_ids
from sailplane.system import System, ensure_local_clusters
from tests.conftest import Org, found_org, local_cluster_id


def test_a_founded_organization_has_an_active_local_cluster(system: System, org: Org) -> None:
    cluster_id = local_cluster_id(system, org.id)
    row = system.infra.clusters.usable_cluster(org.id, cluster_id)
    assert row is not None
    assert (row["id"], row["name"], row["provider"], row["external_status"]) == (
        cluster_id,
        "local",
        "local",
        "active",
    )
    assert row["open_to_all_members"] is True
    assert system.infra.clusters.cluster(org.id, cluster_id) == row
    # Linked to its provisioned cluster, network and connection, all active.
    external = system.infra.clusters.external_cluster(org.id, row["external_cluster_id"])
    assert external is not None and external["cluster_id"] == cluster_id
    assert external["status"] == "active"
    network = system.infra.clusters.network(org.id, row["network_id"])
    assert network is not None and network["status"] == "active"
    connection = system.infra.clusters.connection(org.id, row["connection_id"])
    assert connection is not None
    assert (connection["provider"], connection["status"]) == ("local", "active")


def test_ensuring_the_local_cluster_again_creates_nothing(system: System, org: Org) -> None:
    before = system.event_log.recorder.max_notification_id()
    again = system.infra.commands.ensure_local_cluster(org.id)
    assert system.event_log.recorder.max_notification_id() == before
    assert again.position == before  # waiting for it shows the existing cluster
    assert again.cluster_id == local_ids(org.id)[3]


def test_another_organizations_cluster_is_not_visible(system: System, org: Org) -> None:
    other = found_org(system, "Other")
    cluster_id = local_cluster_id(system, other.id)
    assert system.infra.clusters.cluster(org.id, cluster_id) is None
    assert system.infra.clusters.usable_cluster(org.id, cluster_id) is None
    assert system.infra.clusters.cluster(org.id, "NOSUCHCLUSTER") is None


def test_the_start_up_hook_gives_organizations_without_one_their_local_cluster(
    system: System,
) -> None:
    founded = system.identity.commands.found_organization(
        name="Bare", owner_email=f"bare-{uuid.uuid4().hex[:8]}@example.com", owner_name="Owner"
    )
    system.wait_for_views(founded.position)
    cluster_id = local_ids(founded.organization_id)[3]
    assert system.infra.clusters.cluster(founded.organization_id, cluster_id) is None
    ensure_local_clusters(system.infra)
    assert system.infra.clusters.usable_cluster(founded.organization_id, cluster_id) is not None
    assert (
        founded.organization_id not in system.infra.clusters.organizations_without_local_cluster()
    )


@pytest.mark.usefixtures("provisioner")
def test_the_provisioner_gives_a_newly_founded_organization_its_local_cluster(
    system: System,
) -> None:
    founded = system.identity.commands.found_organization(
        name="Fresh", owner_email=f"fresh-{uuid.uuid4().hex[:8]}@example.com", owner_name="Owner"
    )
    cluster_id = local_ids(founded.organization_id)[3]
    deadline = time.monotonic() + 30
    while system.infra.clusters.usable_cluster(founded.organization_id, cluster_id) is None:
        assert time.monotonic() < deadline, "the provisioner did not create the local cluster"
        time.sleep(0.05)
