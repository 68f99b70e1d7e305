"""Recognise the events our own writes fire, so no business rule reacts to the service itself.

Loops are already impossible without this module: every write of the service is
diff-before-write (handlers diff against the mirror, write-back diffs the desired values
against what was last written), so the echo event of a write re-reads a record that already
holds the desired values, finds nothing to change and writes nothing: the chain ends after
one round trip. What the echo still does is *look like a change*: the mirror sees a field
move, and without this module the rules would treat it as a user's action (a changed
responsible, an "update" that resets a freshness clock, our comment counted as an answer).

So every write records, per field, a digest of the value written, with a short TTL. When an
event's mirror diff consists only of fields whose new values match a recent own write, the
event is ours: the mirror is still refreshed, but the event completes as ``ignored:own-write``
and the after-mirror hooks do not run. Any other changed field makes it a user's change.

Field names: raw wire keys for tables with ``raw`` (deals, companies, contacts: ``UF_CRM_X``,
``ASSIGNED_BY_ID``); mirror column names for tasks and activities. Names compare
case-insensitively, so a task write of ``RESPONSIBLE_ID`` matches the ``responsible_id``
column. Values compare in a canonical text form (``5`` equals ``"5"`` and ``"5.00"``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select
from sqlalchemy.orm import Session

from b24app.models import OwnWrite
from sync.mirror import MirrorChange, has_raw

DEFAULT_TTL = timedelta(minutes=15)
COMMENT = "task_comment"  # entity of comments the service posts; entity_id "<task>:<comment>"
# Stamps Bitrix24 sets as a consequence of a write: they say who and when, never what.
VOLATILE = frozenset({
    "date_modify", "modify_by_id", "modified_at", "changed_at", "changeddate", "changedby",
    "last_activity_time", "last_activity_by", "last_activity_at", "updated_time",
    "updated_by", "moved_time", "moved_by_id", "moved_at", "status_changed_at", "closed_at",
})


def _canonical(value: Any) -> Any:
    """A JSON-able form in which equal values written and read back look the same."""
    if value is None:
        return ""
    # Standard "char" flags answer "Y"/"N"; boolean user fields answer "1"/"0" (written so).
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    text = value.isoformat() if isinstance(value, datetime | date) else str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    # "5", 5 and "5.00" are one number; a non-finite "NaN" stays text.
    return format(number.normalize(), "f") if number.is_finite() else text


def _digest(name: str, value: Any) -> str:
    payload = json.dumps([name.casefold(), _canonical(value)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def record(session: Session, portal_id: int, entity: str, entity_id: str | int,
           fields: Mapping[str, Any], *, ttl: timedelta = DEFAULT_TTL,
           now: datetime) -> None:
    """Remember that the service just wrote ``fields`` to the record (call with the write)."""
    key = str(entity_id)
    session.execute(delete(OwnWrite).where(
        OwnWrite.portal_id == portal_id, OwnWrite.entity == entity, OwnWrite.entity_id == key,
        OwnWrite.expires_at <= now))
    session.add_all(OwnWrite(portal_id=portal_id, entity=entity, entity_id=key,
                             digest=_digest(name, value), created_at=now, expires_at=now + ttl)
                    for name, value in fields.items())
    session.flush()


def record_many(session: Session, portal_id: int, entity: str,
                writes: Mapping[str | int, Iterable[tuple[str, Any]]], *,
                ttl: timedelta = DEFAULT_TTL, now: datetime) -> None:
    """:func:`record` for many records in two statements (a write-back of thousands of cards)."""
    session.execute(delete(OwnWrite).where(OwnWrite.portal_id == portal_id,
                                           OwnWrite.entity == entity, OwnWrite.expires_at <= now))
    rows = [{"portal_id": portal_id, "entity": entity, "entity_id": str(record_id),
             "digest": _digest(name, value), "created_at": now, "expires_at": now + ttl}
            for record_id, pairs in writes.items() for name, value in pairs]
    if rows:
        session.execute(insert(OwnWrite), rows)


def is_own(session: Session, portal_id: int, entity: str, entity_id: str | int,
           record_fields: Mapping[str, Any], *, now: datetime) -> bool:
    """Whether every changed field (name → current value) matches a recent own write."""
    wanted = {_digest(name, value) for name, value in record_fields.items()}
    if not wanted:
        return False  # nothing changed: not an echo of anything, just a duplicate
    found = set(session.execute(select(OwnWrite.digest).where(
        OwnWrite.portal_id == portal_id, OwnWrite.entity == entity,
        OwnWrite.entity_id == str(entity_id), OwnWrite.expires_at > now,
        OwnWrite.digest.in_(wanted))).scalars())
    return wanted <= found


def consume(session: Session, portal_id: int, entity: str, entity_id: str | int,
            record_fields: Mapping[str, Any]) -> None:
    """Forget matched writes, so a user setting the same value later is not taken for us."""
    session.execute(delete(OwnWrite).where(
        OwnWrite.portal_id == portal_id, OwnWrite.entity == entity,
        OwnWrite.entity_id == str(entity_id),
        OwnWrite.digest.in_([_digest(n, v) for n, v in record_fields.items()])))


def purge_expired(session: Session, now: datetime) -> int:
    """Delete expired marks of every portal (a periodic job); returns how many went."""
    result = session.execute(delete(OwnWrite).where(OwnWrite.expires_at <= now))
    return cast(CursorResult[Any], result).rowcount


def record_comment(session: Session, portal_id: int, task_id: int, comment_id: str | int,
                   *, ttl: timedelta = DEFAULT_TTL, now: datetime) -> None:
    """Remember a comment the service posted (``comment_id``: an ID, or ``m<message ID>``)."""
    record(session, portal_id, COMMENT, f"{task_id}:{comment_id}", {"ID": str(comment_id)},
           ttl=ttl, now=now)


def is_own_comment(session: Session, portal_id: int, event_entity_id: str, *,
                   now: datetime) -> bool:
    """Whether a comment event (entity ``<task>:<comment>``) is about our own comment."""
    _task, _sep, comment = event_entity_id.partition(":")
    return bool(comment) and is_own(session, portal_id, COMMENT, event_entity_id,
                                    {"ID": comment}, now=now)


def changed_fields(change: MirrorChange) -> dict[str, Any]:
    """The fields an update changed, by own-write naming, bookkeeping stamps left out."""
    if has_raw(change.entity) and "raw" in change.after:
        old: Mapping[str, Any] = change.before.get("raw") or {}
        new: Mapping[str, Any] = change.after.get("raw") or {}
        fields = {k: new.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    else:
        # Typed columns derive from raw, so with raw present they add nothing new.
        fields = {k: v for k, v in change.after.items() if k not in {"raw", "deleted_at"}}
    return {k: v for k, v in fields.items() if k.casefold() not in VOLATILE}


def is_own_change(session: Session, portal_id: int, change: MirrorChange, *,
                  now: datetime) -> bool:
    """Whether an update of the mirror is only the echo of our own write (then consumed)."""
    if change.kind != "updated" or "deleted_at" in change.after:
        return False
    fields = changed_fields(change)
    if not is_own(session, portal_id, change.entity, change.record_id, fields, now=now):
        return False
    consume(session, portal_id, change.entity, change.record_id, fields)
    return True
