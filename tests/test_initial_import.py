"""The first sync bulk-loads the mirror, then hands over to the incremental cursor."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, func, select

from b24app.gateway.types import Company, Deal
from b24app.models import InboxEvent, MirrorCompany, MirrorDeal, SyncCursor
from sync.cursor import ENTITIES, sync_all
from sync.initial import initial_import, pending_entities
from tests.fakes import FakeGateway
from tests.workerproc import FakeGateways, make_context, seed_portal

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


def _deal(deal_id: int) -> Deal:
    return Deal(deal_id, f"Заказ {deal_id}", "WON", "S", 0, Decimal("1500.00"), "RUB", 1, None,
                7, 7, NOW, NOW, NOW, None, None, True, None)


def test_first_sync_loads_the_mirror_without_queueing_rows(engine: Engine) -> None:
    """120 deals and a company land in the mirror; no inbox rows; cursors are done."""
    gateway = FakeGateway()
    for n in range(1, 121):
        gateway.put("deal", _deal(n))
    gateway.put("company", Company(1, "ООО Ромашка", 7, NOW, NOW))
    ctx = make_context(engine, gateways=FakeGateways(gateway))
    portal = seed_portal(ctx.sessions)
    assert pending_entities(ctx, portal) == list(ENTITIES)
    assert initial_import(ctx, portal, NOW) == list(ENTITIES)
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(MirrorDeal)) == 120
        assert session.scalar(select(func.count()).select_from(MirrorCompany)) == 1
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 0
        cursors = session.scalars(select(SyncCursor)).all()
        assert {c.entity for c in cursors if c.full_done and c.modified_since == NOW} == set(
            ENTITIES)
    assert pending_entities(ctx, portal) == []
    assert initial_import(ctx, portal, NOW) == []  # a second run does nothing
    reports = sync_all(ctx, portal, NOW)  # the cursor continues incrementally, queueing nothing
    assert all(r.phase == "incremental" and r.queued == 0 for r in reports.values())
