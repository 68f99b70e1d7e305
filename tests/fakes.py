"""Small fakes at our own seams: an in-memory ``Gateway`` and a settable clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from b24app.gateway.errors import B24Error, NotFound
from b24app.gateway.protocol import (
    CrmType,
    EventBinding,
    OfflineBatch,
    OfflineEvent,
    Record,
    UserFieldSpec,
)
from b24app.gateway.types import (
    Activity,
    Company,
    Contact,
    Deal,
    Department,
    Group,
    Task,
    TaskComment,
    TaskHistoryEntry,
    User,
)


@dataclass
class FakeClock:
    """A clock tests move by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 16, 2, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward (``minutes=5``...)."""
        self.now += timedelta(**delta)
        return self.now


@dataclass
class FakeGateway:
    """The ``Gateway`` protocol over dicts; records every action for assertions."""

    records: dict[str, dict[int, Record]] = field(default_factory=lambda: {
        e: {} for e in ("deal", "company", "contact", "activity", "task")})
    history: dict[int, list[TaskHistoryEntry]] = field(default_factory=dict)
    comments: dict[int, list[TaskComment]] = field(default_factory=dict)
    user_list: list[User] = field(default_factory=list)
    department_list: list[Department] = field(default_factory=list)
    group_list: list[Group] = field(default_factory=list)
    bindings: list[EventBinding] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    types: list[CrmType] = field(default_factory=list)
    offline: list[OfflineEvent] = field(default_factory=list)
    notifications: list[tuple[int, str, str]] = field(default_factory=list)
    updates: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    calendar: dict[str, Any] = field(default_factory=dict)
    clock: FakeClock = field(default_factory=FakeClock)
    # Smart processes: user-field names and items (fields as sent) by entityTypeId.
    item_userfields: dict[int, list[str]] = field(default_factory=dict)
    items: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # Errors to answer for ("company"|"deal"|...|"item", id) until removed; the write is lost.
    failures: dict[tuple[str, int], B24Error] = field(default_factory=dict)
    # Every write request as Bitrix24 would see it: (method, commands in the batch).
    writes: list[tuple[str, int]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    _reserved: dict[str, list[OfflineEvent]] = field(default_factory=dict)

    def put(self, entity: str, record: Record) -> None:
        """Add or replace a record."""
        self.records[entity][record.id] = record

    # -- reads ---------------------------------------------------------------------------
    def get_record(self, entity: str, record_id: int) -> Record | None:
        self.calls.append(f"get:{entity}:{record_id}")
        return self.records[entity].get(record_id)

    def get_deal(self, deal_id: int) -> Deal | None:
        found = self.get_record("deal", deal_id)
        return found if isinstance(found, Deal) else None

    def get_company(self, company_id: int) -> Company | None:
        found = self.get_record("company", company_id)
        return found if isinstance(found, Company) else None

    def get_contact(self, contact_id: int) -> Contact | None:
        found = self.get_record("contact", contact_id)
        return found if isinstance(found, Contact) else None

    def get_activity(self, activity_id: int) -> Activity | None:
        found = self.get_record("activity", activity_id)
        return found if isinstance(found, Activity) else None

    def get_task(self, task_id: int) -> Task | None:
        found = self.get_record("task", task_id)
        return found if isinstance(found, Task) else None

    def task_history(self, task_id: int) -> list[TaskHistoryEntry]:
        return list(self.history.get(task_id, []))

    def task_comments(self, task_id: int) -> list[TaskComment]:
        return list(self.comments.get(task_id, []))

    def iter_records(self, entity: str, *, modified_since: datetime | None = None,
                     after_id: int = 0) -> Iterator[list[Record]]:
        rows = [r for i, r in sorted(self.records[entity].items()) if i > after_id]
        if modified_since is not None:
            rows = [r for r in rows if (_modified(r) or modified_since) >= modified_since]
        for start in range(0, len(rows), 50):
            yield rows[start:start + 50]

    def users(self) -> list[User]:
        return list(self.user_list)

    def departments(self) -> list[Department]:
        return list(self.department_list)

    def groups(self) -> list[Group]:
        return list(self.group_list)

    # -- actions -------------------------------------------------------------------------
    def add_task_comment(self, task_id: int, text: str) -> int:
        comment = TaskComment(next(self._ids), task_id, 1, self.clock(), text)
        self.comments.setdefault(task_id, []).append(comment)
        return comment.id

    def update_task(self, task_id: int, fields: Mapping[str, Any]) -> None:
        self.updates.append(("task", task_id, dict(fields)))
        task = self.get_task(task_id)
        if task is not None and "RESPONSIBLE_ID" in fields:
            self.put("task", replace(task, responsible_id=int(fields["RESPONSIBLE_ID"])))

    def notify(self, user_id: int, message: str, tag: str = "") -> int | None:
        self.notifications.append((user_id, message, tag))
        return len(self.notifications)

    def update_many(self, entity: str, changes: Mapping[int, Mapping[str, Any]]
                    ) -> dict[int, B24Error | None]:
        self._count_batches(f"crm.{entity}.update", [i for i, f in changes.items() if f])
        out: dict[int, B24Error | None] = {}
        for record_id, fields in changes.items():
            out[record_id] = self.failures.get((entity, record_id)) if fields else None
            if out[record_id] is None:
                self.updates.append((entity, record_id, dict(fields)))
        return out

    def _count_batches(self, method: str, ids: list[int]) -> None:
        for start in range(0, len(ids), 50):
            self.writes.append((method, len(ids[start:start + 50])))

    # -- smart-process items -----------------------------------------------------------------
    def item_fields(self, entity_type_id: int) -> list[str]:
        return list(self.item_userfields.get(entity_type_id, []))

    def add_item_userfield(self, type_settings_id: int, spec: UserFieldSpec) -> None:
        kind = next((t for t in self.types if t.id == type_settings_id), None)
        if kind is None:
            raise NotFound("", "You cannot create custom fields", method="userfieldconfig.add")
        names = self.item_userfields.setdefault(kind.entity_type_id, [])
        if spec.name not in names:
            names.append(spec.name)

    def add_item_userfields(self, type_settings_id: int, specs: Sequence[UserFieldSpec]
                            ) -> dict[str, B24Error | None]:
        for spec in specs:
            self.add_item_userfield(type_settings_id, spec)
        return dict.fromkeys((s.name for s in specs), None)

    def add_item(self, entity_type_id: int, fields: Mapping[str, Any]) -> int:
        self.writes.append(("crm.item.add", 1))
        item_id = next(self._ids)
        self.items.setdefault(entity_type_id, {})[item_id] = {"id": item_id, **dict(fields)}
        return item_id

    def update_items(self, entity_type_id: int, changes: Mapping[int, Mapping[str, Any]]
                     ) -> dict[int, B24Error | None]:
        self._count_batches("crm.item.update", [i for i, f in changes.items() if f])
        table = self.items.setdefault(entity_type_id, {})
        out: dict[int, B24Error | None] = {}
        for item_id, fields in changes.items():
            error = self.failures.get(("item", item_id)) if fields else None
            if fields and error is None and item_id not in table:
                error = NotFound("NOT_FOUND", "Element not found", method="crm.item.update")
            out[item_id] = error
            if error is None and fields:
                table[item_id].update(fields)
        return out

    def find_items(self, entity_type_id: int, flt: Mapping[str, Any],
                   select: Sequence[str] = ()) -> list[dict[str, Any]]:
        rows = [dict(r) for _, r in sorted(self.items.get(entity_type_id, {}).items())
                if all(str(r.get(k)) == str(v) for k, v in flt.items())]
        if select:
            rows = [{k: v for k, v in r.items() if k in select or k == "id"} for r in rows]
        return rows

    # -- lifecycle -----------------------------------------------------------------------
    def app_info(self) -> dict[str, Any]:
        return {"INSTALLED": True, "VERSION": 1}

    def bound_events(self) -> list[EventBinding]:
        return list(self.bindings)

    def bind_event(self, event: str, handler: str = "", *, offline: bool = False) -> bool:
        binding = EventBinding(event.upper(), "" if offline else handler, offline)
        if binding in self.bindings:
            return False
        self.bindings.append(binding)
        return True

    def unbind_event(self, event: str, handler: str = "", *, offline: bool = False) -> int:
        before = len(self.bindings)
        self.bindings = [b for b in self.bindings
                         if not (b.event == event.upper() and b.offline == offline
                                 and (not handler or b.handler == handler))]
        return before - len(self.bindings)

    def userfields(self, entity: str) -> list[str]:
        return list(self.fields.get(entity, []))

    def add_userfield(self, entity: str, spec: UserFieldSpec) -> None:
        self.fields.setdefault(entity, []).append(spec.name)

    def crm_types(self) -> list[CrmType]:
        return list(self.types)

    def add_crm_type(self, title: str, code: str) -> CrmType:
        created = CrmType(len(self.types) + 1, 128 + 2 * len(self.types), title, code)
        self.types.append(created)
        return created

    def offline_events(self, *, limit: int = 50, process_id: str = "") -> OfflineBatch:
        if process_id:
            return OfflineBatch(process_id, list(self._reserved.get(process_id, [])))
        taken, self.offline = self.offline[:limit], self.offline[limit:]
        pid = f"p{next(self._ids)}" if taken else ""
        if taken:
            self._reserved[pid] = taken
        return OfflineBatch(pid, taken)

    def clear_offline(self, process_id: str, message_ids: list[str] | None = None) -> None:
        kept = [e for e in self._reserved.get(process_id, [])
                if message_ids is not None and e.message_id not in message_ids]
        self._reserved[process_id] = kept

    def fail_offline(self, process_id: str, message_ids: list[str]) -> None:
        self._reserved[process_id] = [e for e in self._reserved.get(process_id, [])
                                      if e.message_id not in message_ids]

    def offline_reserved(self) -> list[str]:
        return [pid for pid, rows in self._reserved.items() if rows]

    def server_time(self) -> datetime:
        return self.clock()

    def calendar_settings(self) -> dict[str, Any]:
        return dict(self.calendar)


def _modified(record: Record) -> datetime | None:
    for name in ("modified_at", "changed_at", "created_at"):
        value = getattr(record, name, None)
        if isinstance(value, datetime):
            return value
    return None
