"""Secrets at rest: Fernet encryption of tokens and client secrets stored in the database."""

from __future__ import annotations

import binascii
import re
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from b24app.config import Secret, Settings

KEY_HINT = (
    "set [app] encryption_key in the config file or B24APP_APP_ENCRYPTION_KEY; "
    "generate one with: python -m b24app.crypto"
)


class CryptoError(Exception):
    """Base of the encryption errors; messages never contain key or plaintext."""


class EncryptionKeyError(CryptoError):
    """The encryption key is missing or is not a Fernet key."""


class DecryptionError(CryptoError):
    """A stored value cannot be decrypted: a different key, or the value was altered."""


def generate_key() -> str:
    """A fresh random Fernet key as text, for ``[app] encryption_key``."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts short strings; the first key encrypts, every key decrypts."""

    def __init__(self, key: str | Secret) -> None:
        text = key if isinstance(key, str) else key.reveal()
        # Several keys (comma or space separated) allow rotation: new key first, old ones after.
        keys = [part for part in re.split(r"[\s,]+", text) if part]
        if not keys:
            raise EncryptionKeyError(f"no encryption key: {KEY_HINT}")
        try:
            fernets = [Fernet(part) for part in keys]
        except (ValueError, binascii.Error):
            raise EncryptionKeyError(
                f"the encryption key is not a Fernet key (32 url-safe base64 bytes): {KEY_HINT}"
            ) from None
        self._fernet = MultiFernet(fernets)
        self._count = len(fernets)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """The box for ``settings.app.encryption_key``."""
        return cls(settings.app.encryption_key)

    def encrypt(self, plaintext: str) -> str:
        """The Fernet token (ASCII text) of ``plaintext``."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of a token made by ``encrypt`` with any of the keys."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionError(
                "cannot decrypt a stored secret: the encryption key differs from the one "
                "that encrypted it, or the value was altered"
            ) from None

    def encrypt_optional(self, plaintext: str | None) -> str | None:
        """``encrypt`` that passes ``None`` through (a column with no value)."""
        return None if plaintext is None else self.encrypt(plaintext)

    def decrypt_optional(self, token: str | None) -> str | None:
        """``decrypt`` that passes ``None`` through (a column with no value)."""
        return None if token is None else self.decrypt(token)

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise DecryptionError("cannot rotate a stored secret: no key decrypts it") from None

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._count})"


if __name__ == "__main__":
    print(generate_key())
