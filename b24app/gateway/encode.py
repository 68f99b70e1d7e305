"""Encode parameters into batch commands ourselves (fast-bitrix24 would send ``None`` as "None")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote


def scalar(value: Any) -> str:  # noqa: PLR0911 - one branch per wire type
    """A value as Bitrix24 expects it in a query string."""
    if value is None:
        return ""  # Empty clears a field; "None" would be stored literally.
    if value is True:
        return "Y"
    if value is False:
        return "N"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime sent to Bitrix24; attach a time zone")
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float | Decimal):
        return format(value, "f") if isinstance(value, Decimal) else repr(value)
    return str(value)


def pairs(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested params to bracketed pairs; ``[]`` becomes ``key[]=`` so it can clear."""
    out: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            out.extend(pairs(value, name) if value else [(name, "")])
        elif isinstance(value, list | tuple | set | frozenset):
            items = list(value)
            if not items:
                out.append((f"{name}[]", ""))
            for i, item in enumerate(items):
                if isinstance(item, Mapping):
                    out.extend(pairs(item, f"{name}[{i}]"))
                else:
                    out.append((f"{name}[{i}]", scalar(item)))
        else:
            out.append((name, scalar(value)))
    return out


def query(data: Mapping[str, Any]) -> str:
    """URL-encoded query string of nested params."""
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs(data))


def command(method: str, params: Mapping[str, Any] | None = None) -> str:
    """One batch command: ``method?query``."""
    return f"{method}?{query(params or {})}"
