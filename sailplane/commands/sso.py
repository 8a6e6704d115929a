"""Identity-provider use cases: configure, rotate, test and auto-register OIDC providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sailplane.commands.base import Clock, SailplaneApplication, utc_now
from sailplane.commands.ports import IdentityProviderClient, OidcError
from sailplane.commands.workloads import SecretBox
from sailplane.domain.base import Actor
from sailplane.domain.errors import InvalidValueError
from sailplane.domain.ids import new_id
from sailplane.domain.sso import (
    PROVIDER_TYPES_BY_ID,
    IdentityProvider,
    check_name,
    check_provider_type,
    check_url,
)
from sailplane.storage import EventLog


@dataclass(frozen=True)
class ConnectionTest:
    success: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class IdentityProviders(SailplaneApplication):
    """Client secrets enter the log sealed by `secret_box`; `oidc` tests and registers."""

    def __init__(
        self,
        log: EventLog,
        *,
        clock: Clock = utc_now,
        secret_box: SecretBox,
        oidc: IdentityProviderClient,
    ) -> None:
        self.secret_box = secret_box
        self.oidc = oidc
        super().__init__(log, clock=clock)

    def _provider(self, provider_id: str, by: Actor) -> IdentityProvider:
        return self._load(
            IdentityProvider,
            provider_id,
            organization_id=by.organization_id,
            kind="identity_provider",
        )

    def create(
        self,
        *,
        type_id: str,
        name: str,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        scopes: list[str] | None,
        by: Actor,
    ) -> tuple[str, int]:
        provider = IdentityProvider.configure(
            id=new_id(),
            type_id=type_id,
            name=name,
            issuer=issuer,
            client_id=client_id,
            client_secret=self._seal(client_secret),
            scopes=scopes,
            by=by,
            at=self.clock(),
        )
        return provider.id, self._commit(provider)

    def _seal(self, secret: str | None) -> str | None:
        return self.secret_box.seal(secret) if secret else None

    def update(self, provider_id: str, *, by: Actor, **fields: Any) -> int:
        provider = self._provider(provider_id, by)
        if fields.get("client_secret"):
            fields["client_secret"] = self.secret_box.seal(fields["client_secret"])
        provider.update(by=by, at=self.clock(), **fields)
        return self._commit(provider)

    def rotate_secret(self, provider_id: str, client_secret: str, *, by: Actor) -> int:
        provider = self._provider(provider_id, by)
        provider.rotate_secret(self.secret_box.seal(client_secret), by=by, at=self.clock())
        return self._commit(provider)

    def delete(self, provider_id: str, *, by: Actor) -> int:
        provider = self._provider(provider_id, by)
        provider.delete(by=by, at=self.clock())
        return self._commit(provider)

    def test_connection(self, provider_id: str, *, by: Actor) -> ConnectionTest:
        """Fetch the issuer's OpenID configuration and JWKS; report what was found."""
        provider = self._provider(provider_id, by)
        details: dict[str, Any] = {"issuer": provider.issuer}
        try:
            configuration = self.oidc.discover(provider.issuer)
            details = discovery_details(configuration)
            keys = self.oidc.jwks(str(configuration["jwks_uri"]))
        except OidcError as exc:
            return ConnectionTest(False, exc.message, details)
        return ConnectionTest(
            True,
            f"Discovered {provider.issuer}; its JWKS publishes {len(keys['keys'])} key(s).",
            details,
        )

    def auto_setup(
        self,
        *,
        name: str,
        provider_url: str,
        provider_type: str,
        initial_access_token: str | None,
        redirect_uri: str,
        by: Actor,
    ) -> tuple[str, int]:
        """Discover the provider and register Sailplane with it (RFC 7591), then configure it."""
        check_name(name)
        issuer = check_url(provider_url, field="providerUrl")
        type_id = check_provider_type(provider_type, field="providerType")
        try:
            configuration = self.oidc.discover(issuer)
        except OidcError as exc:
            raise InvalidValueError(
                f"OpenID Connect discovery failed: {exc.message}",
                field="providerUrl",
                code="discovery_failed",
            ) from None
        endpoint = configuration.get("registration_endpoint")
        if not endpoint:
            kind = PROVIDER_TYPES_BY_ID[type_id]
            raise InvalidValueError(
                f"{issuer} does not support Dynamic Client Registration (its configuration has no "
                f"registration_endpoint); create the client in the {kind.name} console and use "
                "POST /auth/idps instead.",
                field="providerUrl",
                code="dcr_not_supported",
            )
        metadata = {
            "client_name": f"Sailplane ({name.strip()})",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "application_type": "web",
            "scope": "openid email profile",
        }
        try:
            registered = self.oidc.register_client(
                str(endpoint), metadata, initial_access_token=initial_access_token
            )
        except OidcError as exc:
            raise InvalidValueError(
                f"Dynamic Client Registration failed: {exc.message}",
                field="initialAccessToken",
                code="dcr_failed",
            ) from None
        provider = IdentityProvider.configure(
            id=new_id(),
            type_id=type_id,
            name=name,
            issuer=str(configuration["issuer"]),
            client_id=str(registered["client_id"]),
            client_secret=self._seal(registered.get("client_secret")),
            scopes=None,
            registration={
                k: registered[k]
                for k in ("registration_client_uri", "client_id_issued_at")
                if k in registered
            },
            by=by,
            at=self.clock(),
        )
        return provider.id, self._commit(provider)


def discovery_details(configuration: dict[str, Any]) -> dict[str, Any]:
    return {
        "issuer": configuration.get("issuer"),
        "endpoints": {
            "authorization": configuration.get("authorization_endpoint"),
            "token": configuration.get("token_endpoint"),
            "userinfo": configuration.get("userinfo_endpoint"),
            "jwks": configuration.get("jwks_uri"),
            "endSession": configuration.get("end_session_endpoint"),
        },
        "backchannelLogoutSupported": bool(configuration.get("backchannel_logout_supported")),
        "backchannelLogoutSessionSupported": bool(
            configuration.get("backchannel_logout_session_supported")
        ),
        "frontchannelLogoutSupported": bool(configuration.get("frontchannel_logout_supported")),
        "scopesSupported": list(configuration.get("scopes_supported") or []),
        "claimsSupported": list(configuration.get("claims_supported") or []),
    }
