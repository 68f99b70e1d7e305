"""Turn the ``[calendar]`` settings into the pure calendar's rules."""

from __future__ import annotations

from b24app.config import CalendarSettings
from kpi.calendar import CalendarRules, WorkingCalendar


def rules_from_settings(calendar: CalendarSettings) -> CalendarRules:
    """``CalendarRules`` with the same hours, breaks, shortened days and admin overrides."""
    return CalendarRules(
        timezone=calendar.timezone,
        workdays=frozenset(calendar.workdays),
        day_start=calendar.day_start,
        day_end=calendar.day_end,
        breaks=calendar.breaks,
        shortened_days=frozenset(calendar.shortened_days),
        shortened_by=calendar.shortened_by_minutes,
        extra_days_off=frozenset(calendar.extra_days_off),
        extra_working_days=frozenset(calendar.extra_working_days),
    )


def calendar_from_settings(calendar: CalendarSettings) -> WorkingCalendar:
    """A ready working calendar for the configured portal."""
    return WorkingCalendar(rules_from_settings(calendar))
