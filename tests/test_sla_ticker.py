"""The SLA tick with a fake gateway and clock: stages once each, working hours, batching,
verification at the source, catch-up, lost creations; the report and re-scoring."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from b24app import outbox
from b24app.config import Settings, SlaSettings
from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.db import session_scope
from b24app.gateway.errors import Transport
from b24app.gateway.types import TaskHistoryEntry
from b24app.models import (
    MirrorDepartment,
    MirrorUser,
    Notification,
    Portal,
    SlaClock,
)
from b24app.sla_report import explain, rescore
from kpi import sla
from kpi.calendar import WorkingCalendar
from sync import mirror
from sync.sla_ticker import TickReport, refresh_missing, tick
from tests.appfixtures import FakeGatewayProvider, build_ctx
from tests.fakes import FakeGateway
from tests.test_sla_hooks import (
    CREATOR,
    REP,
    REP2,
    ROP,
    SALES,
    SlaHarness,
    make_activity,
    make_deal,
    make_task,
    nsk,
)

BOSS = 3
CAL = WorkingCalendar()


@dataclass
class FlakyGateway(FakeGateway):
    """A fake whose history read fails ``failures`` times (a portal briefly unreachable)."""

    failures: int = 0

    def task_history(self, task_id: int) -> list[TaskHistoryEntry]:
        if self.failures:
            self.failures -= 1
            raise Transport("timeout", "no answer", method="tasks.task.history.list")
        return super().task_history(task_id)


class Ticker(SlaHarness):
    """The hook harness plus an app context over the same gateway, clock and database."""

    gateway: FlakyGateway

    def __init__(self, sessions: sessionmaker[Session], engine: Engine,
                 secrets: SecretBox) -> None:
        super().__init__(sessions)
        self.gateway = FlakyGateway(clock=self.clock)
        self.ctx: AppContext = build_ctx(self.settings, engine, sessions, secrets,
                                         FakeGatewayProvider(self.gateway), clock=self.clock)
        with session_scope(sessions) as session:
            names = {CREATOR: ("Анна", "Белова"), REP: ("Иван", "Петров"),
                     REP2: ("Олег", "Сидоров"), ROP: ("Дмитрий", "Колесников"),
                     BOSS: ("Алексей", "Админов")}
            session.add_all(MirrorUser(portal_id=self.portal, id=u, name=n, last_name=last,
                                       departments=[1 if u == BOSS else SALES])
                            for u, (n, last) in names.items())
            session.add_all([MirrorDepartment(portal_id=self.portal, id=1, name="НОИС",
                                              parent_id=None, head_id=BOSS),
                             MirrorDepartment(portal_id=self.portal, id=SALES,
                                              name="Отдел продаж", parent_id=1, head_id=ROP)])

    def settle(self, settings: Settings) -> None:
        """Use other settings for hooks and ticks."""
        self.settings = settings
        self.ctx.settings = settings

    def at(self, moment: datetime) -> datetime:
        """Move the service clock."""
        self.clock.now = moment.astimezone(UTC)
        return self.clock.now

    def tick(self, moment: datetime) -> TickReport:
        """One tick at ``moment`` (an unexpected error fails the test, not just the log)."""
        report = tick(self.ctx, self.at(moment))
        assert report.failed_portals == 0
        return report

    def tick_through(self, start: datetime, end: datetime,
                     step: int = 1) -> list[tuple[datetime, TickReport]]:
        """A tick every ``step`` minutes from start to end; the ticks that did something."""
        busy, moment = [], start
        while moment <= end:
            report = self.tick(moment)
            if report.due:
                busy.append((moment, report))
            moment += timedelta(minutes=step)
        return busy

    def tick_around(self, *stages: datetime) -> list[tuple[datetime, TickReport]]:
        """Every 10 minutes from the first stage - 1 h, and every minute ±3 min of each stage."""
        moments = {stages[0] - timedelta(hours=1) + timedelta(minutes=10 * n) for n in range(
            int((stages[-1] - stages[0]) / timedelta(minutes=10)) + 13)}
        moments |= {s + timedelta(minutes=d) for s in stages for d in range(-3, 4)}
        return [(m, r) for m in sorted(moments) if (r := self.tick(m)).due]

    def send(self, moment: datetime) -> list[tuple[int, str, str]]:
        """``outbox.send_due`` at ``moment``; what went out."""
        before = len(self.gateway.notifications)
        outbox.send_due(self.ctx.sessions, lambda _p: self.gateway, self.at(moment))
        return self.gateway.notifications[before:]

    def queued(self) -> list[tuple[int, str, str, datetime]]:
        """Outbox rows: (user, kind, tag, not_before)."""
        with self.sessions() as session:
            return [(n.user_id, n.kind, n.tag, n.not_before) for n in session.scalars(
                select(Notification).order_by(Notification.id))]

    def create(self, task_id: int, at: datetime, responsible: int = REP) -> SlaClock:
        """A task set at ``at`` whose ONTASKADD the hook handles; its clock."""
        self.at(at)
        self.gateway.put("task", make_task(task_id, created_at=at, changed_at=at,
                                           responsible_id=responsible))
        self.handle("ONTASKADD", task_id)
        return next(c for c in self.clocks() if c.subject_id == task_id)


@pytest.fixture
def t(session_factory: sessionmaker[Session], engine: Engine, secret_box: SecretBox) -> Ticker:
    """A ticker harness on the test database (both backends)."""
    return Ticker(session_factory, engine, secret_box)


def test_warning_at_90_and_breach_at_120_working_minutes_once_each(t: Ticker) -> None:
    clock = t.create(11, nsk(11, 16, 10))
    busy = t.tick_around(nsk(11, 16, 11, 30), nsk(11, 16, 12))
    assert [(m, r.warned, r.breached) for m, r in busy] == [
        (nsk(11, 16, 11, 30), 1, 0), (nsk(11, 16, 12), 0, 1)]
    warn, head, rep = t.queued()
    assert warn[:3] == (REP, "sla_warning", f"sla-{clock.id}-warn")
    assert warn[3] == nsk(11, 16, 11, 30)
    assert (head[:3], rep[:3]) == ((ROP, "sla_breach", f"sla-{clock.id}-breach"),
                                   (REP, "sla_breach", f"sla-{clock.id}-breach"))
    sent = t.send(nsk(11, 16, 12, 1))
    assert sorted((u, tag) for u, _m, tag in sent) == [
        (REP, f"sla-{clock.id}-breach"), (REP, f"sla-{clock.id}-warn"),
        (ROP, f"sla-{clock.id}-breach")]
    sent = sorted(sent, key=lambda n: (n[2].endswith("breach"), n[0] == REP))
    assert sent[0][1].splitlines()[0] == (
        "Задача #11 «Подготовить КП для ООО «Ромашка»» — нет ответа 1,5 рабочего часа, "
        "срок ответа — пн 16.11 в 12:00 (исполнитель: Иван Петров)")
    assert sent[1][1].splitlines()[0] == (
        "Задача #11 «Подготовить КП для ООО «Ромашка»» — нет ответа 2 рабочих часа "
        "(исполнитель: Иван Петров)")
    assert sent[1][1].splitlines()[-1] == (
        "https://member-1.bitrix24.ru/company/personal/user/5/tasks/task/view/11/")
    assert "Руководитель уведомлён: Дмитрий Колесников." in sent[2][1]
    # Nothing is ever sent twice: later ticks and sends find nothing to do.
    assert t.tick_through(nsk(11, 16, 13, 1), nsk(11, 16, 13, 5)) == []
    assert t.send(nsk(11, 17, 10)) == []
    with t.sessions() as session:
        row = session.get_one(SlaClock, clock.id)
        assert (row.state, row.warned_at, row.breached_at) == (
            "running", nsk(11, 16, 11, 30), nsk(11, 16, 12))


def test_a_breach_after_hours_waits_for_nine_next_working_morning(t: Ticker) -> None:
    t.create(11, nsk(11, 27, 15, 30))  # a Friday: warning 17:00, breach 17:30
    assert t.tick(nsk(11, 27, 17, 0)).warned == 1
    assert t.tick(nsk(11, 27, 17, 30)).breached == 1
    not_before = {kind: nb for _u, kind, _tag, nb in t.queued()}
    assert not_before == {"sla_warning": nsk(11, 27, 17, 0), "sla_breach": nsk(11, 30, 9, 0)}
    assert [n[1] for n in t.queued()] == ["sla_warning", "sla_breach", "sla_breach"]
    assert len(t.send(nsk(11, 27, 17, 31))) == 1  # the warning, sent in working time
    assert t.send(nsk(11, 28, 12)) == []
    assert t.send(nsk(11, 30, 8, 59)) == []
    assert {u for u, _m, _tag in t.send(nsk(11, 30, 9, 0))} == {ROP, REP}


def test_several_breaches_reach_the_rop_as_one_message(t: Ticker) -> None:
    for task_id, who in ((11, REP), (12, REP), (13, REP2)):
        t.create(task_id, nsk(11, 16, 10), responsible=who)
    assert t.tick(nsk(11, 16, 12)).breached == 3
    sent = t.send(nsk(11, 16, 12))
    to_head = [m for u, m, _tag in sent if u == ROP]
    assert len(to_head) == 1
    lines = to_head[0].splitlines()
    assert lines[0] == "Нарушен срок ответа — 3 обращения:"
    assert [line.split(" — ")[0] for line in lines[1::2]] == [
        f"• Задача #{n} «Подготовить КП для ООО «Ромашка»»" for n in (11, 12, 13)]
    # Every task stays one click away from the batch (regression: the links were dropped).
    assert lines[2::2] == [
        f"  https://member-1.bitrix24.ru/company/personal/user/{who}/tasks/task/view/{n}/"
        for n, who in ((11, REP), (12, REP), (13, REP2))]
    assert "Олег Сидоров" in lines[5]


def test_a_comment_whose_event_was_lost_answers_without_any_notification(t: Ticker) -> None:
    clock = t.create(11, nsk(11, 16, 10))
    t.comment(11, REP, nsk(11, 16, 10, 30))  # in the portal, but no ONTASKCOMMENTADD
    busy = t.tick_around(nsk(11, 16, 11, 30), nsk(11, 16, 12))
    assert [(m, r.answered, r.warned) for m, r in busy] == [(nsk(11, 16, 11, 30), 1, 0)]
    assert t.queued() == []
    with t.sessions() as session:
        row = session.get_one(SlaClock, clock.id)
        assert (row.state, row.stopped_at, row.working_minutes) == (
            "answered", nsk(11, 16, 10, 30), 30)
    assert t.events(clock.id)[-1][1]["source"] == "verification"


def test_a_worker_down_three_days_notifies_each_clock_once_in_one_pass(t: Ticker) -> None:
    clocks = [t.create(n, nsk(11, 16, 10 + n - 11), responsible=REP if n % 2 else REP2)
              for n in (11, 12, 13)]
    t.comment(12, REP2, nsk(11, 16, 12, 30))  # answered, though nobody saw the event
    report = t.tick(nsk(11, 19, 14))
    assert (report.due, report.breached, report.warned, report.answered) == (3, 2, 0, 1)
    assert t.tick(nsk(11, 19, 14, 1)).due == 0
    tags = sorted(tag for _u, _k, tag, _nb in t.queued())
    assert tags == sorted(f"sla-{c.id}-breach" for c in (clocks[0], clocks[2]) for _ in (1, 2))
    to_head = [m for u, m, _tag in t.send(nsk(11, 19, 14, 1)) if u == ROP]
    assert len(to_head) == 1 and to_head[0].startswith("Нарушен срок ответа — 2 обращения:")
    breached = [e for e in t.events(clocks[0].id) if e[0] == "breached"]
    assert breached[0][1]["warning_skipped"] is True


def test_a_reassignment_whose_event_was_lost_moves_the_clock(t: Ticker) -> None:
    clock = t.create(11, nsk(11, 16, 10))
    t.log(11, "RESPONSIBLE_ID", CREATOR, nsk(11, 16, 10, 20), (str(REP), str(REP2)))
    t.gateway.put("task", make_task(11, responsible_id=REP2, changed_at=nsk(11, 16, 10, 20)))
    report = t.tick(nsk(11, 16, 11, 30))
    assert (report.cancelled, report.warned) == (1, 0)
    old, new = t.clocks()
    assert (old.id, old.stop_reason, old.stopped_at) == (clock.id, "reassigned",
                                                         nsk(11, 16, 10, 20))
    assert (new.responsible_id, new.started_at, new.trigger) == (
        REP2, nsk(11, 16, 10, 20), "reassigned")
    assert t.tick(nsk(11, 16, 11, 50)).warned == 1  # 90 minutes after the handover


@pytest.mark.parametrize("how", ["deleted", "closed"])
def test_a_task_gone_or_closed_at_the_source_is_cancelled(t: Ticker, how: str) -> None:
    clock = t.create(11, nsk(11, 16, 10))
    if how == "deleted":
        del t.gateway.records["task"][11]
    else:
        t.gateway.put("task", make_task(11, status=5, closed_at=nsk(11, 16, 11)))
    assert t.tick(nsk(11, 16, 12)).cancelled == 1
    assert t.queued() == []
    [row] = t.clocks()
    assert (row.id, row.state, row.stop_reason) == (clock.id, "cancelled", how)


def test_an_unreachable_source_postpones_the_breach(t: Ticker) -> None:
    t.create(11, nsk(11, 16, 10))
    t.gateway.failures = 1
    report = t.tick(nsk(11, 16, 12))
    assert (report.deferred, report.breached) == (1, 0)
    assert t.queued() == []
    assert t.tick(nsk(11, 16, 12, 1)).breached == 1


def test_a_source_unreadable_for_an_hour_notifies_unverified(t: Ticker) -> None:
    t.create(11, nsk(11, 16, 10))
    t.gateway.failures = 100
    t.gateway.user_list = []
    with session_scope(t.sessions) as session:  # and nobody's name is known
        session.execute(delete(MirrorUser))
    assert t.tick(nsk(11, 16, 11, 30)).deferred == 1
    assert t.tick(nsk(11, 16, 12, 29)).deferred == 1
    report = t.tick(nsk(11, 16, 13))
    assert (report.deferred, report.breached) == (0, 1)
    # Without the directory nobody is known as the head: only the responsible is told.
    assert {u for u, _k, _tag, _nb in t.queued()} == {REP}
    [(_user, text, _tag)] = t.send(nsk(11, 16, 13))
    assert text.startswith("Задача #11 «Подготовить КП для ООО «Ромашка»» — нет ответа "
                           "2 рабочих часа (исполнитель: #5)")  # the title from the mirror
    assert t.events(1)[-2][1] == {"unverified": "timeout"}
    with t.sessions() as session:
        assert ("  пн 16.11.2026 13:00 — источник недоступен (timeout): уведомление без проверки"
                in explain(session, 1, CAL))


def test_the_configured_user_and_a_breach_of_the_head_himself(t: Ticker) -> None:
    t.create(11, nsk(11, 16, 10), responsible=ROP)
    t.tick(nsk(11, 16, 12))
    assert {u for u, kind, _tag, _nb in t.queued() if kind == "sla_breach"} == {ROP, BOSS}
    t.settle(dataclasses.replace(Settings(), sla=replace(SlaSettings(), head_of_sales_user_id=42)))
    t.create(12, nsk(11, 16, 10), responsible=REP)
    t.tick(nsk(11, 16, 12))
    assert {u for u, _k, tag, _nb in t.queued() if tag.startswith("sla-2-")} == {42, REP}


def test_a_crm_reply_whose_event_was_lost_answers(t: Ticker) -> None:
    t.gateway.put("deal", make_deal(7))
    t.at(nsk(11, 16, 10, 1))
    t.handle("ONCRMDEALADD", 7)
    t.gateway.put("activity", make_activity(60, 4, 2, [(2, 7)], nsk(11, 16, 10, 50)))
    report = t.tick(nsk(11, 16, 11, 30))
    assert report.answered == 1
    [clock] = t.clocks()
    assert (clock.state, clock.stop_reason, clock.working_minutes) == ("answered", "activity", 50)


def test_an_unanswered_deal_breaches_with_its_link(t: Ticker) -> None:
    t.gateway.put("deal", make_deal(7))
    t.at(nsk(11, 16, 10, 1))
    t.handle("ONCRMDEALADD", 7)
    t.gateway.put("activity", make_activity(61, 4, 2, [(2, 8)], nsk(11, 16, 10, 50)))  # other
    assert t.tick(nsk(11, 16, 12)).breached == 1
    to_head = next(m for u, m, _tag in t.send(nsk(11, 16, 12)) if u == ROP).splitlines()
    assert to_head[0] == ("Сделка #7 «Поставка петель Blum» — нет ответа клиенту 2 рабочих "
                          "часа (ответственный: Иван Петров)")
    assert to_head[-1] == "https://member-1.bitrix24.ru/crm/deal/details/7/"


# ---- lost creations ----

def _mirror_task(t: Ticker, task_id: int, created: datetime, **changes: object) -> None:
    with session_scope(t.sessions) as session:
        mirror.upsert(session, t.portal, "task", make_task(task_id, created_at=created,
                                                           changed_at=created, **changes),
                      now=created)


def test_refresh_missing_starts_clocks_for_tasks_whose_event_was_lost(t: Ticker) -> None:
    with session_scope(t.sessions) as session:
        session.execute(update(Portal).values(installed_at=nsk(11, 16, 9)))
    _mirror_task(t, 11, nsk(11, 16, 10))  # unanswered
    _mirror_task(t, 12, nsk(11, 16, 10))  # answered already
    _mirror_task(t, 13, nsk(11, 13, 10))  # before the install: left alone
    _mirror_task(t, 14, nsk(11, 16, 10), responsible_id=CREATOR)  # self-assigned
    _mirror_task(t, 15, nsk(11, 16, 10), status=5)  # closed
    t.gateway.put("task", make_task(16, created_at=nsk(11, 16, 10)))
    t.handle("ONTASKADD", 16)  # has its clock
    t.comment(12, REP, nsk(11, 16, 10, 10))
    assert refresh_missing(t.ctx, t.portal, t.at(nsk(11, 16, 11))) == 2
    states = {c.subject_id: (c.state, c.started_at) for c in t.clocks()}
    assert states == {11: ("running", nsk(11, 16, 10)), 12: ("answered", nsk(11, 16, 10)),
                      16: ("running", nsk(11, 16, 10))}
    assert refresh_missing(t.ctx, t.portal, t.at(nsk(11, 16, 11, 5))) == 0


def test_refresh_missing_on_an_unknown_portal_does_nothing(t: Ticker) -> None:
    assert refresh_missing(t.ctx, 999, t.at(nsk(11, 16, 11))) == 0


def test_refresh_missing_starts_at_the_last_handover(t: Ticker) -> None:
    with session_scope(t.sessions) as session:
        session.execute(update(Portal).values(installed_at=nsk(11, 16, 9)))
    _mirror_task(t, 11, nsk(11, 16, 10), responsible_id=REP2)
    t.log(11, "RESPONSIBLE_ID", CREATOR, nsk(11, 16, 10, 40), (str(REP), str(REP2)))
    assert refresh_missing(t.ctx, t.portal, t.at(nsk(11, 16, 11))) == 1
    [clock] = t.clocks()
    assert (clock.responsible_id, clock.started_at, clock.trigger) == (
        REP2, nsk(11, 16, 10, 40), "reassigned")


# ---- the report and re-scoring ----

def test_explain_tells_every_minute(t: Ticker) -> None:
    clock = t.create(11, nsk(11, 27, 16, 45))
    t.tick(nsk(11, 30, 9, 45))
    t.send(nsk(11, 30, 9, 45))  # the warning goes out in the minute of its tick
    entity = t.comment(11, REP, nsk(11, 30, 10, 0))
    t.at(nsk(11, 30, 10, 1))
    t.handle("ONTASKCOMMENTADD", entity)
    with t.sessions() as session:
        lines = explain(session, clock.id, CAL)
    assert lines[0] == (f"Часы ответа №{clock.id}: задача #11 «Подготовить КП для ООО "
                        "«Ромашка»», ответственный Иван Петров (#5); цель 120 рабочих мин.")
    assert lines[1] == ("Старт: пт 27.11.2026 16:45; предупреждение: пн 30.11.2026 09:45; "
                        "срок: пн 30.11.2026 10:15.")
    assert lines[2:5] == ["Учтённое рабочее время:",
                          "  пт 27.11.2026 16:45–17:30 — 45 мин (всего 45)",
                          "  пн 30.11.2026 09:00–10:00 — 60 мин (всего 105)"]
    assert lines[5] == "События:"
    assert lines[6] == "  пт 27.11.2026 16:45 — старт отсчёта: задача поставлена"
    assert lines[7].startswith("  пн 30.11.2026 09:45 — проверка по источнику: реакции нет")
    assert lines[8] == ("  пн 30.11.2026 09:45 — предупреждение исполнителю (отправка не "
                        "раньше пн 30.11.2026 09:45)")
    assert lines[9] == "  пн 30.11.2026 10:00 — ответ: комментарий исполнителя, 105 рабочих мин"
    assert lines[-1] == "Итог: ответ через 105 рабочих мин — в срок."


def test_explain_of_running_cancelled_and_missing_clocks(t: Ticker) -> None:
    running = t.create(11, nsk(11, 16, 10))
    t.tick(nsk(11, 16, 12))
    gone = t.create(12, nsk(11, 16, 10))
    t.handle("ONTASKDELETE", 12)
    with t.sessions() as session:
        assert explain(session, running.id, CAL, nsk(11, 16, 12, 30))[-1] == (
            "Итог: без ответа 150 рабочих мин, срок нарушен.")
        assert any("срок нарушен: уведомлены Дмитрий Колесников (#7), Иван Петров (#5)" in line
                   for line in explain(session, running.id, CAL))
        assert explain(session, gone.id, CAL)[-1] == "Итог: отсчёт отменён (удалено)."
        assert explain(session, 999, CAL) == ["Часы ответа №999 не найдены."]


def test_rescore_after_a_calendar_change_keeps_sent_notifications(t: Ticker) -> None:
    answered = t.create(11, nsk(11, 27, 16, 45))
    running = t.create(12, nsk(11, 27, 16, 45))
    t.tick(nsk(11, 30, 10, 15))
    entity = t.comment(11, REP, nsk(11, 30, 9, 30))
    t.handle("ONTASKCOMMENTADD", entity)
    queued = t.queued()
    # The admin declares Monday 30.11 a day off and the target becomes 60 minutes.
    day_off = WorkingCalendar(replace(CAL.rules, extra_days_off=frozenset({
        datetime(2026, 11, 30).date()})))
    with session_scope(t.sessions) as session:
        changed = rescore(session, t.portal, day_off, sla.SlaPolicy(60, 0.75), nsk(11, 1, 0),
                          now=nsk(12, 1, 9, 0))
    assert changed == 2
    with t.sessions() as session:
        a = session.get_one(SlaClock, answered.id)
        r = session.get_one(SlaClock, running.id)
        assert (a.due_at, a.target_minutes, a.working_minutes) == (nsk(12, 1, 9, 15), 60, 45)
        assert (r.warn_at, r.due_at, r.working_minutes) == (
            nsk(11, 27, 17, 30), nsk(12, 1, 9, 15), 45)
        assert r.breached_at == nsk(11, 30, 10, 15)  # history stays
    assert t.queued() == queued
    assert t.events(answered.id)[-1][0] == "rescored"
    with session_scope(t.sessions) as session:
        assert rescore(session, t.portal, day_off, sla.SlaPolicy(60, 0.75), nsk(11, 1, 0),
                       now=nsk(12, 1, 9, 0)) == 0
    with t.sessions() as session:
        assert any("пересчитано: срок пн 30.11.2026 10:15 → вт 01.12.2026 09:15" in line
                   for line in explain(session, answered.id, day_off))


def test_ticks_skip_inactive_portals(t: Ticker) -> None:
    t.create(11, nsk(11, 16, 10))
    with session_scope(t.sessions) as session:
        session.execute(update(Portal).values(status="needs_reinstall"))
    report = t.tick(nsk(11, 16, 12))
    assert (report.portals, report.due) == (0, 0)


# ---- breaches noticed after the stop; warnings made moot ----

def test_an_answer_after_the_due_instant_found_after_downtime_still_breaches(t: Ticker) -> None:
    """Regression: the worker was down over the due instant; the late answer it then found
    at the source stopped the clock as answered and the breach was never reported."""
    clock = t.create(11, nsk(11, 16, 10))
    t.comment(11, REP, nsk(11, 16, 13))  # an hour after the due instant, nobody ticking
    report = t.tick(nsk(11, 16, 14))
    assert (report.answered, report.breached) == (1, 1)
    assert {(u, tag) for u, _k, tag, _nb in t.queued()} == {
        (ROP, f"sla-{clock.id}-breach"), (REP, f"sla-{clock.id}-breach")}
    sent = {u: m.splitlines() for u, m, _tag in t.send(nsk(11, 16, 14))}
    assert sent[ROP][0].endswith("нет ответа 2 рабочих часа (исполнитель: Иван Петров)")
    assert "Ответ получен с опозданием: пн 16.11 в 13:00." in sent[ROP]
    assert not any(line.startswith("Ответьте в задаче") for line in sent[REP])
    with t.sessions() as session:
        row = session.get_one(SlaClock, clock.id)
        assert (row.state, row.stopped_at, row.breached_at) == (
            "answered", nsk(11, 16, 13), nsk(11, 16, 14))
        assert any("отсчёт остановлен позже срока" in line
                   for line in explain(session, clock.id, CAL))
    assert t.tick(nsk(11, 16, 14, 1)).due == 0


def test_a_hook_that_stops_a_clock_after_its_due_leaves_the_breach_to_the_tick(
        t: Ticker) -> None:
    """The tick could not read the source at the due instant; the answer's event came first."""
    clock = t.create(11, nsk(11, 16, 10))
    t.gateway.failures = 1
    assert t.tick(nsk(11, 16, 12)).deferred == 1
    entity = t.comment(11, REP, nsk(11, 16, 12, 20))
    t.at(nsk(11, 16, 12, 21))
    t.handle("ONTASKCOMMENTADD", entity)
    report = t.tick(nsk(11, 16, 12, 22))
    assert (report.due, report.breached) == (1, 1)
    assert len(t.queued()) == 2
    assert t.tick(nsk(11, 16, 12, 23)).due == 0
    breached = [d for k, d in t.events(clock.id) if k == "breached"]
    assert breached[0]["late"] is True


