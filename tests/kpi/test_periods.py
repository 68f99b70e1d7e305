"""Calendar periods and weeks in the portal's zone: labels, titles, boundaries, neighbours."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kpi.periods import (
    Period,
    PeriodKind,
    Week,
    half_of,
    local_date,
    month_of,
    period_of,
    quarter_of,
    trailing_start,
    week_of,
    year_of,
)
from tests.kpi.kpifactories import NSK, month, nsk, quarter

MSK = ZoneInfo("Europe/Moscow")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ---- the brief's boundary: a deal's month is its local (Novosibirsk) month ----

@pytest.mark.parametrize(("instant", "label"), [
    (utc(2026, 11, 30, 16, 30), "2026-11"),  # 23:30 +07 on 30 November
    (utc(2026, 11, 30, 16, 59) + timedelta(seconds=59.999999), "2026-11"),  # 23:59:59.999999
    (utc(2026, 11, 30, 17, 0), "2026-12"),  # 00:00 +07 on 1 December: the first instant
    (utc(2026, 11, 30, 17, 10), "2026-12"),  # 00:10 +07 on 1 December
    (nsk(2026, 11, 30, 23, 30), "2026-11"),
    (nsk(2026, 12, 1, 0, 10), "2026-12"),
    (utc(2026, 10, 31, 17, 0), "2026-11"),  # 1 November 00:00 +07
    (utc(2026, 10, 31, 16, 59), "2026-10"),
    (utc(2026, 12, 31, 17, 0), "2027-01"),  # New Year in Novosibirsk, still 2026 in UTC
])
def test_month_of_is_local(instant: datetime, label: str) -> None:
    period = month_of(instant)
    assert period.label == label
    assert period.contains(instant)
    assert not period.previous().contains(instant)
    assert not period.next().contains(instant)


def test_zone_is_a_parameter() -> None:
    # The same instant is still November in Moscow (20:10 MSK).
    instant = utc(2026, 11, 30, 17, 10)
    assert month_of(instant, "Europe/Moscow").label == "2026-11"
    assert month_of(instant).label == "2026-12"
    assert local_date(instant, "Europe/Moscow") == date(2026, 11, 30)


@pytest.mark.parametrize(("kind", "instant", "label", "title"), [
    ("month", nsk(2026, 11, 15), "2026-11", "ноябрь 2026"),
    ("month", nsk(2026, 5, 1), "2026-05", "май 2026"),
    ("quarter", nsk(2026, 11, 15), "2026-Q4", "IV квартал 2026"),
    ("quarter", utc(2026, 9, 30, 17, 0), "2026-Q4", "IV квартал 2026"),  # 1 Oct 00:00 +07
    ("quarter", utc(2026, 9, 30, 16, 59), "2026-Q3", "III квартал 2026"),
    ("half", nsk(2026, 7, 1, 0, 0), "2026-H2", "II полугодие 2026"),
    ("half", nsk(2026, 6, 30, 23, 59), "2026-H1", "I полугодие 2026"),
    ("year", nsk(2026, 11, 15), "2026", "2026 год"),
    ("year", utc(2025, 12, 31, 17, 0), "2026", "2026 год"),
])
def test_labels_and_titles(kind: str, instant: datetime, label: str, title: str) -> None:
    period = period_of(kind, instant)
    assert (period.label, period.title, str(period)) == (label, title, label)
    assert Period.parse(label) == period


def test_helpers_agree_with_period_of() -> None:
    instant = nsk(2026, 8, 20)
    assert quarter_of(instant) == Period(PeriodKind.QUARTER, 2026, 3)
    assert half_of(instant) == Period(PeriodKind.HALF, 2026, 2)
    assert year_of(instant) == Period(PeriodKind.YEAR, 2026)


def test_dates_and_instants() -> None:
    nov = month(2026, 11)
    assert (nov.first_day, nov.last_day) == (date(2026, 11, 1), date(2026, 11, 30))
    assert nov.start == nsk(2026, 11, 1, 0, 0) == utc(2026, 10, 31, 17, 0)
    assert nov.end == nsk(2026, 12, 1, 0, 0) == utc(2026, 11, 30, 17, 0)
    assert nov.start.tzinfo == NSK
    feb = Period.parse("2028-02")
    assert feb.last_day == date(2028, 2, 29)  # leap year
    q4 = quarter(2026, 4)
    assert (q4.first_day, q4.last_day) == (date(2026, 10, 1), date(2026, 12, 31))
    assert [m.label for m in q4.month_periods()] == ["2026-10", "2026-11", "2026-12"]
    assert nov.contains_day(date(2026, 11, 30)) and not nov.contains_day(date(2026, 12, 1))


@pytest.mark.parametrize(("label", "previous", "following"), [
    ("2026-01", "2025-12", "2026-02"),
    ("2026-12", "2026-11", "2027-01"),
    ("2026-Q1", "2025-Q4", "2026-Q2"),
    ("2026-Q4", "2026-Q3", "2027-Q1"),
    ("2026-H1", "2025-H2", "2026-H2"),
    ("2026", "2025", "2027"),
])
def test_neighbours(label: str, previous: str, following: str) -> None:
    period = Period.parse(label)
    assert period.previous().label == previous
    assert period.next().label == following
    assert period.previous().end == period.start


def test_as_of_clamps_to_now() -> None:
    nov = month(2026, 11)
    assert nov.as_of() == nov.end
    assert nov.as_of(nsk(2026, 11, 15)) == nsk(2026, 11, 15)
    assert nov.as_of(nsk(2027, 1, 1)) == nov.end


@pytest.mark.parametrize("bad", ["2026-13", "2026-Q5", "2026-H3", "26-11", "2026-11-01", ""])
def test_parse_rejects_bad_labels(bad: str) -> None:
    with pytest.raises(ValueError, match=r"period|index"):
        Period.parse(bad)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="aware"):
        month_of(datetime(2026, 11, 30, 23, 30))  # naive: which zone was it?
    with pytest.raises(ValueError, match="aware"):
        month(2026, 11).contains(datetime(2026, 11, 30))
    with pytest.raises(ValueError, match="time zone"):
        Period(PeriodKind.MONTH, 2026, 1, "Mars/Olympus")
    with pytest.raises(ValueError, match="index"):
        Period(PeriodKind.QUARTER, 2026, 0)
    with pytest.raises(ValueError, match="Monday"):
        Week(date(2026, 12, 1))


# ---- weeks: Monday to Sunday, owned by the period of their Thursday ----

@pytest.mark.parametrize(("label", "mondays"), [
    ("2026-10", ["2026-09-28", "2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26"]),
    ("2026-11", ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]),
    ("2026-12", ["2026-11-30", "2026-12-07", "2026-12-14", "2026-12-21", "2026-12-28"]),
    ("2026-01", ["2025-12-29", "2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]),
])
def test_weeks_of_a_month(label: str, mondays: list[str]) -> None:
    assert [w.monday.isoformat() for w in Period.parse(label).weeks()] == mondays


def test_week_instants_and_label() -> None:
    week = week_of(utc(2026, 11, 29, 17, 30))  # Monday 30 November 00:30 +07
    assert week.monday == date(2026, 11, 30)
    assert (week.start, week.end) == (nsk(2026, 11, 30, 0, 0), nsk(2026, 12, 7, 0, 0))
    assert week.sunday == date(2026, 12, 6)
    assert week.label == "2026-W49"
    assert week.contains(nsk(2026, 12, 6, 23, 59)) and not week.contains(nsk(2026, 12, 7, 0, 0))


def test_weeks_of_months_partition_the_year() -> None:
    year = Period.parse("2026")
    by_month = [w for m in year.month_periods() for w in m.weeks()]
    assert by_month == list(year.weeks())
    assert len(by_month) == 53  # 2026 starts on a Thursday: an ISO year of 53 weeks


@pytest.mark.parametrize(("as_of", "months", "start"), [
    (nsk(2026, 12, 1, 0, 0), 12, nsk(2025, 12, 1, 0, 0)),
    (nsk(2026, 5, 31, 10, 0), 3, nsk(2026, 2, 28, 10, 0)),  # day clamped to February
    (nsk(2028, 5, 31, 10, 0), 3, nsk(2028, 2, 29, 10, 0)),  # leap year
    (utc(2026, 11, 30, 17, 0), 12, nsk(2025, 12, 1, 0, 0)),  # as_of given in UTC
    (nsk(2026, 1, 15), 1, nsk(2025, 12, 15)),
])
def test_trailing_start(as_of: datetime, months: int, start: datetime) -> None:
    assert trailing_start(as_of, months) == start


# ---- properties ----

INSTANTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2150, 1, 1),
                        timezones=st.just(UTC))
KINDS = st.sampled_from(list(PeriodKind))
ZONES = st.sampled_from(["Asia/Novosibirsk", "Europe/Moscow", "Europe/Berlin", "UTC"])


@given(instant=INSTANTS, kind=KINDS, tz=ZONES)
def test_an_instant_is_in_exactly_its_period(instant: datetime, kind: PeriodKind,
                                             tz: str) -> None:
    period = period_of(kind, instant, tz)
    assert period.start <= instant < period.end
    assert not period.previous().contains(instant) and not period.next().contains(instant)
    assert Period.parse(period.label, tz) == period
    assert period.contains_day(local_date(instant, tz))


@given(instant=INSTANTS, kind=KINDS, shift=st.integers(-50, 50))
def test_shift_round_trips(instant: datetime, kind: PeriodKind, shift: int) -> None:
    period = period_of(kind, instant)
    assert period.shift(shift).shift(-shift) == period
    assert period.next().previous() == period
    months = period.month_periods()
    assert months[0].start == period.start and months[-1].end == period.end


@given(instant=INSTANTS)
def test_week_of_contains_and_belongs_to_one_month(instant: datetime) -> None:
    week = week_of(instant)
    assert week.contains(instant)
    owners = [m for m in (month_of(instant).shift(d) for d in (-1, 0, 1)) if week in m.weeks()]
    assert len(owners) == 1
    assert owners[0].contains_day(week.monday + timedelta(days=3))


def test_moscow_midnight_differs_from_novosibirsk() -> None:
    nov_msk = Period(PeriodKind.MONTH, 2026, 11, "Europe/Moscow")
    assert nov_msk.start == datetime(2026, 11, 1, tzinfo=MSK)
    assert nov_msk.start - month(2026, 11).start == timedelta(hours=4)
