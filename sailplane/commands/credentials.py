"""Secrets: bearer tokens (stored as SHA-256 digests), passwords (argon2), TOTP and codes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from sailplane.domain.errors import InvalidValueError

TOKEN_PREFIX = "sp_"
PASSWORD_MIN = 8
PASSWORD_MAX = 256
RECOVERY_CODES = 10
TOTP_ISSUER = "Sailplane"

# argon2id with the OWASP baseline (19 MiB, 2 passes): about 20 ms per hash here.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the email is unknown, so both failures take as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def new_token(prefix: str = TOKEN_PREFIX) -> str:
    return prefix + secrets.token_urlsafe(30)


def new_api_token() -> str:
    return new_token(TOKEN_PREFIX)


def hash_token(token: str) -> str:
    """Bearer tokens are high-entropy secrets: a SHA-256 digest is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(token: str, digest: str | None) -> bool:
    return digest is not None and hmac.compare_digest(hash_token(token), digest)


def check_password(password: str, *, field: str) -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidValueError(
            f"A password has {PASSWORD_MIN} to {PASSWORD_MAX} characters.", field=field
        )
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def temporary_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=TOTP_ISSUER)


def totp_step(secret: str, code: str, at_timestamp: float) -> int | None:
    """The time step a valid code belongs to (one step of clock drift either way), else None."""
    code = code.strip().replace(" ", "")
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(at_timestamp // totp.interval)
    for step in (now_step, now_step - 1, now_step + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return [
        "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(2))
        for _ in range(RECOVERY_CODES)
    ]


def hash_recovery_code(code: str) -> str:
    return hash_token(code.strip().lower())
