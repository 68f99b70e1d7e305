"""CRM user fields shared by ``crm.*.userfield.*`` methods and the datasets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from b24emu.errors import ApiError
from b24emu.portal import Portal
from b24emu.schema.crm import smart_item_fields
from b24emu.store import FieldDef, Table

ENTITY_TABLES = {"CRM_DEAL": "deals", "CRM_COMPANY": "companies", "CRM_CONTACT": "contacts"}
# Smart invoices: entityTypeId 31, user fields of entity ``CRM_SMART_INVOICE`` (invoice.md).
SMART_INVOICE = 31
SMART_INVOICE_ENTITY = "CRM_SMART_INVOICE"
USER_TYPES = frozenset({"string", "integer", "double", "boolean", "datetime", "date", "money",
                        "url", "address", "enumeration", "file", "employee", "crm_status",
                        "iblock_section", "iblock_element", "crm"})
_NAME_RE = re.compile(r"^UF_CRM_[A-Z0-9_]+$")
# Money values are "100|RUB" strings on Bitrix24, so they compare as strings.
_TYPE_MAP = {"integer": "integer", "double": "double", "money": "string", "datetime": "datetime",
             "date": "date", "employee": "user", "boolean": "boolean"}


def normalize_name(raw: str) -> str:
    """Bitrix24 forces the ``UF_CRM_`` prefix and upper case (``kpi`` → ``UF_CRM_KPI``)."""
    name = raw.strip().upper()
    if name.startswith("UF_CRM_"):
        return name
    if name.startswith("UF_"):
        name = name[3:]
    return f"UF_CRM_{name}"


def smart_invoice_table(portal: Portal) -> Table:
    """The smart invoices' items; the table appears on first use."""
    table = portal.items.get(SMART_INVOICE)
    if table is None:
        table = portal.items[SMART_INVOICE] = Table(f"item_{SMART_INVOICE}", smart_item_fields())
    return table


def entity_table(portal: Portal, entity_id: str) -> Table:
    """The table whose rows a user field of ``entity_id`` extends (``CRM_1`` = first SPA)."""
    if entity_id in ENTITY_TABLES:
        table: Table = getattr(portal, ENTITY_TABLES[entity_id])
        return table
    if entity_id == SMART_INVOICE_ENTITY:
        return smart_invoice_table(portal)
    if entity_id.startswith("CRM_") and entity_id[4:].isdigit():
        for row in portal.crm_types:
            if row["ID"] == int(entity_id[4:]):
                found = portal.items.get(int(row["ENTITY_TYPE_ID"]))
                if found is not None:
                    return found
    raise ApiError(400, "ERROR_CORE", f"Unknown entity {entity_id}")


def register_userfield(portal: Portal, entity_id: str, fields: dict[str, Any]) -> int:
    """Create a user field and extend the entity's schema; returns the field's ID."""
    user_type = str(fields.get("USER_TYPE_ID") or "")
    if user_type not in USER_TYPES and not user_type.startswith("rest_"):
        raise ApiError(400, "ERROR_CORE", "Wrong user type")
    name = normalize_name(str(fields.get("FIELD_NAME") or ""))
    if not _NAME_RE.match(name) or len(name) > 50 or name == "UF_CRM_":
        raise ApiError(400, "ERROR_CORE", "Invalid field name")
    for row in portal.userfields:
        if row["ENTITY_ID"] == entity_id and row["FIELD_NAME"] == name:
            raise ApiError(400, "ERROR_CORE", f"Field {name} already exists")
    table = entity_table(portal, entity_id)
    label = fields.get("EDIT_FORM_LABEL") or fields.get("LABEL") or name
    multiple = str(fields.get("MULTIPLE", "N")).upper() in ("Y", "1", "TRUE")
    items = fields.get("LIST") or []
    row = {
        "ENTITY_ID": entity_id, "FIELD_NAME": name, "USER_TYPE_ID": user_type,
        "XML_ID": fields.get("XML_ID") or name, "SORT": int(fields.get("SORT") or 100),
        "MULTIPLE": "Y" if multiple else "N",
        "MANDATORY": "Y" if str(fields.get("MANDATORY", "N")).upper() in ("Y", "1") else "N",
        "SHOW_FILTER": str(fields.get("SHOW_FILTER") or "N"),
        "SHOW_IN_LIST": str(fields.get("SHOW_IN_LIST") or "Y"),
        "EDIT_IN_LIST": str(fields.get("EDIT_IN_LIST") or "Y"),
        "IS_SEARCHABLE": str(fields.get("IS_SEARCHABLE") or "N"),
        "SETTINGS": dict(fields.get("SETTINGS") or {}),
        "EDIT_FORM_LABEL": label, "LIST_COLUMN_LABEL": fields.get("LIST_COLUMN_LABEL") or label,
        "LIST_FILTER_LABEL": fields.get("LIST_FILTER_LABEL") or label,
        "LIST": enum_items(portal, items),
    }
    field_id = portal.userfields.insert(row)
    title = label if isinstance(label, str) else str(next(iter(dict(label).values()), name))
    table.fields[name] = FieldDef(name, _TYPE_MAP.get(user_type, user_type), title,
                                  multiple=multiple, dynamic=True,
                                  required=row["MANDATORY"] == "Y", settings=row["SETTINGS"])
    return field_id


