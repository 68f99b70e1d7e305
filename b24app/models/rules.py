"""State of the communication rules: task-format verdicts, SLA clocks, the notification outbox."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
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


class TaskFormatCheck(Base):
    """The [what]/[deadline]/[responsible] verdict of one task: at creation and now."""

    __tablename__ = "task_format_checks"
    __table_args__ = (Index("ix_task_format_checks_creator", "portal_id", "created_by"),)

    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"),
                                           primary_key=True)
    task_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created_by: Mapped[int] = mapped_column(Integer, default=0)
    department_id: Mapped[int | None] = mapped_column(Integer)
    task_created_at: Mapped[datetime | None]
    # The KPI counts the verdict at creation; later fixes do not change it.
    compliant_at_creation: Mapped[bool | None] = mapped_column(Boolean)
    violations: Mapped[list[str]] = mapped_column(JSON, default=list)
    opened_at: Mapped[datetime | None]
    commented_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    comment_id: Mapped[int | None] = mapped_column(Integer)
    fixed_at: Mapped[datetime | None]
    returned_at: Mapped[datetime | None]
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClockState(enum.StrEnum):
    """Where a response clock is."""

    RUNNING = "running"
    ANSWERED = "answered"
    CANCELLED = "cancelled"  # reassigned, deleted, closed by someone else, out of scope


class SlaClock(Base):
    """One response clock: a task or a CRM request waiting for its responsible's first reaction."""

    __tablename__ = "sla_clocks"
    __table_args__ = (
        # A deal and a company may share an ID: the subject's type is part of its identity.
        UniqueConstraint("portal_id", "policy", "subject_type", "subject_id", "started_at",
                         name="uq_sla_clocks_subject_start"),
        CheckConstraint(in_values("state", ClockState), name="state"),
        Index("ix_sla_clocks_running", "state", "due_at"),
        Index("ix_sla_clocks_responsible", "portal_id", "responsible_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    policy: Mapped[str] = mapped_column(String(16))  # "task" | "crm"
    subject_type: Mapped[str] = mapped_column(String(16))  # "task" | "deal" | "company"
    subject_id: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(32), default="")  # created, reassigned, email...
    responsible_id: Mapped[int] = mapped_column(Integer)
    requester_id: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime]
    target_minutes: Mapped[int] = mapped_column(Integer, default=120)
    warn_at: Mapped[datetime]
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default=ClockState.RUNNING.value)
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    working_minutes: Mapped[float | None]  # to the first reaction (or so far, when rescored)
    warned_at: Mapped[datetime | None]
    breached_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SlaClockEvent(Base):
    """The history of a clock, so a report can explain every minute and a rule change re-score."""

    __tablename__ = "sla_clock_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clock_id: Mapped[int] = mapped_column(ForeignKey("sla_clocks.id", ondelete="CASCADE"),
                                          index=True)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Notification(Base):
    """The outbox: a notification is sent once per tag, and only in working hours."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("portal_id", "user_id", "tag", name="uq_notifications_user_tag"),
        Index("ix_notifications_pending", "sent_at", "not_before"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))  # sla_warning, sla_breach, task_format...
    tag: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    clock_id: Mapped[int | None] = mapped_column(ForeignKey("sla_clocks.id",
                                                            ondelete="SET NULL"))
    task_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    sent_as: Mapped[str | None] = mapped_column(String(128))  # the tag of the (batched) message
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
