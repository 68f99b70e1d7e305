"""``b24emu.*``: the test harness's window into the portal (not part of Bitrix24)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from b24emu.core import Call, method
from b24emu.errors import ApiError
from b24emu.events import KNOWN_EVENTS, Actor
from b24emu.serialize import legacy_scalar
from b24emu.timefmt import parse_dt, render_dt


@method("b24emu.notifications.list")
def notifications_list(call: Call) -> Any:
    """Every ``im.notify*`` the portal received, optionally for one ``user_id`` or ``tag``."""
    user_id = call.params.int("user_id")
    tag = str(call.params.first("tag", default="") or "")
    rows = []
    for row in call.portal.notifications:
        if (user_id and row["USER_ID"] != user_id) or (tag and row["TAG"] != tag):
            continue
        rows.append({k: legacy_scalar(None, v, call.portal.tz) for k, v in row.items()})
    return rows


@method("b24emu.events.log")
def events_log(call: Call) -> Any:
    """Deliveries so far: event, URL, HTTP status or error."""
    return [r.as_api() for r in call.portal.events.log]


@method("b24emu.events.wait_idle")
def events_wait_idle(call: Call) -> Any:
    """Wait until every queued delivery was attempted."""
    # Release the portal lock while waiting so that handlers can call back into REST.
    call.portal.lock.release()
    try:
        return call.portal.events.wait_idle(float(call.params.first("timeout", default=10)))
    finally:
        call.portal.lock.acquire()


@method("b24emu.events.emit")
def events_emit(call: Call) -> Any:
    """Announce a change as the caller (or ``user_id``): ``event``, ``data``, object ``key``."""
    # What a CRM or task write does when it announces a change; lets tests drive delivery,
    # the offline queue and automation (``act(..., automation=True)``) without those modules.
    p = call.params
    event = str(p.first("event", default="") or "").upper()
    if event not in KNOWN_EVENTS:
        raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
    actor = Actor(p.int("user_id") or call.user_id, automation=call.automation,
                  client_id=call.client_id,
                  auth_connector=str(p.first("auth_connector", default="") or "") or None)
    call.portal.events.emit(event, p.mapping("data"), actor, str(p.first("key", default="")))
    return True


@method("b24emu.faults.add")
def faults_add(call: Call) -> Any:
    """Activate a fault: drop/duplicate/delay events, a method error, extra operating time."""
    p = call.params
    count = p.first("count")
    try:
        rule = call.portal.faults.add(
            str(p.first("kind", default="")), str(p.first("pattern", default="*")),
            None if count in (None, "") else int(count), float(p.first("value", default=0) or 0),
            int(p.first("status", default=0) or 0))
    except ValueError as exc:
        raise ApiError(400, "ERROR_ARGUMENT", str(exc)) from None
    return rule.as_dict()


@method("b24emu.faults.clear")
def faults_clear(call: Call) -> Any:
    """Switch every fault off."""
    call.portal.faults.clear()
    return True


@method("b24emu.tokens.expire")
def tokens_expire(call: Call) -> Any:
    """Expire every access token now."""
    return call.portal.auth.expire_all()


@method("b24emu.clock.get")
def clock_get(call: Call) -> Any:
    """Portal time."""
    return render_dt(call.portal.clock.now(), call.portal.tz)


@method("b24emu.clock.set")
def clock_set(call: Call) -> Any:
    """Move portal time to ``now`` (ISO 8601), ``frozen`` optional."""
    instant = parse_dt(call.params.first("now"), call.portal.tz)
    if instant is None:
        raise ApiError(400, "ERROR_ARGUMENT", "now is required")
    frozen = str(call.params.first("frozen", default="0")).lower() in ("1", "true", "y")
    call.portal.clock.set(instant, frozen=frozen)
    return render_dt(call.portal.clock.now(), call.portal.tz)


@method("b24emu.clock.advance")
def clock_advance(call: Call) -> Any:
    """Move portal time forward by ``seconds``."""
    seconds = float(call.params.first("seconds", default=0) or 0)
    call.portal.clock.advance(timedelta(seconds=seconds).total_seconds())
    return render_dt(call.portal.clock.now(), call.portal.tz)


@method("b24emu.limits.set")
def limits_set(call: Call) -> Any:
    """Change limits: enabled, burst, rate, operating_limit, operating_multiplier."""
    limits = call.portal.limits
    p = call.params
    if "enabled" in p:
        limits.enabled = str(p["enabled"]).lower() in ("1", "true", "y")
    for name in ("burst", "rate", "operating_limit", "operating_multiplier"):
        if name in p:
            setattr(limits, name, type(getattr(limits, name))(float(p[name])))
    call.portal.bucket.reset()
    call.portal.budget.reset()
    return {"enabled": limits.enabled, "burst": limits.burst, "rate": limits.rate,
            "operating_limit": limits.operating_limit}


@method("b24emu.outgoing_webhook.add")
def outgoing_add(call: Call) -> Any:
    """Create an outgoing webhook; returns its id and application token."""
    handler = str(call.params.first("handler", default="") or "")
    events = [str(e) for e in (call.params.first("events") or [])]
    if not handler or not events:
        raise ApiError(400, "ERROR_ARGUMENT", "handler and events are required")
    hook = call.portal.events.add_outgoing(handler, events)
    return {"id": hook.id, "application_token": hook.application_token}


@method("b24emu.stats")
def stats(call: Call) -> Any:
    """Row counts of every table and event-bus figures."""
    portal = call.portal
    tables = {name: len(getattr(portal, name)) for name in (
        "users", "departments", "groups", "deals", "companies", "contacts", "activities",
        "timeline_comments", "userfields", "crm_types", "stage_history", "tasks",
        "task_comments", "task_history", "notifications")}
    tables["items"] = sum(len(t) for t in portal.items.values())
    return {"tables": tables, "deliveries": len(portal.events.log),
            "offline": len(portal.events.offline), "pending": portal.events.pending(),
            "refreshes": portal.auth.refresh_count, "rejected_503": portal.bucket.rejected}
