"""Calendar periods and Monday weeks in the portal's time zone (pure, stdlib only).

Edge behaviour, chosen once for every KPI:

* A period is a calendar month, quarter, half-year or year of local dates. As instants it is
  half-open, [local midnight of its first day, local midnight after its last day): a deal
  closed 2026-11-30 23:30 +07 (16:30 UTC) is in November, one closed 2026-12-01 00:10 +07
  (2026-11-30 17:10 UTC) is in December.
* Instants must be aware (a naive one raises ValueError): the mirror stores UTC, the portal
  thinks in local time, and guessing between them is the classic off-by-one-day bug.
* A week runs Monday 00:00 to the next Monday 00:00 local time and belongs to the period
  that contains its Thursday (the ISO 8601 rule), so every week lies in exactly one month
  and the weeks of the months of a year are the weeks of the year.
* Trailing windows ("the last 12 months") are half-open, [as_of - N months, as_of), shifted
  on the local calendar; as_of is usually a period's end, which gives N whole months.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TZ = "Asia/Novosibirsk"

_MONTH_NAMES = ("январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август",
                "сентябрь", "октябрь", "ноябрь", "декабрь")
_ROMAN = ("I", "II", "III", "IV")
_LABEL = re.compile(r"^(\d{4})(?:-(?:(\d{2})|Q([1-4])|H([12])))?$")


class PeriodKind(StrEnum):
    """The calendar periods KPIs are measured over."""

    MONTH = "month"
    QUARTER = "quarter"
    HALF = "half"
    YEAR = "year"

    @property
    def months(self) -> int:
        """How many calendar months one period of this kind spans."""
        return {"month": 1, "quarter": 3, "half": 6, "year": 12}[self.value]


def require_aware(moment: datetime, what: str = "instant") -> datetime:
    """The instant itself if it carries a UTC offset; ValueError for a naive datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with tzinfo), got {moment!r}")
    return moment


