"""Mirror loads: reference tables (diff-only full refresh), stage history by ID, the bulk load."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient
from b24app.gateway.types import Department, Group, User
from b24app.models import (
    MirrorCompany,
    MirrorDeal,
    MirrorDepartment,
    MirrorGroup,
    MirrorStageHistory,
    MirrorUser,
)
from b24emu import EmulatorServer
from b24emu.datasets.scale import add_scale
from sync.bulk import bulk_load, read_ahead
from sync.reference import Plan, Stored, plan, refresh_reference
from sync.stage_history import history_values, sync_stage_history
from tests.fakes import FakeGateway
from tests.workerproc import seed_portal

T0 = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


@pytest.fixture
def sessions(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on the migrated test database of this backend."""
    return session_factory


@pytest.fixture
def portal_id(sessions: sessionmaker[Session]) -> int:
    """An installed portal."""
    return seed_portal(sessions)


# ---------------------------------------------------------------- the pure diff


@pytest.mark.parametrize(("stored", "listed", "expected"), [
    pytest.param({}, {1: {"name": "a"}}, Plan(create={1: {"name": "a"}}), id="new"),
    pytest.param({1: Stored({"name": "a"}, False)}, {1: {"name": "a"}}, Plan(unchanged=1),
                 id="same"),
    pytest.param({1: Stored({"name": "a"}, False)}, {1: {"name": "b"}},
                 Plan(update={1: {"name": "b"}}), id="changed column only"),
    pytest.param({1: Stored({"name": "a"}, False)}, {}, Plan(delete={1}), id="unlisted"),
    pytest.param({1: Stored({"name": "a"}, True)}, {}, Plan(), id="deleted stays deleted"),
    pytest.param({1: Stored({"name": "a"}, True)}, {1: {"name": "a"}}, Plan(restore={1}),
                 id="listed again"),
])
def test_plan(stored: Mapping[int, Stored], listed: Mapping[int, dict[str, Any]],
              expected: Plan) -> None:
    assert plan(stored, listed) == expected


# ---------------------------------------------------------------- reference refresh


def org() -> FakeGateway:
    return FakeGateway(
        user_list=[User(1, "Алексей", "Админов", True, (1,)),
                   User(2, "Дмитрий", "Колесников", True, (2,), "d@nois.example", "РОП"),
                   User(3, "Анна", "Белова", True, (2,))],
        department_list=[Department(1, "НОИС", None, 1), Department(2, "Отдел продаж", 1, 2)],
        group_list=[Group(1, "Заявки в закупки", True), Group(3, "Маркетинг: идеи", True)])


def mirrored(session: Session, pid: int) -> dict[str, dict[int, tuple[Any, ...]]]:
    """Each reference table as id → (columns..., deleted, synced_at)."""
    return {
        "users": {u.id: (u.name, u.active, u.departments, u.position, u.deleted_at, u.synced_at)
                  for u in session.scalars(select(MirrorUser).where(MirrorUser.portal_id == pid))},
        "departments": {d.id: (d.name, d.parent_id, d.head_id, d.deleted_at, d.synced_at)
                        for d in session.scalars(select(MirrorDepartment).where(
                            MirrorDepartment.portal_id == pid))},
        "groups": {g.id: (g.name, g.active, g.deleted_at, g.synced_at)
                   for g in session.scalars(select(MirrorGroup).where(
                       MirrorGroup.portal_id == pid))},
    }


def test_reference_refresh_writes_only_what_changed(sessions: sessionmaker[Session],
                                                    portal_id: int) -> None:
    gateway = org()
    with sessions.begin() as session:
        first = refresh_reference(session, portal_id, gateway, now=T0)
    assert (first.users.created, first.departments.created, first.groups.created) == (3, 2, 2)
    with sessions.begin() as session:
        second = refresh_reference(session, portal_id, gateway, now=T1)
        before = mirrored(session, portal_id)
    assert second.writes == 0 and second.users.unchanged == 3
    assert before["users"][2] == ("Дмитрий", True, [2], "РОП", None, T0)  # synced_at kept

    # A rep leaves, the head changes, a group is archived away, a new one appears.
    gateway.user_list[2] = User(3, "Анна", "Белова", False, (2,))
    gateway.department_list[1] = Department(2, "Отдел продаж", 1, 3)
    gateway.group_list = [Group(1, "Заявки в закупки", True), Group(4, "Логистика", True)]
    with sessions.begin() as session:
        third = refresh_reference(session, portal_id, gateway, now=T1)
        after = mirrored(session, portal_id)
    assert (third.users.updated, third.departments.updated) == (1, 1)
    assert (third.groups.created, third.groups.deleted, third.groups.unchanged) == (1, 1, 1)
    assert after["users"][3][1] is False and after["departments"][2][2] == 3
    assert after["groups"][3][2] == T1 and after["users"][1] == before["users"][1]

    gateway.group_list.append(Group(3, "Маркетинг: идеи", True))  # listed again
    with sessions.begin() as session:
        fourth = refresh_reference(session, portal_id, gateway, now=T1)
        assert mirrored(session, portal_id)["groups"][3][2] is None
    assert (fourth.groups.updated, fourth.writes) == (1, 1)


