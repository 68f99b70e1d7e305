"""``event.*``: bindings and the offline queue (app context only)."""

from __future__ import annotations

import functools
import operator
import secrets
from collections.abc import Callable
from typing import Any

from b24emu.core import Call, Listed, method
from b24emu.errors import ApiError
from b24emu.events import KNOWN_EVENTS, Actor
from b24emu.phpquery import as_list
from b24emu.store import pick_start


def _owner(call: Call) -> str:
    return call.client_id or ""


@method("event.bind", app_only=True)
def event_bind(call: Call) -> Any:
    """Bind an online handler, or an offline queue when ``event_type=offline``."""
    p = call.params
    event = str(p.first("event", default="") or "").upper()
    handler = str(p.first("handler", default="") or "")
    offline = str(p.first("event_type", default="online")).lower() == "offline"
    auth_type = p.int("auth_type")
    if event not in KNOWN_EVENTS:
        raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
    admin = call.portal.user_is_admin(call.user_id)
    if (offline or (auth_type and auth_type != call.user_id)) and not admin:
        raise ApiError(403, "ACCESS_DENIED", "Access denied!")
    if not offline and not handler:
        raise ApiError(400, "ERROR_ARGUMENT", "Handler not found", argument="handler")
    options = p.mapping("options")
    connector = str(p.first("auth_connector", default="") or "")
    binding = call.portal.events.bind(event, "" if offline else handler, _owner(call),
                                      auth_type=auth_type, offline=offline,
                                      auth_connector=connector, options=options)
    if binding is None:
        raise ApiError(400, "ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!")
    return True


@method("event.unbind", app_only=True)
def event_unbind(call: Call) -> Any:
    """Remove handlers; ``{"count": N}``."""
    p = call.params
    event = str(p.first("event", default="") or "")
    handler = str(p.first("handler", default="") or "")
    offline = str(p.first("event_type", default="online")).lower() == "offline"
    auth_type = p.int("auth_type") if "auth_type" in p else None
    count = call.portal.events.unbind(event, handler, _owner(call), auth_type=auth_type,
                                      offline=offline)
    return {"count": count}


@method("event.get", app_only=True)
def event_get(call: Call) -> Any:
    """The app's bindings (a non-admin sees only their own)."""
    admin = call.portal.user_is_admin(call.user_id)
    return [b.as_api() for b in call.portal.events.bindings
            if b.owner == _owner(call) and (admin or b.auth_type in (0, call.user_id))]


@method("events")
def events_list(call: Call) -> Any:
    """Event codes the portal knows."""
    return sorted(KNOWN_EVENTS)


@method("event.test", app_only=True)
def event_test(call: Call) -> Any:
    """Fire ONAPPTEST with the call's parameters in ``data[QUERY]``."""
    query = {k: v for k, v in call.params.items() if k.lower() != "auth"}
    actor = Actor(call.user_id, client_id=call.client_id)
    call.portal.events.emit("ONAPPTEST", {"QUERY": query}, actor)
    return 1


def _offline_rows(call: Call) -> list[dict[str, Any]]:
    connector = str(call.params.first("auth_connector", default="") or "")
    return [r for r in call.portal.events.offline.values()
            if r["_owner"] == _owner(call) and r["_connector"] == connector]


def _public(row: dict[str, Any], *, listing: bool = False) -> dict[str, Any]:
    keys = ["ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID"]
    if listing:
        keys += ["PROCESS_ID", "ERROR"]
    return {k: row[k] for k in keys}


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "": operator.eq, "=": operator.eq, "!": operator.ne, ">": operator.gt, ">=": operator.ge,
    "<": operator.lt, "<=": operator.le,
}


