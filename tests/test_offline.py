"""Offline catch-up: every crash window with a fake gateway, then the real queue of the emulator.

Also the helpers the cursor and recovery tests share (install, drain, mirror vs portal).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.events.parse import IncomingEvent
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient, pages_to_rows
from b24app.gateway.factory import GatewayFactory
from b24app.gateway.protocol import Gateway, OfflineEvent
from b24app.gateway.types import Deal
from b24app.inbox.queue import ClaimedEvent
from b24app.inbox.store import store_event
from b24app.models import InboxEvent, Portal, utcnow
from b24app.worker import Worker
from b24emu import EmulatorServer
from b24emu.dispatch import act
from handlers.offline import OFFLINE_NOTED, offline_event
from handlers.registry import HandlerContext, build_registry
from sync import mirror, offline, own_writes
from sync.offline import catch_up, saved_batches
from tests.appfixtures import AppServer
from tests.fakes import FakeClock, FakeGateway
from tests.workerproc import FakeGateways, make_context, seed_portal

T0 = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
FAST = 1000.0  # requests per second: effectively no client-side pacing


# -- shared helpers --------------------------------------------------------------------------
def drain(worker: Worker, rounds: int = 1000) -> int:
    """Run the worker until a round finds nothing; how many events it processed."""
    total = 0
    for _ in range(rounds):
        done = worker.run_once()
        if done == 0:
            return total
        total += done
    raise AssertionError("the inbox did not drain")


def outcomes(sessions: sessionmaker[Session], portal_id: int,
             after_id: int = 0) -> list[tuple[str, str, str, str]]:
    """``(event, entity_id, source, outcome)`` of inbox rows past ``after_id``, in id order."""
    with sessions() as session:
        rows = session.execute(select(InboxEvent.event, InboxEvent.entity_id, InboxEvent.source,
                                      InboxEvent.outcome)
                               .where(InboxEvent.portal_id == portal_id,
                                      InboxEvent.id > after_id)
                               .order_by(InboxEvent.id)).all()
    return [(r.event, r.entity_id, r.source, r.outcome or "") for r in rows]


def last_inbox_id(sessions: sessionmaker[Session]) -> int:
    """The highest inbox row id (0 when empty)."""
    with sessions() as session:
        return int(session.scalar(select(func.max(InboxEvent.id))) or 0)


def install(emulator: EmulatorServer, app_server: AppServer) -> int:
    """Install the app through the real ONAPPINSTALL flow; the portal's id."""
    result = emulator.portal.install_app(f"{app_server.url}/b24/install")
    assert result.status == 200, result.error
    with app_server.ctx.sessions() as session:
        return session.scalars(select(Portal.id)).one()


def portal_gateway(emulator: EmulatorServer) -> BitrixGateway:
    """An independent reader of the portal (the admin's incoming webhook), unthrottled."""
    return BitrixGateway(BitrixClient(emulator.portal.webhook_url, requests_per_second=FAST,
                                      burst=int(FAST)))


@contextlib.contextmanager
def unpaced(app_server: AppServer) -> Iterator[AppServer]:
    """``app_server`` whose gateways skip the client-side 2 requests/s pacing (limits are off
    in the emulator; the pacing would only make the tests slow)."""
    ctx = app_server.ctx
    settings = dataclasses.replace(ctx.settings, portal=dataclasses.replace(
        ctx.settings.portal, requests_per_second=FAST, burst=int(FAST)))
    paced, factory = ctx.gateways, GatewayFactory(settings, ctx.sessions, ctx.secrets, utcnow)
    ctx.settings, ctx.gateways = settings, factory
    try:
        yield app_server
    finally:
        ctx.gateways = paced
        factory.close()


@pytest.fixture
def live(app_server: AppServer) -> Iterator[AppServer]:
    """The unpaced app server."""
    with unpaced(app_server) as server:
        yield server


def mirror_mismatches(sessions: sessionmaker[Session], portal_id: int, reader: Gateway,
                      touched: dict[str, set[int]]) -> list[str]:
    """Touched records whose mirror row differs from the portal's record (or its absence)."""
    problems: list[str] = []
    with sessions() as session:
        for entity, ids in touched.items():
            for rid in sorted(ids):
                record = reader.get_record(entity, rid)
                row = mirror.load(session, portal_id, entity, rid)
                if record is None:
                    if row is not None and row.deleted_at is None:
                        problems.append(f"{entity} {rid}: deleted on the portal, live here")
                    continue
                if row is None or row.deleted_at is not None:
                    problems.append(f"{entity} {rid}: missing from the mirror")
                    continue
                values = mirror.row_values(entity, record)
                diff = sorted(k for k, v in values.items() if getattr(row, k) != v)
                if diff:
                    problems.append(f"{entity} {rid}: {diff}")
    return problems


