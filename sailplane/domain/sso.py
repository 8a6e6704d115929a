"""Single sign-on: OpenID Connect identity providers and sign-in attempts through them.

The client secret is kept in the provider's events (the server needs it to redeem
authorization codes) and never returned by the API; the audit log and Kafka redact it.
A sign-in attempt holds the PKCE verifier and the nonce between the redirect to the
provider and its callback; its id is derived from the `state` parameter, so the callback
finds it without a lookup and an attempt completes at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sailplane.domain.base import Actor, SailplaneAggregate
from sailplane.domain.errors import ConflictError, InvalidValueError, NotAuthenticatedError
from sailplane.domain.ids import derived_id

DEFAULT_SCOPES = ("openid", "email", "profile")
NAME_MAX = 100


@dataclass(frozen=True)
class ProviderType:
    id: str
    name: str
    description: str
    dcr_supported: bool
    dcr_requires_token: bool
    dcr_token_type: str | None
    requires_client_secret: bool
    documentation_url: str
    setup_complexity: str
    vendor_type: str
    default_issuer: str | None = None
    issuer_template: str | None = None
    enabled: bool = True
    visible: bool = True
    display_order: int = 0


PROVIDER_TYPES: tuple[ProviderType, ...] = (
    ProviderType(
        "oidc",
        "OpenID Connect",
        "Any OpenID Connect provider with discovery (/.well-known/openid-configuration).",
        True,
        False,
        "initial_access_token",
        True,
        "https://openid.net/specs/openid-connect-discovery-1_0.html",
        "medium",
        "generic",
        issuer_template="https://{host}",
        display_order=0,
    ),
    ProviderType(
        "keycloak",
        "Keycloak",
        "Keycloak realms; auto-setup registers a client with an initial access token.",
        True,
        True,
        "initial_access_token",
        True,
        "https://www.keycloak.org/docs/latest/securing_apps/#_client_registration",
        "low",
        "self-hosted",
        issuer_template="https://{host}/realms/{realm}",
        display_order=1,
    ),
    ProviderType(
        "okta",
        "Okta",
        "Okta authorization servers; dynamic registration needs an API token.",
        True,
        True,
        "api_token",
        True,
        "https://developer.okta.com/docs/reference/api/oauth-clients/",
        "low",
        "cloud",
        issuer_template="https://{domain}.okta.com/oauth2/default",
        display_order=2,
    ),
    ProviderType(
        "auth0",
        "Auth0",
        "Auth0 tenants with dynamic client registration enabled.",
        True,
        False,
        None,
        True,
        "https://auth0.com/docs/get-started/applications/dynamic-client-registration",
        "low",
        "cloud",
        issuer_template="https://{tenant}.auth0.com/",
        display_order=3,
    ),
    ProviderType(
        "azure-ad",
        "Microsoft Entra ID",
        "Microsoft Entra ID (Azure AD) tenants; register the application in the portal.",
        False,
        False,
        None,
        True,
        "https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc",
        "medium",
        "cloud",
        issuer_template="https://login.microsoftonline.com/{tenant}/v2.0",
        display_order=4,
    ),
    ProviderType(
        "google",
        "Google Workspace",
        "Google accounts; create OAuth credentials in the Google Cloud console.",
        False,
        False,
        None,
        True,
        "https://developers.google.com/identity/openid-connect/openid-connect",
        "medium",
        "cloud",
        default_issuer="https://accounts.google.com",
        display_order=5,
    ),
)
PROVIDER_TYPES_BY_ID = {t.id: t for t in PROVIDER_TYPES}


def check_provider_type(type_id: str, *, field: str = "identityProviderTypeId") -> str:
    found = PROVIDER_TYPES_BY_ID.get(type_id)
    if found is None or not found.enabled:
        raise InvalidValueError(
            f"Unknown identity provider type {type_id!r}; GET /auth/identity-provider-types lists them.",
            field=field,
        )
    return type_id


def check_url(url: str, *, field: str) -> str:
    cleaned = url.strip()
    parts = urlsplit(cleaned)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidValueError(
            f"{url!r} is not a fully-qualified http:// or https:// URL.", field=field
        )
    return cleaned.rstrip("/") if parts.path in ("", "/") else cleaned


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned or len(cleaned) > NAME_MAX:
        raise InvalidValueError(f"The name must be 1 to {NAME_MAX} characters.", field="name")
    return cleaned


def check_scopes(scopes: list[str] | None) -> list[str]:
    if not scopes:
        return list(DEFAULT_SCOPES)
    cleaned = [s.strip() for s in scopes if s.strip()]
    if "openid" not in cleaned:
        raise InvalidValueError(
            "The scopes must include 'openid'.", field="configWrite.oidc.scopes"
        )
    return list(dict.fromkeys(cleaned))


class IdentityProvider(SailplaneAggregate):
    type_id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str | None
    scopes: list[str]
    deleted: bool

    class Created(SailplaneAggregate.Created):
        type_id: str
        name: str
        issuer: str
        client_id: str
        client_secret: str | None
        scopes: list[str]
        registration: dict[str, Any] | None

        def apply(self, aggregate: IdentityProvider) -> None:
            super().apply(aggregate)
            aggregate.type_id = self.type_id
            aggregate.name = self.name
            aggregate.issuer = self.issuer
            aggregate.client_id = self.client_id
            aggregate.client_secret = self.client_secret
            aggregate.scopes = list(self.scopes)
            aggregate.deleted = False

    class Updated(SailplaneAggregate.Event):
        changes: dict[str, Any]

        def apply(self, aggregate: IdentityProvider) -> None:
            for name, value in self.changes.items():
                setattr(aggregate, name, list(value) if isinstance(value, list) else value)

    class SecretRotated(SailplaneAggregate.Event):
        client_secret: str

        def apply(self, aggregate: IdentityProvider) -> None:
            aggregate.client_secret = self.client_secret

    class Deleted(SailplaneAggregate.Event):
        def apply(self, aggregate: IdentityProvider) -> None:
            aggregate.deleted = True

    @classmethod
    def configure(
        cls,
        *,
        id: str,
        type_id: str,
        name: str,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: list[str] | None,
        by: Actor,
        at: datetime,
        registration: dict[str, Any] | None = None,
    ) -> IdentityProvider:
        if not client_id.strip():
            raise InvalidValueError(
                "The client id must not be empty.", field="configWrite.oidc.clientId"
            )
        return cls._create_as(
            id=id,
            by=by,
            at=at,
            type_id=check_provider_type(type_id),
            name=check_name(name),
            issuer=check_url(issuer, field="configWrite.oidc.issuer"),
            client_id=client_id.strip(),
            client_secret=client_secret or None,
            scopes=check_scopes(scopes),
            registration=registration,
        )

    def update(
        self,
        *,
        by: Actor,
        at: datetime,
        name: str | None = None,
        issuer: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scopes: list[str] | None = None,
    ) -> None:
        changes: dict[str, Any] = {}
        if name is not None and check_name(name) != self.name:
            changes["name"] = check_name(name)
        if issuer is not None and check_url(issuer, field="configWrite.oidc.issuer") != self.issuer:
            changes["issuer"] = check_url(issuer, field="configWrite.oidc.issuer")
        if client_id is not None:
            if not client_id.strip():
                raise InvalidValueError(
                    "The client id must not be empty.", field="configWrite.oidc.clientId"
                )
            if client_id.strip() != self.client_id:
                changes["client_id"] = client_id.strip()
        if client_secret is not None and client_secret != self.client_secret:
            changes["client_secret"] = client_secret
        if scopes is not None and check_scopes(scopes) != self.scopes:
            changes["scopes"] = check_scopes(scopes)
        if changes:
            self._trigger(self.Updated, by=by, at=at, changes=changes)

    def rotate_secret(self, client_secret: str, *, by: Actor, at: datetime) -> None:
        if not client_secret:
            raise InvalidValueError("The client secret must not be empty.", field="clientSecret")
        self._trigger(self.SecretRotated, by=by, at=at, client_secret=client_secret)

    def delete(self, *, by: Actor, at: datetime) -> None:
        self._trigger(self.Deleted, by=by, at=at)


class SsoAttempt(SailplaneAggregate):
    """One browser round trip through an identity provider (state, nonce, PKCE verifier)."""

    identity_provider_id: str
    code_verifier: str
    nonce: str
    redirect_uri: str
    expires_at: datetime
    status: str  # "started", "completed" or "failed"

    class Created(SailplaneAggregate.Created):
        identity_provider_id: str
        code_verifier: str
        nonce: str
        redirect_uri: str
        expires_at: datetime

        def apply(self, aggregate: SsoAttempt) -> None:
            super().apply(aggregate)
            aggregate.identity_provider_id = self.identity_provider_id
            aggregate.code_verifier = self.code_verifier
            aggregate.nonce = self.nonce
            aggregate.redirect_uri = self.redirect_uri
            aggregate.expires_at = self.expires_at
            aggregate.status = "started"

    class Completed(SailplaneAggregate.Event):
        login_id: str
        user_id: str

        def apply(self, aggregate: SsoAttempt) -> None:
            aggregate.status = "completed"

    class Failed(SailplaneAggregate.Event):
        reason: str

        def apply(self, aggregate: SsoAttempt) -> None:
            aggregate.status = "failed"

    @staticmethod
    def id_for(state: str) -> str:
        return derived_id("sso-state", state)

    @classmethod
    def begin(
        cls,
        *,
        state: str,
        identity_provider_id: str,
        code_verifier: str,
        nonce: str,
        redirect_uri: str,
        expires_at: datetime,
        by: Actor,
        at: datetime,
    ) -> SsoAttempt:
        return cls._create_as(
            id=cls.id_for(state),
            by=by,
            at=at,
            identity_provider_id=identity_provider_id,
            code_verifier=code_verifier,
            nonce=nonce,
            redirect_uri=redirect_uri,
            expires_at=expires_at,
        )

    def check_usable(self, at: datetime) -> None:
        if self.status != "started":
            raise ConflictError(
                "This sign-in attempt was already used; start a new one.", code="sso_state_used"
            )
        if self.expires_at <= at:
            raise NotAuthenticatedError(
                "This sign-in attempt has expired; start a new one.", code="sso_state_expired"
            )

    def complete(self, *, login_id: str, user_id: str, by: Actor, at: datetime) -> None:
        self.check_usable(at)
        self._trigger(self.Completed, by=by, at=at, login_id=login_id, user_id=user_id)

    def fail(self, reason: str, *, by: Actor, at: datetime) -> None:
        if self.status == "started":
            self._trigger(self.Failed, by=by, at=at, reason=reason)
