"""The purchase KPIs as SQL aggregates over ``mirror_deals``, the same SQL on SQLite and PostgreSQL.

A purchase is a mirrored deal that is not deleted, whose stage semantic is now ``S``, with a
close date and an amount > 0 (``kpi.facts.purchases_from``). ``close_date`` is CLOSEDATE's
local date, so the pure formulas' ``closed_at`` is its local midnight and an instant bound x
becomes the date bound ``date_bound(x)``: closed_at < x ⟺ close_date < date_bound(x). Every
window below is a half-open range of such dates, which is how the SQL and the pure formulas
agree to the day in Novosibirsk time.

Money is summed in integer kopecks: SQLite keeps NUMERIC as binary floats, and a float sum of
a million amounts drifts by kopecks. A client is one integer: +company_id, else −contact_id
(``kpi.facts.client_key``), NULL without either, so GROUP BY and joins need no
string building. Month keys are year·100 + month of ``close_date``; SQLAlchemy compiles
``extract`` to ``EXTRACT`` on PostgreSQL and to ``CAST(STRFTIME(...) AS INTEGER)`` on SQLite,
so the SQL is the same on both; the one dialect switch is a planner hint for SQLite's passes
over the whole history (``all_purchases``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    case,
    cast,
    extract,
    func,
    null,
    select,
)
from sqlalchemy.orm import Session

from b24app.models import MirrorDeal
from kpi.periods import local_midnight, require_aware, zone

D = MirrorDeal
_KOPECK = Decimal("0.01")


def date_bound(moment: datetime, tz: str) -> date:
    """The first local date whose midnight is not before ``moment``."""
    local = require_aware(moment).astimezone(zone(tz))
    day = local.date()
    return day if local_midnight(day, tz) == moment else day + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Dates:
    """A half-open range of local dates [start, end)."""

    start: date
    end: date

    @classmethod
    def of(cls, start: datetime, end: datetime, tz: str) -> Dates:
        """The close dates whose local midnight falls in the instants [start, end)."""
        return cls(date_bound(start, tz), date_bound(end, tz))

    def holds(self, column: Any) -> ColumnElement[bool]:
        """start ≤ column < end."""
        return and_(column >= self.start, column < self.end)


def money(kopecks: Any) -> Decimal:
    """Integer kopecks (a SUM, maybe NULL or a PostgreSQL numeric) as rubles."""
    return (Decimal(int(kopecks or 0)) * _KOPECK).quantize(_KOPECK)


def client_key_of(code: int) -> str:
    """The ``kpi.facts.client_key`` of a client integer (+company, −contact)."""
    return f"company:{code}" if code > 0 else f"contact:{-code}"


# ---------------------------------------------------------------- expressions

CLIENT = case((D.company_id > 0, D.company_id), (D.contact_id > 0, -D.contact_id),
              else_=null())
KOPECKS = cast(func.round(D.amount * 100), BigInteger)
MONTH = extract("year", D.close_date) * 100 + extract("month", D.close_date)


def purchases(portal_id: int) -> tuple[ColumnElement[bool], ...]:
    """WHERE of a purchase: the portal's live deals, semantic S now, closed, amount > 0."""
    # The current semantic decides: a deal won and later lost (a refund) is no purchase.
    return (D.portal_id == portal_id, D.deleted_at.is_(None), D.semantic == "S",
            D.close_date.is_not(None), D.amount > 0)


def all_purchases(session: Session, portal_id: int) -> tuple[ColumnElement[bool], ...]:
    """:func:`purchases` for a pass over the whole history (date bounds go in the aggregates)."""
    if session.get_bind().dialect.name != "sqlite":
        return purchases(portal_id)
    # SQLite would walk an index that starts with portal_id and fetch each of a million rows
    # by rowid, 3-8x slower than reading the table in order; ``+ 0`` and ``|| ''`` hide the
    # columns from its planner. PostgreSQL's planner picks the scan (or, with several big
    # portals in one database, the index) by itself.
    return (D.portal_id + 0 == portal_id, D.deleted_at.is_(None),
            D.semantic.concat("") == "S", D.close_date.is_not(None), D.amount > 0)