def test_a_late_handover_or_closing_breaches_but_a_deletion_does_not(t: Ticker) -> None:
    handed, closed, deleted = (t.create(n, nsk(11, 16, 10)) for n in (11, 12, 13))
    t.at(nsk(11, 16, 13))  # the worker was down from 11:00 to 13:00
    t.gateway.put("task", make_task(11, responsible_id=REP2, changed_at=nsk(11, 16, 12, 30)))
    t.handle("ONTASKUPDATE", 11)
    t.log(12, "STATUS", CREATOR, nsk(11, 16, 12, 40), ("2", "5"))
    t.gateway.put("task", make_task(12, status=5, closed_at=nsk(11, 16, 12, 40),
                                    changed_at=nsk(11, 16, 12, 40)))
    t.handle("ONTASKUPDATE", 12)
    t.handle("ONTASKDELETE", 13)
    assert t.tick(nsk(11, 16, 13, 1)).breached == 2
    by_clock = {tag for _u, _k, tag, _nb in t.queued()}
    assert by_clock == {f"sla-{handed.id}-breach", f"sla-{closed.id}-breach"}
    with t.sessions() as session:
        texts = set(session.scalars(select(Notification.message)))
    assert any("Задача передана другому исполнителю пн 16.11 в 12:30." in m for m in texts)
    assert any("Задача закрыта пн 16.11 в 12:40 без ответа исполнителя." in m for m in texts)
    assert deleted.id not in {c.id for c in t.clocks() if c.breached_at is not None}


