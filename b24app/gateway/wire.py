"""Read Bitrix24's wire values (strings, "Y"/"N", ISO datetimes with offsets) into Python."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def to_int(value: Any, default: int = 0) -> int:
    """``"410"`` → 410; empty or junk → ``default``."""
    if value is None or value == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            return int(float(str(value)))
        except ValueError:
            return default


def to_opt_int(value: Any) -> int | None:
    """Like :func:`to_int` but ``None`` for empty and zero (Bitrix24 uses "0" for "none")."""
    number = to_int(value)
    return number or None


def to_decimal(value: Any) -> Decimal:
    """Money as Decimal (``"1000000.00"``)."""
    if value is None or value == "":
        return Decimal(0)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def to_dt(value: Any) -> datetime | None:
    """ISO 8601 with offset → aware UTC datetime; empty → None."""
    if value is None or value == "" or value is False:
        return None
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # Bitrix24 always sends an offset; a bare value is read as UTC rather than guessed.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def to_date(value: Any) -> date | None:
    """A date field (legacy CRM sends midnight datetimes, crm.item sends ``YYYY-MM-DD``)."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.date()


def to_bool(value: Any) -> bool:
    """``"Y"``/``"1"``/``true`` → True."""
    if isinstance(value, bool):
        return value
    return str(value).strip().upper() in ("Y", "1", "TRUE")


def to_ints(value: Any) -> tuple[int, ...]:
    """A list of IDs (or a PHP map of them) → tuple of ints."""
    if value is None or value == "":
        return ()
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        value = [value]
    return tuple(n for n in (to_int(v) for v in value) if n)
