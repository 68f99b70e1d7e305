"""KPIs over purchases: sales volume, return rate, LTV, new active clients, NOIS share.

Conventions shared by every formula here:

* ``purchases`` is every purchase the caller has (all reps, any time; won deals or paid
  smart invoices, see ``kpi.facts.purchases_from``); each formula filters what it needs, so a
  refunded deal is simply absent and the source of purchases is the caller's business.
* ``rep_id`` None means the whole team. A client belongs to the rep of its purchases: a client
  who bought from two reps counts for each of them, with that rep's own purchases only.
  Client-level values for the company card (``client_ltv``, ``return_status``,
  ``client_nois_share``...) use all the client's purchases, whoever the rep.
* A period is measured up to ``period.as_of(now)``: its end, or ``now`` while it runs.
  Purchases without a client count in sales volume only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from kpi.definitions import DEFAULT_RULES, RecognitionRules, Share, money_mean, ratio
from kpi.facts import ClientCard, Purchase
from kpi.periods import DEFAULT_TZ, Period, local_date, require_aware, trailing_start, zone

ZERO = Decimal(0)


def _of_rep(purchases: Iterable[Purchase], rep_id: int | None) -> Iterator[Purchase]:
    return (p for p in purchases if rep_id is None or p.rep_id == rep_id)


def _month(moment: datetime, tz: str) -> tuple[int, int]:
    local = moment.astimezone(zone(tz))
    return local.year, local.month


def clients_buying(purchases: Iterable[Purchase], rep_id: int | None, start: datetime,
                   end: datetime) -> frozenset[str]:
    """Clients with at least one purchase by the rep closed in [start, end)."""
    return frozenset(p.client_key for p in _of_rep(purchases, rep_id)
                     if p.client_key is not None and start <= p.closed_at < end)


# ---------------------------------------------------------------- sales volume


@dataclass(frozen=True, slots=True)
class SalesVolume:
    """The rep's purchases in a period and the plan for it."""

    amount: Decimal
    deals: int
    plan: Decimal | None

    @property
    def completion(self) -> Decimal | None:
        """amount ÷ plan (4 places); None without a plan."""
        return ratio(self.amount, self.plan) if self.plan else None


def sales_volume(purchases: Iterable[Purchase], rep_id: int | None, period: Period, *,
                 monthly_plan: Decimal | None = None,
                 now: datetime | None = None) -> SalesVolume:
    """Σ amount of the rep's purchases closed in [start, as_of); plan = monthly plan × months."""
    end = period.as_of(now)
    amount, deals = ZERO, 0
    for p in _of_rep(purchases, rep_id):
        if period.start <= p.closed_at < end:
            amount += p.amount
            deals += 1
    plan = None if monthly_plan is None else monthly_plan * period.months
    return SalesVolume(amount, deals, plan)


# ---------------------------------------------------------------- return rate (ER)


def return_rate(purchases: Iterable[Purchase], rep_id: int | None, period: Period, *,
                now: datetime | None = None) -> Share:
    """ER = |C(P−1) ∩ C(P)| ÷ |C(P−1)|; C(X): clients with a purchase by the rep closed in X."""
    # P is a quarter by default (any period kind works). A client with two reps is in C(X) of
    # each rep that sold to it in X, so it returns for a rep only by buying from that rep again.
    items = list(purchases)
    prev = period.previous()
    before = clients_buying(items, rep_id, prev.start, prev.as_of(now))
    again = clients_buying(items, rep_id, period.start, period.as_of(now))
    return Share(len(before & again), len(before))


def active_clients(purchases: Iterable[Purchase], rep_id: int | None, as_of: datetime, *,
                   rules: RecognitionRules = DEFAULT_RULES,
                   tz: str = DEFAULT_TZ) -> frozenset[str]:
    """Active clients = clients with a purchase by the rep in [as_of − 12 months, as_of)."""
    start = trailing_start(as_of, rules.active_months, tz)
    return clients_buying(purchases, rep_id, start, require_aware(as_of, "as_of"))


class ReturnStatus(StrEnum):
    """A client's purchase rhythm in the current quarter (the company card field)."""

    NEW = "new"
    RETURNING = "returning"
    AT_RISK = "at_risk"
    LOST = "lost"

    @property
    def title_ru(self) -> str:
        """The Russian name shown in the card."""
        return {"new": "новый", "returning": "возвращающийся",
                "at_risk": "под угрозой", "lost": "потерян"}[self.value]


