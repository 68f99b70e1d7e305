"""The KPI compute service on both backends: hand-computed tables, the edges, and properties
that the SQL path and the pure formulas of ``kpi.formulas`` give the same numbers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import KpiSettings
from b24app.models import (
    KpiValue,
    MirrorActivity,
    MirrorCompany,
    MirrorContact,
    MirrorDeal,
    MirrorDepartment,
    MirrorGroup,
    MirrorStageHistory,
    MirrorTask,
    MirrorUser,
    NpsAnswer,
    SlaClock,
    SurveyInvitation,
    TaskFormatCheck,
)
from kpi.calendar import WorkingCalendar
from kpi.compute import (
    ComputeOptions,
    PurchaseSourceError,
    compute_period,
    measured,
    store,
)
from kpi.compute_facts import sales_reps
from kpi.compute_sql import date_bound
from kpi.definitions import KpiId, evaluate
from kpi.facts import ClientCard, Purchase, SaleRecord, purchases_from
from kpi.formulas import (
    client_ltv,
    client_nois_share,
    is_regular,
    last_purchase_at,
    new_active_clients,
    nois_share_trend,
    rep_ltv,
    return_rate,
    return_status,
    sales_volume,
)
from kpi.periods import Period, PeriodKind, local_date, local_midnight
from kpi.results import CompanyMetrics, RepKpi
from tests.workerproc import seed_portal

NSK = ZoneInfo("Asia/Novosibirsk")
A, B, HEAD, OTHER, RETIRED = 101, 202, 303, 404, 505
ROOT, SALES, REGION = 1, 2, 5
PROCUREMENT_GROUP, MARKETING_GROUP = 1, 3
CAL = WorkingCalendar()
KPI = KpiSettings()
PURCHASE_KPIS = (KpiId.SALES_VOLUME, KpiId.RETURN_RATE, KpiId.LTV, KpiId.NEW_ACTIVE_CLIENTS,
                 KpiId.NOIS_SHARE)
D = Decimal


def nsk(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A Novosibirsk wall-clock instant."""
    return datetime(year, month, day, hour, minute, tzinfo=NSK)


def month(label: str) -> Period:
    return Period.parse(label)


# ---------------------------------------------------------------- mirror builders


@dataclass(frozen=True)
class Deal:
    id: int
    rep: int
    company: int | None
    contact: int | None
    semantic: str
    amount: str
    close: date | None
    deleted: bool = False


@dataclass(frozen=True)
class Company:
    id: int
    rep: int
    budget: Any = None  # the raw field value, as the wire sends it
    updated: date | None = None


