"""Users, departments and workgroups."""

from __future__ import annotations

from typing import Any

from b24emu.core import Call, Listed, method
from b24emu.schema.org import DEPARTMENT, GROUP, USER
from b24emu.serialize import legacy_row
from b24emu.store import parse_filter, parse_order, pick_start, select_names


def _user_out(call: Call, row: dict[str, Any]) -> dict[str, Any]:
    names = [n for n in USER if n != "UF_DEPARTMENT"]
    # user.get writes an empty field as "" (LAST_LOGIN, PERSONAL_BIRTHDAY... in user-get.md
    # and resp-batch.json), never null.
    out = {k: "" if v is None else v
           for k, v in legacy_row(row, USER, names, call.portal.tz).items()}
    out["ACTIVE"] = bool(row.get("ACTIVE", True))  # user.get keeps ACTIVE a boolean.
    out["UF_DEPARTMENT"] = list(row.get("UF_DEPARTMENT") or [])  # ...and departments ints.
    return out


@method("user.get", "user")
def user_get(call: Call) -> Any:
    """Users by filter (``FILTER`` or flat keys), ``sort``/``order``, pages of 50."""
    p = call.params
    raw_filter = p.mapping("FILTER") or {
        k: v for k, v in p.items() if k.upper() not in {"SORT", "ORDER", "START", "ADMIN_MODE",
                                                       "SELECT", "FILTER"}}
    users = call.portal.users
    raw_filter.setdefault("USER_TYPE", "employee")
    if "ACTIVE" in {k.upper() for k in raw_filter}:
        active = {k: v for k, v in raw_filter.items() if k.upper() == "ACTIVE"}
        for k, v in active.items():
            raw_filter[k] = "Y" if str(v).lower() in ("1", "true", "y") else "N"
    conditions = parse_filter({k.upper(): v for k, v in raw_filter.items()}, USER,
                              call.portal.tz)
    for c in conditions:
        if c.field == "ACTIVE":
            c.wanted = c.wanted == "Y"  # Stored as a boolean, as user.get returns it.
    sort = p.first("sort", "SORT")
    order = parse_order({str(sort).upper(): p.first("order", "ORDER", default="ASC")}
                        if sort else None, USER)
    page = users.query(conditions, order, pick_start(p.first("start", "START")))
    return Listed([_user_out(call, r) for r in page.rows], page.total, page.next)


@method("user.current", "user")
def user_current(call: Call) -> Any:
    """The token's (or webhook's) user."""
    row = call.portal.users.get(call.user_id) or {"ID": call.user_id}
    return _user_out(call, row)


@method("department.get", "department")
def department_get(call: Call) -> Any:
    """Departments with ``UF_HEAD``, filterable by ID, NAME, SORT, PARENT, UF_HEAD."""
    p = call.params
    sort = p.first("sort", "SORT")
    # Keys are case-insensitive, so ``sort`` is both the sort parameter and the SORT filter:
    # a field name sorts, anything else (a number) filters.
    sort_is_field = str(sort or "").upper() in DEPARTMENT
    raw = {k.upper(): v for k, v in p.items()
           if k.upper() in {"ID", "NAME", "PARENT", "UF_HEAD"}
           or (k.upper() == "SORT" and not sort_is_field)}
    conditions = parse_filter(raw, DEPARTMENT, call.portal.tz)
    sort = sort if sort_is_field else None
    order = parse_order({str(sort).upper(): p.first("order", "ORDER", default="ASC")}
                        if sort else None, DEPARTMENT)
    page = call.portal.departments.query(conditions, order, pick_start(p.first("START", "start")))
    rows = []
    for row in page.rows:
        out = legacy_row(row, DEPARTMENT, ["ID", "NAME", "SORT", "PARENT", "UF_HEAD"],
                         call.portal.tz)
        out["SORT"] = int(row.get("SORT") or 500)
        if row.get("PARENT") is None:
            out.pop("PARENT")
        rows.append(out)
    return Listed(rows, page.total, page.next)


@method("sonet_group.get", "sonet_group")
def sonet_group_get(call: Call) -> Any:
    """Workgroups by ``FILTER`` and ``ORDER``."""
    p = call.params
    conditions = parse_filter({str(k).upper(): v for k, v in p.mapping("FILTER").items()},
                              GROUP, call.portal.tz)
    order = parse_order({str(k).upper(): v for k, v in p.mapping("ORDER").items()}, GROUP)
    page = call.portal.groups.query(conditions, order, pick_start(p.first("start", "START")))
    names = select_names(None, GROUP)
    return Listed([legacy_row(r, GROUP, names, call.portal.tz) for r in page.rows],
                  page.total, page.next)
