"""Handlers with a fake gateway: re-read, diff against the mirror, deletions, own writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Settings
from b24app.db import session_scope
from b24app.gateway.protocol import Record
from b24app.gateway.types import Activity, Company, Contact, Deal, Task
from b24app.inbox.queue import ClaimedEvent
from b24app.models import MirrorActivity, MirrorDeal, MirrorTask
from handlers.registry import AfterMirrorHook, HandlerContext, build_registry
from sync import mirror, own_writes
from sync.mirror import MirrorChange
from tests.fakes import FakeClock, FakeGateway
from tests.workerproc import seed_portal

DEAL_WIRE: dict[str, Any] = {
    "ID": "7", "TITLE": "Поставка реагентов", "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P",
    "CATEGORY_ID": "0", "OPPORTUNITY": "1500.50", "CURRENCY_ID": "RUB", "COMPANY_ID": "3",
    "CONTACT_ID": "0", "ASSIGNED_BY_ID": "5", "CREATED_BY_ID": "1",
    "DATE_CREATE": "2026-11-10T10:00:00+07:00", "DATE_MODIFY": "2026-11-15T12:00:00+07:00",
    "BEGINDATE": "2026-11-10T00:00:00+07:00", "CLOSED": "N", "MODIFY_BY_ID": "5",
    "UF_CRM_KPI_SCORE": "",
}
TASK_WIRE: dict[str, Any] = {
    "id": "11", "title": "Подготовить КП для ООО Ромашка", "status": "2", "createdBy": "1",
    "responsibleId": "5", "createdDate": "2026-11-10T10:00:00+07:00",
    "changedDate": "2026-11-10T10:00:00+07:00", "groupId": "0", "accomplices": ["3"],
    "ufCrmTask": ["D_7"],
}


def deal(**changes: Any) -> Deal:
    """The test deal with wire fields changed."""
    return Deal.from_wire({**DEAL_WIRE, **changes})


def task(**changes: Any) -> Task:
    """The test task with wire fields changed."""
    return Task.from_wire({**TASK_WIRE, **changes})


class Harness:
    """Runs events through the real registry against one portal and a fake gateway."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.portal = seed_portal(sessions)
        self.gateway = FakeGateway()
        self.clock = FakeClock()
        self.changes: list[tuple[str, MirrorChange]] = []

    def _hook(self, ctx: HandlerContext, event: ClaimedEvent, change: MirrorChange) -> None:
        self.changes.append((event.event, change))

    def handle(self, name: str, entity_id: str,
               hooks: Sequence[AfterMirrorHook] | None = None) -> str:
        """Dispatch one event in its own transaction; the outcome."""
        registry = build_registry([self._hook] if hooks is None else hooks)
        event = ClaimedEvent(1, self.portal, name, entity_id, {}, True, 1, "online", 0, "w")
        with session_scope(self.sessions) as session:
            ctx = HandlerContext(session, self.gateway, self.portal, self.clock, Settings(),
                                 registry.after_mirror)
            return registry.dispatch(ctx, event)

    def row(self, model: type[mirror.MirrorModel], record_id: int) -> Any:
        """The stored mirror row."""
        with self.sessions() as session:
            return session.get(model, {"portal_id": self.portal, "id": record_id})

    def own_write(self, entity: str, entity_id: int | str, fields: dict[str, Any]) -> None:
        """Record a write of the service, as write-back will."""
        with session_scope(self.sessions) as session:
            own_writes.record(session, self.portal, entity, entity_id, fields,
                              now=self.clock())


@pytest.fixture
def h(session_factory: sessionmaker[Session]) -> Harness:
    """A harness on the test database."""
    return Harness(session_factory)


