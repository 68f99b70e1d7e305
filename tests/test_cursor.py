"""The cursor sync: full sync by ID (resumable), the overlap, commit-then-advance, the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.events.parse import IncomingEvent
from b24app.gateway.errors import AccessDenied, AuthRevoked
from b24app.gateway.protocol import Record
from b24app.gateway.types import Activity, Company, Deal, Task
from b24app.inbox.store import store_event
from b24app.models import InboxEvent, SyncCursor
from b24app.worker import Worker
from b24emu import EmulatorServer
from b24emu.dispatch import act
from handlers.registry import build_registry
from sync import cursor, mirror
from sync.cursor import OVERLAP, differs, sync_all, sync_entity
from tests.appfixtures import AppServer
from tests.fakes import FakeClock, FakeGateway
from tests.test_offline import (
    drain,
    install,
    last_inbox_id,
    mirror_mismatches,
    outcomes,
    portal_gateway,
    unpaced,
)
from tests.workerproc import FakeGateways, make_context, seed_portal

T0 = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


class SpyGateway(FakeGateway):
    """Records the arguments of every bulk read; can die after a number of pages."""

    reads: list[tuple[str, datetime | None, int]]
    die_after_pages: int | None = None

    def iter_records(self, entity: str, *, modified_since: datetime | None = None,
                     after_id: int = 0) -> Iterator[list[Record]]:
        self.reads.append((entity, modified_since, after_id))
        for number, page in enumerate(super().iter_records(
                entity, modified_since=modified_since, after_id=after_id)):
            if self.die_after_pages is not None and number >= self.die_after_pages:
                raise KeyboardInterrupt("killed between two pages")
            yield page


@pytest.fixture
def gateway() -> SpyGateway:
    """The portal's fake gateway."""
    spy = SpyGateway()
    spy.reads = []
    return spy


@pytest.fixture
def clock() -> FakeClock:
    """The service's clock."""
    return FakeClock(T0)


@pytest.fixture
def ctx(engine: Engine, gateway: SpyGateway, clock: FakeClock) -> Iterator[AppContext]:
    """An app context on ``db_url`` with the spy gateway."""
    built = make_context(engine, clock=clock, gateways=FakeGateways(gateway))
    yield built
    built.gateways.close()


@pytest.fixture
def live(app_server: AppServer) -> Iterator[AppServer]:
    """The app server without client-side pacing."""
    with unpaced(app_server) as server:
        yield server


@pytest.fixture
def portal(ctx: AppContext) -> int:
    """An active portal."""
    return seed_portal(ctx.sessions)


def deal(rid: int, modified: datetime, title: str = "Сделка", **extra: Any) -> Deal:
    """A deal as ``crm.deal.list`` lists it."""
    return Deal.from_wire({"ID": str(rid), "TITLE": title, "STAGE_ID": "NEW",
                           "DATE_MODIFY": modified.isoformat(), **extra})


def inbox(sessions: sessionmaker[Session]) -> list[tuple[str, str, int, str]]:
    """``(event, entity_id, ts, source)`` of every inbox row."""
    with sessions() as session:
        return [(r.event, r.entity_id, r.ts, r.source) for r in session.scalars(
            select(InboxEvent).order_by(InboxEvent.id))]


def state(sessions: sessionmaker[Session], portal: int, entity: str) -> SyncCursor:
    """The stored cursor."""
    with sessions() as session:
        return session.get_one(SyncCursor, (portal, entity))


# -- unit tests ------------------------------------------------------------------------------
def test_the_first_run_is_a_full_sync_by_id_then_incremental(
        ctx: AppContext, gateway: SpyGateway, portal: int, clock: FakeClock) -> None:
    for rid in range(1, 121):
        gateway.put("deal", deal(rid, T0 - timedelta(days=rid)))
    first = sync_entity(ctx, portal, "deal", T0)
    assert (first.phase, first.pages, first.read, first.queued, first.full_done) == (
        "full", 3, 120, 120, True)
    assert gateway.reads == [("deal", None, 0)]
    saved = state(ctx.sessions, portal, "deal")
    assert (saved.last_id, saved.full_done, saved.modified_since) == (120, True, T0)
    assert inbox(ctx.sessions)[0] == ("ONCRMDEALUPDATE", "1",
                                     int((T0 - timedelta(days=1)).timestamp()), "cursor")
    drain(Worker(ctx, registry=build_registry()))
    clock.advance(minutes=5)
    second = sync_entity(ctx, portal, "deal", clock())
    assert (second.phase, second.read, second.queued) == ("incremental", 0, 0)
    assert gateway.reads[-1] == ("deal", T0 - OVERLAP, 0)