def app_gateway(app_server: AppServer, portal_id: int) -> BitrixGateway:
    """The app's own gateway of the portal (offline methods need app auth)."""
    gateway = app_server.ctx.gateways.for_portal(portal_id)
    assert isinstance(gateway, BitrixGateway)
    return gateway


def offline_reserved(gateway: BitrixGateway) -> list[str]:
    """Reference ``offline_reserved``: process IDs of reserved records (event.offline.list)."""
    rows = pages_to_rows(gateway.client.iter_offset("event.offline.list",
                                                    {"filter": {"!PROCESS_ID": ""}}))
    return sorted({str(r.get("PROCESS_ID") or "") for r in rows} - {""})


class ListingGateway:
    """A gateway with the ``offline_reserved`` capability added (what the lead adds)."""

    def __init__(self, inner: BitrixGateway) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def offline_reserved(self) -> list[str]:
        """Process IDs holding reserved records."""
        return offline_reserved(self._inner)


# -- fake-gateway fixtures -------------------------------------------------------------------
@pytest.fixture
def gateway() -> FakeGateway:
    """The portal's fake gateway."""
    return FakeGateway()


@pytest.fixture
def ctx(engine: Engine, gateway: FakeGateway) -> Iterator[AppContext]:
    """An app context on ``db_url`` whose every portal uses ``gateway``."""
    built = make_context(engine, clock=FakeClock(T0), gateways=FakeGateways(gateway))
    yield built
    built.gateways.close()


@pytest.fixture
def portal(ctx: AppContext) -> int:
    """An active portal."""
    return seed_portal(ctx.sessions)


def deal(rid: int, title: str = "Сделка", modified: datetime = T0) -> Deal:
    """A deal record as the gateway returns it."""
    return Deal.from_wire({"ID": str(rid), "TITLE": title, "STAGE_ID": "NEW",
                           "DATE_MODIFY": modified.isoformat(), "ASSIGNED_BY_ID": "5"})


def record(rid: int, event: str, entity: int, ts: datetime = T0,
           message: str = "") -> OfflineEvent:
    """An offline record as ``event.offline.get`` answers it (JSON ints in EVENT_DATA)."""
    data: dict[str, Any]
    if event.startswith("ONTASKCOMMENT"):
        data = {"FIELDS_BEFORE": "undefined", "FIELDS_AFTER": {"ID": 3, "TASK_ID": entity}}
    elif event.startswith("ONTASK"):
        data = {"FIELDS_BEFORE": {"ID": entity}, "FIELDS_AFTER": {"ID": entity}}
    else:
        data = {"FIELDS": {"ID": entity}}
    return OfflineEvent(rid, event, ts, message or f"m{rid}", data)


def rows(sessions: sessionmaker[Session]) -> list[InboxEvent]:
    """Every inbox row, oldest first."""
    with sessions() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def crash_once(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    """Make ``target.name`` raise on its first call only (a process dying right there)."""
    original = getattr(target, name)
    calls: list[int] = []

    def dying(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt(f"killed in {name}")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)


# -- the happy path --------------------------------------------------------------------------
def test_records_become_offline_inbox_rows_and_the_batch_is_cleared(
        ctx: AppContext, gateway: FakeGateway, portal: int) -> None:
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7), record(2, "ONTASKUPDATE", 11),
                       record(3, "ONTASKCOMMENTADD", 11), record(4, "ONCRMDEALDELETE", 8)]
    report = catch_up(ctx, portal, T0)
    assert (report.batches, report.records, report.stored, report.duplicates) == (1, 4, 4, 0)
    stored = rows(ctx.sessions)
    assert [(r.event, r.entity_id, r.source, r.ts) for r in stored] == [
        ("ONCRMDEALUPDATE", "7", "offline", int(T0.timestamp())),
        ("ONTASKUPDATE", "11", "offline", int(T0.timestamp())),
        ("ONTASKCOMMENTADD", "11:3", "offline", int(T0.timestamp())),
        ("ONCRMDEALDELETE", "8", "offline", int(T0.timestamp()))]
    assert stored[0].data == {"FIELDS": {"ID": "7"}}  # as an online form would carry it
    assert not any(gateway._reserved.values()) and gateway.offline == []
    assert saved_batches(ctx, portal) == []
    assert catch_up(ctx, portal, T0).records == 0  # empty queue: nothing to do


