"""The working calendar: production-calendar facts, edges, time zones, properties, portal check."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kpi.calendar import MAX_YEAR, CalendarRules, WorkingCalendar, compare_portal_settings
from kpi.production import default_shortened_days, parse_portal_clock

NSK = ZoneInfo("Asia/Novosibirsk")
MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
CAL = WorkingCalendar()


def nsk(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *,
        sec: int = 0, us: int = 0) -> datetime:
    """A Novosibirsk wall-clock instant."""
    return datetime(year, month, day, hour, minute, sec, us, tzinfo=NSK)


def d(text: str) -> date:
    return date.fromisoformat(text)


# ---- domain.md, "Working time": the worked examples (SLA target 120 working minutes) ----

@pytest.mark.parametrize(("created", "due"), [
    (nsk(2026, 11, 27, 16, 45), nsk(2026, 11, 30, 10, 15)),  # Friday evening -> Monday
    (nsk(2026, 11, 3, 15, 30), nsk(2026, 11, 5, 10, 0)),  # short day to 16:30; 11-04 holiday
    (nsk(2026, 11, 28, 12, 0), nsk(2026, 11, 30, 11, 0)),  # created on a Saturday
])
def test_worked_examples(created: datetime, due: datetime) -> None:
    assert CAL.add_working_minutes(created, 120) == due
    assert CAL.working_minutes(created, due) == 120


# ---- which days work: weekends, holidays, transfers, working Saturdays ----

@pytest.mark.parametrize(("day", "working"), [
    ("2026-11-27", True), ("2026-11-28", False), ("2026-11-29", False),  # Fri, Sat, Sun
    *[(f"2026-01-{n:02d}", False) for n in range(1, 12)],  # New Year block + 01-09 transfer
    ("2026-01-12", True),
    ("2025-01-08", False), ("2025-01-09", True), ("2027-01-08", False), ("2027-01-11", True),
    ("2026-02-23", False), ("2025-02-24", True), ("2027-02-22", False), ("2027-02-23", False),
    ("2026-03-08", False), ("2026-03-09", False), ("2026-03-10", True),  # 08.03 on a Sunday
    ("2025-05-01", False), ("2025-05-02", False), ("2025-05-08", False), ("2025-05-09", False),
    ("2026-05-01", False), ("2026-05-11", False), ("2026-05-08", True),  # 09.05 on a Saturday
    ("2027-05-03", False), ("2027-05-10", False),
    ("2025-06-12", False), ("2025-06-13", False), ("2026-06-12", False), ("2027-06-14", False),
    ("2025-11-03", False), ("2025-11-04", False), ("2026-11-04", False), ("2026-11-03", True),
    ("2027-11-04", False), ("2027-11-05", False),
    ("2025-12-31", False), ("2026-12-31", False), ("2027-12-31", False),  # decree transfers
    ("2026-12-30", True),
    ("2025-11-01", True), ("2027-02-20", True),  # working Saturdays (transfers)
    ("2026-11-07", False),
])
def test_working_days(day: str, working: bool) -> None:
    assert CAL.is_working_day(d(day)) is working
    assert bool(CAL.day_intervals(d(day))) is working


def test_holidays_package_working_saturdays() -> None:
    """The installed ``holidays`` knows exactly these working weekend days in 2025-2027."""
    ru = holidays.country_holidays("RU", years=range(2025, 2028))
    assert ru.weekend_workdays == {d("2025-11-01"), d("2027-02-20")}


@pytest.mark.parametrize(("year", "days"), [(2025, 247), (2026, 247), (2027, 247)])
def test_working_days_per_year(year: int, days: int) -> None:
    # 2025 and 2026: 247 working days in the official calendars (consultant.ru production
    # calendars; glavaudit.org/situations/k518956 for 2026); 2027 from the decree via xmlcalendar.
    one = timedelta(days=1)
    count = sum(CAL.is_working_day(date(year, 1, 1) + n * one) for n in range(366)
                if (date(year, 1, 1) + n * one).year == year)
    assert count == days


EIGHT_HOURS = WorkingCalendar(CalendarRules(day_end=time(17, 0)))


@pytest.mark.parametrize("year", [2025, 2026, 2027])
def test_official_hours_norm_with_an_eight_hour_day(year: int) -> None:
    # The norm for a 40-hour week is 1972 h in 2025 and 2026: 247 days x 8 h - 4 shortened
    # hours. (Not 1976 h: that would need no shortened days.) 2027 by the same arithmetic.
    start, end = nsk(year, 1, 1), nsk(year + 1, 1, 1)
    assert EIGHT_HOURS.working_minutes(start, end) == 1972 * 60


# Official 2026 calendar, 5-day week: working days and 40-hour norm per month
# (glavaudit.org/situations/k518956, "Производственный календарь 2026").
MONTHS_2026 = [(15, 120), (19, 152), (21, 168), (22, 175), (19, 151), (21, 167),
               (23, 184), (21, 168), (22, 176), (22, 176), (20, 159), (22, 176)]


@pytest.mark.parametrize(("month", "days", "hours"),
                         [(m + 1, *facts) for m, facts in enumerate(MONTHS_2026)])
def test_2026_months(month: int, days: int, hours: int) -> None:
    start = nsk(2026, month, 1)
    end = nsk(2026 + month // 12, month % 12 + 1, 1)
    assert EIGHT_HOURS.working_minutes(start, end) == hours * 60
    count = sum(CAL.is_working_day(date(2026, month, n)) for n in range(1, 32)
                if n <= (end - start).days)
    assert count == days


def test_default_day_totals_in_2026() -> None:
    assert CAL.working_minutes(nsk(2026, 1, 1), nsk(2027, 1, 1)) == 247 * 510 - 4 * 60


# ---- shortened days ----

def test_shortened_days_data_file() -> None:
    path = Path(__file__).parents[2] / "kpi/data/shortened_days.json"
    raw = json.loads(path.read_text("utf-8"))
    assert raw["source"]
    assert default_shortened_days() == {d(x) for x in (
        "2025-03-07", "2025-04-30", "2025-06-11", "2025-11-01",
        "2026-04-30", "2026-05-08", "2026-06-11", "2026-11-03",
        "2027-02-20", "2027-04-30", "2027-06-11", "2027-11-03")}


@pytest.mark.parametrize("day", sorted(default_shortened_days()))
def test_shortened_days_end_an_hour_early(day: date) -> None:
    start = datetime.combine(day, time(9), NSK)
    assert CAL.day_intervals(day) == [(start, start.replace(hour=16, minute=30))]


def test_shortened_day_arithmetic() -> None:
    assert CAL.is_working(nsk(2026, 11, 3, 16, 29))
    assert not CAL.is_working(nsk(2026, 11, 3, 16, 30))
    assert CAL.add_working_minutes(nsk(2026, 11, 3, 16, 0), 30) == nsk(2026, 11, 3, 16, 30)
    assert CAL.add_working_minutes(nsk(2025, 11, 1, 16, 0), 60) == nsk(2025, 11, 5, 9, 30)


def test_shortened_by_is_configurable() -> None:
    cal = WorkingCalendar(CalendarRules(shortened_by=90, shortened_days=frozenset()))
    assert cal.day_intervals(d("2026-11-03"))[-1][1].time() == time(17, 30)
    cal = WorkingCalendar(CalendarRules(shortened_by=90))
    assert cal.day_intervals(d("2026-11-03"))[-1][1].time() == time(16, 0)


# ---- breaks ----

LUNCH = WorkingCalendar(CalendarRules(breaks=((time(13), time(14)),)))


@pytest.mark.parametrize(("start", "minutes", "due"), [
    (nsk(2026, 11, 26, 12, 30), 60, nsk(2026, 11, 26, 14, 30)),
    (nsk(2026, 11, 26, 12, 0), 60, nsk(2026, 11, 26, 13, 0)),  # lands on the break: stays
    (nsk(2026, 11, 26, 13, 20), 10, nsk(2026, 11, 26, 14, 10)),  # starts inside the break
    (nsk(2026, 11, 26, 16, 45), 120, nsk(2026, 11, 27, 10, 15)),
    (nsk(2026, 11, 3, 15, 0), 120, nsk(2026, 11, 5, 9, 30)),  # shortened day with a lunch
])
def test_breaks(start: datetime, minutes: int, due: datetime) -> None:
    assert LUNCH.add_working_minutes(start, minutes) == due
    assert LUNCH.working_minutes(start, due) == minutes


def test_break_days() -> None:
    assert not LUNCH.is_working(nsk(2026, 11, 26, 13, 30))
    assert LUNCH.working_minutes(nsk(2026, 11, 26), nsk(2026, 11, 27)) == 450
    assert [(a.time(), b.time()) for a, b in LUNCH.day_intervals(d("2026-11-03"))] == [
        (time(9), time(13)), (time(14), time(16, 30))]


def test_shortening_cuts_working_time_across_a_late_break() -> None:
    cal = WorkingCalendar(CalendarRules(breaks=((time(16, 45), time(17)),)))
    assert [(a.time(), b.time()) for a, b in cal.day_intervals(d("2026-11-03"))] == [
        (time(9), time(16, 15))]  # 7 h 15 min: the ordinary 8 h 15 min less one hour


# ---- the admin's overrides ----

def test_extra_day_off_and_extra_working_day() -> None:
    rules = CalendarRules(extra_days_off=frozenset({d("2026-11-30")}),
                          extra_working_days=frozenset({d("2026-11-28"), d("2026-01-09")}))
    cal = WorkingCalendar(rules)
    assert not cal.is_working_day(d("2026-11-30"))
    assert cal.is_working_day(d("2026-11-28")) and cal.is_working_day(d("2026-01-09"))
    assert cal.add_working_minutes(nsk(2026, 11, 27, 16, 45), 120) == nsk(2026, 11, 28, 10, 15)
    assert cal.add_working_minutes(nsk(2026, 11, 28, 17, 0), 60) == nsk(2026, 12, 1, 9, 30)


def test_extra_day_off_beats_extra_working_day() -> None:
    day = frozenset({d("2026-11-30")})
    cal = WorkingCalendar(CalendarRules(extra_days_off=day, extra_working_days=day))
    assert not cal.is_working_day(d("2026-11-30"))


# ---- edges ----

@pytest.mark.parametrize(("start", "minutes", "due"), [
    (nsk(2026, 11, 27, 16, 45), 45, nsk(2026, 11, 27, 17, 30)),  # ends exactly at day end
    (nsk(2026, 11, 27, 16, 45), 46, nsk(2026, 11, 30, 9, 1)),
    (nsk(2026, 11, 27, 17, 30), 1, nsk(2026, 11, 30, 9, 1)),
    (nsk(2026, 11, 26, 9, 0), 510, nsk(2026, 11, 26, 17, 30)),
    (nsk(2026, 11, 26, 12, 0), 0, nsk(2026, 11, 26, 12, 0)),  # 0 at a working instant
    (nsk(2026, 11, 27, 17, 30), 0, nsk(2026, 11, 30, 9, 0)),  # 0 at the end: next start
    (nsk(2026, 11, 28, 12, 0), 0, nsk(2026, 11, 30, 9, 0)),
    (nsk(2026, 12, 30, 17, 0), 60, nsk(2027, 1, 11, 9, 30)),  # across the year and holidays
    (nsk(2026, 11, 26, 16, 59, sec=30), 0.5, nsk(2026, 11, 26, 17, 0)),  # seconds
    (nsk(2026, 11, 26, 9, 0), 1 / 60_000_000, datetime(2026, 11, 26, 9, 0, 0, 1, NSK)),
])
def test_add_edges(start: datetime, minutes: float, due: datetime) -> None:
    result = CAL.add_working_minutes(start, minutes)
    assert result == due
    assert result.tzinfo is NSK


@pytest.mark.parametrize(("moment", "expected"), [
    (nsk(2026, 11, 26, 8, 59, sec=59), nsk(2026, 11, 26, 9, 0)),
    (nsk(2026, 11, 26, 9, 0), nsk(2026, 11, 26, 9, 0)),
    (nsk(2026, 11, 26, 17, 29, sec=59), nsk(2026, 11, 26, 17, 29, sec=59)),
    (nsk(2026, 11, 26, 17, 30), nsk(2026, 11, 27, 9, 0)),
    (nsk(2026, 12, 31, 9, 0), nsk(2027, 1, 11, 9, 0)),
    (nsk(2025, 10, 31, 18, 0), nsk(2025, 11, 1, 9, 0)),  # a working Saturday
])
def test_next_working_instant(moment: datetime, expected: datetime) -> None:
    assert CAL.next_working_instant(moment) == expected


@pytest.mark.parametrize(("moment", "working"), [
    (nsk(2026, 11, 26, 9, 0), True), (nsk(2026, 11, 26, 8, 59, sec=59, us=999999), False),
    (nsk(2026, 11, 26, 17, 29, sec=59), True), (nsk(2026, 11, 26, 17, 30), False),
    (nsk(2026, 11, 28, 12, 0), False), (nsk(2026, 1, 9, 12, 0), False),
])
def test_is_working(moment: datetime, working: bool) -> None:
    assert CAL.is_working(moment) is working


def test_working_minutes_is_signed_and_exact() -> None:
    a, b = nsk(2026, 11, 27, 16, 45), nsk(2026, 11, 30, 10, 15, sec=30)
    assert CAL.working_minutes(a, b) == 120.5
    assert CAL.working_minutes(b, a) == -120.5
    assert CAL.working_minutes(a, a) == 0
    assert CAL.working_minutes(nsk(2026, 11, 28), nsk(2026, 11, 29)) == 0


@pytest.mark.parametrize("minutes", [-1, math.nan, math.inf])
def test_add_rejects_bad_minutes(minutes: float) -> None:
    with pytest.raises(ValueError, match="minutes"):
        CAL.add_working_minutes(nsk(2026, 11, 26, 12), minutes)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 11, 26, 12, 0)
    with pytest.raises(ValueError, match="aware datetime"):
        CAL.is_working(naive)
    with pytest.raises(ValueError, match="aware datetime"):
        CAL.working_minutes(naive, nsk(2026, 11, 26, 13))
    with pytest.raises(ValueError, match="aware datetime"):
        CAL.add_working_minutes(naive, 10)


def test_years_outside_the_range_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        CAL.is_working(datetime(MAX_YEAR + 1, 6, 1, tzinfo=UTC))


def test_table_built_in_any_order_gives_the_same_answers() -> None:
    forward, backward = WorkingCalendar(), WorkingCalendar()
    backward.is_working(nsk(2027, 6, 1))
    backward.is_working(nsk(2025, 6, 1))  # prepends 2026 and 2025
    forward.is_working(nsk(2025, 6, 1))
    a, b = nsk(2025, 3, 3, 10), nsk(2027, 10, 1, 12)
    assert forward.working_minutes(a, b) == backward.working_minutes(a, b)
    assert forward.add_working_minutes(a, 100_000) == backward.add_working_minutes(a, 100_000)
    assert backward.table_size()[0] == 3


def test_concurrent_growth_is_consistent() -> None:
    shared = WorkingCalendar()
    starts = [nsk(year, month, 3, 10) for year in (2027, 2025, 2026, 2028) for month in (2, 7)]

    def due(start: datetime) -> datetime:
        return shared.add_working_minutes(start, 5_000)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(due, starts))
    assert results == [CAL.add_working_minutes(start, 5_000) for start in starts]


def test_rules_validation() -> None:
    with pytest.raises(ValueError, match="zone"):
        CalendarRules(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="day_start"):
        CalendarRules(day_start=time(18))
    with pytest.raises(ValueError, match="workdays"):
        CalendarRules(workdays=frozenset({0}))
    with pytest.raises(ValueError, match="breaks"):
        CalendarRules(breaks=((time(8), time(18)),))


def test_rules_are_hashable_and_accept_plain_collections() -> None:
    days_off: list[date] = [d("2026-11-30")]
    rules = CalendarRules(workdays={1, 2, 3, 4, 5}, extra_days_off=days_off)  # type: ignore[arg-type]
    assert rules == CalendarRules(extra_days_off=frozenset({d("2026-11-30")}))
    assert hash(rules) == hash(CalendarRules(extra_days_off=frozenset({d("2026-11-30")})))


# ---- time zones: inputs anywhere, results in the rules' zone ----

@pytest.mark.parametrize(("created", "due"), [
    (datetime(2026, 11, 27, 9, 45, tzinfo=UTC), datetime(2026, 11, 30, 3, 15, tzinfo=UTC)),
    (datetime(2026, 11, 27, 12, 45, tzinfo=MSK), datetime(2026, 11, 30, 6, 15, tzinfo=MSK)),
    # Berlin switches to summer time on Sunday 2026-03-29: CET (+1) before, CEST (+2) after.
    (datetime(2026, 3, 27, 10, 45, tzinfo=BERLIN), datetime(2026, 3, 30, 5, 15, tzinfo=BERLIN)),
    # ... and back on Sunday 2026-10-25.
    (datetime(2026, 10, 23, 11, 45, tzinfo=BERLIN), datetime(2026, 10, 26, 4, 15, tzinfo=BERLIN)),
    # New York leaves summer time on Sunday 2026-11-01: EDT (-4) before, EST (-5) after.
    (datetime(2026, 10, 30, 5, 45, tzinfo=NEW_YORK),
     datetime(2026, 11, 1, 22, 15, tzinfo=NEW_YORK)),
    # ... and enters it on Sunday 2026-03-08; Monday 03-09 is a Russian holiday (08.03 observed).
    (datetime(2026, 3, 6, 4, 45, tzinfo=NEW_YORK), datetime(2026, 3, 9, 23, 15, tzinfo=NEW_YORK)),
])
def test_time_zones(created: datetime, due: datetime) -> None:
    result = CAL.add_working_minutes(created, 120)
    assert result == due
    assert result.tzinfo is NSK
    assert (result.hour, result.minute) == (10, 15)
    assert CAL.working_minutes(created, due) == 120


def test_dst_fold_inputs_are_distinct_instants() -> None:
    # 2026-11-01 01:30 happens twice in New York; the hour between is Sunday 12:30-13:30 in NSK.
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)
    second = first.replace(fold=1)
    assert CAL.next_working_instant(first) == CAL.next_working_instant(second)
    assert (second - first.astimezone(UTC)).total_seconds() == 3600


def test_a_dst_zone_in_the_rules_keeps_local_hours() -> None:
    berlin = WorkingCalendar(CalendarRules(timezone="Europe/Berlin", shortened_days=frozenset()))
    friday = datetime(2026, 3, 27, 16, 45, tzinfo=BERLIN)
    assert berlin.add_working_minutes(friday, 120) == datetime(2026, 3, 30, 10, 15, tzinfo=BERLIN)
    week = berlin.working_minutes(datetime(2026, 3, 23, tzinfo=BERLIN),
                                  datetime(2026, 3, 30, tzinfo=BERLIN))
    assert week == 5 * 510


# ---- properties ----

INSTANTS = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.sampled_from([NSK, UTC, MSK, BERLIN, NEW_YORK]))
MINUTES = st.integers(min_value=0, max_value=20_000)


@settings(max_examples=300, deadline=None)
@given(INSTANTS, MINUTES)
def test_add_then_measure_round_trips(start: datetime, minutes: int) -> None:
    due = CAL.add_working_minutes(start, minutes)
    assert CAL.working_minutes(start, due) == minutes
    assert due >= start


@settings(max_examples=300, deadline=None)
@given(INSTANTS, st.floats(min_value=0, max_value=5_000, allow_nan=False))
def test_fractional_round_trips_to_the_microsecond(start: datetime, minutes: float) -> None:
    due = CAL.add_working_minutes(start, minutes)
    assert abs(CAL.working_minutes(start, due) - minutes) <= 1 / 60_000_000


@settings(max_examples=300, deadline=None)
@given(INSTANTS, MINUTES, MINUTES)
def test_add_is_monotonic_and_composes(start: datetime, m1: int, m2: int) -> None:
    small, large = sorted((m1, m2))
    assert CAL.add_working_minutes(start, small) <= CAL.add_working_minutes(start, large)
    if m1 > 0 and m2 > 0:  # adding 0 moves an interval end to the next start
        once = CAL.add_working_minutes(start, m1 + m2)
        assert CAL.add_working_minutes(CAL.add_working_minutes(start, m1), m2) == once


@settings(max_examples=300, deadline=None)
@given(INSTANTS, INSTANTS, INSTANTS)
def test_working_minutes_is_additive_and_bounded(a: datetime, b: datetime, c: datetime) -> None:
    ab, bc = CAL.working_minutes(a, b), CAL.working_minutes(b, c)
    assert math.isclose(ab + bc, CAL.working_minutes(a, c), abs_tol=1e-6)
    assert abs(ab) <= abs((b - a).total_seconds()) / 60
    assert (ab >= 0) == (b >= a) or ab == 0


@settings(max_examples=200, deadline=None)
@given(INSTANTS)
def test_results_are_working_or_interval_ends(start: datetime) -> None:
    nxt = CAL.next_working_instant(start)
    assert CAL.is_working(nxt)
    assert CAL.working_minutes(start, nxt) == 0


# ---- the portal's calendar.settings.get ----

def _portal_sample() -> dict[str, object]:
    """The documented ``calendar.settings.get`` response (calendar-settings-get.md), trimmed."""
    return {"result": {"work_time_start": "9", "work_time_end": "19",
                       "year_holidays": "1.01,2.01,7.01,23.02,8.03,1.05,9.05,12.06,4.11",
                       "year_workdays": "31.12", "week_holidays": ["SA", "SU"],
                       "week_start": "MO"}}


def test_compare_the_documented_sample_for_2026() -> None:
    problems = compare_portal_settings(CalendarRules(), _portal_sample(), 2026)
    text = "\n".join(problems)
    assert "Portal working hours are 09:00-19:00, the service uses 09:00-17:30" in text
    assert "2026-01-09 (Friday) is a day off in the service's calendar" in text
    assert "2026-12-31 (Thursday) is a day off in the service's calendar" in text
    assert "listed in year_workdays" in text
    for missing in ("2026-01-05", "2026-01-06", "2026-01-08", "2026-03-09", "2026-05-11"):
        assert missing in text
    assert "2026-11-04" not in text and "2026-01-07" not in text  # agrees
    assert "2026-01-03" not in text  # a Saturday: off on both sides
    assert len(problems) == 1 + 7


def test_compare_reports_a_missing_working_saturday() -> None:
    settings_ = {"work_time_start": "9", "work_time_end": "17.30", "week_holidays": ["SA", "SU"],
                 "year_holidays": "", "year_workdays": ""}
    text = "\n".join(compare_portal_settings(CalendarRules(), settings_, 2025))
    assert "2025-11-01 (Saturday) is a working day in the service's calendar" in text
    assert "working hours" not in text


def test_compare_agreeing_portal_has_no_problems() -> None:
    rules = CalendarRules()
    days_off = [day for day in (date(2026, 1, 1) + timedelta(n) for n in range(365))
                if not CAL.is_working_day(day) and day.isoweekday() < 6]
    settings_ = {"result": {"work_time_start": "9:00", "work_time_end": "17:30",
                            "week_holidays": "SA,SU", "year_workdays": [],
                            "year_holidays": ",".join(f"{x.day}.{x.month:02d}" for x in days_off)}}
    assert compare_portal_settings(rules, settings_, 2026) == []


def test_compare_is_defensive() -> None:
    settings_ = {"work_time_start": "nine", "week_holidays": ["SA", "XX"],
                 "year_holidays": "1.01,31.02,abc", "year_workdays": None}
    problems = compare_portal_settings(CalendarRules(), settings_, 2026)
    text = "\n".join(problems)
    assert "could not be read" in text
    assert "'XX' is not a weekday code" in text
    assert "'31.02' is not a day.month date" in text and "'abc'" in text
    assert "weekly days off are Saturday; the service's are Saturday, Sunday" in text


@pytest.mark.parametrize(("raw", "parsed"), [
    ("9", time(9)), (9, time(9)), ("17.30", time(17, 30)), ("9:30", time(9, 30)),
    ("9.5", time(9, 30)), (" 18 ", time(18)), ("24", time(23, 59, 59)),
    ("25", None), ("9.75", None), ("", None), (None, None), ("9h", None),
])
def test_parse_portal_clock(raw: object, parsed: time | None) -> None:
    assert parse_portal_clock(raw) == parsed
