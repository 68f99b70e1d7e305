"""Small fakes at our own seams: an in-memory ``Gateway`` and a settable clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from b24app.gateway.errors import B24Error
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
        out: dict[int, B24Error | None] = {}
        for record_id, fields in changes.items():
            self.updates.append((entity, record_id, dict(fields)))
            out[record_id] = None
        return out

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
