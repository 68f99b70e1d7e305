"""In-memory tables with Bitrix24 list semantics: filter prefixes, order, select, pages of 50."""

from __future__ import annotations

import bisect
import functools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from b24emu.phpquery import as_list
from b24emu.timefmt import parse_dt

PAGE = 50

INT_TYPES = frozenset(
    {"integer", "int", "user", "employee", "crm_company", "crm_contact", "crm_lead",
     "crm_category", "crm_deal", "group", "id", "crm_quote", "crm_enum_ownertype",
     "crm_enum_activitytype", "crm_enum_activitystatus", "crm_enum_activitydirection",
     "crm_enum_activitypriority", "crm_enum_activitynotifytype", "crm_enum_contenttype"}
)
FLOAT_TYPES = frozenset({"double", "money", "float"})
DATE_TYPES = frozenset({"datetime", "date"})

# Longest first so ">=" wins over ">".
_PREFIXES = ("!@", "!=%", "!%=", "!%", ">=", "<=", "!=", "=%", "%=", "><", ">", "<", "@", "%",
             "=", "!")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass
class FieldDef:
    """One field of an entity as ``*.fields`` describes it."""

    name: str
    type: str = "string"
    title: str = ""
    multiple: bool = False
    read_only: bool = False
    required: bool = False
    immutable: bool = False
    dynamic: bool = False
    status_type: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def kind(self) -> str:
        """Comparison class of the field: int, float, date or str."""
        if self.type in INT_TYPES:
            return "int"
        if self.type in FLOAT_TYPES:
            return "float"
        if self.type in DATE_TYPES:
            return "date"
        return "str"


class FilterError(ValueError):
    """A filter the portal cannot apply."""


def _to_int(value: Any, tz: tzinfo) -> Any:
    return int(float(value))


def _to_float(value: Any, tz: tzinfo) -> Any:
    return float(value)


_CONVERTERS: dict[str, Callable[[Any, tzinfo], Any]] = {
    "int": _to_int, "float": _to_float, "date": parse_dt,
}