def test_an_empty_listing_deletes_nothing(sessions: sessionmaker[Session],
                                          portal_id: int) -> None:
    gateway = org()
    with sessions.begin() as session:
        refresh_reference(session, portal_id, gateway, now=T0)
    gateway.user_list = []  # a missing scope looks like a portal without employees
    with sessions.begin() as session:
        report = refresh_reference(session, portal_id, gateway, now=T1)
        rows = mirrored(session, portal_id)["users"]
    assert report.users.skipped_deletes and report.users.deleted == 0
    assert all(row[4] is None for row in rows.values())


# ---------------------------------------------------------------- stage history


class Pages:
    """A ``PageReader`` over wire rows; records the ``after_id`` of each call."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.calls: list[int] = []

    def iter_pages(self, method: str, params: Mapping[str, Any] | None = None, *,
                   after_id: int = 0) -> Iterator[list[dict[str, Any]]]:
        assert method == "crm.stagehistory.list" and params == {"entityTypeId": 2}
        self.calls.append(after_id)
        rows = [r for r in self.rows if int(r["ID"]) > after_id]
        for start in range(0, len(rows), 50):
            yield rows[start:start + 50]


class Overlapping(Pages):
    """A reader that starts ten rows too early."""

    def iter_pages(self, method: str, params: Mapping[str, Any] | None = None, *,
                   after_id: int = 0) -> Iterator[list[dict[str, Any]]]:
        return super().iter_pages(method, params, after_id=after_id - 10)


def wire(row_id: int, deal: int, stage: str = "NEW") -> dict[str, Any]:
    semantic = {"WON": "S", "LOSE": "F"}.get(stage, "P")
    return {"ID": str(row_id), "TYPE_ID": "1" if stage == "NEW" else "2",
            "OWNER_ID": str(deal), "CREATED_TIME": "2026-11-16T09:00:00+07:00",
            "CATEGORY_ID": "0", "STAGE_SEMANTIC_ID": semantic, "STAGE_ID": stage}


def history(sessions: sessionmaker[Session], pid: int) -> list[tuple[int, int, str, str]]:
    with sessions() as session:
        return [(r[0], r[1], r[2], r[3]) for r in session.execute(
            select(MirrorStageHistory.id, MirrorStageHistory.owner_id,
                   MirrorStageHistory.semantic, MirrorStageHistory.stage_id)
            .where(MirrorStageHistory.portal_id == pid).order_by(MirrorStageHistory.id))]


def test_history_values() -> None:
    assert history_values(wire(7, 42, "WON")) == {
        "id": 7, "owner_id": 42, "type_id": 2, "created_at": datetime(2026, 11, 16, 2, tzinfo=UTC),
        "category_id": 0, "semantic": "S", "stage_id": "WON"}


def test_stage_history_is_incremental_by_id(sessions: sessionmaker[Session],
                                            portal_id: int) -> None:
    reader = Pages([wire(i, 100 + i % 7) for i in range(1, 121)])
    first = sync_stage_history(sessions, portal_id, reader, now=T0, chunk=40)
    assert (first.read, first.after_id, first.last_id) == (120, 0, 120)
    reader.rows += [wire(121, 3, "WON"), wire(122, 3, "LOSE")]  # a win, then a refund
    second = sync_stage_history(sessions, portal_id, reader, now=T1)
    assert (second.read, second.after_id, second.last_id) == (2, 120, 122)
    assert reader.calls == [0, 120]
    assert history(sessions, portal_id)[-2:] == [(121, 3, "S", "WON"), (122, 3, "F", "LOSE")]
    # A reader that overlaps (or a second process) inserts nothing twice.
    assert sync_stage_history(sessions, portal_id, Overlapping(reader.rows), now=T1).read == 10
    assert len(history(sessions, portal_id)) == 122


# ---------------------------------------------------------------- the bulk load


def failing(after: int) -> Iterator[int]:
    yield from range(after)
    raise TimeoutError("the portal went away")


def test_read_ahead_keeps_order_errors_and_stops() -> None:
    assert list(read_ahead(iter(range(500)), depth=3)) == list(range(500))
    got: list[int] = []
    with pytest.raises(TimeoutError, match="went away"):
        got.extend(read_ahead(failing(7), depth=2))
    assert got == list(range(7))
    # A consumer that stops early (a failed write) does not leave the reader blocked.
    pages = read_ahead(itertools.count(), depth=2)
    assert [next(pages), next(pages)] == [0, 1]
    pages.close()
    assert not any(t.name == "bulk-read-ahead" for t in threading.enumerate())




def call(server: EmulatorServer, method: str, params: dict[str, Any]) -> Any:
    resp = requests.post(f"{server.portal.webhook_url}{method}.json", json=params, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


@pytest.fixture
def client(emulator: EmulatorServer) -> Iterator[BitrixClient]:
    """An unthrottled client of the emulator's admin webhook."""
    built = BitrixClient(emulator.portal.webhook_url, requests_per_second=1000.0, burst=1000)
    yield built
    built.close()


