"""`/api/v1/org/members`: search, describe, update and remove members; replace their roles.

Lists and describes are normalized: `items` hold ids and role assignments, `included` the
members, their users (with emails and MFA status), roles, teams, team roles and the
relation rows (`_entityRelations`: organization roles, team memberships, team roles).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody, QueryParameter

from sailplane.contexts import IdentityContext
from sailplane.domain.errors import InvalidRequestError, InvalidValueError
from sailplane.http import shapes
from sailplane.http.auth import Caller, IdentityDep, Principal, requires
from sailplane.http.errors import or_404
from sailplane.http.identity_shapes import (
    MemberUpdateResult,
    member_update_result,
    organization_role_shape,
    team_role_shape,
    user_info,
)
from sailplane.http.pagination import (
    SORT_BY,
    Described,
    Limit,
    Marker,
    NormalizedListing,
    PageNumber,
    SortDirection,
    page_of,
    sort_of,
)
from sailplane.http.request_guard import NUL_MESSAGE
from sailplane.http.routes import delete, get, patch, put
from sailplane.http.shapes import Shape, iso
from sailplane.projections import members as members_view
from sailplane.projections.members import (
    OrganizationRoleRelation,
    Relation,
    TeamMembershipRelation,
)

MemberSortBy = Annotated[Literal["name", "email"], SORT_BY]
MemberFilter = Annotated[
    str | None,
    QueryParameter(
        description=(
            "Filter criteria for members: a JSON object with any of search, name, email, roleId, "
            "teamId, isEnabled, accountType, userId (plain text searches names and emails)."
        )
    ),
]


class MemberUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    email: str | None = None
    preferences: dict[str, Any] | None = None
    invitation_token: str | None = None
    is_enabled: bool | None = None


class MemberRolesRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    role_ids: list[str]


class MemberListItem(Shape):
    member_id: str
    user_id: str
    role_ids: list[str]
    team_role_ids: dict[str, list[str]]


class MembersIncluded(Shape):
    members: list[shapes.Member]
    users: list[shapes.UserInfo]
    roles: list[shapes.OrganizationRoleWithCounts]
    teams: list[shapes.TeamWithMemberCount]
    team_roles: list[shapes.TeamRoleWithCounts]
    entity_relations: list[dict[str, Any]] = msgspec.field(name="_entityRelations")


class MemberCriteria(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, rename="camel"
):
    """The member filters `filter` may hold, each with its type."""

    search: str | None = None
    name: str | None = None
    email: str | None = None
    role_id: str | None = None
    team_id: str | None = None
    is_enabled: bool | None = None
    account_type: str | None = None
    user_id: str | None = None


def parse_filter(text: str | None) -> dict[str, Any]:
    """`filter` as criteria: plain text searches; JSON must be a `MemberCriteria` (else 400)."""
    if text is None or not text.strip():
        return {}
    if not text.lstrip().startswith("{"):
        return {"search": text.strip()}
    try:
        criteria: dict[str, Any] = msgspec.to_builtins(
            msgspec.json.decode(text, type=MemberCriteria)
        )
    except msgspec.ValidationError as error:
        raise InvalidRequestError(f"filter: {error}", code="invalid_filter") from None
    except (msgspec.DecodeError, RecursionError):
        raise InvalidRequestError("filter is not a JSON object.", code="invalid_filter") from None
    if any(isinstance(value, str) and "\x00" in value for value in criteria.values()):
        raise InvalidRequestError(NUL_MESSAGE, code="invalid_character")
    return criteria


def _relation(relation: Relation) -> dict[str, Any]:
    audit = {
        "createdAt": iso(relation.created_at),
        "createdBy": relation.created_by,
        "updatedAt": iso(relation.updated_at),
        "updatedBy": relation.updated_by,
    }
    if isinstance(relation, OrganizationRoleRelation):
        return {
            "memberId": relation.member_id,
            "organizationRoleId": relation.organization_role_id,
            **audit,
        }
    if isinstance(relation, TeamMembershipRelation):
        return {
            "id": relation.id,
            "memberId": relation.member_id,
            "teamId": relation.team_id,
            "isAutomatic": False,
            **audit,
        }
    return {"memberTeamId": relation.member_team_id, "teamRoleId": relation.team_role_id, **audit}


def member_listing(
    identity: IdentityContext, organization_id: str, rows: list[dict[str, Any]]
) -> tuple[list[MemberListItem], MembersIncluded]:
    listing = members_view.member_listing(identity.directory, identity.teams, organization_id, rows)
    items = [
        MemberListItem(
            member_id=r["id"],
            user_id=r["user_id"],
            role_ids=list(r["role_ids"]),
            team_role_ids=listing.team_role_ids.get(r["id"], {}),
        )
        for r in listing.members
    ]
    included = MembersIncluded(
        members=[shapes.member(r) for r in listing.members],
        users=[user_info(u, listing.emails.get(u["id"], [])) for u in listing.users],
        roles=[
            organization_role_shape(r, listing.organization, listing.role_member_counts)
            for r in listing.organization_role_ids
        ],
        teams=[shapes.team_with_count(t) for t in listing.teams],
        team_roles=[
            team_role_shape(r, listing.organization, listing.team_role_member_counts)
            for r in listing.team_role_ids_held
        ],
        entity_relations=[_relation(r) for r in listing.relations],
    )
    return items, included


def _member_row(identity: IdentityContext, principal: Principal, member: str) -> dict[str, Any]:
    return or_404(identity.directory.member(principal.organization_id, member), "member", member)


class MemberController(Controller):
    path = "/org/members"
    tags = ["members"]

    @get("/", operation_id="SearchMembers", guards=[requires("CanViewMembers")])
    def search_members(
        self,
        identity: IdentityDep,
        principal: Caller,
        page: PageNumber = 1,
        limit: Limit = 100,
        sort_by: MemberSortBy = "name",
        sort_direction: SortDirection = "asc",
        filter: MemberFilter = None,
        marker: Marker = None,
    ) -> NormalizedListing[MemberListItem, MembersIncluded]:
        """Search the organization's members (filter, page or marker, sort by name or email)."""
        total, rows, next_marker = identity.directory.search_members(
            principal.organization_id,
            parse_filter(filter),
            page_of(page, limit),
            sort_of(sort_by, sort_direction),
            marker,
        )
        items, included = member_listing(identity, principal.organization_id, rows)
        return NormalizedListing(total=total, items=items, included=included, marker=next_marker)

    @get(
        "/{member:str}",
        operation_id="DescribeMember",
        guards=[requires("CanViewMembers")],
    )
    def describe_member(
        self, identity: IdentityDep, principal: Caller, member: FromPath[str]
    ) -> Described[MemberListItem, MembersIncluded]:
        """A member with their user, roles and team memberships."""
        row = _member_row(identity, principal, member)
        items, included = member_listing(identity, principal.organization_id, [row])
        return Described(item=items[0], included=included)

    @patch(
        "/{member:str}",
        operation_id="UpdateMember",
        guards=[requires("CanManageUsers")],
    )
    def update_member(
        self,
        identity: IdentityDep,
        principal: Caller,
        member: FromPath[str],
        data: JSONBody[MemberUpdateRequest],
    ) -> MemberUpdateResult:
        """Change a member's name, contact email, preferences, or enable/disable them."""
        if data.invitation_token is not None:
            raise InvalidValueError(
                "A member's invitation cannot be changed; invitations are accepted through "
                "POST /org/invites/{token}/accept.",
                field="invitationToken",
            )
        position = identity.commands.update_member(
            member,
            by=principal.actor,
            name=data.name,
            email=data.email,
            preferences=data.preferences,
            is_enabled=data.is_enabled,
        )
        identity.wait_for_views(position)
        return member_update_result(_member_row(identity, principal, member))

    @delete(
        "/{member:str}",
        operation_id="RemoveMember",
        guards=[requires("CanManageUsers")],
    )
    def remove_member(
        self, identity: IdentityDep, principal: Caller, member: FromPath[str]
    ) -> None:
        """Remove a member with their roles, team memberships, keys and logins (not the last Owner)."""
        identity.wait_for_views(identity.commands.remove_member(member, by=principal.actor))

    @put(
        "/{member:str}/roles",
        operation_id="UpdateMemberRoles",
        status_code=204,
        guards=[requires("CanManageUsers")],
    )
    def replace_roles(
        self,
        identity: IdentityDep,
        principal: Caller,
        member: FromPath[str],
        data: JSONBody[MemberRolesRequest],
    ) -> None:
        """Replace all of a member's organization roles (at least one; the last Owner keeps Owner)."""
        position = identity.commands.replace_member_roles(member, data.role_ids, by=principal.actor)
        identity.wait_for_views(position)
