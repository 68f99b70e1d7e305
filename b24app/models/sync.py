"""Bookkeeping of loss recovery: sync cursors, reserved offline batches, our own writes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from b24app.models.base import Base, utcnow


class SyncCursor(Base):
    """How far the incremental sync of one entity got (last modification time and ID seen)."""

    __tablename__ = "sync_cursors"

    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"),
                                           primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    modified_since: Mapped[datetime | None]
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    full_done: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OfflineBatch(Base):
    """A batch reserved with ``event.offline.get(clear=0)``: kept until it is cleared.

    The ``process_id`` is saved before the events are handled, so a worker that dies in
    between re-reads the same batch instead of leaving it hidden for 30 days.
    """

    __tablename__ = "offline_batches"

    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"),
                                           primary_key=True)
    process_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reserved_at: Mapped[datetime] = mapped_column(default=utcnow)
    events: Mapped[int] = mapped_column(Integer, default=0)


class OwnWrite(Base):
    """A change the service itself made, so the event it fires back is not acted upon."""

    __tablename__ = "own_writes"
    __table_args__ = (Index("ix_own_writes_lookup", "portal_id", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