def _when(condition: ColumnElement[bool], value: Any) -> Any:
    return case((condition, value), else_=0)


# ---------------------------------------------------------------- per rep


def sales_volume(session: Session, portal_id: int, window: Dates) -> dict[int, tuple[Decimal, int]]:
    """Σ amount and count of the rep's purchases with close_date in the window, per rep."""
    rows = session.execute(
        select(D.assigned_by_id, func.sum(KOPECKS), func.count())
        .where(*purchases(portal_id), window.holds(D.close_date))
        .group_by(D.assigned_by_id))
    return {rep: (money(kop), int(count)) for rep, kop, count in rows}


def return_rate(session: Session, portal_id: int, before: Dates,
                now: Dates) -> dict[int, tuple[int, int]]:
    """ER per rep: (|C(P−1) ∩ C(P)|, |C(P−1)|); C(X) = clients the rep sold to in X."""
    inner = (
        select(D.assigned_by_id.label("rep"),
               func.max(_when(before.holds(D.close_date), 1)).label("was"),
               func.max(_when(now.holds(D.close_date), 1)).label("again"))
        .where(*purchases(portal_id), CLIENT.is_not(None),
               D.close_date >= min(before.start, now.start),
               D.close_date < max(before.end, now.end))
        .group_by(D.assigned_by_id, CLIENT)).subquery()
    rows = session.execute(
        select(inner.c.rep, func.sum(inner.c.was * inner.c.again), func.sum(inner.c.was))
        .group_by(inner.c.rep))
    return {rep: (int(both or 0), int(base or 0)) for rep, both, base in rows}


@dataclass(frozen=True, slots=True)
class RepLtvSums:
    """The rep's active clients and Σ of the rep's purchases from them: to date, trailing."""

    clients: int
    to_date: Decimal
    trailing: Decimal


def rep_ltv(session: Session, portal_id: int,
            windows: Sequence[Dates]) -> list[dict[int, RepLtvSums]]:
    """Per trailing window and rep: clients it sold to in it, Σ before its end, Σ in it."""
    # One pass for every window (the current and the previous quarter's): per (rep, client)
    # the sums and an "active" flag per window, then per rep the flagged clients' sums.
    cols: list[Any] = []
    for i, window in enumerate(windows):
        cols += [func.sum(_when(D.close_date < window.end, KOPECKS)).label(f"to_date{i}"),
                 func.sum(_when(window.holds(D.close_date), KOPECKS)).label(f"trailing{i}"),
                 func.max(_when(window.holds(D.close_date), 1)).label(f"active{i}")]
    inner = (select(D.assigned_by_id.label("rep"), *cols)
             .where(*all_purchases(session, portal_id), CLIENT.is_not(None))
             .group_by(D.assigned_by_id, CLIENT)).subquery()
    sums: list[Any] = []
    for i in range(len(windows)):
        active = inner.c[f"active{i}"]
        sums += [func.sum(active), func.sum(active * inner.c[f"to_date{i}"]),
                 func.sum(inner.c[f"trailing{i}"])]
    out: list[dict[int, RepLtvSums]] = [{} for _ in windows]
    for rep, *values in session.execute(select(inner.c.rep, *sums).group_by(inner.c.rep)):
        for i in range(len(windows)):
            clients, to_date, trailing = values[3 * i:3 * i + 3]
            if clients:
                out[i][rep] = RepLtvSums(int(clients), money(to_date), money(trailing))
    return out


