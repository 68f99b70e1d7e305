"""App lifecycle, offline queue and portal facts: the admin half of ``BitrixGateway``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from b24app.gateway.client import BitrixClient, pages_to_rows
from b24app.gateway.errors import BadRequest, Transport
from b24app.gateway.protocol import (
    CrmType,
    EventBinding,
    OfflineBatch,
    OfflineEvent,
    UserFieldSpec,
)
from b24app.gateway.wire import to_bool, to_dt, to_int

USERFIELD_ENTITIES = ("deal", "company", "contact")


class AdminCalls:
    """The admin half of the gateway; ``BitrixGateway`` mixes it in."""

    _client: BitrixClient

    # -- app and events ----------------------------------------------------------------------
    def app_info(self) -> dict[str, Any]:
        """``app.info`` of the calling app."""
        value = self._client.call("app.info").value
        return dict(value) if isinstance(value, dict) else {}

    def bound_events(self) -> list[EventBinding]:
        """``event.get``: the app's handlers and offline queues."""
        rows = self._client.call("event.get").value
        return [EventBinding(str(r.get("event") or "").upper(), str(r.get("handler") or ""),
                             to_bool(r.get("offline")))
                for r in rows or [] if isinstance(r, dict)]

    def bind_event(self, event: str, handler: str = "", *, offline: bool = False) -> bool:
        """``event.bind`` (offline: ``event_type=offline``, no handler); False if bound already."""
        try:
            self._client.call("event.bind", _event_params(event, handler, offline))
        except BadRequest as exc:
            if _already_bound(exc):
                return False
            raise
        return True

    def unbind_event(self, event: str, handler: str = "", *, offline: bool = False) -> int:
        """``event.unbind`` → how many bindings went."""
        value = self._client.call("event.unbind", _event_params(event, handler, offline)).value
        return to_int(value.get("count")) if isinstance(value, dict) else 0

    # -- CRM settings ------------------------------------------------------------------------
    def userfields(self, entity: str) -> list[str]:
        """``crm.<entity>.userfield.list`` → FIELD_NAMEs."""
        value = self._client.call(f"crm.{_uf_entity(entity)}.userfield.list").value
        names = (str(r.get("FIELD_NAME") or "") for r in value or [] if isinstance(r, dict))
        return list(dict.fromkeys(n for n in names if n))

    def add_userfield(self, entity: str, spec: UserFieldSpec) -> None:
        """``crm.<entity>.userfield.add`` from a ``UserFieldSpec``."""
        fields = {"FIELD_NAME": spec.name, "USER_TYPE_ID": spec.type,
                  # LABEL sets every language's labels; the *_LABEL keys name the ones we mean.
                  "LABEL": spec.label, "EDIT_FORM_LABEL": spec.label,
                  "LIST_COLUMN_LABEL": spec.label, "MULTIPLE": spec.multiple,
                  "SETTINGS": dict(spec.settings)}
        self._client.call(f"crm.{_uf_entity(entity)}.userfield.add", {"fields": fields})

    def crm_types(self) -> list[CrmType]:
        """``crm.type.list`` → smart process types."""
        rows = pages_to_rows(self._client.iter_offset("crm.type.list"))
        return [_crm_type(r) for r in rows]

    def add_crm_type(self, title: str, code: str) -> CrmType:
        """``crm.type.add`` with camelCase ``fields{title, code}``."""
        value = self._client.call("crm.type.add",
                                  {"fields": {"title": title, "code": code}}).value
        row = value.get("type") if isinstance(value, dict) else None
        if not isinstance(row, dict):
            raise Transport("UNEXPECTED_ANSWER", "crm.type.add answered no type",
                            method="crm.type.add")
        return _crm_type(row)

    # -- offline queue -----------------------------------------------------------------------
    def offline_events(self, *, limit: int = 50, process_id: str = "") -> OfflineBatch:
        """``event.offline.get`` with ``clear=0``: reserve a batch, or re-read ``process_id``'s."""
        params: dict[str, Any] = {"clear": 0, "limit": limit}
        if process_id:
            params["process_id"] = process_id
        value = self._client.call("event.offline.get", params).value
        value = value if isinstance(value, dict) else {}
        events = [_offline_event(r) for r in value.get("events") or [] if isinstance(r, dict)]
        return OfflineBatch(str(value.get("process_id") or process_id or ""), events)

    def clear_offline(self, process_id: str, message_ids: list[str] | None = None) -> None:
        """``event.offline.clear`` of the whole batch, or of ``message_ids`` only."""
        if message_ids is not None and not message_ids:
            return  # An empty list must not reach Bitrix24, where no filter means "all".
        params: dict[str, Any] = {"process_id": process_id}
        if message_ids:
            params["message_id"] = list(message_ids)
        self._client.call("event.offline.clear", params)

    def fail_offline(self, process_id: str, message_ids: list[str]) -> None:
        """``event.offline.error``: mark records failed (they wait with ERROR=1)."""
        if message_ids:
            self._client.call("event.offline.error",
                              {"process_id": process_id, "message_id": list(message_ids)})

    def offline_reserved(self) -> list[str]:
        """``event.offline.list``: process IDs holding reserved records (crash recovery)."""
        rows = pages_to_rows(self._client.iter_offset(
            "event.offline.list", {"filter": {"!PROCESS_ID": ""}}))
        return sorted({str(r.get("PROCESS_ID") or "") for r in rows} - {""})

    # -- portal facts ------------------------------------------------------------------------
    def server_time(self) -> datetime:
        """``server.time`` as aware UTC."""
        value = self._client.call("server.time").value
        parsed = to_dt(value)
        if parsed is None:
            raise Transport("UNEXPECTED_ANSWER", f"server.time answered {value!r}",
                            method="server.time")
        return parsed

    def calendar_settings(self) -> dict[str, Any]:
        """``calendar.settings.get``: work hours and holidays."""
        value = self._client.call("calendar.settings.get").value
        return dict(value) if isinstance(value, dict) else {}


def _event_params(event: str, handler: str, offline: bool) -> dict[str, Any]:
    # Offline queues have no handler; Bitrix24 tells them apart by event_type (3.7).
    if offline:
        return {"event": event, "event_type": "offline"}
    return {"event": event, "handler": handler}


def _already_bound(exc: BadRequest) -> bool:
    """``ERROR_HANDLER_ALREADY_EXIST`` "Handler already exists!" (b24restdocs:error-codes.md)."""
    return exc.code == "ERROR_HANDLER_ALREADY_EXIST" or "already exist" in exc.description.lower()


def _uf_entity(entity: str) -> str:
    if entity not in USERFIELD_ENTITIES:
        raise ValueError(f"user fields live on {', '.join(USERFIELD_ENTITIES)}, not {entity!r}")
    return entity


def _crm_type(row: dict[str, Any]) -> CrmType:
    """A ``crm.type.*`` record (camelCase, typed values)."""
    return CrmType(to_int(row.get("id")), to_int(row.get("entityTypeId")),
                   str(row.get("title") or ""), str(row.get("code") or ""))


def _offline_event(row: dict[str, Any]) -> OfflineEvent:
    """One ``event.offline.get`` record; EVENT_DATA may be ``false`` (doc sample)."""
    data = row.get("EVENT_DATA")
    return OfflineEvent(to_int(row.get("ID")), str(row.get("EVENT_NAME") or "").upper(),
                        to_dt(row.get("TIMESTAMP_X")), str(row.get("MESSAGE_ID") or ""),
                        data if isinstance(data, dict) else {})
