"""The KPI compute service: every KPI of every sales rep for one period, and the company metrics.

Purchase KPIs run as SQL aggregates over the whole deal history (``kpi.compute_sql``), so a
million deals never enter Python; the month-scoped KPIs load one period's facts
(``kpi.compute_facts``) and call the pure formulas. Edges, chosen once:

* Each KPI is measured over the period of its own kind (``DEFINITIONS[kpi].period_kind``) that
  contains the requested period, up to as_of = min(now, period end): the November record of a
  rep shows the return rate of Q4 so far and the new active clients of the year so far. A
  requested period longer than a KPI's kind measures that KPI over the whole period, with the
  monthly count targets (visits, trainings, mailing, ideas) multiplied by its months.
* Growth KPIs are judged against the previous period of their kind: LTV and NOIS share at the
  end of the previous quarter, the response SLA in the previous month.
* CRM freshness is a snapshot of open work, so it is computed only while the period runs (now
  inside it); a closed period returns no freshness row and ``store`` keeps the last one.
* The client card's dates and budget are the company fields ``UF_CRM_CARD_UPDATED`` and
  ``UF_CRM_CARD_BUDGET`` (``CardFields``); an active client is one with a purchase in the 12
  months before as_of.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.models import KpiValue, utcnow
from kpi import compute_facts as facts_sql
from kpi import compute_sql as sql
from kpi.compute_facts import Calendar, CardFields, Rep
from kpi.definitions import (
    DEFAULT_RULES,
    DEFINITIONS,
    KpiId,
    RecognitionRules,
    evaluate,
    money_mean,
    ratio,
    target_for,
)
from kpi.digest import format_number
from kpi.facts import ClientCard, Purchase, SlaClockFact
from kpi.formulas import (
    NoisShare,
    NoisShareTrend,
    ReturnStatus,
    StaleItem,
    client_card,
    crm_freshness,
    latest_wave,
    mailings,
    marketing_ideas,
    nps,
    nps_coverage,
    procurement_needs,
    response_sla,
    task_format,
    trainings,
    visits,
)
from kpi.periods import Period, PeriodKind, local_date, local_midnight, trailing_start
from kpi.results import CompanyMetrics, RepKpi

PURCHASE_SOURCES = ("deals",)
# Targets given per month that a longer period multiplies.
_MONTHLY_COUNTS = frozenset({KpiId.VISITS, KpiId.TRAININGS, KpiId.NEW_PRODUCTS_MAILING,
                             KpiId.MARKETING_IDEAS})
_ONE = Decimal(1)


class PurchaseSourceError(ValueError):
    """The configured source of purchases has no mirror to compute from."""


@dataclass(frozen=True)
class ComputeOptions:
    """What the compute reads besides ``KpiSettings``: rules, plans, who the reps are."""

    rules: RecognitionRules = DEFAULT_RULES
    plans: Mapping[int, Decimal] = field(default_factory=dict)  # monthly sales plan per rep
    department_ids: tuple[int, ...] = ()  # the sales department(s); () = found by name
    include_head: bool = False
    card_fields: CardFields = field(default_factory=CardFields)
    sla_policies: tuple[str, ...] = ("task",)


class KpiConfig(Protocol):
    """What the compute reads of ``b24app.config.KpiSettings``."""

    @property
    def purchase_source(self) -> str:
        """``deals`` or ``smart_invoices``."""
        ...

    @property
    def targets(self) -> Mapping[str, float]:
        """KPI targets by ``KpiId`` value (percent for shares)."""
        ...


def check_purchase_source(source: str) -> None:
    """PurchaseSourceError unless purchases can be computed from the mirror for ``source``."""
    if source in PURCHASE_SOURCES:
        return
    if source == "smart_invoices":
        raise PurchaseSourceError(
            "[kpi] purchase_source = \"smart_invoices\": purchases would come from smart "
            "invoices (crm.item, entityTypeId 31), but the mirror keeps no smart invoices yet; "
            "KPIs are not computed from deals instead. Set purchase_source = \"deals\" or add "
            "a mirror of smart invoices.")
    raise PurchaseSourceError(f"[kpi] purchase_source: unknown source {source!r}")


def measured(kpi: KpiId, period: Period) -> Period:
    """The period a KPI is measured over: its own kind around ``period``, or ``period`` itself."""
    kind = DEFINITIONS[kpi].period_kind
    if period.months >= kind.months:
        return period
    return Period.of(kind, period.start, period.tz)


@dataclass(frozen=True)
class _Value:
    """A KPI's raw value (fraction, money, count) before ``evaluate``."""

    value: Decimal | None
    target: Decimal | None = None  # overrides the configured target (a sales plan)
    previous: Decimal | None = None  # the growth KPIs' reference
    detail: str = ""


