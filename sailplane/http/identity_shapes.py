"""Response shapes of the identity groups (users, members, roles, invitations, policies, sign-in).

Built from view rows; field names as in the API documents.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sailplane.domain.access import (
    BUNDLES_BY_ID,
    ORGANIZATION_ROLES,
    PERMISSIONS,
    TEAM_ROLES,
    Permission,
    Role,
    bundles_of,
)
from sailplane.http import shapes
from sailplane.http.shapes import Shape, from_row, iso

# --- permissions and roles ---------------------------------------------------------------


class PermissionOut(Shape):
    relation: str
    description: str
    valid_object_types: list[str]
    system_only: bool


def permission(p: Permission) -> PermissionOut:
    return PermissionOut(
        relation=p.relation,
        description=p.description,
        valid_object_types=list(p.valid_object_types),
        system_only=p.system_only,
    )


class BundleOut(Shape):
    id: str
    code: str
    organization_id: str
    name: str
    description: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class RoleDetailItem(Shape):
    role_id: str
    permission_ids: list[str]
    bundle_ids: list[str]
    bundle_permissions: dict[str, list[str]]


class RoleDetailIncluded(Shape):
    roles: list[Any]
    permissions: list[PermissionOut]
    bundles: list[BundleOut]


def role_detail(
    role: Role, organization: dict[str, Any], role_shape: Any
) -> tuple[RoleDetailItem, RoleDetailIncluded]:
    bundles = bundles_of(role)
    item = RoleDetailItem(
        role_id=role.id,
        permission_ids=sorted(role.permissions),
        bundle_ids=[b.id for b in bundles],
        bundle_permissions={b.id: sorted(b.permissions) for b in bundles},
    )
    included = RoleDetailIncluded(
        roles=[role_shape],
        permissions=[permission(p) for p in PERMISSIONS if p.relation in role.permissions],
        bundles=[
            BundleOut(
                id=b.id,
                code=b.code,
                organization_id=organization["id"],
                name=b.name,
                description=b.description,
                created_at=iso(organization["created_at"]),
                created_by="SYSTEM",
                updated_at=iso(organization["created_at"]),
                updated_by="SYSTEM",
            )
            for b in (BUNDLES_BY_ID[x.id] for x in bundles)
        ],
    )
    return item, included


# --- users, emails, logins, devices ----------------------------------------------------------


user = shapes.user
user_email = shapes.user_email
user_info = shapes.user_info


class ServiceAccountOut(Shape):
    id: str
    username: str
    description: str
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class CurrentIdentity(Shape):
    root: dict[str, Any] | None
    user: shapes.User | None
    service_account: ServiceAccountOut | None


class LoginOut(Shape):
    id: str
    device_id: str
    auth_time: str | None
    last_used_at: str | None
    expires_at: str | None
    remote_ip: str
    user_agent: str
    is_current: bool


class TrustedDeviceOut(Shape):
    id: str
    device_id: str
    expires_at: str | None
    created_at: str | None
    remote_ip: str
    user_agent: str


# --- members ---------------------------------------------------------------------------------


class MemberUpdateResult(shapes.Member):
    invitation_token: str | None = None


def member_update_result(row: dict[str, Any]) -> MemberUpdateResult:
    base = shapes.member(row)
    return MemberUpdateResult(**msgspec.structs.asdict(base), invitation_token=None)


# --- organizations and invitations -------------------------------------------------------------


class AuthSettings(Shape):
    require_email_verification: bool
    allow_login_with_password: bool
    allow_login_with_email: bool
    require_dpop: bool
    check_breached_passwords: bool
    acr: str


class SessionLimits(Shape):
    idle_timeout_seconds: int
    idle_close_delay_seconds: int
    max_duration_seconds: int


class SessionBounds(Shape):
    defaults: SessionLimits
    maximums: SessionLimits


class OrganizationSessionSettings(Shape):
    max_running_workloads: int
    max_concurrent_clients: int
    max_concurrent_sessions_per_member: int
    endpoint_fallback: SessionBounds
    endpoint_defaults: dict[str, SessionBounds]


class OrganizationSettings(Shape):
    auth: AuthSettings
    sessions: OrganizationSessionSettings


class OrganizationOut(Shape):
    id: str
    slug: str
    name: str
    settings: OrganizationSettings
    default_team_id: str | None
    default_org_role_id: str | None


# What sign-in does in this version (no per-organization settings yet); 0 means no limit.
_NO_LIMIT = SessionLimits(
    idle_timeout_seconds=0, idle_close_delay_seconds=0, max_duration_seconds=0
)
DEFAULT_SETTINGS = OrganizationSettings(
    auth=AuthSettings(
        require_email_verification=False,
        allow_login_with_password=True,
        allow_login_with_email=True,
        require_dpop=False,
        check_breached_passwords=False,
        acr="",
    ),
    sessions=OrganizationSessionSettings(
        max_running_workloads=0,
        max_concurrent_clients=0,
        max_concurrent_sessions_per_member=0,
        endpoint_fallback=SessionBounds(defaults=_NO_LIMIT, maximums=_NO_LIMIT),
        endpoint_defaults={"spark_connect": SessionBounds(defaults=_NO_LIMIT, maximums=_NO_LIMIT)},
    ),
)


def organization(row: dict[str, Any]) -> OrganizationOut:
    return OrganizationOut(
        id=row["id"],
        slug=row["slug"],
        name=row["name"],
        settings=DEFAULT_SETTINGS,
        default_team_id=None,
        default_org_role_id="MEMBER",
    )


class InviteOut(Shape):
    id: str
    organization_id: str
    name: str
    email: str
    organization_role_id: str
    account_type: str
    invitation_token: str
    invited_at: str | None
    created_at: str | None
    created_by: str
    expires_at: str | None
    organization: OrganizationOut
    invite_url: str
    # The invitation email: not_requested, pending, sent, failed or not_configured.
    email_status: str
    email_message: str | None


def invite(row: dict[str, Any], token: str, org: dict[str, Any], url: str) -> InviteOut:
    return from_row(
        InviteOut,
        row,
        invitation_token=token,
        invited_at=iso(row["created_at"]),
        organization=organization(org),
        invite_url=url,
    )


# --- policies ----------------------------------------------------------------------------------


class PolicyPrincipal(Shape):
    type: str
    id: str


class PolicyOut(Shape):
    principal: PolicyPrincipal
    permissions: list[str]
    created_at: str | None
    updated_at: str | None


def policy(row: dict[str, Any]) -> PolicyOut:
    return PolicyOut(
        principal=PolicyPrincipal(type=row["principal_type"], id=row["principal_id"]),
        permissions=list(row["permissions"]),
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
    )


def organization_role_shape(
    role_id: str, organization: dict[str, Any], counts: dict[str, int]
) -> shapes.OrganizationRoleWithCounts:
    return shapes.organization_role(
        ORGANIZATION_ROLES[role_id], organization, counts.get(role_id, 0)
    )


def team_role_shape(
    role_id: str, organization: dict[str, Any], counts: dict[str, int]
) -> shapes.TeamRoleWithCounts:
    return shapes.team_role(TEAM_ROLES[role_id], organization, counts.get(role_id, 0))
