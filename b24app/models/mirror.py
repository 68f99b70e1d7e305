"""The local mirror of the portal: typed columns for queries, the raw record for the rest."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from b24app.models.base import Base, utcnow


class MirrorRow:
    """Columns every mirrored record has: its portal, Bitrix24 ID, deletion and sync marks."""

    @declared_attr
    def portal_id(cls) -> Mapped[int]:
        """The portal the record belongs to."""
        return mapped_column(ForeignKey("portals.id", ondelete="CASCADE"), primary_key=True)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    deleted_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MirrorUser(MirrorRow, Base):
    """An employee."""

    __tablename__ = "mirror_users"

    name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    departments: Mapped[list[int]] = mapped_column(JSON, default=list)
    email: Mapped[str] = mapped_column(String(255), default="")
    position: Mapped[str] = mapped_column(String(255), default="")


class MirrorDepartment(MirrorRow, Base):
    """A department and its head."""

    __tablename__ = "mirror_departments"

    name: Mapped[str] = mapped_column(String(255), default="")
    parent_id: Mapped[int | None] = mapped_column(Integer)
    head_id: Mapped[int | None] = mapped_column(Integer)


class MirrorGroup(MirrorRow, Base):
    """A workgroup."""

    __tablename__ = "mirror_groups"

    name: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class MirrorCompany(MirrorRow, Base):
    """A client company; card fields stay in ``raw``."""

    __tablename__ = "mirror_companies"
    __table_args__ = (Index("ix_mirror_companies_assigned", "portal_id", "assigned_by_id"),)

    title: Mapped[str] = mapped_column(String(512), default="")
    assigned_by_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]
    modified_at: Mapped[datetime | None]
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MirrorContact(MirrorRow, Base):
    """A contact person."""

    __tablename__ = "mirror_contacts"

    name: Mapped[str] = mapped_column(String(255), default="")
    last_name: Mapped[str] = mapped_column(String(255), default="")
    company_id: Mapped[int | None] = mapped_column(Integer)
    assigned_by_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]
    modified_at: Mapped[datetime | None]
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MirrorDeal(MirrorRow, Base):
    """A deal; a won one (semantic ``S``) is a purchase."""

    __tablename__ = "mirror_deals"
    __table_args__ = (
        Index("ix_mirror_deals_purchases", "portal_id", "semantic", "close_date"),
        Index("ix_mirror_deals_assigned", "portal_id", "assigned_by_id"),
        Index("ix_mirror_deals_company", "portal_id", "company_id"),
    )

    title: Mapped[str] = mapped_column(String(512), default="")
    stage_id: Mapped[str] = mapped_column(String(64), default="")
    semantic: Mapped[str] = mapped_column(String(1), default="P")
    category_id: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(8), default="RUB")
    company_id: Mapped[int | None] = mapped_column(Integer)
    contact_id: Mapped[int | None] = mapped_column(Integer)
    assigned_by_id: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]
    modified_at: Mapped[datetime | None]
    moved_at: Mapped[datetime | None]
    begin_date: Mapped[date | None] = mapped_column(Date)
    close_date: Mapped[date | None] = mapped_column(Date)
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_activity_at: Mapped[datetime | None]
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MirrorActivity(MirrorRow, Base):
    """A CRM activity (meeting, call, e-mail, to-do)."""

    __tablename__ = "mirror_activities"
    __table_args__ = (
        Index("ix_mirror_activities_responsible", "portal_id", "responsible_id", "type_id"),
        Index("ix_mirror_activities_owner", "portal_id", "owner_type_id", "owner_id"),
    )

    type_id: Mapped[int] = mapped_column(Integer, default=0)
    provider_id: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    direction: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_type_id: Mapped[int] = mapped_column(Integer, default=0)
    owner_id: Mapped[int] = mapped_column(Integer, default=0)
    responsible_id: Mapped[int] = mapped_column(Integer, default=0)
    author_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]
    start_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    bindings: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MirrorTask(MirrorRow, Base):
    """A task."""

    __tablename__ = "mirror_tasks"
    __table_args__ = (
        Index("ix_mirror_tasks_responsible", "portal_id", "responsible_id"),
        Index("ix_mirror_tasks_creator", "portal_id", "created_by"),
    )

    title: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int] = mapped_column(Integer, default=2)
    created_by: Mapped[int] = mapped_column(Integer, default=0)
    responsible_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]
    changed_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    status_changed_at: Mapped[datetime | None]
    group_id: Mapped[int] = mapped_column(Integer, default=0)
    chat_id: Mapped[int | None] = mapped_column(Integer)
    accomplices: Mapped[list[int]] = mapped_column(JSON, default=list)
    auditors: Mapped[list[int]] = mapped_column(JSON, default=list)
    crm: Mapped[list[str]] = mapped_column(JSON, default=list)