PerRep = dict[int, _Value]


def _dates(start: datetime, end: datetime, tz: str) -> sql.Dates:
    return sql.Dates.of(start, end, tz)


@dataclass
class _Run:
    """One computation: the period, its as_of and what several KPIs share."""

    session: Session
    portal_id: int
    period: Period
    now: datetime
    options: ComputeOptions
    rules: RecognitionRules
    calendar: Calendar
    reps: list[Rep]
    as_of: datetime = field(init=False)
    cards: list[ClientCard] = field(init=False)
    active: list[sql.RepClient] = field(init=False)
    active_before: list[sql.RepClient] = field(init=False)

    def __post_init__(self) -> None:
        self.as_of = self.period.as_of(self.now)
        self.cards = facts_sql.client_cards(self.session, self.portal_id,
                                            self.options.card_fields, self.tz)
        # The rep-client sums at as_of and at the end of the previous quarter, read at once:
        # the active clients (NPS coverage, client card, freshness) and the NOIS share trend.
        before = measured(KpiId.NOIS_SHARE, self.period).previous().as_of(self.as_of)
        self.active, self.active_before = sql.rep_clients(
            self.session, self.portal_id, [self.trailing(self.as_of), self.trailing(before)])

    @property
    def tz(self) -> str:
        """The portal's zone (the period's)."""
        return self.period.tz

    @property
    def ids(self) -> list[int]:
        """The reps' user ids."""
        return [r.user_id for r in self.reps]

    def trailing(self, as_of: datetime) -> sql.Dates:
        """The close dates of the active-client window [as_of − 12 months, as_of)."""
        return _dates(trailing_start(as_of, self.rules.active_months, self.tz), as_of, self.tz)

    def stand_ins(self) -> list[Purchase]:
        """One purchase per active (rep, client): all that active-client formulas look at."""
        return [Purchase(r.client, r.rep_id, _ONE, local_midnight(r.last, self.tz))
                for r in self.active]

    def budgets(self) -> dict[str, Decimal]:
        """Declared annual budgets > 0 by client key."""
        return {c.client_key: c.budget for c in self.cards if c.budget is not None
                and c.budget > 0}


# ---------------------------------------------------------------- purchase KPIs (SQL)


def _sales_volume(run: _Run) -> PerRep:
    period = measured(KpiId.SALES_VOLUME, run.period)
    sums = sql.sales_volume(run.session, run.portal_id,
                            _dates(period.start, period.as_of(run.now), run.tz))
    out = {}
    for rep in run.ids:
        amount, deals = sums.get(rep, (Decimal(0), 0))
        plan = run.options.plans.get(rep)
        out[rep] = _Value(amount, None if plan is None else plan * period.months,
                          detail=f"сделок: {deals}")
    return out


def _return_rate(run: _Run) -> PerRep:
    quarter = measured(KpiId.RETURN_RATE, run.period)
    before = quarter.previous()
    counts = sql.return_rate(run.session, run.portal_id,
                             _dates(before.start, before.as_of(run.as_of), run.tz),
                             _dates(quarter.start, quarter.as_of(run.as_of), run.tz))
    out = {}
    for rep in run.ids:
        both, base = counts.get(rep, (0, 0))
        out[rep] = _Value(ratio(both, base),
                          detail=f"вернулись {both} из {base} клиентов прошлого периода")
    return out


def _ltv(run: _Run) -> PerRep:
    quarter = measured(KpiId.LTV, run.period)
    now, before = sql.rep_ltv(run.session, run.portal_id,
                              [run.trailing(quarter.as_of(run.as_of)),
                               run.trailing(quarter.previous().as_of(run.as_of))])
    empty = sql.RepLtvSums(0, Decimal(0), Decimal(0))
    out = {}
    for rep in run.ids:
        cur, prev = now.get(rep, empty), before.get(rep, empty)
        trailing = money_mean(cur.trailing, cur.clients)
        out[rep] = _Value(money_mean(cur.to_date, cur.clients),
                          previous=money_mean(prev.to_date, prev.clients),
                          detail=f"активных клиентов: {cur.clients}; за 12 мес. в среднем: "
                                 f"{format_number(trailing or Decimal(0))} ₽")
    return out


