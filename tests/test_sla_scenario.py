"""The response SLA end to end against the emulator: install, events, worker, tick, outbox.

The emulator's clock (frozen) and the service's clock move together; what the portal's
users receive is read back from the emulator's notification log.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from b24app import outbox
from b24app.db import session_scope
from b24app.models import Portal as PortalRow
from b24app.models import SlaClock
from b24app.worker import Worker
from b24emu import EmulatorServer
from b24emu.datasets.demo_common import World
from b24emu.datasets.demo_org import build_org
from b24emu.dispatch import act
from handlers.registry import build_registry
from handlers.sla import sla_hook
from sync.sla_ticker import tick
from tests.appfixtures import AppServer
from tests.fakes import FakeClock

NSK = ZoneInfo("Asia/Novosibirsk")
TITLE = "Подготовить КП для ООО «Мебельград» по петлям Blum"


def nsk(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Novosibirsk wall-clock instant of 2026."""
    return datetime(2026, month, day, hour, minute, tzinfo=NSK)


@dataclass
class SlaPortal:
    """The emulated NOIS portal with the app installed, and the service driven by hand."""

    emulator: EmulatorServer
    server: AppServer
    clock: FakeClock
    worker: Worker
    rop: int = 0
    creator: int = 0
    rep: int = 0
    seen: int = 0
    names: dict[int, str] = field(default_factory=dict)

    def at(self, moment: datetime) -> None:
        """Move the portal's and the service's clocks to ``moment``."""
        self.emulator.portal.clock.set(moment, frozen=True)
        self.clock.now = moment.astimezone(UTC)

    def step(self, moment: datetime) -> list[dict[str, Any]]:
        """At ``moment``: deliver events, drain the inbox, tick, send; the new notifications."""
        self.at(moment)
        assert self.emulator.portal.events.wait_idle(10)
        while self.worker.run_once():
            pass
        report = tick(self.server.ctx, self.clock())
        assert (report.failed_portals, report.deferred) == (0, 0)
        outbox.send_due(self.server.ctx.sessions, self.server.ctx.gateways.for_portal,
                        self.clock())
        rows = list(self.emulator.portal.notifications)
        fresh, self.seen = rows[self.seen:], len(rows)
        return fresh

    def create_task(self, moment: datetime) -> int:
        """The creator sets a task for the rep at ``moment``; its ID."""
        self.at(moment)
        result = act(self.emulator.portal, "tasks.task.add", {"fields": {
            "TITLE": TITLE, "RESPONSIBLE_ID": self.rep,
            "DEADLINE": "2026-12-10T18:00:00+07:00"}}, user_id=self.creator)
        return int(result["task"]["id"])

    def comment(self, task_id: int, moment: datetime) -> None:
        """The rep answers in the task at ``moment``."""
        self.at(moment)
        act(self.emulator.portal, "task.commentitem.add",
            {"0": task_id, "1": {"POST_MESSAGE": "Принял, КП будет сегодня."}},
            user_id=self.rep)

    def clock_of(self, task_id: int) -> SlaClock:
        """The task's (only) clock."""
        with self.server.ctx.sessions() as session:
            return session.scalars(select(SlaClock).where(SlaClock.subject_id == task_id)).one()


@pytest.fixture
def portal(emulator: EmulatorServer, app_server: AppServer) -> Iterator[SlaPortal]:
    """The NOIS organisation (demo-like: «Отдел продаж» with the РОП as UF_HEAD), installed."""
    emu = emulator.portal
    world = World(emu, random.Random(1))
    with emu.lock:
        build_org(world)
    clock = FakeClock(nsk(11, 2, 9).astimezone(UTC))
    app_server.ctx.clock = clock
    p = SlaPortal(emulator, app_server, clock,
               Worker(app_server.ctx, "sla-test", registry=build_registry([sla_hook])),
               rop=world.rop, creator=world.reps[1].user_id, rep=world.reps[0].user_id)
    p.at(nsk(11, 2, 9))
    result = emu.install_app(f"{app_server.url}/b24/install")
    assert result.status == 200, app_server.last("/b24/install").body[:300]
    with session_scope(app_server.ctx.sessions) as session:  # installed at portal time
        session.execute(update(PortalRow).values(installed_at=nsk(11, 2, 9)))
    assert emu.departments.rows[world.sales_dept]["UF_HEAD"] == world.rop
    p.names = {u["ID"]: f"{u['NAME']} {u['LAST_NAME']}" for u in emu.users}
    yield p


