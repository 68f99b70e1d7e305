"""How each REST module renders stored rows: legacy strings, typed camelCase, task strings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, tzinfo
from typing import Any

from b24emu.store import FieldDef
from b24emu.timefmt import render_date, render_dt


def camel(name: str) -> str:
    """``RESPONSIBLE_ID`` → ``responsibleId``; ``UF_CRM_TASK`` → ``ufCrmTask``."""
    head, *rest = name.lower().split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def uf_camel(name: str) -> str:
    """crm.item camelCase of a user field (``UF_CRM_3_DIGIT`` → ``ufCrm3Digit``)."""
    # api-reference/crm/universal/index.md, "Field Naming Conventions": only digits or only
    # letters after UF_CRM_ and the object number convert regularly (UF_CRM_3_1747309727 →
    # ufCrm3_1747309727); mixed names only swap the prefix (UF_CRM_3_DIGIT_10 →
    # ufCrm_3_DIGIT_10, UF_CRM_1747309879 → ufCrm_1747309879).
    body = name.removeprefix("UF_CRM_")
    number, _, rest = body.partition("_")
    if not (number.isdigit() and rest):
        number, rest = "", body
    parts = rest.split("_")
    if number and all(p.isdigit() for p in parts):
        return f"ufCrm{number}_" + "_".join(parts)
    if all(p.isalpha() for p in parts):
        return f"ufCrm{number}" + "".join(p.capitalize() for p in parts)
    return "ufCrm_" + body


def legacy_scalar(fdef: FieldDef | None, value: Any, tz: tzinfo) -> Any:
    """One value as the legacy CRM returns it: every scalar a string, ``null`` kept."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, date):
        # Legacy CRM renders date fields as datetimes with offset too (crm-deal-get.md).
        instant = value if isinstance(value, datetime) else datetime(
            value.year, value.month, value.day, tzinfo=tz)
        return render_dt(instant, tz)
    if isinstance(value, float) or (fdef is not None and fdef.type in ("double", "money")
                                    and isinstance(value, int)):
        return f"{value:.2f}"
    if isinstance(value, Mapping):
        return {str(k): legacy_scalar(None, v, tz) for k, v in value.items()}
    return str(value) if isinstance(value, int) else value


def legacy_row(row: Mapping[str, Any], fields: Mapping[str, FieldDef], names: Iterable[str],
               tz: tzinfo) -> dict[str, Any]:
    """A legacy CRM row restricted to ``names``."""
    out: dict[str, Any] = {}
    for name in names:
        fdef = fields.get(name)
        value = row.get(name)
        if isinstance(value, list):
            out[name] = [legacy_scalar(fdef, v, tz) for v in value]
        elif value is None and fdef is not None and fdef.multiple:
            out[name] = [] if fdef.dynamic else None
        else:
            out[name] = legacy_scalar(fdef, value, tz)
    return out


def typed_scalar(fdef: FieldDef | None, value: Any, tz: tzinfo) -> Any:
    """One value as ``crm.item.*`` returns it: typed numbers, ISO datetimes, Y/N strings."""
    if isinstance(value, datetime):
        return render_dt(value, tz)
    if isinstance(value, date):
        return render_date(value, tz)
    if fdef is not None and fdef.type == "date" and isinstance(value, datetime):
        return render_date(value, tz)
    if isinstance(value, list):
        return [typed_scalar(fdef, v, tz) for v in value]
    return value


def task_scalar(value: Any, tz: tzinfo) -> Any:
    """One value as ``tasks.task.*`` returns it: mostly strings, ISO datetimes."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return render_dt(value, tz)
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return [task_scalar(v, tz) for v in value]
    return value