def _new_active_clients(run: _Run) -> PerRep:
    year = measured(KpiId.NEW_ACTIVE_CLIENTS, run.period)
    counts = sql.new_clients(run.session, run.portal_id,
                             _dates(year.start, year.as_of(run.as_of), run.tz),
                             run.rules.new_client_min_months)
    out = {}
    for rep in run.ids:
        active, pending = counts.get(rep, (0, 0))
        out[rep] = _Value(Decimal(active), detail=f"новых клиентов ещё не активны: {pending}")
    return out


def _nois(rows: Iterable[sql.RepClient], budgets: Mapping[str, Decimal]) -> dict[int, NoisShare]:
    bought: dict[int, Decimal] = defaultdict(Decimal)
    declared: dict[int, Decimal] = defaultdict(Decimal)
    clients: dict[int, int] = defaultdict(int)
    without: dict[int, int] = defaultdict(int)
    for row in rows:
        budget = budgets.get(row.client)
        if budget is None:
            without[row.rep_id] += 1
            continue
        bought[row.rep_id] += row.amount
        declared[row.rep_id] += budget
        clients[row.rep_id] += 1
    return {rep: NoisShare(bought[rep], declared[rep], clients[rep], without[rep])
            for rep in set(clients) | set(without)}


def _nois_share(run: _Run) -> PerRep:
    # The windows end at as_of (the quarter's as_of: the month ends before the quarter does)
    # and at the end of the previous quarter.
    budgets = run.budgets()
    now, before = _nois(run.active, budgets), _nois(run.active_before, budgets)
    empty = NoisShare(Decimal(0), Decimal(0), 0, 0)
    out = {}
    for rep in run.ids:
        trend = NoisShareTrend(now.get(rep, empty), before.get(rep, empty))
        out[rep] = _Value(trend.current.value, previous=trend.previous.value,
                          detail=f"клиентов с бюджетом: {trend.current.clients}, без бюджета: "
                                 f"{trend.current.without_budget}")
    return out


# ---------------------------------------------------------------- month-scoped KPIs


def _activity_counts(run: _Run) -> dict[KpiId, PerRep]:
    month = measured(KpiId.VISITS, run.period)
    acts = facts_sql.activities(run.session, run.portal_id, month.start, month.end, run.ids)
    closed = facts_sql.tasks_closed(run.session, run.portal_id, month.start, month.end, run.ids)
    created = facts_sql.tasks_created(run.session, run.portal_id, month.start, month.end,
                                      run.ids)
    rules = run.rules
    count: dict[KpiId, Callable[[int], int]] = {
        KpiId.VISITS: lambda rep: visits(acts, rep, month, rules=rules),
        KpiId.TRAININGS: lambda rep: trainings(acts, rep, month, rules=rules),
        KpiId.NEW_PRODUCTS_MAILING: lambda rep: mailings(acts, closed, rep, month, rules=rules),
        KpiId.MARKETING_IDEAS: lambda rep: marketing_ideas(created, rep, month, rules=rules),
    }
    return {kpi: {rep: _Value(Decimal(fn(rep))) for rep in run.ids} for kpi, fn in count.items()}


def _procurement(run: _Run) -> PerRep:
    month = measured(KpiId.PROCUREMENT_NEEDS, run.period)
    weeks = month.weeks()
    tasks = facts_sql.tasks_created(run.session, run.portal_id, weeks[0].start, weeks[-1].end,
                                    run.ids) if weeks else []
    out = {}
    for rep in run.ids:
        report = procurement_needs(tasks, rep, month, now=run.now, calendar=run.calendar,
                                   rules=run.rules)
        missed = ", ".join(f"{m:%d.%m}" for m in report.missed)
        out[rep] = _Value(report.share.value,
                          detail=f"нет отчёта за недели с {missed}" if missed else "")
    return out


def _stale_lines(items: Iterable[StaleItem]) -> str:
    """One line per «висяк»: «Сделка «…»: reasons» (the digest lists these lines)."""
    return "\n".join(f"{i.kind.title_ru.capitalize()} «{i.name}»: {'; '.join(i.reasons)}"
                     for i in items)