def test_a_full_sync_resumes_from_last_id_after_a_crash(
        ctx: AppContext, gateway: SpyGateway, portal: int) -> None:
    for rid in range(1, 131):
        gateway.put("deal", deal(rid, T0 - timedelta(days=1)))
    gateway.die_after_pages = 1
    with pytest.raises(KeyboardInterrupt):
        sync_entity(ctx, portal, "deal", T0)
    saved = state(ctx.sessions, portal, "deal")
    assert (saved.last_id, saved.full_done) == (50, False)
    assert len(inbox(ctx.sessions)) == 50  # the first page committed with its last_id
    gateway.die_after_pages = None
    later = T0 + timedelta(minutes=3)
    report = sync_entity(ctx, portal, "deal", later)
    assert gateway.reads[-1] == ("deal", None, 50)
    assert (report.read, report.queued, report.duplicates) == (80, 80, 0)
    saved = state(ctx.sessions, portal, "deal")
    # The incremental phase starts where the full sync *started*, not where it ended.
    assert (saved.last_id, saved.full_done, saved.modified_since) == (130, True, T0)
    assert sorted(int(r[1]) for r in inbox(ctx.sessions)) == list(range(1, 131))


def test_max_pages_bounds_one_run(ctx: AppContext, gateway: SpyGateway, portal: int) -> None:
    for rid in range(1, 121):
        gateway.put("deal", deal(rid, T0))
    assert sync_entity(ctx, portal, "deal", T0, max_pages=2).full_done is False
    assert state(ctx.sessions, portal, "deal").last_id == 100
    assert sync_entity(ctx, portal, "deal", T0, max_pages=2).full_done is True


def _incremental_from(ctx: AppContext, portal: int, entity: str, since: datetime) -> None:
    """A cursor past its full sync, at ``since``."""
    with session_scope(ctx.sessions) as session:
        session.add(SyncCursor(portal_id=portal, entity=entity, modified_since=since,
                               last_id=0, full_done=True, updated_at=since))


def test_the_overlap_rereads_recent_changes_and_the_mirror_diff_drops_them(
        ctx: AppContext, gateway: SpyGateway, portal: int) -> None:
    _incremental_from(ctx, portal, "deal", T0)
    gateway.put("deal", deal(1, T0 - timedelta(minutes=5)))  # before the overlap: not read
    gateway.put("deal", deal(2, T0 - timedelta(seconds=30)))  # same second as the last run
    gateway.put("deal", deal(3, T0 + timedelta(minutes=1)))
    now = T0 + timedelta(minutes=5)
    report = sync_entity(ctx, portal, "deal", now)
    assert gateway.reads == [("deal", T0 - OVERLAP, 0)]
    assert (report.read, report.queued) == (2, 2)
    assert state(ctx.sessions, portal, "deal").modified_since == T0 + timedelta(minutes=1)
    drain(Worker(ctx, registry=build_registry()))
    again = sync_entity(ctx, portal, "deal", now)  # 2 and 3 again (overlap): mirror equal
    assert (again.read, again.queued, again.duplicates) == (2, 0, 0)