@pytest.fixture
def sessions(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on the migrated test database of this backend."""
    return session_factory


@pytest.fixture
def portal_id(sessions: sessionmaker[Session]) -> int:
    """A portal with the NOIS organisation mirrored."""
    pid = seed_portal(sessions)
    with sessions.begin() as session:
        add_org(session, pid)
    return pid


def add_org(session: Session, pid: int) -> None:
    """Root, sales (head HEAD) with a regional sub-department, users, the two groups."""
    session.add_all([
        MirrorDepartment(portal_id=pid, id=ROOT, name="НОИС", parent_id=None, head_id=1),
        MirrorDepartment(portal_id=pid, id=SALES, name="Отдел продаж", parent_id=ROOT,
                         head_id=HEAD),
        MirrorDepartment(portal_id=pid, id=REGION, name="Кузбасс", parent_id=SALES,
                         head_id=B),
        MirrorUser(portal_id=pid, id=A, name="Анна", last_name="Белова", departments=[SALES]),
        MirrorUser(portal_id=pid, id=B, name="Игорь", last_name="Тихонов",
                   departments=[REGION]),
        MirrorUser(portal_id=pid, id=HEAD, name="Дмитрий", last_name="Колесников",
                   departments=[SALES]),
        MirrorUser(portal_id=pid, id=OTHER, name="Елена", last_name="Кравцова",
                   departments=[ROOT]),
        MirrorUser(portal_id=pid, id=RETIRED, name="Ушёл", last_name="", active=False,
                   departments=[SALES]),
        MirrorGroup(portal_id=pid, id=PROCUREMENT_GROUP, name="Заявки в закупки"),
        MirrorGroup(portal_id=pid, id=MARKETING_GROUP, name="Маркетинг: идеи для контента"),
    ])


def add_deals(session: Session, pid: int, deals: Iterable[Deal]) -> None:
    session.add_all(MirrorDeal(
        portal_id=pid, id=d.id, semantic=d.semantic, amount=D(d.amount), close_date=d.close,
        company_id=d.company, contact_id=d.contact, assigned_by_id=d.rep,
        stage_id={"S": "WON", "F": "LOSE"}.get(d.semantic, "NEW"),
        deleted_at=datetime(2026, 11, 1, tzinfo=UTC) if d.deleted else None)
        for d in deals)


def add_companies(session: Session, pid: int, companies: Iterable[Company]) -> None:
    session.add_all(MirrorCompany(
        portal_id=pid, id=c.id, title=f"Клиент {c.id}", assigned_by_id=c.rep,
        raw={"ID": str(c.id), "UF_CRM_CARD_BUDGET": c.budget,
             "UF_CRM_CARD_UPDATED": None if c.updated is None
             else f"{c.updated.isoformat()}T00:00:00+07:00"})
        for c in companies)


def computed(session: Session, pid: int, period: Period, now: datetime,
             **options: Any) -> tuple[dict[tuple[int, str], RepKpi], dict[int, CompanyMetrics]]:
    rows, companies = compute_period(session, pid, period, now=now, settings=KPI, calendar=CAL,
                                     options=ComputeOptions(**options))
    return {(r.rep_id, r.kpi): r for r in rows}, {c.company_id: c for c in companies}


# ---------------------------------------------------------------- the pure side


def pure_purchases(deals: Iterable[Deal]) -> list[Purchase]:
    return purchases_from(
        SaleRecord(d.id, d.semantic, D(d.amount),
                   None if d.close is None else local_midnight(d.close), d.rep, d.company,
                   d.contact)
        for d in deals if not d.deleted)


def pure_budget(value: Any) -> Decimal | None:
    # A money field may carry its currency: "300000|RUB".
    return None if value in (None, "") else D(str(value).split("|")[0])


def pure_cards(companies: Iterable[Company]) -> list[ClientCard]:
    return [ClientCard(f"company:{c.id}", c.rep,
                       None if c.updated is None else local_midnight(c.updated),
                       pure_budget(c.budget)) for c in companies]


def pure_rep_values(deals: list[Deal], companies: list[Company], period: Period,
                    now: datetime, rep: int) -> dict[str, Decimal | None]:
    """The purchase KPIs of one rep from the pure formulas, in the shown unit."""
    bought, cards = pure_purchases(deals), pure_cards(companies)
    as_of = period.as_of(now)
    quarter = measured(KpiId.LTV, period)
    year = measured(KpiId.NEW_ACTIVE_CLIENTS, period)
    shown = {
        KpiId.SALES_VOLUME: sales_volume(bought, rep, period, now=now).amount,
        KpiId.RETURN_RATE: return_rate(bought, rep, quarter, now=as_of).value,
        KpiId.LTV: rep_ltv(bought, rep, quarter, now=as_of).to_date,
        KpiId.NEW_ACTIVE_CLIENTS: D(new_active_clients(bought, rep, year, now=as_of).count),
        KpiId.NOIS_SHARE: nois_share_trend(bought, cards, rep, quarter, now=as_of).current.value,
    }
    return {kpi.value: evaluate(kpi, value).value for kpi, value in shown.items()}


def pure_previous(deals: list[Deal], companies: list[Company], period: Period,
                  now: datetime, rep: int) -> dict[str, Decimal | None]:
    """The growth KPIs' previous values (targets) from the pure formulas, shown."""
    bought, cards = pure_purchases(deals), pure_cards(companies)
    as_of, quarter = period.as_of(now), measured(KpiId.LTV, period)
    ltv = rep_ltv(bought, rep, quarter.previous(), now=as_of).to_date
    share = nois_share_trend(bought, cards, rep, quarter, now=as_of).previous.value
    return {KpiId.LTV.value: ltv,
            KpiId.NOIS_SHARE.value: evaluate(KpiId.NOIS_SHARE, share).value}


def pure_companies(deals: list[Deal], companies: list[Company], period: Period,
                   now: datetime) -> dict[int, CompanyMetrics]:
    """Every company's card metrics from the pure formulas (NPS left out: no answers here)."""
    bought = pure_purchases(deals)
    as_of = period.as_of(now)
    quarter = Period.of(PeriodKind.QUARTER, as_of - timedelta(microseconds=1))
    out = {}
    for company, card in zip(companies, pure_cards(companies), strict=True):
        key = card.client_key
        ltv = client_ltv(bought, key, as_of)
        last = last_purchase_at(bought, key, as_of)
        status = return_status(bought, key, quarter, now=as_of)
        out[company.id] = CompanyMetrics(
            company.id, ltv.to_date, ltv.trailing, None if last is None else local_date(last),
            None if status is None else status.value, is_regular(bought, key, as_of), None,
            None, company.updated, client_nois_share(bought, card, as_of))
    return out


def assert_agree(session: Session, pid: int, deals: list[Deal], companies: list[Company], *,
                 period: Period, now: datetime, reps: Iterable[int] = (A, B)) -> None:
    """The compute service and the pure formulas agree on every purchase KPI and company."""
    rows, metrics = computed(session, pid, period, now)
    for rep in reps:
        expected = pure_rep_values(deals, companies, period, now, rep)
        got = {kpi.value: rows[rep, kpi.value].value for kpi in PURCHASE_KPIS}
        assert got == expected, (rep, period.label, now)
        previous = pure_previous(deals, companies, period, now, rep)
        assert {k: rows[rep, k].target for k in previous} == previous, (rep, period.label)
    assert metrics == pure_companies(deals, companies, period, now)


# ---------------------------------------------------------------- purchase KPIs: the table

C1, C2, C3, C4, C5, C6 = 1, 2, 3, 4, 5, 6
DEALS = [
    Deal(1, A, C1, None, "S", "100000", date(2026, 7, 10)),
    Deal(2, A, C1, None, "S", "50000", date(2026, 10, 5)),
    Deal(3, B, C1, None, "S", "70000", date(2026, 11, 30)),  # one client, two reps
    Deal(4, B, C1, None, "S", "30000", date(2026, 12, 1)),  # the first day of December
    Deal(5, A, C2, None, "S", "200000", date(2026, 11, 10)),
    Deal(6, A, C2, None, "F", "80000", date(2026, 11, 12)),  # won, then refunded: lost now
    Deal(7, A, None, 7, "S", "40000", date(2026, 8, 20)),  # a contact without a company
    Deal(8, A, None, None, "S", "15000", date(2026, 11, 2)),  # no client: volume only
    Deal(9, A, C4, None, "S", "0", date(2026, 11, 3)),  # a zero "won" placeholder
    Deal(10, B, C4, None, "S", "60000", date(2026, 11, 4), deleted=True),
    Deal(11, HEAD, C2, None, "S", "10000", date(2026, 11, 20)),  # not a rep: clients only
    Deal(12, A, C5, None, "S", "25000", date(2025, 11, 15)),
    Deal(13, B, C6, None, "S", "10000", date(2026, 1, 15)),
    Deal(14, B, C6, None, "S", "10000", date(2026, 3, 10)),
    Deal(15, B, C6, None, "S", "10000", date(2026, 11, 11)),
    Deal(16, A, C1, None, "P", "99999", date(2026, 12, 20)),  # open
    Deal(17, A, C3, None, "S", "5000", None),  # won without a close date
]
COMPANIES = [
    Company(C1, A, "1000000.00", date(2026, 11, 1)),
    Company(C2, A),
    Company(C3, B, 500000.0, date(2026, 5, 1)),
    Company(C4, B, "0"),
    Company(C5, A, "300000|RUB", date(2025, 12, 1)),
    Company(C6, B, 120000, date(2026, 10, 10)),
]
# 2026-11-30 17:10 UTC is 2026-12-01 00:10 in Novosibirsk: December already.
BOUNDARY = datetime(2026, 11, 30, 17, 10, tzinfo=UTC)


@pytest.fixture
def sales(sessions: sessionmaker[Session], portal_id: int) -> int:
    """The portal with the table's deals and companies."""
    with sessions.begin() as session:
        add_deals(session, portal_id, DEALS)
        add_companies(session, portal_id, COMPANIES)
    return portal_id


def values(rows: Mapping[tuple[int, str], RepKpi], rep: int) -> dict[str, Any]:
    return {kpi.value: rows[rep, kpi.value].value for kpi in PURCHASE_KPIS}


def test_purchase_kpis_of_a_closed_month(sessions: sessionmaker[Session], sales: int) -> None:
    with sessions() as session:
        rows, metrics = computed(session, sales, month("2026-11"), BOUNDARY)
    # A: November = deals 5 and 8 (the refund and the zero deal are no purchases). ER of Q4:
    # of {c1, contact 7} bought in Q3 only c1 came back. LTV: c1 150k, c2 200k, contact 7 40k.
    # New in 2026 and A's first: c1 (Jul, Oct, Nov: active), c2 and contact 7 (pending).
    # NOIS: only c1 has a budget: 150k / 1M.
    assert values(rows, A) == {"sales_volume": D("215000.00"), "return_rate": D("50.00"),
                               "ltv": D("130000.00"), "new_active_clients": D(1),
                               "nois_share": D("15.00")}
    # B: deal 3 on the last day of November and deal 15; nobody bought from B in Q3; c1 (70k
    # of B's) and c6 (3 × 10k) are B's active clients; (70k + 30k) / (1M + 120k) = 8.93 %.
    assert values(rows, B) == {"sales_volume": D("80000.00"), "return_rate": None,
                               "ltv": D("50000.00"), "new_active_clients": D(1),
                               "nois_share": D("8.93")}
    assert rows[A, "return_rate"].status == "below" and rows[B, "return_rate"].status == "no_data"
    # Details are Russian text: money with a non-breaking thousands space, no decimal point.
    assert rows[A, "ltv"].detail == "активных клиентов: 3; за 12 мес. в среднем: 130\u00a0000 ₽"
    assert rows[A, "sales_volume"].status == "no_data"  # no plan configured
    assert {rep for rep, _ in rows} == {A, B}  # the head, an outsider and a leaver are no reps
    assert "crm_freshness" not in {kpi for _, kpi in rows}  # a closed period: no snapshot
    assert metrics[C1] == CompanyMetrics(C1, D("220000.00"), D("220000.00"), date(2026, 11, 30),
                                         "returning", True, None, None, date(2026, 11, 1),
                                         D("0.2200"))
    assert metrics[C2] == CompanyMetrics(C2, D("210000.00"), D("210000.00"), date(2026, 11, 20),
                                         "new", False, None, None, None, None)
    assert metrics[C3] == CompanyMetrics(C3, D(0), D(0), None, None, False, None, None,
                                         date(2026, 5, 1), D("0.0000"))
    assert metrics[C4].ltv == 0 and metrics[C4].nois_share is None  # a budget of 0 is none
    assert (metrics[C5].ltv_12m, metrics[C5].return_status) == (D(0), "lost")
    assert (metrics[C6].return_status, metrics[C6].regular) == ("returning", True)
    assert metrics[C6].nois_share == D("0.2500")


def test_the_boundary_is_local_time(sessions: sessionmaker[Session], sales: int) -> None:
    # At 00:10 on 1 December (local) December has begun: deal 4 of that day is in it, though
    # it is still 30 November in UTC.
    with sessions() as session:
        rows, _ = computed(session, sales, month("2026-12"), BOUNDARY)
        running, _ = computed(session, sales, month("2026-11"),
                              nsk(2026, 11, 30, 23, 30))
    assert rows[B, "sales_volume"].value == D("30000.00")
    assert rows[A, "sales_volume"].value == D("0.00")
    assert running[B, "sales_volume"].value == D("80000.00")  # 30 Nov counts before midnight
    assert "crm_freshness" in {kpi for _, kpi in running}


def test_sql_agrees_with_the_formulas_on_the_table(sessions: sessionmaker[Session],
                                                   sales: int) -> None:
    # Months around the boundary, a quarter and a year; running, just begun and long closed.
    with sessions() as session:
        for label in ("2026-11", "2026-12", "2026-10", "2026-Q4", "2026"):
            for now in (BOUNDARY, nsk(2026, 11, 30, 23, 30), nsk(2027, 2, 1, 0, 0)):
                assert_agree(session, sales, DEALS, COMPANIES, period=month(label), now=now)


def test_no_purchases(sessions: sessionmaker[Session], portal_id: int) -> None:
    with sessions() as session:
        rows, metrics = computed(session, portal_id, month("2026-11"), BOUNDARY)
        assert_agree(session, portal_id, [], [], period=month("2026-11"), now=BOUNDARY)
    assert values(rows, A) == {"sales_volume": D("0.00"), "return_rate": None, "ltv": None,
                               "new_active_clients": D(0), "nois_share": None}
    assert rows[A, "ltv"].status == "no_data" and metrics == {}


def test_a_refund_recomputes_the_past(sessions: sessionmaker[Session], sales: int) -> None:
    # Deal 5 is returned too: moved to a lost stage, it leaves November for good.
    with sessions.begin() as session:
        deal = session.get_one(MirrorDeal, {"portal_id": sales, "id": 5})
        deal.semantic, deal.stage_id = "F", "LOSE"
    deals = [replace(d, semantic="F") if d.id == 5 else d for d in DEALS]
    with sessions() as session:
        rows, metrics = computed(session, sales, month("2026-11"), BOUNDARY)
        assert_agree(session, sales, deals, COMPANIES, period=month("2026-11"), now=BOUNDARY)
    assert rows[A, "sales_volume"].value == D("15000.00")
    assert metrics[C2].ltv == D("10000.00")  # the head's sale is all that is left


def test_refund_leaver_and_reps_without_clients(sessions: sessionmaker[Session],
                                               portal_id: int) -> None:
    # C1's only purchase was refunded (won, then moved to a lost stage); C2 bought from a rep
    # who has left; neither A nor B sold anything. The cards still show C2's purchase.
    deals = [Deal(1, A, C1, None, "F", "50000", date(2026, 11, 10)),
             Deal(2, RETIRED, C2, None, "S", "30000", date(2026, 11, 5))]
    companies = [Company(C1, A, "100000", date(2026, 11, 1)), Company(C2, RETIRED, "0")]
    with sessions.begin() as session:
        add_deals(session, portal_id, deals)
        add_companies(session, portal_id, companies)
    with sessions() as session:
        rows, metrics = computed(session, portal_id, month("2026-11"), BOUNDARY)
        assert_agree(session, portal_id, deals, companies, period=month("2026-11"),
                     now=BOUNDARY)
    assert {rep for rep, _ in rows} == {A, B}
    for rep in (A, B):
        assert values(rows, rep) == {"sales_volume": D("0.00"), "return_rate": None,
                                     "ltv": None, "new_active_clients": D(0),
                                     "nois_share": None}
        assert rows[rep, "client_card"].value is None  # no active clients: no data
    assert metrics[C1] == CompanyMetrics(C1, D(0), D(0), None, None, False, None, None,
                                         date(2026, 11, 1), D("0.0000"))
    assert (metrics[C2].ltv, metrics[C2].return_status, metrics[C2].nois_share) == (
        D("30000.00"), "new", None)


# ---------------------------------------------------------------- purchase KPIs: properties

CLIENTS = st.sampled_from([(C1, None), (C2, None), (C3, 8), (None, 7), (None, 8), (None, None)])
AMOUNTS = st.one_of(st.just(0), st.integers(1, 150_000_000)).map(lambda c: f"{c / 100:.2f}")
DAYS = st.one_of(st.none(), st.dates(date(2024, 10, 1), date(2027, 1, 31)))
DEAL_ROWS = st.lists(st.tuples(st.sampled_from([A, B, HEAD]), CLIENTS,
                               st.sampled_from("SSSSFP"), AMOUNTS, DAYS,
                               st.sampled_from([False] * 6 + [True])),
                     max_size=30)
NOWS = st.one_of(
    st.datetimes(datetime(2025, 6, 1), datetime(2027, 1, 31)).map(lambda d: d.replace(
        tzinfo=NSK)),
    st.dates(date(2025, 6, 1), date(2027, 1, 31)).map(local_midnight))  # exactly midnight
BUDGETS = st.sampled_from([None, "", "0", "250000.00", 1_000_000.0, 40000])


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=DEAL_ROWS, budgets=st.tuples(BUDGETS, BUDGETS, BUDGETS), now=NOWS,
       back=st.integers(0, 2), kind=st.sampled_from(["month", "month", "quarter", "year"]))
