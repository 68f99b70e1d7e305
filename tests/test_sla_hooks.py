"""The SLA hook through the real registry with a fake gateway: starts, stops, handovers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Settings, SlaSettings
from b24app.db import session_scope
from b24app.gateway.types import (
    Activity,
    Company,
    Deal,
    Department,
    Task,
    TaskComment,
    TaskHistoryEntry,
    User,
)
from b24app.inbox.queue import ClaimedEvent
from b24app.models import MirrorDepartment, MirrorUser, Portal, SlaClock, SlaClockEvent
from handlers.registry import HandlerContext, build_registry
from handlers.sla import sla_hook
from handlers.task_format import task_format_hook
from tests.fakes import FakeClock, FakeGateway
from tests.workerproc import seed_portal

NSK = ZoneInfo("Asia/Novosibirsk")
CREATOR, REP, REP2, ROP, OTHER = 1, 5, 6, 7, 9
SALES, PROCUREMENT, REQUESTS = 2, 3, 40
INSTALLED = datetime(2026, 11, 2, 9, 0, tzinfo=ZoneInfo("Asia/Novosibirsk"))


def nsk(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Novosibirsk wall-clock instant of 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=NSK)


def make_task(task_id: int = 11, **changes: Any) -> Task:
    """A task set by CREATOR for REP on Monday 2026-11-16 at 10:00."""
    fields: dict[str, Any] = {
        "id": task_id, "title": "Подготовить КП для ООО «Ромашка»", "description": "",
        "status": 2, "created_by": CREATOR, "responsible_id": REP,
        "created_at": nsk(11, 16, 10), "changed_at": nsk(11, 16, 10),
        "deadline": nsk(11, 20, 18), "closed_at": None, "status_changed_at": nsk(11, 16, 10),
        "group_id": 0}
    fields.update(changes)
    return Task(**fields)


def make_deal(deal_id: int = 7, **changes: Any) -> Deal:
    """A new deal of company 3 for REP, created by CREATOR (a web form)."""
    fields: dict[str, Any] = {
        "id": deal_id, "title": "Поставка петель Blum", "stage_id": "NEW", "semantic": "P",
        "category_id": 0, "amount": Decimal(0), "currency": "RUB", "company_id": 3,
        "contact_id": None, "assigned_by_id": REP, "created_by_id": CREATOR,
        "created_at": nsk(11, 16, 10), "modified_at": nsk(11, 16, 10),
        "moved_at": nsk(11, 16, 10), "begin_date": None, "close_date": None, "closed": False,
        "last_activity_at": None, "fields": {}}
    fields.update(changes)
    return Deal(**fields)


def make_activity(activity_id: int, type_id: int, direction: int, owners: list[tuple[int, int]],
                  at: datetime, *, responsible: int = REP) -> Activity:
    """An activity bound to ``owners`` (the first is its owner)."""
    return Activity(activity_id, type_id, "", "Письмо", direction, True, owners[0][0],
                    owners[0][1], responsible, responsible, at, at, at, at,
                    tuple(owners[1:]))


@dataclass(frozen=True)
class ScopedSla(SlaSettings):
    """``[sla]`` with the proposed ``department_ids`` key."""

    department_ids: tuple[int, ...] = ()


class SlaHarness:
    """Runs events through ``build_registry([sla_hook])`` against one portal."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings | None = None) -> None:
        self.sessions = sessions
        self.portal = seed_portal(sessions)
        self.clock = FakeClock(nsk(11, 16, 10, 1).astimezone(UTC))
        self.gateway = FakeGateway(clock=self.clock)
        self.settings = settings or Settings()
        with session_scope(sessions) as session:  # installed well before the test's events
            session.execute(update(Portal).values(installed_at=INSTALLED))

    def handle(self, name: str, entity_id: str | int) -> str:
        """Dispatch one event in its own transaction; the outcome."""
        registry = build_registry([sla_hook])
        event = ClaimedEvent(1, self.portal, name, str(entity_id), {}, True, 1, "online", 0, "w")
        with session_scope(self.sessions) as session:
            ctx = HandlerContext(session, self.gateway, self.portal, self.clock, self.settings,
                                 registry.after_mirror)
            return registry.dispatch(ctx, event)

    def comment(self, task_id: int, author: int, at: datetime, comment_id: int = 0) -> str:
        """A comment in the portal; the event's entity id."""
        items = self.gateway.comments.setdefault(task_id, [])
        cid = comment_id or 100 + len(items)
        items.append(TaskComment(cid, task_id, author, at, "Принял, готовлю"))
        return f"{task_id}:{cid}"

    def log(self, task_id: int, field: str, user: int, at: datetime,
            change: tuple[str | None, str | None] = (None, None)) -> None:
        """A line of the task history."""
        items = self.gateway.history.setdefault(task_id, [])
        items.append(TaskHistoryEntry(len(items) + 1, at, field, change[0], change[1], user))

    def clocks(self) -> list[SlaClock]:
        """Every clock, oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(SlaClock).order_by(SlaClock.id)))

    def events(self, clock_id: int) -> list[tuple[str, dict[str, Any]]]:
        """(kind, detail) of a clock's history."""
        with self.sessions() as session:
            rows = session.scalars(select(SlaClockEvent).where(SlaClockEvent.clock_id == clock_id)
                                   .order_by(SlaClockEvent.id))
            return [(r.kind, r.detail) for r in rows]


