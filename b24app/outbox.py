"""The notification outbox: enqueue once per tag, send when due, batch several into one message.

A row's first message line is its one-line summary, and a last line that is a bare URL is
its link: when several notifications of a batchable kind fall due for one user at once,
they go out as one message made of a header and those summaries, each with its link (one
breach notice to the РОП instead of five, every task still one click away).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session, sessionmaker

from b24app.db import insert_ignoring_conflict
from b24app.gateway.errors import AuthRevoked, B24Error
from b24app.gateway.protocol import Gateway
from b24app.models import Notification

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
RETRY_AFTER = timedelta(minutes=5)
# The target is configurable ([sla] target_minutes), so a header never names it; each
# summary line says how long the request waited.
BATCH_HEADERS = {
    "sla_breach": "Нарушен срок ответа — {n}:",
    "sla_warning": "Скоро истечёт срок ответа — {n}:",
}


def _requests(n: int) -> str:
    """«1 обращение», «3 обращения», «5 обращений»."""
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} обращение"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} обращения"
    return f"{n} обращений"


def _batch_lines(message: str) -> list[str]:
    """A row's summary as a list item, and its link (a last line that is a bare URL)."""
    lines = message.strip().splitlines() or [""]
    item = [f"• {lines[0]}"]
    last = lines[-1].strip()
    if len(lines) > 1 and last.startswith(("https://", "http://")) and " " not in last:
        item.append(f"  {last}")
    return item


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


def withdraw(session: Session, *, clock_id: int, kind: str) -> int:
    """Drop a clock's unsent notifications of ``kind``; how many went.

    A warning queued outside working hours must not reach a responsible who has answered
    (or handed the task over) by the morning.
    """
    result = session.execute(delete(Notification).where(
        Notification.clock_id == clock_id, Notification.kind == kind,
        Notification.sent_at.is_(None)))
    return cast(CursorResult[Any], result).rowcount


def plan(rows: list[Notification]) -> list[Outgoing]:
    """Group due rows per portal, user and kind; batchable kinds become one message."""
    out: list[Outgoing] = []
    key = lambda r: (r.portal_id, r.user_id, r.kind)  # noqa: E731 - a sort and group key
    for (portal_id, user_id, kind), group in groupby(sorted(rows, key=key), key=key):
        items = sorted(group, key=lambda r: r.id)
        if kind in BATCH_HEADERS and len(items) > 1:
            lines = [BATCH_HEADERS[kind].format(n=_requests(len(items)))]
            lines += [line for r in items for line in _batch_lines(r.message)]
            tag = f"{kind}-batch-{items[0].id}"
            out.append(Outgoing(portal_id, user_id, tag, "\n".join(lines),
                                tuple(r.id for r in items)))
        else:
            out += [Outgoing(portal_id, user_id, r.tag, r.message, (r.id,)) for r in items]
    return out


def send_due(sessions: sessionmaker[Session], gateway_for: Callable[[int], Gateway],
             now: datetime, *, limit: int = 500,
             next_working: Callable[[datetime], datetime] | None = None) -> int:
    """Send every due notification; returns how many messages went out.

    ``next_working`` (the calendar's next working instant) keeps retries in working hours.
    """
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
                    retry = now + RETRY_AFTER
                    row.not_before = next_working(retry) if next_working else retry
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
