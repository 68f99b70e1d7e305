"""BitrixGateway and GatewayFactory against the emulator on loopback: every Gateway method."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import PortalSettings, Secret, Settings
from b24app.context import GatewayProvider
from b24app.crypto import SecretBox, generate_key
from b24app.db import make_engine, make_session_factory
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient, TokenProvider
from b24app.gateway.factory import GatewayFactory
from b24app.gateway.protocol import EventBinding, Gateway, OfflineBatch, UserFieldSpec
from b24app.gateway.types import Activity, Company, Contact, Deal, Task
from b24app.models.portal import Portal as PortalRow
from b24app.models.portal import PortalMode
from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.dispatch import act
from b24emu.limits import LimitSettings
from tests.fakes import FakeGateway

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
HANDLER = "https://app.example/b24/events"


# -- helpers shared with test_gateway_errors ----------------------------------------------------
class StaticTokens:
    """A ``TokenProvider`` that hands out one token (no refresh)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.rejections = 0

    def current(self) -> str:
        """The token."""
        return self.token

    def rejected(self, token: str) -> str:
        """Count the rejection and give the same token again."""
        self.rejections += 1
        return self.token


def app_token(portal: Portal, user_id: int = 1) -> str:
    """Mark the app installed and issue an access token of ``user_id``."""
    portal.app.installed = True
    access, _ = portal.auth.issue(portal.app.client_id, user_id)
    return access.token


@contextmanager
def gateway_at(endpoint: str, provider: TokenProvider | None = None,
               **options: Any) -> Iterator[BitrixGateway]:
    """A gateway on its own client (fast local throttle); closed afterwards."""
    client = BitrixClient(endpoint, token_provider=provider, requests_per_second=50.0, burst=50)
    try:
        yield BitrixGateway(client, **options)
    finally:
        client.close()


def requests_of(gateway: BitrixGateway) -> int:
    """HTTP requests the gateway's client has sent so far."""
    return gateway.client.stats.requests


def add_deals(portal: Portal, count: int, **fields: Any) -> list[int]:
    """``count`` deals made by the admin (events fire as on a portal)."""
    return [int(act(portal, "crm.deal.add", {"fields": {"TITLE": f"Сделка {i}", **fields}}))
            for i in range(count)]


def add_task(portal: Portal, **fields: Any) -> int:
    """A task of the admin; its ID."""
    task = act(portal, "tasks.task.add",
               {"fields": {"TITLE": "Позвонить клиенту", "RESPONSIBLE_ID": 1, **fields}})
    return int(task["task"]["id"])


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def hooked(emulator: EmulatorServer) -> Iterator[BitrixGateway]:
    """A gateway over the admin's incoming webhook."""
    with gateway_at(emulator.portal.webhook_url) as gateway:
        yield gateway


@pytest.fixture
def as_app(emulator: EmulatorServer) -> Iterator[BitrixGateway]:
    """A gateway of the installed local app (OAuth), as the admin."""
    tokens = StaticTokens(app_token(emulator.portal))
    with gateway_at(emulator.portal.client_endpoint, tokens) as gateway:
        yield gateway


