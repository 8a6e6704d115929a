"""Signed webhook calls: a CloudEvents JSON body, an HMAC-SHA256 signature, retries.

Every call POSTs `application/cloudevents+json` with these headers:

    Sailplane-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    Sailplane-Delivery: <delivery id>      (the same on every retry and replay)

A receiver verifies with `verify_signature` below (or its equivalent in any language):
recompute the HMAC over the timestamp, a dot and the raw body bytes, compare in constant
time, and reject a timestamp older than its tolerance (replay protection).

Retries: connection errors, timeouts, 408, 429 and 5xx are retried with exponential
backoff and jitter (`Backoff`); other 4xx answers are final. The notifier schedules the
retry (`next_attempt_at`) instead of sleeping; the random source is injected for tests.

Targets (`WebhookGuard`): only http(s) URLs, and by default only hosts whose every address
is globally routable (no server-side request forgery into the network Sailplane runs in):
loopback, private, link-local, shared (100.64.0.0/10, e.g. a cloud's metadata service at
100.100.100.200), IETF (192.0.0.0/24), multicast and reserved addresses are refused, and so
are IPv6 forms that carry one of them (IPv4-mapped, 6to4, NAT64). Checked when a channel is written and again before every
call, so a DNS change after the check at write time cannot bypass it.
`SAILPLANE_WEBHOOK_ALLOW_PRIVATE=true` turns the address check off.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

SIGNATURE_HEADER = "Sailplane-Signature"
DELIVERY_HEADER = "Sailplane-Delivery"
CONTENT_TYPE = "application/cloudevents+json"
RETRYABLE_STATUSES = frozenset({408, 429})


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300.0
) -> bool:
    """The receiver's check: a v1 signature over this body, made within `tolerance` seconds."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class Backoff:
    """Attempt n (1-based) failed: wait base * 2**(n-1), capped, with jitter in [50%, 100%]."""

    max_attempts: int = 5
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, rng: Callable[[], float]) -> float:
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return ceiling / 2 + rng() * ceiling / 2


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str | None = None
    retryable: bool = True


class WebhookSender:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.clock = clock
        self.timeout = timeout
        self.transport = transport

    def post(self, url: str, secret: str, body: bytes, delivery_id: str) -> Outcome:
        """One attempt."""
        headers = {
            "Content-Type": CONTENT_TYPE,
            SIGNATURE_HEADER: signature(secret, int(self.clock()), body),
            DELIVERY_HEADER: delivery_id,
            "User-Agent": "Sailplane-Notifier/1",
        }
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= response.status_code < 300:
            return Outcome(True)
        retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUSES
        return Outcome(False, f"the receiver answered {response.status_code}", retryable)


Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos: list[Any] = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# Ranges that Python's `is_global` (3.11) still calls global but that are no place on the
# public internet: multicast, the IETF protocol assignments (192.0.0.0/24), the NAT64
# local-use prefix and the deprecated IPv4-compatible IPv6 form.
NOT_ROUTABLE = tuple(
    ipaddress.ip_network(n)
    for n in ("100.64.0.0/10", "192.0.0.0/24", "224.0.0.0/4", "ff00::/8", "64:ff9b:1::/48", "::/96")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (IPv4-mapped, 6to4, NAT64), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _routable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not any(ip in network for network in NOT_ROUTABLE)


def _internal(address: str) -> bool:
    """Whether `address`, or the IPv4 address it carries, is not globally routable."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded = _embedded(ip)
    return not _routable(ip) or (embedded is not None and not _routable(embedded))


@dataclass(frozen=True)
class WebhookGuard:
    """Which webhook URLs Sailplane may call (see the module docstring); the
    `sailplane.commands.ports.WebhookTargets` of the notification use cases."""

    allow_private: bool = False
    resolve: Resolver = resolve_host

    def refusal(self, url: str, *, unresolvable_ok: bool = False) -> str | None:
        """Why `url` may not be called, or None. A host that does not resolve is refused
        unless `unresolvable_ok` (when a channel is written: it is checked again at send)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "A webhook URL must be http(s) with a host."
        if self.allow_private:
            return None
        try:
            addresses = self.resolve(parts.hostname)
        except (OSError, UnicodeError):
            return (
                None if unresolvable_ok else f"the webhook host {parts.hostname} does not resolve"
            )
        internal = sorted({a for a in addresses if _internal(a)})
        if internal:
            return (
                f"The webhook host {parts.hostname} resolves to an address that is not globally "
                f"routable ({', '.join(internal)}); this server refuses those "
                "(SAILPLANE_WEBHOOK_ALLOW_PRIVATE=true allows them)."
            )
        return None
