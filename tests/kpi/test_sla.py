"""The response SLA as pure decisions: tables over the worked examples and edge cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from kpi import sla
from kpi.calendar import WorkingCalendar
from kpi.task_format import FIXED, REGULATION

NSK = ZoneInfo("Asia/Novosibirsk")
MSK = ZoneInfo("Europe/Moscow")
CAL = WorkingCalendar()
POLICY = sla.SlaPolicy()
REP, CREATOR, OTHER = 5, 1, 9


def nsk(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    """A Novosibirsk wall-clock instant."""
    return datetime(year, month, day, hour, minute, tzinfo=NSK)


# ---- schedule: warning at 90, breach at 120 working minutes ----

@pytest.mark.parametrize(("start", "warn", "due"), [
    # domain.md worked examples
    (nsk(11, 27, 16, 45), nsk(11, 30, 9, 45), nsk(11, 30, 10, 15)),  # Friday evening
    (nsk(11, 3, 15, 30), nsk(11, 5, 9, 30), nsk(11, 5, 10, 0)),  # short day, 11-04 holiday
    (nsk(11, 28, 12, 0), nsk(11, 30, 10, 30), nsk(11, 30, 11, 0)),  # created on a Saturday
    # an ordinary morning, a start after hours, a start on the last working minute
    (nsk(11, 16, 10, 0), nsk(11, 16, 11, 30), nsk(11, 16, 12, 0)),
    (nsk(11, 16, 20, 0), nsk(11, 17, 10, 30), nsk(11, 17, 11, 0)),
    (nsk(11, 16, 17, 29), nsk(11, 17, 10, 29), nsk(11, 17, 10, 59)),
    # 2026-05-08 is a shortened Friday (to 16:30); 05-09 Saturday, 05-11 the transferred holiday
    (nsk(5, 8, 15, 30), nsk(5, 12, 9, 30), nsk(5, 12, 10, 0)),
    # a stage landing on the end of a day stays there (17:30); then the New Year block:
    # 2025-12-31 is off, work resumes on 2026-01-12
    (nsk(12, 30, 16, 0, 2025), nsk(12, 30, 17, 30, 2025), nsk(1, 12, 9, 30)),
])
def test_schedule(start: datetime, warn: datetime, due: datetime) -> None:
    assert sla.schedule(start, POLICY, CAL) == (warn, due)


def test_schedule_accepts_any_zone() -> None:
    """The Friday example given in Moscow time and in UTC gives the same instants."""
    expected = (nsk(11, 30, 9, 45), nsk(11, 30, 10, 15))
    assert sla.schedule(datetime(2026, 11, 27, 12, 45, tzinfo=MSK), POLICY, CAL) == expected
    assert sla.schedule(datetime(2026, 11, 27, 9, 45, tzinfo=UTC), POLICY, CAL) == expected


def test_policy() -> None:
    assert POLICY.warn_minutes == 90
    assert sla.SlaPolicy(60, 0.5).warn_minutes == 30
    for target, ratio in ((0, 0.75), (120, 0), (120, 1), (-5, 0.5)):
        with pytest.raises(ValueError, match="bad SLA policy"):
            sla.SlaPolicy(target, ratio)


# ---- first reaction ----

@dataclass(frozen=True)
class H:
    """A history line."""

    field: str
    user_id: int
    created_at: datetime | None


@dataclass(frozen=True)
class C:
    """A comment."""

    author_id: int
    posted_at: datetime | None


SINCE = nsk(11, 16, 10, 0)


@pytest.mark.parametrize(("history", "comments", "expected"), [
    ([], [], None),
    ([], [C(REP, nsk(11, 16, 10, 30))], sla.Reaction(nsk(11, 16, 10, 30), "comment", "comment")),
    ([], [C(CREATOR, nsk(11, 16, 10, 5)), C(OTHER, nsk(11, 16, 10, 6))], None),
    ([H("STATUS", REP, nsk(11, 16, 11, 0))], [],
     sla.Reaction(nsk(11, 16, 11, 0), "status", "history:STATUS")),
    ([H("REAL_STATUS", REP, nsk(11, 16, 11, 0))], [],
     sla.Reaction(nsk(11, 16, 11, 0), "status", "history:REAL_STATUS")),
    ([H("STATUS", CREATOR, nsk(11, 16, 10, 1))], [], None),  # the creator started it
    ([H("DEADLINE", REP, nsk(11, 16, 12, 0))], [],
     sla.Reaction(nsk(11, 16, 12, 0), "deadline", "history:DEADLINE")),
    ([H("deadline", CREATOR, nsk(11, 16, 10, 1))], [], None),
    ([H("TITLE", REP, nsk(11, 16, 10, 1)), H("RESPONSIBLE_ID", REP, nsk(11, 16, 10, 2)),
      H("NEW", REP, nsk(11, 16, 10, 3))], [], None),  # not reactions
    ([H("STATUS", REP, nsk(11, 16, 9, 59))], [C(REP, nsk(11, 16, 9, 0))], None),  # before start
    ([H("STATUS", REP, None)], [C(REP, None)], None),  # no time: cannot be placed
    # the earliest of several wins; a comment at the same instant as its history twin
    ([H("STATUS", REP, nsk(11, 16, 11, 0)), H("COMMENT", REP, nsk(11, 16, 10, 40))],
     [C(REP, nsk(11, 16, 10, 40)), C(REP, nsk(11, 16, 10, 50))],
     sla.Reaction(nsk(11, 16, 10, 40), "comment", "comment")),
    ([H("STATUS", REP, SINCE)], [], sla.Reaction(SINCE, "status", "history:STATUS")),
])
def test_first_reaction(history: list[H], comments: list[C],
                        expected: sla.Reaction | None) -> None:
    assert sla.first_reaction(history, comments, REP, SINCE) == expected


@dataclass(frozen=True)
class Posted:
    """A comment as the gateway reads it (with its ID and text)."""

    id: int
    author_id: int
    posted_at: datetime | None
    message: str


@dataclass(frozen=True)
class Logged:
    """A history line with the value it logged."""

    field: str
    user_id: int
    created_at: datetime | None
    to_value: str | None = None


def test_the_services_own_remarks_are_no_reaction() -> None:
    """Regression: the service comments with the installer's account; when the installer is
    the responsible, its format remark (and that remark's COMMENT history line) stopped the
    clock as the responsible's answer."""
    remark = Posted(300, REP, nsk(11, 16, 10, 1), f"{REGULATION}\nПожалуйста, поправьте…")
    thanks = Posted(301, REP, nsk(11, 16, 10, 20), FIXED)
    history = [Logged("COMMENT", REP, nsk(11, 16, 10, 1), "300"),
               Logged("COMMENT", REP, nsk(11, 16, 10, 20))]  # no value: matched by time
    assert sla.first_reaction(history, [remark, thanks], REP, SINCE) is None
    answer = Posted(302, REP, nsk(11, 16, 10, 40), "Принял, сделаю")
    history.append(Logged("COMMENT", REP, nsk(11, 16, 10, 40), "302"))
    assert sla.first_reaction(history, [remark, thanks, answer], REP, SINCE) == sla.Reaction(
        nsk(11, 16, 10, 40), "comment", "comment")


# ---- stages and elapsed time ----

FRIDAY = sla.ClockTimes(nsk(11, 27, 16, 45), nsk(11, 30, 9, 45), nsk(11, 30, 10, 15))


@pytest.mark.parametrize(("now", "expected"), [
    (nsk(11, 27, 17, 0), "running"), (nsk(11, 29, 23, 0), "running"),
    (nsk(11, 30, 9, 44), "running"), (nsk(11, 30, 9, 45), "warn"),
    (nsk(11, 30, 10, 14), "warn"), (nsk(11, 30, 10, 15), "breach"), (nsk(12, 7), "breach"),
])
def test_stage(now: datetime, expected: str) -> None:
    assert sla.stage(FRIDAY, now) == expected


def test_stage_of_a_stopped_clock_is_the_stage_it_reached() -> None:
    answered = sla.ClockTimes(FRIDAY.started_at, FRIDAY.warn_at, FRIDAY.due_at,
                              nsk(11, 30, 9, 50))
    assert sla.stage(answered, nsk(12, 7)) == "warn"
    early = sla.ClockTimes(FRIDAY.started_at, FRIDAY.warn_at, FRIDAY.due_at, nsk(11, 27, 17))
    assert sla.stage(early, nsk(12, 7)) == "running"


@pytest.mark.parametrize(("clock", "until", "minutes"), [
    (FRIDAY, nsk(11, 27, 17, 30), 45), (FRIDAY, nsk(11, 29, 12, 0), 45),
    (FRIDAY, nsk(11, 30, 10, 15), 120), (FRIDAY, nsk(11, 27, 16, 0), 0),
    (sla.ClockTimes(FRIDAY.started_at, FRIDAY.warn_at, FRIDAY.due_at, nsk(11, 30, 9, 30)),
     nsk(12, 7), 75),
    # across the 11-04 holiday after a shortened day
    (sla.ClockTimes(nsk(11, 3, 15, 30), nsk(11, 5, 9, 30), nsk(11, 5, 10, 0)),
     nsk(11, 5, 12, 0), 240),
])
def test_elapsed(clock: sla.ClockTimes, until: datetime, minutes: float) -> None:
    assert sla.elapsed(clock, until, CAL) == minutes


# ---- scope ----

SALES, SALES_NSK, PROCUREMENT = 2, 21, 3
REQUESTS = 40
SCOPE = sla.SlaScope(frozenset({SALES, SALES_NSK}), frozenset({REQUESTS}))


@pytest.mark.parametrize(("task", "scope", "expected"), [
    (sla.TaskFacts(REP, REP), sla.SlaScope(), False),  # self-assigned
    (sla.TaskFacts(CREATOR, 0), sla.SlaScope(), False),  # no responsible
    (sla.TaskFacts(CREATOR, REP), sla.SlaScope(), True),  # no department scope: everyone
    (sla.TaskFacts(CREATOR, REP, 0, (SALES,), (PROCUREMENT,)), SCOPE, True),  # creator's dept
    (sla.TaskFacts(CREATOR, REP, 0, (PROCUREMENT,), (SALES_NSK,)), SCOPE, True),
    (sla.TaskFacts(CREATOR, REP, 0, (PROCUREMENT,), (PROCUREMENT,)), SCOPE, False),
    (sla.TaskFacts(CREATOR, REP, REQUESTS, (PROCUREMENT,), (PROCUREMENT,)), SCOPE, True),
    (sla.TaskFacts(REP, REP, REQUESTS), SCOPE, False),  # self-assigned even in a request group
    (sla.TaskFacts(CREATOR, REP, 77, (), ()), SCOPE, False),
])
def test_in_scope(task: sla.TaskFacts, scope: sla.SlaScope, expected: bool) -> None:
    assert sla.in_scope(task, scope) is expected


def test_scope_needs_departments_only_when_configured() -> None:
    assert not sla.SlaScope(group_ids=frozenset({1})).needs_departments
    assert SCOPE.needs_departments


def test_with_subdepartments() -> None:
    parents = {1: None, SALES: 1, SALES_NSK: SALES, 22: SALES, 221: 22, PROCUREMENT: 1}
    assert sla.with_subdepartments([SALES], parents) == {SALES, SALES_NSK, 22, 221}
    assert sla.with_subdepartments([], parents) == frozenset()
    assert sla.with_subdepartments([99], parents) == {99}


# ---- who is the РОП ----

ROP, BOSS = 7, 1
DEPTS = {1: sla.Dept(None, BOSS), SALES: sla.Dept(1, ROP), SALES_NSK: sla.Dept(SALES, None),
         PROCUREMENT: sla.Dept(1, 30), 50: sla.Dept(51, None), 51: sla.Dept(50, None)}


@pytest.mark.parametrize(("user", "depts", "configured", "head"), [
    (REP, (SALES,), 0, ROP),  # the head of the rep's department
    (REP, (SALES, PROCUREMENT), 0, ROP),  # the main (first) department decides
    (REP, (SALES_NSK,), 0, ROP),  # a headless sub-department: up to the sales head
    (ROP, (SALES,), 0, BOSS),  # the РОП's own breach goes to the parent's head
    (BOSS, (1,), 0, None),  # nobody above the director
    (REP, (), 0, None), (REP, (999,), 0, None),  # unknown department
    (REP, (50,), 0, None),  # a broken cycle in the structure ends the walk
    (REP, (SALES,), 42, 42),  # the configured user wins
    (42, (SALES,), 42, ROP),  # ...but is not told as "the head" about their own breach
])
def test_department_head(user: int, depts: tuple[int, ...], configured: int,
                         head: int | None) -> None:
    assert sla.department_head(user, depts, DEPTS, configured) == head


# ---- the CRM policy ----

def act(type_id: int, direction: int, owners: tuple[tuple[int, int], ...], *,
        responsible: int = REP, author: int = REP) -> sla.ActivityFacts:
    """An activity's facts."""
    return sla.ActivityFacts(type_id, direction, responsible, author, owners, nsk(11, 16, 10))


@pytest.mark.parametrize(("activity", "subject"), [
    (act(sla.EMAIL, sla.INCOMING, ((sla.OWNER_COMPANY, 3), (sla.OWNER_DEAL, 7))), ("deal", 7)),
    (act(sla.CALL, sla.INCOMING, ((sla.OWNER_COMPANY, 3),)), ("company", 3)),
    (act(sla.CALL, sla.INCOMING, ((3, 11),)), None),  # a contact only: no subject
    (act(sla.CALL, sla.OUTGOING, ((sla.OWNER_DEAL, 7),)), None),
    (act(1, sla.INCOMING, ((sla.OWNER_DEAL, 7),)), None),  # a meeting is not a request
    (act(sla.EMAIL, sla.INCOMING, ((sla.OWNER_DEAL, 0),)), None),
])
def test_request_subject(activity: sla.ActivityFacts, subject: sla.Subject | None) -> None:
    assert sla.request_subject(activity) == subject


def test_request_trigger() -> None:
    assert sla.request_trigger(act(sla.EMAIL, sla.INCOMING, ())) == "email"
    assert sla.request_trigger(act(sla.CALL, sla.INCOMING, ())) == "call"


DEAL_7 = {("deal", 7), ("company", 3)}


@pytest.mark.parametrize(("activity", "answers"), [
    (act(sla.EMAIL, sla.OUTGOING, ((sla.OWNER_DEAL, 7),)), True),
    (act(sla.CALL, sla.OUTGOING, ((sla.OWNER_COMPANY, 3),)), True),  # the deal's client
    (act(sla.CALL, sla.OUTGOING, ((sla.OWNER_DEAL, 8),)), False),  # another deal
    (act(sla.CALL, sla.INCOMING, ((sla.OWNER_DEAL, 7),)), False),
    (act(sla.CALL, sla.OUTGOING, ((sla.OWNER_DEAL, 7),), responsible=OTHER, author=OTHER),
     False),
    (act(sla.CALL, sla.OUTGOING, ((sla.OWNER_DEAL, 7),), responsible=OTHER), True),
])
def test_answers_request(activity: sla.ActivityFacts, answers: bool) -> None:
    assert sla.answers_request(activity, REP, DEAL_7) is answers


def test_deal_rules() -> None:
    assert sla.new_deal_starts(REP, CREATOR)
    assert not sla.new_deal_starts(REP, REP)  # the rep made it: already on it
    assert not sla.new_deal_starts(0, CREATOR)
    assert sla.stage_move_answers("NEW", "PREPARATION", REP, REP)
    assert sla.stage_move_answers("NEW", "PREPARATION", 0, REP)
    assert not sla.stage_move_answers("NEW", "PREPARATION", OTHER, REP)
    assert not sla.stage_move_answers("NEW", "NEW", REP, REP)


# ---- wording ----

@pytest.mark.parametrize(("minutes", "text"), [
    (120, "2 рабочих часа"), (90, "1,5 рабочего часа"), (60, "1 рабочий час"),
    (300, "5 рабочих часов"), (1260, "21 рабочий час"), (45, "45 рабочих минут"),
    # a duration («нет ответа 21 рабочую минуту»): the accusative of «минута»
    (1, "1 рабочую минуту"), (21, "21 рабочую минуту"), (22, "22 рабочие минуты"),
    (12, "12 рабочих минут"), (11, "11 рабочих минут"),
    (100, "1 ч 40 мин рабочего времени"), (89.6, "1,5 рабочего часа"),
])
def test_duration_text(minutes: float, text: str) -> None:
    assert sla.duration_text(minutes) == text


def test_links_and_titles() -> None:
    assert sla.subject_link("nois.bitrix24.ru", ("task", 123), REP) == (
        "https://nois.bitrix24.ru/company/personal/user/5/tasks/task/view/123/")
    assert sla.subject_link("nois.bitrix24.ru", ("deal", 7), REP) == (
        "https://nois.bitrix24.ru/crm/deal/details/7/")
    assert sla.short_title("  Подготовить\nКП  ") == "Подготовить КП"
    assert sla.short_title("а" * 80) == "а" * 59 + "…"


NOTICE = sla.Notice(("task", 123), "Подготовить КП для ООО «Ромашка» по петлям Blum", "created",
                    "Иван Петров", "Анна Белова", nsk(11, 27, 16, 45), nsk(11, 30, 10, 15), 120,
                    90, "https://nois.bitrix24.ru/x/", "Дмитрий Колесников")


def test_warning_text() -> None:
    lines = sla.warning_text(NOTICE, CAL).splitlines()
    assert lines == [
        "Задача #123 «Подготовить КП для ООО «Ромашка» по петлям Blum» — нет ответа "
        "1,5 рабочего часа, срок ответа — пн 30.11 в 10:15 (исполнитель: Иван Петров)",
        "Задача поставлена пт 27.11 в 16:45 (постановщик: Анна Белова).",
        "Ответьте в задаче: комментарий, смена статуса или срока остановят отсчёт.",
        "https://nois.bitrix24.ru/x/",
    ]


def test_breach_texts() -> None:
    to_head = sla.breach_text(NOTICE, CAL, to_responsible=False).splitlines()
    assert to_head[0] == ("Задача #123 «Подготовить КП для ООО «Ромашка» по петлям Blum» — "
                          "нет ответа 2 рабочих часа (исполнитель: Иван Петров)")
    assert to_head[1] == ("Срок ответа истёк пн 30.11 в 10:15. Задача поставлена пт 27.11 "
                          "в 16:45 (постановщик: Анна Белова).")
    assert to_head[-1] == "https://nois.bitrix24.ru/x/"
    to_rep = sla.breach_text(NOTICE, CAL, to_responsible=True).splitlines()
    assert to_rep[0] == to_head[0]
    assert "Руководитель уведомлён: Дмитрий Колесников." in to_rep


def test_crm_texts() -> None:
    deal = sla.Notice(("deal", 7), "Поставка петель", "call", "Иван Петров", "", nsk(11, 16, 10),
                      nsk(11, 16, 12), 120, 90, "https://x/crm/deal/details/7/")
    first = sla.breach_text(deal, CAL, to_responsible=True).splitlines()
    assert first[0] == ("Сделка #7 «Поставка петель» — нет ответа клиенту 2 рабочих часа "
                        "(ответственный: Иван Петров)")
    assert first[1] == "Срок ответа истёк пн 16.11 в 12:00. Входящий звонок пн 16.11 в 10:00."
    assert "Свяжитесь с клиентом" in first[2]


def test_a_crm_handover_is_not_called_a_task_handover() -> None:
    """Regression: a deal's clock restarted for a new rep said «Задача передана исполнителю»."""
    deal = sla.Notice(("deal", 7), "Поставка петель", "reassigned", "Иван Петров", "",
                      nsk(11, 16, 10), nsk(11, 16, 12), 120, 90, "https://x/crm/deal/details/7/")
    lines = sla.breach_text(deal, CAL, to_responsible=False).splitlines()
    assert lines[1] == ("Срок ответа истёк пн 16.11 в 12:00. Передано другому ответственному "
                        "пн 16.11 в 10:00.")
    assert sla.trigger_name("reassigned", "task") == "задача передана исполнителю"


def test_a_breach_noticed_after_the_stop_says_how_it_ended() -> None:
    late = sla.Notice(**{**NOTICE.__dict__, "outcome": sla.late_outcome(
        ("task", 123), "comment", nsk(11, 30, 11, 5), CAL)})
    to_rep = sla.breach_text(late, CAL, to_responsible=True).splitlines()
    assert to_rep[2] == "Ответ получен с опозданием: пн 30.11 в 11:05."
    assert not any(line.startswith("Ответьте в задаче") for line in to_rep)  # answered already
    assert sla.late_outcome(("task", 1), "reassigned", nsk(11, 30, 11), CAL) == (
        "Задача передана другому исполнителю пн 30.11 в 11:00.")
    assert sla.late_outcome(("deal", 1), "reassigned", nsk(11, 30, 11), CAL) == (
        "Передано другому ответственному пн 30.11 в 11:00.")
    assert sla.late_outcome(("task", 1), "closed", nsk(11, 30, 11), CAL) == (
        "Задача закрыта пн 30.11 в 11:00 без ответа исполнителя.")
