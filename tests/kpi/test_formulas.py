"""The issue's acceptance edges across every KPI, properties, and the purity of the KPI core."""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpi import formulas
from kpi.calendar import WorkingCalendar
from kpi.definitions import DEFINITIONS, KpiId, evaluate, status
from kpi.facts import (
    Activity,
    OpenDeal,
    Purchase,
    SaleRecord,
    SlaClockFact,
    TaskFact,
    TaskFormatFact,
    purchases_from,
)
from kpi.formulas import (
    client_card,
    client_ltv,
    crm_freshness,
    mailings,
    marketing_ideas,
    new_active_clients,
    nois_share,
    nois_share_trend,
    nps,
    nps_coverage,
    procurement_needs,
    rep_ltv,
    response_sla,
    return_rate,
    sales_volume,
    task_format,
    trainings,
    visits,
)
from kpi.periods import PeriodKind, period_of
from tests.kpi.kpifactories import (
    ACME,
    BETA,
    GAMMA,
    NSK,
    A,
    B,
    act,
    answer,
    buy,
    card,
    month,
    nsk,
    quarter,
    task,
    year_period,
)

D = Decimal
NOV, Q4, H2, Y2026 = month(2026, 11), quarter(2026, 4), "2026-H2", year_period(2026)
NOW = nsk(2026, 12, 15)
CAL = WorkingCalendar()
LATE_NOV = nsk(2026, 11, 30, 23, 30)  # 16:30 UTC: still November in Novosibirsk
EARLY_DEC = nsk(2026, 12, 1, 0, 10)  # 2026-11-30 17:10 UTC: already December


# ---- edge 1: no purchases (no data at all) → a value, never a ZeroDivisionError ----

def _nothing(kpi: KpiId) -> Decimal | None:
    """Each KPI of a rep with no facts at all, as its formula's raw value."""
    values: dict[KpiId, Callable[[], Decimal | int | None]] = {
        KpiId.SALES_VOLUME: lambda: sales_volume([], A, NOV).amount,
        KpiId.RETURN_RATE: lambda: return_rate([], A, Q4).value,
        KpiId.NPS: lambda: nps([], A, H2).value,
        KpiId.NPS_COVERAGE: lambda: nps_coverage([], [], A, Q4).value,
        KpiId.LTV: lambda: rep_ltv([], A, Q4).to_date,
        KpiId.NEW_ACTIVE_CLIENTS: lambda: new_active_clients([], A, Y2026).count,
        KpiId.VISITS: lambda: visits([], A, NOV),
        KpiId.CRM_FRESHNESS: lambda: crm_freshness([], [], [], A, NOW, calendar=CAL).value,
        KpiId.CLIENT_CARD: lambda: client_card([], [], A, Q4).value,
        KpiId.NOIS_SHARE: lambda: nois_share([], [], A, Q4).value,
        KpiId.TRAININGS: lambda: trainings([], A, NOV),
        KpiId.NEW_PRODUCTS_MAILING: lambda: mailings([], [], A, NOV),
        KpiId.MARKETING_IDEAS: lambda: marketing_ideas([], A, NOV),
        KpiId.PROCUREMENT_NEEDS: lambda: procurement_needs([], A, NOV).share.value,
        KpiId.RESPONSE_SLA: lambda: response_sla([], A, NOV).value,
        KpiId.TASK_FORMAT: lambda: task_format([], A, NOV).value,
    }
    value = values[kpi]()
    return None if value is None else D(value)