def test_an_online_and_an_offline_copy_of_one_change_collapse(
        ctx: AppContext, gateway: FakeGateway, portal: int) -> None:
    online = IncomingEvent("ONCRMDEALUPDATE", "m", "t", int(T0.timestamp()), "7",
                           {"FIELDS": {"ID": "7"}}, {}, True)
    with session_scope(ctx.sessions) as session:
        assert store_event(session, portal, online, now=T0)
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7)]
    report = catch_up(ctx, portal, T0)
    assert (report.stored, report.duplicates) == (0, 1)
    assert len(rows(ctx.sessions)) == 1


def test_a_later_offline_copy_is_a_second_row_that_changes_nothing(
        ctx: AppContext, gateway: FakeGateway, portal: int) -> None:
    """Online and offline stamps differ (the offline one is the latest change): the second
    row re-reads the deal, finds the mirror equal and ends ``mirror:unchanged``."""
    gateway.put("deal", deal(7))
    online = IncomingEvent("ONCRMDEALUPDATE", "m", "t", int(T0.timestamp()) - 5, "7",
                           {"FIELDS": {"ID": "7"}}, {}, True)
    with session_scope(ctx.sessions) as session:
        store_event(session, portal, online, now=T0)
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7)]
    assert catch_up(ctx, portal, T0).stored == 1
    drain(Worker(ctx, registry=build_registry()))
    assert [o[3] for o in outcomes(ctx.sessions, portal)] == ["mirror:created",
                                                              "mirror:unchanged"]


@pytest.mark.parametrize(("age", "read_again"), [(10, False), (0, True)])
def test_a_change_read_online_well_after_its_second_is_not_read_again(
        ctx: AppContext, gateway: FakeGateway, portal: int, age: int, read_again: bool) -> None:
    """The queue repeats what online delivery brought. A row finished seconds after the
    change's second is skipped; one finished within that second is re-opened, since a
    second edit in the same second may have come after its read."""
    gateway.put("deal", deal(7))
    stamp = T0 - timedelta(seconds=age)
    online = IncomingEvent("ONCRMDEALUPDATE", "m", "t", int(stamp.timestamp()), "7",
                           {"FIELDS": {"ID": "7"}}, {}, True)
    with session_scope(ctx.sessions) as session:
        store_event(session, portal, online, now=T0)
    worker = Worker(ctx, registry=build_registry())
    drain(worker)  # processed at T0 (the fake clock)
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7, stamp)]
    report = catch_up(ctx, portal, T0)
    assert (report.stored, report.duplicates) == ((1, 0) if read_again else (0, 1))
    assert drain(worker) == (1 if read_again else 0)
    assert len(rows(ctx.sessions)) == 1


def test_malformed_records_are_marked_failed_and_logged(
        ctx: AppContext, gateway: FakeGateway, portal: int,
        caplog: pytest.LogCaptureFixture) -> None:
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7),
                       OfflineEvent(2, "ONCRMDEALUPDATE", T0, "bad-id", {"FIELDS": {}}),
                       OfflineEvent(3, "ONCRMDEALUPDATE", None, "no-time", {"FIELDS": {"ID": 8}}),
                       OfflineEvent(4, "ON CRM!", T0, "bad-name", {})]
    failed: list[list[str]] = []
    cleared: list[list[str] | None] = []
    original_fail, original_clear = gateway.fail_offline, gateway.clear_offline

    def fail(pid: str, ids: list[str]) -> None:
        failed.append(ids)
        original_fail(pid, ids)

    def clear(pid: str, ids: list[str] | None = None) -> None:
        cleared.append(ids)
        original_clear(pid, ids)

    gateway.fail_offline = fail  # type: ignore[method-assign]
    gateway.clear_offline = clear  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="sync.offline"):
        report = catch_up(ctx, portal, T0)
    assert report.failed == ["bad-id", "no-time", "bad-name"] == failed[0]
    assert cleared == [["m1"]]  # exactly what was stored
    assert [r.entity_id for r in rows(ctx.sessions)] == ["7"]
    assert sum("malformed" in r.message for r in caplog.records) == 3
    assert saved_batches(ctx, portal) == []


