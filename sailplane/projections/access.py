"""Access views: authorization policies, invitations and identity providers."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.identity import Member, Team
from sailplane.domain.invitations import Invitation
from sailplane.domain.policies import Policy
from sailplane.domain.sso import IdentityProvider
from sailplane.projections.base import Projection, View
from sailplane.projections.identity import actor_ref
from sailplane.projections.query import keyset_page


class AccessView(View):
    name = "access"
    tables = {
        "policies": """
            CREATE TABLE {policies} (
                organization_id text NOT NULL,
                principal_id text NOT NULL,
                policy_id text NOT NULL UNIQUE,
                principal_type text NOT NULL,
                permissions text[] NOT NULL,
                deleted boolean NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (organization_id, principal_id)
            )""",
        "invitations": """
            CREATE TABLE {invitations} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                email text NOT NULL,
                organization_role_id text NOT NULL,
                account_type text NOT NULL,
                team_assignments jsonb NOT NULL,
                token_hash text NOT NULL,
                status text NOT NULL,
                expires_at timestamptz NOT NULL,
                accepted_at timestamptz,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                email_status text NOT NULL DEFAULT 'not_requested',
                email_message text
            )""",
        "identity_providers": """
            CREATE TABLE {identity_providers} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                type_id text NOT NULL,
                name text NOT NULL,
                issuer text NOT NULL,
                client_id text NOT NULL,
                client_secret_configured boolean NOT NULL,
                scopes text[] NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
    }
    indexes = ("CREATE INDEX ON {identity_providers} (organization_id, id)",)

    # --- policies --------------------------------------------------------------------------

    def policy_permissions(self, organization_id: str, principal_id: str) -> frozenset[str]:
        """What the principal's own policy and the policies of its teams grant."""
        rows = self.fetch_all(
            "SELECT DISTINCT unnest(p.permissions) AS permission FROM {policies} p "
            "WHERE p.organization_id = %s AND NOT p.deleted AND (p.principal_id = %s OR p.principal_id IN "
            "(SELECT tm.team_id FROM team_members tm WHERE tm.member_id = %s))",
            (organization_id, principal_id, principal_id),
        )
        return frozenset(r["permission"] for r in rows)

    def policy(self, organization_id: str, principal_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {policies} WHERE organization_id = %s AND principal_id = %s "
            "AND NOT deleted",
            (organization_id, principal_id),
        )

    def policies(
        self, organization_id: str, limit: int, marker: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return keyset_page(
            self,
            "FROM {policies} p WHERE p.organization_id = %s AND NOT p.deleted",
            (organization_id,),
            select="p.*",
            keys=["p.principal_id"],
            limit=limit,
            marker=marker,
        )

    # --- invitations -----------------------------------------------------------------------

    def invitation(self, invitation_id: str) -> dict[str, Any] | None:
        return self.fetch_one("SELECT * FROM {invitations} WHERE id = %s", (invitation_id,))

    # --- identity providers -----------------------------------------------------------------

    def identity_provider(self, organization_id: str, provider_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {identity_providers} WHERE organization_id = %s AND id = %s",
            (organization_id, provider_id),
        )

    def identity_providers(
        self, organization_id: str, limit: int, marker: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return keyset_page(
            self,
            "FROM {identity_providers} p WHERE p.organization_id = %s",
            (organization_id,),
            select="p.*",
            keys=["p.id"],
            limit=limit,
            marker=marker,
        )


class AccessProjection(Projection[AccessView]):
    view_class = AccessView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: Policy.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {policies} VALUES (%s, %s, %s, %s, %s, false, %s, %s)",
            (
                event.organization_id,
                event.principal_id,
                event.originator_id,
                event.principal_type,
                list(event.permissions),
                event.timestamp,
                event.timestamp,
            ),
        )

    @process_event.register
    def _(self, event: Policy.Replaced, tracking: Tracking) -> None:
        # A policy set again after its deletion starts over: a new creation time.
        self.view.execute(
            "UPDATE {policies} SET permissions = %s, updated_at = %s, "
            "created_at = CASE WHEN deleted THEN %s ELSE created_at END, deleted = false "
            "WHERE policy_id = %s",
            (list(event.permissions), event.timestamp, event.timestamp, event.originator_id),
        )

    @process_event.register
    def _(self, event: Policy.Deleted, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {policies} SET deleted = true, permissions = '{{}}', updated_at = %s "
            "WHERE policy_id = %s",
            (event.timestamp, event.originator_id),
        )

    @process_event.register
    def _(self, event: Member.Removed, tracking: Tracking) -> None:
        self._drop_policy_of(event)

    @process_event.register
    def _(self, event: Team.Deleted, tracking: Tracking) -> None:
        self._drop_policy_of(event)

    def _drop_policy_of(self, event: Any) -> None:
        """A principal that is gone keeps no policy in the listings."""
        self.view.execute(
            "UPDATE {policies} SET deleted = true, permissions = '{{}}', updated_at = %s "
            "WHERE organization_id = %s AND principal_id = %s",
            (event.timestamp, event.organization_id, event.originator_id),
        )

    # --- invitations -----------------------------------------------------------------------

    @process_event.register
    def _(self, event: Invitation.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {invitations} "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'pending', %s, NULL, %s, %s, %s, NULL)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.email,
                event.organization_role_id,
                event.account_type,
                Jsonb(list(event.team_assignments)),
                event.token_hash,
                event.expires_at,
                event.timestamp,
                actor_ref(event.actor),
                "pending" if event.send_email else "not_requested",
            ),
        )

    @process_event.register
    def _(self, event: Invitation.EmailRecorded, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {invitations} SET email_status = %s, email_message = %s WHERE id = %s",
            (event.status, event.message, event.originator_id),
        )

    @process_event.register
    def _(self, event: Invitation.Accepted, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {invitations} SET status = 'accepted', accepted_at = %s WHERE id = %s",
            (event.timestamp, event.originator_id),
        )

    # --- identity providers ---------------------------------------------------------------

    @process_event.register
    def _(self, event: IdentityProvider.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {identity_providers} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.type_id,
                event.name,
                event.issuer,
                event.client_id,
                bool(event.client_secret),
                list(event.scopes),
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    def _touch_provider(
        self, event: Any, assignments: str = "", params: tuple[Any, ...] = ()
    ) -> None:
        self.view.execute(
            "UPDATE {identity_providers} SET "
            + assignments
            + "updated_at = %s, updated_by = %s WHERE id = %s",
            (*params, event.timestamp, actor_ref(event.actor), event.originator_id),
        )

    @process_event.register
    def _(self, event: IdentityProvider.Updated, tracking: Tracking) -> None:
        changes = dict(event.changes)
        if "client_secret" in changes:
            changes["client_secret_configured"] = bool(changes.pop("client_secret"))
        columns = [
            c
            for c in ("name", "issuer", "client_id", "client_secret_configured", "scopes")
            if c in changes
        ]
        self._touch_provider(
            event,
            "".join(f"{c} = %s, " for c in columns),
            tuple(list(changes[c]) if c == "scopes" else changes[c] for c in columns),
        )

    @process_event.register
    def _(self, event: IdentityProvider.SecretRotated, tracking: Tracking) -> None:
        self._touch_provider(event, "client_secret_configured = true, ")

    @process_event.register
    def _(self, event: IdentityProvider.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {identity_providers} WHERE id = %s", (event.originator_id,))
