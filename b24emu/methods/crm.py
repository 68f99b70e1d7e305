"""Legacy ``crm.deal|company|contact.*`` methods and the row writing other CRM modules share."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from b24emu.core import Call, Listed, method
from b24emu.errors import ApiError, legacy_crm
from b24emu.events import Actor
from b24emu.phpquery import as_list
from b24emu.portal import Portal
from b24emu.schema.crm import SELECT_ONLY, USERFIELD, stage_semantic
from b24emu.serialize import legacy_row
from b24emu.store import (
    Condition,
    FieldDef,
    FilterError,
    Table,
    parse_filter,
    parse_order,
    pick_start,
    select_names,
)
from b24emu.timefmt import parse_dt
from b24emu.userfields import (
    api_row,
    delete_userfield,
    double_value,
    find_userfield,
    label,
    register_userfield,
    update_userfield,
)

YES = frozenset({"Y", "1", "TRUE", "ON", "YES"})
# User-field types whose stored value is an integer ID although ``*.fields`` names them otherwise.
UF_INT_TYPES = frozenset({"enumeration", "file", "iblock_element", "iblock_section", "boolean"})


@dataclass(frozen=True)
class Entity:
    """A legacy CRM entity: REST name, portal table, CRM type id and user-field entity id."""

    name: str
    attr: str
    type_id: int
    uf_entity: str

    def table(self, portal: Portal) -> Table:
        """The entity's rows."""
        table: Table = getattr(portal, self.attr)
        return table

    @property
    def event(self) -> str:
        """Event name prefix (``ONCRMDEAL`` + ADD/UPDATE/DELETE)."""
        return f"ONCRM{self.name.upper()}"


ENTITIES = {
    "deal": Entity("deal", "deals", 2, "CRM_DEAL"),
    "contact": Entity("contact", "contacts", 3, "CRM_CONTACT"),
    "company": Entity("company", "companies", 4, "CRM_COMPANY"),
}
BY_TYPE = {e.type_id: e for e in ENTITIES.values()}


# -- values -----------------------------------------------------------------------------------
def flag(value: Any) -> str:
    """"Y"/"N" from whatever a client sends (``true``, ``1``, ``Y``...)."""
    return "Y" if str(value).strip().upper() in YES else "N"


def midnight(value: datetime, tz: tzinfo) -> datetime:
    """A date field keeps only the day, at midnight in the portal's zone."""
    return value.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)


def coerce_scalar(fdef: FieldDef, value: Any, tz: tzinfo) -> Any:  # noqa: PLR0911
    """One client-sent value as stored: int, float, aware datetime, "Y"/"N" or str."""
    if fdef.type in ("object", "file", "diskfile") and not fdef.dynamic:
        return value
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None or (value == "" and fdef.type != "string"):
        return None
    if fdef.dynamic and fdef.type == "boolean":
        return 1 if flag(value) == "Y" else 0  # UF booleans are stored as 1/0 (legacy shows "1").
    if fdef.dynamic and fdef.type == "double":
        # Decimal commas are accepted and values rounded to the field's PRECISION on save.
        value = double_value(value, fdef.settings)
    kind = "int" if fdef.dynamic and fdef.type in UF_INT_TYPES else fdef.kind()
    try:
        if kind == "int":
            return int(float(str(value).strip()))
        if kind == "float":
            return float(str(value).strip())
        if kind == "date":
            parsed = parse_dt(value, tz)
            return midnight(parsed, tz) if parsed and fdef.type == "date" else parsed
    except ValueError:
        return None
    if fdef.type in ("char", "boolean") or isinstance(value, bool):
        return flag(value)
    return value if isinstance(value, Mapping) else str(value)


def coerce_value(fdef: FieldDef, value: Any, tz: tzinfo) -> Any:
    """A client-sent value for a field, multiple fields as lists."""
    if fdef.multiple:
        items = [coerce_scalar(fdef, v, tz) for v in as_list(value)]
        return [v for v in items if v is not None and v != ""]
    return coerce_scalar(fdef, value, tz)


def next_multifield_id(portal: Portal) -> int:
    """A portal-wide PHONE/EMAIL/WEB item ID, continuing after seeded rows."""
    # Kept on a persisted table so saved state goes on; seeded once from existing rows.
    seq = getattr(portal.contacts, "multifield_seq", None)
    if seq is None:
        seq = max([int(i.get("ID") or 0) for t in (portal.contacts, portal.companies)
                   for r in t for n in ("PHONE", "EMAIL", "WEB") for i in r.get(n) or []]
                  + [0])
    setattr(portal.contacts, "multifield_seq", seq + 1)  # noqa: B010
    return int(seq) + 1


