"""Universal ``crm.item.*`` (typed camelCase), smart processes ``crm.type.*``, stage history."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from itertools import chain, count
from typing import Any

from b24emu.core import Call, Listed, method
from b24emu.errors import ApiError, not_found_item
from b24emu.methods.crm import (
    BY_TYPE,
    build_filter,
    check_admin,
    delete_entity,
    describe_field,
    emit,
    flag,
    midnight,
    record_stage,
    save_entity,
    stage_move_type,
    upper_keys,
    write_fields,
)
from b24emu.phpquery import as_list
from b24emu.portal import Portal
from b24emu.schema.crm import CRM_TYPE, CRM_TYPE_FLAGS, STAGE_HISTORY, smart_item_fields
from b24emu.serialize import camel, legacy_row, typed_scalar, uf_camel
from b24emu.store import Condition, FieldDef, FilterError, Table, parse_order, pick_start
from b24emu.userfields import (
    SMART_INVOICE,
    SMART_INVOICE_ENTITY,
    double_value,
    find_userfield,
    smart_invoice_table,
)

# crm.item names of legacy columns that are not plain camelCase of the UPPER name.
ALIASES = {"DATE_CREATE": "createdTime", "DATE_MODIFY": "updatedTime",
           "CREATED_BY_ID": "createdBy", "MODIFY_BY_ID": "updatedBy", "MOVED_BY_ID": "movedBy"}
# Bindings crm.item shows as 0 rather than null when empty (see the crm.item.get sample).
ZERO_WHEN_EMPTY = frozenset({"COMPANY_ID", "CONTACT_ID", "MYCOMPANY_ID"})


# -- tables and names -------------------------------------------------------------------------
def item_table(portal: Portal, entity_type_id: int) -> Table:
    """The table of an entity type; smart invoices appear on first use."""
    if entity_type_id == SMART_INVOICE:
        return smart_invoice_table(portal)
    table = portal.item_table(entity_type_id)
    if table is None:
        raise ApiError(400, "NOT_FOUND", "SPA not found")
    return table


def type_row(portal: Portal, entity_type_id: int) -> dict[str, Any] | None:
    """The ``crm.type`` record of a smart process."""
    return next((r for r in portal.crm_types if r["ENTITY_TYPE_ID"] == entity_type_id), None)


def uf_entity(portal: Portal, entity_type_id: int) -> str:
    """User-field entity id of a type (``CRM_DEAL``, ``CRM_SMART_INVOICE``, ``CRM_<type id>``)."""
    if entity_type_id in BY_TYPE:
        return BY_TYPE[entity_type_id].uf_entity
    if entity_type_id == SMART_INVOICE:
        return SMART_INVOICE_ENTITY
    row = type_row(portal, entity_type_id)
    return f"CRM_{row['ID']}" if row else ""


def item_name(fdef: FieldDef, original_uf: bool) -> str:
    """The crm.item key of a stored column."""
    if fdef.dynamic:
        return fdef.name if original_uf else uf_camel(fdef.name)
    return ALIASES.get(fdef.name) or camel(fdef.name)


def renamer(fields: Mapping[str, FieldDef]) -> Callable[[str], str]:
    """camelCase (or UPPER, or UF camel) → stored column name."""
    names: dict[str, str] = {}
    for name, fdef in fields.items():
        names[item_name(fdef, False)] = name
        names[name] = name
    return lambda key: names.get(key, key)


# -- rendering --------------------------------------------------------------------------------
def typed_value(portal: Portal, fdef: FieldDef, value: Any, uf_type: str) -> Any:
    """A stored value as crm.item returns it: typed, whole amounts as integers."""
    if value is None:
        if fdef.multiple:
            return []
        return 0 if fdef.name in ZERO_WHEN_EMPTY else None
    if uf_type == "boolean":
        return "Y" if value else "N"  # UF booleans read as Y/N although stored 1/0.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return typed_scalar(fdef, value, portal.tz)


def render_item(call: Call, etid: int, table: Table, row: Mapping[str, Any], *,
                names: list[str], original_uf: bool) -> dict[str, Any]:
    """One item, keys camelCase (UF names UPPER with ``useOriginalUfNames=Y``)."""
    portal = call.portal
    entity = uf_entity(portal, etid)
    out: dict[str, Any] = {}
    fm: list[dict[str, Any]] = []
    for name in names:
        fdef = table.fields[name]
        if fdef.type == "crm_multifield":
            fm += [{"id": i["ID"], "valueType": i["VALUE_TYPE"], "value": i["VALUE"],
                    "typeId": i["TYPE_ID"]} for i in row.get(name) or []]
            continue
        uf = find_userfield(portal, entity, name) if fdef.dynamic else None
        out[item_name(fdef, original_uf)] = typed_value(
            portal, fdef, row.get(name), uf["USER_TYPE_ID"] if uf else "")
    if any(table.fields[n].type == "crm_multifield" for n in names):
        out["fm"] = fm
    if len(names) == len(table.fields):
        out["entityTypeId"] = etid  # Whole items name their type; a narrow select does not.
    return out


def item_names(raw_select: Any, fields: Mapping[str, FieldDef]) -> list[str]:
    """crm.item ``select``: field names or ``*`` (every field, user fields included)."""
    wanted = [str(v) for v in as_list(raw_select)] or ["*"]
    if "*" in wanted:
        return list(fields)
    rename = renamer(fields)
    names = ["ID"] + [rename(w) for w in wanted]
    return [n for n in dict.fromkeys(names) if n in fields]


def original(call: Call) -> bool:
    """``useOriginalUfNames=Y`` keeps user-field names UPPER_CASE."""
    return flag(call.params.first("useOriginalUfNames", default="N")) == "Y"


# -- writing ----------------------------------------------------------------------------------
def upper_fields(fields: Mapping[str, Any], table: Table) -> dict[str, Any]:
    """Input keys (camelCase or UPPER) as stored names; ``fm`` split into PHONE/EMAIL/WEB."""
    rename = renamer(table.fields)
    out = {rename(str(k)): v for k, v in fields.items() if str(k) != "fm"}
    for entry in as_list(fields.get("fm")):
        if isinstance(entry, Mapping):
            kind = str(entry.get("typeId") or "PHONE").upper()
            out.setdefault(kind, []).append({"ID": entry.get("id"), "VALUE": entry.get("value"),
                                             "VALUE_TYPE": entry.get("valueType") or "WORK"})
    return out


def uf_doubles(fields: dict[str, Any], table: Table) -> dict[str, Any]:
    """Values of ``double`` user fields as saved (decimal comma, rounding to ``PRECISION``)."""
    for name, value in fields.items():
        fdef = table.fields.get(name)
        if fdef is not None and fdef.dynamic and fdef.type == "double":
            fields[name] = ([double_value(v, fdef.settings) for v in value]
                            if isinstance(value, list) else double_value(value, fdef.settings))
    return fields


def item_semantic(etid: int, stage: str) -> str:
    """Stage semantics of smart items: ``:SUCCESS``/``:FAIL``, smart invoices ``:P``/``:D``."""
    base = stage.rsplit(":", maxsplit=1)[-1]
    if base == "SUCCESS" or (etid == SMART_INVOICE and base == "P"):
        return "S"
    if base == "FAIL" or (etid == SMART_INVOICE and base == "D"):
        return "F"
    return "P"


def save_item(call: Call, etid: int, fields: Mapping[str, Any], row_id: int | None = None) -> int:
    """Create or update a smart-process item with system fields, stage history and events."""
    portal, now, user = call.portal, call.now, call.user_id
    table = item_table(portal, etid)
    creating = row_id is None
    row: dict[str, Any] = {} if row_id is None else table.rows[row_id]
    before = (row.get("STAGE_ID"), row.get("CATEGORY_ID"))
    changed = write_fields(portal, table, row, fields, creating=creating, allow_immutable=True)
    if creating:
        today = midnight(now, portal.tz)
        defaults: dict[str, Any] = {
            "ASSIGNED_BY_ID": user, "OPENED": "Y", "OPPORTUNITY": 0.0, "TAX_VALUE": 0.0,
            "CURRENCY_ID": "RUB", "IS_MANUAL_OPPORTUNITY": "N", "BEGINDATE": today,
            "CLOSEDATE": today + timedelta(days=7), "CATEGORY_ID": 0}
        for name, value in defaults.items():
            if row.get(name) is None:
                row[name] = value
        row.update(CREATED_BY=user, CREATED_TIME=now)
    row.update(UPDATED_BY=user, UPDATED_TIME=now)
    cat = int(row.get("CATEGORY_ID") or 0)
    row["CATEGORY_ID"] = cat
    moved_cat = not creating and cat != before[1]
    if not row.get("STAGE_ID") or (moved_cat and "STAGE_ID" not in changed):
        row["STAGE_ID"] = f"DT{etid}_{cat}:{'N' if etid == SMART_INVOICE else 'NEW'}"
    row["STAGE_SEMANTIC_ID"] = item_semantic(etid, str(row["STAGE_ID"]))
    if "CONTACT_IDS" in changed:
        row["CONTACT_ID"] = (row["CONTACT_IDS"] or [None])[0]
    elif "CONTACT_ID" in changed or creating:
        row["CONTACT_IDS"] = [row["CONTACT_ID"]] if row.get("CONTACT_ID") else []
    move = stage_move_type(creating, moved_cat, row["STAGE_ID"] != before[0],
                           row["STAGE_SEMANTIC_ID"])
    if move is not None:
        row.update(MOVED_TIME=now, MOVED_BY=user, PREVIOUS_STAGE_ID=before[0])
    if row_id is None:
        row_id = table.insert(row)
        if not row.get("TITLE"):
            kind = type_row(portal, etid)
            row["TITLE"] = f"{kind['TITLE'] if kind else 'Счёт'} #{row_id}"
    if move is not None:
        record_stage(portal, (etid, row_id), move, row, now)
    verb = "ADD" if creating else "UPDATE"
    emit(call, f"ONCRMDYNAMICITEM{verb}", {"FIELDS": {"ID": row_id, "ENTITY_TYPE_ID": etid}},
         f"item{etid}:{row_id}")
    return row_id


def _target(call: Call) -> tuple[int, Table]:
    etid = call.params.int("entityTypeId")
    return etid, item_table(call.portal, etid)


def _existing(call: Call, table: Table) -> int:
    row_id = call.params.int("id")
    if row_id not in table:
        raise not_found_item()
    return row_id


def _fields_param(call: Call) -> Mapping[str, Any]:
    fields = call.params.first("fields")
    if not isinstance(fields, Mapping):
        raise ApiError(400, "100", "Could not find value for parameter {fields}")
    return fields


def _write(call: Call, etid: int, table: Table, row_id: int | None) -> int:
    fields = uf_doubles(upper_fields(_fields_param(call), table), table)
    if etid in BY_TYPE:  # Deals, contacts, companies share the legacy rows and events.
        return save_entity(call, BY_TYPE[etid], fields, row_id, allow_category=True)
    return save_item(call, etid, fields, row_id)


# -- crm.item.* -------------------------------------------------------------------------------
@method("crm.item.list", "crm")
def item_list(call: Call) -> Any:
    """Items by camelCase filter/order/select, pages of 50, ``{"items": [...]}``."""
    etid, table = _target(call)
    p = call.params
    rename = renamer(table.fields)
    raw_filter = p.first("filter")
    try:
        conditions = build_filter(raw_filter if isinstance(raw_filter, Mapping) else {},
                                  table.fields, call.portal.tz, rename=rename)
    except FilterError as exc:
        raise ApiError(400, "INVALID_ARG_VALUE", f"Invalid filter: {exc}") from None
    order = parse_order(p.first("order"), table.fields, rename=rename)
    page = table.query(conditions, order, pick_start(p.first("start")))
    names = item_names(p.first("select"), table.fields)
    keep_uf = original(call)
    items = [render_item(call, etid, table, r, names=names, original_uf=keep_uf)
             for r in page.rows]
    return Listed({"items": items}, page.total, page.next)


@method("crm.item.get", "crm")
def item_get(call: Call) -> Any:
    """One item, every field."""
    etid, table = _target(call)
    row = table.rows[_existing(call, table)]
    return {"item": render_item(call, etid, table, row, names=list(table.fields),
                                original_uf=original(call))}


@method("crm.item.add", "crm")
def item_add(call: Call) -> Any:
    """Create an item; returns it whole."""
    etid, table = _target(call)
    row_id = _write(call, etid, table, None)
    return {"item": render_item(call, etid, table, table.rows[row_id],
                                names=list(table.fields), original_uf=original(call))}


@method("crm.item.update", "crm")
def item_update(call: Call) -> Any:
    """Change an item (funnel moves allowed here, unlike crm.deal.update); returns it whole."""
    etid, table = _target(call)
    row_id = _write(call, etid, table, _existing(call, table))
    return {"item": render_item(call, etid, table, table.rows[row_id],
                                names=list(table.fields), original_uf=original(call))}


@method("crm.item.delete", "crm")
def item_delete(call: Call) -> Any:
    """Remove an item; the result is an empty array."""
    etid, table = _target(call)
    row_id = _existing(call, table)
    if etid in BY_TYPE:
        delete_entity(call, BY_TYPE[etid], row_id)
    else:
        table.delete(row_id)
        emit(call, "ONCRMDYNAMICITEMDELETE",
             {"FIELDS": {"ID": row_id, "ENTITY_TYPE_ID": etid}}, f"item{etid}:{row_id}")
    return []


@method("crm.item.fields", "crm")
def item_fields(call: Call) -> Any:
    """Field descriptions keyed by camelCase name, each with its ``upperName``."""
    etid, table = _target(call)
    entity = uf_entity(call.portal, etid)
    out: dict[str, Any] = {}
    for name, fdef in table.fields.items():
        info = describe_field(call.portal, fdef, entity)
        if info["type"] == "char":
            info["type"] = "boolean"  # crm.item calls Y/N fields booleans.
        if info.get("formLabel"):
            info["title"] = info["formLabel"]  # A user field's title is its label (crm-item-add.md)
        out[item_name(fdef, original(call))] = {**info, "upperName": name}
    return {"fields": out}


# -- crm.type.* -------------------------------------------------------------------------------
def render_type(row: Mapping[str, Any], call: Call, *, full: bool = False) -> dict[str, Any]:
    """A smart-process record in camelCase."""
    out = {camel(n): typed_scalar(f, row.get(n), call.portal.tz) for n, f in CRM_TYPE.items()}
    if full:
        out.update(relations={"parent": [], "child": []}, linkedUserFields={},
                   customSections=[])
    return out


def _free_type_id(portal: Portal) -> int:
    taken = {int(r["ENTITY_TYPE_ID"]) for r in portal.crm_types}
    return next(i for i in chain(range(128, 193), count(1030, 2)) if i not in taken)


@method("crm.type.add", "crm")
def type_add(call: Call) -> Any:
    """Create a smart process and its item table; returns ``{"type": {...}}``."""
    check_admin(call)
    rename = {camel(n): n for n in CRM_TYPE}
    fields = {rename.get(str(k), str(k)): v for k, v in _fields_param(call).items()}
    if not str(fields.get("TITLE") or "").strip():
        raise ApiError(400, "INVALID_ARG_VALUE", "Title is not specified")
    portal = call.portal
    etid = int(fields.get("ENTITY_TYPE_ID") or _free_type_id(portal))
    # Allowed: 128..192, or an even number from 1030 on.
    if not (128 <= etid <= 192 or (etid >= 1030 and etid % 2 == 0)):
        raise ApiError(400, "INVALID_ARG_VALUE", "entityTypeId is out of allowed range")
    if type_row(portal, etid) is not None:
        raise ApiError(400, "INVALID_ARG_VALUE", "entityTypeId is already in use")
    row: dict[str, Any] = {
        "TITLE": str(fields["TITLE"]), "CODE": str(fields.get("CODE") or ""),
        "CREATED_BY": call.user_id, "ENTITY_TYPE_ID": etid, "CUSTOM_SECTION_ID": None,
        "CREATED_TIME": call.now, "UPDATED_TIME": call.now, "UPDATED_BY": call.user_id}
    for name in CRM_TYPE_FLAGS:
        row[name] = flag(fields.get(name, "Y" if name == "IS_SET_OPEN_PERMISSIONS" else "N"))
    portal.crm_types.insert(row)
    portal.items[etid] = Table(f"item_{etid}", smart_item_fields())
    return {"type": render_type(row, call, full=True)}


@method("crm.type.list", "crm")
def type_list(call: Call) -> Any:
    """Smart processes by filter/order, pages of 50, ``{"types": [...]}``."""
    p = call.params
    rename = {camel(n): n for n in CRM_TYPE}.get
    raw = p.first("filter")
    conditions = build_filter(raw if isinstance(raw, Mapping) else {}, CRM_TYPE, call.portal.tz,
                              rename=lambda k: rename(k, k))
    order = parse_order(p.first("order"), CRM_TYPE, rename=lambda k: rename(k, k))
    page = call.portal.crm_types.query(conditions, order, pick_start(p.first("start")))
    return Listed({"types": [render_type(r, call) for r in page.rows]}, page.total, page.next)


@method("crm.type.get", "crm")
def type_get(call: Call) -> Any:
    """One smart process by its record ``id``."""
    row = call.portal.crm_types.get(call.params.int("id"))
    if row is None:
        raise ApiError(400, "NOT_FOUND", "Smart process not found")
    return {"type": render_type(row, call, full=True)}


@method("crm.type.getByEntityTypeId", "crm")
def type_get_by_entity(call: Call) -> Any:
    """One smart process by its ``entityTypeId``."""
    row = type_row(call.portal, call.params.int("entityTypeId"))
    if row is None:
        raise ApiError(400, "NOT_FOUND", "Smart process not found")
    return {"type": render_type(row, call, full=True)}


# -- crm.stagehistory.list --------------------------------------------------------------------
class OwnerType(Condition):
    """History rows of one entity type."""

    def __init__(self, type_id: int) -> None:
        super().__init__("OWNER_TYPE_ID", "=", type_id, "int")


@method("crm.stagehistory.list", "crm")
def stagehistory_list(call: Call) -> Any:
    """Stage moves of deals, smart invoices and smart processes; values strings, ``items``."""
    p = call.params
    etid = p.int("entityTypeId")
    if etid not in (1, 2, 5, SMART_INVOICE) and etid not in call.portal.items:
        raise ApiError(400, "ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {etid} is not supported")
    try:
        conditions = build_filter(upper_keys(p.first("filter")), STAGE_HISTORY, call.portal.tz)
    except FilterError as exc:
        raise ApiError(400, "INVALID_ARG_VALUE", f"Invalid filter: {exc}") from None
    if etid != 2 or call.portal.items:
        conditions.append(OwnerType(etid))  # Only deals write history while no SPA exists.
    order = parse_order(upper_keys(p.first("order")), STAGE_HISTORY)
    page = call.portal.stage_history.query(conditions, order, pick_start(p.first("start")))
    default = [n for n in STAGE_HISTORY if n != "OWNER_TYPE_ID"]
    wanted = {str(v).upper() for v in as_list(p.first("select"))}
    names = [n for n in default if n in wanted or not wanted]
    rows = [legacy_row(r, STAGE_HISTORY, names, call.portal.tz) for r in page.rows]
    return Listed({"items": rows}, page.total, page.next)
