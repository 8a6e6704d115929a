"""Identity views: organizations, users, members and credentials; teams and their members."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking

from sailplane.domain.identity import ApiKey, Member, Organization, Team, User
from sailplane.projections.base import Projection, View
from sailplane.projections.query import Page, Sort, paginate


def actor_ref(actor: str) -> str:
    """The id an API response shows for who made a change (`SYSTEM` for components)."""
    kind, _, ident = actor.partition(":")
    return "SYSTEM" if kind == "system" else ident


class DirectoryView(View):
    name = "directory"
    tables = {
        "organizations": """
            CREATE TABLE {organizations} (
                id text PRIMARY KEY,
                name text NOT NULL,
                slug text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL
            )""",
        "users": """
            CREATE TABLE {users} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                email text NOT NULL,
                given_name text NOT NULL,
                family_name text NOT NULL,
                display_name text NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "members": """
            CREATE TABLE {members} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                user_id text NOT NULL,
                name text NOT NULL,
                email text NOT NULL,
                role_ids text[] NOT NULL,
                account_type text NOT NULL,
                is_enabled boolean NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "api_keys": """
            CREATE TABLE {api_keys} (
                token_hash text PRIMARY KEY,
                id text NOT NULL UNIQUE,
                organization_id text NOT NULL,
                principal_kind text NOT NULL,
                principal_id text NOT NULL,
                name text NOT NULL,
                expires_at timestamptz,
                revoked boolean NOT NULL,
                created_at timestamptz NOT NULL
            )""",
    }
    indexes = ("CREATE INDEX ON {members} (organization_id, lower(name), id)",)

    def credential(self, token_hash: str) -> dict[str, Any] | None:
        """The live API key with this hash, with its member's roles."""
        return self.fetch_one(
            """SELECT k.id, k.organization_id, k.principal_kind, k.principal_id, k.expires_at,
                      m.role_ids, m.is_enabled
                 FROM {api_keys} k LEFT JOIN {members} m ON m.id = k.principal_id
                WHERE k.token_hash = %s AND NOT k.revoked""",
            (token_hash,),
        )

    def member(self, organization_id: str, member_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {members} WHERE organization_id = %s AND id = %s",
            (organization_id, member_id),
        )

    def first_owner(self) -> dict[str, Any] | None:
        """The earliest owner of the earliest organization (the installation's owner)."""
        return self.fetch_one(
            "SELECT m.* FROM {members} m JOIN {organizations} o ON o.id = m.organization_id "
            "WHERE 'OWNER' = ANY(m.role_ids) ORDER BY o.created_at, m.created_at LIMIT 1"
        )

    def organization(self, organization_id: str) -> dict[str, Any] | None:
        return self.fetch_one("SELECT * FROM {organizations} WHERE id = %s", (organization_id,))

    def members_by_id(self, organization_id: str, member_ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {members} WHERE organization_id = %s AND id = ANY(%s) ORDER BY id",
            (organization_id, member_ids),
        )

    def users_by_id(self, organization_id: str, user_ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {users} WHERE organization_id = %s AND id = ANY(%s) ORDER BY id",
            (organization_id, user_ids),
        )

    def role_member_counts(self, organization_id: str) -> dict[str, int]:
        rows = self.fetch_all(
            "SELECT role_id, count(*) AS n FROM {members}, unnest(role_ids) AS role_id "
            "WHERE organization_id = %s GROUP BY role_id",
            (organization_id,),
        )
        return {r["role_id"]: int(r["n"]) for r in rows}


