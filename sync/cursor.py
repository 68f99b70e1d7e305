"""The cursor sync: find records changed since the last run and queue them in the inbox.

The second net under lost deliveries (next to the offline queue): list the records of an
entity modified since the cursor (``DATE_MODIFY``, ``LAST_UPDATED``, ``CHANGED_DATE``) and
queue an inbox row for each one the mirror does not match, so the handlers apply it like
any event (one code path: nothing here writes the mirror). A fresh portal first gets a full
sync by ID, page by page, resumable from ``last_id`` after a crash.

Deletions are invisible to a cursor (a deleted record is simply not listed); the offline
queue's ``*DELETE`` records cover them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.context import AppContext
from b24app.db import insert_ignoring_conflict, session_scope
from b24app.events.parse import IncomingEvent
from b24app.gateway.errors import AuthRevoked, B24Error
from b24app.gateway.protocol import Record
from b24app.gateway.types import Activity, Task
from b24app.gateway.wire import to_dt
from b24app.inbox.store import store_event
from b24app.models import InboxEvent, InboxSource, InboxStatus, SyncCursor
from sync import mirror

log = logging.getLogger(__name__)

# Covers clock skew between the portal and us, and writes landing in the second the last
# run read: the overlap is read again, and the mirror diff makes it cost no inbox rows.
OVERLAP = timedelta(minutes=2)
ENTITIES = ("deal", "company", "contact", "activity", "task")
# The event a cursor row poses as: the add/update handler re-reads the record either way.
EVENTS = {"deal": "ONCRMDEALUPDATE", "company": "ONCRMCOMPANYUPDATE",
          "contact": "ONCRMCONTACTUPDATE", "activity": "ONCRMACTIVITYUPDATE",
          "task": "ONTASKUPDATE"}
# Pending rows of these events re-read the record later anyway (a DELETE row does not read).
_REREADING = {entity: (event.replace("UPDATE", "ADD"), event) for entity, event in EVENTS.items()}

Phase = Literal["full", "incremental"]


@dataclass
class CursorReport:
    """What one sync of one entity did."""

    entity: str
    phase: Phase = "incremental"
    pages: int = 0
    read: int = 0  # records listed
    queued: int = 0  # inbox rows added (or finished ones re-opened)
    duplicates: int = 0  # the row of that change (same dedup key) is waiting or running
    covered: int = 0  # a pending row of the record will re-read it anyway
    full_done: bool = False
    modified_since: datetime | None = None  # the cursor after the run
    error: str = ""


@dataclass(frozen=True)
class _Cursor:
    """A plain copy of a ``SyncCursor`` row."""

    modified_since: datetime | None
    last_id: int
    full_done: bool


def changed_at(record: Record) -> datetime | None:
    """When the record last changed, by the field its list filters on (``Kind.modified``)."""
    if isinstance(record, Task):
        return record.changed_at or record.created_at
    if isinstance(record, Activity):
        return to_dt(record.fields.get("LAST_UPDATED")) or record.created_at
    return record.modified_at or record.created_at


def differs(entity: str, record: Record, row: mirror.MirrorModel | None) -> bool:
    """Whether the mirror row is missing, deleted, or holds other values than ``record``."""
    if row is None or row.deleted_at is not None:
        return True
    values = mirror.row_values(entity, record)
    raw = values.pop("raw", None)
    if any(getattr(row, name) != value for name, value in values.items()):
        return True
    # A list answers fewer keys than a get (multiple fields, COMMUNICATIONS...): compare
    # only the keys listed, or every sync would see a change that is not one.
    stored: dict[str, Any] = getattr(row, "raw", None) or {}
    return raw is not None and any(stored.get(k) != v for k, v in raw.items())


def _event(entity: str, record: Record, now: datetime) -> IncomingEvent:
    """The inbox row of a changed record: ts = its change time, so a re-sync collapses."""
    stamp = changed_at(record) or now
    rid = str(record.id)
    data = {"FIELDS_AFTER": {"ID": rid}} if entity == "task" else {"FIELDS": {"ID": rid}}
    return IncomingEvent(name=EVENTS[entity], member_id="", application_token="",
                         ts=int(stamp.timestamp()), entity_id=rid, data=data, auth={},
                         by_user=False)


def _pending(session: Session, portal_id: int, entity: str, ids: Sequence[int]) -> set[str]:
    """Records of ``ids`` with a pending add/update row: it re-reads them after this read."""
    return set(session.scalars(select(InboxEvent.entity_id).where(
        InboxEvent.portal_id == portal_id, InboxEvent.status == InboxStatus.PENDING.value,
        InboxEvent.event.in_(_REREADING[entity]),
        InboxEvent.entity_id.in_([str(i) for i in ids]))))


@dataclass
class _Run:
    """One sync of one entity of one portal."""

    ctx: AppContext
    portal_id: int
    entity: str
    now: datetime
    report: CursorReport

    def queue_page(self, page: Sequence[Record], cursor: dict[str, Any]) -> None:
        """Queue the page's changed records and save ``cursor`` values in one transaction."""
        model = mirror.model_for(self.entity)
        ids = [record.id for record in page]
        report = self.report
        with session_scope(self.ctx.sessions) as session:
            found = session.scalars(select(model).where(model.portal_id == self.portal_id,
                                                        model.id.in_(ids)))
            rows = {row.id: row for row in cast(Iterable[mirror.MirrorModel], found)}
            waiting = _pending(session, self.portal_id, self.entity, ids)
            for record in page:
                if not differs(self.entity, record, rows.get(record.id)):
                    continue
                if str(record.id) in waiting:
                    report.covered += 1
                else:
                    self.store(session, record)
            if cursor:
                self.save(session, cursor)
        report.pages += 1
        report.read += len(page)

    def store(self, session: Session, record: Record) -> None:
        """Queue one changed record (a finished row of the same key is re-opened)."""
        event = _event(self.entity, record, self.now)
        if store_event(session, self.portal_id, event, now=self.now, source=InboxSource.CURSOR):
            self.report.queued += 1
        else:
            self.report.duplicates += 1

    def load(self) -> _Cursor:
        """The entity's cursor; a new one starts the full sync, stamped with its start time."""
        with session_scope(self.ctx.sessions) as session:
            # The start time is where the incremental phase picks up: whatever changes while
            # the full sync pages through the IDs is newer than it.
            session.execute(insert_ignoring_conflict(
                session, SyncCursor, {"portal_id": self.portal_id, "entity": self.entity,
                                      "modified_since": self.now, "last_id": 0,
                                      "full_done": False, "updated_at": self.now},
                ["portal_id", "entity"]))
            row = session.get_one(SyncCursor, (self.portal_id, self.entity))
            return _Cursor(row.modified_since, row.last_id, row.full_done)

    def save(self, session: Session, values: dict[str, Any]) -> None:
        """Set cursor columns inside ``session``'s transaction."""
        row = session.get_one(SyncCursor, (self.portal_id, self.entity))
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = self.now

    def full(self, cursor: _Cursor, max_pages: int | None) -> None:
        """Every record by ascending ID from ``last_id``; each page commits with its ``last_id``."""
        self.report.phase = "full"
        # The listing costs ~N/2500 requests; each queued record then costs the worker one
        # read, because handlers re-read what they apply (one code path for every source).
        gateway = self.ctx.gateways.for_portal(self.portal_id)
        for page in gateway.iter_records(self.entity, after_id=cursor.last_id):
            if not page:
                continue
            self.queue_page(page, {"last_id": max(record.id for record in page)})
            if max_pages is not None and self.report.pages >= max_pages:
                return  # the next run resumes from last_id
        with session_scope(self.ctx.sessions) as session:
            self.save(session, {"full_done": True})
        self.report.full_done = True

    def incremental(self, cursor: _Cursor, overlap: timedelta) -> None:
        """Records changed since the cursor minus the overlap; it moves once they commit."""
        since = (cursor.modified_since or self.now) - overlap
        latest = cursor.modified_since
        gateway = self.ctx.gateways.for_portal(self.portal_id)
        for page in gateway.iter_records(self.entity, modified_since=since):
            if not page:
                continue
            self.queue_page(page, {})
            stamps = [s for s in (changed_at(record) for record in page) if s is not None]
            if stamps:
                latest = max(stamps) if latest is None else max(latest, *stamps)
        self.report.full_done = True
        if latest is None or latest == cursor.modified_since:
            return
        # Never past our own clock: a record stamped in the future (a skewed portal clock)
        # must not make the cursor skip what changes until then.
        advanced = max(min(latest, self.now), cursor.modified_since or latest)
        with session_scope(self.ctx.sessions) as session:
            self.save(session, {"modified_since": advanced})
        self.report.modified_since = advanced


