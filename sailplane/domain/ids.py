"""Identifiers: 10 characters of uppercase Crockford base32.

Random ids name new resources; derived ids name anything that may be requested twice
(a unique key, a schedule slot, a Kafka-delivered create), so the duplicate collides on
the event store's version check instead of creating a second aggregate.
"""

from __future__ import annotations

import hashlib
import re
import secrets

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 10
ID_PATTERN = re.compile(r"^[A-Z0-9]{1,20}$")


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(CROCKFORD[digit])
    return "".join(reversed(chars))


def new_id() -> str:
    """A fresh random id (50 bits of entropy)."""
    return _encode(secrets.randbits(5 * ID_LENGTH), ID_LENGTH)


def derived_id(*parts: str) -> str:
    """A deterministic id for the given parts (the same parts always give the same id)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return _encode(int.from_bytes(digest[:8], "big") >> (64 - 5 * ID_LENGTH), ID_LENGTH)


def index_id(kind: str, organization_id: str, key: str) -> str:
    """The id of a uniqueness index entry: readable, deterministic, never an API id."""
    digest = hashlib.sha256(f"{organization_id}\x1f{key}".encode()).hexdigest()[:32]
    return f"idx:{kind}:{digest}"


def is_valid_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))