NO_DATA: list[tuple[KpiId, Decimal | None, str]] = [
    (KpiId.SALES_VOLUME, D(0), "no_data"),  # 0 ₽, but no plan configured
    (KpiId.RETURN_RATE, None, "no_data"),  # no clients in P−1
    (KpiId.NPS, None, "no_data"),
    (KpiId.NPS_COVERAGE, None, "no_data"),
    (KpiId.LTV, None, "no_data"),
    (KpiId.NEW_ACTIVE_CLIENTS, D(0), "below"),
    (KpiId.VISITS, D(0), "below"),
    (KpiId.CRM_FRESHNESS, None, "no_data"),  # nothing to keep fresh
    (KpiId.CLIENT_CARD, None, "no_data"),
    (KpiId.NOIS_SHARE, None, "no_data"),
    (KpiId.TRAININGS, D(0), "below"),
    (KpiId.NEW_PRODUCTS_MAILING, D(0), "below"),
    (KpiId.MARKETING_IDEAS, D(0), "below"),
    (KpiId.PROCUREMENT_NEEDS, D(0), "below"),  # four weeks due, none reported
    (KpiId.RESPONSE_SLA, None, "no_data"),
    (KpiId.TASK_FORMAT, None, "no_data"),
]


@pytest.mark.parametrize(("kpi", "value", "verdict"), NO_DATA)
def test_no_data_gives_a_value_and_a_status(kpi: KpiId, value: Decimal | None,
                                            verdict: str) -> None:
    raw = _nothing(kpi)
    assert raw == value
    assert evaluate(kpi, raw, previous=raw).status == verdict


def test_the_no_data_table_covers_every_kpi() -> None:
    assert [row[0] for row in NO_DATA] == list(KpiId)


# ---- edge 2: a period boundary in Novosibirsk time, for every dated KPI ----

def _boundary_cases() -> list[tuple[str, Callable[[datetime], Any], Any]]:
    """(name, KPI of November given one event at an instant, the value if the event counts)."""
    old = [buy(ACME, A, 1, nsk(2026, 3, 1))]
    return [
        ("sales volume", lambda t: sales_volume([buy(ACME, A, 5, t)], A, NOV).amount, D(5)),
        ("return rate", lambda t: return_rate(
            [buy(ACME, A, 1, nsk(2026, 10, 5)), buy(ACME, A, 1, t)], A, NOV).value, D(1)),
        ("LTV", lambda t: client_ltv([buy(ACME, A, 5, t)], ACME, NOV.end).to_date, D(5)),
        ("visits", lambda t: visits([act(A, t)], A, NOV), 1),
        ("trainings", lambda t: trainings([act(A, t, subject="Обучение")], A, NOV), 1),
        ("mailing", lambda t: mailings(
            [act(A, t, type_id=4, direction=2, subject="Рассылка новинок")], [], A, NOV), 1),
        ("ideas", lambda t: marketing_ideas([task(A, t, "Идея: пост")], A, NOV), 1),
        ("client card", lambda t: client_card(
            [card(ACME, A, changed=t)], old, A, NOV).value, D(1)),
        ("NPS coverage", lambda t: nps_coverage(
            [answer(ACME, A, 9, "2026-H1", nsk(2026, 3, 1)), answer(ACME, A, 9, H2, t)], old, A,
            NOV).value, D(1)),
        ("response SLA", lambda t: response_sla(
            [SlaClockFact(A, t, True, 5.0)], A, NOV).in_time.whole, 1),
        ("task format", lambda t: task_format([TaskFormatFact(A, t, True)], A, NOV).whole, 1),
    ]


@pytest.mark.parametrize(("name", "compute", "counted"), _boundary_cases(),
                         ids=[c[0] for c in _boundary_cases()])
def test_novosibirsk_month_boundary(name: str, compute: Callable[[datetime], Any],
                                    counted: Any) -> None:
    assert compute(LATE_NOV) == counted, f"{name}: 30 Nov 23:30 +07 belongs to November"
    assert compute(EARLY_DEC) != counted, f"{name}: 1 Dec 00:10 +07 belongs to December"


# ---- edge 3: a client with two reps; edge 4: a refunded deal ----