def new_clients(session: Session, portal_id: int, window: Dates,
                min_months: int) -> dict[int, tuple[int, int]]:
    """Per rep: clients whose first purchase ever is the rep's, in the window: (≥ N months, <N)."""
    # window = [period start, as_of): the first purchase of all time falls in it, the rep sold
    # on that first day, and the client's distinct months before as_of decide "active".
    # Distinct months as month groups, not COUNT(DISTINCT): PostgreSQL then hashes instead
    # of walking an index in client order to feed a sorted aggregate (2x slower at 1M deals).
    months = (
        select(CLIENT.label("client"),
               func.min(case((D.close_date < window.end, D.close_date),
                             else_=null())).label("first"))
        .where(*all_purchases(session, portal_id), CLIENT.is_not(None))
        .group_by(CLIENT, MONTH)).subquery()
    first = func.min(months.c.first)
    firsts = (
        select(months.c.client, first.label("first"), func.count(months.c.first).label("months"))
        .group_by(months.c.client)
        .having(first >= window.start)).subquery()
    sellers = (
        select(D.assigned_by_id.label("rep"), firsts.c.client, firsts.c.months)
        .join(firsts, and_(firsts.c.client == CLIENT, D.close_date == firsts.c.first))
        .where(*purchases(portal_id), window.holds(D.close_date))
        .distinct()).subquery()
    rows = session.execute(
        select(sellers.c.rep, func.sum(_when(sellers.c.months >= min_months, 1)),
               func.sum(_when(sellers.c.months < min_months, 1)))
        .group_by(sellers.c.rep))
    return {rep: (int(active or 0), int(pending or 0)) for rep, active, pending in rows}


@dataclass(frozen=True, slots=True)
class RepClient:
    """Σ of one rep's purchases from one client in a window, and the last close date."""

    rep_id: int
    client: str
    amount: Decimal
    last: date


def rep_clients(session: Session, portal_id: int,
                windows: Sequence[Dates]) -> list[list[RepClient]]:
    """Per window, per (rep, client) with a purchase in it: Σ amount and the last close date."""
    # Feeds the NOIS share (joined with budgets) and the active-client sets of NPS coverage
    # and the client card: one row per pair, so bounded by the client base, not by deals.
    # One pass over the span of all windows.
    cols: list[Any] = []
    for window in windows:
        inside = window.holds(D.close_date)
        cols += [func.sum(_when(inside, KOPECKS)),
                 func.max(case((inside, D.close_date), else_=null()))]
    rows = session.execute(
        select(D.assigned_by_id, CLIENT, *cols)
        .where(*purchases(portal_id), CLIENT.is_not(None),
               D.close_date >= min(w.start for w in windows),
               D.close_date < max(w.end for w in windows))
        .group_by(D.assigned_by_id, CLIENT))
    out: list[list[RepClient]] = [[] for _ in windows]
    for rep, code, *values in rows:
        for i in range(len(windows)):
            kopecks, last = values[2 * i:2 * i + 2]
            if last is not None:
                out[i].append(RepClient(rep, client_key_of(int(code)), money(kopecks), last))
    return out


# ---------------------------------------------------------------- per company


@dataclass(frozen=True, slots=True)
class CompanySales:
    """A company's purchases from every rep before as_of."""

    company_id: int
    to_date: Decimal
    trailing: Decimal
    first: date
    last: date
    trailing_months: int  # distinct local months with a purchase in the trailing window


def company_sales(session: Session, portal_id: int, trailing: Dates) -> dict[int, CompanySales]:
    """Per company: Σ before as_of, Σ in the trailing window, first/last date, distinct months."""
    before = D.close_date < trailing.end
    recent = trailing.holds(D.close_date)
    # Month groups first (see new_clients): a month with a recent purchase counts once.
    months = (
        select(D.company_id.label("company_id"),
               func.sum(_when(before, KOPECKS)).label("to_date"),
               func.sum(_when(recent, KOPECKS)).label("trailing"),
               func.min(case((before, D.close_date), else_=null())).label("first"),
               func.max(case((before, D.close_date), else_=null())).label("last"),
               func.max(_when(recent, 1)).label("recent"))
        .where(*all_purchases(session, portal_id), D.company_id > 0)
        .group_by(D.company_id, MONTH)).subquery()
    first = func.min(months.c.first)
    rows = session.execute(
        select(months.c.company_id, func.sum(months.c.to_date), func.sum(months.c.trailing),
               first, func.max(months.c["last"]), func.sum(months.c.recent))
        .group_by(months.c.company_id)
        .having(first.is_not(None)))
    return {cid: CompanySales(cid, money(td), money(tr), first, last, int(months))
            for cid, td, tr, first, last, months in rows}
