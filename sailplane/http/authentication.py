"""`/api/v1/auth`: the permission catalog, sign-in (password, one-time code, MFA step,
single sign-on), logout and email verification.

Sign-in endpoints work without a bearer token (they hand one out); each says so with
`opt={"exclude_from_auth": True}` and an empty security requirement (`PUBLIC`).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Redirect

from sailplane.commands.authentication import Client, LoginOutcome
from sailplane.contexts import IdentityContext
from sailplane.domain.access import PERMISSIONS
from sailplane.domain.errors import InvalidValueError, NotFoundError
from sailplane.http import shapes
from sailplane.http.auth import ORGANIZATION_HEADER, Caller, IdentityDep, requires
from sailplane.http.identity_shapes import PermissionOut, permission, user_email
from sailplane.http.routes import get, post
from sailplane.http.shapes import Shape, iso

# No bearer token: the auth middleware skips these routes, and the OpenAPI document says so
# with an empty security requirement (`[{}]`: Litestar drops an empty list, which would
# leave the document-wide bearer requirement in place).
PUBLIC: dict[str, Any] = {
    "opt": {"exclude_from_auth": True},
    "security": [{}],
}


class PermissionList(Shape):
    items: list[PermissionOut]


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    email: str | None = None
    password: str | None = None
    ota_code: str | None = None
    organization_id: str | None = None
    device_id: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    trusted_device_token: str | None = None


class MfaRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    mfa_token: str
    code: str | None = None
    recovery_code: str | None = None
    trust_device: bool = False


class LoginResult(Shape):
    """A sign-in's answer: the bearer token, or the MFA challenge when a second step is due."""

    mfa_required: bool
    token: str | None
    token_type: str
    mfa_token: str | None
    login_id: str
    organization_id: str
    member_id: str
    user_id: str
    device_id: str
    expires_at: str | None
    trusted_device_token: str | None


def client_of(
    request: Request[Any, Any, Any], *, device_id: str | None = None, trusted: str | None = None
) -> Client:
    return Client(
        remote_ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
        device_id=device_id,
        trusted_device_token=trusted,
    )


def login_result(identity: IdentityContext, outcome: LoginOutcome) -> LoginResult:
    identity.wait_for_views(outcome.position)
    return LoginResult(
        mfa_required=outcome.mfa_required,
        token=outcome.token,
        token_type="Bearer",
        mfa_token=outcome.mfa_token,
        login_id=outcome.login_id,
        organization_id=outcome.organization_id,
        member_id=outcome.member_id,
        user_id=outcome.user_id,
        device_id=outcome.device_id,
        expires_at=iso(outcome.expires_at),
        trusted_device_token=outcome.trusted_device_token,
    )


def public_base(identity: IdentityContext, request: Request[Any, Any, Any]) -> str:
    """Where people reach this server: SAILPLANE_PUBLIC_URL, else the request's own base."""
    return (identity.public_url or str(request.base_url)).rstrip("/")


def sso_callback_url(identity: IdentityContext, request: Request[Any, Any, Any]) -> str:
    return public_base(identity, request) + "/api/v1/auth/sso/callback"


class AuthController(Controller):
    path = "/auth"
    tags = ["authentication"]

    @get("/permissions", operation_id="ListPermissions", **PUBLIC)
    def list_permissions(self) -> PermissionList:
        """List every permission the server enforces (public: sign-in pages and tools read it)."""
        return PermissionList(items=[permission(p) for p in PERMISSIONS])

    @post("/login", operation_id="Login", status_code=200, **PUBLIC)
    def login(
        self, identity: IdentityDep, request: Request[Any, Any, Any], data: JSONBody[LoginRequest]
    ) -> LoginResult:
        """Sign in with email and password (or an invitation's one-time code); MFA may follow."""
        organization_id = data.organization_id or request.headers.get(ORGANIZATION_HEADER.lower())
        client = client_of(request, device_id=data.device_id, trusted=data.trusted_device_token)
        if data.ota_code is not None:
            if data.password is not None:
                raise InvalidValueError(
                    "Send either a password or a one-time code, not both.", field="otaCode"
                )
            outcome = identity.authentication.login_with_code(
                data.ota_code, organization_id=organization_id, client=client
            )
        else:
            if not data.email or data.password is None:
                raise InvalidValueError("Send an email and a password.", field="password")
            outcome = identity.authentication.login_with_password(
                data.email, data.password, organization_id=organization_id, client=client
            )
        return login_result(identity, outcome)

    @post("/login/mfa", operation_id="CompleteLoginMfa", status_code=200, **PUBLIC)
    def complete_mfa(
        self, identity: IdentityDep, request: Request[Any, Any, Any], data: JSONBody[MfaRequest]
    ) -> LoginResult:
        """The second sign-in step: an authenticator code or a recovery code for the MFA token."""
        outcome = identity.authentication.complete_mfa(
            data.mfa_token,
            code=data.code,
            recovery_code=data.recovery_code,
            trust_device=data.trust_device,
            client=client_of(request),
        )
        return login_result(identity, outcome)

    @post(
        "/logout",
        operation_id="Logout",
        status_code=204,
        guards=[requires("CanUseOwnAccount")],
    )
    def logout(self, identity: IdentityDep, principal: Caller) -> None:
        """End the login this request is authenticated with; its token stops working at once."""
        identity.wait_for_views(
            identity.authentication.logout(principal.credential_id, by=principal.actor)
        )

    @get("/sso/{idp:str}/authorize", operation_id="StartSingleSignOn", **PUBLIC)
    def start_sso(
        self, identity: IdentityDep, request: Request[Any, Any, Any], idp: FromPath[str]
    ) -> Redirect:
        """Redirect to the identity provider (authorization code flow with PKCE)."""
        url = identity.authentication.begin_sso(
            idp, redirect_uri=sso_callback_url(identity, request)
        )
        return Redirect(path=url, status_code=302)

    @get("/sso/callback", operation_id="FinishSingleSignOn", **PUBLIC)
    def finish_sso(
        self,
        identity: IdentityDep,
        request: Request[Any, Any, Any],
        sso_state: Annotated[
            str, QueryParameter(name="state", description="The state of the sign-in attempt.")
        ] = "",
        code: Annotated[
            str | None, QueryParameter(description="The provider's authorization code.")
        ] = None,
        error: Annotated[
            str | None, QueryParameter(description="The provider's error, when it refused.")
        ] = None,
    ) -> LoginResult:
        """The identity provider's redirect back: verifies the ID token and signs the user in."""
        outcome = identity.authentication.finish_sso(
            state=sso_state, code=code, error=error, client=client_of(request)
        )
        return login_result(identity, outcome)

    @get("/verify-email", operation_id="VerifyEmail", **PUBLIC)
    def verify_email(
        self,
        identity: IdentityDep,
        token: Annotated[str, QueryParameter(description="The token from the verification email.")],
    ) -> shapes.UserEmail:
        """The link a verification email carries: marks that address verified."""
        user_id, email, position = identity.commands.verify_email(token)
        identity.wait_for_views(position)
        row = next(
            (
                r
                for r in identity.directory.emails_of_users([user_id]).get(user_id, [])
                if r["email"] == email
            ),
            None,
        )
        if row is None:
            raise NotFoundError(
                "The verification link is not valid.", code="verification_not_found"
            )
        return user_email(row)