def test_client_with_two_reps_counts_for_each_with_own_purchases() -> None:
    purchases = [buy(ACME, A, 100, nsk(2026, 8, 1)), buy(ACME, B, 300, nsk(2026, 8, 2)),
                 buy(ACME, A, 50, nsk(2026, 11, 1))]
    cards = [card(ACME, A, budget="1000")]
    assert sales_volume(purchases, A, Q4).amount == D(50)
    assert (return_rate(purchases, A, Q4).value, return_rate(purchases, B, Q4).value) == (
        D(1), D(0))
    assert (rep_ltv(purchases, A, Q4).to_date, rep_ltv(purchases, B, Q4).to_date) == (
        D(150), D(300))
    assert (nois_share(purchases, cards, A, Q4).value,
            nois_share(purchases, cards, B, Q4).value) == (D("0.15"), D("0.3"))
    assert client_ltv(purchases, ACME, Q4.end).to_date == D(450)  # the card sees everything


def test_refunded_deal_is_no_purchase_anywhere() -> None:
    records = [SaleRecord(1, "S", D(100), nsk(2026, 8, 1), A, 1),
               SaleRecord(2, "F", D(900), nsk(2026, 11, 1), A, 1),  # won, then refunded
               SaleRecord(3, "S", D(100), nsk(2026, 11, 2), A, 2)]
    purchases = purchases_from(records)
    assert sales_volume(purchases, A, NOV).amount == D(100)
    assert return_rate(purchases, A, Q4).value == D(0)  # ACME's only Q4 deal was refunded
    assert client_ltv(purchases, ACME, Q4.end).to_date == D(100)
    assert new_active_clients(purchases, A, Y2026).pending == (ACME, BETA)
    trend = nois_share_trend(purchases, [card(ACME, A, budget="1000")], A, Q4)
    assert trend.current.purchases == D(100)


# ---- properties ----

CLIENTS = st.sampled_from([ACME, BETA, GAMMA, "contact:7", None])
INSTANT = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31),
                       timezones=st.just(NSK))
AMOUNT = st.decimals(min_value=D("0.01"), max_value=D(10_000_000), places=2)
PURCHASES = st.lists(st.builds(Purchase, CLIENTS, st.sampled_from([A, B]), AMOUNT, INSTANT),
                     max_size=40)
PERIODS = st.builds(period_of, st.sampled_from(list(PeriodKind)), INSTANT)


@given(purchases=PURCHASES, period=PERIODS, rep=st.sampled_from([A, B, None]))
def test_return_rate_is_a_fraction(purchases: list[Purchase], period: Any,
                                   rep: int | None) -> None:
    result = return_rate(purchases, rep, period)
    assert 0 <= result.part <= result.whole
    assert result.value is None or D(0) <= result.value <= D(1)


@given(purchases=PURCHASES, as_of=INSTANT, rep=st.sampled_from([A, B, None]))
def test_ltv_to_date_covers_trailing(purchases: list[Purchase], as_of: datetime,
                                     rep: int | None) -> None:
    for client in (ACME, BETA):
        ltv = client_ltv(purchases, client, as_of)
        assert ltv.to_date >= ltv.trailing >= 0
    result = rep_ltv(purchases, rep, period_of("quarter", as_of), now=as_of)
    if result.clients:
        assert result.to_date is not None and result.trailing is not None
        assert result.to_date >= result.trailing > 0
    else:
        assert result.to_date is None and result.trailing is None


@given(purchases=PURCHASES, instant=INSTANT)
def test_sales_volume_adds_up_over_months_and_reps(purchases: list[Purchase],
                                                   instant: datetime) -> None:
    q = period_of("quarter", instant)
    team = sales_volume(purchases, None, q)
    by_month = sum((sales_volume(purchases, None, m).amount for m in q.month_periods()), D(0))
    by_rep = sum((sales_volume(purchases, r, q).amount for r in (A, B)), D(0))
    assert team.amount == by_month == by_rep