def sync_entity(ctx: AppContext, portal_id: int, entity: str, now: datetime, *,
                overlap: timedelta = OVERLAP, max_pages: int | None = None) -> CursorReport:
    """Queue the entity's records that changed since the last run (all of them, at first)."""
    mirror.model_for(entity)  # ValueError for an entity without a mirror, before any call
    run = _Run(ctx, portal_id, entity, now, CursorReport(entity))
    cursor = run.load()
    run.report.modified_since = cursor.modified_since
    if cursor.full_done:
        run.incremental(cursor, overlap)
    else:
        run.full(cursor, max_pages)
    log.info("cursor sync %s of portal %s (%s): %s read, %s queued", entity, portal_id,
             run.report.phase, run.report.read, run.report.queued)
    return run.report


def sync_all(ctx: AppContext, portal_id: int, now: datetime, *,
             entities: Iterable[str] = ENTITIES) -> dict[str, CursorReport]:
    """:func:`sync_entity` for each entity; one failing (a missing scope) spares the rest."""
    reports: dict[str, CursorReport] = {}
    for entity in entities:
        try:
            reports[entity] = sync_entity(ctx, portal_id, entity, now)
        except AuthRevoked:
            raise  # the whole portal is locked out; the caller flags it
        except B24Error as exc:
            log.warning("cursor sync %s of portal %s failed: %s", entity, portal_id, exc)
            reports[entity] = CursorReport(entity, error=f"{type(exc).__name__}: {exc}"[:200])
    return reports
