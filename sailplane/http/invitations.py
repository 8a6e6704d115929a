"""`/api/v1/org/invites`: invite people; describe and accept work with the token alone."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request
from litestar.params import FromPath, JSONBody

from sailplane.contexts import IdentityContext
from sailplane.domain.access import MEMBER
from sailplane.domain.errors import NotFoundError
from sailplane.http import shapes
from sailplane.http.auth import Caller, IdentityDep, requires
from sailplane.http.authentication import PUBLIC, public_base
from sailplane.http.identity_shapes import InviteOut, OrganizationOut, invite, organization, user
from sailplane.http.routes import get, post
from sailplane.http.shapes import Shape


class TeamAssignment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    team_id: str
    role_id: str = "TEAMMEMBER"


class InviteCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    email: str
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    organization_id: str | None = None
    organization_role_id: str = MEMBER.id
    account_type: str = "managed"
    team_assignments: list[TeamAssignment] = msgspec.field(default_factory=list)
    send_email: bool = False


class InvitedUser(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    email: str | None = None
    given_name: Annotated[str, msgspec.Meta(max_length=100)] = ""
    family_name: Annotated[str, msgspec.Meta(max_length=100)] = ""
    password: str | None = None


class InviteAcceptRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    user: InvitedUser | None = None


class InviteAcceptResult(Shape):
    organization: OrganizationOut
    user: shapes.User
    ota_code: str | None  # for a user the acceptance created; null for an existing account
    next_step: str  # "sign_in" (password set) or "set_password"


def invite_url(identity: IdentityContext, request: Request[Any, Any, Any], token: str) -> str:
    return f"{public_base(identity, request)}/api/v1/org/invites/{token}"


def _invite(
    identity: IdentityContext, request: Request[Any, Any, Any], invitation_id: str, token: str
) -> InviteOut:
    row = identity.access.invitation(invitation_id)
    org = identity.directory.organization(row["organization_id"]) if row else None
    if row is None or org is None:
        raise NotFoundError("This invitation was not found.", code="invitation_not_found")
    return invite(row, token, org, invite_url(identity, request, token))


class InvitationController(Controller):
    path = "/org/invites"
    tags = ["invitations"]

    @post(
        "/",
        operation_id="CreateInvitation",
        guards=[requires("CanManageUsers")],
    )
    def create_invitation(
        self,
        identity: IdentityDep,
        principal: Caller,
        request: Request[Any, Any, Any],
        data: JSONBody[InviteCreateRequest],
    ) -> InviteOut:
        """Invite a person by email with a role and team assignments; the token is shown once."""
        if data.organization_id is not None and data.organization_id != principal.organization_id:
            raise NotFoundError.of("organization", data.organization_id)
        invitation_id, token, position = identity.commands.create_invitation(
            email=data.email,
            name=data.name,
            organization_role_id=data.organization_role_id,
            account_type=data.account_type,
            team_assignments=[
                {"team_id": t.team_id, "role_id": t.role_id} for t in data.team_assignments
            ],
            send_email=data.send_email,
            by=principal.actor,
        )
        identity.wait_for_views(position)
        out = _invite(identity, request, invitation_id, token)
        if not data.send_email:
            return out
        # Recorded and shown (here and when the invitation is described), never dropped.
        identity.wait_for_views(
            identity.commands.send_invitation_email(
                invitation_id,
                organization_name=out.organization.name,
                invite_url=out.invite_url,
                expires_at=out.expires_at,
                by=principal.actor,
            )
        )
        return _invite(identity, request, invitation_id, token)

    @get("/{token:str}", operation_id="DescribeInvitation", **PUBLIC)
    def describe_invitation(
        self, identity: IdentityDep, request: Request[Any, Any, Any], token: FromPath[str]
    ) -> InviteOut:
        """A pending invitation (no bearer token needed; 404 when expired, 409 when used)."""
        invitation = identity.commands.invitation_for(token)
        return _invite(identity, request, invitation.id, token)

    @post("/{token:str}/accept", operation_id="AcceptInvitation", status_code=200, **PUBLIC)
    def accept_invitation(
        self,
        identity: IdentityDep,
        token: FromPath[str],
        data: JSONBody[InviteAcceptRequest | None] = None,
    ) -> InviteAcceptResult:
        """Join the organization: links the account with the invited email or creates it."""
        person = data.user if data and data.user else InvitedUser()
        accepted = identity.commands.accept_invitation(
            token,
            email=person.email,
            given_name=person.given_name,
            family_name=person.family_name,
            password=person.password,
        )
        identity.wait_for_views(accepted.position)
        org = identity.directory.organization(accepted.organization_id)
        row = identity.directory.user(accepted.organization_id, accepted.user_id)
        if org is None or row is None:
            raise NotFoundError.of("user", accepted.user_id)
        return InviteAcceptResult(
            organization=organization(org),
            user=user(row),
            ota_code=accepted.one_time_code,
            next_step=accepted.next_step,
        )
