"""Infrastructure views: connections, networks, provisioned and workload clusters, operations.

`ClustersView` is the one other contexts read: `cluster()` and `usable_cluster()` answer
whether a workload cluster exists and whether jobs and sessions may use it now.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.infra import (
    ACTIVE,
    Cluster,
    Connection,
    ExternalCluster,
    Network,
    Operation,
    Provisioned,
)
from sailplane.projections.base import Projection, View
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import Page, paginate

_AUDIT = """
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL"""

Rows = tuple[int, list[dict[str, Any]], str | None]


class ClustersView(View):
    name = "infra"
    tables = {
        "infra_connections": f"""
            CREATE TABLE {{infra_connections}} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                provider text NOT NULL,
                provider_config jsonb NOT NULL,
                sealed_secrets jsonb NOT NULL,
                status text NOT NULL,
                status_message text,
                last_used_at timestamptz,
                template_synced_at timestamptz,
                template_sync_message text,
                deleted boolean NOT NULL DEFAULT false,{_AUDIT}
            )""",
        "infra_networks": f"""
            CREATE TABLE {{infra_networks}} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                connection_id text NOT NULL,
                name text NOT NULL,
                region text NOT NULL,
                provider_network_id text,
                config jsonb NOT NULL,
                iac_outputs jsonb NOT NULL,
                status text NOT NULL,
                status_message text,
                operation_id text,
                deleted boolean NOT NULL DEFAULT false,{_AUDIT}
            )""",
        "infra_external_clusters": f"""
            CREATE TABLE {{infra_external_clusters}} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                connection_id text NOT NULL,
                network_id text NOT NULL,
                cluster_id text NOT NULL,
                name text NOT NULL,
                region text NOT NULL,
                config jsonb NOT NULL,
                iac_outputs jsonb NOT NULL,
                status text NOT NULL,
                status_message text,
                operation_id text,
                deleted boolean NOT NULL DEFAULT false,{_AUDIT}
            )""",
        "infra_clusters": f"""
            CREATE TABLE {{infra_clusters}} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                provider text NOT NULL,
                connection_id text NOT NULL,
                network_id text NOT NULL,
                external_cluster_id text NOT NULL,
                region text NOT NULL,
                external_status text NOT NULL,
                operation_id text,
                open_to_all_members boolean NOT NULL,
                deleted boolean NOT NULL DEFAULT false,{_AUDIT}
            )""",
        "infra_operations": """
            CREATE TABLE {infra_operations} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                member_id text,
                operation text NOT NULL,
                status text NOT NULL,
                resource_type text NOT NULL,
                resource_id text NOT NULL,
                connection_id text NOT NULL,
                progress jsonb NOT NULL,
                result jsonb,
                error jsonb,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                started_at timestamptz,
                completed_at timestamptz
            )""",
    }
    indexes = (
        "CREATE INDEX ON {infra_connections} (organization_id, id)",
        "CREATE INDEX ON {infra_networks} (organization_id, connection_id, id)",
        "CREATE INDEX ON {infra_external_clusters} (organization_id, connection_id, id)",
        "CREATE INDEX ON {infra_clusters} (organization_id, lower(name), id)",
        "CREATE INDEX ON {infra_operations} (organization_id, resource_id)",
    )

    # --- workload clusters: what other contexts call -------------------------------------

    def cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        """A workload cluster row (id, name, provider, external_status, ...), None when absent or deleted."""
        return self.fetch_one(
            "SELECT * FROM {infra_clusters} WHERE organization_id = %s AND id = %s AND NOT deleted",
            (organization_id, cluster_id),
        )

    def workload_cluster_id(self, organization_id: str, cluster_id: str) -> str:
        """The workload cluster `cluster_id` names: itself, or the one workload cluster of the
        provisioned cluster whose id it is (the `id` of `/infra/.../clusters`, the
        `externalClusterId` of a workload cluster); else `cluster_id` unchanged."""
        if self.cluster(organization_id, cluster_id) is not None:
            return cluster_id
        rows = self.fetch_all(
            "SELECT id FROM {infra_clusters} WHERE organization_id = %s "
            "AND external_cluster_id = %s AND NOT deleted",
            (organization_id, cluster_id),
        )
        return rows[0]["id"] if len(rows) == 1 else cluster_id

    def usable_cluster(self, organization_id: str, cluster_id: str) -> dict[str, Any] | None:
        """The workload cluster when jobs and sessions may use it now (externalStatus active)."""
        row = self.cluster(organization_id, cluster_id)
        return row if row is not None and row["external_status"] == ACTIVE else None

    def clusters_by_id(self, organization_id: str, cluster_ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {infra_clusters} WHERE organization_id = %s AND id = ANY(%s) "
            "AND NOT deleted ORDER BY lower(name), id",
            (organization_id, cluster_ids),
        )

    def reachable_clusters(
        self,
        organization_id: str,
        *,
        everything: bool,
        page: Page,
        descending: bool,
        marker: str | None = None,
    ) -> Rows:
        """Workload clusters a caller reaches: all (`everything`) or those open to every member."""
        where = "FROM {infra_clusters} c WHERE c.organization_id = %s AND NOT c.deleted"
        if not everything:
            where += " AND c.open_to_all_members"
        return paginate(
            self,
            where,
            (organization_id,),
            select="c.*",
            keys=["lower(c.name)", "c.id"],
            descending=descending,
            page=page,
            marker=marker,
        )

    # --- connections, networks, provisioned clusters, operations -----------------------

    def connection(self, organization_id: str, connection_id: str) -> dict[str, Any] | None:
        return self._one("infra_connections", organization_id, connection_id)

    def connections_by_id(self, organization_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self._by_id("infra_connections", organization_id, ids)

    def connections(self, organization_id: str, *, limit: int, marker: str | None) -> Rows:
        return self._page("infra_connections", organization_id, "", (), limit, marker)

    def network(self, organization_id: str, network_id: str) -> dict[str, Any] | None:
        return self._one("infra_networks", organization_id, network_id)

    def networks_by_id(self, organization_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self._by_id("infra_networks", organization_id, ids)

    def networks(
        self, organization_id: str, *, connection_id: str | None, limit: int, marker: str | None
    ) -> Rows:
        return self._of_connection("infra_networks", organization_id, connection_id, limit, marker)

    def external_cluster(self, organization_id: str, external_id: str) -> dict[str, Any] | None:
        return self._one("infra_external_clusters", organization_id, external_id)

    def external_clusters_by_id(self, organization_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self._by_id("infra_external_clusters", organization_id, ids)

    def external_clusters(
        self, organization_id: str, *, connection_id: str | None, limit: int, marker: str | None
    ) -> Rows:
        return self._of_connection(
            "infra_external_clusters", organization_id, connection_id, limit, marker
        )

    def external_clusters_in_networks(
        self, organization_id: str, network_ids: list[str]
    ) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {infra_external_clusters} WHERE organization_id = %s AND network_id = ANY(%s) "
            "AND NOT deleted ORDER BY created_at, id",
            (organization_id, network_ids),
        )

    def operation(self, organization_id: str, operation_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {infra_operations} WHERE organization_id = %s AND id = %s",
            (organization_id, operation_id),
        )

    def operations_by_id(self, organization_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {infra_operations} WHERE organization_id = %s AND id = ANY(%s) ORDER BY id",
            (organization_id, ids),
        )

    def live_children(
        self,
        organization_id: str,
        *,
        connection_id: str | None = None,
        network_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Networks and clusters (of a connection, or clusters of a network) not deleted yet."""
        if network_id is not None:
            return self.fetch_all(
                "SELECT id, status, 'cluster' AS kind FROM {infra_external_clusters} "
                "WHERE organization_id = %s AND network_id = %s AND NOT deleted",
                (organization_id, network_id),
            )
        return self.fetch_all(
            "SELECT id, status, 'network' AS kind FROM {infra_networks} "
            "WHERE organization_id = %s AND connection_id = %s AND NOT deleted "
            "UNION ALL SELECT id, status, 'cluster' FROM {infra_external_clusters} "
            "WHERE organization_id = %s AND connection_id = %s AND NOT deleted",
            (organization_id, connection_id, organization_id, connection_id),
        )

    def active_clusters(self, provider: str) -> list[dict[str, Any]]:
        """Every organization's active provisioned clusters of one provider (for supervision)."""
        return self.fetch_all(
            "SELECT e.* FROM {infra_external_clusters} e JOIN {infra_connections} c ON c.id = e.connection_id "
            "WHERE c.provider = %s AND e.status = 'active' AND NOT e.deleted",
            (provider,),
        )

    def organizations_without_local_cluster(self) -> list[str]:
        rows = self.fetch_all(
            "SELECT o.id FROM organizations o WHERE NOT EXISTS (SELECT 1 FROM {infra_clusters} c "
            "WHERE c.organization_id = o.id AND c.provider = 'local' AND c.open_to_all_members)",
        )
        return [r["id"] for r in rows]

    def _one(self, table: str, organization_id: str, row_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            f"SELECT * FROM {{{table}}} WHERE organization_id = %s AND id = %s AND NOT deleted",
            (organization_id, row_id),
        )

    def _by_id(self, table: str, organization_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            f"SELECT * FROM {{{table}}} WHERE organization_id = %s AND id = ANY(%s) ORDER BY id",
            (organization_id, ids),
        )

    def _of_connection(
        self,
        table: str,
        organization_id: str,
        connection_id: str | None,
        limit: int,
        marker: str | None,
    ) -> Rows:
        if connection_id is None:
            return self._page(table, organization_id, "", (), limit, marker)
        return self._page(
            table, organization_id, " AND r.connection_id = %s", (connection_id,), limit, marker
        )

    def _page(
        self,
        table: str,
        organization_id: str,
        where: str,
        params: tuple[Any, ...],
        limit: int,
        marker: str | None,
    ) -> Rows:
        return paginate(
            self,
            f"FROM {{{table}}} r WHERE r.organization_id = %s AND NOT r.deleted{where}",
            (organization_id, *params),
            select="r.*",
            keys=["r.created_at", "r.id"],
            page=Page(limit=limit),
            marker=marker,
        )


