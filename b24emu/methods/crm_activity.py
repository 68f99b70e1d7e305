"""CRM activities (``crm.activity.*``, universal to-dos) and timeline comments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from b24emu.core import Call, Listed, method
from b24emu.errors import ApiError, legacy_crm
from b24emu.methods.crm import (
    describe_field,
    emit,
    legacy_fields_param,
    legacy_id,
    legacy_names,
    legacy_query,
    upper_keys,
    write_fields,
)
from b24emu.phpquery import as_list
from b24emu.portal import Portal
from b24emu.schema.crm import TIMELINE_COMMENT
from b24emu.serialize import legacy_row
from b24emu.store import Condition, parse_filter, parse_order, pick_start
from b24emu.timefmt import parse_dt

MEETING, CALL, TASK, EMAIL, PROVIDER = 1, 2, 3, 4, 6
# Provider of each classic type (CRM_MEETING for meetings is not confirmed by the docs).
PROVIDERS = {MEETING: ("CRM_MEETING", "MEETING"), CALL: ("VOXIMPLANT_CALL", "CALL"),
             TASK: ("CRM_TASKS_TASK", "TASK"), EMAIL: ("CRM_EMAIL", "EMAIL")}
COMMENT_TYPES = {"lead": 1, "deal": 2, "contact": 3, "company": 4}


def owner_row(portal: Portal, type_id: int, owner_id: int) -> dict[str, Any] | None:
    """The CRM row an activity or comment is bound to, if it exists."""
    table = portal.item_table(type_id)
    return table.get(owner_id) if table is not None else None


class BindingCondition(Condition):
    """``filter[BINDINGS]``: any binding matches one of the given type/id pairs."""

    def __init__(self, wanted: list[dict[str, int]]) -> None:
        super().__init__("BINDINGS", "bindings", wanted, "int")

    def test(self, record: Mapping[str, Any]) -> bool:
        """Whether one of the activity's bindings matches."""
        return any(all(b.get(k) == v for k, v in w.items())
                   for b in record.get("BINDINGS") or [] for w in self.wanted)


def _binding_filter(raw: Any) -> list[dict[str, int]]:
    out = []
    for item in as_list(raw):
        if isinstance(item, Mapping):
            out.append({str(k).upper(): int(v) for k, v in item.items()
                        if str(k).upper() in ("OWNER_TYPE_ID", "OWNER_ID")})
    return out


# -- writing --------------------------------------------------------------------------------
def _check_new(portal: Portal, row: dict[str, Any]) -> None:
    """What ``crm.activity.add`` validates, with its legacy error texts."""
    type_id = int(row.get("TYPE_ID") or 0)
    if type_id not in PROVIDERS and not (type_id == PROVIDER and row.get("PROVIDER_ID")):
        raise legacy_crm("The field TYPE_ID is not defined or invalid.")
    if not row.get("SUBJECT") and type_id != PROVIDER:
        raise legacy_crm("The field SUBJECT is not defined or empty.")
    comms = row.get("COMMUNICATIONS") or []
    if type_id in (MEETING, CALL, EMAIL) and not comms:
        raise legacy_crm("The field COMMUNICATIONS is not defined or invalid.")
    if type_id == CALL and len(comms) > 1:
        raise legacy_crm("The only one communication is allowed for activity of specified type.")
    owner = (int(row.get("OWNER_TYPE_ID") or 0), int(row.get("OWNER_ID") or 0))
    if owner_row(portal, *owner) is None:
        raise legacy_crm("Could not build binding. Please ensure that owner info and "
                         "communications are defined correctly.")


def _communications(row: dict[str, Any], seq_start: int) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(row.get("COMMUNICATIONS") or []):
        entry = dict(item) if isinstance(item, Mapping) else {"VALUE": str(item)}
        out.append({"ID": int(entry.get("ID") or seq_start + i),
                    "TYPE": str(entry.get("TYPE") or ("EMAIL" if "@" in str(entry.get("VALUE"))
                                                      else "PHONE")),
                    "VALUE": str(entry.get("VALUE") or ""),
                    "ENTITY_ID": int(entry.get("ENTITY_ID") or row["OWNER_ID"]),
                    "ENTITY_TYPE_ID": int(entry.get("ENTITY_TYPE_ID") or row["OWNER_TYPE_ID"]),
                    "ENTITY_SETTINGS": entry.get("ENTITY_SETTINGS") or {}})
    return out


def touch_owners(call: Call, row: Mapping[str, Any]) -> None:
    """An activity marks its owners' LAST_ACTIVITY_TIME/LAST_ACTIVITY_BY."""
    for binding in row.get("BINDINGS") or []:
        owner = owner_row(call.portal, binding["OWNER_TYPE_ID"], binding["OWNER_ID"])
        if owner is not None:
            owner.update(LAST_ACTIVITY_TIME=call.now, LAST_ACTIVITY_BY=call.user_id)


