"""Catch up on Bitrix24's offline event queue: reserve, store in the inbox, clear.

Bitrix24 never retries an online delivery, so every change also lands in the offline queue
(the latest record per object, platform doc 3.7). A batch is *reserved* with
``event.offline.get(clear=0)`` under a ``process_id``, stored in the inbox, and only then
cleared. The order of the steps makes every crash window safe:

1. after the reserve, before the ``process_id`` is saved: the records stay hidden under a
   process we forgot. The next run adopts such orphans: the gateway lists the process IDs
   holding reserved records (``event.offline.list``).
2. after the save, before the inbox rows commit: the next run re-reads the saved batch.
3. after the inbox rows commit, before the clear: the re-read stores nothing new: a row
   still waiting absorbs its copy (same dedup key: event, entity, ts), a finished one is
   skipped (see :func:`_read_after`) or, at worst, re-opened and re-read to no effect.
4. after the clear, before the saved row is deleted: the re-read finds the batch empty and
   the row is deleted then.

Records that cannot be routed go to ``event.offline.error`` (and the log), never into a loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from b24app.context import AppContext
from b24app.db import insert_ignoring_conflict, session_scope
from b24app.events.parse import IncomingEvent, MalformedEvent, entity_id
from b24app.gateway.protocol import Gateway, OfflineBatch, OfflineEvent
from b24app.inbox.store import store_event
from b24app.models import InboxEvent, InboxSource, InboxStatus
from b24app.models import OfflineBatch as SavedBatch

log = logging.getLogger(__name__)

MIN_LIMIT, MAX_LIMIT = 50, 1000  # what event.offline.get accepts (platform doc 3.7)
DEFAULT_LIMIT = MAX_LIMIT  # fewer round trips; 1000 IDs-only records are a few hundred KB
DEFAULT_MAX_BATCHES = 20  # per run: the next scheduled run continues where this one stopped
# A row finished this long after its change's second surely re-read it after that second
# (the ts has one-second resolution; the rest is room for the handler's own run time).
READ_MARGIN = timedelta(seconds=2)


@dataclass
class CatchUpReport:
    """What one catch-up run did for one portal."""

    portal_id: int
    batches: int = 0  # batches handled (reserved or re-read) and cleared
    records: int = 0  # offline records read
    stored: int = 0  # inbox rows added (or finished ones re-opened)
    duplicates: int = 0  # records whose change the inbox holds or has already read
    failed: list[str] = field(default_factory=list)  # MESSAGE_IDs sent to event.offline.error
    resumed: int = 0  # saved batches of an earlier run re-read
    adopted: int = 0  # orphaned reservations found through event.offline.list
    capped: bool = False  # stopped at max_batches; the queue may hold more


def _as_form(value: Any) -> Any:
    """EVENT_DATA with every scalar as text, as in an online event's form (JSON has ints)."""
    if isinstance(value, Mapping):
        return {str(k): _as_form(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_form(v) for v in value]
    return "" if value is None else str(value)


def to_incoming(record: OfflineEvent) -> IncomingEvent:
    """The inbox form of one offline record; :class:`MalformedEvent` if it cannot be routed."""
    name = record.event
    if not (3 <= len(name) <= 64 and name.isascii() and name.isalpha()):
        raise MalformedEvent(f"EVENT_NAME {name[:64]!r} is not an event name")
    if record.timestamp is None:
        raise MalformedEvent("TIMESTAMP_X missing")
    data = _as_form(record.data)
    # The same ts an online delivery of this change carries (unix seconds of the change),
    # so the two collapse on the inbox's dedup key when they describe one change.
    return IncomingEvent(name=name, member_id="", application_token="",
                         ts=int(record.timestamp.timestamp()), entity_id=entity_id(name, data),
                         data=data, auth={}, by_user=False)  # no user token came with it


def _read_after(session: Session, portal_id: int, events: list[IncomingEvent]) -> set[str]:
    """Keys whose row finished ``READ_MARGIN`` after the change's second: read already."""
    # The queue repeats every change an online delivery brought, and the inbox re-opens a
    # finished key (a second edit in the same second must not be lost), so without this
    # filter every change would be read twice. If our clock runs ahead of the portal's, a
    # same-second edit may be skipped here: the cursor sync then sees the mirror differ.
    keys = [e.dedup_key for e in events]
    if not keys:
        return set()
    found = session.execute(select(InboxEvent.dedup_key, InboxEvent.ts,
                                   InboxEvent.processed_at).where(
        InboxEvent.portal_id == portal_id, InboxEvent.dedup_key.in_(keys),
        InboxEvent.status.in_([InboxStatus.DONE.value, InboxStatus.IGNORED.value]))).all()
    return {row.dedup_key for row in found if row.processed_at is not None
            and row.processed_at >= datetime.fromtimestamp(row.ts, UTC) + READ_MARGIN}


@dataclass
class _Run:
    """One catch-up run of one portal."""

    ctx: AppContext
    gateway: Gateway
    portal_id: int
    now: datetime
    report: CatchUpReport


def catch_up(ctx: AppContext, portal_id: int, now: datetime, *, limit: int = DEFAULT_LIMIT,
             max_batches: int = DEFAULT_MAX_BATCHES) -> CatchUpReport:
    """Move the portal's offline queue into the inbox, batch by batch, until it is empty."""
    limit = max(MIN_LIMIT, min(limit, MAX_LIMIT))
    run = _Run(ctx, ctx.gateways.for_portal(portal_id), portal_id, now,
               CatchUpReport(portal_id))
    _adopt_orphans(run)
    while run.report.batches < max_batches:
        batch = _next_batch(run, limit)
        if batch is None:
            return run.report
        _handle(run, batch)
        run.report.batches += 1
    run.report.capped = True
    log.info("offline catch-up of portal %s capped at %s batches", portal_id, max_batches)
    return run.report


def saved_batches(ctx: AppContext, portal_id: int) -> list[str]:
    """Process IDs of the portal's reserved batches not yet cleared, oldest first."""
    with ctx.sessions() as session:
        return list(session.scalars(select(SavedBatch.process_id)
                                    .where(SavedBatch.portal_id == portal_id)
                                    .order_by(SavedBatch.reserved_at, SavedBatch.process_id)))


def _remember(run: _Run, process_id: str, events: int) -> None:
    """Save a reservation (committed): from here on a crash re-reads it instead of losing it."""
    with session_scope(run.ctx.sessions) as session:
        # Ignoring a conflict: another run (the CLI next to the scheduler) may save it too.
        session.execute(insert_ignoring_conflict(
            session, SavedBatch, {"portal_id": run.portal_id, "process_id": process_id,
                                  "reserved_at": run.now, "events": events},
            ["portal_id", "process_id"]))


def _forget(run: _Run, process_id: str) -> None:
    with session_scope(run.ctx.sessions) as session:
        session.execute(delete(SavedBatch).where(SavedBatch.portal_id == run.portal_id,
                                                 SavedBatch.process_id == process_id))


def _adopt_orphans(run: _Run) -> None:
    """Save reservations a run made but died before saving (crash window 1)."""
    known = set(saved_batches(run.ctx, run.portal_id))
    for process_id in run.gateway.offline_reserved():
        if process_id and process_id not in known:
            log.warning("offline batch %s of portal %s was reserved but never saved; "
                        "adopting it", process_id, run.portal_id)
            _remember(run, process_id, 0)
            run.report.adopted += 1


def _next_batch(run: _Run, limit: int) -> OfflineBatch | None:
    """A saved batch re-read, else a newly reserved (and saved) one; ``None`` when empty."""
    for process_id in saved_batches(run.ctx, run.portal_id):
        # The limit applies to a re-read too: ask for the most, a batch is at most that.
        batch = run.gateway.offline_events(process_id=process_id, limit=MAX_LIMIT)
        run.report.resumed += 1
        if batch.events:
            return OfflineBatch(process_id, batch.events)
        _forget(run, process_id)  # cleared before the row went (window 4)
    batch = run.gateway.offline_events(limit=limit)
    if not batch.events:
        return None
    if not batch.process_id:
        raise RuntimeError("event.offline.get(clear=0) reserved records without a process_id")
    _remember(run, batch.process_id, len(batch.events))
    return batch


def _handle(run: _Run, batch: OfflineBatch) -> None:
    """Store the batch in the inbox (one commit), then clear it on the portal, then forget it."""
    report = run.report
    routed: list[tuple[OfflineEvent, IncomingEvent]] = []
    malformed: list[str] = []
    for record in batch.events:
        try:
            routed.append((record, to_incoming(record)))
        except MalformedEvent as exc:
            log.warning("offline record %s (%s) of portal %s is malformed: %s", record.id,
                        record.event[:64], run.portal_id, exc)
            malformed.append(record.message_id)
    with session_scope(run.ctx.sessions) as session:
        seen = _read_after(session, run.portal_id, [e for _, e in routed])
        for _record, event in routed:
            if event.dedup_key in seen:
                report.duplicates += 1
            elif store_event(session, run.portal_id, event, now=run.now,
                             source=InboxSource.OFFLINE):
                report.stored += 1
            else:
                report.duplicates += 1
    report.records += len(batch.events)
    # The inbox holds the batch now: the portal may forget it.
    failed = [m for m in malformed if m]
    if failed:
        run.gateway.fail_offline(batch.process_id, failed)
        report.failed += failed
    if malformed:
        # Clear exactly what was stored: whether error-marked records still belong to the
        # process is not documented.
        run.gateway.clear_offline(batch.process_id, [r.message_id for r, _ in routed])
    else:
        run.gateway.clear_offline(batch.process_id)
    _forget(run, batch.process_id)