def coerce(kind: str, value: Any, tz: tzinfo) -> Any:
    """Bring a client-supplied filter value to the field's comparison class."""
    if value is None or value == "":
        return None
    convert = _CONVERTERS.get(kind)
    if convert is not None:
        try:
            return convert(value, tz)
        except (TypeError, ValueError):
            # An unconvertible value is compared as text (it then matches nothing typed).
            return str(value)
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def _like(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.split("%")]
    return re.compile("^" + ".*".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _values(stored: Any) -> list[Any]:
    return stored if isinstance(stored, list) else [stored]


_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


def _cmp(op: str, stored: Any, wanted: Any) -> bool:
    """Compare one stored scalar with one wanted scalar under an operator."""
    if wanted is None:
        empty = stored is None or stored in ("", 0)
        return empty if op in ("=", "") else not empty
    if stored is None:
        return False
    if op in ("", "="):
        try:
            return bool(_norm(stored) == _norm(wanted))
        except TypeError:
            return str(stored) == str(wanted)
    compare = _ORDERING.get(op)
    if compare is None:
        raise FilterError(op)
    try:
        return bool(compare(stored, wanted))
    except TypeError:
        return False


@dataclass
class Condition:
    """One filter entry: field, operator and the wanted value(s)."""

    field: str
    op: str
    wanted: Any
    kind: str

    def test(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` satisfies this condition."""
        stored = record.get(self.field)
        op = self.op
        if op in ("%", "!%", "=%", "%=", "!=%", "!%="):
            hit = self._like(stored)
            return not hit if op.startswith("!") else hit
        if op in ("@", "!@"):
            hit = any(_cmp("=", s, w) for s in _values(stored) for w in self.wanted)
            return not hit if op == "!@" else hit
        if op == "><":
            lo, hi = self.wanted
            return any(s is not None and _cmp(">=", s, lo) and _cmp("<=", s, hi)
                       for s in _values(stored))
        if op in ("!", "!="):
            wanted = self.wanted if isinstance(self.wanted, list) else [self.wanted]
            return not any(_cmp("=", s, w) for s in _values(stored) for w in wanted)
        if isinstance(self.wanted, list):
            return any(_cmp("=", s, w) for s in _values(stored) for w in self.wanted)
        return any(_cmp(op, s, self.wanted) for s in _values(stored))

    def _like(self, stored: Any) -> bool:
        if stored is None:
            return False
        wanted = str(self.wanted if not isinstance(self.wanted, list) else self.wanted[0])
        if self.op in ("%", "!%"):
            return any(wanted.casefold() in str(s).casefold() for s in _values(stored))
        rx = _like(wanted)
        return any(rx.match(str(s)) for s in _values(stored))


def parse_filter(
    raw: Mapping[str, Any] | None,
    fields: Mapping[str, FieldDef],
    tz: tzinfo,
    *,
    rename: Callable[[str], str] | None = None,
    strict: bool = False,
) -> list[Condition]:
    """Turn ``{'>=DATE_MODIFY': '2024-01-01', '@ID': [1, 2]}`` into conditions.

    Unknown fields are ignored like the legacy CRM does, unless ``strict``.
    """
    conditions: list[Condition] = []
    if not raw:
        return conditions
    if not isinstance(raw, Mapping):
        raise FilterError("filter must be an object")
    for key, value in raw.items():
        if str(key).upper() == "LOGIC":
            continue
        op = next((p for p in _PREFIXES if str(key).startswith(p)), "")
        name = str(key)[len(op) :]
        if rename is not None:
            name = rename(name)
        if not _FIELD_RE.match(name):
            raise FilterError(f"bad filter key {key!r}")
        fdef = fields.get(name)
        if fdef is None:
            if strict:
                raise FilterError(f"unknown field {name!r}")
            continue
        conditions.append(_condition(name, op, value, fdef.kind(), tz))
    return conditions


def _condition(name: str, op: str, value: Any, kind: str, tz: tzinfo) -> Condition:
    """One condition; a list value without a prefix means IN (``@``)."""
    if isinstance(value, Mapping | list) and op not in ("%", "=%", "%="):
        wanted: Any = [coerce(kind, v, tz) for v in as_list(value)]
        if op == "><" and len(wanted) != 2:
            raise FilterError("'><' needs two values")
        return Condition(name, op or "@", wanted, kind)
    wanted = coerce(kind, value, tz)
    return Condition(name, op, [wanted] if op in ("@", "!@") else wanted, kind)


def parse_order(
    raw: Any, fields: Mapping[str, FieldDef], *, rename: Callable[[str], str] | None = None
) -> list[tuple[str, bool]]:
    """Turn ``{'DATE_CREATE': 'DESC'}`` into ``[('DATE_CREATE', True)]`` (name, descending)."""
    order: list[tuple[str, bool]] = []
    if not raw or not isinstance(raw, Mapping):
        return order
    for key, direction in raw.items():
        name = rename(str(key)) if rename else str(key)
        if name in fields:
            order.append((name, str(direction).upper() == "DESC"))
    return order


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None or value == "":
        return (0, 0)
    if isinstance(value, str):
        return (1, value.casefold())
    if isinstance(value, datetime):
        return (2, value.timestamp())
    if isinstance(value, list):
        return (3, str(value))
    return (2, value)


def _row_key(row: Mapping[str, Any], name: str) -> tuple[int, Any]:
    return _sort_key(row.get(name))


@dataclass
class Page:
    """One page of a list call."""

    rows: list[dict[str, Any]]
    total: int
    next: int | None


class Table:
    """Rows keyed by integer ID in ascending order, with an auto-increment counter."""

    def __init__(self, name: str, fields: Mapping[str, FieldDef] | None = None,
                 first_id: int = 1) -> None:
        self.name = name
        self.fields: dict[str, FieldDef] = dict(fields or {})
        self.rows: dict[int, dict[str, Any]] = {}
        self._ids: list[int] = []
        self._next_id = first_id

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self.rows

    def get(self, row_id: int) -> dict[str, Any] | None:
        """A row by ID, or ``None``."""
        return self.rows.get(row_id)

    def insert(self, row: dict[str, Any], row_id: int | None = None) -> int:
        """Store a row under the next ID (or a given one) and return the ID."""
        if row_id is None:
            row_id = self._next_id
        self._next_id = max(self._next_id, row_id + 1)
        row["ID"] = row_id
        if self._ids and row_id < self._ids[-1]:
            bisect.insort(self._ids, row_id)
        elif row_id not in self.rows:
            self._ids.append(row_id)
        self.rows[row_id] = row
        return row_id

    def delete(self, row_id: int) -> bool:
        """Remove a row; ``False`` when it did not exist."""
        if self.rows.pop(row_id, None) is None:
            return False
        idx = bisect.bisect_left(self._ids, row_id)
        del self._ids[idx]
        return True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row_id in self._ids:
            yield self.rows[row_id]

    def _id_window(self, conditions: list[Condition]) -> tuple[int, int, list[Condition]]:
        """Narrow the scan by ID range conditions; return slice bounds and the rest."""
        lo, hi = 0, len(self._ids)
        rest: list[Condition] = []
        for cond in conditions:
            if cond.field != "ID" or not isinstance(cond.wanted, int):
                rest.append(cond)
                continue
            if cond.op == ">":
                lo = max(lo, bisect.bisect_right(self._ids, cond.wanted))
            elif cond.op == ">=":
                lo = max(lo, bisect.bisect_left(self._ids, cond.wanted))
            elif cond.op == "<":
                hi = min(hi, bisect.bisect_left(self._ids, cond.wanted))
            elif cond.op == "<=":
                hi = min(hi, bisect.bisect_right(self._ids, cond.wanted))
            elif cond.op in ("", "="):
                lo = max(lo, bisect.bisect_left(self._ids, cond.wanted))
                hi = min(hi, bisect.bisect_right(self._ids, cond.wanted))
            else:
                rest.append(cond)
        return lo, max(lo, hi), rest

    def scan(self, conditions: list[Condition]) -> Iterator[dict[str, Any]]:
        """Rows that satisfy every condition, in ID order."""
        lo, hi, rest = self._id_window(conditions)
        ids = self._ids
        rows = self.rows
        for i in range(lo, hi):
            row = rows[ids[i]]
            if all(c.test(row) for c in rest):
                yield row

    def query(
        self,
        conditions: list[Condition],
        order: list[tuple[str, bool]],
        start: int,
        page: int = PAGE,
    ) -> Page:
        """Apply Bitrix24 paging: ``start=-1`` skips the count (``total`` 0, no ``next``)."""
        by_id_asc = not order or order == [("ID", False)]
        if by_id_asc:
            return self._query_by_id(conditions, start, page)
        matches = list(self.scan(conditions))
        for name, desc in reversed(order):
            matches.sort(key=functools.partial(_row_key, name=name), reverse=desc)
        if start < 0:
            return Page(matches[:page], 0, None)
        window = matches[start : start + page]
        nxt = start + page if start + page < len(matches) else None
        return Page(window, len(matches), nxt)

    def _query_by_id(self, conditions: list[Condition], start: int, page: int) -> Page:
        lo, hi, rest = self._id_window(conditions)
        if not rest:
            total = hi - lo
            offset = max(start, 0)
            ids = self._ids[lo + offset : min(hi, lo + offset + page)]
            rows = [self.rows[i] for i in ids]
            if start < 0:
                return Page(rows, 0, None)
            return Page(rows, total, start + page if start + page < total else None)
        if start < 0:
            rows = []
            for row in self.scan(conditions):
                rows.append(row)
                if len(rows) >= page:
                    break
            return Page(rows, 0, None)
        count = 0
        window: list[dict[str, Any]] = []
        for row in self.scan(conditions):
            if start <= count < start + page:
                window.append(row)
            count += 1
        return Page(window, count, start + page if start + page < count else None)


def pick_start(raw: Any) -> int:
    """Read the ``start`` parameter; Bitrix24 rounds it down to a page boundary."""
    if raw is None or raw == "":
        return 0
    try:
        start = int(float(str(raw)))
    except ValueError:
        return 0
    if start < 0:
        return -1
    return start - start % PAGE


def select_names(
    raw: Any, fields: Mapping[str, FieldDef], default: Iterable[str] = ("*",),
    *, rename: Callable[[str], str] | None = None,
) -> list[str]:
    """Expand a ``select`` list: ``*`` = standard single fields, ``UF_*`` = user fields."""
    wanted = [str(v) for v in as_list(raw)] or list(default)
    names: list[str] = ["ID"] if "ID" in fields else []
    for item in wanted:
        item_name = rename(item) if rename and item not in ("*", "UF_*") else item
        if item_name == "*":
            names += [n for n, f in fields.items() if not f.dynamic and not f.multiple]
        elif item_name == "UF_*":
            names += [n for n, f in fields.items() if f.dynamic]
        elif item_name in fields:
            names.append(item_name)
    return list(dict.fromkeys(names))