def test_sql_agrees_with_the_formulas(sessions: sessionmaker[Session], portal_id: int, *,
                                      rows: list[Any], budgets: tuple[Any, ...], now: datetime,
                                      back: int, kind: str) -> None:
    deals = [Deal(i + 1, rep, company, contact, semantic, amount, day, deleted)
             for i, (rep, (company, contact), semantic, amount, day, deleted) in enumerate(rows)]
    companies = [Company(cid, A if cid != C3 else B, budget, date(2026, 1, 1))
                 for cid, budget in zip((C1, C2, C3), budgets, strict=True)]
    period = Period.of(kind, now).shift(-back)
    with sessions.begin() as session:
        session.execute(delete(MirrorDeal).where(MirrorDeal.portal_id == portal_id))
        session.execute(delete(MirrorCompany).where(MirrorCompany.portal_id == portal_id))
        add_deals(session, portal_id, deals)
        add_companies(session, portal_id, companies)
    with sessions() as session:
        assert_agree(session, portal_id, deals, companies, period=period, now=now)


@given(moment=st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)),
       zone=st.sampled_from(["Asia/Novosibirsk", "Europe/Moscow", "UTC"]))
def test_date_bound(moment: datetime, zone: str) -> None:
    aware = moment.replace(tzinfo=ZoneInfo(zone))
    bound = date_bound(aware, zone)
    assert local_midnight(bound, zone) >= aware > local_midnight(bound - timedelta(days=1), zone)