def zone(tz: str) -> ZoneInfo:
    """The ZoneInfo of a zone name; ValueError for an unknown one."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def local_midnight(day: date, tz: str = DEFAULT_TZ) -> datetime:
    """The aware instant at which a local date begins."""
    return datetime(day.year, day.month, day.day, tzinfo=zone(tz))


def local_date(moment: datetime, tz: str = DEFAULT_TZ) -> date:
    """The local calendar date of an aware instant."""
    return require_aware(moment).astimezone(zone(tz)).date()


def _shift_months(year: int, month: int, months: int) -> tuple[int, int]:
    total = year * 12 + (month - 1) + months
    return total // 12, total % 12 + 1


def trailing_start(as_of: datetime, months: int, tz: str = DEFAULT_TZ) -> datetime:
    """The start of the window [start, as_of) of ``months`` local calendar months before as_of."""
    local = require_aware(as_of, "as_of").astimezone(zone(tz))
    year, month = _shift_months(local.year, local.month, -months)
    # 31 May minus 3 months is 28/29 February: the day is clamped to the month's length.
    last = (date(*_shift_months(year, month, 1), 1) - timedelta(days=1)).day
    return local.replace(year=year, month=month, day=min(local.day, last))


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar month, quarter, half-year or year of local dates in one time zone."""

    kind: PeriodKind
    year: int
    index: int = 1  # month 1-12, quarter 1-4, half 1-2; always 1 for a year
    tz: str = DEFAULT_TZ
    # Local midnight of the first day, and after the last day: the half-open instants.
    # Computed once, since formulas test thousands of facts against them.
    start: datetime = field(init=False, repr=False, compare=False)
    end: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", PeriodKind(self.kind))
        count = 12 // self.kind.months
        if not 1 <= self.index <= count:
            raise ValueError(f"a {self.kind.value} index must be 1..{count}, got {self.index}")
        if not 1 <= self.year <= 9998:
            raise ValueError(f"year out of range: {self.year}")
        first = self.first_day
        after = date(*_shift_months(first.year, first.month, self.months), 1)
        object.__setattr__(self, "start", local_midnight(first, self.tz))
        object.__setattr__(self, "end", local_midnight(after, self.tz))

    # ---- constructors ----

    @classmethod
    def of(cls, kind: PeriodKind | str, moment: datetime, tz: str = DEFAULT_TZ) -> Period:
        """The period of the given kind that contains an aware instant, in local time."""
        kind = PeriodKind(kind)
        local = require_aware(moment).astimezone(zone(tz))
        return cls(kind, local.year, (local.month - 1) // kind.months + 1, tz)

    @classmethod
    def parse(cls, label: str, tz: str = DEFAULT_TZ) -> Period:
        """The period of a label: "2026-11", "2026-Q4", "2026-H2" or "2026"."""
        match = _LABEL.match(label.strip())
        if match is None:
            raise ValueError(f"not a period label: {label!r}")
        year, month, quarter, half = match.groups()
        if month:
            return cls(PeriodKind.MONTH, int(year), int(month), tz)
        if quarter:
            return cls(PeriodKind.QUARTER, int(year), int(quarter), tz)
        if half:
            return cls(PeriodKind.HALF, int(year), int(half), tz)
        return cls(PeriodKind.YEAR, int(year), 1, tz)

    # ---- dates and instants ----

    @property
    def months(self) -> int:
        """Calendar months in the period."""
        return self.kind.months

    @property
    def first_day(self) -> date:
        """The first local date of the period."""
        return date(self.year, (self.index - 1) * self.months + 1, 1)

    @property
    def last_day(self) -> date:
        """The last local date of the period (inclusive)."""
        return self.end.date() - timedelta(days=1)

    def contains(self, moment: datetime) -> bool:
        """Whether an aware instant falls in [start, end)."""
        return self.start <= require_aware(moment) < self.end

    def contains_day(self, day: date) -> bool:
        """Whether a local date falls in the period."""
        return self.first_day <= day <= self.last_day

    def as_of(self, now: datetime | None = None) -> datetime:
        """The instant the period is measured up to: its end, or ``now`` if that is earlier."""
        return self.end if now is None else min(self.end, require_aware(now, "now"))

    # ---- neighbours ----

    def shift(self, count: int) -> Period:
        """The period ``count`` periods of the same kind later (earlier when negative)."""
        year, month = _shift_months(self.year, self.first_day.month, count * self.months)
        return Period(self.kind, year, (month - 1) // self.months + 1, self.tz)

    def next(self) -> Period:
        """The following period of the same kind."""
        return self.shift(1)

    def previous(self) -> Period:
        """The preceding period of the same kind."""
        return self.shift(-1)

    def month_periods(self) -> tuple[Period, ...]:
        """The calendar months of the period, in order."""
        first = Period(PeriodKind.MONTH, self.year, self.first_day.month, self.tz)
        return tuple(first.shift(n) for n in range(self.months))

    def weeks(self) -> tuple[Week, ...]:
        """The Monday weeks whose Thursday falls in the period, in order."""
        thursday = self.first_day + timedelta(days=(3 - self.first_day.weekday()) % 7)
        weeks = []
        while thursday <= self.last_day:
            weeks.append(Week(thursday - timedelta(days=3), self.tz))
            thursday += timedelta(days=7)
        return tuple(weeks)

    # ---- names ----

    @property
    def label(self) -> str:
        """The machine label: "2026-11", "2026-Q4", "2026-H2", "2026"."""
        if self.kind is PeriodKind.MONTH:
            return f"{self.year:04d}-{self.index:02d}"
        if self.kind is PeriodKind.QUARTER:
            return f"{self.year:04d}-Q{self.index}"
        if self.kind is PeriodKind.HALF:
            return f"{self.year:04d}-H{self.index}"
        return f"{self.year:04d}"

    @property
    def title(self) -> str:
        """The Russian title: «ноябрь 2026», «IV квартал 2026», «II полугодие 2026», «2026 год»."""
        if self.kind is PeriodKind.MONTH:
            return f"{_MONTH_NAMES[self.index - 1]} {self.year}"
        if self.kind is PeriodKind.QUARTER:
            return f"{_ROMAN[self.index - 1]} квартал {self.year}"
        if self.kind is PeriodKind.HALF:
            return f"{_ROMAN[self.index - 1]} полугодие {self.year}"
        return f"{self.year} год"

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class Week:
    """A Monday-to-Sunday week of local dates; as instants [Monday 00:00, next Monday 00:00)."""

    monday: date
    tz: str = DEFAULT_TZ

    def __post_init__(self) -> None:
        if self.monday.weekday() != 0:
            raise ValueError(f"a week starts on a Monday, got {self.monday} ({self.monday:%A})")

    @property
    def sunday(self) -> date:
        """The last local date of the week."""
        return self.monday + timedelta(days=6)

    @property
    def start(self) -> datetime:
        """Local midnight of the Monday."""
        return local_midnight(self.monday, self.tz)

    @property
    def end(self) -> datetime:
        """Local midnight of the next Monday."""
        return local_midnight(self.monday + timedelta(days=7), self.tz)

    def contains(self, moment: datetime) -> bool:
        """Whether an aware instant falls in the week."""
        return self.start <= require_aware(moment) < self.end

    @property
    def label(self) -> str:
        """The ISO week label, e.g. "2026-W49"."""
        year, week, _ = self.monday.isocalendar()
        return f"{year:04d}-W{week:02d}"


def period_of(kind: PeriodKind | str, moment: datetime, tz: str = DEFAULT_TZ) -> Period:
    """The period of the given kind containing an aware instant."""
    return Period.of(kind, moment, tz)


def month_of(moment: datetime, tz: str = DEFAULT_TZ) -> Period:
    """The local calendar month containing an aware instant."""
    return Period.of(PeriodKind.MONTH, moment, tz)


def quarter_of(moment: datetime, tz: str = DEFAULT_TZ) -> Period:
    """The local calendar quarter containing an aware instant."""
    return Period.of(PeriodKind.QUARTER, moment, tz)


def half_of(moment: datetime, tz: str = DEFAULT_TZ) -> Period:
    """The local half-year containing an aware instant (its label is the NPS wave)."""
    return Period.of(PeriodKind.HALF, moment, tz)


def year_of(moment: datetime, tz: str = DEFAULT_TZ) -> Period:
    """The local calendar year containing an aware instant."""
    return Period.of(PeriodKind.YEAR, moment, tz)


def week_of(moment: datetime, tz: str = DEFAULT_TZ) -> Week:
    """The Monday week containing an aware instant, in local time."""
    day = local_date(moment, tz)
    return Week(day - timedelta(days=day.weekday()), tz)
