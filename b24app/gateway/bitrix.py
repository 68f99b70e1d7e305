"""The ``Gateway`` over ``BitrixClient``: intent-named reads and writes returning our own types."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from b24app.gateway.bitrix_admin import AdminCalls
from b24app.gateway.bitrix_items import ItemCalls, ParamsFn
from b24app.gateway.client import MAX_BATCH, BitrixClient, pages_to_rows
from b24app.gateway.errors import B24Error, BadRequest, MethodBlocked, NotFound
from b24app.gateway.protocol import Record
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
from b24app.gateway.wire import to_int, to_opt_int

T = TypeVar("T")
Row = dict[str, Any]

# What tasks.task.* must return for ``Task``: tasks answer only selected fields, and
# UF_CRM_TASK only when named (platform doc 5.5). Input names are UPPER_CASE.
TASK_SELECT = ("ID", "TITLE", "DESCRIPTION", "STATUS", "CREATED_BY", "RESPONSIBLE_ID",
               "CREATED_DATE", "CHANGED_DATE", "DEADLINE", "CLOSED_DATE", "STATUS_CHANGED_DATE",
               "GROUP_ID", "CHAT_ID", "ACCOMPLICES", "AUDITORS", "UF_CRM_TASK")
# Legacy CRM: ``*`` leaves out user fields and multiple fields (platform doc 5.1).
CRM_SELECT = ("*", "UF_*")
UPDATABLE = ("deal", "company", "contact")
CHAT_PAGE = 50  # im.dialog.messages.get answers at most 50 messages per call
MAX_BLOCK_WAIT = 600.0  # the operating budget's window is 10 minutes (platform doc 4.5)


@dataclass(frozen=True)
class Kind:
    """How one mirrored entity is exported: list method, change-time field, select, converter."""

    method: str
    modified: str
    select: tuple[str, ...]
    convert: Callable[[Row], Record]


KINDS: dict[str, Kind] = {
    "deal": Kind("crm.deal.list", "DATE_MODIFY", CRM_SELECT, Deal.from_wire),
    # PHONE/EMAIL are multiple fields: only sent when named (platform doc 5.1).
    "company": Kind("crm.company.list", "DATE_MODIFY", (*CRM_SELECT, "PHONE", "EMAIL"),
                    Company.from_wire),
    "contact": Kind("crm.contact.list", "DATE_MODIFY", (*CRM_SELECT, "PHONE", "EMAIL"),
                    Contact.from_wire),
    "activity": Kind("crm.activity.list", "LAST_UPDATED", (*CRM_SELECT, "BINDINGS"),
                     Activity.from_wire),
    "task": Kind("tasks.task.list", "CHANGED_DATE", TASK_SELECT, Task.from_wire),
}


def kind_of(entity: str) -> Kind:
    """The read recipe of ``entity``; ValueError for names the service does not mirror."""
    try:
        return KINDS[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}; expected one of {', '.join(KINDS)}") from None


class BitrixGateway(AdminCalls, ItemCalls):
    """Every ``Gateway`` operation for one portal, over one ``BitrixClient``."""

    def __init__(self, client: BitrixClient, *, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], float] = time.time, max_wait: float = MAX_BLOCK_WAIT,
                 block_retries: int = 3) -> None:
        self._client = client
        self._sleep = sleep
        self._now = now
        self._max_wait = max_wait
        self._block_retries = block_retries

    @property
    def client(self) -> BitrixClient:
        """The underlying client (stats, close)."""
        return self._client

    # -- single records ----------------------------------------------------------------------
    def _get(self, method: str, record_id: int, convert: Callable[[Row], T]) -> T | None:
        try:
            value = self._client.call(method, {"id": record_id}).value
        except NotFound:
            return None
        return convert(value) if isinstance(value, dict) else None

    def get_deal(self, deal_id: int) -> Deal | None:
        """``crm.deal.get``; None when it is gone."""
        return self._get("crm.deal.get", deal_id, Deal.from_wire)

    def get_company(self, company_id: int) -> Company | None:
        """``crm.company.get``; None when it is gone."""
        return self._get("crm.company.get", company_id, Company.from_wire)

    def get_contact(self, contact_id: int) -> Contact | None:
        """``crm.contact.get``; None when it is gone."""
        return self._get("crm.contact.get", contact_id, Contact.from_wire)

    def get_activity(self, activity_id: int) -> Activity | None:
        """``crm.activity.get``; None when it is gone."""
        return self._get("crm.activity.get", activity_id, Activity.from_wire)

    def get_task(self, task_id: int) -> Task | None:
        """``tasks.task.get`` with the fields ``Task`` reads; None when gone or hidden."""
        row = self._task_row(task_id, TASK_SELECT)
        return None if row is None else Task.from_wire(row)

    def _task_row(self, task_id: int, select: tuple[str, ...]) -> Row | None:
        try:
            value = self._client.call("tasks.task.get",
                                      {"taskId": task_id, "select": list(select)}).value
        except NotFound:
            return None
        # A missing or inaccessible task is ``result: []``, not an error (tasks-task-get.md).
        task = value.get("task") if isinstance(value, dict) else None
        return task if isinstance(task, dict) else None

    def get_record(self, entity: str, record_id: int) -> Record | None:
        """Any mirrored record by entity name."""
        getters: dict[str, Callable[[int], Record | None]] = {
            "deal": self.get_deal, "company": self.get_company, "contact": self.get_contact,
            "activity": self.get_activity, "task": self.get_task}
        kind_of(entity)
        return getters[entity](record_id)

    def task_history(self, task_id: int) -> list[TaskHistoryEntry]:
        """``tasks.task.history.list`` → ``result.list``, oldest first."""
        value = self._client.call("tasks.task.history.list", {"taskId": task_id}).value
        rows = value.get("list") if isinstance(value, dict) else None
        entries = [TaskHistoryEntry.from_wire(r) for r in rows or [] if isinstance(r, dict)]
        return sorted(entries, key=lambda e: e.id)

    def task_comments(self, task_id: int) -> list[TaskComment]:
        """Comments, oldest first: ``task.commentitem.getlist``, or the chat in the new card."""
        try:
            # A legacy positional method: ``0=<taskId>`` (api-reference/tasks/index.md).
            rows = self._client.call("task.commentitem.getlist", {"0": task_id}).value
        except (BadRequest, NotFound) as exc:
            # The new task card (tasks >= 25.700.0) fails getlist: comments are chat messages.
            return self._chat_comments(task_id, exc)
        found = [TaskComment.from_wire(task_id, r) for r in rows or [] if isinstance(r, dict)]
        return sorted(found, key=lambda c: c.id)

    def _chat_comments(self, task_id: int, cause: B24Error) -> list[TaskComment]:
        row = self._task_row(task_id, ("ID", "CHAT_ID"))
        if row is None:
            return []
        chat = to_opt_int(row.get("chatId"))
        if chat is None:
            raise cause  # Not the new card: getlist failed for its own reason.
        out: list[TaskComment] = []
        last: int | None = None
        while True:
            params: dict[str, Any] = {"DIALOG_ID": f"chat{chat}", "LIMIT": CHAT_PAGE}
            if last is not None:
                params["LAST_ID"] = last  # Newest first: page back to older messages.
            value = self._client.call("im.dialog.messages.get", params).value
            found = value.get("messages") if isinstance(value, dict) else None
            messages = [m for m in found or [] if isinstance(m, dict)]
            # Author 0 marks the chat's system lines (task created, deadline moved...).
            out += [TaskComment.from_message(task_id, m) for m in messages
                    if to_int(m.get("author_id"))]
            if len(messages) < CHAT_PAGE:
                return sorted(out, key=lambda c: c.id)
            last = min(to_int(m.get("id")) for m in messages)

    # -- bulk reads --------------------------------------------------------------------------
    def iter_records(self, entity: str, *, modified_since: datetime | None = None,
                     after_id: int = 0) -> Iterator[list[Record]]:
        """Pages in ascending ID (chained ``start=-1`` export), optionally changed since a time."""
        kind = kind_of(entity)
        flt = {} if modified_since is None else {f">={kind.modified}": modified_since}
        params = {"select": list(kind.select), "filter": flt}
        for page in self._client.iter_pages(kind.method, params, after_id=after_id):
            yield [kind.convert(row) for row in page]

    def users(self) -> list[User]:
        """``user.get`` (employees, active or not) by offset pages, by ID."""
        params = {"FILTER": {"USER_TYPE": "employee"}, "sort": "ID", "order": "ASC"}
        rows = self._client.iter_offset("user.get", params)
        return [User.from_wire(r) for r in pages_to_rows(rows)]

    def departments(self) -> list[Department]:
        """``department.get`` with ``UF_HEAD``, by ID."""
        rows = self._client.iter_offset("department.get", {"sort": "ID", "order": "ASC"})
        return [Department.from_wire(r) for r in pages_to_rows(rows)]

    def groups(self) -> list[Group]:
        """``sonet_group.get``, by ID."""
        rows = self._client.iter_offset("sonet_group.get", {"ORDER": {"ID": "ASC"}})
        return [Group.from_wire(r) for r in pages_to_rows(rows)]

    # -- actions -----------------------------------------------------------------------------
    def add_task_comment(self, task_id: int, text: str) -> int:
        """``task.commentitem.add`` (positional); the comment ID, the message ID in the new card."""
        # Named keys (TASKID, FIELDS) are read by position anyway (data-encoding.md).
        value = self._client.call("task.commentitem.add",
                                  {"0": task_id, "1": {"POST_MESSAGE": text}}).value
        return to_int(value)

    def update_task(self, task_id: int, fields: Mapping[str, Any]) -> None:
        """``tasks.task.update`` with ``taskId`` and UPPER_CASE ``fields``."""
        self._client.call("tasks.task.update", {"taskId": task_id, "fields": dict(fields)})

    def notify(self, user_id: int, message: str, tag: str = "") -> int | None:
        """``im.notify.system.add``; None when Bitrix24 answers ``false`` (unknown user)."""
        params: dict[str, Any] = {"USER_ID": user_id, "MESSAGE": message}
        if tag:
            params["TAG"] = tag
        value = self._client.call("im.notify.system.add", params).value
        return None if value is None or value is False else to_int(value)

    def update_many(self, entity: str, changes: Mapping[int, Mapping[str, Any]]
                    ) -> dict[int, B24Error | None]:
        """``crm.<entity>.update`` in batches of 50; each record gets None or its typed error."""
        if entity not in UPDATABLE:
            raise ValueError(f"update_many writes {', '.join(UPDATABLE)}, not {entity!r}")
        out: dict[int, B24Error | None] = {rid: None for rid, f in changes.items() if not f}
        items = [(rid, dict(f)) for rid, f in changes.items() if f]
        for start in range(0, len(items), MAX_BATCH):
            out.update(self._update_chunk(f"crm.{entity}.update",
                                          dict(items[start:start + MAX_BATCH])))
        return {rid: out[rid] for rid in changes}

    def _update_chunk(self, method: str, chunk: dict[int, Row],
                      params: ParamsFn | None = None) -> dict[int, B24Error | None]:
        """One batch; commands refused with 429 wait for the reset and go again."""
        build = params or _update_params
        out: dict[int, B24Error | None] = {}
        pending = chunk
        for attempt in range(self._block_retries + 1):
            last = attempt == self._block_retries
            try:
                results = self._client.batch({f"u{rid}": (method, build(rid, fields))
                                              for rid, fields in pending.items()})
            except MethodBlocked as exc:
                if last:
                    raise
                self._wait(exc.reset_at)
                continue
            blocked: dict[int, MethodBlocked] = {}
            for rid in pending:
                result = results[f"u{rid}"]
                if isinstance(result, MethodBlocked) and not last:
                    blocked[rid] = result
                else:
                    out[rid] = result if isinstance(result, B24Error) else None
            if not blocked:
                break
            # The budget is per method: once spent, the rest of the batch is refused too.
            self._wait(max(b.reset_at for b in blocked.values()))
            pending = {rid: chunk[rid] for rid in blocked}
        return out

    def _wait(self, reset_at: float) -> None:
        """Sleep until the operating budget resets (``operating_reset_at``), capped."""
        # No reset time means "about the window": Bitrix24 documents 10 minutes.
        delay = reset_at - self._now() + 1 if reset_at else self._max_wait
        self._sleep(min(max(delay, 1.0), self._max_wait))


def _update_params(record_id: int, fields: Row) -> Row:
    """``crm.*.update`` params; our writes stay out of the live feed (REGISTER_SONET_EVENT=N)."""
    return {"id": record_id, "fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}