def _summary(p: SlaPortal, task_id: int, text: str) -> str:
    return f"Задача #{task_id} «{TITLE}» — {text} (исполнитель: {p.names[p.rep]})"


def test_a_task_answered_in_time_never_notifies(portal: SlaPortal) -> None:
    task = portal.create_task(nsk(11, 16, 10))
    assert portal.step(nsk(11, 16, 10, 1)) == []
    assert portal.clock_of(task).state == "running"
    portal.comment(task, nsk(11, 16, 10, 30))
    for moment in (nsk(11, 16, 10, 31), nsk(11, 16, 11, 30), nsk(11, 16, 12), nsk(11, 17, 12)):
        assert portal.step(moment) == []
    clock = portal.clock_of(task)
    assert (clock.state, clock.stop_reason, clock.working_minutes) == ("answered", "comment", 30)


def test_an_unanswered_task_across_a_weekend(portal: SlaPortal) -> None:
    """Friday 16:45: the warning on Monday at 09:45, the breach at 10:15."""
    task = portal.create_task(nsk(11, 27, 16, 45))
    for moment in (nsk(11, 27, 16, 46), nsk(11, 27, 17, 30), nsk(11, 28, 12),
                   nsk(11, 30, 9, 44)):
        assert portal.step(moment) == []
    [warning] = portal.step(nsk(11, 30, 9, 45))
    clock = portal.clock_of(task)
    assert (warning["USER_ID"], warning["TAG"]) == (portal.rep, f"sla-{clock.id}-warn")
    assert warning["MESSAGE"].splitlines()[0] == _summary(
        portal, task, "нет ответа 1,5 рабочего часа, срок ответа — пн 30.11 в 10:15")
    assert portal.step(nsk(11, 30, 10, 14)) == []
    breach = portal.step(nsk(11, 30, 10, 15))
    assert sorted((n["USER_ID"], n["TAG"]) for n in breach) == sorted([
        (portal.rop, f"sla-{clock.id}-breach"), (portal.rep, f"sla-{clock.id}-breach")])
    to_rop = next(n["MESSAGE"] for n in breach if n["USER_ID"] == portal.rop).splitlines()
    assert to_rop[0] == _summary(portal, task, "нет ответа 2 рабочих часа")
    domain = portal.emulator.portal.domain
    assert to_rop[-1] == (f"https://{domain}/company/personal/user/{portal.rep}"
                          f"/tasks/task/view/{task}/")
    assert portal.step(nsk(11, 30, 11)) == []
    assert portal.step(nsk(12, 1, 10)) == []


def test_an_unanswered_task_across_a_shortened_day_and_a_holiday(portal: SlaPortal) -> None:
    """Tuesday 11-03 15:30 (ends 16:30; 11-04 a holiday): warning Thu 09:30, breach 10:00."""
    task = portal.create_task(nsk(11, 3, 15, 30))
    for moment in (nsk(11, 3, 16, 29), nsk(11, 3, 17, 0), nsk(11, 4, 12),
                   nsk(11, 5, 9, 29)):
        assert portal.step(moment) == []
    assert [n["USER_ID"] for n in portal.step(nsk(11, 5, 9, 30))] == [portal.rep]
    assert portal.step(nsk(11, 5, 9, 59)) == []
    assert sorted(n["USER_ID"] for n in portal.step(nsk(11, 5, 10))) == sorted(
        [portal.rop, portal.rep])
    assert portal.clock_of(task).breached_at == nsk(11, 5, 10)


def test_a_lost_comment_event_causes_no_false_breach(portal: SlaPortal) -> None:
    portal.emulator.portal.faults.add("drop_events", "ONTASKCOMMENTADD", count=1)
    task = portal.create_task(nsk(11, 16, 10))
    assert portal.step(nsk(11, 16, 10, 1)) == []
    portal.comment(task, nsk(11, 16, 10, 30))
    assert portal.step(nsk(11, 16, 10, 31)) == []
    assert len(portal.emulator.portal.events.dropped) == 1  # the hook never heard of it
    assert portal.clock_of(task).state == "running"
    for moment in (nsk(11, 16, 11, 30), nsk(11, 16, 12), nsk(11, 17, 12)):
        assert portal.step(moment) == []
    clock = portal.clock_of(task)
    assert (clock.state, clock.stopped_at, clock.working_minutes) == (
        "answered", nsk(11, 16, 10, 30), 30)