class DirectoryProjection(Projection[DirectoryView]):
    view_class = DirectoryView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: Organization.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {organizations} VALUES (%s, %s, %s, %s, %s)",
            (event.originator_id, event.name, event.slug, event.timestamp, actor_ref(event.actor)),
        )

    @process_event.register
    def _(self, event: User.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {users} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.email,
                event.given_name,
                event.family_name,
                event.display_name,
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    @process_event.register
    def _(self, event: Member.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {members} VALUES (%s, %s, %s, %s, %s, %s, %s, true, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.user_id,
                event.name,
                event.email,
                list(event.role_ids),
                event.account_type,
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    @process_event.register
    def _(self, event: Member.RolesReplaced, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {members} SET role_ids = %s, updated_at = %s, updated_by = %s WHERE id = %s",
            (list(event.role_ids), event.timestamp, actor_ref(event.actor), event.originator_id),
        )

    @process_event.register
    def _(self, event: ApiKey.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {api_keys} VALUES (%s, %s, %s, %s, %s, %s, %s, false, %s)",
            (
                event.token_hash,
                event.originator_id,
                event.organization_id,
                event.principal_kind,
                event.principal_id,
                event.name,
                event.expires_at,
                event.timestamp,
            ),
        )

    @process_event.register
    def _(self, event: ApiKey.Revoked, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {api_keys} SET revoked = true WHERE id = %s", (event.originator_id,)
        )


class TeamsView(View):
    name = "teams"
    tables = {
        "teams": """
            CREATE TABLE {teams} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                name text NOT NULL,
                default_role_id text NOT NULL,
                member_count integer NOT NULL,
                version integer NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "team_members": """
            CREATE TABLE {team_members} (
                team_id text NOT NULL,
                member_id text NOT NULL,
                organization_id text NOT NULL,
                membership_id text NOT NULL,
                role_ids text[] NOT NULL,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                PRIMARY KEY (team_id, member_id)
            )""",
    }
    indexes = (
        "CREATE INDEX ON {teams} (organization_id, lower(name), id)",
        "CREATE INDEX ON {team_members} (member_id)",
    )

    TEAM_SORTS = {"name": "lower(t.name)", "email": "lower(t.name)"}
    MEMBER_SORTS = {"name": "lower(m.name)", "email": "lower(m.email)"}

    def team(self, organization_id: str, team_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT t.* FROM {teams} t WHERE t.organization_id = %s AND t.id = %s",
            (organization_id, team_id),
        )

    def teams(
        self, organization_id: str, page: Page, sort: Sort, marker: str | None = None
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        return paginate(
            self,
            "FROM {teams} t WHERE t.organization_id = %s",
            (organization_id,),
            select="t.*",
            keys=sort.keys(self.TEAM_SORTS, tiebreak="t.id"),
            descending=sort.descending,
            page=page,
            marker=marker,
        )

    def team_members(
        self, organization_id: str, team_id: str, page: Page, sort: Sort, marker: str | None = None
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        return paginate(
            self,
            "FROM {team_members} tm JOIN members m ON m.id = tm.member_id "
            "WHERE tm.organization_id = %s AND tm.team_id = %s",
            (organization_id, team_id),
            select="tm.member_id, tm.role_ids AS team_role_ids, m.user_id, m.role_ids",
            keys=sort.keys(self.MEMBER_SORTS, tiebreak="tm.member_id"),
            descending=sort.descending,
            page=page,
            marker=marker,
        )

    def membership(self, team_id: str, member_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {team_members} WHERE team_id = %s AND member_id = %s",
            (team_id, member_id),
        )

    def team_role_member_counts(self, organization_id: str) -> dict[str, int]:
        rows = self.fetch_all(
            "SELECT role_id, count(*) AS n FROM {team_members}, unnest(role_ids) AS role_id "
            "WHERE organization_id = %s GROUP BY role_id",
            (organization_id,),
        )
        return {r["role_id"]: int(r["n"]) for r in rows}

    def team_roles_of_member(self, organization_id: str, member_id: str) -> dict[str, list[str]]:
        """{team id: the member's team role ids} for every team the member is in."""
        rows = self.fetch_all(
            "SELECT team_id, role_ids FROM {team_members} WHERE organization_id = %s AND member_id = %s",
            (organization_id, member_id),
        )
        return {r["team_id"]: list(r["role_ids"]) for r in rows}

    def teams_of_member(self, organization_id: str, member_id: str) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT t.*, tm.role_ids AS team_role_ids FROM {team_members} tm JOIN {teams} t ON t.id = tm.team_id "
            "WHERE tm.organization_id = %s AND tm.member_id = %s ORDER BY lower(t.name), t.id",
            (organization_id, member_id),
        )


class TeamsProjection(Projection[TeamsView]):
    view_class = TeamsView

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        """Other events change nothing here."""

    @process_event.register
    def _(self, event: Team.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {teams} VALUES (%s, %s, %s, %s, 0, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.name,
                event.default_role_id,
                event.originator_version,
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    @process_event.register
    def _(self, event: Team.Updated, tracking: Tracking) -> None:
        self._touch(event)
        if "name" in event.changes:
            self.view.execute(
                "UPDATE {teams} SET name = %s WHERE id = %s",
                (event.changes["name"], event.originator_id),
            )
        if "default_role_id" in event.changes:
            self.view.execute(
                "UPDATE {teams} SET default_role_id = %s WHERE id = %s",
                (event.changes["default_role_id"], event.originator_id),
            )

    @process_event.register
    def _(self, event: Team.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {team_members} WHERE team_id = %s", (event.originator_id,))
        self.view.execute("DELETE FROM {teams} WHERE id = %s", (event.originator_id,))

    @process_event.register
    def _(self, event: Team.MemberAdded, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {team_members} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.member_id,
                event.organization_id,
                event.membership_id,
                list(event.role_ids),
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )
        self._touch(event, member_delta=1)

    @process_event.register
    def _(self, event: Team.MemberRolesReplaced, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {team_members} SET role_ids = %s, updated_at = %s, updated_by = %s "
            "WHERE team_id = %s AND member_id = %s",
            (
                list(event.role_ids),
                event.timestamp,
                actor_ref(event.actor),
                event.originator_id,
                event.member_id,
            ),
        )
        self._touch(event)

    @process_event.register
    def _(self, event: Team.MemberRemoved, tracking: Tracking) -> None:
        self.view.execute(
            "DELETE FROM {team_members} WHERE team_id = %s AND member_id = %s",
            (event.originator_id, event.member_id),
        )
        self._touch(event, member_delta=-1)

    def _touch(self, event: Any, *, member_delta: int = 0) -> None:
        self.view.execute(
            "UPDATE {teams} SET version = %s, updated_at = %s, updated_by = %s, member_count = member_count + %s "
            "WHERE id = %s",
            (
                event.originator_version,
                event.timestamp,
                actor_ref(event.actor),
                member_delta,
                event.originator_id,
            ),
        )