def merge_multifield(portal: Portal, current: list[Any], value: Any, type_id: str) -> list[Any]:
    """PHONE/EMAIL/WEB items: with ``ID`` update it (empty VALUE deletes), without ``ID`` add."""
    items = [dict(i) for i in current]
    for raw in as_list(value):
        entry = dict(raw) if isinstance(raw, Mapping) else {"VALUE": raw}
        text = str(entry.get("VALUE") or "").strip()
        try:
            item_id = int(entry.get("ID") or 0)
        except (TypeError, ValueError):
            item_id = 0
        old = next((i for i in items if i["ID"] == item_id), None) if item_id else None
        if old is not None:
            if not text or flag(entry.get("DELETE", "N")) == "Y":
                items.remove(old)
            else:
                old.update(VALUE=text, VALUE_TYPE=str(entry.get("VALUE_TYPE") or old["VALUE_TYPE"]))
        elif text:
            seq = next_multifield_id(portal)
            items.append({"ID": seq, "VALUE_TYPE": str(entry.get("VALUE_TYPE") or "WORK"),
                          "VALUE": text, "TYPE_ID": type_id})
    return items


def write_fields(portal: Portal, table: Table, row: dict[str, Any], fields: Mapping[str, Any],
                 *, creating: bool, allow_immutable: bool = False) -> set[str]:
    """Copy writable fields into ``row``; unknown and read-only ones are silently ignored."""
    changed: set[str] = set()
    for key, value in fields.items():
        name = str(key)
        fdef = table.fields.get(name)
        if fdef is None or fdef.read_only or name == "ID":
            continue
        if fdef.immutable and not creating and not allow_immutable:
            continue  # e.g. CATEGORY_ID: crm.deal.update cannot move a deal to another funnel.
        if fdef.type == "crm_multifield":
            new = merge_multifield(portal, row.get(name) or [], value, name)
        else:
            new = coerce_value(fdef, value, portal.tz)
        if row.get(name) != new:
            changed.add(name)
        row[name] = new
    return changed


# -- filters and selects ----------------------------------------------------------------------
class Group(Condition):
    """A nested filter group (``logic: OR``) of condition lists."""

    def __init__(self, members: list[list[Condition]], any_of: bool) -> None:
        super().__init__("", "group", None, "str")
        self.members = members
        self.any_of = any_of

    def test(self, record: Mapping[str, Any]) -> bool:
        """AND or OR over the members, each an AND of its conditions."""
        hits = (all(c.test(record) for c in member) for member in self.members)
        return any(hits) if self.any_of else all(hits)


def _int_wanted(fdef: FieldDef, wanted: Any) -> Any:
    if isinstance(wanted, list):
        return [_int_wanted(fdef, w) for w in wanted]
    if wanted is None:
        return None
    if fdef.type == "boolean":
        return 1 if flag(wanted) == "Y" else 0
    try:
        return int(float(str(wanted)))
    except ValueError:
        return wanted


def build_filter(raw: Any, fields: Mapping[str, FieldDef], tz: tzinfo, *,
                 rename: Callable[[str], str] | None = None) -> list[Condition]:
    """``parse_filter`` plus nested groups with ``logic`` and typed user-field values."""
    if not isinstance(raw, Mapping):
        raw = {str(i): v for i, v in enumerate(as_list(raw))}
    flat = {k: v for k, v in raw.items() if not (str(k).isdigit() and isinstance(v, Mapping))}
    nested = [v for k, v in raw.items() if str(k).isdigit() and isinstance(v, Mapping)]
    conditions = parse_filter(flat, fields, tz, rename=rename)
    for cond in conditions:
        fdef = fields[cond.field]
        if fdef.dynamic and fdef.type in UF_INT_TYPES:
            cond.wanted, cond.kind = _int_wanted(fdef, cond.wanted), "int"
    for sub in nested:
        logic = str(next((v for k, v in sub.items() if str(k).lower() == "logic"), "AND"))
        parts = [[c] for c in build_filter({k: v for k, v in sub.items() if not str(k).isdigit()},
                                           fields, tz, rename=rename)]
        parts += [build_filter(v, fields, tz, rename=rename)
                  for k, v in sub.items() if str(k).isdigit() and isinstance(v, Mapping)]
        conditions.append(Group(parts, logic.upper() == "OR"))
    return conditions