def return_status(purchases: Iterable[Purchase], client: str, quarter: Period, *,
                  now: datetime | None = None) -> ReturnStatus | None:
    """new: 1st buy in P; returning: in P and before; at_risk: last in P−1/P−2; lost: earlier."""
    # P is the quarter; any rep's purchases before as_of; None for a client who never bought.
    # at_risk = no purchase in P yet but one in P−1 or P−2 (the brief's "bought last quarter,
    # not yet this one", widened so that every client who ever bought has a status); lost = no
    # purchase for more than two quarters (P−2 and P−1 passed empty, none in P so far).
    # "returning" also covers a comeback after a gap (bought in P and at some time before P).
    end = quarter.as_of(now)
    times = [p.closed_at for p in purchases if p.client_key == client and p.closed_at < end]
    if not times:
        return None
    first, last = min(times), max(times)
    if last >= quarter.start:
        return ReturnStatus.RETURNING if first < quarter.start else ReturnStatus.NEW
    if last >= quarter.shift(-2).start:
        return ReturnStatus.AT_RISK
    return ReturnStatus.LOST


def is_regular(purchases: Iterable[Purchase], client: str, as_of: datetime, *,
               rules: RecognitionRules = DEFAULT_RULES, tz: str = DEFAULT_TZ) -> bool:
    """Regular: the client bought in ≥ 3 distinct local months of [as_of − 12 months, as_of)."""
    start = trailing_start(as_of, rules.active_months, tz)
    months = {_month(p.closed_at, tz) for p in purchases
              if p.client_key == client and start <= p.closed_at < as_of}
    return len(months) >= rules.regular_min_months


def last_purchase_at(purchases: Iterable[Purchase], client: str,
                     as_of: datetime | None = None) -> datetime | None:
    """The latest close instant of the client's purchases (any rep) before as_of."""
    times = [p.closed_at for p in purchases
             if p.client_key == client and (as_of is None or p.closed_at < as_of)]
    return max(times, default=None)


# ---------------------------------------------------------------- LTV


@dataclass(frozen=True, slots=True)
class Ltv:
    """A client's purchases to date and over the trailing 12 months."""

    to_date: Decimal
    trailing: Decimal
    purchases: int


def client_ltv(purchases: Iterable[Purchase], client: str, as_of: datetime, *,
               rules: RecognitionRules = DEFAULT_RULES, tz: str = DEFAULT_TZ) -> Ltv:
    """Σ the client's purchases (any rep) before as_of; trailing: in [as_of − 12 months, as_of)."""
    start = trailing_start(as_of, rules.active_months, tz)
    to_date = trailing = ZERO
    count = 0
    for p in purchases:
        if p.client_key == client and p.closed_at < as_of:
            to_date += p.amount
            count += 1
            if p.closed_at >= start:
                trailing += p.amount
    return Ltv(to_date, trailing, count)


@dataclass(frozen=True, slots=True)
class RepLtv:
    """Mean LTV over the rep's active clients (kopecks); None without active clients."""

    clients: int
    to_date: Decimal | None
    trailing: Decimal | None


def rep_ltv(purchases: Iterable[Purchase], rep_id: int | None, period: Period, *,
            now: datetime | None = None, rules: RecognitionRules = DEFAULT_RULES) -> RepLtv:
    """Mean over the rep's active clients of Σ the rep's purchases from each, to date and 12 mo."""
    # Own purchases only: a client taken over from a colleague brings the new rep only what
    # the new rep sold, so a rep's LTV growth is the rep's own work.
    as_of = period.as_of(now)
    start = trailing_start(as_of, rules.active_months, period.tz)
    to_date: dict[str, Decimal] = defaultdict(lambda: ZERO)
    trailing: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in _of_rep(purchases, rep_id):
        if p.client_key is not None and p.closed_at < as_of:
            to_date[p.client_key] += p.amount
            if p.closed_at >= start:
                trailing[p.client_key] += p.amount
    active = list(trailing)
    return RepLtv(len(active), money_mean(sum((to_date[c] for c in active), ZERO), len(active)),
                  money_mean(sum(trailing.values(), ZERO), len(active)))


# ---------------------------------------------------------------- new active clients


@dataclass(frozen=True, slots=True)
class NewClients:
    """New clients of the rep in a year: those already active, and those not yet."""

    active: tuple[str, ...]
    pending: tuple[str, ...]

    @property
    def count(self) -> int:
        """The KPI value: how many new clients became active."""
        return len(self.active)