def save_activity(call: Call, fields: Mapping[str, Any], row_id: int | None = None) -> int:
    """Create or update an activity: status/completed, deadline, bindings, owners, events."""
    portal, now, user = call.portal, call.now, call.user_id
    table = portal.activities
    creating = row_id is None
    row: dict[str, Any] = {} if row_id is None else dict(table.rows[row_id])
    changed = write_fields(portal, table, row, fields, creating=creating)
    if creating:
        _check_new(portal, row)
        owner = owner_row(portal, row["OWNER_TYPE_ID"], row["OWNER_ID"]) or {}
        provider = PROVIDERS.get(row["TYPE_ID"], (None, None))
        defaults: dict[str, Any] = {"PROVIDER_ID": provider[0], "PROVIDER_TYPE_ID": provider[1],
                    "RESPONSIBLE_ID": owner.get("ASSIGNED_BY_ID") or user, "PRIORITY": 2,
                    "DIRECTION": 0, "DESCRIPTION": "", "DESCRIPTION_TYPE": 1, "LOCATION": "",
                    "NOTIFY_TYPE": 0, "NOTIFY_VALUE": 0, "ASSOCIATED_ENTITY_ID": 0,
                    "SETTINGS": {}, "COMPLETED": "N", "AUTHOR_ID": user, "FILES": []}
        for name, value in defaults.items():
            if row.get(name) is None:
                row[name] = value
        row.update(CREATED=now, START_TIME=row.get("START_TIME") or row.get("END_TIME") or now)
        row["END_TIME"] = row.get("END_TIME") or row["START_TIME"]
        seq = getattr(table, "communication_seq", None)
        if seq is None:  # Seeded once from existing rows (datasets insert them directly).
            seq = max([int(c.get("ID") or 0) for r in table for c in r.get("COMMUNICATIONS")
                       or []] + [0])
        row["COMMUNICATIONS"] = _communications(row, seq + 1)
        setattr(table, "communication_seq", seq + len(row["COMMUNICATIONS"]))  # noqa: B010
        bindings = [(row["OWNER_TYPE_ID"], row["OWNER_ID"])]
        bindings += [(c["ENTITY_TYPE_ID"], c["ENTITY_ID"]) for c in row["COMMUNICATIONS"]]
        row["BINDINGS"] = [{"OWNER_ID": o, "OWNER_TYPE_ID": t}
                           for t, o in dict.fromkeys(bindings) if owner_row(portal, t, o)]
    if "COMPLETED" in changed or (creating and "STATUS" not in changed):
        row["STATUS"] = 2 if row.get("COMPLETED") == "Y" else 1
    elif "STATUS" in changed:
        row["COMPLETED"] = "Y" if row.get("STATUS") in (2, 3) else "N"
    # DEADLINE is never set directly: START_TIME for calls and meetings, END_TIME otherwise.
    row["DEADLINE"] = row.get("START_TIME") if row["TYPE_ID"] in (MEETING, CALL) \
        else row.get("END_TIME")
    row.update(LAST_UPDATED=now, EDITOR_ID=user)
    if row_id is None:
        row_id = table.insert(row)
    else:
        table.rows[row_id].update(row)
    touch_owners(call, row)
    verb = "ADD" if creating else "UPDATE"
    emit(call, f"ONCRMACTIVITY{verb}", {"FIELDS": {"ID": row_id}}, f"activity:{row_id}")
    return row_id


