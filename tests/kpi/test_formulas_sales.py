"""Purchase KPIs as tables: volume, ER, client status, regularity, LTV, new clients, NOIS share."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from kpi.facts import Purchase, SaleRecord, client_key, purchases_from
from kpi.formulas import (
    ReturnStatus,
    active_clients,
    client_ltv,
    client_nois_share,
    is_regular,
    last_purchase_at,
    new_active_clients,
    nois_share,
    nois_share_trend,
    rep_ltv,
    return_rate,
    return_status,
    sales_volume,
)
from kpi.periods import Period
from tests.kpi.kpifactories import (
    ACME,
    BETA,
    GAMMA,
    A,
    B,
    buy,
    card,
    month,
    nsk,
    quarter,
    year_period,
)

D = Decimal
DELTA = "company:4"
NOV, Q3, Q4 = month(2026, 11), quarter(2026, 3), quarter(2026, 4)


def sale(record_id: int, semantic: str, amount: str, when: datetime | None, *, rep: int = A,
         company: int | None = 1, contact: int | None = None) -> SaleRecord:
    return SaleRecord(record_id, semantic, D(amount), when, rep, company, contact)


# ---- adapters: which deals (or smart invoices) are purchases ----

@pytest.mark.parametrize(("record", "expected"), [
    (sale(1, "S", "500", nsk(2026, 11, 5)), Purchase(ACME, A, D(500), nsk(2026, 11, 5), 1)),
    (sale(2, "F", "300", nsk(2026, 11, 5)), None),  # won, then moved to lost: a refund
    (sale(3, "P", "300", nsk(2026, 11, 5)), None),  # in progress
    (sale(4, "S", "300", None), None),  # no close date
    (sale(5, "S", "0", nsk(2026, 11, 5)), None),  # a placeholder "won" deal
    (sale(6, "S", "10", nsk(2026, 11, 5), company=None, contact=7),
     Purchase("contact:7", A, D(10), nsk(2026, 11, 5), 6)),
    (sale(7, "S", "10", nsk(2026, 11, 5), company=0, contact=0),
     Purchase(None, A, D(10), nsk(2026, 11, 5), 7)),
])
def test_purchases_from(record: SaleRecord, expected: Purchase | None) -> None:
    assert purchases_from([record]) == ([] if expected is None else [expected])


def test_client_key_and_fact_validation() -> None:
    assert client_key(5, 9) == "company:5"
    assert client_key(None, 9) == client_key(0, 9) == "contact:9"
    assert client_key(None, None) is None
    with pytest.raises(TypeError, match="Decimal"):
        Purchase(ACME, A, 10.5, nsk(2026, 11, 5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="aware"):
        Purchase(ACME, A, D(1), datetime(2026, 11, 5))


# ---- sales volume ----

TWO_REPS = [buy(ACME, A, "100.10", nsk(2026, 11, 5)), buy(ACME, B, "50.05", nsk(2026, 11, 6))]

@pytest.mark.parametrize(("purchases", "rep", "period", "kwargs", "amount", "deals"), [
    pytest.param([], A, NOV, {}, D(0), 0, id="no purchases"),
    pytest.param([buy(ACME, A, 100, nsk(2026, 11, 30, 23, 30)),
                  buy(ACME, A, 200, nsk(2026, 12, 1, 0, 10))], A, NOV, {}, D(100), 1,
                 id="23:30 +07 on 30 Nov is November"),
    pytest.param([buy(ACME, A, 100, nsk(2026, 11, 30, 23, 30)),
                  buy(ACME, A, 200, nsk(2026, 12, 1, 0, 10))], A, month(2026, 12), {}, D(200), 1,
                 id="00:10 +07 on 1 Dec is December"),
    pytest.param([buy(ACME, A, 7, nsk(2026, 11, 1, 0, 0)),
                  buy(ACME, A, 9, nsk(2026, 10, 31, 23, 59))], A, NOV, {}, D(7), 1,
                 id="local midnight opens the month"),
    pytest.param(purchases_from([sale(1, "S", "500", nsk(2026, 11, 5)),
                                 sale(2, "F", "300", nsk(2026, 11, 6))]), A, NOV, {}, D(500), 1,
                 id="refunded deal"),
    pytest.param(TWO_REPS, A, NOV, {}, D("100.10"), 1, id="client with two reps: A"),
    pytest.param(TWO_REPS, None, NOV, {}, D("150.15"), 2, id="team"),
    pytest.param([buy(None, A, 40, nsk(2026, 11, 5))], A, NOV, {}, D(40), 1,
                 id="sale without a client still counts"),
    pytest.param([buy(ACME, A, 10, nsk(2026, 11, 10)), buy(ACME, A, 20, nsk(2026, 11, 20))],
                 A, NOV, {"now": nsk(2026, 11, 15)}, D(10), 1, id="running month up to now"),
])
def test_sales_volume(purchases: list[Purchase], rep: int | None, period: Period, *,
                      kwargs: dict[str, Any], amount: Decimal, deals: int) -> None:
    result = sales_volume(purchases, rep, period, **kwargs)
    assert (result.amount, result.deals, result.plan, result.completion) == (amount, deals,
                                                                           None, None)


@pytest.mark.parametrize(("period", "plan", "completion"), [
    (NOV, D(1000), D("0.7500")),
    (Q4, D(3000), D("0.2500")),  # a quarter's plan is three monthly plans
    (NOV.next(), D(1000), D("0.0000")),
])
def test_sales_plan(period: Period, plan: Decimal, completion: Decimal) -> None:
    result = sales_volume([buy(ACME, A, 750, nsk(2026, 11, 5))], A, period, monthly_plan=D(1000))
    assert (result.plan, result.completion) == (plan, completion)
    assert sales_volume([], A, NOV, monthly_plan=D(0)).completion is None  # zero plan: no data


# ---- return rate ----

Q3_DAY, Q4_DAY = nsk(2026, 8, 10), nsk(2026, 11, 10)


@pytest.mark.parametrize(("purchases", "rep", "kwargs", "part", "whole", "value"), [
    pytest.param([], A, {}, 0, 0, None, id="no purchases"),
    pytest.param([buy(ACME, A, 1, Q4_DAY)], A, {}, 0, 0, None, id="no clients in P-1"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, A, 1, Q4_DAY), buy(BETA, A, 1, Q3_DAY),
                  buy(GAMMA, A, 1, Q4_DAY)], A, {}, 1, 2, D("0.5000"), id="one of two returned"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, A, 1, Q3_DAY), buy(ACME, A, 1, Q4_DAY),
                  buy(ACME, A, 1, Q4_DAY)], A, {}, 1, 1, D("1.0000"),
                 id="several purchases count once"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, B, 1, Q4_DAY)], A, {}, 0, 1, D("0.0000"),
                 id="two reps: moved to B, not returned for A"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, B, 1, Q4_DAY)], B, {}, 0, 0, None,
                 id="two reps: B had nothing in P-1"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, B, 1, Q4_DAY)], None, {}, 1, 1, D("1.0000"),
                 id="two reps: the team sees a return"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, B, 1, Q3_DAY), buy(ACME, A, 1, Q4_DAY)], B,
                 {}, 0, 1, D("0.0000"), id="two reps in P-1: each has the client"),
    pytest.param([buy(ACME, A, 1, nsk(2026, 9, 30, 23, 30)),
                  buy(ACME, A, 1, nsk(2026, 10, 1, 0, 10))], A, {}, 1, 1, D("1.0000"),
                 id="Q3 ends at local midnight"),
    pytest.param([buy(ACME, A, 1, nsk(2026, 10, 1, 0, 10)), buy(ACME, A, 1, nsk(2026, 10, 2))], A,
                 {}, 0, 0, None, id="both after local midnight: Q4 only"),
    pytest.param(purchases_from([sale(1, "F", "5", Q3_DAY), sale(2, "S", "5", Q4_DAY)]), A, {}, 0,
                 0, None, id="refunded deal in P-1 is no purchase"),
    pytest.param(purchases_from([sale(1, "S", "5", Q3_DAY), sale(2, "F", "5", Q4_DAY)]), A, {}, 0,
                 1, D("0.0000"), id="refunded deal in P is no return"),
    pytest.param([buy(ACME, A, 1, Q3_DAY), buy(ACME, A, 1, nsk(2026, 11, 20))], A,
                 {"now": nsk(2026, 11, 1)}, 0, 1, D("0.0000"), id="running quarter up to now"),
    pytest.param([buy(None, A, 1, Q3_DAY), buy(None, A, 1, Q4_DAY)], A, {}, 0, 0, None,
                 id="sales without a client are not clients"),
])
def test_return_rate(purchases: list[Purchase], rep: int | None, *, kwargs: dict[str, Any],
                     part: int, whole: int, value: Decimal | None) -> None:
    result = return_rate(purchases, rep, Q4, **kwargs)
    assert (result.part, result.whole, result.value) == (part, whole, value)


# ---- a client's return status and regularity (company card fields) ----

@pytest.mark.parametrize(("days", "kwargs", "expected"), [
    ([], {}, None),
    ([nsk(2026, 11, 3)], {}, ReturnStatus.NEW),
    ([nsk(2026, 8, 3), nsk(2026, 11, 3)], {}, ReturnStatus.RETURNING),
    ([nsk(2026, 2, 3), nsk(2026, 11, 3)], {}, ReturnStatus.RETURNING),  # a comeback after a gap
    ([nsk(2026, 8, 3)], {}, ReturnStatus.AT_RISK),
    ([nsk(2026, 5, 3)], {}, ReturnStatus.AT_RISK),  # P−2: one empty quarter so far
    ([nsk(2026, 2, 3)], {}, ReturnStatus.LOST),  # more than two quarters without a purchase
    ([nsk(2024, 2, 3)], {}, ReturnStatus.LOST),
    ([nsk(2026, 4, 1, 0, 10)], {}, ReturnStatus.AT_RISK),  # P−2 opens at local midnight
    ([nsk(2026, 3, 31, 23, 30)], {}, ReturnStatus.LOST),
    ([nsk(2026, 8, 3), nsk(2026, 11, 20)], {"now": nsk(2026, 11, 1)}, ReturnStatus.AT_RISK),
])
def test_return_status(days: list[datetime], kwargs: dict[str, Any],
                       expected: ReturnStatus | None) -> None:
    purchases = [buy(ACME, A if i % 2 else B, 1, day) for i, day in enumerate(days)]
    purchases.append(buy(BETA, A, 1, nsk(2026, 11, 3)))  # other clients do not interfere
    assert return_status(purchases, ACME, Q4, **kwargs) == expected


def test_return_status_titles() -> None:
    assert [s.title_ru for s in ReturnStatus] == ["новый", "возвращающийся", "под угрозой",
                                                 "потерян"]


AS_OF = nsk(2026, 12, 1, 0, 0)  # the end of November: the window is Dec 2025 .. Nov 2026


@pytest.mark.parametrize(("days", "regular"), [
    ([], False),
    ([nsk(2026, 1, 5), nsk(2026, 1, 25), nsk(2026, 2, 5)], False),  # two distinct months
    ([nsk(2026, 1, 5), nsk(2026, 2, 5), nsk(2026, 11, 5)], True),
    ([nsk(2025, 11, 30, 23, 30), nsk(2026, 2, 5), nsk(2026, 11, 5)], False),  # before window
    ([nsk(2025, 12, 1, 0, 10), nsk(2026, 2, 5), nsk(2026, 11, 5)], True),  # inside it
    ([nsk(2026, 1, 5), nsk(2026, 2, 5), nsk(2026, 12, 1, 0, 10)], False),  # after as_of
])
def test_is_regular(days: list[datetime], regular: bool) -> None:
    purchases = [buy(ACME, A if i % 2 else B, 1, day) for i, day in enumerate(days)]
    assert is_regular(purchases, ACME, AS_OF) is regular


def test_last_purchase_and_active_clients() -> None:
    purchases = [buy(ACME, A, 1, nsk(2026, 3, 1)), buy(ACME, B, 1, nsk(2026, 12, 5)),
                 buy(BETA, A, 1, nsk(2025, 11, 30, 23, 30)),
                 buy(GAMMA, A, 1, nsk(2025, 12, 1, 0, 0))]
    assert last_purchase_at(purchases, ACME) == nsk(2026, 12, 5)
    assert last_purchase_at(purchases, ACME, AS_OF) == nsk(2026, 3, 1)
    assert last_purchase_at(purchases, "company:99") is None
    assert active_clients(purchases, A, AS_OF) == {ACME, GAMMA}
    assert active_clients(purchases, B, AS_OF) == frozenset()
    assert active_clients([], A, AS_OF) == frozenset()


# ---- LTV ----

@pytest.mark.parametrize(("purchases", "ltv"), [
    ([], (D(0), D(0), 0)),
    ([buy(ACME, A, "1500.50", nsk(2026, 6, 1))], (D("1500.50"), D("1500.50"), 1)),  # one purchase
    ([buy(ACME, A, 200, nsk(2024, 6, 1)), buy(ACME, B, 100, nsk(2026, 6, 1))], (D(300), D(100), 2)),
    ([buy(ACME, A, 5, nsk(2025, 11, 30, 23, 30)), buy(ACME, A, 7, nsk(2025, 12, 1, 0, 10))],
     (D(12), D(7), 2)),  # the trailing window opens at local midnight
    ([buy(ACME, A, 5, nsk(2026, 12, 1, 0, 10))], (D(0), D(0), 0)),  # after as_of
    (purchases_from([sale(1, "S", "10", nsk(2026, 6, 1)), sale(2, "F", "90", nsk(2026, 7, 1))]),
     (D(10), D(10), 1)),  # refunded deal
])
def test_client_ltv(purchases: list[Purchase], ltv: tuple[Decimal, Decimal, int]) -> None:
    result = client_ltv(purchases, ACME, AS_OF)
    assert (result.to_date, result.trailing, result.purchases) == ltv


def test_rep_ltv() -> None:
    purchases = [
        buy(ACME, A, 200, nsk(2024, 5, 1)), buy(ACME, A, 100, nsk(2026, 5, 1)),
        buy(ACME, B, 1000, nsk(2026, 6, 1)),  # B's sale is not A's work
        buy(BETA, A, 50, nsk(2026, 7, 1)),
        buy(GAMMA, A, 999, nsk(2024, 7, 1)),  # not active: left out of the mean
    ]
    result = rep_ltv(purchases, A, NOV)
    assert (result.clients, result.to_date, result.trailing) == (2, D("175.00"), D("75.00"))
    result_b = rep_ltv(purchases, B, NOV)
    assert (result_b.clients, result_b.to_date, result_b.trailing) == (1, D(1000), D(1000))
    empty = rep_ltv([], A, NOV)
    assert (empty.clients, empty.to_date, empty.trailing) == (0, None, None)
    one = rep_ltv([buy(ACME, A, "10.01", nsk(2026, 11, 2))], A, NOV)
    assert (one.to_date, one.trailing) == (D("10.01"), D("10.01"))  # one purchase


# ---- new active clients ----

Y2026 = year_period(2026)


@pytest.mark.parametrize(("purchases", "rep", "kwargs", "active", "pending"), [
    pytest.param([], A, {}, (), (), id="no purchases"),
    pytest.param([buy(ACME, A, 1, nsk(2026, 2, 1)), buy(ACME, A, 1, nsk(2026, 3, 1)),
                  buy(ACME, A, 1, nsk(2026, 4, 1))], A, {}, (ACME,), (), id="three months"),
    pytest.param([buy(ACME, A, 1, nsk(2026, 2, 1)), buy(ACME, A, 1, nsk(2026, 2, 9)),
                  buy(ACME, A, 1, nsk(2026, 3, 1))], A, {}, (), (ACME,), id="two distinct months"),
    pytest.param([buy(BETA, A, 1, nsk(2025, 6, 1)), buy(BETA, A, 1, nsk(2026, 2, 1)),
                  buy(BETA, A, 1, nsk(2026, 3, 1)), buy(BETA, A, 1, nsk(2026, 4, 1))], A, {}, (),
                 (), id="an old client is not new"),
    pytest.param([buy(DELTA, B, 1, nsk(2026, 3, 1)), buy(DELTA, A, 1, nsk(2026, 4, 1)),
                  buy(DELTA, A, 1, nsk(2026, 5, 1))], B, {}, (DELTA,), (),
                 id="two reps: the first seller gets the client"),
    pytest.param([buy(DELTA, B, 1, nsk(2026, 3, 1)), buy(DELTA, A, 1, nsk(2026, 4, 1)),
                  buy(DELTA, A, 1, nsk(2026, 5, 1))], A, {}, (), (), id="two reps: not the other"),
    pytest.param([buy(DELTA, B, 1, nsk(2026, 3, 1, 9)), buy(DELTA, A, 1, nsk(2026, 3, 1, 15)),
                  buy(DELTA, A, 1, nsk(2026, 4, 1)), buy(DELTA, A, 1, nsk(2026, 5, 1))], A, {},
                 (DELTA,), (), id="two reps on the first day: both"),
    pytest.param([buy(ACME, A, 1, nsk(2025, 12, 31, 23, 30)), buy(ACME, A, 1, nsk(2026, 2, 1)),
                  buy(ACME, A, 1, nsk(2026, 3, 1))], A, {}, (), (), id="first buy in 2025 local"),
    pytest.param([buy(ACME, A, 1, nsk(2026, 1, 1, 0, 10)), buy(ACME, A, 1, nsk(2026, 2, 1)),
                  buy(ACME, A, 1, nsk(2026, 3, 1))], A, {}, (ACME,), (), id="first buy in 2026"),
    pytest.param(purchases_from([sale(1, "F", "5", nsk(2025, 6, 1)),
                                 sale(2, "S", "5", nsk(2026, 2, 1)),
                                 sale(3, "S", "5", nsk(2026, 3, 1)),
                                 sale(4, "S", "5", nsk(2026, 4, 1))]), A, {}, (ACME,), (),
                 id="a refunded earlier deal does not make an old client"),
    pytest.param([buy(GAMMA, A, 1, nsk(2026, 11, 1)), buy(GAMMA, A, 1, nsk(2026, 12, 1)),
                  buy(GAMMA, A, 1, nsk(2027, 1, 10))], A, {}, (), (GAMMA,),
                 id="months after the year do not count"),
    pytest.param([buy(ACME, A, 1, nsk(2026, 2, 1)), buy(ACME, A, 1, nsk(2026, 3, 1)),
                  buy(ACME, A, 1, nsk(2026, 4, 1))], A, {"now": nsk(2026, 3, 15)}, (), (ACME,),
                 id="running year up to now"),
])
def test_new_active_clients(purchases: list[Purchase], rep: int, kwargs: dict[str, Any],
                            active: tuple[str, ...], pending: tuple[str, ...]) -> None:
    result = new_active_clients(purchases, rep, Y2026, **kwargs)
    assert (result.active, result.pending, result.count) == (active, pending, len(active))


# ---- NOIS share ----

@pytest.mark.parametrize(("budget", "purchases", "share"), [
    (None, [buy(ACME, A, 100, nsk(2026, 6, 1))], None),  # missing budget
    ("0", [buy(ACME, A, 100, nsk(2026, 6, 1))], None),
    ("1000000", [], D("0.0000")),  # no purchases
    ("1000000", [buy(ACME, A, 100000, nsk(2026, 6, 1)), buy(ACME, B, 50000, nsk(2026, 7, 1))],
     D("0.1500")),  # both reps' purchases: the client's share of wallet
    ("1000000", [buy(ACME, A, 900000, nsk(2025, 6, 1)), buy(ACME, A, 100000, nsk(2026, 6, 1))],
     D("0.1000")),  # trailing 12 months only
    ("100000", [buy(ACME, A, 150000, nsk(2026, 6, 1))], D("1.5000")),  # not capped
])
def test_client_nois_share(budget: str | None, purchases: list[Purchase],
                           share: Decimal | None) -> None:
    assert client_nois_share(purchases, card(ACME, A, budget=budget), AS_OF) == share


def test_rep_nois_share_is_budget_weighted() -> None:
    cards = [card(ACME, A, budget="1000000"), card(BETA, A, budget="200000"), card(GAMMA, A)]
    purchases = [buy(ACME, A, 100000, nsk(2026, 6, 1)), buy(BETA, A, 100000, nsk(2026, 6, 1)),
                 buy(GAMMA, A, 70000, nsk(2026, 6, 1)),  # no budget: left out, counted apart
                 buy(ACME, B, 300000, nsk(2026, 6, 1))]  # B's own part of ACME's wallet
    result = nois_share(purchases, cards, A, NOV)
    # (0.10·1 000 000 + 0.50·200 000) ÷ 1 200 000 = 200 000 ÷ 1 200 000
    assert (result.value, result.clients, result.without_budget) == (D("0.1667"), 2, 1)
    assert nois_share(purchases, cards, B, NOV).value == D("0.3000")
    assert nois_share([], cards, A, NOV).value is None  # no purchases
    assert nois_share(purchases, [], A, NOV).value is None  # no budgets at all


def test_nois_share_trend_quarter_on_quarter() -> None:
    cards = [card(ACME, A, budget="1000000")]
    purchases = [buy(ACME, A, 100000, nsk(2026, 8, 1)), buy(ACME, A, 50000, nsk(2026, 11, 1))]
    trend = nois_share_trend(purchases, cards, A, Q4)
    assert (trend.previous.value, trend.current.value, trend.change) == (
        D("0.1000"), D("0.1500"), D("0.0500"))
    no_previous = nois_share_trend(purchases[1:], cards, A, Q4)
    assert (no_previous.previous.value, no_previous.change) == (None, None)
    running = nois_share_trend(purchases, cards, A, Q4, now=nsk(2026, 10, 15))
    assert (running.current.value, running.change) == (D("0.1000"), D("0.0000"))


def test_period_argument_is_any_kind() -> None:
    # A monthly return rate works the same way (the default P is a quarter).
    purchases = [buy(ACME, A, 1, nsk(2026, 10, 5)), buy(ACME, A, 1, nsk(2026, 11, 5))]
    assert return_rate(purchases, A, NOV).value == D(1)
    assert return_rate(purchases, A, Period.parse("2026-H2")).whole == 0
