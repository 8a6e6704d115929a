"""OpenID Connect over HTTP: discovery, JWKS, Dynamic Client Registration (RFC 7591), the
authorization-code exchange with PKCE, and ID-token verification (PyJWT).

Every failure is an `OidcError` with a sentence a person can act on; callers turn it into a
failed test result, a 422 or a refused sign-in, never a 500.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import jwt

from sailplane.commands.ports import ExpectedIdToken, OidcError

DISCOVERY_PATH = "/.well-known/openid-configuration"
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OidcClient:
    """A small OpenID Connect relying party (`sailplane.commands.ports.IdentityProviderClient`);
    one httpx client per call keeps it thread-safe."""

    def __init__(self, *, timeout: float = 5.0) -> None:
        self.timeout = timeout

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
                return client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise OidcError(f"Could not reach {url}: {exc.__class__.__name__}: {exc}") from None

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except (json.JSONDecodeError, ValueError):
            raise OidcError(f"The {what} at {response.request.url} is not JSON.") from None
        if not isinstance(body, dict):
            raise OidcError(f"The {what} at {response.request.url} is not a JSON object.")
        return body

    def discover(self, issuer: str) -> dict[str, Any]:
        """The issuer's OpenID configuration, checked to name the same issuer."""
        url = issuer.rstrip("/") + DISCOVERY_PATH
        response = self._request("GET", url)
        if response.status_code != 200:
            raise OidcError(
                f"{url} answered HTTP {response.status_code}; is {issuer} an OpenID Connect issuer?"
            )
        configuration = self._json(response, "OpenID configuration")
        found = str(configuration.get("issuer", ""))
        if found.rstrip("/") != issuer.rstrip("/"):
            raise OidcError(
                f"The configuration at {url} names the issuer {found!r}, not {issuer!r}."
            )
        for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not configuration.get(needed):
                raise OidcError(f"The OpenID configuration at {url} has no {needed}.")
        return configuration

    def jwks(self, jwks_uri: str) -> dict[str, Any]:
        response = self._request("GET", jwks_uri)
        if response.status_code != 200:
            raise OidcError(f"The JWKS at {jwks_uri} answered HTTP {response.status_code}.")
        keys = self._json(response, "JWKS")
        if not isinstance(keys.get("keys"), list) or not keys["keys"]:
            raise OidcError(f"The JWKS at {jwks_uri} holds no keys.")
        try:
            jwt.PyJWKSet.from_dict(keys)
        except jwt.PyJWTError as exc:
            raise OidcError(f"The JWKS at {jwks_uri} has no usable key: {exc}") from None
        return keys

    def register_client(
        self,
        registration_endpoint: str,
        metadata: dict[str, Any],
        *,
        initial_access_token: str | None,
    ) -> dict[str, Any]:
        """Dynamic Client Registration (RFC 7591): the provider's answer with client_id."""
        headers = {"Accept": "application/json"}
        if initial_access_token:
            headers["Authorization"] = f"Bearer {initial_access_token}"
        response = self._request("POST", registration_endpoint, json=metadata, headers=headers)
        if response.status_code not in (200, 201):
            detail = ""
            try:
                body = response.json()
                detail = f": {body.get('error', '')} {body.get('error_description', '')}".rstrip()
            except ValueError:
                pass
            raise OidcError(
                f"The provider refused the client registration (HTTP {response.status_code}){detail}."
            )
        registered = self._json(response, "registration response")
        if not registered.get("client_id"):
            raise OidcError("The registration response has no client_id.")
        return registered

    def exchange_code(
        self,
        token_endpoint: str,
        *,
        code: str,
        redirect_uri: str,
        client_id: str,
        client_secret: str | None,
        code_verifier: str,
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "client_id": client_id,
        }
        auth = (client_id, client_secret) if client_secret else None
        response = self._request("POST", token_endpoint, data=form, auth=auth)
        if response.status_code != 200:
            raise OidcError(
                f"The provider refused the authorization code (HTTP {response.status_code})."
            )
        tokens = self._json(response, "token response")
        if not tokens.get("id_token"):
            raise OidcError("The token response has no id_token.")
        return tokens

    def verify_id_token(self, id_token: str, expected: ExpectedIdToken) -> dict[str, Any]:
        """The ID token's claims, after its signature, issuer, audience, times and nonce check out."""
        jwks, issuer, client_id = expected.jwks, expected.issuer, expected.client_id
        nonce, now = expected.nonce, expected.now
        try:
            header = jwt.get_unverified_header(id_token)
            key_set = jwt.PyJWKSet.from_dict(jwks)
            key = next((k for k in key_set.keys if header.get("kid") in (None, k.key_id)), None)
            if key is None:
                raise OidcError("The ID token is signed with a key the provider does not publish.")
            claims = jwt.decode(
                id_token,
                key=key.key,
                algorithms=ALGORITHMS,
                audience=client_id,
                issuer=issuer,
                options={"require": ["iss", "sub", "aud", "exp", "iat"], "verify_iat": False},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"The ID token is not valid: {exc}.") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise OidcError("The ID token's nonce does not match this sign-in.")
        if claims.get("exp", 0) < now.timestamp() - 60:
            raise OidcError("The ID token has expired.")
        return claims
