"""The ``portals`` table: one installation per Bitrix24 portal, tokens encrypted."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy import CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from b24app.models.base import Base, in_values, utcnow


class PortalMode(enum.StrEnum):
    """How the service talks to a portal."""

    LOCAL_APP = "local_app"
    WEBHOOK = "webhook"


class PortalStatus(enum.StrEnum):
    """The lifecycle state of an installation."""

    ACTIVE = "active"
    NEEDS_REINSTALL = "needs_reinstall"
    UNINSTALLED = "uninstalled"


class Cipher(Protocol):
    """What the models need of ``b24app.crypto.SecretBox``."""

    def encrypt(self, plaintext: str) -> str:
        """Encrypt text."""

    def decrypt(self, token: str) -> str:
        """Decrypt text."""


SecretName = Literal["application_token", "access_token", "refresh_token"]


class Portal(Base):
    """One Bitrix24 portal (``member_id``) the app is installed in, with encrypted tokens."""

    __tablename__ = "portals"
    __table_args__ = (
        CheckConstraint(in_values("mode", PortalMode), name="mode"),
        CheckConstraint(in_values("status", PortalStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    member_id: Mapped[str] = mapped_column(String(64), unique=True)
    domain: Mapped[str] = mapped_column(String(255))
    client_endpoint: Mapped[str] = mapped_column(String(512), default="")
    mode: Mapped[str] = mapped_column(String(16), default=PortalMode.LOCAL_APP.value)
    status: Mapped[str] = mapped_column(String(16), default=PortalStatus.ACTIVE.value)
    application_token_enc: Mapped[str | None] = mapped_column(Text)
    access_token_enc: Mapped[str | None] = mapped_column(Text)
    refresh_token_enc: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    # Bumped by every token save; a save succeeds only if the version is still the one read.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    scope: Mapped[str] = mapped_column(String(1024), default="")
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    app_version: Mapped[str] = mapped_column(String(32), default="")

    def set_secret(self, cipher: Cipher, name: SecretName, value: str | None) -> None:
        """Store ``value`` encrypted in the ``<name>_enc`` column."""
        setattr(self, f"{name}_enc", None if value is None else cipher.encrypt(value))

    def get_secret(self, cipher: Cipher, name: SecretName) -> str | None:
        """The decrypted value of the ``<name>_enc`` column."""
        token: str | None = getattr(self, f"{name}_enc")
        return None if token is None else cipher.decrypt(token)

    def __repr__(self) -> str:
        return (
            f"Portal(id={self.id!r}, member_id={self.member_id!r}, domain={self.domain!r}, "
            f"mode={self.mode!r}, status={self.status!r}, token_version={self.token_version!r})"
        )