@pytest.fixture
def new_card() -> Iterator[EmulatorServer]:
    """A portal with the new task card: comments live in the task chat."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False), new_task_card=True))
    portal.users.insert({"NAME": "Алексей", "LAST_NAME": "Админов", "ACTIVE": True,
                         "IS_ADMIN": True, "UF_DEPARTMENT": [1], "USER_TYPE": "employee"})
    server = EmulatorServer(portal).start()
    try:
        yield server
    finally:
        server.stop()


def test_bitrix_gateway_is_a_gateway(hooked: BitrixGateway) -> None:
    """mypy checks the assignment; the object answers as a Gateway."""
    gateway: Gateway = hooked
    assert gateway.get_deal(1) is None


# -- single records -----------------------------------------------------------------------------
def test_crm_records_round_trip(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """crm.deal/company/contact.get → our types; a missing record → None."""
    portal = emulator.portal
    company = int(act(portal, "crm.company.add", {"fields": {
        "TITLE": "ООО Ромашка", "PHONE": [{"VALUE": "+73832000000", "VALUE_TYPE": "WORK"}]}}))
    contact = int(act(portal, "crm.contact.add", {"fields": {
        "NAME": "Иван", "LAST_NAME": "Петров", "COMPANY_ID": company}}))
    deal = int(act(portal, "crm.deal.add", {"fields": {
        "TITLE": "Поставка", "OPPORTUNITY": 1500.5, "COMPANY_ID": company,
        "CONTACT_ID": contact}}))
    got = hooked.get_deal(deal)
    assert isinstance(got, Deal)
    assert (got.title, got.amount, got.company_id, got.contact_id) == (
        "Поставка", Decimal("1500.50"), company, contact)
    assert got.created_at is not None and got.created_at.tzinfo is not None
    firm = hooked.get_company(company)
    assert isinstance(firm, Company) and firm.title == "ООО Ромашка"
    assert firm.fields["PHONE"][0]["VALUE"] == "+73832000000"
    person = hooked.get_contact(contact)
    assert isinstance(person, Contact) and (person.name, person.company_id) == ("Иван", company)
    assert hooked.get_record("deal", deal) == got
    assert hooked.get_deal(999) is None
    assert hooked.get_company(999) is None
    assert hooked.get_contact(999) is None
    assert hooked.get_record("contact", 999) is None
    with pytest.raises(ValueError, match="unknown entity"):
        hooked.get_record("lead", 1)


def test_activity_round_trip(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """crm.activity.get keeps bindings; a missing activity → None."""
    deal = add_deals(emulator.portal, 1)[0]
    activity = int(act(emulator.portal, "crm.activity.add", {"fields": {
        "OWNER_TYPE_ID": 2, "OWNER_ID": deal, "TYPE_ID": 1, "SUBJECT": "Встреча",
        "COMMUNICATIONS": [{"VALUE": "+79990000000"}], "START_TIME": "2026-03-02T10:00:00+07:00",
        "END_TIME": "2026-03-02T11:00:00+07:00"}}))
    got = hooked.get_activity(activity)
    assert isinstance(got, Activity)
    assert (got.subject, got.type_id, got.owner_id) == ("Встреча", 1, deal)
    assert (2, deal) in got.bindings
    assert got.start_time == datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
    assert hooked.get_activity(999) is None


def test_task_get_selects_crm_links(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """tasks.task.get with UF_CRM_TASK; ``result: []`` for a missing task → None."""
    deal = add_deals(emulator.portal, 1)[0]
    other = int(emulator.portal.users.insert({"NAME": "Ольга", "ACTIVE": True,
                                              "UF_DEPARTMENT": [1], "USER_TYPE": "employee"}))
    tid = add_task(emulator.portal, UF_CRM_TASK=[f"D_{deal}"], ACCOMPLICES=[other],
                   DEADLINE="2026-03-05T18:00:00+07:00")
    task = hooked.get_task(tid)
    assert isinstance(task, Task)
    assert (task.title, task.responsible_id, task.status) == ("Позвонить клиенту", 1, 2)
    assert (task.crm, task.accomplices) == ((f"D_{deal}",), (other,))
    assert task.deadline == datetime(2026, 3, 5, 11, 0, tzinfo=UTC)
    assert hooked.get_record("task", tid) == task
    assert hooked.get_task(tid + 100) is None
    plain = hooked.get_task(add_task(emulator.portal))
    assert plain is not None and plain.crm == ()


def test_task_history_oldest_first(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """tasks.task.history.list → result.list, returned oldest first."""
    tid = add_task(emulator.portal)
    hooked.update_task(tid, {"TITLE": "Перезвонить"})
    act(emulator.portal, "tasks.task.start", {"taskId": tid})
    history = hooked.task_history(tid)
    assert [h.field for h in history] == ["NEW", "TITLE", "STATUS"]
    assert (history[1].from_value, history[1].to_value) == ("Позвонить клиенту", "Перезвонить")
    assert (history[2].from_value, history[2].to_value) == ("2", "3")
    assert hooked.task_history(tid + 100) == []


def test_task_comments_classic_card(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """Positional task.commentitem.add/getlist; comments oldest first; no task → []."""
    tid = add_task(emulator.portal)
    first = hooked.add_task_comment(tid, "Первый")
    second = hooked.add_task_comment(tid, "Второй")
    assert second > first > 0
    comments = hooked.task_comments(tid)
    assert [(c.id, c.task_id, c.author_id, c.message) for c in comments] == [
        (first, tid, 1, "Первый"), (second, tid, 1, "Второй")]
    assert comments[0].posted_at is not None
    assert hooked.task_comments(tid + 100) == []


def test_task_comments_new_card_read_the_chat(new_card: EmulatorServer) -> None:
    """New card: add still works (message ID); getlist fails, so the chat is read, paged."""
    portal = new_card.portal
    tid = add_task(portal)
    for i in range(54):
        act(portal, "tasks.task.chat.message.send", {"fields": {"taskId": tid, "text": f"m{i}"}})
    with gateway_at(portal.webhook_url) as gateway:
        mid = gateway.add_task_comment(tid, "Через старый метод")
        before = requests_of(gateway)
        comments = gateway.task_comments(tid)
        # getlist, tasks.task.get for the chat, two pages of im.dialog.messages.get.
        assert requests_of(gateway) - before == 4
        assert gateway.task_comments(tid + 100) == []
    assert [c.message for c in comments] == [*(f"m{i}" for i in range(54)),
                                             "Через старый метод"]
    assert comments[-1].id == mid
    assert {c.task_id for c in comments} == {tid}


# -- bulk reads ---------------------------------------------------------------------------------
def test_iter_records_is_a_chained_export(emulator: EmulatorServer,
                                          hooked: BitrixGateway) -> None:
    """120 deals: pages of 50/50/20 in ascending ID from two requests (start=-1 + >ID)."""
    ids = add_deals(emulator.portal, 120)
    before = requests_of(hooked)
    pages = list(hooked.iter_records("deal"))
    assert [len(p) for p in pages] == [50, 50, 20]
    assert [r.id for p in pages for r in p] == ids
    assert requests_of(hooked) - before == 2
    tail = [r.id for p in hooked.iter_records("deal", after_id=ids[99]) for r in p]
    assert tail == ids[100:]


@pytest.mark.parametrize("entity", ["deal", "company", "contact", "activity", "task"])
def test_iter_records_modified_since(emulator: EmulatorServer, hooked: BitrixGateway,
                                     entity: str) -> None:
    """Only records changed since the cursor, per entity's change field."""
    portal = emulator.portal
    portal.clock.set(NOW, frozen=True)
    old, new = _make(portal, entity), _make(portal, entity)
    portal.clock.advance(3600)
    _touch(portal, entity, new)
    since = NOW + timedelta(minutes=30)
    assert [r.id for p in hooked.iter_records(entity) for r in p] == [old, new]
    changed = [r for p in hooked.iter_records(entity, modified_since=since) for r in p]
    assert [r.id for r in changed] == [new]


