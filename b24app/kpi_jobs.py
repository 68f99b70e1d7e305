"""KPI jobs: compute and write back (nightly and on demand), the weekly digest, the Excel report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app import outbox
from b24app.calendar_rules import calendar_from_settings
from b24app.config import Settings
from b24app.context import AppContext
from b24app.db import session_scope
from b24app.gateway.errors import AuthRevoked
from b24app.models import KpiValue, MirrorDepartment, Portal, PortalStatus
from b24app.report import build_workbook, load_company_info
from kpi.definitions import normalize
from kpi.digest import build_digest
from kpi.periods import Period, PeriodKind, local_date, month_of, week_of
from kpi.results import CompanyMetrics, RepKpi
from sync.writeback import WritebackReport, load_rep_names, write_back

log = logging.getLogger(__name__)

DIGEST_KIND = "kpi_digest"
CLOSE_DAYS = 3  # the previous month's items are still refreshed in the new month's first days
SALES_MARKER = "продаж"  # «Отдел продаж»: as kpi.compute_facts finds the sales department


@dataclass
class Report:
    """One compute (and write-back) of a portal's KPIs for a period."""

    portal_id: int
    period: Period
    rows: list[RepKpi]
    companies: list[CompanyMetrics]
    rep_names: dict[int, str]
    stored: int = 0  # KpiValue rows inserted or changed
    writeback: WritebackReport | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's ``--json``)."""
        return {"portal_id": self.portal_id, "period": self.period.label,
                "reps": len({r.rep_id for r in self.rows}), "kpi_rows": len(self.rows),
                "companies": len(self.companies), "stored": self.stored,
                "writeback": None if self.writeback is None else self.writeback.as_dict()}


def compute_options(settings: Settings) -> Any:
    """The compute's options from ``[kpi]``: recognition rules, plans, the sales department."""
    from decimal import Decimal

    from kpi.compute import ComputeOptions
    from kpi.definitions import RecognitionRules

    kpi = settings.kpi
    return ComputeOptions(rules=RecognitionRules.from_mapping(kpi.rules),
                          plans={int(user): Decimal(str(plan)) for user, plan in kpi.plans.items()},
                          department_ids=kpi.sales_department_ids, include_head=kpi.include_head)


def _period(ctx: AppContext, period: Period | str) -> Period:
    tz = ctx.settings.calendar.timezone
    return Period.parse(period, tz) if isinstance(period, str) else period


def compute_and_write(ctx: AppContext, portal_id: int, period: Period | str, now: datetime, *,
                      write: bool = True, write_companies: bool = True,
                      options: Any = None) -> Report:
    """Compute every rep's KPIs and the company metrics, store them, write what changed.

    The «KPI менеджера» items are monthly, so another kind of period writes no items. The
    company cards show the client today, so only a period that contains ``now`` writes them:
    a recomputed past month would put its old values back into the cards.
    """
    from kpi import compute  # the compute service loads the SQL layer: only when needed

    settings, period = ctx.settings, _period(ctx, period)
    calendar = calendar_from_settings(settings.calendar)
    extra = {"options": compute_options(settings) if options is None else options}
    with session_scope(ctx.sessions) as session:
        rows, companies = compute.compute_period(session, portal_id, period, now=now,
                                                 settings=settings.kpi, calendar=calendar,
                                                 **extra)
        stored = compute.store(session, portal_id, rows, now=now)
        names = load_rep_names(session, portal_id, {r.rep_id for r in rows})
    report = Report(portal_id, period, list(rows), list(companies), names, stored)
    if write:
        monthly = period.kind is PeriodKind.MONTH
        current = period.start <= now < period.end
        report.writeback = write_back(
            ctx.sessions, ctx.gateways.for_portal(portal_id), portal_id,
            rows if monthly else [], companies if write_companies and current else [],
            now=now, tz=settings.calendar.timezone, rep_names=names)
        if not monthly:
            report.writeback.problems.append(
                f"карточки «KPI менеджера» ведутся по месяцам: период «{period.title}» не "
                "записан, укажите месяц (ГГГГ-ММ)")
    return report


def active_portal_ids(ctx: AppContext) -> list[int]:
    """IDs of the portals jobs run for (uninstalled or locked-out ones wait)."""
    with ctx.sessions() as session:
        return list(session.scalars(select(Portal.id).where(
            Portal.status == PortalStatus.ACTIVE.value).order_by(Portal.id)))


