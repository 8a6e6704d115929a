"""`/api/v1/auth/identity-provider-types` and `/api/v1/auth/idps`: single sign-on providers.

The client secret goes in through `configWrite.oidc.clientSecret` and never comes out:
reads show `config.oidc.clientSecretConfigured` (and `configWrite` without the secret).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request
from litestar.params import FromPath, JSONBody

from sailplane.contexts import IdentityContext
from sailplane.domain.sso import PROVIDER_TYPES, ProviderType
from sailplane.http.auth import Caller, IdentityDep, Principal, requires
from sailplane.http.authentication import sso_callback_url
from sailplane.http.errors import or_404
from sailplane.http.pagination import Limit, Marker, MarkerListing
from sailplane.http.routes import delete, get, patch, post
from sailplane.http.shapes import Shape, from_row

# The catalog of provider types is part of this release, not of an organization's data.
TYPES_RELEASED_AT = "2026-01-01T00:00:00.000Z"


class OidcConfigWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    issuer: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scopes: list[str] | None = None


class ConfigWrite(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    oidc: OidcConfigWrite


class IdpCreateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    identity_provider_type_id: str
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    config_write: ConfigWrite


class IdpUpdateRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None
    config_write: ConfigWrite | None = None


class RotateSecretRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    client_secret: Annotated[str, msgspec.Meta(min_length=1)]


class AutoSetupRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel"):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    provider_url: str
    provider_type: str = "oidc"
    initial_access_token: str | None = None


class OidcConfigRead(Shape):
    issuer: str
    client_id: str
    client_secret_configured: bool
    scopes: list[str]


class ConfigRead(Shape):
    oidc: OidcConfigRead


class OidcConfigEcho(Shape):
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: list[str]


class ConfigEcho(Shape):
    oidc: OidcConfigEcho


class IdentityProviderSummary(Shape):
    id: str
    identity_provider_type_id: str
    name: str
    config: ConfigRead


class IdentityProviderOut(Shape):
    id: str
    identity_provider_type_id: str
    name: str
    config: ConfigRead
    config_write: ConfigEcho  # the writable fields; clientSecret is always null
    created_at: str | None
    created_by: str
    updated_at: str | None
    updated_by: str


class DcrCapability(Shape):
    supported: bool
    requires_token: bool
    token_type: str | None


class TypeCapabilities(Shape):
    dcr: DcrCapability
    requires_client_secret: bool


class TypeMetadata(Shape):
    documentation_url: str
    logo_url: str | None
    setup_complexity: str
    vendor_type: str
    default_issuer: str | None
    issuer_template: str | None


class ProviderTypeOut(Shape):
    id: str
    name: str
    description: str
    provider_type: str
    capabilities: TypeCapabilities
    metadata: TypeMetadata
    enabled: bool
    visible: bool
    display_order: int
    created_at: str
    updated_at: str


class ProviderTypeList(Shape):
    items: list[ProviderTypeOut]


class ConnectionTestEndpoints(Shape):
    authorization: str | None
    token: str | None
    userinfo: str | None
    jwks: str | None
    end_session: str | None


class ConnectionTestDetails(Shape):
    issuer: str | None
    endpoints: ConnectionTestEndpoints | None = None
    backchannel_logout_supported: bool = False
    backchannel_logout_session_supported: bool = False
    frontchannel_logout_supported: bool = False
    scopes_supported: list[str] = msgspec.field(default_factory=list)
    claims_supported: list[str] = msgspec.field(default_factory=list)


class ConnectionTestResult(Shape):
    success: bool
    message: str
    details: ConnectionTestDetails


def provider_type(t: ProviderType) -> ProviderTypeOut:
    return ProviderTypeOut(
        id=t.id,
        name=t.name,
        description=t.description,
        provider_type="oidc",
        capabilities=TypeCapabilities(
            dcr=DcrCapability(
                supported=t.dcr_supported,
                requires_token=t.dcr_requires_token,
                token_type=t.dcr_token_type,
            ),
            requires_client_secret=t.requires_client_secret,
        ),
        metadata=TypeMetadata(
            documentation_url=t.documentation_url,
            logo_url=None,
            setup_complexity=t.setup_complexity,
            vendor_type=t.vendor_type,
            default_issuer=t.default_issuer,
            issuer_template=t.issuer_template,
        ),
        enabled=t.enabled,
        visible=t.visible,
        display_order=t.display_order,
        created_at=TYPES_RELEASED_AT,
        updated_at=TYPES_RELEASED_AT,
    )


P = TypeVar("P", IdentityProviderSummary, IdentityProviderOut)


def _config(row: dict[str, Any]) -> ConfigRead:
    return ConfigRead(oidc=from_row(OidcConfigRead, row, scopes=list(row["scopes"])))


def _provider(shape: type[P], row: dict[str, Any], **fields: Any) -> P:
    """An identity provider as a list (`IdentityProviderSummary`) or a describe
    (`IdentityProviderOut`) shows it."""
    return from_row(
        shape, row, identity_provider_type_id=row["type_id"], config=_config(row), **fields
    )


def summary(row: dict[str, Any]) -> IdentityProviderSummary:
    return _provider(IdentityProviderSummary, row)


def full(row: dict[str, Any]) -> IdentityProviderOut:
    # The settings as written, the secret never shown.
    echo = from_row(OidcConfigEcho, row, client_secret=None, scopes=list(row["scopes"]))
    return _provider(IdentityProviderOut, row, config_write=ConfigEcho(oidc=echo))


def _row(identity: IdentityContext, principal: Principal, idp: str) -> dict[str, Any]:
    return or_404(
        identity.access.identity_provider(principal.organization_id, idp), "identity_provider", idp
    )


class IdentityProviderController(Controller):
    path = "/auth"
    tags = ["identity-providers"]

    @get(
        "/identity-provider-types",
        operation_id="ListIdentityProviderTypes",
        guards=[requires("CanViewIdentityProviders")],
        sync_to_thread=False,
    )
    def list_types(self) -> ProviderTypeList:
        """The identity provider types this server can configure (enabled and visible ones)."""
        return ProviderTypeList(
            items=[provider_type(t) for t in PROVIDER_TYPES if t.enabled and t.visible]
        )

    @get(
        "/idps",
        operation_id="ListIdentityProviders",
        guards=[requires("CanViewIdentityProviders")],
    )
    def list_idps(
        self, identity: IdentityDep, principal: Caller, limit: Limit = 100, marker: Marker = None
    ) -> MarkerListing[IdentityProviderSummary]:
        """List the organization's identity providers."""
        rows, next_marker = identity.access.identity_providers(
            principal.organization_id, limit, marker
        )
        return MarkerListing(items=[summary(r) for r in rows], marker=next_marker)

    @post(
        "/idps",
        operation_id="CreateIdentityProvider",
        guards=[requires("CanManageIdentityProviders")],
    )
    def create_idp(
        self, identity: IdentityDep, principal: Caller, data: JSONBody[IdpCreateRequest]
    ) -> IdentityProviderOut:
        """Configure an OpenID Connect provider for single sign-on."""
        oidc = data.config_write.oidc
        provider_id, position = identity.identity_providers.create(
            type_id=data.identity_provider_type_id,
            name=data.name,
            issuer=oidc.issuer or "",
            client_id=oidc.client_id or "",
            client_secret=oidc.client_secret,
            scopes=oidc.scopes,
            by=principal.actor,
        )
        identity.wait_for_views(position)
        return full(_row(identity, principal, provider_id))

    @post(
        "/idps/auto-setup",
        operation_id="AutoSetupIdentityProvider",
        guards=[requires("CanManageIdentityProviders")],
    )
    def auto_setup(
        self,
        identity: IdentityDep,
        principal: Caller,
        request: Request[Any, Any, Any],
        data: JSONBody[AutoSetupRequest],
    ) -> IdentityProviderSummary:
        """Discover the provider and register Sailplane with Dynamic Client Registration (RFC 7591)."""
        provider_id, position = identity.identity_providers.auto_setup(
            name=data.name,
            provider_url=data.provider_url,
            provider_type=data.provider_type,
            initial_access_token=data.initial_access_token,
            redirect_uri=sso_callback_url(identity, request),
            by=principal.actor,
        )
        identity.wait_for_views(position)
        return summary(_row(identity, principal, provider_id))

    @get(
        "/idps/{idp:str}",
        operation_id="DescribeIdentityProvider",
        guards=[requires("CanViewIdentityProviders")],
    )
    def describe_idp(
        self, identity: IdentityDep, principal: Caller, idp: FromPath[str]
    ) -> IdentityProviderOut:
        """Describe an identity provider (never its client secret)."""
        return full(_row(identity, principal, idp))

    @patch(
        "/idps/{idp:str}",
        operation_id="UpdateIdentityProvider",
        guards=[requires("CanManageIdentityProviders")],
    )
    def update_idp(
        self,
        identity: IdentityDep,
        principal: Caller,
        idp: FromPath[str],
        data: JSONBody[IdpUpdateRequest],
    ) -> IdentityProviderSummary:
        """Change an identity provider's name or OIDC settings (next sign-ins use them)."""
        oidc = data.config_write.oidc if data.config_write else OidcConfigWrite()
        position = identity.identity_providers.update(
            idp,
            by=principal.actor,
            name=data.name,
            issuer=oidc.issuer,
            client_id=oidc.client_id,
            client_secret=oidc.client_secret,
            scopes=oidc.scopes,
        )
        identity.wait_for_views(position)
        return summary(_row(identity, principal, idp))

    @delete(
        "/idps/{idp:str}",
        operation_id="DeleteIdentityProvider",
        guards=[requires("CanManageIdentityProviders")],
    )
    def delete_idp(self, identity: IdentityDep, principal: Caller, idp: FromPath[str]) -> None:
        """Remove an identity provider; its users need another way to sign in."""
        identity.wait_for_views(identity.identity_providers.delete(idp, by=principal.actor))

    @post(
        "/idps/{idp:str}/rotate-secret",
        operation_id="RotateIdentityProviderSecret",
        status_code=200,
        guards=[requires("CanManageIdentityProviders")],
    )
    def rotate_secret(
        self,
        identity: IdentityDep,
        principal: Caller,
        idp: FromPath[str],
        data: JSONBody[RotateSecretRequest],
    ) -> IdentityProviderSummary:
        """Replace the client secret with one issued by the provider's console."""
        position = identity.identity_providers.rotate_secret(
            idp, data.client_secret, by=principal.actor
        )
        identity.wait_for_views(position)
        return summary(_row(identity, principal, idp))

    @post(
        "/idps/{idp:str}/test-connection",
        operation_id="TestIdentityProviderConnection",
        status_code=200,
        guards=[requires("CanManageIdentityProviders")],
    )
    def test_connection(
        self, identity: IdentityDep, principal: Caller, idp: FromPath[str]
    ) -> ConnectionTestResult:
        """Fetch the provider's OpenID configuration and JWKS; report success or what failed."""
        _row(identity, principal, idp)
        result = identity.identity_providers.test_connection(idp, by=principal.actor)
        details = result.details
        endpoints = details.get("endpoints")
        return ConnectionTestResult(
            success=result.success,
            message=result.message,
            details=ConnectionTestDetails(
                issuer=details.get("issuer"),
                endpoints=ConnectionTestEndpoints(
                    authorization=endpoints.get("authorization"),
                    token=endpoints.get("token"),
                    userinfo=endpoints.get("userinfo"),
                    jwks=endpoints.get("jwks"),
                    end_session=endpoints.get("endSession"),
                )
                if endpoints
                else None,
                backchannel_logout_supported=bool(details.get("backchannelLogoutSupported")),
                backchannel_logout_session_supported=bool(
                    details.get("backchannelLogoutSessionSupported")
                ),
                frontchannel_logout_supported=bool(details.get("frontchannelLogoutSupported")),
                scopes_supported=list(details.get("scopesSupported") or []),
                claims_supported=list(details.get("claimsSupported") or []),
            ),
        )
