"""CRM record events: re-read the record (events carry only its ID) and refresh the mirror.

``refresh`` and ``remove`` are the shared steps; the task handlers use them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync import mirror, own_writes

if TYPE_CHECKING:
    from b24app.inbox.queue import ClaimedEvent
    from handlers.registry import Handler, HandlerContext

IGNORED_OWN_WRITE = "ignored:own-write"
IGNORED_BAD_ID = "ignored:bad-entity-id"


def record_id(event: ClaimedEvent) -> int | None:
    """The numeric ID of the event's record (``entity_id``; ``<task>:<comment>`` → task)."""
    head = event.entity_id.partition(":")[0]
    return int(head) if head.isascii() and head.isdigit() else None


def refresh(ctx: HandlerContext, entity: str, rid: int) -> tuple[mirror.MirrorChange, bool]:
    """Re-read ``entity`` ``rid`` into the mirror; also say whether it was our own write."""
    now = ctx.now()
    # Lock the row before the read, so two refreshes of one record cannot store the older
    # state last. PostgreSQL only: on SQLite two worker processes could, and the next event
    # of that record repairs it; run one worker per SQLite file.
    existing = mirror.load(ctx.session, ctx.portal_id, entity, rid, lock=True)
    record = ctx.gateway.get_record(entity, rid)
    if record is None:  # deleted between the event and our read
        return mirror.mark_deleted(ctx.session, ctx.portal_id, entity, rid, now=now,
                                   existing=existing), False
    change = mirror.apply(ctx.session, ctx.portal_id, entity, record, existing, now=now)
    return change, own_writes.is_own_change(ctx.session, ctx.portal_id, change, now=now)


def refreshed(ctx: HandlerContext, event: ClaimedEvent, entity: str) -> str:
    """Refresh the record, run the hooks for a change that is not ours; the outcome."""
    rid = record_id(event)
    if rid is None:
        return IGNORED_BAD_ID
    change, own = refresh(ctx, entity, rid)
    if own:
        return IGNORED_OWN_WRITE
    if change.changed:
        ctx.mirror_changed(event, change)
    return f"mirror:{change.kind}"


def removed(ctx: HandlerContext, event: ClaimedEvent, entity: str) -> str:
    """Mark the record deleted without a REST call (it is gone: nothing to read)."""
    rid = record_id(event)
    if rid is None:
        return IGNORED_BAD_ID
    existing = mirror.load(ctx.session, ctx.portal_id, entity, rid, lock=True)
    change = mirror.mark_deleted(ctx.session, ctx.portal_id, entity, rid, now=ctx.now(),
                                 existing=existing)
    if change.changed:
        ctx.mirror_changed(event, change)
    return f"mirror:{change.kind}"


def record_changed(entity: str) -> Handler:
    """The handler of ``ONCRM<ENTITY>ADD``/``UPDATE``."""

    def handle(ctx: HandlerContext, event: ClaimedEvent) -> str:
        return refreshed(ctx, event, entity)

    handle.__name__ = f"{entity}_changed"
    return handle


def record_deleted(entity: str) -> Handler:
    """The handler of ``ONCRM<ENTITY>DELETE``."""

    def handle(ctx: HandlerContext, event: ClaimedEvent) -> str:
        return removed(ctx, event, entity)

    handle.__name__ = f"{entity}_deleted"
    return handle
