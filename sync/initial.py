"""The first sync of a portal: bulk-load the mirror instead of queueing every record.

The cursor sync's full pass would queue one inbox row per record and each handler would
re-read its record: one request per record. A bulk load reads whole pages (about one request
per 2,500 records) straight into the mirror; business rules are not run on this history
(nothing that happened before the install is judged). The cursors then start at the time
the load began, so later changes flow through the inbox and the rules as usual.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from b24app.context import AppContext
from b24app.db import insert_ignoring_conflict, session_scope
from b24app.models import SyncCursor
from sync.bulk import bulk_load
from sync.cursor import ENTITIES
from sync.reference import refresh_reference
from sync.stage_history import sync_stage_history

log = logging.getLogger(__name__)


def pending_entities(ctx: AppContext, portal_id: int) -> list[str]:
    """Entities whose first full sync has not finished yet."""
    with ctx.sessions() as session:
        done = set(session.scalars(select(SyncCursor.entity).where(
            SyncCursor.portal_id == portal_id, SyncCursor.full_done.is_(True))))
    return [entity for entity in ENTITIES if entity not in done]


def refresh_extras(ctx: AppContext, portal_id: int, now: datetime) -> None:
    """Users, departments, groups and deal stage history (small or append-only tables)."""
    gateway = ctx.gateways.for_portal(portal_id)
    with session_scope(ctx.sessions) as session:
        refresh_reference(session, portal_id, gateway, now=now)
    reader = getattr(gateway, "client", None)  # the BitrixGateway's client; fakes have none
    if reader is not None:
        sync_stage_history(ctx.sessions, portal_id, reader, now=now)


def initial_import(ctx: AppContext, portal_id: int, now: datetime) -> list[str]:
    """Bulk-load every entity not fully synced yet; returns the entities loaded."""
    entities = pending_entities(ctx, portal_id)
    if not entities:
        return []
    refresh_extras(ctx, portal_id, now)
    loads = bulk_load(ctx.sessions, portal_id, ctx.gateways.for_portal(portal_id), now=now,
                      entities=entities)
    with session_scope(ctx.sessions) as session:
        for entity in entities:
            session.execute(insert_ignoring_conflict(session, SyncCursor, {
                "portal_id": portal_id, "entity": entity, "modified_since": now,
                "last_id": 0, "full_done": False, "updated_at": now},
                ["portal_id", "entity"]))
            cursor = session.get(SyncCursor, (portal_id, entity))
            assert cursor is not None
            # Changes made while the load ran are read again by the next incremental pass.
            cursor.modified_since, cursor.full_done, cursor.updated_at = now, True, now
    log.info("initial import of portal %s: %s", portal_id,
             ", ".join(f"{e} {loads[e].read}" for e in entities))
    return entities
