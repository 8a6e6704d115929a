"""Permissions and the built-in roles that bundle them.

A permission is a relation (`CanManageTeams`) that holds between a principal and an
object (`organization`, `team`, or a resource such as a job). Organization roles grant
relations on the whole organization; team roles grant relations on the resources shared
with that team. Every endpoint names the one relation it needs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    relation: str
    description: str
    valid_object_types: tuple[str, ...]
    system_only: bool = False


ORG = "organization"
TEAM = "team"

PERMISSIONS: tuple[Permission, ...] = (
    Permission("CanManageOrganization", "Change organization settings", (ORG,)),
    Permission("CanViewAuditLog", "Read the organization's event log", (ORG,)),
    Permission("CanManageUsers", "Manage user resources", (ORG, TEAM)),
    Permission("CanViewMembers", "List and describe members", (ORG, TEAM)),
    Permission("CanManageTeams", "Create, update and delete teams", (ORG,)),
    Permission(
        "CanManageTeamMembers", "Add and remove team members and their team roles", (ORG, TEAM)
    ),
    Permission("CanViewTeams", "List and describe teams", (ORG, TEAM)),
    Permission("CanManagePolicies", "Set and delete authorization policies", (ORG,)),
    Permission("CanViewPolicies", "List and describe authorization policies", (ORG,)),
    Permission("CanManageIdentityProviders", "Configure single sign-on identity providers", (ORG,)),
    Permission(
        "CanViewIdentityProviders", "List and describe single sign-on identity providers", (ORG,)
    ),
    Permission(
        "CanUseOwnAccount",
        "Read and change one's own profile, emails, logins, trusted devices and MFA",
        (ORG,),
    ),
    Permission(
        "CanManageInfrastructure", "Manage cloud connections, networks and clusters", (ORG,)
    ),
    Permission(
        "CanViewInfrastructure", "List and describe connections, networks and clusters", (ORG,)
    ),
    Permission("CanUseClusters", "Run jobs and sessions on clusters", (ORG, TEAM)),
    Permission("CanManageJobs", "Create, change and delete jobs and their versions", (ORG, TEAM)),
    Permission("CanViewJobs", "List and describe jobs, versions and runs", (ORG, TEAM)),
    Permission("CanRunJobs", "Start, release, retry and cancel job runs", (ORG, TEAM)),
    Permission("CanManageCatalogs", "Create, change and delete catalogs", (ORG, TEAM)),
    Permission("CanViewCatalogs", "List and describe catalogs", (ORG, TEAM)),
    Permission("CanManageQueries", "Create, change and delete saved queries", (ORG, TEAM)),
    Permission("CanViewQueries", "List and describe saved queries", (ORG, TEAM)),
    Permission("CanManageSessions", "Open, close and relaunch interactive sessions", (ORG, TEAM)),
    Permission("CanManageNotifications", "Manage notification channels and rules", (ORG, TEAM)),
    Permission(
        "CanViewNotifications", "Read notification channels, rules and deliveries", (ORG, TEAM)
    ),
    Permission(
        "CanActAsSystem", "Internal components acting on behalf of the platform", (ORG,), True
    ),
)

PERMISSION_NAMES = frozenset(p.relation for p in PERMISSIONS)


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    description: str
    permissions: frozenset[str]
    scope: str  # "organization" or "team"


def _all_except(*excluded: str) -> frozenset[str]:
    return frozenset(
        p.relation for p in PERMISSIONS if not p.system_only and p.relation not in excluded
    )


_VIEW = frozenset(
    {
        "CanViewMembers",
        "CanViewTeams",
        "CanViewInfrastructure",
        "CanViewJobs",
        "CanViewCatalogs",
        "CanViewQueries",
        "CanViewNotifications",
    }
)

OWNER = Role(
    "OWNER", "Owner", "Full control of the organization, including its owners.", _all_except(), ORG
)
ADMIN = Role(
    "ADMIN",
    "Admin",
    "Manages the organization except its settings and identity providers.",
    _all_except("CanManageOrganization", "CanManageIdentityProviders"),
    ORG,
)
MEMBER = Role(
    "MEMBER",
    "Member",
    "Sees the organization; works on what their teams are granted.",
    _VIEW | {"CanUseOwnAccount"},
    ORG,
)
TEAM_ADMIN = Role(
    "TEAMADMIN",
    "Team Admin",
    "Manages the team's members and everything shared with the team.",
    _VIEW
    | {
        "CanManageTeamMembers",
        "CanUseClusters",
        "CanManageJobs",
        "CanRunJobs",
        "CanManageCatalogs",
        "CanManageQueries",
        "CanManageSessions",
        "CanManageNotifications",
    },
    TEAM,
)
TEAM_MEMBER = Role(
    "TEAMMEMBER",
    "Team Member",
    "Uses what is shared with the team: runs jobs, opens sessions, reads catalogs and queries.",
    _VIEW | {"CanUseClusters", "CanRunJobs", "CanManageSessions", "CanManageQueries"},
    TEAM,
)

ORGANIZATION_ROLES: dict[str, Role] = {r.id: r for r in (OWNER, ADMIN, MEMBER)}
TEAM_ROLES: dict[str, Role] = {r.id: r for r in (TEAM_ADMIN, TEAM_MEMBER)}


def permissions_of(roles: dict[str, Role], role_ids: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The union of the permissions the given roles (organization or team roles) grant."""
    granted: set[str] = set()
    for role_id in role_ids:
        role = roles.get(role_id)
        if role is not None:
            granted |= role.permissions
    return frozenset(granted)