# ---------------------------------------------------------------- month-scoped KPIs

NOV, DEC = month("2026-11"), month("2026-12")
AFTER_NOV = nsk(2026, 12, 5)


def activity(aid: int, rep: int, when: datetime | None, *, type_id: int = 1,
             done: bool = True, subject: str = "Визит к клиенту", owner: tuple[int, int] = (4, C1),
             direction: int = 0, provider: str = "CRM_MEETING",
             created: datetime | None = None) -> MirrorActivity:
    return MirrorActivity(id=aid, responsible_id=rep, type_id=type_id, completed=done,
                          subject=subject, provider_id=provider, direction=direction,
                          owner_type_id=owner[0], owner_id=owner[1],
                          bindings=[list(owner)] if owner[1] else [], start_time=when,
                          end_time=when, created_at=created or when)


def task(tid: int, title: str, creator: int, created: datetime, *, group: int = 0,
         responsible: int | None = None, status: int = 2, deadline: datetime | None = None,
         closed: datetime | None = None) -> MirrorTask:
    return MirrorTask(id=tid, title=title, created_by=creator,
                      responsible_id=creator if responsible is None else responsible,
                      created_at=created, group_id=group, status=status, deadline=deadline,
                      closed_at=closed)


def clock(cid: int, rep: int, start: datetime, *, state: str = "answered",
          stopped: datetime | None = None, minutes: float | None = None,
          policy: str = "task") -> SlaClock:
    due = CAL.add_working_minutes(start, 120)
    return SlaClock(id=cid, policy=policy, subject_type="task", subject_id=cid,
                    responsible_id=rep, started_at=start, warn_at=start, due_at=due,
                    state=state, stopped_at=stopped, working_minutes=minutes)


