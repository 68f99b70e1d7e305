"""Which local days are working and their hours: the Russian production calendar plus rules."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from functools import cached_property, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

DEFAULT_TIMEZONE = "Asia/Novosibirsk"
WEEKDAY_CODES = {"MO": 1, "TU": 2, "WE": 3, "TH": 4, "FR": 5, "SA": 6, "SU": 7}
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

Period = tuple[int, int]
"""A working period of one local day: (start, end) in seconds after local midnight."""


@lru_cache(maxsize=1)
def default_shortened_days() -> frozenset[date]:
    """The shortened pre-holiday days shipped in ``kpi/data/shortened_days.json``."""
    text = resources.files("kpi").joinpath("data/shortened_days.json").read_text("utf-8")
    return frozenset(date.fromisoformat(day) for day in json.loads(text)["days"])


@lru_cache(maxsize=64)
def production_year(country: str, year: int) -> tuple[Mapping[date, str], frozenset[date]]:
    """Days off (with names) and working weekend days of one year, from ``holidays``."""
    # holidays >= 0.108 lists decree transfers (e.g. 2026-01-09) among the holidays and the
    # working Saturdays they create (e.g. 2025-11-01) in ``weekend_workdays``.
    calendar = holidays.country_holidays(country, years=year, language="en_US")
    days_off = {day: str(name) for day, name in calendar.items()}
    workdays = frozenset(getattr(calendar, "weekend_workdays", ()))
    return MappingProxyType(days_off), workdays


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second


@dataclass(frozen=True)
class CalendarRules:
    """Plain working-time rules: hours, breaks, shortened days and the admin's overrides."""

    timezone: str = DEFAULT_TIMEZONE
    workdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})  # ISO weekdays, Monday = 1
    day_start: time = time(9, 0)
    day_end: time = time(17, 30)
    breaks: tuple[tuple[time, time], ...] = ()
    shortened_days: frozenset[date] = field(default_factory=default_shortened_days)
    shortened_by: int = 60  # minutes; Labour Code art. 95: one hour before a holiday
    extra_days_off: frozenset[date] = frozenset()
    extra_working_days: frozenset[date] = frozenset()
    country: str = "RU"

    def __post_init__(self) -> None:
        # Accept any iterables from callers but keep the object hashable.
        for name in ("workdays", "shortened_days", "extra_days_off", "extra_working_days"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        object.__setattr__(self, "breaks", tuple((a, b) for a, b in self.breaks))
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc
        if not self.workdays or not self.workdays <= set(range(1, 8)):
            raise ValueError(f"workdays must be ISO weekdays 1..7, got {sorted(self.workdays)}")
        if self.day_start >= self.day_end:
            raise ValueError("day_start must be before day_end (overnight shifts are unsupported)")
        if not self.periods:
            raise ValueError("the breaks leave no working time in the day")
        if self.shortened_by < 0:
            raise ValueError("shortened_by must not be negative")

    @cached_property
    def periods(self) -> tuple[Period, ...]:
        """The periods of an ordinary working day: [day_start, day_end) minus the breaks."""
        periods = [(_seconds(self.day_start), _seconds(self.day_end))]
        for begin, end in sorted((_seconds(a), _seconds(b)) for a, b in self.breaks):
            periods = [part for s, e in periods
                       for part in ((s, min(e, begin)), (max(s, end), e)) if part[0] < part[1]]
        return tuple(periods)


def _day_status(rules: CalendarRules, day: date) -> tuple[bool, str]:
    """Whether the day is working, and why (for the admin's report)."""
    if day in rules.extra_days_off:
        return False, "an extra day off set by the admin"
    if day in rules.extra_working_days:
        return True, "an extra working day set by the admin"
    days_off, weekend_workdays = production_year(rules.country, day.year)
    if day in days_off:
        return False, days_off[day]
    if day in weekend_workdays:
        return True, "a working weekend day by decree"
    if day.isoweekday() in rules.workdays:
        return True, "a regular working day"
    return False, "a weekly day off"


def is_working_day(rules: CalendarRules, day: date) -> bool:
    """Whether the local date has working time under the rules."""
    return _day_status(rules, day)[0]


def working_periods(rules: CalendarRules, day: date) -> tuple[Period, ...]:
    """The working periods of one local date; a shortened day loses its last minutes."""
    if not is_working_day(rules, day):
        return ()
    if day not in rules.shortened_days:
        return rules.periods
    # The law shortens the working time, so the cut is counted in working seconds from the
    # end of the day; breaks are skipped (09:00-17:30 with no breaks ends at 16:30).
    cut, periods = rules.shortened_by * 60, list(rules.periods)
    while cut and periods:
        start, end = periods.pop()
        if end - start > cut:
            periods.append((start, end - cut))
            break
        cut -= end - start
    return tuple(periods)


# ---- calendar.settings.get: read defensively, compare, explain ----

_CLOCK = re.compile(r"(\d{1,2})(?:[.:](\d{1,2}))?")


def parse_portal_clock(value: object) -> time | None:
    """Portal hours such as "9", "17.30", "9:30" (or "9.5" as half past); None if unreadable."""
    match = _CLOCK.fullmatch(str(value).strip())
    if match is None:
        return None
    hour, tail = int(match[1]), match[2]
    # The half-hour format is unconfirmed (bitrix24-platform.md §5.8): two digits are minutes,
    # one digit is read as a decimal fraction of an hour ("9.5" = 09:30).
    minute = 0 if tail is None else int(tail) if len(tail) == 2 else int(tail) * 6
    if hour == 24 and minute == 0:
        return time(23, 59, 59)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _portal_dates(raw: object, year: int, key: str, problems: list[str]) -> set[date]:
    items: Iterable[object] = raw if isinstance(raw, list) else str(raw or "").split(",")
    result = set()
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            day, month = (int(part) for part in text.split("."))
            result.add(date(year, month, day))
        except ValueError:
            problems.append(f"The portal's {key} entry {text!r} is not a day.month date "
                            f"in {year}; it was ignored.")
    return result


def _portal_week_off(raw: object, problems: list[str]) -> set[int]:
    items = raw if isinstance(raw, list) else str(raw or "").split(",")
    result = set()
    for item in items:
        code = str(item).strip().upper()
        if code in WEEKDAY_CODES:
            result.add(WEEKDAY_CODES[code])
        elif code:
            problems.append(f"The portal's week_holidays entry {code!r} is not a weekday code.")
    return result


def _names(weekdays: Iterable[int]) -> str:
    return ", ".join(_WEEKDAY_NAMES[d - 1] for d in sorted(weekdays)) or "none"


def _compare_hours(rules: CalendarRules, data: Mapping[str, Any], problems: list[str]) -> None:
    start, end = data.get("work_time_start"), data.get("work_time_end")
    portal_start, portal_end = parse_portal_clock(start), parse_portal_clock(end)
    if portal_start is None or portal_end is None:
        problems.append(f"The portal's working hours ({start!r} to {end!r}) could not be read; "
                        "expected hours such as '9', '17.30' or '9:30'.")
    elif (portal_start, portal_end) != (rules.day_start, rules.day_end):
        problems.append(f"Portal working hours are {portal_start:%H:%M}-{portal_end:%H:%M}, "
                        f"the service uses {rules.day_start:%H:%M}-{rules.day_end:%H:%M} "
                        f"({rules.timezone}).")


def compare_portal_settings(rules: CalendarRules, settings: Mapping[str, Any],
                            year: int) -> list[str]:
    """Conflicts between the portal's ``calendar.settings.get`` and the rules, in English."""
    inner = settings.get("result")
    data: Mapping[str, Any] = inner if isinstance(inner, Mapping) else settings
    problems: list[str] = []
    _compare_hours(rules, data, problems)
    week_off = _portal_week_off(data.get("week_holidays"), problems)
    if week_off != set(range(1, 8)) - rules.workdays:
        problems.append(f"The portal's weekly days off are {_names(week_off)}; the service's "
                        f"are {_names(set(range(1, 8)) - rules.workdays)}.")
    # Bitrix24 stores yearly holidays and working days as day.month without a year; they are
    # read as dates of the year being checked.
    portal_off = _portal_dates(data.get("year_holidays"), year, "year_holidays", problems)
    portal_on = _portal_dates(data.get("year_workdays"), year, "year_workdays", problems)
    day = date(year, 1, 1)
    while day.year == year:
        working, why = _day_status(rules, day)
        if day in portal_on:
            portal_working, portal_why = True, "listed in year_workdays"
        elif day in portal_off:
            portal_working, portal_why = False, "listed in year_holidays"
        else:
            portal_working = day.isoweekday() not in week_off
            portal_why = "a regular working day" if portal_working else "a weekly day off"
        if working != portal_working:
            ours = "a working day" if working else "a day off"
            theirs = "a working day" if portal_working else "a day off"
            problems.append(f"{day.isoformat()} ({_WEEKDAY_NAMES[day.weekday()]}) is {ours} in "
                            f"the service's calendar ({why}) but {theirs} on the portal "
                            f"({portal_why}).")
        day += timedelta(days=1)
    return problems