def new_active_clients(purchases: Iterable[Purchase], rep_id: int | None, period: Period, *,
                       now: datetime | None = None,
                       rules: RecognitionRules = DEFAULT_RULES) -> NewClients:
    """Clients whose first purchase is in the period, by the rep, then in ≥ 3 distinct months."""
    # "First purchase" is the client's first with anyone (new to NOIS), and the months count
    # every rep's purchases up to as_of (regular with NOIS); the rep who made the first sale
    # gets the credit. The first purchase's month counts as one of the three. A first-day tie
    # credits each of them. Months after the period never count, so a closed year's value is
    # final (a client first buying in December cannot qualify for that year).
    as_of = period.as_of(now)
    by_client: dict[str, list[Purchase]] = defaultdict(list)
    for p in purchases:
        if p.client_key is not None and p.closed_at < as_of:
            by_client[p.client_key].append(p)
    active: list[str] = []
    pending: list[str] = []
    for client, items in by_client.items():
        first = min(p.closed_at for p in items)
        if first < period.start:
            continue
        first_day: date = local_date(first, period.tz)
        reps = {p.rep_id for p in items if local_date(p.closed_at, period.tz) == first_day}
        if rep_id is not None and rep_id not in reps:
            continue
        months = {_month(p.closed_at, period.tz) for p in items}
        (active if len(months) >= rules.new_client_min_months else pending).append(client)
    return NewClients(tuple(sorted(active)), tuple(sorted(pending)))


# ---------------------------------------------------------------- NOIS share


def _budgets(cards: Iterable[ClientCard]) -> dict[str, Decimal]:
    return {c.client_key: c.budget for c in cards if c.budget is not None and c.budget > 0}


def client_nois_share(purchases: Iterable[Purchase], card: ClientCard, as_of: datetime, *,
                      rules: RecognitionRules = DEFAULT_RULES,
                      tz: str = DEFAULT_TZ) -> Decimal | None:
    """Σ the client's purchases (any rep) in [as_of − 12 mo, as_of) ÷ declared annual budget."""
    # None without a budget > 0. Not capped at 1: a share above 100 % says the declared
    # budget is too low, which the card's owner should see.
    if card.budget is None or card.budget <= 0:
        return None
    ltv = client_ltv(purchases, card.client_key, as_of, rules=rules, tz=tz)
    return ratio(ltv.trailing, card.budget)


@dataclass(frozen=True, slots=True)
class NoisShare:
    """The rep's trailing purchases from active clients with a budget, and those budgets."""

    purchases: Decimal
    budgets: Decimal
    clients: int
    without_budget: int  # active clients left out for want of a declared budget

    @property
    def value(self) -> Decimal | None:
        """purchases ÷ budgets (4 places); None when no active client has a budget."""
        return ratio(self.purchases, self.budgets)


def _share(purchases: Iterable[Purchase], budgets: Mapping[str, Decimal], rep_id: int | None,
           as_of: datetime, *, tz: str, rules: RecognitionRules) -> NoisShare:
    start = trailing_start(as_of, rules.active_months, tz)
    bought: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for p in _of_rep(purchases, rep_id):
        if p.client_key is not None and start <= p.closed_at < as_of:
            bought[p.client_key] += p.amount
    with_budget = [c for c in bought if c in budgets]
    return NoisShare(sum((bought[c] for c in with_budget), ZERO),
                     sum((budgets[c] for c in with_budget), ZERO),
                     len(with_budget), len(bought) - len(with_budget))


def nois_share(purchases: Iterable[Purchase], cards: Iterable[ClientCard], rep_id: int | None,
               period: Period, *, now: datetime | None = None,
               rules: RecognitionRules = DEFAULT_RULES) -> NoisShare:
    """Σ the rep's 12-month purchases from active clients with a budget ÷ Σ their budgets."""
    # The window is [as_of − 12 months, as_of). This is the budget-weighted mean of the client
    # shares (Σ share·budget ÷ Σ budget), so a big client weighs by its wallet. Own purchases
    # only: two reps of one client each show the part of its budget they won.
    return _share(purchases, _budgets(cards), rep_id, period.as_of(now), tz=period.tz, rules=rules)


@dataclass(frozen=True, slots=True)
class NoisShareTrend:
    """The rep's NOIS share at the end of a period and of the one before."""

    current: NoisShare
    previous: NoisShare

    @property
    def change(self) -> Decimal | None:
        """current − previous share (fractions); None if either is missing."""
        now, before = self.current.value, self.previous.value
        return None if now is None or before is None else now - before


def nois_share_trend(purchases: Iterable[Purchase], cards: Iterable[ClientCard],
                     rep_id: int | None, period: Period, *, now: datetime | None = None,
                     rules: RecognitionRules = DEFAULT_RULES) -> NoisShareTrend:
    """Change = NOIS share at as_of of P − NOIS share at the end of P−1 (quarters by default)."""
    # The card keeps only the current budget, so both ends divide by today's budgets.
    items, budgets = list(purchases), _budgets(cards)
    return NoisShareTrend(
        _share(items, budgets, rep_id, period.as_of(now), tz=period.tz, rules=rules),
        _share(items, budgets, rep_id, period.previous().as_of(now), tz=period.tz, rules=rules))