def counts(sessions: sessionmaker[Session], pid: int) -> tuple[int, int]:
    with sessions() as session:
        return (int(session.scalar(select(func.count()).select_from(MirrorDeal)
                                   .where(MirrorDeal.portal_id == pid)) or 0),
                int(session.scalar(select(func.count()).select_from(MirrorCompany)
                                   .where(MirrorCompany.portal_id == pid)) or 0))


def test_bulk_load_is_chunked_and_diff_only(sessions: sessionmaker[Session], portal_id: int,
                                            emulator: EmulatorServer,
                                            client: BitrixClient) -> None:
    add_scale(emulator.portal, deals=260)  # 260 deals of 2 companies: 6 pages, 2 batches
    gateway = BitrixGateway(client)
    entities = ("company", "deal")
    first = bulk_load(sessions, portal_id, gateway, now=T0, entities=entities, chunk=100)
    assert [(r.read, r.created) for r in first.values()] == [(2, 2), (260, 260)]
    # Companies fit the first page; deals: the first page (it counts the rows), then one batch
    # of five chained pages.
    assert client.stats.requests == 3
    assert counts(sessions, portal_id) == (260, 2)

    # A handler mirrored deal 1 from crm.deal.get: keys a list does not send must survive.
    with sessions.begin() as session:
        row = session.get_one(MirrorDeal, {"portal_id": portal_id, "id": 1})
        row.raw = {**row.raw, "UF_FROM_GET": "kept"}
        session.flush()
        touched = row.synced_at
    call(emulator, "crm.deal.update", {"id": 2, "fields": {"STAGE_ID": "LOSE"}})
    again = bulk_load(sessions, portal_id, gateway, now=T1, entities=entities)
    assert [(r.created, r.updated, r.unchanged) for r in again.values()] == [(0, 0, 2),
                                                                             (0, 1, 259)]
    with sessions() as session:
        kept = session.get_one(MirrorDeal, {"portal_id": portal_id, "id": 1})
        moved = session.get_one(MirrorDeal, {"portal_id": portal_id, "id": 2})
        assert kept.raw["UF_FROM_GET"] == "kept" and kept.synced_at == touched
        assert (moved.semantic, moved.stage_id, moved.synced_at) == ("F", "LOSE", T1)

    # fast-bitrix24's get_all reads the same rows: nothing to write.
    same = bulk_load(sessions, portal_id, gateway, now=T1, entities=entities, mode="get_all")
    assert [(r.read, r.unchanged) for r in same.values()] == [(2, 2), (260, 260)]


def test_stage_history_from_the_emulator(sessions: sessionmaker[Session], portal_id: int,
                                         emulator: EmulatorServer, client: BitrixClient) -> None:
    deals = [call(emulator, "crm.deal.add", {"fields": {"TITLE": f"Сделка {i}"}})
             for i in range(3)]
    call(emulator, "crm.deal.update", {"id": deals[0], "fields": {"STAGE_ID": "WON"}})
    assert sync_stage_history(sessions, portal_id, client, now=T0).read == 4
    assert sync_stage_history(sessions, portal_id, client, now=T0).read == 0
    call(emulator, "crm.deal.update", {"id": deals[0], "fields": {"STAGE_ID": "LOSE"}})
    report = sync_stage_history(sessions, portal_id, client, now=T1)
    assert (report.read, report.after_id) == (1, 4)
    assert [(owner, semantic) for _, owner, semantic, _ in history(sessions, portal_id)] == [
        (deals[0], "P"), (deals[1], "P"), (deals[2], "P"), (deals[0], "S"), (deals[0], "F")]
