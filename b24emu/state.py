"""Save a portal's state to a file and load it back (``b24app emulator --state FILE``)."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from b24emu.portal import Portal

_TABLES = ("users", "departments", "groups", "deals", "companies", "contacts", "activities",
           "timeline_comments", "userfields", "crm_types", "stage_history", "tasks",
           "task_comments", "task_history", "task_chat", "notifications")


def dump(portal: Portal) -> dict[str, Any]:
    """Everything a restart must keep, as plain picklable data."""
    bus = portal.events
    return {
        "tables": {name: getattr(portal, name) for name in _TABLES},
        "items": portal.items,
        "group_members": portal.group_members,
        "placements": portal.placements,
        "calendar_settings": portal.calendar_settings,
        "anchor": portal.anchor,
        "clock": portal.clock.timestamp(),
        "clock_snapshot": portal.clock.snapshot(),
        "apps": portal.auth.apps,
        "webhooks": portal.auth.webhooks,
        "access": portal.auth.access,
        "refresh": portal.auth.refresh,
        "bindings": bus.bindings,
        "outgoing": bus.outgoing,
        "offline": bus.offline,
    }


def restore(portal: Portal, data: dict[str, Any]) -> None:
    """Put dumped state back into a fresh portal."""
    for name, table in data["tables"].items():
        setattr(portal, name, table)
    portal.items = data["items"]
    portal.group_members = data["group_members"]
    portal.placements = data["placements"]
    portal.calendar_settings = data["calendar_settings"]
    portal.anchor = data["anchor"]
    # Portal time goes on as before the restart (shifted or frozen), so issued tokens keep
    # their real remaining lifetime.
    if "clock_snapshot" in data:
        portal.clock.restore(*data["clock_snapshot"])
    else:
        portal.clock.set(datetime.fromtimestamp(data["clock"], tz=UTC))
    auth = portal.auth
    auth.apps, auth.webhooks = data["apps"], data["webhooks"]
    auth.access, auth.refresh = data["access"], data["refresh"]
    portal.app = next(iter(auth.apps.values()))
    portal.webhook = next(iter(auth.webhooks.values()))
    bus = portal.events
    bus.bindings, bus.outgoing, bus.offline = data["bindings"], data["outgoing"], data["offline"]
    bus.resume_ids()


def save_state(portal: Portal, path: str | Path) -> None:
    """Write the portal's state to ``path`` atomically."""
    target = Path(path)
    tmp = target.with_suffix(target.suffix + ".tmp")
    with portal.lock:
        payload = pickle.dumps(dump(portal), protocol=pickle.HIGHEST_PROTOCOL)
    tmp.write_bytes(payload)
    tmp.replace(target)


def load_state(portal: Portal, path: str | Path) -> None:
    """Replace ``portal``'s state with the one saved at ``path`` (a file we wrote)."""
    data = pickle.loads(Path(path).read_bytes())  # noqa: S301 - our own state file
    restore(portal, data)
