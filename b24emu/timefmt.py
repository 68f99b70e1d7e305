"""Datetime parsing and rendering in a portal's time zone."""

from __future__ import annotations

from datetime import date, datetime, time, tzinfo

_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S")


def parse_dt(value: object, tz: tzinfo) -> datetime | None:
    """Parse what clients send for a datetime: ISO 8601 (offset or not), a bare date, unix."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=tz)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=tz)
    parsed = _parse_text(str(value).strip())
    # Offset-less input is read in the portal's zone (the platform leaves this unconfirmed).
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def _parse_text(text: str) -> datetime:
    """ISO 8601 first, then the portal's local formats; naive unless an offset was given."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)  # the caller applies the portal zone
        except ValueError:
            continue
    raise ValueError(f"not a date: {text!r}")


def render_dt(value: datetime | None, tz: tzinfo) -> str | None:
    """Render as Bitrix24 does: ``2024-08-30T14:29:00+07:00`` in the portal's zone."""
    if value is None:
        return None
    return value.astimezone(tz).replace(microsecond=0).isoformat()


def render_date(value: datetime | date | None, tz: tzinfo) -> str | None:
    """Render a date-only field as ``YYYY-MM-DD``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.astimezone(tz).date()
    return value.isoformat()