def test_a_warning_queued_for_the_morning_is_withdrawn_when_answered_overnight(
        t: Ticker) -> None:
    """Regression: a task set at 16:00 warns at 17:30, after hours, so the warning waits for
    09:00; the rep answered at 20:00 and was still warned in the morning."""
    clock = t.create(11, nsk(11, 16, 16))
    assert t.tick(nsk(11, 16, 17, 30)).warned == 1
    assert t.queued()[0][3] == nsk(11, 17, 9)
    entity = t.comment(11, REP, nsk(11, 16, 20))
    t.at(nsk(11, 16, 20, 1))
    t.handle("ONTASKCOMMENTADD", entity)
    assert t.queued() == []
    assert t.send(nsk(11, 17, 9)) == []
    assert t.events(clock.id)[-1][1]["warning_withdrawn"] == 1
    with t.sessions() as session:
        assert explain(session, clock.id, CAL)[-2].endswith("; предупреждение отозвано")


def test_a_clock_rescored_into_lateness_after_its_stop_is_never_notified(t: Ticker) -> None:
    """A retroactive rule change re-scores history; it must not page the РОП about it."""
    clock = t.create(11, nsk(11, 27, 16, 45))
    entity = t.comment(11, REP, nsk(11, 30, 9, 30))  # 90 minutes: in time for 120
    t.at(nsk(11, 30, 9, 31))
    t.handle("ONTASKCOMMENTADD", entity)
    with session_scope(t.sessions) as session:
        assert rescore(session, t.portal, CAL, sla.SlaPolicy(60, 0.75), nsk(11, 1, 0),
                       now=nsk(11, 30, 10, 0)) == 1
    with t.sessions() as session:
        row = session.get_one(SlaClock, clock.id)
        assert row.stopped_at > row.due_at == nsk(11, 30, 9, 15)
    assert t.tick(nsk(11, 30, 10, 1)).due == 0
    assert t.queued() == []
