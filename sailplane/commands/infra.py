"""Infrastructure use cases: connections, networks, clusters and their operations.

The HTTP layer calls the user-facing use cases (create, provision, destroy, ...); each
provision, update, destroy or template sync saves an `Operation` together with the
resource's new status. The provisioner consumer then calls `start_operation`,
`record_progress` and `finish_operation` as it performs the provider's steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.domain.base import Actor
from sailplane.domain.errors import ConflictError
from sailplane.domain.ids import derived_id
from sailplane.domain.infra import (
    ACTIVE,
    LOCAL,
    Cluster,
    Connection,
    ExternalCluster,
    Network,
)
from sailplane.storage import EventLog

LOCAL_NAME = "local"


@dataclass(frozen=True)
class LocalCluster:
    connection_id: str
    network_id: str
    external_cluster_id: str
    cluster_id: str
    position: int  # 0 when it existed already


def local_ids(organization_id: str) -> tuple[str, str, str, str]:
    """The derived ids of an organization's local connection, network, provisioned and workload cluster."""
    return (
        derived_id("local-connection", organization_id),
        derived_id("local-network", organization_id),
        derived_id("local-external-cluster", organization_id),
        derived_id("local-cluster", organization_id),
    )


class Infra(SailplaneApplication):
    def __init__(self, log: EventLog, *, clock: Clock = utc_now) -> None:
        super().__init__(log, clock=clock)

    # --- the local cluster ---------------------------------------------------------------

    def ensure_local_cluster(self, organization_id: str) -> LocalCluster:
        """The organization's `local` connection, network and active cluster, created once.

        Ids derive from the organization, so concurrent or repeated calls create nothing twice
        (a racing second save fails the store's version check and finds the first one's).
        """
        connection_id, network_id, external_id, cluster_id = local_ids(organization_id)
        found = LocalCluster(connection_id, network_id, external_id, cluster_id, 0)
        if self._find(Cluster, cluster_id) is not None:
            return found
        by = Actor.system("bootstrap", organization_id)
        at = self.clock()
        connection = Connection.create(
            id=connection_id,
            name=LOCAL_NAME,
            provider=LOCAL,
            provider_config={},
            sealed_secrets={},
            status=ACTIVE,
            status_message="Sail on the Sailplane host.",
            by=by,
            at=at,
        )
        network = Network.create(
            id=network_id,
            connection_id=connection_id,
            name=LOCAL_NAME,
            region=LOCAL,
            config={"cidr": "127.0.0.0/8"},
            provider_network_id="loopback",
            status=ACTIVE,
            by=by,
            at=at,
        )
        external = ExternalCluster.create(
            id=external_id,
            connection_id=connection_id,
            network_id=network_id,
            cluster_id=cluster_id,
            name=LOCAL_NAME,
            region=LOCAL,
            config={},
            status=ACTIVE,
            by=by,
            at=at,
        )
        cluster = Cluster.create_for(
            external, provider=LOCAL, open_to_all_members=True, by=by, at=at
        )
        try:
            position = self._commit(connection, network, external, cluster)
        except ConflictError:
            if self._find(Cluster, cluster_id) is not None:
                return found  # created by a concurrent call
            raise
        return LocalCluster(connection_id, network_id, external_id, cluster_id, position)