@dataclass(frozen=True)
class Bundle:
    """A named group of permissions; roles are described by the bundles they hold in full."""

    id: str
    code: str
    name: str
    description: str
    permissions: frozenset[str]


BUNDLES: tuple[Bundle, ...] = (
    Bundle(
        "ACCOUNT",
        "account",
        "Own account",
        "Profile, emails, logins, trusted devices and MFA of the caller.",
        frozenset({"CanUseOwnAccount"}),
    ),
    Bundle("VIEWER", "viewer", "Viewer", "Read everything in the organization.", _VIEW),
    Bundle(
        "TEAMWORK",
        "teamwork",
        "Teamwork",
        "Use what is shared with a team: clusters, job runs, sessions and saved queries.",
        frozenset({"CanUseClusters", "CanRunJobs", "CanManageSessions", "CanManageQueries"}),
    ),
    Bundle(
        "WORKLOADADMIN",
        "workload-admin",
        "Workload administration",
        "Manage jobs, catalogs and notifications.",
        frozenset({"CanManageJobs", "CanManageCatalogs", "CanManageNotifications"}),
    ),
    Bundle(
        "PEOPLEADMIN",
        "people-admin",
        "People administration",
        "Manage users, members, teams, invitations and policies.",
        frozenset(
            {
                "CanManageUsers",
                "CanManageTeams",
                "CanManageTeamMembers",
                "CanManagePolicies",
                "CanViewPolicies",
            }
        ),
    ),
    Bundle(
        "INFRAADMIN",
        "infrastructure-admin",
        "Infrastructure administration",
        "Manage cloud connections, networks and clusters.",
        frozenset({"CanManageInfrastructure"}),
    ),
    Bundle(
        "AUDITOR",
        "auditor",
        "Auditor",
        "Read the event log and the single sign-on configuration.",
        frozenset({"CanViewAuditLog", "CanViewIdentityProviders"}),
    ),
    Bundle(
        "ORGADMIN",
        "organization-admin",
        "Organization administration",
        "Change organization settings and single sign-on identity providers.",
        frozenset({"CanManageOrganization", "CanManageIdentityProviders"}),
    ),
)
BUNDLES_BY_ID: dict[str, Bundle] = {b.id: b for b in BUNDLES}


def bundles_of(role: Role) -> list[Bundle]:
    """The bundles a role holds in full."""
    return [b for b in BUNDLES if b.permissions <= role.permissions]


PERMISSIONS_BY_NAME: dict[str, Permission] = {p.relation: p for p in PERMISSIONS}


def grantable(permission: str) -> bool:
    """Whether a policy may grant this permission (it exists and is not system-only)."""
    found = PERMISSIONS_BY_NAME.get(permission)
    return found is not None and not found.system_only
