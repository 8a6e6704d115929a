"""Where a workload cluster runs a run's work, from the infrastructure context.

A cluster is usable when its external cluster is `active`. A `local` provider's cluster
runs work with the local executor on its Sail server (started on first use); any other
provider's cluster (`kubernetes`, `aws` with EKS) runs it as Kubernetes Jobs in the
cluster's namespace, through the kubeconfig the provider gives, against the Spark Connect
endpoint the provider names — or, while providers deploy no Sail server there, with an
empty `SPARK_REMOTE`, so the Job's image must bring its own Sail.
"""

from __future__ import annotations

import logging
from typing import Any

import yaml

from sailplane.commands.infra import Infra, cluster_spec
from sailplane.commands.ports import ProviderError
from sailplane.domain.errors import DomainError
from sailplane.domain.infra import Cluster, Connection, ExternalCluster, Network
from sailplane.infra_adapters.executors import Target

log = logging.getLogger(__name__)


class InfraRunTargets:
    def __init__(self, infra: Infra) -> None:
        self.infra = infra

    def target(self, organization_id: str, cluster_id: str | None) -> Target | None:
        if cluster_id is None:
            return None
        cluster = self.infra._find(Cluster, cluster_id)
        if cluster is None or cluster.organization_id != organization_id or not cluster.usable:
            return None
        external = self.infra._find(ExternalCluster, cluster.external_cluster_id)
        connection = self.infra._find(Connection, external.connection_id) if external else None
        if external is None or connection is None:
            return None
        network = self.infra._find(Network, external.network_id)
        spec = cluster_spec(external, dict(network.outputs) if network else {})
        connection_spec = self.infra.connection_spec(connection)
        provider = self.infra.providers.get(connection.provider)
        try:
            if connection.provider == "local":
                return Target(
                    executor="local", spark_remote=provider.spark_endpoint(connection_spec, spec)
                )
            kubeconfig = yaml.safe_load(provider.kubeconfig(connection_spec, spec))
        except (ProviderError, DomainError) as error:
            log.warning("cluster %s cannot take work: %s", cluster_id, error.message)
            return None
        try:
            endpoint: str | None = provider.spark_endpoint(connection_spec, spec)
        except (ProviderError, DomainError):
            endpoint = None  # no Sail deployed by the provider: the Job's image brings its own
        settings: dict[str, Any] = {
            "kubeconfig": kubeconfig,
            "namespace": spec.outputs.get("namespace") or spec.config.get("namespace") or "default",
        }
        return Target(executor="kubernetes", spark_remote=endpoint, settings=settings)
