"""Identity views: organizations, users, members and credentials; teams and their members."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from psycopg.types.json import Jsonb

from sailplane.domain.errors import InvalidRequestError
from sailplane.domain.identity import ApiKey, Member, Organization, ServiceAccount, Team, User
from sailplane.domain.signin import Login, TrustedDevice
from sailplane.projections.base import Projection, View
from sailplane.projections.query import Page, Sort, keyset_page, paginate


def actor_ref(actor: str) -> str:
    """The id an API response shows for who made a change (`SYSTEM` for components)."""
    kind, _, ident = actor.partition(":")
    return "SYSTEM" if kind == "system" else ident


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The keys `GET /org/members?filter=...` accepts, and the SQL each one adds.
MEMBER_FILTERS = {
    "search": "(m.name ILIKE %s OR m.email ILIKE %s)",
    "name": "m.name ILIKE %s",
    "email": "m.email ILIKE %s",
    "roleId": "%s = ANY(m.role_ids)",
    "teamId": "EXISTS (SELECT 1 FROM team_members tm WHERE tm.member_id = m.id AND tm.team_id = %s)",
    "isEnabled": "m.is_enabled = %s",
    "accountType": "m.account_type = %s",
    "userId": "m.user_id = %s",
}


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
                has_password boolean NOT NULL DEFAULT false,
                has_2fa boolean NOT NULL DEFAULT false,
                recovery_codes integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "user_emails": """
            CREATE TABLE {user_emails} (
                user_id text NOT NULL,
                email text NOT NULL,
                verified_at timestamptz,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL,
                verification_email_status text,
                verification_email_message text,
                PRIMARY KEY (user_id, email)
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
                preferences jsonb NOT NULL DEFAULT '{{}}',
                invited_by_member_id text,
                invite_expires_at timestamptz,
                invite_accepted_at timestamptz,
                last_login_at timestamptz,
                last_active_at timestamptz,
                created_at timestamptz NOT NULL,
                created_by text NOT NULL,
                updated_at timestamptz NOT NULL,
                updated_by text NOT NULL
            )""",
        "service_accounts": """
            CREATE TABLE {service_accounts} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                username text NOT NULL,
                description text NOT NULL,
                role_ids text[] NOT NULL,
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
        "logins": """
            CREATE TABLE {logins} (
                id text PRIMARY KEY,
                token_hash text UNIQUE,
                organization_id text NOT NULL,
                user_id text NOT NULL,
                member_id text NOT NULL,
                method text NOT NULL,
                status text NOT NULL,
                device_id text NOT NULL,
                auth_time timestamptz,
                last_used_at timestamptz,
                expires_at timestamptz NOT NULL,
                remote_ip text NOT NULL,
                user_agent text NOT NULL,
                created_at timestamptz NOT NULL
            )""",
        "trusted_devices": """
            CREATE TABLE {trusted_devices} (
                id text PRIMARY KEY,
                organization_id text NOT NULL,
                user_id text NOT NULL,
                device_id text NOT NULL,
                expires_at timestamptz NOT NULL,
                remote_ip text NOT NULL,
                user_agent text NOT NULL,
                revoked boolean NOT NULL,
                created_at timestamptz NOT NULL
            )""",
    }
    indexes = (
        "CREATE INDEX ON {members} (organization_id, lower(name), id)",
        "CREATE INDEX ON {members} (user_id)",
        "CREATE INDEX ON {logins} (user_id)",
        "CREATE INDEX ON {trusted_devices} (user_id)",
        "CREATE INDEX ON {api_keys} (principal_id)",
    )

    MEMBER_SORTS = {"name": "lower(m.name)", "email": "lower(m.email)"}

    # --- credentials ---------------------------------------------------------------------

    def credential(self, token_hash: str) -> dict[str, Any] | None:
        """The live API key or login with this hash, with its principal's roles."""
        return self.fetch_one(
            """SELECT k.id, k.organization_id, k.principal_kind, k.principal_id, k.expires_at,
                      COALESCE(m.role_ids, s.role_ids) AS role_ids,
                      CASE WHEN k.principal_kind = 'member' THEN m.is_enabled
                           ELSE s.id IS NOT NULL END AS is_enabled,
                      m.user_id, 'api_key' AS credential_kind, NULL::timestamptz AS last_used_at
                 FROM {api_keys} k
                 LEFT JOIN {members} m ON m.id = k.principal_id AND k.principal_kind = 'member'
                 LEFT JOIN {service_accounts} s
                        ON s.id = k.principal_id AND k.principal_kind = 'service_account'
                WHERE k.token_hash = %s AND NOT k.revoked
               UNION ALL
               SELECT l.id, l.organization_id, 'member', l.member_id, l.expires_at, m.role_ids,
                      m.is_enabled, m.user_id, 'login', COALESCE(l.last_used_at, l.auth_time)
                 FROM {logins} l LEFT JOIN {members} m ON m.id = l.member_id
                WHERE l.token_hash = %s AND l.status = 'active'""",
            (token_hash, token_hash),
        )

    def logins_of_user(self, user_id: str, now: datetime) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {logins} WHERE user_id = %s AND status = 'active' AND expires_at > %s "
            "ORDER BY auth_time DESC, id",
            (user_id, now),
        )

    def live_login_ids(self, user_id: str, organization_id: str | None = None) -> list[str]:
        rows = self.fetch_all(
            "SELECT id FROM {logins} WHERE user_id = %s AND status <> 'revoked' "
            "AND (%s::text IS NULL OR organization_id = %s)",
            (user_id, organization_id, organization_id),
        )
        return [r["id"] for r in rows]

    def trusted_devices_of_user(self, user_id: str, now: datetime) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {trusted_devices} WHERE user_id = %s AND NOT revoked AND expires_at > %s "
            "ORDER BY created_at DESC, id",
            (user_id, now),
        )

    def trusted_device_ids(self, user_id: str) -> list[str]:
        rows = self.fetch_all(
            "SELECT id FROM {trusted_devices} WHERE user_id = %s AND NOT revoked", (user_id,)
        )
        return [r["id"] for r in rows]

    def api_key_ids(self, principal_id: str) -> list[str]:
        rows = self.fetch_all(
            "SELECT id FROM {api_keys} WHERE principal_id = %s AND NOT revoked", (principal_id,)
        )
        return [r["id"] for r in rows]

    # --- organizations, members, users ---------------------------------------------------

    def member(self, organization_id: str, member_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {members} WHERE organization_id = %s AND id = %s",
            (organization_id, member_id),
        )

    def memberships_of_user(self, user_id: str) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {members} WHERE user_id = %s ORDER BY created_at, id", (user_id,)
        )

    def team_ids_of_member(self, organization_id: str, member_id: str) -> list[str]:
        rows = self.fetch_all(
            "SELECT team_id FROM team_members WHERE organization_id = %s AND member_id = %s",
            (organization_id, member_id),
        )
        return [r["team_id"] for r in rows]

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
        """Users among `user_ids` who are members of the organization."""
        return self.fetch_all(
            "SELECT u.* FROM {users} u WHERE u.id = ANY(%s) AND EXISTS "
            "(SELECT 1 FROM {members} m WHERE m.user_id = u.id AND m.organization_id = %s) "
            "ORDER BY u.id",
            (user_ids, organization_id),
        )

    def user(self, organization_id: str, user_id: str) -> dict[str, Any] | None:
        found = self.users_by_id(organization_id, [user_id])
        return found[0] if found else None

    def users(
        self, organization_id: str, limit: int, marker: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return keyset_page(
            self,
            "FROM {users} u JOIN {members} m ON m.user_id = u.id WHERE m.organization_id = %s",
            (organization_id,),
            select="u.*",
            keys=["lower(u.email)", "u.id"],
            limit=limit,
            marker=marker,
        )

    def emails_of_users(self, user_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        rows = self.fetch_all(
            "SELECT * FROM {user_emails} WHERE user_id = ANY(%s) ORDER BY created_at, email",
            (user_ids,),
        )
        found: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            found.setdefault(row["user_id"], []).append(row)
        return found

    def emails(
        self, user_id: str, limit: int, marker: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return keyset_page(
            self,
            "FROM {user_emails} e WHERE e.user_id = %s",
            (user_id,),
            select="e.*",
            keys=["e.email"],
            limit=limit,
            marker=marker,
        )

    def search_members(
        self,
        organization_id: str,
        filters: dict[str, Any],
        page: Page,
        sort: Sort,
        marker: str | None = None,
    ) -> tuple[int, list[dict[str, Any]], str | None]:
        where = ["m.organization_id = %s"]
        params: list[Any] = [organization_id]
        for key, value in filters.items():
            clause = MEMBER_FILTERS.get(key)
            if clause is None:
                raise InvalidRequestError(
                    f"Unknown member filter {key!r}; known: {', '.join(MEMBER_FILTERS)}.",
                    code="invalid_filter",
                )
            if key in ("search", "name", "email"):
                pattern = "%" + like_escape(str(value)) + "%"
                params += [pattern] * clause.count("%s")
            else:
                params.append(value)
            where.append(clause)
        return paginate(
            self,
            "FROM {members} m WHERE " + " AND ".join(where),
            params,
            select="m.*",
            keys=sort.keys(self.MEMBER_SORTS, tiebreak="m.id"),
            descending=sort.descending,
            page=page,
            marker=marker,
        )

    def service_account(self, organization_id: str, account_id: str) -> dict[str, Any] | None:
        return self.fetch_one(
            "SELECT * FROM {service_accounts} WHERE organization_id = %s AND id = %s",
            (organization_id, account_id),
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

    # --- users ---------------------------------------------------------------------------

    @process_event.register
    def _(self, event: User.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {users} (id, organization_id, email, given_name, family_name, display_name, "
            "created_at, created_by, updated_at, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
        self._upsert_email(event, event.email)

    def _upsert_email(self, event: Any, email: str) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {user_emails} VALUES (%s, %s, NULL, %s, %s, %s, %s) "
            "ON CONFLICT (user_id, email) DO UPDATE SET updated_at = EXCLUDED.updated_at, "
            "updated_by = EXCLUDED.updated_by",
            (event.originator_id, email, event.timestamp, by, event.timestamp, by),
        )

    def _touch_user(self, event: Any, assignments: str = "", params: tuple[Any, ...] = ()) -> None:
        self.view.execute(
            "UPDATE {users} SET " + assignments + "updated_at = %s, updated_by = %s WHERE id = %s",
            (*params, event.timestamp, actor_ref(event.actor), event.originator_id),
        )

    @process_event.register
    def _(self, event: User.ProfileUpdated, tracking: Tracking) -> None:
        columns = [
            c for c in ("email", "given_name", "family_name", "display_name") if c in event.changes
        ]
        self._touch_user(
            event, "".join(f"{c} = %s, " for c in columns), tuple(event.changes[c] for c in columns)
        )
        if "email" in event.changes:
            self._upsert_email(event, event.changes["email"])

    @process_event.register
    def _(self, event: User.PasswordSet, tracking: Tracking) -> None:
        self._touch_user(event, "has_password = true, ")

    @process_event.register
    def _(self, event: User.TotpEnabled, tracking: Tracking) -> None:
        self._touch_user(
            event, "has_2fa = true, recovery_codes = %s, ", (len(event.recovery_code_hashes),)
        )

    @process_event.register
    def _(self, event: User.RecoveryCodeUsed, tracking: Tracking) -> None:
        self._touch_user(event, "recovery_codes = greatest(recovery_codes - 1, 0), ")

    @process_event.register
    def _(self, event: User.MfaReset, tracking: Tracking) -> None:
        self._touch_user(event, "has_2fa = false, recovery_codes = 0, ")

    @process_event.register
    def _(self, event: User.EmailAdded, tracking: Tracking) -> None:
        self._upsert_email(event, event.email)

    @process_event.register
    def _(self, event: User.VerificationEmailRecorded, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {user_emails} SET verification_email_status = %s, "
            "verification_email_message = %s WHERE user_id = %s AND email = %s",
            (event.status, event.message, event.originator_id, event.email),
        )

    @process_event.register
    def _(self, event: User.EmailVerified, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {user_emails} SET verified_at = %s, updated_at = %s, updated_by = %s "
            "WHERE user_id = %s AND email = %s",
            (
                event.timestamp,
                event.timestamp,
                actor_ref(event.actor),
                event.originator_id,
                event.email,
            ),
        )

    @process_event.register
    def _(self, event: User.Deleted, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {user_emails} WHERE user_id = %s", (event.originator_id,))
        self.view.execute("DELETE FROM {users} WHERE id = %s", (event.originator_id,))

    # --- members and service accounts -------------------------------------------------------

    @process_event.register
    def _(self, event: Member.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {members} (id, organization_id, user_id, name, email, role_ids, "
            "account_type, is_enabled, created_at, created_by, updated_at, updated_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, true, %s, %s, %s, %s)",
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

    def _touch_member(
        self, event: Any, assignments: str = "", params: tuple[Any, ...] = ()
    ) -> None:
        self.view.execute(
            "UPDATE {members} SET "
            + assignments
            + "updated_at = %s, updated_by = %s WHERE id = %s",
            (*params, event.timestamp, actor_ref(event.actor), event.originator_id),
        )

    @process_event.register
    def _(self, event: Member.RolesReplaced, tracking: Tracking) -> None:
        self._touch_member(event, "role_ids = %s, ", (list(event.role_ids),))

    @process_event.register
    def _(self, event: Member.Updated, tracking: Tracking) -> None:
        columns = [c for c in ("name", "email", "preferences", "is_enabled") if c in event.changes]
        values = tuple(
            Jsonb(event.changes[c]) if c == "preferences" else event.changes[c] for c in columns
        )
        self._touch_member(event, "".join(f"{c} = %s, " for c in columns), values)

    @process_event.register
    def _(self, event: Member.InvitationAccepted, tracking: Tracking) -> None:
        self._touch_member(
            event,
            "invited_by_member_id = %s, invite_expires_at = %s, invite_accepted_at = %s, ",
            (event.invited_by_member_id, event.invite_expires_at, event.timestamp),
        )

    @process_event.register
    def _(self, event: Member.Removed, tracking: Tracking) -> None:
        self.view.execute("DELETE FROM {members} WHERE id = %s", (event.originator_id,))

    @process_event.register
    def _(self, event: ServiceAccount.Created, tracking: Tracking) -> None:
        by = actor_ref(event.actor)
        self.view.execute(
            "INSERT INTO {service_accounts} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.username,
                event.description,
                list(event.role_ids),
                event.timestamp,
                by,
                event.timestamp,
                by,
            ),
        )

    # --- credentials -----------------------------------------------------------------------

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

    @process_event.register
    def _(self, event: Login.Created, tracking: Tracking) -> None:
        active = event.token_hash is not None
        self.view.execute(
            "INSERT INTO {logins} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s)",
            (
                event.originator_id,
                event.token_hash,
                event.organization_id,
                event.user_id,
                event.member_id,
                event.method,
                "active" if active else "pending_mfa",
                event.device_id,
                event.timestamp if active else None,
                event.expires_at,
                event.remote_ip,
                event.user_agent,
                event.timestamp,
            ),
        )
        if active:
            self._signed_in(event.member_id, event.timestamp)

    def _signed_in(self, member_id: str, at: datetime) -> None:
        self.view.execute(
            "UPDATE {members} SET last_login_at = %s, last_active_at = %s WHERE id = %s",
            (at, at, member_id),
        )

    @process_event.register
    def _(self, event: Login.MfaPassed, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {logins} SET status = 'active', token_hash = %s, auth_time = %s, expires_at = %s "
            "WHERE id = %s",
            (event.token_hash, event.timestamp, event.expires_at, event.originator_id),
        )
        # Statements without results keep the runner's pipeline flowing (no RETURNING).
        self.view.execute(
            "UPDATE {members} SET last_login_at = %s, last_active_at = %s "
            "WHERE id = (SELECT member_id FROM {logins} WHERE id = %s)",
            (event.timestamp, event.timestamp, event.originator_id),
        )

    @process_event.register
    def _(self, event: Login.Used, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {logins} SET last_used_at = %s WHERE id = %s",
            (event.timestamp, event.originator_id),
        )
        self.view.execute(
            "UPDATE {members} SET last_active_at = %s "
            "WHERE id = (SELECT member_id FROM {logins} WHERE id = %s)",
            (event.timestamp, event.originator_id),
        )

    @process_event.register
    def _(self, event: Login.Revoked, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {logins} SET status = 'revoked', token_hash = NULL WHERE id = %s",
            (event.originator_id,),
        )

    @process_event.register
    def _(self, event: TrustedDevice.Created, tracking: Tracking) -> None:
        self.view.execute(
            "INSERT INTO {trusted_devices} VALUES (%s, %s, %s, %s, %s, %s, %s, false, %s)",
            (
                event.originator_id,
                event.organization_id,
                event.user_id,
                event.device_id,
                event.expires_at,
                event.remote_ip,
                event.user_agent,
                event.timestamp,
            ),
        )

    @process_event.register
    def _(self, event: TrustedDevice.Revoked, tracking: Tracking) -> None:
        self.view.execute(
            "UPDATE {trusted_devices} SET revoked = true WHERE id = %s", (event.originator_id,)
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

    def memberships_of_members(
        self, organization_id: str, member_ids: list[str]
    ) -> list[dict[str, Any]]:
        """Team membership rows of these members (with the team's name for ordering)."""
        return self.fetch_all(
            "SELECT tm.* FROM {team_members} tm JOIN {teams} t ON t.id = tm.team_id "
            "WHERE tm.organization_id = %s AND tm.member_id = ANY(%s) "
            "ORDER BY tm.member_id, lower(t.name), t.id",
            (organization_id, member_ids),
        )

    def teams_by_id(self, organization_id: str, team_ids: list[str]) -> list[dict[str, Any]]:
        return self.fetch_all(
            "SELECT * FROM {teams} WHERE organization_id = %s AND id = ANY(%s) "
            "ORDER BY lower(name), id",
            (organization_id, team_ids),
        )

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
        self.view.execute(
            "UPDATE {teams} SET name = COALESCE(%s, name), default_role_id = COALESCE(%s, default_role_id), "
            "version = %s, updated_at = %s, updated_by = %s WHERE id = %s",
            (
                event.changes.get("name"),
                event.changes.get("default_role_id"),
                event.originator_version,
                event.timestamp,
                actor_ref(event.actor),
                event.originator_id,
            ),
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