def enum_items(portal: Portal, items: Any) -> list[dict[str, Any]]:
    """Enumeration values with portal-wide IDs (a deal stores the chosen value's ID)."""
    next_id = 1 + max([int(v["ID"]) for row in portal.userfields for v in row.get("LIST") or []]
                      + [0])
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(items.values() if isinstance(items, dict) else items or []):
        item = dict(raw) if isinstance(raw, dict) else {"VALUE": str(raw)}
        out.append({"ID": next_id + i, "SORT": int(item.get("SORT") or (i + 1) * 10),
                    "VALUE": str(item.get("VALUE") or ""),
                    "DEF": "Y" if str(item.get("DEF", "N")).upper() in ("Y", "1") else "N",
                    "XML_ID": str(item.get("XML_ID") or f"{next_id + i:x}")})
    return out


def label(value: Any) -> str:
    """A label that may be per language (``{"ru": ..., "en": ...}``)."""
    if isinstance(value, dict):
        return str(value.get("ru") or value.get("en") or next(iter(value.values()), ""))
    return str(value or "")


def find_userfield(portal: Portal, entity_id: str, name: str) -> dict[str, Any] | None:
    """The user-field record behind a dynamic field of an entity."""
    return next((r for r in portal.userfields
                 if r["ENTITY_ID"] == entity_id and r["FIELD_NAME"] == name), None)


def api_row(row: dict[str, Any]) -> dict[str, Any]:
    """A record as ``crm.*.userfield.list/get`` return it: scalars as strings."""
    out: dict[str, Any] = {"ID": str(row["ID"])}
    out.update((k, str(v) if isinstance(v, int) else v) for k, v in row.items() if k != "ID")
    for key in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL"):
        out[key] = label(row.get(key))
    out.update(ERROR_MESSAGE=None, HELP_MESSAGE=None)
    out["LIST"] = [{k: str(v) for k, v in item.items()} for item in row.get("LIST") or []]
    if row["USER_TYPE_ID"] != "enumeration":
        del out["LIST"]
    return out


def update_userfield(portal: Portal, row: dict[str, Any], fields: dict[str, Any]) -> None:
    """Change labels, sort, flags, settings and enumeration items (name and type stay)."""
    if "LABEL" in fields:
        for key in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL"):
            row[key] = fields["LABEL"]
    for key in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL", "XML_ID",
                "SHOW_FILTER", "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE"):
        if key in fields:
            row[key] = fields[key]
    if "SORT" in fields:
        row["SORT"] = int(fields["SORT"] or 100)
    if "MANDATORY" in fields:
        row["MANDATORY"] = "Y" if str(fields["MANDATORY"]).upper() in ("Y", "1") else "N"
    if isinstance(fields.get("SETTINGS"), dict):
        row["SETTINGS"] = {**row["SETTINGS"], **fields["SETTINGS"]}
    if "LIST" in fields:
        row["LIST"] = _merge_items(portal, row["LIST"], fields["LIST"])
    sync_fielddef(portal, row)


def sync_fielddef(portal: Portal, row: dict[str, Any]) -> None:
    """Keep the schema entry of a user field (title, required, settings) in step with its record."""
    fdef = entity_table(portal, row["ENTITY_ID"]).fields.get(row["FIELD_NAME"])
    if fdef is not None:
        fdef.title = label(row["EDIT_FORM_LABEL"]) or fdef.name
        fdef.required = row["MANDATORY"] == "Y"
        fdef.settings = row["SETTINGS"]


def double_value(value: Any, settings: Mapping[str, Any]) -> Any:
    """A ``double`` value as saved: "," or "." decimals, rounded half up to ``PRECISION``."""
    # how-to-add-precision-to-user-field.md: commas and spaces are accepted, and the value is
    # rounded to PRECISION when saved (1,23456 with PRECISION 3 reads back as 1.235).
    if isinstance(value, bool) or value is None:
        return value
    try:
        number = Decimal(str(value).replace(" ", "").replace(",", "."))
    except InvalidOperation:
        return value
    if not number.is_finite():
        return value
    precision = str(settings.get("PRECISION", "")).strip()
    if precision.isdigit():
        number = number.quantize(Decimal(1).scaleb(-min(int(precision), 12)), ROUND_HALF_UP)
    return float(number)


def _merge_items(portal: Portal, current: list[dict[str, Any]], raw: Any) -> list[dict[str, Any]]:
    """Enumeration items: with ``ID`` update (``DEL: Y`` deletes), without ``ID`` add."""
    items = [dict(i) for i in current]
    fresh = []
    for given in raw.values() if isinstance(raw, dict) else raw or []:
        entry = dict(given)
        old = next((i for i in items if str(i["ID"]) == str(entry.get("ID", ""))), None)
        if old is None:
            fresh.append(entry)
        elif str(entry.get("DEL", "N")).upper() == "Y":
            items.remove(old)
        else:
            old.update({k: (int(v) if k == "SORT" else str(v)) for k, v in entry.items()
                        if k in ("VALUE", "SORT", "DEF", "XML_ID")})
    return items + enum_items(portal, fresh)


def delete_userfield(portal: Portal, row: dict[str, Any]) -> None:
    """Drop the record, the field from the schema and its values from every row."""
    table = entity_table(portal, row["ENTITY_ID"])
    table.fields.pop(row["FIELD_NAME"], None)
    for record in table:
        record.pop(row["FIELD_NAME"], None)
    portal.userfields.delete(row["ID"])
