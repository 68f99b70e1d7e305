"""Shared pieces of the demo dataset: the anchor instant, working time, the world being built."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from b24emu.datasets.names import Person
from b24emu.portal import Portal

TZ = ZoneInfo("Asia/Novosibirsk")
# Every date of the demo is relative to this Monday morning; the portal clock starts here.
ANCHOR = datetime(2026, 11, 16, 9, 0, tzinfo=TZ)
FIRST_MONTH = (2024, 9)  # Deal history starts here: a bit over two years before the anchor.
DAY_START = time(9, 0)
DAY_END = time(17, 30)
WORK_MINUTES = 510

# Furniture production peaks in spring and autumn and dips in January and in summer.
SEASON = {1: 0.35, 2: 0.8, 3: 1.25, 4: 1.35, 5: 1.1, 6: 0.75, 7: 0.6, 8: 0.75, 9: 1.25,
          10: 1.35, 11: 1.3, 12: 0.95}
# Fixed Russian public holidays (decree transfers are left out: the demo needs plausibility,
# the service itself uses the production calendar).
_HOLIDAYS = {(1, d) for d in range(1, 9)} | {(2, 23), (3, 8), (5, 1), (5, 9), (6, 12), (11, 4)}


def is_workday(day: date) -> bool:
    """Monday to Friday and not a public holiday."""
    return day.weekday() < 5 and (day.month, day.day) not in _HOLIDAYS


@lru_cache(maxsize=512)
def workdays(year: int, month: int) -> tuple[date, ...]:
    """Working days of a month."""
    day = date(year, month, 1)
    out: list[date] = []
    while day.month == month:
        if is_workday(day):
            out.append(day)
        day += timedelta(days=1)
    return tuple(out)


def month_of(index: int) -> tuple[int, int]:
    """Month number ``index`` counted from FIRST_MONTH, as (year, month)."""
    total = FIRST_MONTH[0] * 12 + FIRST_MONTH[1] - 1 + index
    return total // 12, total % 12 + 1


def month_index(moment: datetime | date) -> int:
    """Inverse of :func:`month_of`."""
    return (moment.year - FIRST_MONTH[0]) * 12 + moment.month - FIRST_MONTH[1]


ANCHOR_MONTH = month_index(ANCHOR)


def past_workdays(index: int) -> tuple[date, ...]:
    """Working days of month ``index`` that lie before the anchor day."""
    return tuple(d for d in workdays(*month_of(index)) if d < ANCHOR.date())


def at(day: date, hour: int, minute: int = 0) -> datetime:
    """A wall-clock instant in Novosibirsk."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def midnight(moment: datetime) -> datetime:
    """The local midnight of an instant: how date-only fields are stored."""
    local = moment.astimezone(TZ)
    return datetime(local.year, local.month, local.day, tzinfo=TZ)


def work_time(rng: random.Random, day: date, start: int = 9 * 60 + 5,
              end: int = 17 * 60 + 20) -> datetime:
    """A random minute of the working day (minutes from midnight in [start, end))."""
    minute = rng.randrange(start, end)
    return at(day, minute // 60, minute % 60)


def shift_workday(day: date, step: int = 1) -> date:
    """The nearest working day from ``day`` in direction ``step`` (``day`` itself if working)."""
    while not is_workday(day):
        day += timedelta(days=step)
    return day


def add_workdays(day: date, count: int) -> date:
    """``count`` working days after (or before, if negative) ``day``."""
    step = 1 if count >= 0 else -1
    for _ in range(abs(count)):
        day = shift_workday(day + timedelta(days=step), step)
    return day


def add_work_minutes(moment: datetime, minutes: int) -> datetime:
    """Move forward by working minutes (09:00-17:30 on working days)."""
    local = moment.astimezone(TZ)
    day = local.date()
    cur = local.hour * 60 + local.minute
    lo, hi = 9 * 60, 17 * 60 + 30
    if not is_workday(day) or cur >= hi:
        day, cur = shift_workday(day + timedelta(days=1)), lo
    cur = max(cur, lo)
    while cur + minutes > hi:
        minutes -= hi - cur
        day, cur = shift_workday(day + timedelta(days=1)), lo
    cur += minutes
    return at(day, cur // 60, cur % 60)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building rows."""
    # The rows hold no reference cycles; collections triggered by creating hundreds of
    # thousands of dicts only slow the build down (about twice as slow with other portals alive).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class Rep:
    """A sales rep (менеджер по развитию) and how diligent they are."""

    user_id: int
    person: Person
    cities: tuple[str, ...]
    visits: int  # Mean completed visits a month.
    training_skip: float  # Chance a month has no training.
    mailing_skip: float  # Chance a month has no new-products mailing.
    ideas: float  # Mean marketing ideas a month.
    needs_skip: float  # Chance a week has no procurement needs report.
    fast_reply: float  # Share of reactions within the 2-hour target.
    nps_shift: int  # Shifts the client satisfaction scores of the rep's clients.


@dataclass
class Client:
    """One client company as the generator plans it."""

    rep: int
    title: str
    city: str
    kind: int
    size: float
    segment: str
    created: datetime
    rate: float  # Chance of a purchase in a normal month.
    first: int = 0  # Month index of the first purchase inside the history.
    churn: int | None = None  # No purchases from this month index on.
    company_id: int = 0
    phone: str = ""
    email: str = ""
    contacts: list[int] = field(default_factory=list)
    won: list[int] = field(default_factory=list)  # Month indices with a won deal.
    second_rep: int | None = None


@dataclass
class OpenDeal:
    """An in-progress deal: what the activity generator needs to plan around it."""

    deal_id: int
    client: Client
    rep: int
    created: datetime
    kind: str  # "fresh", "stale" (no activity for weeks), "new" / "today" (not answered yet).


@dataclass
class ClosedDeal:
    """A won or lost deal: activities are planned around its life."""

    deal_id: int
    client: Client
    rep: int
    created: datetime
    closed: datetime
    won: bool


@dataclass
class World:
    """The portal being filled, the random source and what earlier steps created."""

    portal: Portal
    rng: random.Random
    admin: int = 1
    rop: int = 0
    reps: list[Rep] = field(default_factory=list)
    procurement: list[int] = field(default_factory=list)
    logistics: list[int] = field(default_factory=list)
    marketing: list[int] = field(default_factory=list)
    sales_dept: int = 0
    groups: dict[str, int] = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)
    open_deals: list[OpenDeal] = field(default_factory=list)
    closed_deals: list[ClosedDeal] = field(default_factory=list)
    multifield_id: int = 0
    last_activity: dict[tuple[int, int], tuple[datetime, int]] = field(default_factory=dict)

    def multifield(self, type_id: str, value: str) -> dict[str, object]:
        """One PHONE/EMAIL/WEB entry with a portal-wide ID."""
        self.multifield_id += 1
        return {"ID": self.multifield_id, "VALUE_TYPE": "WORK", "VALUE": value,
                "TYPE_ID": type_id}

    def rep(self, user_id: int) -> Rep:
        """The rep with a user id."""
        return next(r for r in self.reps if r.user_id == user_id)

    def touch(self, owner_type: int, owner_id: int, moment: datetime, user_id: int) -> None:
        """Remember the latest activity of a company (4) or deal (2)."""
        key = (owner_type, owner_id)
        seen = self.last_activity.get(key)
        if seen is None or seen[0] < moment:
            self.last_activity[key] = (moment, user_id)