def _make(portal: Portal, entity: str) -> int:
    if entity == "task":
        return add_task(portal)
    if entity == "activity":
        deal = add_deals(portal, 1)[0]
        return int(act(portal, "crm.activity.add", {"fields": {
            "OWNER_TYPE_ID": 2, "OWNER_ID": deal, "TYPE_ID": 2, "SUBJECT": "Звонок",
            "COMMUNICATIONS": [{"VALUE": "+79990000000"}]}}))
    fields = {"deal": {"TITLE": "С"}, "company": {"TITLE": "К"}, "contact": {"NAME": "Л"}}
    return int(act(portal, f"crm.{entity}.add", {"fields": fields[entity]}))


def _touch(portal: Portal, entity: str, record_id: int) -> None:
    if entity == "task":
        act(portal, "tasks.task.update", {"taskId": record_id, "fields": {"TITLE": "Изм"}})
        return
    field = "SUBJECT" if entity == "activity" else "COMMENTS"
    act(portal, f"crm.{entity}.update", {"id": record_id, "fields": {field: "изменено"}})


def test_users_departments_groups(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """user.get by offset pages (61 users: 2 requests), department.get, sonet_group.get."""
    portal = emulator.portal
    for i in range(60):
        portal.users.insert({"NAME": f"U{i}", "LAST_NAME": "Т", "ACTIVE": i % 7 != 0,
                             "UF_DEPARTMENT": [2], "USER_TYPE": "employee"})
    portal.departments.insert({"NAME": "НОИС", "SORT": 500, "PARENT": None, "UF_HEAD": 1})
    portal.departments.insert({"NAME": "Продажи", "SORT": 500, "PARENT": 1, "UF_HEAD": 5})
    portal.groups.insert({"NAME": "Запросы в ОТК", "ACTIVE": "Y", "OWNER_ID": 1})
    before = requests_of(hooked)
    users = hooked.users()
    assert requests_of(hooked) - before == 2
    assert [u.id for u in users] == list(range(1, 62))
    assert users[0].full_name == "Алексей Админов" and users[0].departments == (1,)
    assert not users[1].active and users[2].active
    heads = [(d.id, d.name, d.parent_id, d.head_id) for d in hooked.departments()]
    assert heads == [(1, "НОИС", None, 1), (2, "Продажи", 1, 5)]
    assert [(g.id, g.name, g.active) for g in hooked.groups()] == [(1, "Запросы в ОТК", True)]


# -- actions ------------------------------------------------------------------------------------
def test_update_task_and_notify(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """tasks.task.update with taskId+fields; im.notify.system.add, same TAG replaces."""
    portal = emulator.portal
    other = int(portal.users.insert({"NAME": "Ольга", "ACTIVE": True, "UF_DEPARTMENT": [1],
                                     "USER_TYPE": "employee"}))
    tid = add_task(portal)
    hooked.update_task(tid, {"RESPONSIBLE_ID": other, "DEADLINE": NOW})
    task = hooked.get_task(tid)
    assert task is not None and (task.responsible_id, task.deadline) == (other, NOW)
    first = hooked.notify(other, "Просрочена задача", "sla:1")
    second = hooked.notify(other, "Просрочена задача (2)", "sla:1")
    assert first is not None and second is not None and second > first
    rows = list(portal.notifications)
    assert [(r["USER_ID"], r["TAG"], r["REPLACED"]) for r in rows] == [
        (other, "sla:1", True), (other, "sla:1", False)]
    assert hooked.notify(999, "Никому") is None


def test_update_many_120_changes_3_requests_one_bad_id(emulator: EmulatorServer,
                                                      hooked: BitrixGateway) -> None:
    """Batches of 50; one bad ID fails alone and the other 119 are applied."""
    ids = add_deals(emulator.portal, 119)
    changes: dict[int, dict[str, Any]] = {i: {"TITLE": f"KPI {i}", "OPPORTUNITY": i}
                                          for i in ids}
    changes[9999] = {"TITLE": "нет такой"}
    before = requests_of(hooked)
    outcome = hooked.update_many("deal", changes)
    assert requests_of(hooked) - before == 3
    assert list(outcome) == list(changes)
    failed = {rid: err for rid, err in outcome.items() if err is not None}
    assert list(failed) == [9999] and failed[9999].method == "crm.deal.update"
    titles = {r.id: r.title for p in hooked.iter_records("deal") for r in p
              if isinstance(r, Deal)}
    assert titles == {i: f"KPI {i}" for i in ids}


def test_update_many_encodes_values(emulator: EmulatorServer, hooked: BitrixGateway) -> None:
    """None clears a field; an empty change costs nothing; other entities are refused."""
    deal = add_deals(emulator.portal, 1, COMMENTS="старый")[0]
    before = requests_of(hooked)
    assert hooked.update_many("deal", {deal: {"COMMENTS": None}, 77: {}}) == {deal: None,
                                                                             77: None}
    assert requests_of(hooked) - before == 1
    assert emulator.portal.deals.rows[deal]["COMMENTS"] in (None, "")
    with pytest.raises(ValueError, match="update_many"):
        hooked.update_many("task", {1: {"TITLE": "x"}})


# -- lifecycle ----------------------------------------------------------------------------------
def test_app_info_and_event_bindings(as_app: BitrixGateway) -> None:
    """app.info; event.bind is idempotent (second → False); event.get; event.unbind count."""
    info = as_app.app_info()
    assert info["INSTALLED"] is True and "VERSION" in info
    assert as_app.bind_event("ONCRMDEALUPDATE", HANDLER) is True
    assert as_app.bind_event("ONCRMDEALUPDATE", HANDLER) is False
    assert as_app.bind_event("onCrmDealAdd", HANDLER) is True
    assert as_app.bind_event("ONCRMDEALUPDATE", offline=True) is True
    assert as_app.bind_event("ONCRMDEALUPDATE", offline=True) is False
    assert as_app.bound_events() == [EventBinding("ONCRMDEALUPDATE", HANDLER),
                                     EventBinding("ONCRMDEALADD", HANDLER),
                                     EventBinding("ONCRMDEALUPDATE", "", offline=True)]
    assert as_app.unbind_event("ONCRMDEALADD", HANDLER) == 1
    assert as_app.unbind_event("ONCRMDEALADD", HANDLER) == 0
    assert as_app.unbind_event("ONCRMDEALUPDATE", offline=True) == 1
    assert as_app.bound_events() == [EventBinding("ONCRMDEALUPDATE", HANDLER)]


def test_userfields_and_smart_processes(hooked: BitrixGateway) -> None:
    """crm.<entity>.userfield.list/add from a UserFieldSpec; crm.type.list/add."""
    assert hooked.userfields("company") == []
    hooked.add_userfield("company", UserFieldSpec("UF_CRM_KPI_SCORE", "double", "KPI, баллы"))
    hooked.add_userfield("company", UserFieldSpec("UF_CRM_KPI_TAGS", "string", "Метки",
                                                  multiple=True, settings={"SIZE": 40}))
    assert hooked.userfields("company") == ["UF_CRM_KPI_SCORE", "UF_CRM_KPI_TAGS"]
    assert hooked.userfields("deal") == []
    with pytest.raises(ValueError, match="user fields"):
        hooked.userfields("task")
    assert hooked.crm_types() == []
    created = hooked.add_crm_type("KPI менеджеров", "nois_kpi")
    assert (created.title, created.code) == ("KPI менеджеров", "nois_kpi")
    assert created.entity_type_id >= 128
    assert hooked.crm_types() == [created]


def test_userfield_spec_reaches_the_portal(emulator: EmulatorServer,
                                           hooked: BitrixGateway) -> None:
    """Labels, MULTIPLE as Y/N and SETTINGS arrive as the spec says."""
    hooked.add_userfield("deal", UserFieldSpec("UF_CRM_KPI_TAGS", "string", "Метки",
                                               multiple=True, settings={"SIZE": 40}))
    row = next(iter(emulator.portal.userfields))
    assert (row["FIELD_NAME"], row["USER_TYPE_ID"], row["MULTIPLE"]) == (
        "UF_CRM_KPI_TAGS", "string", "Y")
    assert (row["EDIT_FORM_LABEL"], row["LIST_COLUMN_LABEL"]) == ("Метки", "Метки")
    assert row["SETTINGS"] == {"SIZE": "40"}


def test_offline_queue_reserve_reread_clear(emulator: EmulatorServer,
                                            as_app: BitrixGateway) -> None:
    """event.offline.get clear=0 reserves under a process_id; re-read; clear; error."""
    portal = emulator.portal
    assert as_app.offline_events() == OfflineBatch("", [])
    assert as_app.bind_event("ONCRMDEALUPDATE", offline=True)
    deals = add_deals(portal, 3)
    for deal in deals:
        act(portal, "crm.deal.update", {"id": deal, "fields": {"TITLE": "изм"}}, user_id=1)
    first = as_app.offline_events(limit=2)
    assert first.process_id and len(first.events) == 2
    assert [e.data["FIELDS"]["ID"] for e in first.events] == deals[:2]
    assert {e.event for e in first.events} == {"ONCRMDEALUPDATE"}
    assert all(e.timestamp is not None and e.message_id for e in first.events)
    other = as_app.offline_events()
    assert other.process_id != first.process_id
    assert [e.data["FIELDS"]["ID"] for e in other.events] == deals[2:]
    again = as_app.offline_events(process_id=first.process_id)
    assert again == first
    as_app.clear_offline(first.process_id, [])  # nothing named: nothing cleared
    as_app.clear_offline(first.process_id, [first.events[0].message_id])
    left = as_app.offline_events(process_id=first.process_id)
    assert [e.id for e in left.events] == [first.events[1].id]
    as_app.fail_offline(other.process_id, [other.events[0].message_id])
    assert as_app.offline_events(process_id=other.process_id).events == []
    as_app.clear_offline(first.process_id)
    assert as_app.offline_events(process_id=first.process_id).events == []
    assert as_app.offline_events().events == []  # the failed one waits with ERROR=1


def test_server_time_and_calendar_settings(emulator: EmulatorServer,
                                           hooked: BitrixGateway) -> None:
    """server.time as aware UTC (portal clock); calendar.settings.get as a dict."""
    emulator.portal.clock.set(NOW, frozen=True)
    assert hooked.server_time() == NOW
    settings = hooked.calendar_settings()
    assert settings["work_time_start"] == "9" and settings["week_holidays"] == ["SA", "SU"]


# -- contract parity with the fake --------------------------------------------------------------
def test_fake_and_real_gateways_agree(emulator: EmulatorServer, as_app: BitrixGateway) -> None:
    """FakeGateway answers like BitrixGateway for representative calls."""
    fake = FakeGateway()
    deal = as_app.get_deal(add_deals(emulator.portal, 1)[0])
    task = as_app.get_task(add_task(emulator.portal))
    assert deal is not None and task is not None
    fake.put("deal", deal)
    fake.put("task", task)
    gateways: list[Gateway] = [fake, as_app]
    answers = []
    for gateway in gateways:
        answers.append((
            gateway.get_deal(deal.id), gateway.get_deal(deal.id + 1),
            gateway.get_task(task.id), gateway.get_task(task.id + 1),
            [[r.id for r in p] for p in gateway.iter_records("deal")],
            gateway.bind_event("ONTASKADD", HANDLER), gateway.bind_event("ONTASKADD", HANDLER),
            gateway.update_many("deal", {deal.id: {"TITLE": "Новое"}}),
            gateway.offline_events(), gateway.task_comments(task.id),
        ))
    assert answers[0] == answers[1]


# -- the factory --------------------------------------------------------------------------------
@pytest.fixture
def sessions(sqlite_db_url: str) -> Iterator[sessionmaker[Session]]:
    """A migrated SQLite database's session factory."""
    engine = make_engine(sqlite_db_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _portal_row(sessions: sessionmaker[Session], member_id: str, *, mode: PortalMode,
                endpoint: str = "", secrets: SecretBox | None = None, access: str = "",
                refresh: str = "") -> int:
    with sessions() as session:
        row = PortalRow(member_id=member_id, domain="127.0.0.1", client_endpoint=endpoint,
                        mode=mode.value)
        if secrets is not None:
            row.set_secret(secrets, "access_token", access)
            row.set_secret(secrets, "refresh_token", refresh)
        session.add(row)
        session.commit()
        return row.id


class StubStore:
    """A token store handing out one portal's static tokens."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.asked: list[int] = []

    def provider(self, portal_id: int) -> TokenProvider:
        """The static provider."""
        self.asked.append(portal_id)
        return StaticTokens(self.token)


def _settings(emulator: EmulatorServer) -> Settings:
    portal = emulator.portal
    return Settings(portal=PortalSettings(
        webhook_url=Secret(portal.webhook_url), client_id=portal.app.client_id,
        client_secret=Secret(portal.app.client_secret), oauth_url=f"{emulator.url}/oauth/token/",
        requests_per_second=20.0, burst=10))


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "b24-gateway" and t.is_alive()]


def test_factory_caches_one_client_per_portal_on_one_loop(
        emulator: EmulatorServer, sessions: sessionmaker[Session]) -> None:
    """Webhook and local-app portals; cached per portal; one loop thread; forget; close."""
    box = SecretBox(generate_key())
    store = StubStore(app_token(emulator.portal))
    hook_id = _portal_row(sessions, "hook", mode=PortalMode.WEBHOOK)
    app_id = _portal_row(sessions, "app", mode=PortalMode.LOCAL_APP,
                         endpoint=emulator.portal.client_endpoint)
    factory = GatewayFactory(_settings(emulator), sessions, box, lambda: NOW, token_store=store)
    provider: GatewayProvider = factory
    try:
        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(lambda _: factory.for_portal(hook_id), range(16)))
        assert all(g is made[0] for g in made)
        app = factory.for_portal(app_id)
        assert app is not made[0] and store.asked == [app_id]
        assert made[0].client.endpoint == emulator.portal.webhook_url
        assert app.client.endpoint == emulator.portal.client_endpoint
        assert made[0].client.loop is app.client.loop is factory.loop
        assert len(_loop_threads()) == 1
        assert made[0].server_time().tzinfo is not None
        assert app.app_info()["INSTALLED"] is True
        provider.forget(hook_id)
        assert factory.for_portal(hook_id) is not made[0]
        with pytest.raises(LookupError):
            factory.for_portal(999)
    finally:
        provider.close()
    assert _loop_threads() == []
    with pytest.raises(RuntimeError, match="closed"):
        factory.for_portal(hook_id)


def test_factory_default_token_store_refreshes(emulator: EmulatorServer,
                                               sessions: sessionmaker[Session]) -> None:
    """Without an injected store the factory builds TokenStore + OAuthClient from settings."""
    portal = emulator.portal
    portal.app.installed = True
    access, refresh = portal.auth.issue(portal.app.client_id, 1)
    box = SecretBox(generate_key())
    pid = _portal_row(sessions, portal.member_id, mode=PortalMode.LOCAL_APP,
                      endpoint=portal.client_endpoint, secrets=box, access=access.token,
                      refresh=refresh.token)
    factory = GatewayFactory(_settings(emulator), sessions, box, lambda: NOW)
    try:
        gateway = factory.for_portal(pid)
        assert gateway.app_info()["INSTALLED"] is True
        portal.auth.expire_all()  # the next call gets 401 expired_token: one refresh
        assert gateway.app_info()["INSTALLED"] is True
        assert portal.auth.refresh_count == 1
    finally:
        factory.close()


def test_webhook_portal_needs_the_webhook_url(sessions: sessionmaker[Session]) -> None:
    """A webhook-mode portal without [portal] webhook_url is a configuration error."""
    hook_id = _portal_row(sessions, "hook", mode=PortalMode.WEBHOOK)
    factory = GatewayFactory(Settings(), sessions, SecretBox(generate_key()), lambda: NOW)
    try:
        with pytest.raises(ValueError, match="webhook_url"):
            factory.for_portal(hook_id)
        assert factory.loop is None  # nothing started for a portal it could not serve
    finally:
        factory.close()