@given(scores=st.lists(st.integers(0, 10), max_size=30))
def test_nps_is_within_bounds(scores: list[int]) -> None:
    result = nps([answer(ACME, A, s, H2, nsk(2026, 10, 1)) for s in scores], A, H2)
    assert result.answers == len(scores)
    assert (result.value is None) == (not scores)
    assert result.value is None or D(-100) <= result.value <= D(100)


@given(purchases=PURCHASES, period=PERIODS, rep=st.sampled_from([A, B, None]))
def test_new_clients_are_new(purchases: list[Purchase], period: Any, rep: int | None) -> None:
    result = new_active_clients(purchases, rep, period)
    for client in result.active + result.pending:
        first = min(p.closed_at for p in purchases if p.client_key == client)
        assert period.contains(first)
    assert not set(result.active) & set(result.pending)


@given(stages=st.lists(st.tuples(INSTANT, st.booleans()), max_size=15),
       deadlines=st.lists(st.one_of(st.none(), INSTANT), max_size=15), now=INSTANT)
def test_freshness_counts_every_record_once(stages: list[tuple[datetime, bool]],
                                            deadlines: list[datetime | None],
                                            now: datetime) -> None:
    deals = [OpenDeal(i, "", A, since, planned) for i, (since, planned) in enumerate(stages)]
    tasks = [TaskFact(i, "", A, A, nsk(2024, 1, 1), deadline=d) for i, d in enumerate(deadlines)]
    result = crm_freshness(deals, tasks, [], A, now, calendar=CAL)
    assert result.total == len(deals) + len(tasks)
    assert result.fresh + len(result.stale) == result.total
    assert all(item.reasons for item in result.stale)


@given(days=st.lists(INSTANT, max_size=20), period=PERIODS, now=st.one_of(st.none(), INSTANT))
def test_procurement_weeks_are_a_fraction(days: list[datetime], period: Any,
                                          now: datetime | None) -> None:
    tasks = [task(A, d, "Потребности клиентов") for d in days]
    result = procurement_needs(tasks, A, period, now=now)
    assert set(result.reported) <= set(result.due) <= {w.monday for w in period.weeks()}
    value = result.share.value
    assert value is None or D(0) <= value <= D(1)


@given(value=st.one_of(st.none(), st.decimals(allow_nan=True, allow_infinity=True)),
       target=st.one_of(st.none(), st.decimals(allow_nan=True, allow_infinity=True)),
       comparison=st.sampled_from(["at_least", "all", "growth"]))
def test_status_never_raises(value: Decimal | None, target: Decimal | None,
                             comparison: str) -> None:
    assert status(value, target, comparison) in {"ok", "below", "no_data"}


# ---- the core stays pure and documented ----

KPI_DIR = Path(__file__).resolve().parents[2] / "kpi"
MY_MODULES = ("periods", "definitions", "facts", "formulas", "formulas_sales", "formulas_crm",
              "formulas_activity")


@pytest.mark.parametrize("name", MY_MODULES)
def test_modules_import_only_stdlib_and_kpi(name: str) -> None:
    tree = ast.parse((KPI_DIR / f"{name}.py").read_text("utf-8"))
    roots = {alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert roots <= set(sys.stdlib_module_names) | {"kpi"}, roots


def test_every_formula_has_a_one_line_definition() -> None:
    for name in formulas.__all__:
        obj = getattr(formulas, name)
        doc = inspect.getdoc(obj)
        assert doc and "\n" not in doc, name
    assert set(DEFINITIONS) == set(KpiId)


def test_facts_reject_naive_instants() -> None:
    naive = datetime(2026, 11, 30, 23, 30)
    for build in (lambda: Activity(1, 1, A, naive), lambda: TaskFact(1, "", A, A, naive),
                  lambda: SlaClockFact(A, naive, True, 1.0),
                  lambda: OpenDeal(1, "", A, naive, True)):
        with pytest.raises(ValueError, match="aware"):
            build()