def upper_keys(raw: Any) -> dict[str, Any]:
    """A legacy filter/order with UPPER field names (prefixes are not letters)."""
    return {str(k).upper(): v for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def legacy_names(raw_select: Any, fields: Mapping[str, FieldDef]) -> list[str]:
    """Legacy ``select``: default ``*`` + ``UF_*``; heavy fields only when named."""
    wanted = {str(v).upper() for v in as_list(raw_select)}
    names = select_names([str(v).upper() for v in as_list(raw_select)], fields,
                         default=("*", "UF_*"))
    return [n for n in names if n not in SELECT_ONLY or n in wanted]


def legacy_query(call: Call, table: Table, *, raw_filter: Mapping[str, Any] | None = None,
                 default_order: Any = None, extra: list[Condition] | None = None,
                 ) -> tuple[list[dict[str, Any]], Listed]:
    """Filter, order and page a table the legacy way; rows of the page plus the envelope."""
    p = call.params
    if raw_filter is None:
        raw_filter = upper_keys(p.first("filter"))
    try:
        conditions = build_filter(raw_filter, table.fields, call.portal.tz)
    except FilterError as exc:
        raise legacy_crm(f"Invalid filter: {exc}") from None
    order = parse_order(upper_keys(p.first("order")) or default_order, table.fields)
    page = table.query(conditions + (extra or []), order, pick_start(p.first("start")))
    return page.rows, Listed([], page.total, page.next)


# -- events -----------------------------------------------------------------------------------
def emit(call: Call, event: str, data: dict[str, Any], key: str) -> None:
    """Announce a change as the caller (``auth_connector`` suppresses its own offline events)."""
    connector = call.params.first("auth_connector")
    actor = Actor(call.user_id, automation=call.automation, client_id=call.client_id,
                  auth_connector=str(connector) if connector else None)
    call.portal.events.emit(event, data, actor, key)


def record_stage(portal: Portal, owner: tuple[int, int], type_id: int,
                 row: Mapping[str, Any], now: datetime) -> None:
    """Append a ``crm.stagehistory.list`` row (1 created, 2 moved, 3 final stage, 5 funnel)."""
    portal.stage_history.insert({
        "TYPE_ID": type_id, "OWNER_TYPE_ID": owner[0], "OWNER_ID": owner[1],
        "CREATED_TIME": now, "CATEGORY_ID": int(row.get("CATEGORY_ID") or 0),
        "STAGE_SEMANTIC_ID": row.get("STAGE_SEMANTIC_ID"), "STAGE_ID": row.get("STAGE_ID")})


def stage_move_type(creating: bool, moved_category: bool, moved_stage: bool,
                    semantic: str) -> int | None:
    """The stage-history TYPE_ID for a write, ``None`` when the stage stayed."""
    if creating:
        return 1
    if moved_category:
        return 5
    if moved_stage:
        return 2 if semantic == "P" else 3
    return None


# -- writing deals, contacts, companies --------------------------------------------------------
def _deal_rules(call: Call, row: dict[str, Any], creating: bool, before: tuple[Any, Any],
                changed: set[str]) -> int | None:
    now, user, tz = call.now, call.user_id, call.portal.tz
    cat = int(row.get("CATEGORY_ID") or 0)
    row["CATEGORY_ID"] = cat
    moved_cat = not creating and cat != before[1]
    if not row.get("STAGE_ID") or (moved_cat and "STAGE_ID" not in changed):
        row["STAGE_ID"] = "NEW" if cat == 0 else f"C{cat}:NEW"
    stage = str(row["STAGE_ID"])
    semantic = stage_semantic(stage)
    row.update(STAGE_SEMANTIC_ID=semantic, CLOSED="N" if semantic == "P" else "Y",
               IS_NEW="Y" if stage.rsplit(":", maxsplit=1)[-1] == "NEW" else "N")
    if creating:
        today = midnight(now, tz)
        defaults = {"TYPE_ID": "SALE", "CURRENCY_ID": "RUB", "OPPORTUNITY": 0.0,
                    "TAX_VALUE": 0.0, "IS_MANUAL_OPPORTUNITY": "N", "IS_RECURRING": "N",
                    "IS_RETURN_CUSTOMER": "N", "IS_REPEATED_APPROACH": "N", "BEGINDATE": today}
        for name, value in defaults.items():
            if row.get(name) is None:
                row[name] = value
        if row.get("CLOSEDATE") is None:
            row["CLOSEDATE"] = row["BEGINDATE"] + timedelta(days=7)
    if "CONTACT_IDS" in changed:
        row["CONTACT_ID"] = (row["CONTACT_IDS"] or [None])[0]
    elif "CONTACT_ID" in changed or creating:
        row["CONTACT_IDS"] = [row["CONTACT_ID"]] if row.get("CONTACT_ID") else []
    move = stage_move_type(creating, moved_cat, stage != before[0], semantic)
    if move is not None:
        row.update(MOVED_TIME=now, MOVED_BY_ID=user)
    return move


def save_entity(call: Call, ent: Entity, fields: Mapping[str, Any], row_id: int | None = None,
                *, allow_category: bool = False) -> int:
    """Create (``row_id`` None) or update a deal/contact/company with system fields and events."""
    portal, now, user = call.portal, call.now, call.user_id
    table = ent.table(portal)
    creating = row_id is None
    row: dict[str, Any] = {} if row_id is None else table.rows[row_id]
    before = (row.get("STAGE_ID"), row.get("CATEGORY_ID"))
    changed = write_fields(portal, table, row, fields, creating=creating,
                           allow_immutable=allow_category)
    if creating:
        row.update(CREATED_BY_ID=user, DATE_CREATE=now)
        if row.get("ASSIGNED_BY_ID") is None:
            row["ASSIGNED_BY_ID"] = user
        if row.get("OPENED") is None:
            row["OPENED"] = "Y"
        row.update(LAST_ACTIVITY_TIME=now, LAST_ACTIVITY_BY=user)  # Creation counts as activity.
    row.update(MODIFY_BY_ID=user, DATE_MODIFY=now)
    move = None
    if ent.name == "deal":
        move = _deal_rules(call, row, creating, before, changed)
    else:
        row.update(HAS_PHONE="Y" if row.get("PHONE") else "N",
                   HAS_EMAIL="Y" if row.get("EMAIL") else "N")
        if ent.name == "company" and row.get("IS_MY_COMPANY") is None:
            row["IS_MY_COMPANY"] = "N"
    if row_id is None:
        row_id = table.insert(row)
        if not row.get("TITLE") and ent.name == "deal":
            row["TITLE"] = f"Сделка #{row_id}"  # Bitrix24 names untitled deals this way.
    if move is not None:
        record_stage(portal, (ent.type_id, row_id), move, row, now)
    verb = "ADD" if creating else "UPDATE"
    emit(call, f"{ent.event}{verb}", {"FIELDS": {"ID": row_id}}, f"{ent.name}:{row_id}")
    return row_id


def delete_entity(call: Call, ent: Entity, row_id: int) -> None:
    """Remove a row and announce it."""
    ent.table(call.portal).delete(row_id)
    emit(call, f"{ent.event}DELETE", {"FIELDS": {"ID": row_id}}, f"{ent.name}:{row_id}")


# -- the legacy methods -----------------------------------------------------------------------
def legacy_id(call: Call, table: Table) -> int:
    """The ``id`` parameter of an existing row, or the legacy errors."""
    row_id = call.params.int("id")
    if row_id <= 0:
        raise legacy_crm("ID is not defined or invalid")
    if row_id not in table:
        raise legacy_crm("Not found")
    return row_id


def legacy_fields_param(call: Call) -> Mapping[str, Any]:
    """The ``fields`` object; anything else is the legacy "must be array" error."""
    fields = call.params.first("fields")
    if isinstance(fields, list) and not fields:
        return {}  # An empty PHP array arrives as [] in JSON.
    if not isinstance(fields, Mapping):
        raise legacy_crm("Parameter 'fields' must be array.")
    return fields


def get_names(row: Mapping[str, Any], fields: Mapping[str, FieldDef]) -> list[str]:
    """What ``*.get`` shows: single fields, user fields and the multifields that have values."""
    return [n for n, f in fields.items()
            if not f.multiple or f.dynamic or (f.type == "crm_multifield" and row.get(n))]


def describe_field(portal: Portal, fdef: FieldDef, uf_entity: str) -> dict[str, Any]:
    """One entry of ``*.fields`` (``crm_rest_field_description``)."""
    info: dict[str, Any] = {"type": fdef.type, "isRequired": fdef.required,
                            "isReadOnly": fdef.read_only, "isImmutable": fdef.immutable,
                            "isMultiple": fdef.multiple, "isDynamic": fdef.dynamic}
    if fdef.status_type:
        info["statusType"] = fdef.status_type
    info["title"] = fdef.title
    uf = find_userfield(portal, uf_entity, fdef.name) if fdef.dynamic else None
    if uf is not None:
        info.update(type=uf["USER_TYPE_ID"], title=fdef.name,
                    listLabel=label(uf["LIST_COLUMN_LABEL"]),
                    formLabel=label(uf["EDIT_FORM_LABEL"]),
                    filterLabel=label(uf["LIST_FILTER_LABEL"]), settings=uf["SETTINGS"])
        if uf["USER_TYPE_ID"] == "enumeration":
            info["items"] = [{"ID": str(i["ID"]), "VALUE": i["VALUE"]} for i in uf["LIST"]]
    return info


def _list(call: Call, ent: Entity) -> Any:
    table = ent.table(call.portal)
    rows, listed = legacy_query(call, table)
    names = legacy_names(call.params.first("select"), table.fields)
    listed.result = [legacy_row(r, table.fields, names, call.portal.tz) for r in rows]
    return listed


def _get(call: Call, ent: Entity) -> Any:
    table = ent.table(call.portal)
    row = table.rows[legacy_id(call, table)]
    return legacy_row(row, table.fields, get_names(row, table.fields), call.portal.tz)


def _add(call: Call, ent: Entity) -> Any:
    return save_entity(call, ent, legacy_fields_param(call))


def _update(call: Call, ent: Entity) -> Any:
    table = ent.table(call.portal)
    row_id = legacy_id(call, table)
    save_entity(call, ent, legacy_fields_param(call), row_id)
    return True


def _delete(call: Call, ent: Entity) -> Any:
    delete_entity(call, ent, legacy_id(call, ent.table(call.portal)))
    return True


def _fields(call: Call, ent: Entity) -> Any:
    table = ent.table(call.portal)
    return {n: describe_field(call.portal, f, ent.uf_entity) for n, f in table.fields.items()}


def bind(fn: Callable[[Call, Entity], Any], ent: Entity) -> Callable[[Call], Any]:
    """A REST handler running ``fn`` for one entity."""

    def handler(call: Call) -> Any:
        return fn(call, ent)

    handler.__doc__ = fn.__doc__
    return handler


def _uf_record(call: Call, ent: Entity) -> dict[str, Any]:
    row_id = call.params.int("id")
    row = call.portal.userfields.get(row_id)
    if row_id <= 0 or row is None or row["ENTITY_ID"] != ent.uf_entity:
        raise legacy_crm("Not found")
    return row


def _uf_add(call: Call, ent: Entity) -> Any:
    check_admin(call)
    fields = {str(k).upper(): v for k, v in legacy_fields_param(call).items()}
    return register_userfield(call.portal, ent.uf_entity, fields)


def _uf_list(call: Call, ent: Entity) -> Any:
    """All the entity's user fields (no paging), default order SORT then ID."""
    conditions = build_filter({**upper_keys(call.params.first("filter")),
                               "=ENTITY_ID": ent.uf_entity}, USERFIELD, call.portal.tz)
    order = parse_order(upper_keys(call.params.first("order")) or {"SORT": "ASC", "ID": "ASC"},
                        USERFIELD)
    page = call.portal.userfields.query(conditions, order, 0, page=10**9)
    return Listed([api_row(r) for r in page.rows], page.total, None)


def _uf_get(call: Call, ent: Entity) -> Any:
    return api_row(_uf_record(call, ent))


def _uf_update(call: Call, ent: Entity) -> Any:
    check_admin(call)
    row = _uf_record(call, ent)
    update_userfield(call.portal, row, {str(k).upper(): v
                                        for k, v in legacy_fields_param(call).items()})
    return True


def _uf_delete(call: Call, ent: Entity) -> Any:
    check_admin(call)
    delete_userfield(call.portal, _uf_record(call, ent))
    return True


def _register(ent: Entity) -> None:
    handlers: dict[str, Callable[[Call, Entity], Any]] = {
        "list": _list, "get": _get, "add": _add, "update": _update, "delete": _delete,
        "fields": _fields, "userfield.add": _uf_add, "userfield.list": _uf_list,
        "userfield.get": _uf_get, "userfield.update": _uf_update,
        "userfield.delete": _uf_delete}
    for verb, fn in handlers.items():
        method(f"crm.{ent.name}.{verb}", "crm")(bind(fn, ent))


def check_admin(call: Call) -> None:
    """CRM settings (user fields, smart processes) need a CRM administrator."""
    if not call.portal.user_is_admin(call.user_id):
        raise ApiError(403, "ACCESS_DENIED", "Access denied")


for _entity in ENTITIES.values():
    _register(_entity)