def _audit_insert(event: Any) -> tuple[Any, ...]:
    actor = actor_ref(event.actor)
    return (event.timestamp, actor, event.timestamp, actor)


class ClustersProjection(Projection[ClustersView]):
    view_class = ClustersView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    def _touch(
        self, table: str, event: Any, assignments: str = "", params: tuple[Any, ...] = ()
    ) -> None:
        self.view.execute(
            f"UPDATE {{{table}}} SET {assignments}{', ' if assignments else ''}"
            "updated_at = %s, updated_by = %s WHERE id = %s",
            (*params, event.timestamp, actor_ref(event.actor), event.originator_id),
        )

    # --- connections ---------------------------------------------------------------------

    @process_event.register
    def _(self, event: Connection.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {infra_connections} (id, organization_id, name, provider, provider_config, "
            "sealed_secrets, status, status_message, created_at, created_by, updated_at, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.provider,
                Jsonb(event.provider_config),
                Jsonb(event.sealed_secrets),
                event.status,
                event.status_message,
                *_audit_insert(event),
            ),
        )

    @process_event.register
    def _(self, event: Connection.Updated, tracking: Tracking) -> None:
        self._touch(
            "infra_connections",
            event,
            "name = %s, provider_config = %s, sealed_secrets = %s",
            (event.name, Jsonb(event.provider_config), Jsonb(event.sealed_secrets)),
        )

    @process_event.register
    def _(self, event: Connection.Verified, tracking: Tracking) -> None:
        self._touch(
            "infra_connections",
            event,
            "status = %s, status_message = %s, provider_config = %s, last_used_at = %s",
            (event.status, event.status_message, Jsonb(event.provider_config), event.timestamp),
        )

    @process_event.register
    def _(self, event: Connection.TemplateSynced, tracking: Tracking) -> None:
        self._touch(
            "infra_connections",
            event,
            "template_synced_at = %s, template_sync_message = %s",
            (event.timestamp, event.message),
        )

    @process_event.register
    def _(self, event: Connection.Deleted, tracking: Tracking) -> None:
        self._touch("infra_connections", event, "deleted = true")

    # --- networks and provisioned clusters -----------------------------------------------

    @process_event.register
    def _(self, event: Network.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {infra_networks} (id, organization_id, connection_id, name, region, "
            "provider_network_id, config, iac_outputs, status, created_at, created_by, updated_at, "
            "updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.connection_id,
                event.name,
                event.region,
                event.provider_network_id,
                Jsonb(event.config),
                Jsonb({}),
                event.status,
                *_audit_insert(event),
            ),
        )

    @process_event.register
    def _(self, event: ExternalCluster.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {infra_external_clusters} (id, organization_id, connection_id, network_id, "
            "cluster_id, name, region, config, iac_outputs, status, created_at, created_by, "
            "updated_at, updated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.connection_id,
                event.network_id,
                event.cluster_id,
                event.name,
                event.region,
                Jsonb(event.config),
                Jsonb({}),
                event.status,
                *_audit_insert(event),
            ),
        )

    @process_event.register
    def _(self, event: Provisioned.StatusChanged, tracking: Tracking) -> None:
        assignments = "status = %s, status_message = %s, operation_id = coalesce(%s, operation_id)"
        params: tuple[Any, ...] = (event.status, event.status_message, event.operation_id)
        if event.outputs is not None:
            assignments += ", iac_outputs = %s"
            params += (Jsonb(event.outputs),)
            if _is_network(event) and "providerNetworkId" in event.outputs:
                assignments += ", provider_network_id = %s"
                params += (event.outputs["providerNetworkId"],)
        self._touch(_table(event), event, assignments, params)

    @process_event.register
    def _(self, event: Provisioned.Renamed, tracking: Tracking) -> None:
        self._touch(_table(event), event, "name = %s", (event.name,))

    @process_event.register
    def _(self, event: Provisioned.Deleted, tracking: Tracking) -> None:
        self._touch(_table(event), event, "deleted = true")

    @process_event.register
    def _(self, event: ExternalCluster.Reconfigured, tracking: Tracking) -> None:
        self._touch("infra_external_clusters", event, "config = %s", (Jsonb(event.config),))

    # --- workload clusters ---------------------------------------------------------------

    @process_event.register
    def _(self, event: Cluster.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {infra_clusters} (id, organization_id, name, provider, connection_id, "
            "network_id, external_cluster_id, region, external_status, open_to_all_members, "
            "created_at, created_by, updated_at, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.provider,
                event.connection_id,
                event.network_id,
                event.external_cluster_id,
                event.region,
                event.external_status,
                event.open_to_all_members,
                *_audit_insert(event),
            ),
        )

    @process_event.register
    def _(self, event: Cluster.ExternalStatusMirrored, tracking: Tracking) -> None:
        self._touch(
            "infra_clusters",
            event,
            "external_status = %s, name = %s, operation_id = coalesce(%s, operation_id)",
            (event.external_status, event.name, event.operation_id),
        )

    @process_event.register
    def _(self, event: Cluster.Deleted, tracking: Tracking) -> None:
        self._touch("infra_clusters", event, "deleted = true")

    # --- operations ----------------------------------------------------------------------

    @process_event.register
    def _(self, event: Operation.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {infra_operations} (id, organization_id, member_id, operation, status, "
            "resource_type, resource_id, connection_id, progress, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.member_id,
                event.operation,
                event.resource_type,
                event.resource_id,
                event.connection_id,
                Jsonb({"stage": "pending", "message": "Waiting for the provisioner."}),
                event.timestamp,
                event.timestamp,
            ),
        )

    def _operation(self, event: Any, assignments: str, params: tuple[Any, ...]) -> None:
        self.view.execute(
            f"UPDATE {{infra_operations}} SET {assignments}, updated_at = %s WHERE id = %s",
            (*params, event.timestamp, event.originator_id),
        )

    @process_event.register
    def _(self, event: Operation.Started, tracking: Tracking) -> None:
        self._operation(event, "status = 'running', started_at = %s", (event.timestamp,))

    @process_event.register
    def _(self, event: Operation.Progressed, tracking: Tracking) -> None:
        self._operation(event, "progress = %s", (Jsonb(event.progress),))

    @process_event.register
    def _(self, event: Operation.Succeeded, tracking: Tracking) -> None:
        self._operation(
            event,
            "status = 'succeeded', result = %s, progress = %s, completed_at = %s",
            (
                Jsonb(event.result) if event.result is not None else None,
                Jsonb(event.progress),
                event.timestamp,
            ),
        )

    @process_event.register
    def _(self, event: Operation.Failed, tracking: Tracking) -> None:
        self._operation(
            event,
            "status = 'failed', error = %s, progress = %s, completed_at = %s",
            (Jsonb(event.error), Jsonb(event.progress), event.timestamp),
        )


def _is_network(event: Any) -> bool:
    return type(event).__qualname__.startswith("Network.")


def _table(event: Any) -> str:
    return "infra_networks" if _is_network(event) else "infra_external_clusters"
