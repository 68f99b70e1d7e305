"""Persist verified events in ``inbox_events``; a redelivery collapses onto the first row.

Bitrix24's ``ts`` has one-second resolution, so two edits of one object within a second
share a dedup key. A key that arrives again after its row was finished therefore re-opens
the row instead of being dropped: handlers re-read the object, so a true duplicate costs one
read, while a second edit in the same second is not lost.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from b24app.events.parse import IncomingEvent
from b24app.models import InboxEvent, InboxSource, InboxStatus

_FINISHED = (InboxStatus.DONE.value, InboxStatus.IGNORED.value)


@cache
def _upsert(dialect: str) -> Insert:
    """The upsert statement of a dialect, built once (values are bound per execution)."""
    module: Any = {"postgresql": postgresql, "sqlite": sqlite}.get(dialect)
    if module is None:
        raise NotImplementedError(f"inbox upsert on {dialect} is not supported")
    statement = module.insert(InboxEvent)
    excluded = statement.excluded
    reopen = {"status": InboxStatus.PENDING.value, "next_attempt_at": excluded.next_attempt_at,
              "attempts": 0, "last_error": None, "outcome": None, "locked_by": None,
              "locked_until": None, "processed_at": None, "data": excluded.data,
              "by_user": excluded.by_user}
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=["portal_id", "dedup_key"], set_=reopen,
        where=InboxEvent.status.in_(_FINISHED)).returning(InboxEvent.id)
    return upsert


def store_event(session: Session, portal_id: int, event: IncomingEvent, *, now: datetime,
                source: InboxSource = InboxSource.ONLINE) -> bool:
    """Store ``event`` as pending; ``False`` when the same key is already waiting or running."""
    values: dict[str, Any] = {
        "portal_id": portal_id, "event": event.name, "entity_id": event.entity_id,
        "ts": event.ts, "dedup_key": event.dedup_key, "source": source.value,
        "data": event.data, "by_user": event.by_user, "status": InboxStatus.PENDING.value,
        "attempts": 0, "next_attempt_at": now, "received_at": now,
    }
    statement = _upsert(session.get_bind().dialect.name)
    # RETURNING yields no row when the conflict left the row alone (pending/processing/dead).
    return session.execute(statement, values).scalar_one_or_none() is not None