def answer(aid: int, contact: int, company: int | None, score: int, wave: str, *,
           when: datetime) -> NpsAnswer:
    return NpsAnswer(id=aid, contact_id=contact, company_id=company, score=score, wave=wave,
                     answered_at=when, source="crm_field")


@pytest.fixture
def work(sessions: sessionmaker[Session], portal_id: int) -> int:
    """A month of the reps' work: activities, tasks, answers, clocks, verdicts, open deals."""
    pid = portal_id
    rows: list[Any] = [
        MirrorDeal(id=40, semantic="S", amount=D(1000), close_date=date(2026, 10, 1),
                   company_id=C1, assigned_by_id=A),
        MirrorDeal(id=41, semantic="S", amount=D(1000), close_date=date(2026, 9, 1),
                   company_id=C2, assigned_by_id=B),
        MirrorDeal(id=50, title="Кухни: фасады", semantic="P", company_id=C1,
                   assigned_by_id=B, moved_at=nsk(2026, 12, 1, 10)),
        MirrorDeal(id=51, title="Шкафы-купе", semantic="P", company_id=C1, assigned_by_id=A,
                   moved_at=nsk(2026, 10, 1, 10)),
        # No MOVED_TIME: the stage history says when it entered its stage.
        MirrorDeal(id=52, title="Гардеробная", semantic="P", company_id=C1,
                   assigned_by_id=A, created_at=nsk(2026, 11, 2, 10)),
        MirrorStageHistory(id=900, owner_id=52, created_at=nsk(2026, 11, 30, 10)),
        MirrorCompany(id=C1, title="Кухни «Атлант»", assigned_by_id=A,
                      raw={"UF_CRM_CARD_UPDATED": "2026-11-01T00:00:00+07:00"}),
        MirrorCompany(id=C2, title="Шкафы «Лайм»", assigned_by_id=B, raw={}),
        MirrorContact(id=11, company_id=C1, assigned_by_id=A),
        MirrorContact(id=12, company_id=C1, assigned_by_id=A),
        MirrorContact(id=21, company_id=C2, assigned_by_id=B),
        MirrorContact(id=31, company_id=None, assigned_by_id=B),
        # Visits and trainings (November, Novosibirsk time).
        activity(1, A, nsk(2026, 11, 30, 23, 30)),
        activity(2, A, nsk(2026, 12, 1, 0, 10)),
        activity(3, A, nsk(2026, 11, 10), type_id=2, subject="Визит: согласование заказа",
                 provider="VOXIMPLANT_CALL"),
        activity(4, A, nsk(2026, 11, 11), done=False),
        activity(5, A, nsk(2026, 11, 12), owner=(0, 0)),
        activity(6, B, nsk(2026, 11, 13), owner=(2, 50)),
        activity(7, A, nsk(2026, 11, 14), subject="Обучение персонала: AVENTOS"),
        activity(8, A, nsk(2026, 11, 16), type_id=4, done=False, direction=2,
                 subject="Рассылка новинок: ноябрь", provider="CRM_EMAIL"),
        activity(9, A, nsk(2026, 11, 16), type_id=4, direction=2, owner=(4, C2),
                 subject="Рассылка новинок: ноябрь", provider="CRM_EMAIL"),
        activity(10, A, None, created=nsk(2026, 11, 17)),
        activity(20, B, nsk(2026, 12, 3), done=False, owner=(2, 50)),  # planned for deal 50
        activity(21, A, nsk(2026, 12, 4), done=False, owner=(2, 52)),  # planned for deal 52
        # Ideas, needs reports, the mailing task.
        task(1, "Идея: стенд в шоуруме", A, nsk(2026, 11, 3)),
        task(2, "Контент для соцсетей про AVENTOS", A, nsk(2026, 11, 5), group=MARKETING_GROUP),
        task(3, "Контент", B, nsk(2026, 12, 1, 0, 10), group=MARKETING_GROUP),
        task(4, "Потребности на неделю", A, nsk(2026, 11, 2, 9), group=PROCUREMENT_GROUP),
        task(5, "Заказные позиции", A, nsk(2026, 11, 10), group=PROCUREMENT_GROUP),
        task(6, "Потребности клиентов: петли", A, nsk(2026, 11, 16)),
        task(7, "Рассылка новинок: ноябрь", A, nsk(2026, 11, 18), status=5,
             closed=nsk(2026, 11, 20)),
        # Open work (for the December snapshot).
        task(8, "Счёт для «Атланта»", A, nsk(2026, 11, 20), deadline=nsk(2026, 12, 1, 17)),
        task(9, "КП для «Лайма»", A, nsk(2026, 11, 21), deadline=nsk(2026, 12, 10, 17)),
        task(10, "Закрытая задача", A, nsk(2026, 11, 22), status=5,
             deadline=nsk(2026, 11, 23, 17), closed=nsk(2026, 11, 23)),
        task(11, "Без срока", A, nsk(2026, 11, 23)),
        # NPS: two answers for A's c1 in H2 (one via an invitation), one in H1; B's c2 and a
        # contact without a company.
        answer(1, 11, C1, 10, "2026-H2", when=nsk(2026, 10, 10)),
        answer(2, 12, C1, 6, "2026-H2", when=nsk(2026, 10, 12)),
        answer(3, 11, C1, 9, "2026-H1", when=nsk(2026, 4, 10)),
        answer(4, 21, C2, 8, "2026-H2", when=nsk(2026, 10, 15)),
        answer(5, 31, None, 3, "2026-H2", when=nsk(2026, 10, 20)),
        SurveyInvitation(contact_id=11, wave="2026-H2", nonce="n1", rep_id=A),
        SurveyInvitation(contact_id=21, wave="2026-H2", nonce="n2", rep_id=B),
        # Response clocks of A.
        clock(1, A, nsk(2026, 11, 2, 10), stopped=nsk(2026, 11, 2, 11), minutes=60.0),
        clock(2, A, nsk(2026, 11, 3, 10), stopped=nsk(2026, 11, 3, 14), minutes=240.0),
        clock(3, A, nsk(2026, 11, 4, 10), state="running"),
        clock(4, A, nsk(2026, 11, 5, 10), state="cancelled"),
        clock(5, A, nsk(2026, 11, 6, 10), state="running", policy="crm"),
        clock(6, A, nsk(2026, 12, 1, 10), state="running"),
        clock(7, A, nsk(2026, 10, 5, 10), stopped=nsk(2026, 10, 5, 10, 30)),
        # Task format verdicts of A.
        *(TaskFormatCheck(task_id=tid, created_by=A, task_created_at=when,
                          compliant_at_creation=ok)
          for tid, when, ok in ((1, nsk(2026, 11, 3), True), (2, nsk(2026, 11, 5), True),
                                (6, nsk(2026, 11, 16), False), (3, nsk(2026, 12, 2), False))),
    ]
    with sessions.begin() as session:
        for row in rows:
            row.portal_id = pid
        session.add_all(rows)
    return pid