def _freshness(run: _Run) -> PerRep:
    deals = facts_sql.open_deals(run.session, run.portal_id, run.ids)
    tasks = facts_sql.open_tasks(run.session, run.portal_id, run.ids)
    # The cards in scope: the rep's companies that are active clients (anyone's purchase).
    active = {r.client for r in run.active}
    cards = [c for c in run.cards if c.client_key in active]
    out = {}
    for rep in run.ids:
        result = crm_freshness(deals, tasks, cards, rep, run.now, calendar=run.calendar,
                               rules=run.rules)
        out[rep] = _Value(result.value, detail=_stale_lines(result.stale))
    return out


def _client_card(run: _Run) -> PerRep:
    quarter = measured(KpiId.CLIENT_CARD, run.period)
    bought = run.stand_ins()
    out = {}
    for rep in run.ids:
        share = client_card(run.cards, bought, rep, quarter, now=run.as_of, rules=run.rules)
        out[rep] = _Value(share.value, detail=f"обновлено {share.part} из {share.whole} карт")
    return out


def _nps(run: _Run) -> dict[KpiId, PerRep]:
    half = measured(KpiId.NPS, run.period)
    since = trailing_start(run.as_of, run.rules.nps_window_months, run.tz)
    answers = facts_sql.nps_answers(run.session, run.portal_id, run.as_of, since)
    wave = latest_wave(answers)
    bought = run.stand_ins()
    score: PerRep = {}
    coverage: PerRep = {}
    for rep in run.ids:
        result = nps(answers, rep, wave, rules=run.rules) if wave else None
        score[rep] = _Value(None if result is None else result.value,
                            detail="" if result is None else
                            f"волна {wave}: ответов {result.answers}")
        share = nps_coverage(answers, bought, rep, half, now=run.as_of, rules=run.rules)
        coverage[rep] = _Value(share.value, detail=f"опрошено {share.part} из {share.whole}")
    return {KpiId.NPS: score, KpiId.NPS_COVERAGE: coverage}


def _sla(run: _Run) -> PerRep:
    month = measured(KpiId.RESPONSE_SLA, run.period)
    before = month.previous()

    def clocks(period: Period) -> list[SlaClockFact]:
        return facts_sql.sla_clocks(run.session, run.portal_id, period.start, period.end,
                                    run.ids, as_of=period.as_of(run.as_of),
                                    calendar=run.calendar, policies=run.options.sla_policies)

    now, prev = clocks(month), clocks(before)
    out = {}
    for rep in run.ids:
        result = response_sla(now, rep, month)
        median = "" if result.median_minutes is None else \
            f"; медиана {format_number(result.median_minutes)} раб. мин"
        out[rep] = _Value(result.value, previous=response_sla(prev, rep, before).value,
                          detail=f"в срок {result.in_time.part} из {result.in_time.whole}"
                                 f"{median}")
    return out


def _task_format(run: _Run) -> PerRep:
    month = measured(KpiId.TASK_FORMAT, run.period)
    verdicts = facts_sql.task_formats(run.session, run.portal_id, month.start, month.end,
                                      run.ids)
    out = {}
    for rep in run.ids:
        share = task_format(verdicts, rep, month)
        out[rep] = _Value(share.value, detail=f"по формату {share.part} из {share.whole}")
    return out


# ---------------------------------------------------------------- assembly


def _target(kpi: KpiId, run: _Run, targets: Mapping[str, float]) -> Decimal | None:
    """The configured target, times the months of a longer period for monthly counts."""
    goal = target_for(kpi, targets)
    months = run.period.months // DEFINITIONS[kpi].period_kind.months
    if goal is not None and kpi in _MONTHLY_COUNTS and months > 1:
        return goal * months
    return None


def _values(run: _Run) -> dict[KpiId, PerRep]:
    values: dict[KpiId, PerRep] = {
        KpiId.SALES_VOLUME: _sales_volume(run),
        KpiId.RETURN_RATE: _return_rate(run),
        KpiId.LTV: _ltv(run),
        KpiId.NEW_ACTIVE_CLIENTS: _new_active_clients(run),
        KpiId.NOIS_SHARE: _nois_share(run),
        KpiId.CLIENT_CARD: _client_card(run),
        KpiId.PROCUREMENT_NEEDS: _procurement(run),
        KpiId.RESPONSE_SLA: _sla(run),
        KpiId.TASK_FORMAT: _task_format(run),
        **_activity_counts(run),
        **_nps(run),
    }
    if run.period.start <= run.now < run.period.end:
        values[KpiId.CRM_FRESHNESS] = _freshness(run)
    return values