def nightly(ctx: AppContext) -> None:
    """The nightly job: this month's KPIs and company cards; last month's items to close it."""
    from b24app.worker import mark_needs_reinstall

    now, tz = ctx.clock(), ctx.settings.calendar.timezone
    current = month_of(now, tz)
    for portal_id in active_portal_ids(ctx):
        try:
            if local_date(now, tz).day <= CLOSE_DAYS:
                # Company cards show "now": only the current run writes them, once.
                compute_and_write(ctx, portal_id, current.previous(), now, write_companies=False)
            compute_and_write(ctx, portal_id, current, now)
        except AuthRevoked as exc:
            mark_needs_reinstall(ctx, portal_id, f"kpi: {exc.code}")
        except Exception:
            # One portal's failure must not starve the others; the next night retries it.
            log.exception("KPI compute and write-back of portal %s failed", portal_id)


# ---------------------------------------------------------------- the weekly digest


def head_of_sales(session: Session, portal_id: int, configured: int = 0) -> int | None:
    """The РОП: the configured user, else the head of the sales department in the mirror."""
    if configured > 0:
        return configured
    departments = session.execute(
        select(MirrorDepartment.id, MirrorDepartment.name, MirrorDepartment.parent_id,
               MirrorDepartment.head_id)
        .where(MirrorDepartment.portal_id == portal_id, MirrorDepartment.deleted_at.is_(None))
        .order_by(MirrorDepartment.id)).all()
    sales = {d.id for d in departments if SALES_MARKER in normalize(d.name)}
    # The top sales department, not a regional team inside it.
    roots = [d for d in departments if d.id in sales and d.parent_id not in sales]
    return next((d.head_id for d in roots if d.head_id), None)


def digest_rows(ctx: AppContext, portal_id: int, period: Period, now: datetime) -> list[RepKpi]:
    """The period's KPI rows as last computed (the nightly job's), else computed now."""
    with ctx.sessions() as session:
        values = session.scalars(select(KpiValue).where(
            KpiValue.portal_id == portal_id, KpiValue.period == period.label)).all()
        rows = [RepKpi(v.rep_id, v.period, v.kpi, v.value, v.target, v.status, v.detail)
                for v in values]
    return rows or compute_and_write(ctx, portal_id, period, now, write=False).rows


def weekly_digest(ctx: AppContext, portal_id: int, now: datetime) -> bool:
    """Queue this week's digest to the РОП at the next working instant; False if it was."""
    settings = ctx.settings
    tz = settings.calendar.timezone
    send_at = calendar_from_settings(settings.calendar).next_working_instant(now)
    week = week_of(send_at, tz)
    # The month of the week that ended: a Monday 1 December digest still reports November.
    period = month_of(week.start - timedelta(microseconds=1), tz)
    with ctx.sessions() as session:
        head = head_of_sales(session, portal_id, settings.sla.head_of_sales_user_id)
    if head is None:
        log.warning("portal %s: no head of sales (set [sla] head_of_sales_user_id); "
                    "KPI digest not sent", portal_id)
        return False
    rows = digest_rows(ctx, portal_id, period, now)
    with ctx.sessions() as session:
        names = load_rep_names(session, portal_id, {r.rep_id for r in rows})
    text = build_digest(rows, names, period)
    with session_scope(ctx.sessions) as session:
        return outbox.enqueue(session, portal_id=portal_id, user_id=head, kind=DIGEST_KIND,
                              tag=f"kpi-digest-{week.label}", message=text,
                              not_before=send_at, now=now)


def weekly_digests(ctx: AppContext) -> None:
    """The weekly job: a digest for every active portal."""
    now = ctx.clock()
    for portal_id in active_portal_ids(ctx):
        try:
            weekly_digest(ctx, portal_id, now)
        except Exception:
            log.exception("KPI digest of portal %s failed", portal_id)


# ---------------------------------------------------------------- the Excel report


def report_xlsx(ctx: AppContext, portal_id: int, period: Period | str, now: datetime) -> bytes:
    """``b24app report --xlsx``: the period's KPIs, stale items and clients as a workbook."""
    report = compute_and_write(ctx, portal_id, period, now, write=False)
    with ctx.sessions() as session:
        companies = load_company_info(session, portal_id,
                                      [m.company_id for m in report.companies])
        names = dict(report.rep_names)
        names |= load_rep_names(session, portal_id, {c.rep_id for c in companies.values()})
    return build_workbook(report.rows, report.companies, report.period, rep_names=names,
                          companies=companies, tz=ctx.settings.calendar.timezone)
