"""Sealing secret settings (a catalog's secretAccessKey, ...) before they reach an event.

The event log is published to Kafka and paged through by `/api/v1/events`, so a secret
enters it only as a Fernet token (AES-128-CBC with HMAC-SHA256). The key comes from
`SAILPLANE_SECRETS_KEY`, or, for the single-process mode, from `secrets.key` in the data
directory (created on first start, readable by its owner only). Several keys separated
by commas rotate: the first seals, every one opens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from sailplane.domain.errors import ConflictError

PREFIX = "fernet:"


class FernetSecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("a secret box needs at least one key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._keys = list(keys)

    @classmethod
    def from_setting(cls, value: str) -> FernetSecretBox:
        return cls([k.strip().encode() for k in value.split(",") if k.strip()])

    @classmethod
    def from_key_file(cls, path: Path) -> FernetSecretBox:
        """The key in `path`, created (mode 0600) when the file does not exist yet."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        return cls.from_setting(path.read_text())

    @classmethod
    def generate(cls) -> FernetSecretBox:
        """A box with a fresh key that lives as long as this process (tests, throwaway runs)."""
        return cls([Fernet.generate_key()])

    def derived_keys(self, purpose: str) -> list[bytes]:
        """One key per secrets key, derived for `purpose` (HMAC-SHA256 of the purpose under
        the key): the first is the current one. Used to sign what must not be stored."""
        return [
            hmac.new(base64.urlsafe_b64decode(k), purpose.encode(), hashlib.sha256).digest()
            for k in self._keys
        ]

    def seal(self, plaintext: str) -> str:
        return PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            if not sealed.startswith(PREFIX):
                raise InvalidToken
            return self._fernet.decrypt(sealed[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ConflictError(
                "A secret setting was sealed with a key this server does not have; set the "
                "same SAILPLANE_SECRETS_KEY on every Sailplane process, or write the secret again.",
                code="secret_unreadable",
            ) from None