def shown(rows: Mapping[tuple[int, str], RepKpi], rep: int, *kpis: KpiId) -> list[Any]:
    return [rows[rep, k.value].value for k in kpis]


def test_activity_kpis(sessions: sessionmaker[Session], work: int) -> None:
    with sessions() as session:
        rows, _ = computed(session, work, NOV, AFTER_NOV)
    counts = (KpiId.VISITS, KpiId.TRAININGS, KpiId.NEW_PRODUCTS_MAILING, KpiId.MARKETING_IDEAS)
    # Visits of A: 1 (23:30 on the 30th), 7 (a training at the client), 10 (no start: its
    # creation); 2 is December, 3 a call that only arranges a visit (the «Визит» marker
    # counts on to-dos), 4 not done, 5 bound to no client. B's 6 is bound to deal 50 of c1.
    # One mailing subject (two e-mails and the task). Ideas: 1 and 2.
    assert shown(rows, A, *counts) == [D(3), D(1), D(1), D(2)]
    assert shown(rows, B, *counts) == [D(1), D(0), D(0), D(0)]
    assert rows[A, "visits"].status == "below" and rows[A, "trainings"].status == "ok"
    # Needs reports in the weeks of 2, 9 and 16 November; the week of the 23rd is missed.
    assert rows[A, "procurement_needs"].value == D("75.00")
    assert rows[A, "procurement_needs"].detail == "нет отчёта за недели с 23.11"
    assert rows[B, "procurement_needs"].value == D("0.00")


