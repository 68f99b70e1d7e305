"""Activity KPIs as tables: visits, trainings, mailing, ideas, weekly needs reports, SLA, format."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from kpi.calendar import WorkingCalendar
from kpi.definitions import RecognitionRules
from kpi.facts import Activity, SlaClockFact, TaskFact, TaskFormatFact
from kpi.formulas import (
    mailings,
    marketing_ideas,
    procurement_needs,
    response_sla,
    task_format,
    trainings,
    visits,
)
from tests.kpi.kpifactories import A, B, act, month, nsk, task

D = Decimal
NOV = month(2026, 11)
DAY = nsk(2026, 11, 12)
LATE_NOV, EARLY_DEC = nsk(2026, 11, 30, 23, 30), nsk(2026, 12, 1, 0, 10)


# ---- visits ----

@pytest.mark.parametrize(("activities", "rep", "count"), [
    pytest.param([], A, 0, id="none"),
    pytest.param([act(A, DAY)], A, 1, id="completed meeting bound to a client"),
    pytest.param([act(A, DAY, completed=False)], A, 0, id="planned, not done"),
    pytest.param([act(A, DAY, clients=())], A, 0, id="not bound to a client"),
    pytest.param([act(A, DAY, clients=("contact:5",))], A, 1, id="bound to a contact"),
    pytest.param([act(A, DAY, type_id=6, provider="CRM_MEETING")], A, 1, id="provider"),
    pytest.param([act(A, DAY, type_id=6, provider="CRM_TODO", subject="Визит: Кухни Сибири")], A,
                 1, id="to-do with the visit marker"),
    pytest.param([act(A, DAY, type_id=2, subject="Звонок")], A, 0, id="a call is no visit"),
    # Regression: the marker made a call or an e-mail that arranges a visit count as one.
    pytest.param([act(A, DAY, type_id=2, provider="VOXIMPLANT_CALL",
                      subject="Визит: согласовать время")], A, 0,
                 id="a call with the visit marker is no visit"),
    pytest.param([act(A, DAY, type_id=4, provider="CRM_EMAIL", direction=2,
                      subject="Визит менеджера НОИС 20 ноября")], A, 0,
                 id="an e-mail with the visit marker is no visit"),
    pytest.param([act(A, DAY, type_id=3, provider="CRM_TASKS_TASK", subject="Визит к клиенту")],
                 A, 1, id="a task activity with the visit marker"),
    pytest.param([act(A, LATE_NOV), act(A, EARLY_DEC)], A, 1, id="Novosibirsk month boundary"),
    pytest.param([act(A, DAY, activity_id=7), act(A, DAY, activity_id=7)], A, 1,
                 id="the same activity twice"),
    pytest.param([act(A, DAY), act(B, DAY)], A, 1, id="another rep's visit"),
    pytest.param([act(A, DAY), act(B, DAY)], None, 2, id="team"),
])
def test_visits(activities: list[Activity], rep: int | None, count: int) -> None:
    assert visits(activities, rep, NOV) == count


def test_visit_markers_are_rules() -> None:
    todo = act(A, DAY, type_id=6, provider="CRM_TODO", subject="Выезд к клиенту")
    assert visits([todo], A, NOV) == 0
    assert visits([todo], A, NOV, rules=RecognitionRules(visit_markers=("Выезд",))) == 1
    meeting = act(A, DAY)
    assert visits([meeting], A, NOV, rules=RecognitionRules(visit_type_ids=frozenset())) == 0


# ---- trainings ----

@pytest.mark.parametrize(("activity", "count"), [
    (act(A, DAY, subject="Обучение монтажу Blum"), 1),
    (act(A, DAY, subject="Семинар: обучение по AVENTOS", type_id=6), 1),  # contains
    (act(A, DAY, subject="Обучение", type_id=5, clients=()), 1),  # calendar import, no client
    (act(A, DAY, subject="Обучение: приглашение", type_id=4, direction=2), 0),  # an e-mail
    (act(A, DAY, subject="Обучение монтажу", completed=False), 0),
    (act(A, DAY, subject="Встреча"), 0),
    (act(A, EARLY_DEC, subject="Обучение"), 0),
    (act(B, DAY, subject="Обучение"), 0),
])
def test_trainings(activity: Activity, count: int) -> None:
    assert trainings([activity], A, NOV) == count


def test_training_markers_are_rules() -> None:
    seminar = act(A, DAY, subject="Семинар для мебельщиков")
    assert trainings([seminar], A, NOV) == 0
    rules = RecognitionRules(training_markers=("Обучение", "Семинар"))
    assert trainings([seminar], A, NOV, rules=rules) == 1


# ---- new-products mailing ----

def email(subject: str, when: datetime = DAY, direction: int = 2, rep: int = A) -> Activity:
    return act(rep, when, type_id=4, subject=subject, direction=direction, completed=False)


def done(title: str, closed: datetime = DAY, status: int = 5) -> TaskFact:
    return task(A, nsk(2026, 11, 2), title, status=status, closed_at=closed)


@pytest.mark.parametrize(("activities", "tasks", "count"), [
    pytest.param([], [], 0, id="none"),
    pytest.param([email("Рассылка новинок: ноябрь") for _ in range(50)], [], 1,
                 id="one mailing to fifty clients"),
    pytest.param([email("Рассылка новинок: ноябрь"), email("Рассылка новинок: LEGRABOX")], [], 2,
                 id="two mailings"),
    pytest.param([email("Рассылка новинок", direction=1)], [], 0, id="incoming e-mail"),
    pytest.param([email("Новинки ноября")], [], 0, id="no marker"),
    pytest.param([email("Рассылка новинок", when=EARLY_DEC)], [], 0, id="December"),
    pytest.param([email("Рассылка новинок", when=LATE_NOV)], [], 1, id="late November"),
    pytest.param([email("Рассылка новинок", rep=B)], [], 0, id="another rep"),
    pytest.param([], [done("Рассылка новинок: ноябрь")], 1, id="a completed task"),
    pytest.param([email("Рассылка новинок: ноябрь")], [done("рассылка  новинок: ноябрь")], 1,
                 id="task and e-mails of one mailing"),
    pytest.param([], [done("Рассылка новинок", status=3)], 0, id="task not completed"),
    pytest.param([], [done("Рассылка новинок", closed=EARLY_DEC)], 0, id="task closed in Dec"),
])
def test_mailings(activities: list[Activity], tasks: list[TaskFact], count: int) -> None:
    assert mailings(activities, tasks, A, NOV) == count


# ---- marketing ideas ----

@pytest.mark.parametrize(("tasks", "rules", "count"), [
    pytest.param([], RecognitionRules(), 0, id="none"),
    pytest.param([task(A, DAY, "Идея: пост про LEGRABOX"), task(A, DAY, "Идея: видео монтажа")],
                 RecognitionRules(), 2, id="two ideas by marker"),
    pytest.param([task(A, DAY, "Нужны буклеты к выставке", group_id=12)], RecognitionRules(), 0,
                 id="group not configured"),
    pytest.param([task(A, DAY, "Нужны буклеты к выставке", group_id=12)],
                 RecognitionRules(marketing_group_ids=frozenset({12})), 1, id="marketing group"),
    pytest.param([task(B, DAY, "Идея: акция", responsible=A)], RecognitionRules(), 0,
                 id="created by another rep"),
    pytest.param([task(A, LATE_NOV, "Идея: один"), task(A, EARLY_DEC, "Идея: два")],
                 RecognitionRules(), 1, id="month boundary"),
])
def test_marketing_ideas(tasks: list[TaskFact], rules: RecognitionRules, count: int) -> None:
    assert marketing_ideas(tasks, A, NOV, rules=rules) == count


# ---- weekly procurement needs reports ----

def report(when: datetime, rep: int = A, title: str = "Потребности клиентов: неделя") -> TaskFact:
    return task(rep, when, title)


NOV_WEEKS = (date(2026, 11, 2), date(2026, 11, 9), date(2026, 11, 16), date(2026, 11, 23))


@pytest.mark.parametrize(("tasks", "kwargs", "due", "reported", "value"), [
    pytest.param([], {}, NOV_WEEKS, (), D(0), id="no reports"),
    pytest.param([report(nsk(2026, 11, 3)), report(nsk(2026, 11, 19))], {}, NOV_WEEKS,
                 (date(2026, 11, 2), date(2026, 11, 16)), D("0.5"), id="two of four"),
    pytest.param([report(nsk(2026, 11, d)) for d in (2, 9, 16, 23)], {}, NOV_WEEKS, NOV_WEEKS,
                 D(1), id="every week"),
    pytest.param([report(nsk(2026, 11, 3)), report(nsk(2026, 11, 6))], {}, NOV_WEEKS,
                 (date(2026, 11, 2),), D("0.25"), id="two reports, one week"),
    pytest.param([report(nsk(2026, 11, 30, 9))], {}, NOV_WEEKS, (), D(0),
                 id="Monday 30 Nov is a December week"),
    pytest.param([report(nsk(2026, 11, 1, 23, 30))], {}, NOV_WEEKS, (), D(0),
                 id="Sunday 1 Nov is an October week"),
    pytest.param([report(nsk(2026, 11, 2, 0, 10))], {}, NOV_WEEKS, (date(2026, 11, 2),),
                 D("0.25"), id="Monday 00:10 local opens the week"),
    pytest.param([report(nsk(2026, 11, 3))], {"now": nsk(2026, 11, 18)},
                 NOV_WEEKS[:2], NOV_WEEKS[:1], D("0.5"), id="running month: ended weeks due"),
    pytest.param([report(nsk(2026, 11, 3)), report(nsk(2026, 11, 17))],
                 {"now": nsk(2026, 11, 18)}, NOV_WEEKS[:3], (NOV_WEEKS[0], NOV_WEEKS[2]),
                 D("0.6667"), id="running week counts once reported"),
    pytest.param([], {"now": nsk(2026, 11, 4)}, (), (), None, id="no week due yet"),
    pytest.param([report(nsk(2026, 11, 3), rep=B)], {}, NOV_WEEKS, (), D(0), id="B's report"),
    pytest.param([report(nsk(2026, 11, 3), title="Отчёт")], {}, NOV_WEEKS, (), D(0),
                 id="no marker, no group"),
    pytest.param([task(A, nsk(2026, 11, 3), "Отчёт", group_id=30)],
                 {"rules": RecognitionRules(procurement_group_ids=frozenset({30}))}, NOV_WEEKS,
                 NOV_WEEKS[:1], D("0.25"), id="procurement group"),
])
def test_procurement_needs(tasks: list[TaskFact], kwargs: dict[str, Any],
                           due: tuple[date, ...], reported: tuple[date, ...],
                           value: Decimal | None) -> None:
    result = procurement_needs(tasks, A, NOV, **kwargs)
    assert (result.due, result.reported, result.share.value) == (due, reported, value)
    assert set(result.missed) == set(due) - set(reported)


def test_procurement_week_across_the_month_edge_counts_for_december() -> None:
    result = procurement_needs([report(nsk(2026, 11, 30, 9))], A, month(2026, 12))
    assert result.reported == (date(2026, 11, 30),)
    assert (result.share.part, result.share.whole) == (1, 5)  # December has five weeks


def test_a_week_without_working_days_is_not_due() -> None:
    # Regression: 5–11 January 2026 is all New Year holidays, yet it was due, so January's
    # needs reports could never reach the 100 % target.
    january = month(2026, 1)
    mondays = (date(2026, 1, 5), date(2026, 1, 12), date(2026, 1, 19), date(2026, 1, 26))
    assert tuple(w.monday for w in january.weeks()) == (date(2025, 12, 29), *mondays)
    reports = [report(nsk(2026, 1, d)) for d in (12, 19, 26)] + [report(nsk(2025, 12, 29))]
    result = procurement_needs(reports, A, january, calendar=WorkingCalendar())
    assert result.due == (date(2025, 12, 29), *mondays[1:])
    assert result.share.value == D(1)
    # A report sent in the holiday week still counts; without a calendar every week is due.
    holiday = procurement_needs([report(nsk(2026, 1, 6))], A, january,
                                calendar=WorkingCalendar())
    assert date(2026, 1, 5) in holiday.due and date(2026, 1, 5) in holiday.reported
    assert procurement_needs(reports, A, january).share.value == D("0.8")


# ---- response SLA and task format ----

def clock(minutes: float, in_time: bool, when: datetime = DAY, rep: int = A) -> SlaClockFact:
    return SlaClockFact(rep, when, in_time, minutes)


@pytest.mark.parametrize(("clocks", "part", "whole", "value", "median"), [
    pytest.param([], 0, 0, None, None, id="no clocks"),
    pytest.param([clock(30, True), clock(90, True), clock(200, False)], 2, 3, D("0.6667"),
                 D("90.0"), id="two of three"),
    pytest.param([clock(30, True), clock(60.5, True)], 2, 2, D(1), D("45.3"),
                 id="even count, half-up"),
    pytest.param([clock(10, True, LATE_NOV), clock(10, False, EARLY_DEC)], 1, 1, D(1), D("10.0"),
                 id="month boundary by the clock's start"),
    pytest.param([clock(10, True), clock(500, False, rep=B)], 1, 1, D(1), D("10.0"),
                 id="another rep's clock"),
])
def test_response_sla(clocks: list[SlaClockFact], part: int, whole: int, value: Decimal | None,
                      median: Decimal | None) -> None:
    result = response_sla(clocks, A, NOV)
    assert (result.in_time.part, result.in_time.whole, result.value, result.median_minutes) == (
        part, whole, value, median)


@pytest.mark.parametrize(("facts", "part", "whole", "value"), [
    pytest.param([], 0, 0, None, id="no tasks"),
    pytest.param([TaskFormatFact(A, DAY, ok) for ok in (True, True, True, False)], 3, 4,
                 D("0.75"), id="three of four"),
    pytest.param([TaskFormatFact(A, LATE_NOV, True), TaskFormatFact(A, EARLY_DEC, False)], 1, 1,
                 D(1), id="month boundary"),
    pytest.param([TaskFormatFact(A, DAY, True), TaskFormatFact(B, DAY, False)], 1, 1, D(1),
                 id="another creator"),
])
def test_task_format(facts: list[TaskFormatFact], part: int, whole: int,
                     value: Decimal | None) -> None:
    result = task_format(facts, A, NOV)
    assert (result.part, result.whole, result.value) == (part, whole, value)