def test_a_run_stops_at_its_batch_cap_and_the_next_one_continues(
        ctx: AppContext, gateway: FakeGateway, portal: int) -> None:
    gateway.offline = [record(i, "ONCRMDEALUPDATE", i) for i in range(1, 131)]
    first = catch_up(ctx, portal, T0, limit=50, max_batches=2)
    assert (first.batches, first.stored, first.capped) == (2, 100, True)
    second = catch_up(ctx, portal, T0, limit=50, max_batches=2)
    assert (second.batches, second.stored, second.capped) == (1, 30, False)
    assert len(rows(ctx.sessions)) == 130


# -- crash windows ---------------------------------------------------------------------------
def test_window_1_a_reservation_never_saved_is_adopted(
        ctx: AppContext, gateway: FakeGateway, portal: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Died after event.offline.get, before the process_id was saved: the records hide under
    a process nobody knows; the next run finds it through event.offline.list."""
    gateway.offline = [record(1, "ONCRMDEALDELETE", 7), record(2, "ONCRMDEALUPDATE", 8)]
    crash_once(monkeypatch, offline, "_remember")
    with pytest.raises(KeyboardInterrupt):
        catch_up(ctx, portal, T0)
    assert saved_batches(ctx, portal) == [] and rows(ctx.sessions) == []
    assert gateway.offline == [] and gateway.offline_reserved()  # hidden, reserved
    report = catch_up(ctx, portal, T0)
    assert (report.adopted, report.resumed, report.stored) == (1, 1, 2)
    assert [r.event for r in rows(ctx.sessions)] == ["ONCRMDEALDELETE", "ONCRMDEALUPDATE"]
    assert gateway.offline_reserved() == [] and saved_batches(ctx, portal) == []


def test_window_2_a_saved_batch_is_re_read_after_a_crash(
        ctx: AppContext, gateway: FakeGateway, portal: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Died after saving the process_id, before the inbox rows committed."""
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7), record(2, "ONTASKUPDATE", 11)]
    crash_once(monkeypatch, offline, "store_event")
    with pytest.raises(KeyboardInterrupt):
        catch_up(ctx, portal, T0)
    assert rows(ctx.sessions) == []  # the transaction rolled back
    assert len(saved_batches(ctx, portal)) == 1
    report = catch_up(ctx, portal, T0)
    assert (report.resumed, report.stored, report.duplicates) == (1, 2, 0)
    assert saved_batches(ctx, portal) == [] and not any(gateway._reserved.values())