def test_nps_sla_format_and_card(sessions: sessionmaker[Session], work: int) -> None:
    with sessions() as session:
        rows, metrics = computed(session, work, NOV, AFTER_NOV)
    # A: 10 (promoter) and 6 (detractor) in 2026-H2; B: 8 and 3 (the contact's owner).
    assert shown(rows, A, KpiId.NPS, KpiId.NPS_COVERAGE) == [D("0.00"), D("100.00")]
    assert shown(rows, B, KpiId.NPS, KpiId.NPS_COVERAGE) == [D("-50.00"), D("0.00")]
    # Clocks: 1 in time, 2 late, 3 breached and silent; 4 cancelled, 5 a CRM request, 6 in
    # December. October had one clock, in time: the SLA fell.
    sla = rows[A, "response_sla"]
    assert (sla.value, sla.target, sla.status) == (D("33.33"), D("100.00"), "below")
    assert rows[A, "task_format"].value == D("66.67")
    assert shown(rows, A, KpiId.CLIENT_CARD) == [D("100.00")]
    assert shown(rows, B, KpiId.CLIENT_CARD) == [D("0.00")]
    assert (metrics[C1].nps_last, metrics[C1].nps_date) == (6, date(2026, 10, 12))
    assert (metrics[C2].nps_last, metrics[C2].nps_date) == (8, date(2026, 10, 15))


