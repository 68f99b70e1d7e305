"""The local mirror of portal records: record → row values, diffing upsert, deletion marks.

A write happens only when a typed column or ``raw`` differs from the stored row, so the
second delivery of one change (or a cursor sync that saw it already) writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import JSON, Numeric, select
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine

from b24app.gateway.protocol import Record
from b24app.models import MirrorActivity, MirrorCompany, MirrorContact, MirrorDeal, MirrorTask

MirrorModel = MirrorDeal | MirrorCompany | MirrorContact | MirrorActivity | MirrorTask
ChangeKind = Literal["created", "updated", "unchanged", "deleted"]

MODELS: Mapping[str, type[MirrorModel]] = {
    "deal": MirrorDeal,
    "company": MirrorCompany,
    "contact": MirrorContact,
    "activity": MirrorActivity,
    "task": MirrorTask,
}
# Columns the mirror keeps for itself rather than copying from the record.
_BOOKKEEPING = frozenset({"portal_id", "id", "deleted_at", "synced_at"})


@dataclass(frozen=True)
class MirrorChange:
    """What one refresh did to a mirror row; ``before``/``after`` hold changed columns only."""

    entity: str
    record_id: int
    kind: ChangeKind
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    record: Record | None = None

    @property
    def changed(self) -> bool:
        """Whether the row was written."""
        return self.kind != "unchanged"


def model_for(entity: str) -> type[MirrorModel]:
    """The mirror table of ``entity`` (``deal``, ``task``...)."""
    try:
        return MODELS[entity]
    except KeyError:
        raise ValueError(f"no mirror table for entity {entity!r}") from None


def has_raw(entity: str) -> bool:
    """Whether the table keeps the whole wire record in ``raw`` (tasks and activities do not)."""
    return "raw" in model_for(entity).__table__.columns


def _stored_form(value: Any, column_type: TypeEngine[Any]) -> Any:
    """``value`` as it reads back from the column, so equal data compares equal."""
    if isinstance(column_type, JSON):
        # Tuples become lists and keys strings on the way through JSON.
        return json.loads(json.dumps(value, default=str))
    scale = getattr(column_type, "scale", None)
    if isinstance(column_type, Numeric) and isinstance(value, Decimal) and scale is not None:
        return value.quantize(Decimal(1).scaleb(-scale))
    return value


def row_values(entity: str, record: Record) -> dict[str, Any]:
    """The mirror columns of ``record`` (typed values, plus ``raw`` where the table has it)."""
    values: dict[str, Any] = {}
    for column in model_for(entity).__table__.columns:
        if column.key in _BOOKKEEPING:
            continue
        value = getattr(record, "fields", {}) if column.key == "raw" else getattr(
            record, column.key)
        values[column.key] = _stored_form(value, column.type)
    return values


def load(session: Session, portal_id: int, entity: str, record_id: int, *,
         lock: bool = False) -> MirrorModel | None:
    """The stored row; ``lock`` holds it (PostgreSQL) so refreshes of one record queue up."""
    model = model_for(entity)
    statement = select(model).where(model.portal_id == portal_id, model.id == record_id)
    if lock:
        statement = statement.with_for_update()
    return cast(MirrorModel | None, session.execute(statement).scalar_one_or_none())


def apply(session: Session, portal_id: int, entity: str, record: Record,
          existing: MirrorModel | None, *, now: datetime) -> MirrorChange:
    """Make the row equal ``record``; write only what differs (nothing when all is equal)."""
    values = row_values(entity, record)
    if existing is None:
        session.add(model_for(entity)(portal_id=portal_id, id=record.id, synced_at=now,
                                      deleted_at=None, **values))
        session.flush()
        return MirrorChange(entity, record.id, "created", {}, values, record)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name, value in values.items():
        old = getattr(existing, name)
        if old != value:
            before[name], after[name] = old, value
            setattr(existing, name, value)
    if existing.deleted_at is not None:  # restored from the recycle bin
        before["deleted_at"], after["deleted_at"] = existing.deleted_at, None
        existing.deleted_at = None
    if not after:
        return MirrorChange(entity, record.id, "unchanged", record=record)
    existing.synced_at = now
    session.flush()
    return MirrorChange(entity, record.id, "updated", before, after, record)


def upsert(session: Session, portal_id: int, entity: str, record: Record, *,
           now: datetime) -> MirrorChange:
    """Load the row and :func:`apply` ``record`` to it."""
    return apply(session, portal_id, entity, record,
                 load(session, portal_id, entity, record.id), now=now)


def mark_deleted(session: Session, portal_id: int, entity: str, record_id: int, *,
                 now: datetime, existing: MirrorModel | None = None) -> MirrorChange:
    """Set ``deleted_at`` on the row; unchanged if it is deleted already or never mirrored."""
    row = existing if existing is not None else load(session, portal_id, entity, record_id)
    if row is None or row.deleted_at is not None:
        return MirrorChange(entity, record_id, "unchanged")
    row.deleted_at = now
    row.synced_at = now
    session.flush()
    return MirrorChange(entity, record_id, "deleted", {"deleted_at": None}, {"deleted_at": now})
