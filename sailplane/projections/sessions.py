"""Session and compute-config views."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.sessions import ComputeConfig, Session
from sailplane.projections.base import Projection, View
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import Page, paginate

Rows = tuple[int, list[dict[str, Any]], str | None]


class SessionsView(View):
    name = "sessions"
    tables = {
        "compute_configs": """
            CREATE TABLE {compute_configs} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text,
                workload_type text NOT NULL,
                cluster_id text NOT NULL,
                team_id text,
                config jsonb NOT NULL,
                endpoint_limits jsonb NOT NULL,
                anonymous boolean NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "sessions": """
            CREATE TABLE {sessions} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                endpoint_type text NOT NULL,
                status text NOT NULL,
                workload_config_id text NOT NULL,
                cluster_id text NOT NULL,
                team_id text,
                member_id text,
                service_account_id text,
                notebook_id text,
                config jsonb NOT NULL,
                metadata jsonb NOT NULL,
                grpc_endpoint text,
                status_message text,
                termination_reason text,
                relaunched_from text,
                closed_at timestamptz,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )""",
    }
    indexes = (
        "CREATE INDEX ON {compute_configs} (organization_id, created_at, id)",
        "CREATE INDEX ON {sessions} (organization_id, created_at, id)",
    )

    def compute_config(self, organization_id: str, config_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {compute_configs} WHERE organization_id = %s AND id = %s",
            (organization_id, config_id),
        )

    def compute_configs_by_id(self, organization_id: str, ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {compute_configs} WHERE organization_id = %s AND id = ANY(%s) ORDER BY id",
            (organization_id, ids),
        )

    def compute_configs(
        self,
        organization_id: str,
        *,
        team_ids: list[str] | None,
        team_id: str | None,
        limit: int,
        marker: str | None,
    ) -> Rows:
        """Named configs; `team_ids` (None: all) keeps those of these teams."""
        where, params = (
            "FROM {compute_configs} r WHERE r.organization_id = %s AND NOT r.anonymous",
            [organization_id],
        )
        if team_ids is not None:
            where += " AND r.team_id = ANY(%s)"
            params.append(team_ids)
        if team_id is not None:
            where += " AND r.team_id = %s"
            params.append(team_id)
        return paginate(
            self,
            where,
            params,
            select="r.*",
            keys=["r.created_at", "r.id"],
            page=Page(limit=limit),
            marker=marker,
        )

    def open_session_ids(self, organization_id: str, cluster_id: str) -> list[str]:
        """Sessions on this workload cluster that have not ended."""
        rows = self.fetch_all(
            "SELECT id FROM {sessions} WHERE organization_id = %s AND cluster_id = %s "
            "AND status NOT IN ('closed', 'failed') ORDER BY id",
            (organization_id, cluster_id),
        )
        return [r["id"] for r in rows]

    def session(self, organization_id: str, session_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {sessions} WHERE organization_id = %s AND id = %s",
            (organization_id, session_id),
        )

    def sessions(
        self,
        organization_id: str,
        *,
        visible_to: tuple[str, list[str]] | None,
        team_id: str | None,
        endpoint_type: str | None,
        status: str | None,
        limit: int,
        marker: str | None,
    ) -> Rows:
        """Sessions; `visible_to` (None: all) = (owner id, team ids whose sessions they also see)."""
        where = "FROM {sessions} r WHERE r.organization_id = %s"
        params: list[Any] = [organization_id]
        if visible_to is not None:
            owner, teams = visible_to
            where += " AND (r.member_id = %s OR r.service_account_id = %s OR r.team_id = ANY(%s))"
            params += [owner, owner, teams]
        for column, value in (
            ("team_id", team_id),
            ("endpoint_type", endpoint_type),
            ("status", status),
        ):
            if value is not None:
                where += f" AND r.{column} = %s"
                params.append(value)
        return paginate(
            self,
            where,
            params,
            select="r.*",
            keys=["r.created_at", "r.id"],
            page=Page(limit=limit),
            marker=marker,
        )


class SessionsProjection(Projection[SessionsView]):
    view_class = SessionsView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: ComputeConfig.Created, tracking: Tracking) -> None:
        actor = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {compute_configs} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.workload_type,
                event.cluster_id,
                event.team_id,
                Jsonb(event.config),
                Jsonb(event.endpoint_limits),
                event.anonymous,
                event.timestamp,
                actor,
                event.timestamp,
                actor,
            ),
        )

    @process_event.register
    def _(self, event: Session.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {sessions} (id, organization_id, name, endpoint_type, status, "
            "workload_config_id, cluster_id, team_id, member_id, service_account_id, notebook_id, "
            "config, metadata, status_message, relaunched_from, created_at, updated_at) "
            "VALUES (%s, %s, %s, %s, 'pending', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.endpoint_type,
                event.workload_config_id,
                event.cluster_id,
                event.team_id,
                event.member_id,
                event.service_account_id,
                event.notebook_id,
                Jsonb(event.config),
                Jsonb(event.metadata),
                "Waiting for the cluster's Spark Connect endpoint.",
                event.relaunched_from,
                event.timestamp,
                event.timestamp,
            ),
        )

    def _update(self, event: Any, assignments: str, params: tuple[Any, ...]) -> None:
        self.view.execute(
            f"UPDATE {{sessions}} SET {assignments}, updated_at = %s WHERE id = %s",
            (*params, event.timestamp, event.originator_id),
        )

    @process_event.register
    def _(self, event: Session.Opened, tracking: Tracking) -> None:
        self._update(
            event,
            "status = 'active', grpc_endpoint = %s, status_message = NULL",
            (event.grpc_endpoint,),
        )

    @process_event.register
    def _(self, event: Session.Failed, tracking: Tracking) -> None:
        self._update(
            event,
            "status = 'failed', status_message = %s, termination_reason = 'failed'",
            (event.message,),
        )

    @process_event.register
    def _(self, event: Session.Closed, tracking: Tracking) -> None:
        self._update(
            event,
            "status = 'closed', termination_reason = %s, closed_at = %s",
            (event.reason, event.timestamp),
        )