def _match(row: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Whether a queue record satisfies ``filter`` (operator prefix before the field)."""
    for key, wanted in flt.items():
        op = next((o for o in (">=", "<=", ">", "<", "!", "=") if key.startswith(o)), "")
        name = key[len(op):].upper()
        have: Any = row.get(name)
        want: Any = wanted
        if name == "ID":
            have, want = int(have or 0), int(wanted)
        else:
            have, want = str(have), str(wanted)
        if not _OPS[op](have, want):
            return False
    return True


def _sort_value(row: dict[str, Any], key: str) -> Any:
    if key == "ID":
        return int(row["ID"])
    if key == "TIMESTAMP_X":
        return row.get("_ts", 0)
    return str(row.get(key))


def _order(rows: list[dict[str, Any]], order: dict[str, Any], default: str) -> list[dict[str, Any]]:
    items = list(order.items()) or [(default, "ASC")]
    for name, direction in reversed(items):
        key = name.upper()
        rows.sort(key=functools.partial(_sort_value, key=key),
                  reverse=str(direction).upper() == "DESC")
    return rows


@method("event.offline.get", app_only=True, admin_only=True)
def offline_get(call: Call) -> Any:
    """Read the queue; ``clear=0`` reserves records under a ``process_id`` instead of deleting."""
    p = call.params
    clear = str(p.first("clear", default="1")) not in ("0", "false", "N")
    with_errors = str(p.first("error", default="0")) in ("1", "true", "Y")
    limit = max(1, min(p.int("limit") or 50, 1000))
    process_id = str(p.first("process_id", default="") or "")
    rows = _offline_rows(call)
    if process_id:
        rows = [r for r in rows if r["PROCESS_ID"] == process_id]
    else:
        rows = [r for r in rows if not r["PROCESS_ID"]]
    if not with_errors:
        rows = [r for r in rows if r["ERROR"] == "0"]
    rows = [r for r in rows if _match(r, p.mapping("filter"))]
    rows = _order(rows, p.mapping("order"), "TIMESTAMP_X")[:limit]
    out = [_public(r) for r in rows]
    if clear:
        for r in rows:
            call.portal.events.offline.pop(int(r["ID"]), None)
        return {"process_id": None, "events": out}
    pid = process_id or (secrets.token_hex(16) if rows else "")
    for r in rows:
        r["PROCESS_ID"] = pid
    return {"process_id": pid or None, "events": out}


def _process_rows(call: Call) -> tuple[str, list[dict[str, Any]]]:
    pid = str(call.params.first("process_id", default="") or "")
    if not pid:
        raise ApiError(400, "ERROR_ARGUMENT", "Argument 'process_id' is null or empty",
                       argument="process_id")
    return pid, [r for r in _offline_rows(call) if r["PROCESS_ID"] == pid]


@method("event.offline.clear", app_only=True, admin_only=True)
def offline_clear(call: Call) -> Any:
    """Delete processed records of a process (all of them, or by ``id``/``message_id``)."""
    _, rows = _process_rows(call)
    ids = {str(v) for v in as_list(call.params.first("id"))}
    messages = {str(v) for v in as_list(call.params.first("message_id"))}
    for r in rows:
        if (not ids and not messages) or r["ID"] in ids or r["MESSAGE_ID"] in messages:
            call.portal.events.offline.pop(int(r["ID"]), None)
    return True


@method("event.offline.error", app_only=True, admin_only=True)
def offline_error(call: Call) -> Any:
    """Mark records of a process as failed; they leave the process and wait with ERROR=1."""
    _, rows = _process_rows(call)
    messages = {str(v) for v in as_list(call.params.first("message_id"))}
    for r in rows:
        if r["MESSAGE_ID"] in messages:
            r["ERROR"] = "1"
            r["PROCESS_ID"] = ""
    return True


@method("event.offline.list", app_only=True, admin_only=True)
def offline_list(call: Call) -> Any:
    """Read-only view of the queue with PROCESS_ID and ERROR, pages of 50."""
    rows = [r for r in _offline_rows(call) if _match(r, call.params.mapping("filter"))]
    rows = _order(rows, call.params.mapping("order"), "ID")
    start = max(pick_start(call.params.first("start")), 0)
    window = rows[start:start + 50]
    nxt = start + 50 if start + 50 < len(rows) else None
    return Listed([_public(r, listing=True) for r in window], len(rows), nxt)