@pytest.fixture
def h(session_factory: sessionmaker[Session]) -> SlaHarness:
    """A harness on the test database (both backends)."""
    return SlaHarness(session_factory)


# ---- tasks ----

def test_a_task_for_someone_else_starts_a_clock(h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    assert h.handle("ONTASKADD", 11) == "mirror:created"
    [clock] = h.clocks()
    assert (clock.policy, clock.subject_type, clock.subject_id, clock.state) == (
        "task", "task", 11, "running")
    assert (clock.responsible_id, clock.requester_id, clock.trigger) == (REP, CREATOR, "created")
    assert (clock.started_at, clock.warn_at, clock.due_at) == (
        nsk(11, 16, 10), nsk(11, 16, 11, 30), nsk(11, 16, 12))
    assert clock.target_minutes == 120
    [(kind, detail)] = h.events(clock.id)
    assert kind == "started" and detail["trigger"] == "created" and detail["source"] == "ONTASKADD"
    assert h.gateway.calls == ["get:task:11"]  # a fresh task needs no history read


@pytest.mark.parametrize("task", [
    make_task(responsible_id=CREATOR),  # self-assigned
    make_task(status=5, closed_at=nsk(11, 16, 10)),  # created closed
], ids=["self-assigned", "closed"])
def test_tasks_without_a_clock(h: SlaHarness, task: Task) -> None:
    h.gateway.put("task", task)
    h.handle("ONTASKADD", 11)
    assert h.clocks() == []


def _scoped(h: SlaHarness, *, mirror: bool) -> None:
    h.settings = dataclasses.replace(Settings(), sla=ScopedSla(
        department_ids=(SALES,), request_group_ids=(REQUESTS,)))
    people = {CREATOR: [PROCUREMENT], REP: [PROCUREMENT], REP2: [21]}
    if mirror:
        with session_scope(h.sessions) as session:
            session.add_all(MirrorUser(portal_id=h.portal, id=u, name=f"U{u}", departments=d)
                            for u, d in people.items())
            session.add_all(MirrorDepartment(portal_id=h.portal, id=d, parent_id=p, head_id=None)
                            for d, p in ((1, None), (SALES, 1), (21, SALES), (PROCUREMENT, 1)))
    else:
        h.gateway.user_list = [User(u, f"U{u}", "", True, tuple(d)) for u, d in people.items()]
        h.gateway.department_list = [Department(d, "", p, None) for d, p in (
            (1, None), (SALES, 1), (21, SALES), (PROCUREMENT, 1))]


@pytest.mark.parametrize("mirror", [True, False], ids=["mirror", "portal"])
def test_scope_by_department_and_request_group(h: SlaHarness, mirror: bool) -> None:
    """Outside the sales department: no clock, unless in a request group; sub-departments count."""
    _scoped(h, mirror=mirror)
    h.gateway.put("task", make_task(11))
    h.gateway.put("task", make_task(12, group_id=REQUESTS))
    h.gateway.put("task", make_task(13, responsible_id=REP2))  # a sales sub-department
    for task_id in (11, 12, 13):
        h.handle("ONTASKADD", task_id)
    assert [c.subject_id for c in h.clocks()] == [12, 13]


def test_a_handover_cancels_the_clock_and_starts_one_for_the_new_responsible(
        h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    h.clock.advance(minutes=30)
    h.gateway.put("task", make_task(responsible_id=REP2, changed_at=nsk(11, 16, 10, 30)))
    assert h.handle("ONTASKUPDATE", 11) == "mirror:updated"
    old, new = h.clocks()
    assert (old.state, old.stop_reason, old.stopped_at, old.working_minutes) == (
        "cancelled", "reassigned", nsk(11, 16, 10, 30), 30)
    assert [k for k, _ in h.events(old.id)] == ["started", "reassigned"]
    assert h.events(old.id)[1][1]["to_responsible"] == REP2
    assert (new.state, new.responsible_id, new.trigger, new.started_at, new.due_at) == (
        "running", REP2, "reassigned", nsk(11, 16, 10, 30), nsk(11, 16, 12, 30))
    assert h.events(new.id)[0][1]["previous_clock"] == old.id


def test_a_handover_to_the_creator_leaves_no_clock(h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    h.gateway.put("task", make_task(responsible_id=CREATOR, changed_at=nsk(11, 16, 10, 5)))
    h.handle("ONTASKUPDATE", 11)
    assert [(c.state, c.stop_reason) for c in h.clocks()] == [("cancelled", "reassigned")]


def test_a_handover_in_the_second_of_creation_keeps_both_clocks(h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    h.gateway.put("task", make_task(responsible_id=REP2))  # changed_at == created_at
    h.handle("ONTASKUPDATE", 11)
    old, new = h.clocks()
    assert old.state == "cancelled"
    assert (new.responsible_id, new.started_at) == (REP2, nsk(11, 16, 10, 0).replace(second=1))


def test_a_comment_by_the_responsible_answers(h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    entity = h.comment(11, REP, nsk(11, 16, 10, 45))
    h.clock.now = nsk(11, 16, 10, 46).astimezone(UTC)
    assert h.handle("ONTASKCOMMENTADD", entity) == "task:refreshed"
    [clock] = h.clocks()
    assert (clock.state, clock.stop_reason, clock.stopped_at, clock.working_minutes) == (
        "answered", "comment", nsk(11, 16, 10, 45), 45)
    kind, detail = h.events(clock.id)[-1]
    assert kind == "answered"
    assert detail["in_time"] is True and detail["source"] == "ONTASKCOMMENTADD"
    # The same event delivered again changes nothing.
    h.handle("ONTASKCOMMENTADD", entity)
    assert len(h.events(clock.id)) == 2


@pytest.mark.parametrize(("field", "change", "status", "reason"), [
    ("STATUS", ("2", "3"), 3, "status"),  # started
    ("STATUS", ("2", "6"), 6, "status"),  # deferred
    ("STATUS", ("2", "5"), 5, "status"),  # completed by the responsible
    ("DEADLINE", ("1763722800", "1763809200"), 2, "deadline"),
])
def test_a_status_or_deadline_change_by_the_responsible_answers(
        h: SlaHarness, field: str, change: tuple[str, str], status: int, reason: str) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    at = nsk(11, 16, 11, 0)
    h.log(11, field, REP, at, change)
    closed = at if status == 5 else None
    h.gateway.put("task", make_task(status=status, changed_at=at, status_changed_at=at,
                                    closed_at=closed, deadline=nsk(11, 21, 18)))
    h.handle("ONTASKUPDATE", 11)
    [clock] = h.clocks()
    assert (clock.state, clock.stop_reason, clock.stopped_at, clock.working_minutes) == (
        "answered", reason, at, 60)


def test_reactions_by_someone_else_do_not_count(h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    entity = h.comment(11, CREATOR, nsk(11, 16, 10, 20))
    h.handle("ONTASKCOMMENTADD", entity)
    h.log(11, "DEADLINE", CREATOR, nsk(11, 16, 10, 30))
    h.log(11, "STATUS", OTHER, nsk(11, 16, 10, 30), ("2", "3"))
    h.gateway.put("task", make_task(status=3, deadline=nsk(11, 21, 18),
                                    changed_at=nsk(11, 16, 10, 30)))
    h.handle("ONTASKUPDATE", 11)
    [clock] = h.clocks()
    assert clock.state == "running"


def test_a_task_closed_by_someone_else_or_deleted_is_cancelled(h: SlaHarness) -> None:
    h.gateway.put("task", make_task(11))
    h.gateway.put("task", make_task(12))
    h.handle("ONTASKADD", 11)
    h.handle("ONTASKADD", 12)
    h.log(11, "STATUS", CREATOR, nsk(11, 16, 10, 30), ("2", "5"))
    h.gateway.put("task", make_task(11, status=5, closed_at=nsk(11, 16, 10, 30),
                                    changed_at=nsk(11, 16, 10, 30)))
    h.handle("ONTASKUPDATE", 11)
    h.handle("ONTASKDELETE", 12)
    closed, deleted = h.clocks()
    assert (closed.state, closed.stop_reason, closed.working_minutes) == (
        "cancelled", "closed", 30)
    assert (deleted.state, deleted.stop_reason, deleted.stopped_at) == (
        "cancelled", "deleted", h.clock())


def test_the_same_creation_twice_starts_one_clock(h: SlaHarness) -> None:
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    h.handle("ONTASKADD", 11)
    h.handle("ONTASKUPDATE", 11)
    [clock] = h.clocks()
    assert [k for k, _ in h.events(clock.id)] == ["started"]


def test_records_from_before_the_install_get_no_clock(h: SlaHarness) -> None:
    """The first sync replays old tasks and deals as new: the past is not judged."""
    h.gateway.put("task", make_task(created_at=nsk(10, 30, 10), changed_at=nsk(10, 30, 10)))
    h.gateway.put("deal", make_deal(created_at=nsk(10, 30, 10)))
    h.handle("ONTASKUPDATE", 11)
    h.handle("ONCRMDEALUPDATE", 7)
    assert h.clocks() == []
    assert h.gateway.calls == ["get:task:11", "get:deal:7"]  # no history reads either
    # A handover after the install starts a clock as usual.
    h.gateway.put("task", make_task(created_at=nsk(10, 30, 10), responsible_id=REP2))
    h.handle("ONTASKUPDATE", 11)
    assert [(c.responsible_id, c.started_at) for c in h.clocks()] == [(REP2, nsk(11, 16, 10))]


def test_first_sight_through_a_later_event_reads_the_source(h: SlaHarness) -> None:
    """ONTASKADD was lost: the comment event starts the clock and finds the answer at once."""
    h.gateway.put("task", make_task())
    entity = h.comment(11, REP, nsk(11, 16, 10, 15))
    h.clock.now = nsk(11, 16, 10, 20).astimezone(UTC)
    h.handle("ONTASKCOMMENTADD", entity)
    [clock] = h.clocks()
    assert (clock.started_at, clock.state, clock.working_minutes) == (
        nsk(11, 16, 10), "answered", 15)


def test_first_sight_of_a_handed_over_task_starts_at_the_handover(h: SlaHarness) -> None:
    h.gateway.put("task", make_task(responsible_id=REP2, changed_at=nsk(11, 16, 10, 40)))
    h.log(11, "RESPONSIBLE_ID", CREATOR, nsk(11, 16, 10, 40), (str(REP), str(REP2)))
    h.clock.now = nsk(11, 16, 10, 45).astimezone(UTC)
    h.handle("ONTASKUPDATE", 11)  # found by the cursor sync
    [clock] = h.clocks()
    assert (clock.responsible_id, clock.started_at, clock.trigger, clock.state) == (
        REP2, nsk(11, 16, 10, 40), "reassigned", "running")


# ---- CRM ----

def test_a_new_deal_for_a_rep_starts_a_crm_clock_and_a_stage_move_answers(
        h: SlaHarness) -> None:
    h.gateway.put("deal", make_deal(7))
    h.gateway.put("deal", make_deal(8, created_by_id=REP))  # the rep's own deal
    h.handle("ONCRMDEALADD", 7)
    h.handle("ONCRMDEALADD", 8)
    [clock] = h.clocks()
    assert (clock.policy, clock.subject_type, clock.subject_id, clock.trigger) == (
        "crm", "deal", 7, "deal")
    assert (clock.responsible_id, clock.requester_id) == (REP, CREATOR)
    moved = nsk(11, 16, 11, 20)
    h.gateway.put("deal", make_deal(7, stage_id="PREPARATION", moved_at=moved,
                                    modified_at=moved, fields={"MOVED_BY_ID": str(REP)}))
    h.handle("ONCRMDEALUPDATE", 7)
    [clock] = h.clocks()
    assert (clock.state, clock.stop_reason, clock.working_minutes) == ("answered", "stage", 80)


def test_a_stage_move_by_someone_else_does_not_answer(h: SlaHarness) -> None:
    h.gateway.put("deal", make_deal(7))
    h.handle("ONCRMDEALADD", 7)
    h.gateway.put("deal", make_deal(7, stage_id="PREPARATION", fields={"MOVED_BY_ID": "9"}))
    h.handle("ONCRMDEALUPDATE", 7)
    assert [c.state for c in h.clocks()] == ["running"]


def test_an_incoming_call_waits_for_the_reps_outgoing_reply(h: SlaHarness) -> None:
    h.gateway.put("company", Company(3, "ООО Ромашка", REP, nsk(1, 10, 10), nsk(1, 10, 10)))
    h.gateway.put("deal", make_deal(7, created_by_id=REP))
    h.handle("ONCRMCOMPANYADD", 3)
    h.handle("ONCRMDEALADD", 7)
    call = make_activity(50, 2, 1, [(4, 3)], nsk(11, 16, 10, 0), responsible=OTHER)
    h.gateway.put("activity", call)
    h.handle("ONCRMACTIVITYADD", 50)
    [clock] = h.clocks()
    assert (clock.subject_type, clock.subject_id, clock.responsible_id, clock.trigger) == (
        "company", 3, REP, "call")  # the company's rep, not whoever logged the call
    # A second incoming call while the first waits: still one clock.
    h.gateway.put("activity", make_activity(51, 4, 1, [(4, 3)], nsk(11, 16, 10, 5)))
    h.handle("ONCRMACTIVITYADD", 51)
    # Someone else's reply, then the rep's e-mail bound to the company's deal.
    h.gateway.put("activity", make_activity(52, 4, 2, [(2, 7)], nsk(11, 16, 10, 10),
                                                  responsible=OTHER))
    h.handle("ONCRMACTIVITYADD", 52)
    assert [c.state for c in h.clocks()] == ["running"]
    h.gateway.put("activity", make_activity(53, 4, 2, [(2, 7)], nsk(11, 16, 10, 40)))
    h.handle("ONCRMACTIVITYADD", 53)
    [clock] = h.clocks()
    assert (clock.state, clock.stop_reason, clock.working_minutes) == ("answered", "activity", 40)
    assert h.events(clock.id)[-1][1]["evidence"] == "activity:53"


def test_a_deleted_deal_and_a_new_rep_move_crm_clocks(h: SlaHarness) -> None:
    h.gateway.put("deal", make_deal(7))
    h.gateway.put("deal", make_deal(8))
    h.handle("ONCRMDEALADD", 7)
    h.handle("ONCRMDEALADD", 8)
    h.gateway.put("deal", make_deal(7, assigned_by_id=REP2, modified_at=nsk(11, 16, 10, 30)))
    h.handle("ONCRMDEALUPDATE", 7)
    h.handle("ONCRMDEALDELETE", 8)
    states = [(c.subject_id, c.responsible_id, c.state, c.stop_reason) for c in h.clocks()]
    assert states == [(7, REP, "cancelled", "reassigned"), (8, REP, "cancelled", "deleted"),
                      (7, REP2, "running", None)]


def test_settings_change_the_target(h: SlaHarness) -> None:
    h.settings = dataclasses.replace(Settings(), sla=replace(SlaSettings(), target_minutes=60,
                                                             warn_ratio=0.5))
    h.gateway.put("task", make_task())
    h.handle("ONTASKADD", 11)
    [clock] = h.clocks()
    assert (clock.target_minutes, clock.warn_at, clock.due_at) == (
        60, nsk(11, 16, 10, 30), nsk(11, 16, 11))


def test_the_services_own_remark_is_not_the_responsibles_answer(h: SlaHarness) -> None:
    """Regression: the task-format remark is posted with the installer's account (user 1
    here); on a task whose responsible is that user, it stopped the clock as answered."""
    h.gateway.put("task", make_task(title="Срочно", created_by=OTHER, responsible_id=CREATOR))
    registry = build_registry([task_format_hook, sla_hook])
    for n, (name, entity) in enumerate((("ONTASKADD", "11"), ("ONTASKCOMMENTADD", "11:77"))):
        if name == "ONTASKCOMMENTADD":  # the creator's comment makes the hook read the source
            h.gateway.comments[11].append(
                TaskComment(77, 11, OTHER, nsk(11, 16, 10, 20), "Когда будет?"))
        event = ClaimedEvent(n + 1, h.portal, name, entity, {}, True, 1, "online", 0, "w")
        with session_scope(h.sessions) as session:
            ctx = HandlerContext(session, h.gateway, h.portal, h.clock, h.settings,
                                 registry.after_mirror)
            registry.dispatch(ctx, event)
    remark = h.gateway.comments[11][0]
    assert (remark.author_id, remark.message.startswith("Задачи ставятся")) == (CREATOR, True)
    [clock] = h.clocks()
    assert (clock.responsible_id, clock.state) == (CREATOR, "running")
