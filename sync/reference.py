"""Users, departments and workgroups: a full refresh into the mirror that writes only what changed.

The tables are small (tens to a few thousand rows) and a local app gets no reliable events for
them, so each run lists them whole (``user.get``, ``department.get``, ``sonet_group.get``: 50
rows a page, batched) and diffs the listing against the mirror; a second run writes nothing.
A record the portal no longer lists gets ``deleted_at``, one that comes back loses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.gateway.protocol import Gateway
from b24app.gateway.types import Department, Group, User
from b24app.models import MirrorDepartment, MirrorGroup, MirrorUser

log = logging.getLogger(__name__)

ReferenceModel = type[MirrorUser] | type[MirrorDepartment] | type[MirrorGroup]
Values = dict[str, Any]


def user_values(user: User) -> Values:
    """The ``mirror_users`` columns of a user."""
    return {"name": user.name, "last_name": user.last_name, "active": user.active,
            "departments": list(user.departments), "email": user.email,
            "position": user.position}


def department_values(department: Department) -> Values:
    """The ``mirror_departments`` columns of a department."""
    return {"name": department.name, "parent_id": department.parent_id,
            "head_id": department.head_id}


def group_values(group: Group) -> Values:
    """The ``mirror_groups`` columns of a workgroup."""
    return {"name": group.name, "active": group.active}


@dataclass(frozen=True)
class Stored:
    """A mirror row as the diff sees it."""

    values: Values
    deleted: bool


@dataclass
class Plan:
    """What one refresh of one table will write (the pure diff)."""

    create: dict[int, Values] = field(default_factory=dict)
    update: dict[int, Values] = field(default_factory=dict)  # changed columns only
    restore: set[int] = field(default_factory=set)  # listed again after a deletion
    delete: set[int] = field(default_factory=set)
    unchanged: int = 0

    @property
    def writes(self) -> int:
        """Rows this plan writes."""
        return len(self.create) + len(self.update.keys() | self.restore) + len(self.delete)


def plan(stored: Mapping[int, Stored], listed: Mapping[int, Values]) -> Plan:
    """Create the unknown, update what differs, restore the returned, delete the unlisted."""
    out = Plan()
    for rid, values in listed.items():
        row = stored.get(rid)
        if row is None:
            out.create[rid] = values
            continue
        changed = {k: v for k, v in values.items() if row.values.get(k) != v}
        if changed:
            out.update[rid] = changed
        if row.deleted:
            out.restore.add(rid)
        if not changed and not row.deleted:
            out.unchanged += 1
    out.delete = {rid for rid, row in stored.items() if rid not in listed and not row.deleted}
    return out


@dataclass(frozen=True)
class TableReport:
    """What one table's refresh did."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped_deletes: bool = False  # an empty listing deleted nothing


def _stored(session: Session, portal_id: int, model: ReferenceModel,
            columns: Sequence[str]) -> dict[int, Stored]:
    table = model.__table__
    rows = session.execute(select(table.c.id, table.c.deleted_at, *(table.c[c] for c in columns))
                           .where(table.c.portal_id == portal_id))
    return {row.id: Stored({c: row._mapping[c] for c in columns}, row.deleted_at is not None)
            for row in rows}


def refresh_table(session: Session, portal_id: int, model: ReferenceModel,
                  listed: Mapping[int, Values], *, now: datetime) -> TableReport:
    """Apply the diff of ``listed`` against the table's rows of the portal."""
    columns = list(next(iter(listed.values()))) if listed else []
    stored = _stored(session, portal_id, model, columns)
    todo = plan(stored, listed)
    skipped = False
    if not listed and todo.delete:
        # An empty listing is far likelier a missing scope or a glitch than a portal without
        # employees or departments: keep the rows rather than delete them all.
        log.warning("%s of portal %s: the portal listed nothing; %d rows kept",
                    model.__tablename__, portal_id, len(todo.delete))
        todo.delete, skipped = set(), True
    for rid, values in todo.create.items():
        session.add(model(portal_id=portal_id, id=rid, deleted_at=None, synced_at=now, **values))
    if todo.update or todo.restore or todo.delete:
        ids = todo.update.keys() | todo.restore | todo.delete
        rows: Iterable[MirrorUser | MirrorDepartment | MirrorGroup] = session.scalars(
            select(model).where(model.portal_id == portal_id, model.id.in_(ids)))
        for row in rows:
            for key, value in todo.update.get(row.id, {}).items():
                setattr(row, key, value)
            row.deleted_at = now if row.id in todo.delete else None
            row.synced_at = now
    session.flush()
    return TableReport(len(todo.create), len(todo.update.keys() | todo.restore),
                       len(todo.delete), todo.unchanged, skipped)


@dataclass(frozen=True)
class ReferenceReport:
    """What a refresh of users, departments and groups did."""

    users: TableReport
    departments: TableReport
    groups: TableReport

    @property
    def writes(self) -> int:
        """Rows written in all three tables."""
        return sum(t.created + t.updated + t.deleted
                   for t in (self.users, self.departments, self.groups))


def _by_id(items: Sequence[Any], values: Callable[[Any], Values]) -> dict[int, Values]:
    return {item.id: values(item) for item in items}


def refresh_reference(session: Session, portal_id: int, gateway: Gateway, *,
                      now: datetime) -> ReferenceReport:
    """Read users, departments and workgroups and mirror them (the caller commits)."""
    # All three are read before anything is written: a failing read leaves the mirror as is.
    users = _by_id(gateway.users(), user_values)
    departments = _by_id(gateway.departments(), department_values)
    groups = _by_id(gateway.groups(), group_values)
    return ReferenceReport(
        refresh_table(session, portal_id, MirrorUser, users, now=now),
        refresh_table(session, portal_id, MirrorDepartment, departments, now=now),
        refresh_table(session, portal_id, MirrorGroup, groups, now=now))