def _rep_rows(run: _Run, targets: Mapping[str, float]) -> list[RepKpi]:
    values = _values(run)
    rows = []
    for rep in run.ids:
        for kpi in KpiId:
            if kpi not in values:
                continue
            item = values[kpi][rep]
            target = item.target if item.target is not None else _target(kpi, run, targets)
            result = evaluate(kpi, item.value, targets=targets, target=target,
                              previous=item.previous)
            rows.append(RepKpi(rep, run.period.label, kpi.value, result.value, result.target,
                               result.status, item.detail))
    return rows


def _return_status(sales: sql.CompanySales | None, quarter: Period) -> str | None:
    """new / returning / at_risk / lost by the first and last purchase (``return_status``)."""
    if sales is None:
        return None
    start = quarter.first_day
    if sales.last >= start:
        return (ReturnStatus.RETURNING if sales.first < start else ReturnStatus.NEW).value
    if sales.last >= quarter.shift(-2).first_day:
        return ReturnStatus.AT_RISK.value
    return ReturnStatus.LOST.value


def _company_rows(run: _Run) -> list[CompanyMetrics]:
    sales = sql.company_sales(run.session, run.portal_id, run.trailing(run.as_of))
    answers = facts_sql.last_nps(run.session, run.portal_id, run.as_of)
    # The quarter of the last instant measured: a November as_of of 1 December 00:00 is Q4.
    quarter = Period.of(PeriodKind.QUARTER, run.as_of - timedelta(microseconds=1), run.tz)
    out = []
    for card in run.cards:
        company_id = int(card.client_key.removeprefix("company:"))
        bought = sales.get(company_id)
        score, answered = answers.get(company_id, (None, None))
        trailing = bought.trailing if bought else Decimal(0)
        out.append(CompanyMetrics(
            company_id=company_id, ltv=bought.to_date if bought else Decimal(0),
            ltv_12m=trailing, last_purchase=bought.last if bought else None,
            return_status=_return_status(bought, quarter),
            regular=bought is not None
            and bought.trailing_months >= run.rules.regular_min_months,
            nps_last=score, nps_date=None if answered is None else local_date(answered, run.tz),
            card_updated=None if card.updated_at is None else local_date(card.updated_at,
                                                                         run.tz),
            nois_share=ratio(trailing, card.budget) if card.budget and card.budget > 0
            else None))
    return out


def compute_period(session: Session, portal_id: int, period: Period, *, now: datetime,
                   settings: KpiConfig, calendar: Calendar,
                   options: ComputeOptions | None = None
                   ) -> tuple[list[RepKpi], list[CompanyMetrics]]:
    """Every KPI of every sales rep for ``period`` as of ``now``, and every company's metrics."""
    check_purchase_source(settings.purchase_source)
    opts = options or ComputeOptions()
    rules = facts_sql.with_groups(session, portal_id, opts.rules)
    reps = facts_sql.sales_reps(session, portal_id, department_ids=opts.department_ids,
                                include_head=opts.include_head)
    run = _Run(session, portal_id, period, now, opts, rules, calendar, reps)
    return _rep_rows(run, settings.targets), _company_rows(run)


def store(session: Session, portal_id: int, rows: Iterable[RepKpi], *,
          now: datetime | None = None) -> int:
    """Upsert KPI rows into ``kpi_values`` by (portal, period, rep, kpi); how many changed."""
    stamp = now or utcnow()
    items = list(rows)
    periods = {r.period for r in items}
    stored = {(v.period, v.rep_id, v.kpi): v for v in session.scalars(
        select(KpiValue).where(KpiValue.portal_id == portal_id, KpiValue.period.in_(periods)))}
    changed = 0
    for row in items:
        fields = {"value": row.value, "target": row.target, "status": row.status,
                  "detail": row.detail}
        existing = stored.get((row.period, row.rep_id, row.kpi))
        if existing is None:
            session.add(KpiValue(portal_id=portal_id, period=row.period, rep_id=row.rep_id,
                                 kpi=row.kpi, period_start=Period.parse(row.period).first_day,
                                 computed_at=stamp, **fields))
            changed += 1
        elif any(getattr(existing, k) != v for k, v in fields.items()):
            for key, value in fields.items():
                setattr(existing, key, value)
            existing.computed_at = stamp
            changed += 1
    session.flush()
    return changed
