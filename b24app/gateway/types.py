"""Our own types for what the gateway reads; built from the wire in one place each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from b24app.gateway.wire import (
    to_bool,
    to_date,
    to_decimal,
    to_dt,
    to_int,
    to_ints,
    to_opt_int,
)


@dataclass(frozen=True)
class User:
    """A portal employee."""

    id: int
    name: str
    last_name: str
    active: bool
    departments: tuple[int, ...]
    email: str = ""
    position: str = ""

    @property
    def full_name(self) -> str:
        """«Имя Фамилия»."""
        return f"{self.name} {self.last_name}".strip() or f"#{self.id}"

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> User:
        """From ``user.get``."""
        return cls(to_int(row.get("ID")), str(row.get("NAME") or ""),
                   str(row.get("LAST_NAME") or ""), to_bool(row.get("ACTIVE", True)),
                   to_ints(row.get("UF_DEPARTMENT")), str(row.get("EMAIL") or ""),
                   str(row.get("WORK_POSITION") or ""))


@dataclass(frozen=True)
class Department:
    """A department and its head (``UF_HEAD``)."""

    id: int
    name: str
    parent_id: int | None
    head_id: int | None

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Department:
        """From ``department.get``."""
        return cls(to_int(row.get("ID")), str(row.get("NAME") or ""),
                   to_opt_int(row.get("PARENT")), to_opt_int(row.get("UF_HEAD")))


@dataclass(frozen=True)
class Group:
    """A workgroup (requests to other departments go through these)."""

    id: int
    name: str
    active: bool

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Group:
        """From ``sonet_group.get``."""
        return cls(to_int(row.get("ID")), str(row.get("NAME") or ""),
                   to_bool(row.get("ACTIVE", "Y")))


@dataclass(frozen=True)
class Deal:
    """A deal (a won deal is a purchase)."""

    id: int
    title: str
    stage_id: str
    semantic: str
    category_id: int
    amount: Decimal
    currency: str
    company_id: int | None
    contact_id: int | None
    assigned_by_id: int
    created_by_id: int
    created_at: datetime | None
    modified_at: datetime | None
    moved_at: datetime | None
    begin_date: date | None
    close_date: date | None
    closed: bool
    last_activity_at: datetime | None
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Deal:
        """From ``crm.deal.get``/``crm.deal.list`` (legacy strings)."""
        return cls(
            id=to_int(row.get("ID")), title=str(row.get("TITLE") or ""),
            stage_id=str(row.get("STAGE_ID") or ""),
            semantic=str(row.get("STAGE_SEMANTIC_ID") or "P"),
            category_id=to_int(row.get("CATEGORY_ID")), amount=to_decimal(row.get("OPPORTUNITY")),
            currency=str(row.get("CURRENCY_ID") or "RUB"),
            company_id=to_opt_int(row.get("COMPANY_ID")),
            contact_id=to_opt_int(row.get("CONTACT_ID")),
            assigned_by_id=to_int(row.get("ASSIGNED_BY_ID")),
            created_by_id=to_int(row.get("CREATED_BY_ID")),
            created_at=to_dt(row.get("DATE_CREATE")), modified_at=to_dt(row.get("DATE_MODIFY")),
            moved_at=to_dt(row.get("MOVED_TIME")), begin_date=to_date(row.get("BEGINDATE")),
            close_date=to_date(row.get("CLOSEDATE")), closed=to_bool(row.get("CLOSED")),
            last_activity_at=to_dt(row.get("LAST_ACTIVITY_TIME")), fields=dict(row),
        )


@dataclass(frozen=True)
class Company:
    """A client company (its card fields live in ``fields``)."""

    id: int
    title: str
    assigned_by_id: int
    created_at: datetime | None
    modified_at: datetime | None
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Company:
        """From ``crm.company.get``/``.list``."""
        return cls(to_int(row.get("ID")), str(row.get("TITLE") or ""),
                   to_int(row.get("ASSIGNED_BY_ID")), to_dt(row.get("DATE_CREATE")),
                   to_dt(row.get("DATE_MODIFY")), dict(row))


@dataclass(frozen=True)
class Contact:
    """A contact person of a client."""

    id: int
    name: str
    last_name: str
    company_id: int | None
    assigned_by_id: int
    created_at: datetime | None
    modified_at: datetime | None
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Contact:
        """From ``crm.contact.get``/``.list``."""
        return cls(to_int(row.get("ID")), str(row.get("NAME") or ""),
                   str(row.get("LAST_NAME") or ""), to_opt_int(row.get("COMPANY_ID")),
                   to_int(row.get("ASSIGNED_BY_ID")), to_dt(row.get("DATE_CREATE")),
                   to_dt(row.get("DATE_MODIFY")), dict(row))


@dataclass(frozen=True)
class Activity:
    """A CRM activity: meeting (visit), call, e-mail, to-do."""

    id: int
    type_id: int
    provider_id: str
    subject: str
    direction: int
    completed: bool
    owner_type_id: int
    owner_id: int
    responsible_id: int
    author_id: int
    created_at: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    deadline: datetime | None
    bindings: tuple[tuple[int, int], ...] = ()
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Activity:
        """From ``crm.activity.get``/``.list``."""
        raw_bindings = row.get("BINDINGS") or []
        bindings = tuple(
            (to_int(b.get("OWNER_TYPE_ID")), to_int(b.get("OWNER_ID")))
            for b in (raw_bindings.values() if isinstance(raw_bindings, dict) else raw_bindings)
            if isinstance(b, dict))
        return cls(
            id=to_int(row.get("ID")), type_id=to_int(row.get("TYPE_ID")),
            provider_id=str(row.get("PROVIDER_ID") or ""), subject=str(row.get("SUBJECT") or ""),
            direction=to_int(row.get("DIRECTION")), completed=to_bool(row.get("COMPLETED")),
            owner_type_id=to_int(row.get("OWNER_TYPE_ID")), owner_id=to_int(row.get("OWNER_ID")),
            responsible_id=to_int(row.get("RESPONSIBLE_ID")),
            author_id=to_int(row.get("AUTHOR_ID")), created_at=to_dt(row.get("CREATED")),
            start_time=to_dt(row.get("START_TIME")), end_time=to_dt(row.get("END_TIME")),
            deadline=to_dt(row.get("DEADLINE")), bindings=bindings, fields=dict(row),
        )


@dataclass(frozen=True)
class Task:
    """A task (REST v2 answers in camelCase strings)."""

    id: int
    title: str
    description: str
    status: int
    created_by: int
    responsible_id: int
    created_at: datetime | None
    changed_at: datetime | None
    deadline: datetime | None
    closed_at: datetime | None
    status_changed_at: datetime | None
    group_id: int
    chat_id: int | None = None
    accomplices: tuple[int, ...] = ()
    auditors: tuple[int, ...] = ()
    crm: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> Task:
        """From ``tasks.task.get``/``.list``."""
        crm = row.get("ufCrmTask") or []
        return cls(
            id=to_int(row.get("id")), title=str(row.get("title") or ""),
            description=str(row.get("description") or ""), status=to_int(row.get("status")),
            created_by=to_int(row.get("createdBy")),
            responsible_id=to_int(row.get("responsibleId")),
            created_at=to_dt(row.get("createdDate")), changed_at=to_dt(row.get("changedDate")),
            deadline=to_dt(row.get("deadline")), closed_at=to_dt(row.get("closedDate")),
            status_changed_at=to_dt(row.get("statusChangedDate")),
            group_id=to_int(row.get("groupId")), chat_id=to_opt_int(row.get("chatId")),
            accomplices=to_ints(row.get("accomplices")), auditors=to_ints(row.get("auditors")),
            crm=tuple(str(v) for v in (crm if isinstance(crm, list) else [])),
        )


@dataclass(frozen=True)
class TaskHistoryEntry:
    """One line of ``tasks.task.history.list``."""

    id: int
    created_at: datetime | None
    field: str
    from_value: str | None
    to_value: str | None
    user_id: int

    @classmethod
    def from_wire(cls, row: dict[str, Any]) -> TaskHistoryEntry:
        """From ``tasks.task.history.list`` rows."""
        value = row.get("value") or {}
        user = row.get("user") or {}
        return cls(to_int(row.get("id")), to_dt(row.get("createdDate")),
                   str(row.get("field") or ""),
                   None if value.get("from") is None else str(value.get("from")),
                   None if value.get("to") is None else str(value.get("to")),
                   to_int(user.get("id") if isinstance(user, dict) else user))


@dataclass(frozen=True)
class TaskComment:
    """A comment in a task (old card) or a chat message (new card)."""

    id: int
    task_id: int
    author_id: int
    posted_at: datetime | None
    message: str

    @classmethod
    def from_wire(cls, task_id: int, row: dict[str, Any]) -> TaskComment:
        """From ``task.commentitem.getlist`` rows."""
        return cls(to_int(row.get("ID")), task_id, to_int(row.get("AUTHOR_ID")),
                   to_dt(row.get("POST_DATE")), str(row.get("POST_MESSAGE") or ""))

    @classmethod
    def from_message(cls, task_id: int, row: dict[str, Any]) -> TaskComment:
        """From ``im.dialog.messages.get`` messages of the task chat (new task card)."""
        return cls(to_int(row.get("id")), task_id, to_int(row.get("author_id")),
                   to_dt(row.get("date")), str(row.get("text") or ""))
