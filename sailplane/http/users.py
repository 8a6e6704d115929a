"""`/api/v1/org/users`: the user accounts of the organization's members, passwords and MFA."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller
from litestar.params import FromPath, JSONBody

from sailplane.contexts import IdentityContext
from sailplane.http import shapes
from sailplane.http.auth import Caller, IdentityDep, Principal, require_access, requires
from sailplane.http.errors import or_404
from sailplane.http.identity_shapes import user
from sailplane.http.pagination import Limit, Marker, MarkerListing
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import Shape

Name = Annotated[str, msgspec.Meta(max_length=100)]


# A user's fields, as the create and update use cases take them (keyword for keyword).
class UserCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    email: str
    given_name: Name = ""
    family_name: Name = ""
    display_name: Annotated[str, msgspec.Meta(max_length=200)] = ""


class UserUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    email: str | None = None
    given_name: Name | None = None
    family_name: Name | None = None
    display_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class ChangePasswordRequest(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"
):
    new_password: str
    current_password: str | None = None


class ResetPasswordResult(Shape):
    password: str


def _user(identity: IdentityContext, principal: Principal, user_id: str) -> shapes.User:
    return user(
        or_404(identity.directory.user(principal.organization_id, user_id), "user", user_id)
    )


class UserController(Controller):
    path = "/org/users"
    tags = ["users"]

    @get("/", operation_id="ListUsers", guards=[requires("CanViewMembers")])
    def list_users(
        self, identity: IdentityDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> MarkerListing[shapes.User]:
        """The user accounts of the organization's members, by email."""
        rows, next_marker = identity.directory.users(principal.organization_id, limit, marker)
        return MarkerListing(items=[user(r) for r in rows], marker=next_marker)

    @post("/", operation_id="CreateUser", guards=[requires("CanManageUsers")])
    def create_user(
        self, identity: IdentityDep, principal: Caller, data: JSONBody[UserCreateRequest]
    ) -> shapes.User:
        """Create a user account that joins the organization as a Member (no password yet)."""
        user_id, position = identity.commands.create_user(
            **msgspec.structs.asdict(data), by=principal.actor
        )
        identity.wait_for_views(position)
        return _user(identity, principal, user_id)

    @get(
        "/{user:str}",
        operation_id="DescribeUser",
        guards=[requires("CanViewMembers")],
    )
    def describe_user(
        self, identity: IdentityDep, principal: Caller, user: FromPath[str]
    ) -> shapes.User:
        """A user account of one of the organization's members."""
        return _user(identity, principal, user)

    @patch(
        "/{user:str}",
        operation_id="UpdateUser",
        guards=[requires("CanManageUsers")],
    )
    def update_user(
        self,
        identity: IdentityDep,
        principal: Caller,
        user: FromPath[str],
        data: JSONBody[UserUpdateRequest],
    ) -> shapes.User:
        """Change a user's names or email."""
        position = identity.commands.update_user(
            user, **msgspec.structs.asdict(data), by=principal.actor
        )
        identity.wait_for_views(position)
        return _user(identity, principal, user)

    @delete(
        "/{user:str}",
        operation_id="DeleteUser",
        guards=[requires("CanManageUsers")],
    )
    def delete_user(self, identity: IdentityDep, principal: Caller, user: FromPath[str]) -> None:
        """Remove the user from the organization, ending their logins; the account goes when it
        belongs to no other organization."""
        identity.wait_for_views(identity.commands.delete_user(user, by=principal.actor))

    @delete(
        "/{user:str}/mfa",
        operation_id="ResetUserMfa",
        guards=[requires("CanManageUsers")],
    )
    def reset_mfa(self, identity: IdentityDep, principal: Caller, user: FromPath[str]) -> None:
        """Delete a user's TOTP and recovery codes and end all their logins."""
        identity.wait_for_views(identity.commands.reset_mfa(user, by=principal.actor))

    @post(
        "/{user:str}/password",
        operation_id="ChangePassword",
        status_code=204,
        guards=[requires("CanUseOwnAccount")],
    )
    def change_password(
        self,
        identity: IdentityDep,
        principal: Caller,
        user: FromPath[str],
        data: JSONBody[ChangePasswordRequest],
    ) -> None:
        """Change a password; the current one is required when the user has one."""
        own = user == principal.user_id
        if not own:
            identity.commands.user_in_organization(user, principal.actor)  # 404 before 403
        require_access(
            principal,
            "CanManageUsers",
            open_to_caller=own,
            refusal="Changing another user's password needs the CanManageUsers permission.",
        )
        position = identity.commands.change_password(
            user,
            current_password=data.current_password,
            new_password=data.new_password,
            by=principal.actor,
            keep_login=principal.credential_id,
        )
        identity.wait_for_views(position)

    @post(
        "/{user:str}/password/reset",
        operation_id="ResetPassword",
        status_code=200,
        guards=[requires("CanManageUsers")],
    )
    def reset_password(
        self, identity: IdentityDep, principal: Caller, user: FromPath[str]
    ) -> ResetPasswordResult:
        """Give a user a new temporary password (shown once) and end all their logins."""
        password, position = identity.commands.reset_password(user, by=principal.actor)
        identity.wait_for_views(position)
        return ResetPasswordResult(password=password)