def test_deal_add_mirrors_typed_columns_and_raw(h: Harness) -> None:
    h.gateway.put("deal", deal())
    assert h.handle("ONCRMDEALADD", "7") == "mirror:created"
    row = h.row(MirrorDeal, 7)
    assert (row.title, row.stage_id, row.semantic, row.amount, row.currency) == (
        "Поставка реагентов", "NEW", "P", Decimal("1500.50"), "RUB")
    assert (row.company_id, row.contact_id, row.assigned_by_id, row.closed) == (3, None, 5, False)
    assert row.modified_at == datetime(2026, 11, 15, 5, 0, tzinfo=UTC)
    assert row.begin_date == date(2026, 11, 10)
    assert row.raw == DEAL_WIRE
    assert (row.deleted_at, row.synced_at) == (None, h.clock())
    assert h.gateway.calls == ["get:deal:7"]
    assert [kind for _, kind in ((e, c.kind) for e, c in h.changes)] == ["created"]


def test_the_same_change_delivered_again_writes_nothing(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    synced = h.row(MirrorDeal, 7).synced_at
    h.clock.advance(minutes=5)
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:unchanged"
    assert h.row(MirrorDeal, 7).synced_at == synced
    assert len(h.changes) == 1  # no hook for a change already seen


def test_an_update_reports_before_and_after(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    h.gateway.put("deal", deal(OPPORTUNITY="2000", DATE_MODIFY="2026-11-16T09:00:00+07:00"))
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:updated"
    assert h.row(MirrorDeal, 7).amount == Decimal("2000.00")
    event, change = h.changes[-1]
    assert (event, change.kind) == ("ONCRMDEALUPDATE", "updated")
    assert (change.before["amount"], change.after["amount"]) == (Decimal("1500.50"),
                                                                 Decimal("2000.00"))
    assert set(change.after) == {"amount", "modified_at", "raw"}


def test_delete_marks_the_row_without_a_rest_call(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    h.gateway.calls.clear()
    h.clock.advance(minutes=1)
    assert h.handle("ONCRMDEALDELETE", "7") == "mirror:deleted"
    assert h.row(MirrorDeal, 7).deleted_at == h.clock()
    assert h.gateway.calls == []
    assert h.handle("ONCRMDEALDELETE", "7") == "mirror:unchanged"
    assert h.handle("ONCRMDEALDELETE", "8") == "mirror:unchanged"  # never mirrored
    assert [c.kind for _, c in h.changes] == ["created", "deleted"]


def test_a_record_gone_before_the_read_is_marked_deleted(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    del h.gateway.records["deal"][7]
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:deleted"
    assert h.row(MirrorDeal, 7).deleted_at == h.clock()
    assert h.handle("ONCRMDEALADD", "99") == "mirror:unchanged"  # added and gone already


def test_a_restored_record_comes_back(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    h.handle("ONCRMDEALDELETE", "7")
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:updated"
    assert h.row(MirrorDeal, 7).deleted_at is None


def test_our_own_write_refreshes_the_mirror_but_is_ignored(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    h.own_write("deal", 7, {"UF_CRM_KPI_SCORE": 42})
    # Bitrix24 stamps who and when on every write; those do not make it a user's change.
    h.gateway.put("deal", deal(UF_CRM_KPI_SCORE="42.00", MODIFY_BY_ID="1",
                               DATE_MODIFY="2026-11-16T09:00:00+07:00"))
    assert h.handle("ONCRMDEALUPDATE", "7") == "ignored:own-write"
    assert h.row(MirrorDeal, 7).raw["UF_CRM_KPI_SCORE"] == "42.00"
    assert [c.kind for _, c in h.changes] == ["created"]  # no business reaction
    # The mark is used up: a user setting the same value later is a user's change.
    h.gateway.put("deal", deal(UF_CRM_KPI_SCORE="7"))
    h.handle("ONCRMDEALUPDATE", "7")
    h.gateway.put("deal", deal(UF_CRM_KPI_SCORE="42"))
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:updated"


def test_a_user_change_next_to_our_write_is_not_ignored(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    h.own_write("deal", 7, {"UF_CRM_KPI_SCORE": "42"})
    h.gateway.put("deal", deal(UF_CRM_KPI_SCORE="42", STAGE_ID="WON", STAGE_SEMANTIC_ID="S"))
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:updated"
    assert h.changes[-1][1].after["semantic"] == "S"


def test_an_expired_own_write_mark_does_not_count(h: Harness) -> None:
    h.gateway.put("deal", deal())
    h.handle("ONCRMDEALADD", "7")
    h.own_write("deal", 7, {"UF_CRM_KPI_SCORE": "42"})
    h.clock.advance(minutes=16)
    h.gateway.put("deal", deal(UF_CRM_KPI_SCORE="42"))
    assert h.handle("ONCRMDEALUPDATE", "7") == "mirror:updated"
    with session_scope(h.sessions) as session:
        assert own_writes.purge_expired(session, h.clock()) == 1


# (written by the service, read back from Bitrix24, the same value?)
WIRE_FORMS: list[tuple[Any, Any, bool]] = [
    (42, "42", True), (42, "42.00", True), ("1500.5", Decimal("1500.50"), True),
    (True, "Y", True), (False, "N", True), (None, "", True), ([1, 2], ("1", "2"), True),
    (datetime(2026, 1, 2, tzinfo=UTC), "2026-01-02T00:00:00+00:00", True),
    ("42", "43", False), ("Y", "N", False), ("abc", "ABC", False),
]


def test_own_write_values_compare_in_wire_form(h: Harness) -> None:
    h.own_write("deal", 7, {f"UF_CRM_{n}": written for n, (written, _, _) in
                            enumerate(WIRE_FORMS)})
    with h.sessions() as session:
        verdicts = [own_writes.is_own(session, h.portal, "deal", 7, {f"uf_crm_{n}": read},
                                      now=h.clock())
                    for n, (_, read, _) in enumerate(WIRE_FORMS)]
    assert verdicts == [same for _, _, same in WIRE_FORMS]


def test_task_events_diff_the_mirror(h: Harness) -> None:
    h.gateway.put("task", task())
    assert h.handle("ONTASKADD", "11") == "mirror:created"
    row = h.row(MirrorTask, 11)
    assert (row.title, row.responsible_id, row.accomplices, row.crm) == (
        "Подготовить КП для ООО Ромашка", 5, [3], ["D_7"])
    h.gateway.put("task", task(responsibleId="8", changedDate="2026-11-11T10:00:00+07:00"))
    assert h.handle("ONTASKUPDATE", "11") == "mirror:updated"
    change = h.changes[-1][1]
    assert (change.before["responsible_id"], change.after["responsible_id"]) == (5, 8)
    assert h.handle("ONTASKUPDATE", "11") == "mirror:unchanged"
    h.gateway.calls.clear()
    assert h.handle("ONTASKDELETE", "11") == "mirror:deleted"
    assert h.gateway.calls == []


def test_our_own_task_write_is_ignored(h: Harness) -> None:
    h.gateway.put("task", task())
    h.handle("ONTASKADD", "11")
    h.own_write("task", 11, {"RESPONSIBLE_ID": 8})  # update_task's names match the columns
    h.gateway.put("task", task(responsibleId="8", changedDate="2026-11-11T10:00:00+07:00"))
    assert h.handle("ONTASKUPDATE", "11") == "ignored:own-write"
    assert h.row(MirrorTask, 11).responsible_id == 8


def test_a_comment_refreshes_its_task_and_always_reaches_the_hooks(h: Harness) -> None:
    h.gateway.put("task", task())
    h.handle("ONTASKADD", "11")
    assert h.handle("ONTASKCOMMENTADD", "11:55") == "task:refreshed"
    assert h.handle("ONTASKCOMMENTADD", "11:m901") == "task:refreshed"  # new task card
    assert [(e, c.kind) for e, c in h.changes] == [
        ("ONTASKADD", "created"), ("ONTASKCOMMENTADD", "unchanged"),
        ("ONTASKCOMMENTADD", "unchanged")]
    assert h.gateway.calls == ["get:task:11"] * 3


def test_our_own_comment_is_ignored(h: Harness) -> None:
    h.gateway.put("task", task())
    with session_scope(h.sessions) as session:
        own_writes.record_comment(session, h.portal, 11, 56, now=h.clock())
    assert h.handle("ONTASKCOMMENTADD", "11:56") == "ignored:own-write"
    assert h.row(MirrorTask, 11) is not None  # the task was still refreshed
    assert h.changes == []


def _company() -> Company:
    return Company.from_wire({"ID": "3", "TITLE": "ООО Ромашка", "ASSIGNED_BY_ID": "5",
                              "DATE_MODIFY": "2026-11-15T12:00:00+07:00"})


def _contact() -> Contact:
    return Contact.from_wire({"ID": "4", "NAME": "Иван", "LAST_NAME": "Петров",
                              "COMPANY_ID": "3", "ASSIGNED_BY_ID": "5"})


def _activity() -> Activity:
    return Activity.from_wire({
        "ID": "9", "TYPE_ID": "2", "PROVIDER_ID": "VOXIMPLANT_CALL", "SUBJECT": "Звонок",
        "DIRECTION": "2", "COMPLETED": "Y", "OWNER_TYPE_ID": "2", "OWNER_ID": "7",
        "RESPONSIBLE_ID": "5", "AUTHOR_ID": "5", "CREATED": "2026-11-15T12:00:00+07:00",
        "BINDINGS": [{"OWNER_TYPE_ID": "2", "OWNER_ID": "7"}]})


@pytest.mark.parametrize(("entity", "event", "record"), [
    ("company", "ONCRMCOMPANY", _company()), ("contact", "ONCRMCONTACT", _contact()),
    ("activity", "onCrmActivity", _activity()),
])
def test_every_crm_entity_is_mirrored(h: Harness, entity: str, event: str,
                                      record: Record) -> None:
    h.gateway.put(entity, record)
    rid = str(record.id)
    assert h.handle(f"{event}Add", rid) == "mirror:created"
    assert h.handle(f"{event}Update", rid) == "mirror:unchanged"
    assert h.handle(f"{event}Delete", rid) == "mirror:deleted"


def test_activity_bindings_are_mirrored(h: Harness) -> None:
    h.gateway.put("activity", _activity())
    h.handle("ONCRMACTIVITYADD", "9")
    row = h.row(MirrorActivity, 9)
    assert (row.bindings, row.completed, row.owner_id) == ([[2, 7]], True, 7)


def test_unknown_test_and_malformed_events_are_ignored(h: Harness) -> None:
    assert h.handle("ONSOMETHINGNEW", "1") == "ignored:unknown-event"
    assert h.handle("onAppTest", "") == "ignored:app-test"
    assert h.handle("ONCRMDEALUPDATE", "") == "ignored:bad-entity-id"
    assert h.handle("ONTASKCOMMENTADD", "x:1") == "ignored:bad-entity-id"
    assert h.gateway.calls == []


def test_the_registry_covers_every_bound_event() -> None:
    registry = build_registry()
    crm = [f"ONCRM{e}{a}" for e in ("DEAL", "COMPANY", "CONTACT", "ACTIVITY")
           for a in ("ADD", "UPDATE", "DELETE")]
    tasks = ["ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD"]
    assert set(registry.handlers) == {*crm, *tasks, "ONAPPTEST", "ONOFFLINEEVENT"}
    assert registry.handler_for("onCrmDealAdd") is registry.handler_for("ONCRMDEALADD")


def test_mirror_upsert_quantizes_like_the_column(h: Harness) -> None:
    with session_scope(h.sessions) as session:
        first = mirror.upsert(session, h.portal, "deal", deal(OPPORTUNITY="10.005"),
                              now=h.clock())
        again = mirror.upsert(session, h.portal, "deal", deal(OPPORTUNITY="10.005"),
                              now=h.clock() + timedelta(seconds=1))
    assert (first.kind, again.kind) == ("created", "unchanged")
