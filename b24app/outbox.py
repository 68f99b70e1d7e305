"""The notification outbox: enqueue once per tag, send when due, batch several into one message.

A row's first message line is its one-line summary: when several notifications of a
batchable kind fall due for one user at once, they go out as one message made of a header
and those lines (one breach notice to the РОП instead of five).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from b24app.db import insert_ignoring_conflict
from b24app.gateway.errors import AuthRevoked, B24Error
from b24app.gateway.protocol import Gateway
from b24app.models import Notification

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
RETRY_AFTER = timedelta(minutes=5)
BATCH_HEADERS = {
    "sla_breach": "Нарушен срок ответа (2 рабочих часа) — {n}:",
    "sla_warning": "Скоро истечёт срок ответа — {n}:",
}


@dataclass(frozen=True)
class Outgoing:
    """A message to send: recipient, text, tag, and the outbox rows it covers."""

    portal_id: int
    user_id: int
    tag: str
    message: str
    row_ids: tuple[int, ...]


def enqueue(session: Session, *, portal_id: int, user_id: int, kind: str, tag: str,
            message: str, not_before: datetime, now: datetime, clock_id: int | None = None,
            task_id: int | None = None) -> bool:
    """Queue a notification; ``False`` when this user already has one with this tag."""
    statement = insert_ignoring_conflict(session, Notification, {
        "portal_id": portal_id, "user_id": user_id, "kind": kind, "tag": tag,
        "message": message, "not_before": not_before, "created_at": now,
        "clock_id": clock_id, "task_id": task_id, "attempts": 0,
    }, ["portal_id", "user_id", "tag"]).returning(Notification.id)
    return session.execute(statement).scalar_one_or_none() is not None


def plan(rows: list[Notification]) -> list[Outgoing]:
    """Group due rows per portal, user and kind; batchable kinds become one message."""
    out: list[Outgoing] = []
    key = lambda r: (r.portal_id, r.user_id, r.kind)  # noqa: E731 - a sort and group key
    for (portal_id, user_id, kind), group in groupby(sorted(rows, key=key), key=key):
        items = sorted(group, key=lambda r: r.id)
        if kind in BATCH_HEADERS and len(items) > 1:
            lines = [BATCH_HEADERS[kind].format(n=len(items))]
            lines += [f"• {r.message.splitlines()[0]}" for r in items]
            tag = f"{kind}-batch-{items[0].id}"
            out.append(Outgoing(portal_id, user_id, tag, "\n".join(lines),
                                tuple(r.id for r in items)))
        else:
            out += [Outgoing(portal_id, user_id, r.tag, r.message, (r.id,)) for r in items]
    return out


def send_due(sessions: sessionmaker[Session], gateway_for: Callable[[int], Gateway],
             now: datetime, *, limit: int = 500) -> int:
    """Send every due notification; returns how many messages went out."""
    with sessions() as session:
        rows = list(session.scalars(
            select(Notification).where(Notification.sent_at.is_(None),
                                       Notification.not_before <= now,
                                       Notification.attempts < MAX_ATTEMPTS)
            .order_by(Notification.id).limit(limit)))
        session.expunge_all()
    sent = 0
    for item in plan(rows):
        error = _send(gateway_for, item)
        with sessions.begin() as session:
            for row in session.scalars(select(Notification).where(
                    Notification.id.in_(item.row_ids))):
                if error is None:
                    row.sent_at, row.sent_as = now, item.tag
                else:
                    row.attempts += 1
                    row.last_error = error[:500]
                    row.not_before = now + RETRY_AFTER
        sent += error is None
    return sent


def _send(gateway_for: Callable[[int], Gateway], item: Outgoing) -> str | None:
    try:
        gateway_for(item.portal_id).notify(item.user_id, item.message, item.tag)
    except AuthRevoked:
        raise  # The worker marks the portal; the rows stay queued for after a re-install.
    except B24Error as exc:
        log.warning("notification %s to user %s failed: %s", item.tag, item.user_id, exc.code)
        return f"{exc.code}: {exc.description}"
    return None
