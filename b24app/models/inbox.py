"""The durable event inbox: every verified event is stored before Bitrix24 gets its 200."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from b24app.models.base import Base, in_values, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class InboxStatus(enum.StrEnum):
    """Where an inbox row is in its life."""

    PENDING = "pending"  # waiting for a worker (again, after a failure, at next_attempt_at)
    PROCESSING = "processing"  # claimed by a worker until locked_until
    DONE = "done"
    DEAD = "dead"  # failed max_attempts times; shown to the admin, retried only by hand
    IGNORED = "ignored"  # no handler, or the service's own change


class InboxSource(enum.StrEnum):
    """How the event reached us."""

    ONLINE = "online"  # POSTed by Bitrix24 to /b24/events
    OFFLINE = "offline"  # read from event.offline.get
    CURSOR = "cursor"  # found by the DATE_MODIFY/CHANGED_DATE cursor sync


class InboxEvent(Base):
    """One event to process; unique per (portal, event, entity, ts) so duplicates collapse."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("portal_id", "dedup_key", name="uq_inbox_events_portal_dedup"),
        CheckConstraint(in_values("status", InboxStatus), name="status"),
        CheckConstraint(in_values("source", InboxSource), name="source"),
        Index("ix_inbox_events_claim", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str] = mapped_column(String(64), default="")
    ts: Mapped[int] = mapped_column(BigInteger)
    dedup_key: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16), default=InboxSource.ONLINE.value)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    by_user: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
