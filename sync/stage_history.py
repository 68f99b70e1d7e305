"""Deal stage history (``crm.stagehistory.list``) into ``mirror_stage_history``, incremental by ID.

The history is an append-only log: a row never changes once written, so the highest mirrored
ID is the whole cursor. Each run reads the rows after it with the chained ``start=-1`` + ``>ID``
export (50 pages of 50 per request) and inserts them a chunk per transaction, so a crash costs
at most one chunk and the next run resumes from what committed. Rows already present (an
overlap, a concurrent run) are skipped by ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Insert, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from b24app.db import session_scope
from b24app.gateway.wire import to_dt, to_int
from b24app.models import MirrorStageHistory

METHOD = "crm.stagehistory.list"
DEAL = 2  # entityTypeId of deals
CHUNK = 2500  # rows per transaction: one batch request's worth


class PageReader(Protocol):
    """The chained export of ``b24app.gateway.client.BitrixClient``."""

    def iter_pages(self, method: str, params: Mapping[str, Any] | None = None, *,
                   after_id: int = 0) -> Iterator[list[dict[str, Any]]]:
        """Pages in ascending ID after ``after_id``."""
        ...


def history_values(row: Mapping[str, Any], entity_type_id: int = DEAL) -> dict[str, Any]:
    """The ``mirror_stage_history`` columns of one wire row (legacy strings)."""
    return {"id": to_int(row.get("ID")), "owner_id": to_int(row.get("OWNER_ID")),
            "type_id": to_int(row.get("TYPE_ID")), "created_at": to_dt(row.get("CREATED_TIME")),
            "category_id": to_int(row.get("CATEGORY_ID")),
            "semantic": str(row.get("STAGE_SEMANTIC_ID") or "P")[:1],
            "stage_id": str(row.get("STAGE_ID") or "")}


def last_id(session: Session, portal_id: int) -> int:
    """The highest mirrored history ID of the portal (0 for none): where the next run starts."""
    return int(session.scalar(select(func.max(MirrorStageHistory.id))
                              .where(MirrorStageHistory.portal_id == portal_id)) or 0)


def _insert(session: Session) -> Insert:
    table = cast(Table, MirrorStageHistory.__table__)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=["portal_id", "id"])
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=["portal_id", "id"])
    raise NotImplementedError(f"insert ... on conflict on {dialect} is not supported")


@dataclass(frozen=True)
class HistoryReport:
    """What one run did."""

    read: int
    after_id: int  # where it started
    last_id: int  # the highest ID mirrored after it


def sync_stage_history(sessions: sessionmaker[Session], portal_id: int, reader: PageReader, *,
                       now: datetime, chunk: int = CHUNK) -> HistoryReport:
    """Mirror the deal stage moves newer than the highest mirrored ID, a chunk per commit."""
    with sessions() as session:
        start = last_id(session, portal_id)
    buffer: list[dict[str, Any]] = []
    read, top = 0, start

    def flush() -> None:
        with session_scope(sessions) as session:
            session.execute(_insert(session), buffer)
        buffer.clear()

    params = {"entityTypeId": DEAL}
    for page in reader.iter_pages(METHOD, params, after_id=start):
        for row in page:
            values = history_values(row)
            buffer.append({**values, "portal_id": portal_id, "deleted_at": None,
                           "synced_at": now})
            top = max(top, values["id"])
        read += len(page)
        if len(buffer) >= chunk:
            flush()
    if buffer:
        flush()
    return HistoryReport(read, start, top)
