"""Claim, finish and inspect inbox rows: the durable queue the worker drains.

Delivery is *at least once*: a row is leased (``locked_by``/``locked_until``) and a worker
that dies holding it loses the lease when it expires, so another worker claims the row again.
A worker finishes a row in the same transaction as the handler's database effects and only
while it still holds the lease (``locked_by`` and ``attempts`` are the fencing token), so a
row is marked done at most once and never by a worker that lost it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import EventsSettings
from b24app.models import InboxEvent, InboxStatus, Portal, PortalStatus

ERROR_LIMIT = 1000
OUTCOME_LIMIT = 64  # the width of inbox_events.outcome


@dataclass(frozen=True)
class ClaimedEvent:
    """An inbox row leased to one worker: plain data, safe to use after its session closed."""

    id: int
    portal_id: int
    event: str
    entity_id: str
    data: dict[str, Any]
    by_user: bool
    attempts: int
    source: str
    ts: int
    worker_id: str  # with ``attempts``, the fencing token finishing the row requires


@dataclass(frozen=True)
class Backoff:
    """Retry policy: exponential delay with jitter, then the dead-letter state."""

    base_seconds: float = 5.0
    max_seconds: float = 3600.0
    max_attempts: int = 8
    jitter: float = 0.1  # up to +10 %, so rows failed together do not retry together
    rng: Callable[[], float] = field(default=random.random, compare=False)

    @classmethod
    def from_settings(cls, events: EventsSettings,
                      rng: Callable[[], float] = random.random) -> Backoff:
        """The policy of ``[events]``."""
        return cls(events.backoff_base_seconds, events.backoff_max_seconds,
                   events.max_attempts, rng=rng)

    def delay(self, attempts: int) -> timedelta:
        """Wait before the next attempt after ``attempts`` failed ones (1 → base)."""
        exponent = min(max(attempts - 1, 0), 62)  # 2**62 seconds already exceeds any cap
        seconds = min(self.base_seconds * 2**exponent, self.max_seconds)
        return timedelta(seconds=seconds * (1 + self.jitter * self.rng()))


def _due(now: datetime) -> Any:
    """Rows a worker may take: pending and due, or leased by a worker whose lease ran out."""
    return or_(
        and_(InboxEvent.status == InboxStatus.PENDING.value, InboxEvent.next_attempt_at <= now),
        and_(InboxEvent.status == InboxStatus.PROCESSING.value, InboxEvent.locked_until < now),
    )


def _active_portals() -> Any:
    # A portal waiting for re-install keeps its events pending instead of burning attempts.
    return select(Portal.id).where(Portal.status == PortalStatus.ACTIVE.value)


def _locked(statement: Select[int], dialect: str) -> Select[int]:
    # PostgreSQL: rows another worker is claiming right now are skipped, never waited for,
    # so concurrent claims neither block nor deadlock each other.
    return (statement.with_for_update(skip_locked=True, of=InboxEvent) if dialect == "postgresql"
            else statement)


def _bury_exhausted(session: Session, dialect: str, now: datetime, max_attempts: int) -> None:
    """Dead-letter expired leases that used every attempt (a row that kills its worker)."""
    exhausted = _locked(select(InboxEvent.id).where(
        InboxEvent.status == InboxStatus.PROCESSING.value, InboxEvent.locked_until < now,
        InboxEvent.attempts >= max_attempts), dialect).cte("exhausted")
    session.execute(
        update(InboxEvent)
        .where(InboxEvent.id.in_(select(exhausted.c.id)))
        .values(status=InboxStatus.DEAD.value, locked_by=None, locked_until=None,
                processed_at=now, last_error="lease expired on the last attempt")
        .execution_options(synchronize_session=False))


def claim(sessions: sessionmaker[Session], worker_id: str, now: datetime, limit: int,
          lease: timedelta, *, max_attempts: int | None = None) -> list[ClaimedEvent]:
    """Lease up to ``limit`` due rows, oldest first, to ``worker_id`` until ``now + lease``."""
    with sessions() as session, session.begin():
        dialect = session.get_bind().dialect.name
        if dialect == "sqlite":
            # SQLite has one writer: take the write lock before reading, so the select and
            # the update below are one atomic step for every process on this file.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        if max_attempts is not None:
            _bury_exhausted(session, dialect, now, max_attempts)
        # A CTE, so the locking select runs exactly once, before the update.
        picked = _locked(select(InboxEvent.id)
                         .where(_due(now), InboxEvent.portal_id.in_(_active_portals()))
                         .order_by(InboxEvent.id).limit(limit), dialect).cte("picked")
        rows = session.execute(
            update(InboxEvent)
            .where(InboxEvent.id.in_(select(picked.c.id)))
            .values(status=InboxStatus.PROCESSING.value, locked_by=worker_id,
                    locked_until=now + lease, attempts=InboxEvent.attempts + 1)
            .returning(InboxEvent.id, InboxEvent.portal_id, InboxEvent.event,
                       InboxEvent.entity_id, InboxEvent.data, InboxEvent.by_user,
                       InboxEvent.attempts, InboxEvent.source, InboxEvent.ts)
            .execution_options(synchronize_session=False)).all()
    claimed = [ClaimedEvent(row.id, row.portal_id, row.event, row.entity_id, dict(row.data),
                            row.by_user, row.attempts, row.source, row.ts, worker_id)
               for row in rows]
    return sorted(claimed, key=lambda c: c.id)  # RETURNING has no defined order


def _finish(session: Session, claimed: ClaimedEvent, **values: Any) -> bool:
    """Update the row only while ``claimed``'s lease is still the current one."""
    result = session.execute(
        update(InboxEvent)
        .where(InboxEvent.id == claimed.id,
               InboxEvent.status == InboxStatus.PROCESSING.value,
               InboxEvent.locked_by == claimed.worker_id,
               InboxEvent.attempts == claimed.attempts)
        .values(locked_by=None, locked_until=None, **values)
        .execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount == 1


def complete(session: Session, claimed: ClaimedEvent, outcome: str, now: datetime) -> bool:
    """Mark done with ``outcome``; ``False`` (and nothing written) if the lease was lost."""
    return _finish(session, claimed, status=InboxStatus.DONE.value, processed_at=now,
                   outcome=outcome[:OUTCOME_LIMIT])


def ignore(session: Session, claimed: ClaimedEvent, outcome: str, now: datetime) -> bool:
    """Mark ignored (no handler, our own write...); ``False`` if the lease was lost."""
    return _finish(session, claimed, status=InboxStatus.IGNORED.value, processed_at=now,
                   outcome=outcome[:OUTCOME_LIMIT])


def release(session: Session, claimed: ClaimedEvent, now: datetime) -> bool:
    """Hand the row back untouched: pending now, and this attempt does not count."""
    return _finish(session, claimed, status=InboxStatus.PENDING.value, next_attempt_at=now,
                   attempts=claimed.attempts - 1)


def fail(session: Session, claimed: ClaimedEvent, error: str, now: datetime,
         backoff: Backoff, *, not_before: datetime | None = None) -> InboxStatus | None:
    """Record a failure: pending again after the backoff, or dead after the last attempt.

    Returns the new status, or ``None`` when the lease was lost (nothing written).
    """
    message = clean_error(error)
    if claimed.attempts >= backoff.max_attempts:
        done = _finish(session, claimed, status=InboxStatus.DEAD.value, processed_at=now,
                       last_error=message)
        return InboxStatus.DEAD if done else None
    retry_at = now + backoff.delay(claimed.attempts)
    if not_before is not None:
        retry_at = max(retry_at, not_before)
    done = _finish(session, claimed, status=InboxStatus.PENDING.value,
                   next_attempt_at=retry_at, last_error=message)
    return InboxStatus.PENDING if done else None


def retry_dead(session: Session, now: datetime, *, ids: Sequence[int] | None = None,
               portal_id: int | None = None) -> int:
    """Admin action: dead rows (all, or ``ids``) become pending with fresh attempts."""
    statement = update(InboxEvent).where(InboxEvent.status == InboxStatus.DEAD.value)
    if ids is not None:
        statement = statement.where(InboxEvent.id.in_(list(ids)))
    if portal_id is not None:
        statement = statement.where(InboxEvent.portal_id == portal_id)
    result = session.execute(
        statement.values(status=InboxStatus.PENDING.value, attempts=0, next_attempt_at=now,
                         processed_at=None)  # last_error stays: it tells why it died
        .execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount


def stats(session: Session, portal_id: int | None = None) -> dict[str, int]:
    """Row count per status (every status present, zero included)."""
    statement = select(InboxEvent.status, func.count()).group_by(InboxEvent.status)
    if portal_id is not None:
        statement = statement.where(InboxEvent.portal_id == portal_id)
    counts = {status.value: 0 for status in InboxStatus}
    for status, count in session.execute(statement).all():
        counts[status] = count
    return counts


def lag(session: Session, now: datetime, portal_id: int | None = None) -> timedelta | None:
    """Age of the oldest unfinished row (pending or processing); ``None`` when drained."""
    statement = select(func.min(InboxEvent.received_at)).where(InboxEvent.status.in_(
        [InboxStatus.PENDING.value, InboxStatus.PROCESSING.value]))
    if portal_id is not None:
        statement = statement.where(InboxEvent.portal_id == portal_id)
    oldest = session.execute(statement).scalar_one_or_none()
    if oldest is None:
        return None
    return max(now - oldest, timedelta(0))


# Secrets that can end up in an exception text: query/form parameters, JSON members,
# bearer headers, the secret path segment of a webhook URL, a password in a DSN.
_SECRET_PATTERNS = (
    (re.compile(r"((?:access_token|refresh_token|application_token|client_secret|password|"
                r"auth|auth\[[a-z_]*\])=)[^&\s\"']+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(\"(?:access_token|refresh_token|application_token|client_secret|"
                r"password)\"\s*:\s*\")[^\"]*", re.IGNORECASE), r"\1***"),
    (re.compile(r"(Bearer\s+)\S+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(/rest/\d+/)[^/\s]+"), r"\1***"),
    (re.compile(r"(://[^:/@\s]+:)[^@/\s]+@"), r"\1***@"),
)


def clean_error(error: str, limit: int = ERROR_LIMIT) -> str:
    """``error`` with secrets masked, cut to ``limit`` characters."""
    for pattern, replacement in _SECRET_PATTERNS:
        error = pattern.sub(replacement, error)
    return error if len(error) <= limit else error[:limit - 1] + "…"
