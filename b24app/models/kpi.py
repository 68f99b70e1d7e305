"""KPI state: stage history, the NPS ledger, computed KPI values and the write-back snapshot."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from b24app.models.base import Base, utcnow
from b24app.models.mirror import MirrorRow


class MirrorStageHistory(MirrorRow, Base):
    """A deal's stage move (``crm.stagehistory.list``): when it was won, lost or reopened."""

    __tablename__ = "mirror_stage_history"
    __table_args__ = (Index("ix_mirror_stage_history_owner", "portal_id", "owner_id"),)

    owner_id: Mapped[int] = mapped_column(Integer)
    type_id: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime | None]
    category_id: Mapped[int] = mapped_column(Integer, default=0)
    semantic: Mapped[str] = mapped_column(String(1), default="P")
    stage_id: Mapped[str] = mapped_column(String(64), default="")


class NpsAnswer(Base):
    """One client's NPS answer in one survey wave (one per contact and wave)."""

    __tablename__ = "nps_answers"
    __table_args__ = (
        UniqueConstraint("portal_id", "contact_id", "wave", name="uq_nps_answers_contact_wave"),
        Index("ix_nps_answers_company", "portal_id", "company_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(Integer)
    company_id: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    wave: Mapped[str] = mapped_column(String(16))  # e.g. "2026-H2"
    answered_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # survey | import | crm_field
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SurveyInvitation(Base):
    """A signed survey link sent to one contact for one wave; used at most once."""

    __tablename__ = "survey_invitations"
    __table_args__ = (
        UniqueConstraint("portal_id", "contact_id", "wave", name="uq_survey_invitations_wave"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(Integer)
    wave: Mapped[str] = mapped_column(String(16))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    rep_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]


class KpiValue(Base):
    """One KPI of one rep for one period, as last computed."""

    __tablename__ = "kpi_values"

    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"),
                                           primary_key=True)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)  # "2026-11", "2026-Q4"
    rep_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kpi: Mapped[str] = mapped_column(String(48), primary_key=True)
    value: Mapped[Decimal | None] = mapped_column(Numeric(20, 4))
    target: Mapped[Decimal | None] = mapped_column(Numeric(20, 4))
    status: Mapped[str] = mapped_column(String(16), default="")  # ok | below | no_data
    detail: Mapped[str] = mapped_column(Text, default="")
    period_start: Mapped[date] = mapped_column(Date)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)


class WrittenValue(Base):
    """The last value the service wrote into a Bitrix24 field: the snapshot diffs compare to."""

    __tablename__ = "written_values"

    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"),
                                           primary_key=True)
    target: Mapped[str] = mapped_column(String(32), primary_key=True)  # company | kpi_item
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")  # the wire form we sent
    written_at: Mapped[datetime] = mapped_column(default=utcnow)


class KpiItem(Base):
    """The «KPI менеджера» smart-process item of a rep and month."""

    __tablename__ = "kpi_items"

    portal_id: Mapped[int] = mapped_column(ForeignKey("portals.id", ondelete="CASCADE"),
                                           primary_key=True)
    rep_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    entity_type_id: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
