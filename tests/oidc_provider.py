"""A real OpenID Connect issuer for tests: an HTTP server on a free port.

It serves discovery, a JWKS with an RSA key generated at start, an authorization endpoint
that signs in a chosen person at once (no login page), a token endpoint that checks the
client's credentials, the redirect URI and the PKCE verifier and answers a signed ID token,
and Dynamic Client Registration (RFC 7591) guarded by an initial access token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.services import free_port


@dataclass
class Person:
    sub: str
    email: str
    email_verified: bool = True
    name: str = "Test Person"
    given_name: str = "Test"
    family_name: str = "Person"


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str
    code_challenge: str
    person: Person


@dataclass
class OidcProvider:
    """The issuer's state; tests change `person`, `clients` or `dcr_enabled` as they need."""

    issuer: str = ""
    kid: str = field(default_factory=lambda: secrets.token_hex(4))
    key: Any = None
    clients: dict[str, Client] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    person: Person = field(default_factory=lambda: Person("subject-1", "person@example.com"))
    dcr_enabled: bool = True
    initial_access_token: str | None = "iat-secret"
    audience_override: str | None = None
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def add_client(self, redirect_uri: str | None = None) -> Client:
        client = Client(
            client_id="client-" + secrets.token_hex(4),
            client_secret=secrets.token_urlsafe(16),
            redirect_uris=[redirect_uri] if redirect_uri else [],
        )
        self.clients[client.client_id] = client
        return client

    def configuration(self) -> dict[str, Any]:
        configuration = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "end_session_endpoint": f"{self.issuer}/logout",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "claims_supported": ["sub", "email", "email_verified", "name"],
            "code_challenge_methods_supported": ["S256"],
            "backchannel_logout_supported": True,
            "frontchannel_logout_supported": False,
        }
        if self.dcr_enabled:
            configuration["registration_endpoint"] = f"{self.issuer}/register"
        return configuration

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": grant.person.sub,
            "aud": self.audience_override or grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": grant.person.email,
            "email_verified": grant.person.email_verified,
            "name": grant.person.name,
            "given_name": grant.person.given_name,
            "family_name": grant.person.family_name,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Quiet."""

        def _send(
            self, status: int, body: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/.well-known/openid-configuration":
                self._send(200, provider.configuration())
            elif url.path == "/jwks":
                self._send(200, provider.jwks())
            elif url.path == "/authorize":
                self._authorize(query)
            else:
                self._send(404, {"error": "not_found"})

        def _authorize(self, query: dict[str, str]) -> None:
            client = provider.clients.get(query.get("client_id", ""))
            redirect_uri = query.get("redirect_uri", "")
            if client is None or redirect_uri not in client.redirect_uris:
                self._send(400, {"error": "invalid_request"})
                return
            if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                self._send(400, {"error": "invalid_request", "error_description": "PKCE required"})
                return
            code = secrets.token_urlsafe(16)
            provider.grants[code] = Grant(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                nonce=query.get("nonce", ""),
                code_challenge=query["code_challenge"],
                person=provider.person,
            )
            back = f"{redirect_uri}?{urlencode({'code': code, 'state': query.get('state', '')})}"
            self._send(302, headers={"Location": back})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/token":
                self._token()
            elif url.path == "/register":
                self._register()
            else:
                self._send(404, {"error": "not_found"})

        def _token(self) -> None:
            form = {k: v[0] for k, v in parse_qs(self._body().decode()).items()}
            provider.token_requests.append(form)
            auth = self.headers.get("Authorization", "")
            client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
            if auth.startswith("Basic "):
                client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
            client = provider.clients.get(client_id)
            if client is None or not secrets.compare_digest(client.client_secret, client_secret):
                self._send(401, {"error": "invalid_client"})
                return
            grant = provider.grants.pop(form.get("code", ""), None)
            if (
                grant is None
                or grant.client_id != client_id
                or grant.redirect_uri != form.get("redirect_uri")
            ):
                self._send(400, {"error": "invalid_grant"})
                return
            verifier = form.get("code_verifier", "")
            challenge = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                .decode()
                .rstrip("=")
            )
            if challenge != grant.code_challenge:
                self._send(400, {"error": "invalid_grant", "error_description": "PKCE mismatch"})
                return
            self._send(
                200,
                {
                    "access_token": secrets.token_urlsafe(16),
                    "token_type": "Bearer",
                    "expires_in": 300,
                    "id_token": provider.id_token(grant),
                },
            )

        def _register(self) -> None:
            if not provider.dcr_enabled:
                self._send(404, {"error": "not_found"})
                return
            expected = provider.initial_access_token
            if expected and self.headers.get("Authorization") != f"Bearer {expected}":
                self._send(
                    401,
                    {
                        "error": "invalid_token",
                        "error_description": "initial access token required",
                    },
                )
                return
            metadata = json.loads(self._body() or b"{}")
            uris = metadata.get("redirect_uris") or []
            if not uris:
                self._send(400, {"error": "invalid_redirect_uri"})
                return
            client = provider.add_client()
            client.redirect_uris = list(uris)
            self._send(
                201,
                {
                    **metadata,
                    "client_id": client.client_id,
                    "client_secret": client.client_secret,
                    "client_id_issued_at": int(time.time()),
                    "registration_client_uri": f"{provider.issuer}/register/{client.client_id}",
                },
            )

    return Handler


@contextlib.contextmanager
def oidc_provider() -> Iterator[OidcProvider]:
    """An issuer at http://127.0.0.1:<free port>, with an RSA key generated for this run."""
    port = free_port()
    provider = OidcProvider(
        issuer=f"http://127.0.0.1:{port}",
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(provider))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