def _render(call: Call, row: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    table = call.portal.activities
    out = legacy_row(row, table.fields, names, call.portal.tz)
    if out.get("SETTINGS") == {}:
        out["SETTINGS"] = []  # PHP sends an empty array, not an object.
    return out


# -- crm.activity.* ---------------------------------------------------------------------------
@method("crm.activity.list", "crm")
def activity_list(call: Call) -> Any:
    """Activities by filter (``BINDINGS`` special), default order START_TIME asc, pages of 50."""
    raw = upper_keys(call.params.first("filter"))
    extra: list[Condition] = []
    if "BINDINGS" in raw:
        extra.append(BindingCondition(_binding_filter(raw.pop("BINDINGS"))))
    rows, listed = legacy_query(call, call.portal.activities, raw_filter=raw,
                                default_order={"START_TIME": "ASC"}, extra=extra)
    names = legacy_names(call.params.first("select"), call.portal.activities.fields)
    listed.result = [_render(call, r, names) for r in rows]
    return listed


@method("crm.activity.get", "crm")
def activity_get(call: Call) -> Any:
    """One activity with its communications and bindings."""
    table = call.portal.activities
    return _render(call, table.rows[legacy_id(call, table)], list(table.fields))


@method("crm.activity.add", "crm")
def activity_add(call: Call) -> Any:
    """A classic activity (meeting, call, task, e-mail); returns its ID."""
    return save_activity(call, legacy_fields_param(call))


@method("crm.activity.update", "crm")
def activity_update(call: Call) -> Any:
    """Change an activity (owner, type and direction stay)."""
    row_id = legacy_id(call, call.portal.activities)
    save_activity(call, legacy_fields_param(call), row_id)
    return True


@method("crm.activity.delete", "crm")
def activity_delete(call: Call) -> Any:
    """Remove an activity."""
    row_id = legacy_id(call, call.portal.activities)
    call.portal.activities.delete(row_id)
    emit(call, "ONCRMACTIVITYDELETE", {"FIELDS": {"ID": row_id}}, f"activity:{row_id}")
    return True


@method("crm.activity.fields", "crm")
def activity_fields(call: Call) -> Any:
    """Field descriptions of activities."""
    return {n: describe_field(call.portal, f, "CRM_ACTIVITY")
            for n, f in call.portal.activities.fields.items()}


@method("crm.activity.todo.add", "crm")
def todo_add(call: Call) -> Any:
    """A universal to-do (``CRM_TODO``) on a CRM item; returns ``{"id": N}``."""
    p = call.params
    for name in ("ownerTypeId", "ownerId", "deadline"):
        if p.first(name) in (None, ""):
            raise ApiError(400, "100", f"Could not find value for parameter {{{name}}}")
    owner = (p.int("ownerTypeId"), p.int("ownerId"))
    if owner_row(call.portal, *owner) is None:
        raise ApiError(400, "NOT_FOUND", "Not found.")
    try:
        deadline = parse_dt(p.first("deadline"), call.portal.tz)
    except ValueError:
        raise ApiError(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format") from None
    settings: dict[str, Any] = {"PING_OFFSETS": [int(v) for v in as_list(p.first("pingOffsets"))]}
    if p.first("colorId") not in (None, ""):
        settings["COLOR_ID"] = p.int("colorId")
    fields = {"OWNER_TYPE_ID": owner[0], "OWNER_ID": owner[1], "TYPE_ID": PROVIDER,
              "PROVIDER_ID": "CRM_TODO", "PROVIDER_TYPE_ID": "CRM_TODO",
              "SUBJECT": str(p.first("title", default="") or ""),
              "DESCRIPTION": str(p.first("description", default="") or ""),
              "RESPONSIBLE_ID": p.first("responsibleId"), "START_TIME": deadline,
              "END_TIME": deadline, "SETTINGS": settings,
              "ASSOCIATED_ENTITY_ID": p.first("parentActivityId")}
    return {"id": save_activity(call, fields)}


# -- crm.timeline.comment.* -------------------------------------------------------------------
def comment_owner_type(entity_type: str) -> int:
    """``deal`` → 2, ``dynamic_128`` → 128; 0 for anything else."""
    name = entity_type.strip().lower()
    if name.startswith("dynamic_") and name[8:].isdigit():
        return int(name[8:])
    return COMMENT_TYPES.get(name, 0)


@method("crm.timeline.comment.add", "crm")
def comment_add(call: Call) -> Any:
    """A timeline comment on a CRM item; returns its ID."""
    # Since crm 23.100.0 only the lowercase ``fields`` key is read.
    fields = call.params.raw().get("fields")
    if not isinstance(fields, Mapping):
        raise ApiError(400, "100", "Could not find value for parameter {fields}")
    fields = {str(k).upper(): v for k, v in fields.items()}
    for name in ("ENTITY_ID", "ENTITY_TYPE"):
        if fields.get(name) in (None, ""):
            raise ApiError(400, "100", f"Could not find value for parameter {{{name}}}")
    if not str(fields.get("COMMENT") or "").strip():
        raise ApiError(400, "INVALID_ARG_VALUE", "Empty comment message")
    type_id = comment_owner_type(str(fields["ENTITY_TYPE"]))
    try:
        entity_id = int(fields["ENTITY_ID"])
    except (TypeError, ValueError):
        entity_id = 0
    if owner_row(call.portal, type_id, entity_id) is None:
        raise ApiError(400, "NOT_FOUND", "Not found.")
    row_id = call.portal.timeline_comments.insert({
        "CREATED": call.now, "ENTITY_ID": entity_id,
        "ENTITY_TYPE": str(fields["ENTITY_TYPE"]).lower(), "ENTITY_TYPE_ID": type_id,
        "AUTHOR_ID": int(fields.get("AUTHOR_ID") or call.user_id),
        "COMMENT": str(fields["COMMENT"]), "FILES": {}})
    emit(call, "ONCRMTIMELINECOMMENTADD", {"FIELDS": {"ID": row_id}}, f"comment:{row_id}")
    return row_id


@method("crm.timeline.comment.list", "crm")
def comment_list(call: Call) -> Any:
    """Comments of one CRM item (``filter`` ENTITY_ID + ENTITY_TYPE), strings like legacy."""
    p = call.params
    raw = upper_keys(p.first("filter"))
    conditions = parse_filter(raw, TIMELINE_COMMENT, call.portal.tz)
    order = parse_order(upper_keys(p.first("order")), TIMELINE_COMMENT)
    page = call.portal.timeline_comments.query(conditions, order, pick_start(p.first("start")))
    names = [str(n).upper() for n in as_list(p.first("select"))] or list(TIMELINE_COMMENT)
    names = [n for n in TIMELINE_COMMENT if n in names]
    rows = []
    for row in page.rows:
        out = legacy_row(row, TIMELINE_COMMENT, names, call.portal.tz)
        if "FILES" in out:
            out["FILES"] = row.get("FILES") or {}
        rows.append(out)
    return Listed(rows, page.total, page.next)
