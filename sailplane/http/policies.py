"""`/api/v1/org/policies`: organization-level permissions for members, teams and service accounts.

What a policy grants adds to the principal's roles in the one permission check
(`http/auth.py`); a team's policy applies to every member of the team. The path parameter
is `{principalId}`: `principal` is the name every handler's caller is injected under.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody

from sailplane.contexts import IdentityContext
from sailplane.http.auth import Caller, IdentityDep, Principal, requires
from sailplane.http.errors import or_404
from sailplane.http.identity_shapes import PolicyOut, policy
from sailplane.http.pagination import Limit, Marker, MarkerListing
from sailplane.http.routes import delete, get, put


class PolicySetRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    permissions: list[str]


def _policy(identity: IdentityContext, principal: Principal, principal_id: str) -> dict[str, Any]:
    return or_404(
        identity.access.policy(principal.organization_id, principal_id), "policy", principal_id
    )


class PolicyController(Controller):
    path = "/org/policies"
    tags = ["authorization-policies"]

    @get("/", operation_id="ListPolicies", guards=[requires("CanViewPolicies")])
    def list_policies(
        self, identity: IdentityDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> MarkerListing[PolicyOut]:
        """Every organization-level policy: which principal holds which extra permissions."""
        rows, next_marker = identity.access.policies(principal.organization_id, limit, marker)
        return MarkerListing(items=[policy(r) for r in rows], marker=next_marker)

    @get(
        "/{principalId:str}",
        operation_id="DescribePolicy",
        guards=[requires("CanViewPolicies")],
    )
    def describe_policy(
        self, identity: IdentityDep, principal: Caller, principalId: FromPath[str]
    ) -> PolicyOut:
        """The organization-level policy of a member, team or service account."""
        return policy(_policy(identity, principal, principalId))

    @put(
        "/{principalId:str}",
        operation_id="SetPolicy",
        guards=[requires("CanManagePolicies")],
    )
    def set_policy(
        self,
        identity: IdentityDep,
        principal: Caller,
        principalId: FromPath[str],
        data: JSONBody[PolicySetRequest],
    ) -> PolicyOut:
        """Replace a principal's organization-level permissions (only ones you hold yourself)."""
        position = identity.commands.set_policy(
            principalId,
            data.permissions,
            by=principal.actor,
            caller_permissions=principal.permissions,
        )
        identity.wait_for_views(position)
        return policy(_policy(identity, principal, principalId))

    @delete(
        "/{principalId:str}",
        operation_id="DeletePolicy",
        guards=[requires("CanManagePolicies")],
    )
    def delete_policy(
        self, identity: IdentityDep, principal: Caller, principalId: FromPath[str]
    ) -> None:
        """Revoke a principal's organization-level permissions (roles and resource grants stay)."""
        identity.wait_for_views(identity.commands.delete_policy(principalId, by=principal.actor))
