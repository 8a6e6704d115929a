"""Entity shapes that several endpoint groups return or include (teams, members, users, roles).

Built from view rows; field names as in the API documents (camelCase). Timestamps are ISO
8601 in UTC with a `Z`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from sailplane.domain.access import Role


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Shape(msgspec.Struct, kw_only=True, rename="camel"):
    """Base of response shapes."""


S = TypeVar("S", bound=Shape)


def from_row(shape: type[S], row: Mapping[str, Any], **fields: Any) -> S:
    """A shape built from a view row: each field not given in `fields` takes the row's
    column of the same (snake_case) name, a time as ISO 8601 (`iso`); a field the row lacks
    keeps its default (and one without a default is an error, as a missing column should be)."""
    for name in shape.__struct_fields__:
        if name not in fields and name in row:
            value = row[name]
            fields[name] = iso(value) if isinstance(value, datetime) else value
    return shape(**fields)


class Team(Shape):
    id: str
    organization_id: str
    name: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str
    default_role_id: str


class TeamWithMemberCount(Shape):
    team: Team
    member_count: int


class Member(Shape):
    id: str
    organization_id: str
    user_id: str
    name: str
    email: str
    preferences: dict[str, Any]
    invited_by_member_id: str | None
    invite_expires_at: str | None
    invite_accepted_at: str | None
    last_login_at: str | None
    last_active_at: str | None
    is_enabled: bool
    account_type: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class User(Shape):
    id: str
    email: str
    given_name: str
    family_name: str
    display_name: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class UserEmail(Shape):
    user_id: str
    email: str
    verified_at: str | None
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str
    # What became of the latest verification email: sent, failed or not_configured (null
    # when none was meant to be sent), and why it failed.
    verification_email_status: str | None = None
    verification_email_message: str | None = None


class UserAuth(Shape):
    has_2fa: bool = msgspec.field(name="has2FA")
    has_password: bool
    has_recovery: bool


class UserInfo(Shape):
    user: User
    emails: list[UserEmail]
    auth: UserAuth


class OrganizationRole(Shape):
    id: str
    organization_id: str
    name: str
    description: str
    all_teams: bool
    break_glass: bool
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class OrganizationRoleWithCounts(Shape):
    role: OrganizationRole
    member_count: int
    permission_count: int


class TeamRole(Shape):
    id: str
    organization_id: str
    name: str
    description: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class TeamRoleWithCounts(Shape):
    role: TeamRole
    member_count: int
    permission_count: int


def team(row: dict[str, Any]) -> Team:
    return from_row(Team, row)


def team_with_count(row: dict[str, Any]) -> TeamWithMemberCount:
    return TeamWithMemberCount(team=team(row), member_count=row["member_count"])


def member(row: dict[str, Any]) -> Member:
    # Rows of other views than the directory's lack the invitation and activity columns.
    return from_row(
        Member,
        row,
        preferences=row.get("preferences") or {},
        invited_by_member_id=row.get("invited_by_member_id"),
        invite_expires_at=iso(row.get("invite_expires_at")),
        invite_accepted_at=iso(row.get("invite_accepted_at")),
        last_login_at=iso(row.get("last_login_at")),
        last_active_at=iso(row.get("last_active_at")),
    )


def user(row: dict[str, Any]) -> User:
    return from_row(User, row)


def user_email(row: dict[str, Any]) -> UserEmail:
    """From a row of the user emails view (`user_id`, `email`, `verified_at`, audit)."""
    return from_row(UserEmail, row)


def user_info(row: dict[str, Any], emails: list[dict[str, Any]] | None = None) -> UserInfo:
    """A user with their emails (rows of the emails view; the primary one when not given)."""
    if emails is None:
        emails = [
            {
                "user_id": row["id"],
                "email": row["email"],
                "verified_at": row.get("email_verified_at"),
                "created_at": row["created_at"],
                "created_by": row["created_by"],
                "updated_at": row["updated_at"],
                "updated_by": row["updated_by"],
            }
        ]
    return UserInfo(
        user=user(row),
        emails=[user_email(e) for e in emails],
        auth=UserAuth(
            has_2fa=bool(row.get("has_2fa")),
            has_password=bool(row.get("has_password")),
            has_recovery=bool(row.get("has_recovery") or row.get("recovery_codes")),
        ),
    )


def _audit(organization: dict[str, Any]) -> dict[str, Any]:
    """Built-in roles exist since the organization does; Sailplane itself defined them."""
    created = iso(organization["created_at"])
    return {
        "created_at": created,
        "created_by": "SYSTEM",
        "updated_at": created,
        "updated_by": "SYSTEM",
    }


def _role_fields(role: Role, organization: dict[str, Any]) -> dict[str, Any]:
    """What a built-in role shows under either kind: its name and description, audited as
    Sailplane's since the organization began."""
    return {
        "id": role.id,
        "organization_id": organization["id"],
        "name": role.name,
        "description": role.description,
        **_audit(organization),
    }


def organization_role(
    role: Role, organization: dict[str, Any], member_count: int
) -> OrganizationRoleWithCounts:
    return OrganizationRoleWithCounts(
        role=OrganizationRole(
            **_role_fields(role, organization),
            all_teams=role.id in {"OWNER", "ADMIN"},
            break_glass=False,
        ),
        member_count=member_count,
        permission_count=len(role.permissions),
    )


def team_role(role: Role, organization: dict[str, Any], member_count: int) -> TeamRoleWithCounts:
    return TeamRoleWithCounts(
        role=TeamRole(**_role_fields(role, organization)),
        member_count=member_count,
        permission_count=len(role.permissions),
    )


# --- job runs (the server's answers and the Python client's, sailplane/client.py) --------


class JobRunEvent(Shape):
    """One transition of a run, as `/runs/{jobRun}/events` and the stream's `status` show it."""

    version: int
    type: str
    status: str | None
    reason: str | None
    message: str | None
    attempt: int
    cause: str  # member:ID, service_account:ID or system:<component>
    time: str | None


class JobRunLogLine(Shape):
    """One line a run wrote, as `/runs/{jobRun}/logs` and the stream's `log` show it."""

    seq: int
    attempt: int
    time: str | None
    line: str
