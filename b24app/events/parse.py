"""Turn a verified-shape form into an :class:`IncomingEvent` (IDs only, as Bitrix24 sends)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from b24app.events.form import MalformedForm

_DIGITS = re.compile(r"^\d{1,19}$")
_EVENT = re.compile(r"^[A-Za-z]{3,64}$")
_MEMBER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# Keys of the auth block we keep; tokens of the triggering user are dropped at the edge.
_AUTH_KEEP = ("domain", "member_id", "client_endpoint", "server_endpoint", "status", "scope")


class MalformedEvent(MalformedForm):
    """The form is not a Bitrix24 event we can route."""


@dataclass(frozen=True)
class IncomingEvent:
    """One event as received: who sent it, what changed, when."""

    name: str
    member_id: str
    application_token: str
    ts: int
    entity_id: str
    data: dict[str, Any]
    auth: dict[str, str]
    by_user: bool

    @property
    def dedup_key(self) -> str:
        """Bitrix24 may deliver twice; (event, entity, ts) identifies a delivery."""
        return f"{self.name}|{self.entity_id}|{self.ts}"


def _id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _DIGITS.match(value):
        raise MalformedEvent(f"{what} must be a number")
    return value


def _side(data: dict[str, Any], key: str) -> dict[str, Any]:
    side = data.get(key)
    return side if isinstance(side, dict) else {}


def entity_id(name: str, data: dict[str, Any]) -> str:
    """The object an event is about; events carry only IDs (``FIELDS[ID]``, ``FIELDS_AFTER``)."""
    if name.startswith("ONCRM"):
        return _id(_side(data, "FIELDS").get("ID"), "data[FIELDS][ID]")
    if name.startswith("ONTASKCOMMENT"):
        after = _side(data, "FIELDS_AFTER") or _side(data, "FIELDS_BEFORE")
        task = _id(after.get("TASK_ID"), "data[FIELDS_AFTER][TASK_ID]")
        comment = str(after.get("ID") or "0")
        # The new task card sends ID 0 and a chat MESSAGE_ID instead.
        if comment == "0":
            return f"{task}:m{_id(after.get('MESSAGE_ID'), 'data[FIELDS_AFTER][MESSAGE_ID]')}"
        return f"{task}:{_id(comment, 'data[FIELDS_AFTER][ID]')}"
    if name.startswith("ONTASK"):
        side = _side(data, "FIELDS_BEFORE" if name == "ONTASKDELETE" else "FIELDS_AFTER")
        return _id(side.get("ID"), "task ID")
    return ""


def parse_event(form: dict[str, Any]) -> IncomingEvent:
    """Validate the routing parts of an event form; raise :class:`MalformedEvent`."""
    name = form.get("event")
    if not isinstance(name, str) or not _EVENT.match(name):
        raise MalformedEvent("event name missing or invalid")
    name = name.upper()  # Docs show both ONCRMDEALADD and onCrmActivityAdd.
    auth = form.get("auth")
    if not isinstance(auth, dict):
        raise MalformedEvent("auth block missing")
    member_id = auth.get("member_id")
    token = auth.get("application_token")
    if not isinstance(member_id, str) or not _MEMBER.match(member_id):
        raise MalformedEvent("auth[member_id] missing or invalid")
    if not isinstance(token, str) or not token:
        raise MalformedEvent("auth[application_token] missing")
    ts = _id(form.get("ts"), "ts")
    data = form.get("data")
    if not isinstance(data, dict):
        data = {}
    return IncomingEvent(
        name=name, member_id=member_id, application_token=token, ts=int(ts),
        entity_id=entity_id(name, data), data=data,
        auth={k: str(auth[k]) for k in _AUTH_KEEP if isinstance(auth.get(k), str)},
        by_user="access_token" in auth,
    )
