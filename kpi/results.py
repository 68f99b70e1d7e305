"""What the KPI computation hands to the write-back: per-company metrics and per-rep KPI rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class CompanyMetrics:
    """The values the service keeps in a company card's ``UF_CRM_NOIS_*`` fields."""

    company_id: int
    ltv: Decimal  # Σ purchases to date
    ltv_12m: Decimal  # Σ purchases in the trailing 12 months
    last_purchase: date | None
    return_status: str | None  # new | returning | at_risk | lost; None = never bought
    regular: bool  # bought in ≥ 3 distinct months of the last 12
    nps_last: int | None
    nps_date: date | None
    card_updated: date | None
    nois_share: Decimal | None  # trailing-12 purchases ÷ declared annual budget


@dataclass(frozen=True)
class RepKpi:
    """One KPI of one rep for one period: value, target and status."""

    rep_id: int
    period: str  # "2026-11"
    kpi: str  # kpi.definitions.KpiId value
    value: Decimal | None
    target: Decimal | None
    status: str  # ok | below | no_data
    detail: str = ""  # e.g. the list of stale items, in Russian
