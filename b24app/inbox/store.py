"""Persist verified events in ``inbox_events``; a redelivery collapses onto the first row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from b24app.db import insert_ignoring_conflict
from b24app.events.parse import IncomingEvent
from b24app.models import InboxEvent, InboxSource, InboxStatus


def store_event(session: Session, portal_id: int, event: IncomingEvent, *, now: datetime,
                source: InboxSource = InboxSource.ONLINE) -> bool:
    """Insert ``event`` as a pending inbox row; ``False`` when the same delivery is stored."""
    values: dict[str, Any] = {
        "portal_id": portal_id, "event": event.name, "entity_id": event.entity_id,
        "ts": event.ts, "dedup_key": event.dedup_key, "source": source.value,
        "data": event.data, "by_user": event.by_user, "status": InboxStatus.PENDING.value,
        "attempts": 0, "next_attempt_at": now, "received_at": now,
    }
    statement = insert_ignoring_conflict(session, InboxEvent, values,
                                         ["portal_id", "dedup_key"]).returning(InboxEvent.id)
    # RETURNING yields no row for a skipped conflict (rowcount is not reliable across drivers).
    return session.execute(statement).scalar_one_or_none() is not None