def test_the_cursor_moves_only_after_the_rows_commit(
        ctx: AppContext, gateway: SpyGateway, portal: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _incremental_from(ctx, portal, "deal", T0)
    gateway.put("deal", deal(1, T0 + timedelta(minutes=1)))
    gateway.put("deal", deal(2, T0 + timedelta(minutes=2)))

    def dying(*args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt("killed while storing")

    monkeypatch.setattr(cursor, "store_event", dying)
    with pytest.raises(KeyboardInterrupt):
        sync_entity(ctx, portal, "deal", T0 + timedelta(minutes=5))
    assert state(ctx.sessions, portal, "deal").modified_since == T0
    assert inbox(ctx.sessions) == []
    monkeypatch.undo()
    report = sync_entity(ctx, portal, "deal", T0 + timedelta(minutes=5))
    assert report.queued == 2
    assert state(ctx.sessions, portal, "deal").modified_since == T0 + timedelta(minutes=2)


def test_a_future_stamp_does_not_push_the_cursor_past_now(
        ctx: AppContext, gateway: SpyGateway, portal: int) -> None:
    _incremental_from(ctx, portal, "deal", T0)
    gateway.put("deal", deal(1, T0 + timedelta(hours=3)))  # a portal clock running ahead
    sync_entity(ctx, portal, "deal", T0 + timedelta(minutes=5))
    assert state(ctx.sessions, portal, "deal").modified_since == T0 + timedelta(minutes=5)


def test_a_change_seen_again_collapses_on_the_dedup_key(
        ctx: AppContext, gateway: SpyGateway, portal: int) -> None:
    _incremental_from(ctx, portal, "deal", T0)
    gateway.put("deal", deal(1, T0 + timedelta(minutes=1)))
    now = T0 + timedelta(minutes=2)
    assert sync_entity(ctx, portal, "deal", now).queued == 1
    assert sync_entity(ctx, portal, "deal", now).covered == 1  # its pending row re-reads it
    with session_scope(ctx.sessions) as session:  # e.g. the row died, the mirror is stale
        session.execute(update(InboxEvent).values(status="dead"))
    again = sync_entity(ctx, portal, "deal", now)
    assert (again.queued, again.duplicates) == (0, 1)
    assert len(inbox(ctx.sessions)) == 1


def test_a_lost_second_change_in_the_same_second_is_read_again(
        ctx: AppContext, gateway: SpyGateway, portal: int, clock: FakeClock) -> None:
    """Two changes in one second share a dedup key; the first was processed, the second's
    delivery was lost. The cursor sees the mirror differ and re-opens the finished row."""
    _incremental_from(ctx, portal, "deal", T0)
    changed = T0 + timedelta(seconds=10)
    gateway.put("deal", deal(1, changed, "Первая правка"))
    online = IncomingEvent("ONCRMDEALUPDATE", "m", "t", int(changed.timestamp()), "1",
                           {"FIELDS": {"ID": "1"}}, {}, True)
    with session_scope(ctx.sessions) as session:
        assert store_event(session, portal, online, now=clock())
    worker = Worker(ctx, registry=build_registry())
    drain(worker)
    gateway.put("deal", deal(1, changed, "Вторая правка"))  # automation, same second, lost
    clock.advance(minutes=5)
    report = sync_entity(ctx, portal, "deal", clock())
    assert (report.queued, report.duplicates) == (1, 0)
    drain(worker)
    with ctx.sessions() as session:
        assert mirror.load(session, portal, "deal", 1).title == "Вторая правка"  # type: ignore[union-attr]
    assert len(inbox(ctx.sessions)) == 1  # the same row, re-opened
    assert sync_entity(ctx, portal, "deal", clock()).queued == 0  # now it matches


def test_tasks_and_activities_use_their_own_change_fields(
        ctx: AppContext, gateway: SpyGateway, portal: int) -> None:
    changed = T0 + timedelta(minutes=1)
    gateway.put("task", Task.from_wire({"id": "11", "title": "Задача",
                                        "createdDate": T0.isoformat(),
                                        "changedDate": changed.isoformat()}))
    gateway.put("activity", Activity.from_wire({"ID": "5", "SUBJECT": "Звонок",
                                                "CREATED": T0.isoformat(),
                                                "LAST_UPDATED": changed.isoformat()}))
    for entity in ("task", "activity"):
        sync_entity(ctx, portal, entity, T0)
    assert inbox(ctx.sessions) == [
        ("ONTASKUPDATE", "11", int(changed.timestamp()), "cursor"),
        ("ONCRMACTIVITYUPDATE", "5", int(changed.timestamp()), "cursor")]
    with ctx.sessions() as session:
        row = session.scalars(select(InboxEvent).where(InboxEvent.event == "ONTASKUPDATE")).one()
    assert row.data == {"FIELDS_AFTER": {"ID": "11"}}


def test_differs_compares_only_the_listed_raw_keys(ctx: AppContext, portal: int) -> None:
    wire = {"ID": "4", "TITLE": "ООО Ромашка", "DATE_MODIFY": T0.isoformat()}
    got = Company.from_wire({**wire, "EMAIL": [{"VALUE": "a@b.ru"}]})  # a get answers more
    with session_scope(ctx.sessions) as session:
        mirror.upsert(session, portal, "company", got, now=T0)
    with ctx.sessions() as session:
        row = mirror.load(session, portal, "company", 4)
        assert not differs("company", Company.from_wire(wire), row)
        assert differs("company", Company.from_wire({**wire, "TITLE": "ООО Лютик"}), row)
        assert differs("company", Company.from_wire({**wire, "PHONE": "1"}), row)
        assert differs("company", Company.from_wire(wire), None)


def test_sync_all_spares_the_other_entities_but_not_a_revoked_portal(
        ctx: AppContext, gateway: SpyGateway, portal: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    gateway.put("deal", deal(1, T0))
    original = gateway.iter_records

    def no_tasks(entity: str, **kwargs: Any) -> Iterator[list[Record]]:
        if entity == "task":
            raise AccessDenied("insufficient_scope", "task scope missing")
        return original(entity, **kwargs)

    monkeypatch.setattr(gateway, "iter_records", no_tasks)
    reports = sync_all(ctx, portal, T0)
    assert list(reports) == ["deal", "company", "contact", "activity", "task"]
    assert reports["deal"].queued == 1 and "AccessDenied" in reports["task"].error

    def revoked(entity: str, **kwargs: Any) -> Iterator[list[Record]]:
        raise AuthRevoked("invalid_token", "revoked")

    monkeypatch.setattr(gateway, "iter_records", revoked)
    with pytest.raises(AuthRevoked):
        sync_all(ctx, portal, T0)


# -- against the emulator --------------------------------------------------------------------
def test_cursor_sync_against_the_emulator(emulator: EmulatorServer, live: AppServer) -> None:
    """Full sync, drained; then lost updates come back incrementally; deletes do not."""
    portal = emulator.portal
    pid = install(emulator, live)
    ctx = live.ctx
    portal.faults.add("drop_events", "ONCRM*")
    portal.faults.add("drop_events", "ONTASK*")
    companies = [int(act(portal, "crm.company.add", {"fields": {"TITLE": f"Клиент {i}"}}))
                 for i in range(3)]
    deals = [int(act(portal, "crm.deal.add", {"fields": {"TITLE": f"Сделка {i}",
                                                          "COMPANY_ID": companies[i % 3]}}))
             for i in range(60)]
    task = int(act(portal, "tasks.task.add", {"fields": {"TITLE": "Перезвонить",
                                                          "RESPONSIBLE_ID": 1}})["task"]["id"])
    worker = Worker(ctx, registry=build_registry())
    first = sync_all(ctx, pid, ctx.clock())
    assert {e: (r.phase, r.queued) for e, r in first.items()} == {
        "deal": ("full", 60), "company": ("full", 3), "contact": ("full", 0),
        "activity": ("full", 0), "task": ("full", 1)}
    drain(worker)
    touched = {"deal": set(deals), "company": set(companies), "task": {task}}
    reader = portal_gateway(emulator)
    try:
        assert mirror_mismatches(ctx.sessions, pid, reader, touched) == []
        mark = last_inbox_id(ctx.sessions)
        # Updates in a later second than the creations: their dedup keys (event, entity, ts)
        # differ, so they get new inbox rows instead of re-opening the creations' rows.
        portal.clock.advance(2)
        act(portal, "crm.deal.update", {"id": deals[5], "fields": {"STAGE_ID": "WON"}})
        act(portal, "crm.company.update", {"id": companies[1], "fields": {"TITLE": "Новое"}},
            automation=True)
        act(portal, "tasks.task.update", {"taskId": task, "fields": {"STATUS": 3}})
        act(portal, "crm.deal.delete", {"id": deals[7]})
        second = sync_all(ctx, pid, ctx.clock())
        assert {e: (r.phase, r.queued) for e, r in second.items() if r.queued} == {
            "deal": ("incremental", 1), "company": ("incremental", 1),
            "task": ("incremental", 1)}
        drain(worker)
        assert sorted(o[3] for o in outcomes(ctx.sessions, pid, mark)) == ["mirror:updated"] * 3
        touched["deal"].discard(deals[7])
        assert mirror_mismatches(ctx.sessions, pid, reader, touched) == []
        with ctx.sessions() as session:  # invisible to a cursor: the offline queue's job
            assert mirror.load(session, pid, "deal", deals[7]).deleted_at is None  # type: ignore[union-attr]
    finally:
        reader.client.close()