def test_freshness_is_a_snapshot_of_the_running_month(sessions: sessionmaker[Session],
                                                      work: int) -> None:
    with sessions() as session:
        rows, _ = computed(session, work, DEC, nsk(2026, 12, 2, 12))
    fresh = rows[A, "crm_freshness"]
    # A: deal 51 stale (no planned activity, in its stage since 1 October: 21 + 20 + 2
    # working days), deal 52 fresh (the stage history says 30 November, not its creation),
    # task 8 overdue; tasks 1, 2, 4, 5, 6, 9, 11 open and fresh; card c1 fresh: 9 of 11.
    assert fresh.value == D("81.82")
    assert fresh.detail.splitlines() == [
        "Сделка «Шкафы-купе»: нет запланированного дела; стадия не менялась 43 рабочих дня "
        "(допустимо до 10)",
        "Задача «Счёт для «Атланта»»: просрочена: срок 01.12.2026 17:00"]
    # B: deal 50 and task 3 fresh, the card of c2 never updated.
    assert rows[B, "crm_freshness"].value == D("66.67")
    assert rows[B, "crm_freshness"].detail == (
        "Карточка клиента «Шкафы «Лайм»»: карточка ни разу не обновлялась")


# ---------------------------------------------------------------- reps, options, storage


def test_reps(sessions: sessionmaker[Session], portal_id: int) -> None:
    with sessions() as session:
        assert [r.user_id for r in sales_reps(session, portal_id)] == [A, B]
        assert [r.user_id for r in sales_reps(session, portal_id, include_head=True)] == [
            A, B, HEAD]
        assert [r.user_id for r in sales_reps(session, portal_id, department_ids=[REGION])] \
            == []  # B heads the region
        assert [r.user_id for r in sales_reps(session, portal_id, department_ids=[ROOT])] == [
            A, B, HEAD, OTHER]  # the root's head (user 1) is not mirrored here


def test_monthly_targets_scale_with_the_period(sessions: sessionmaker[Session],
                                               work: int) -> None:
    with sessions() as session:
        rows, _ = computed(session, work, month("2026-Q4"), AFTER_NOV,
                           plans={A: D(1_000_000)})
    assert rows[A, "visits"].target == D("90.0")  # 30 a month
    assert rows[A, "sales_volume"].target == D(3_000_000)
    assert rows[A, "return_rate"].target == D("70.0")


def test_smart_invoices_are_refused(sessions: sessionmaker[Session], portal_id: int) -> None:
    with sessions() as session, pytest.raises(PurchaseSourceError, match="smart invoices"):
        compute_period(session, portal_id, NOV, now=AFTER_NOV, calendar=CAL,
                       settings=KpiSettings(purchase_source="smart_invoices"))


def test_store_upserts_and_writes_nothing_twice(sessions: sessionmaker[Session],
                                                sales: int) -> None:
    with sessions() as session:
        rows, _ = compute_period(session, sales, NOV, now=BOUNDARY, settings=KPI,
                                 calendar=CAL)
    with sessions.begin() as session:
        assert store(session, sales, rows) == len(rows)
    with sessions.begin() as session:
        assert store(session, sales, rows) == 0
        changed = [replace(rows[0], value=D("1.5"), status="below")]
        assert store(session, sales, changed) == 1
    with sessions() as session:
        row = session.get_one(KpiValue, {"portal_id": sales, "period": "2026-11",
                                         "rep_id": rows[0].rep_id, "kpi": rows[0].kpi})
        assert (row.value, row.status, row.period_start) == (D("1.5"), "below",
                                                             date(2026, 11, 1))