def test_window_3_stored_but_not_cleared_stores_nothing_twice(
        ctx: AppContext, gateway: FakeGateway, portal: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Died after the inbox rows committed, before event.offline.clear."""
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7), record(2, "ONTASKUPDATE", 11)]
    crash_once(monkeypatch, gateway, "clear_offline")
    with pytest.raises(KeyboardInterrupt):
        catch_up(ctx, portal, T0)
    assert len(rows(ctx.sessions)) == 2 and len(saved_batches(ctx, portal)) == 1
    report = catch_up(ctx, portal, T0)
    assert (report.resumed, report.stored, report.duplicates) == (1, 0, 2)
    assert len(rows(ctx.sessions)) == 2
    assert saved_batches(ctx, portal) == [] and not any(gateway._reserved.values())


def test_window_4_cleared_but_still_saved_is_forgotten(
        ctx: AppContext, gateway: FakeGateway, portal: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Died after event.offline.clear, before the saved row was deleted."""
    gateway.offline = [record(1, "ONCRMDEALUPDATE", 7)]
    crash_once(monkeypatch, offline, "_forget")
    with pytest.raises(KeyboardInterrupt):
        catch_up(ctx, portal, T0)
    assert len(saved_batches(ctx, portal)) == 1
    gateway.offline = [record(2, "ONCRMDEALUPDATE", 8)]  # a new change meanwhile
    report = catch_up(ctx, portal, T0)
    assert (report.resumed, report.batches, report.stored) == (1, 1, 1)
    assert saved_batches(ctx, portal) == []
    assert [r.entity_id for r in rows(ctx.sessions)] == ["7", "8"]


def test_our_own_write_caught_up_offline_is_ignored(
        ctx: AppContext, gateway: FakeGateway, portal: int) -> None:
    """The echo of the service's own write, lost online, still loops nowhere."""
    gateway.put("deal", deal(7, "Старое"))
    gateway.offline = [record(1, "ONCRMDEALADD", 7)]
    catch_up(ctx, portal, T0)
    worker = Worker(ctx, registry=build_registry())
    drain(worker)
    mark = last_inbox_id(ctx.sessions)
    with session_scope(ctx.sessions) as session:  # the service writes TITLE
        own_writes.record(session, portal, "deal", 7, {"TITLE": "Новое"}, now=T0)
    gateway.put("deal", deal(7, "Новое", T0 + timedelta(minutes=1)))
    gateway.offline = [record(2, "ONCRMDEALUPDATE", 7, T0 + timedelta(minutes=1))]
    catch_up(ctx, portal, T0)
    drain(worker)
    assert [o[3] for o in outcomes(ctx.sessions, portal, mark)] == ["ignored:own-write"]


def test_onofflineevent_is_only_noted(ctx: AppContext, gateway: FakeGateway,
                                      portal: int) -> None:
    event = ClaimedEvent(1, portal, "ONOFFLINEEVENT", "", {}, True, 1, "online", 0, "w")
    with session_scope(ctx.sessions) as session:
        hctx = HandlerContext(session, gateway, portal, ctx.clock, ctx.settings)
        assert offline_event(hctx, event) == OFFLINE_NOTED
    assert gateway.calls == []


# -- against the emulator --------------------------------------------------------------------
def test_lost_online_events_come_back_through_the_offline_queue(
        emulator: EmulatorServer, live: AppServer) -> None:
    """Online deliveries dropped (Bitrix24 does not retry): catch-up + drain = the portal."""
    portal = emulator.portal
    pid = install(emulator, live)
    ctx = live.ctx
    portal.faults.add("drop_events", "ONCRM*")
    portal.faults.add("drop_events", "ONTASK*")
    company = int(act(portal, "crm.company.add", {"fields": {"TITLE": "ООО Ромашка"}}))
    deals = [int(act(portal, "crm.deal.add", {"fields": {"TITLE": f"Сделка {i}",
                                                          "COMPANY_ID": company}}))
             for i in range(3)]
    act(portal, "crm.deal.update", {"id": deals[0], "fields": {"STAGE_ID": "PREPARATION"}})
    act(portal, "crm.deal.update", {"id": deals[0], "fields": {"TITLE": "Сделка 0 (v2)"}},
        automation=True)
    task = int(act(portal, "tasks.task.add", {"fields": {"TITLE": "Позвонить клиенту",
                                                          "RESPONSIBLE_ID": 1}})["task"]["id"])
    act(portal, "crm.deal.delete", {"id": deals[2]})
    assert portal.events.wait_idle()
    assert rows(ctx.sessions) == []  # nothing arrived online
    report = catch_up(ctx, pid, ctx.clock())
    # The queue keeps one record per object and event: 1 company, 3 deal adds, 1 deal
    # update (of two), 1 delete, 1 task add.
    assert (report.records, report.stored, report.failed) == (7, 7, [])
    assert offline_reserved(app_gateway(live, pid)) == []
    assert portal.events.offline == {}
    drain(Worker(ctx, registry=build_registry()))
    touched = {"company": {company}, "deal": set(deals), "task": {task}}
    reader = portal_gateway(emulator)
    try:
        assert mirror_mismatches(ctx.sessions, pid, reader, touched) == []
    finally:
        reader.client.close()
    with ctx.sessions() as session:
        gone = mirror.load(session, pid, "deal", deals[2])
    assert gone is None or gone.deleted_at is not None


def test_window_1_against_the_emulator(emulator: EmulatorServer, live: AppServer,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A reservation lost by a crash is found with event.offline.list and processed."""
    portal = emulator.portal
    pid = install(emulator, live)
    ctx = live.ctx
    portal.faults.add("drop_events", "ONCRM*")
    deal_id = int(act(portal, "crm.deal.add", {"fields": {"TITLE": "Сделка"}}))
    act(portal, "crm.deal.delete", {"id": deal_id})
    factory = ctx.gateways
    crash_once(monkeypatch, offline, "_remember")
    with pytest.raises(KeyboardInterrupt):
        catch_up(ctx, pid, ctx.clock())
    assert len(offline_reserved(app_gateway(live, pid))) == 1
    monkeypatch.setattr(ctx, "gateways", _Listing(factory))
    report = catch_up(ctx, pid, ctx.clock())
    assert (report.adopted, report.stored) == (1, 2)
    assert offline_reserved(factory.for_portal(pid)) == []
    assert portal.events.offline == {}


class _Listing:
    """A provider whose gateways can list reservations."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def for_portal(self, portal_id: int) -> Any:
        """The portal's gateway with ``offline_reserved``."""
        return ListingGateway(self._inner.for_portal(portal_id))

    def forget(self, portal_id: int) -> None:
        """Delegate."""
        self._inner.forget(portal_id)

    def close(self) -> None:
        """Delegate."""
        self._inner.close()
