"""ORM models: the declarative base, aware UTC timestamps and the ``portals`` table."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol

from sqlalchemy import CheckConstraint, DateTime, Integer, MetaData, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names: Alembic needs them to alter constraints, and SQLite batch
# mode can only recreate a table whose constraints have names.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the default of timestamp columns)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend; naive datetimes are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC; SQLite keeps no zone, so it gets naive UTC text that sorts."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: store aware UTC datetimes (b24app.models.utcnow)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Always hand back an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every table; ``Mapped[datetime]`` means ``UTCDateTime``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime}


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


def _in(column: str, enum_type: type[enum.StrEnum]) -> str:
    values = ", ".join(f"'{member.value}'" for member in enum_type)
    return f"{column} IN ({values})"


class Portal(Base):
    """One Bitrix24 portal (``member_id``) the app is installed in, with encrypted tokens."""

    __tablename__ = "portals"
    __table_args__ = (
        CheckConstraint(_in("mode", PortalMode), name="mode"),
        CheckConstraint(_in("status", PortalStatus), name="status"),
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
