"""Tasks with comments and history: needs reports, ideas, requests, the РОП's assignments."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from b24emu.datasets.demo_common import (
    ANCHOR,
    Client,
    Rep,
    World,
    add_work_minutes,
    add_workdays,
    at,
    month_index,
    shift_workday,
    work_time,
    workdays,
)
from b24emu.datasets.demo_org import GROUP_LOGISTICS, GROUP_MARKETING, GROUP_PROCUREMENT
from b24emu.datasets.names import IDEAS, NEEDS

TASKS_FROM = date(2025, 6, 2)  # A Monday: task history covers the last ~17 months.
BAD_TITLES = ("Задача", "Срочно", "!!!", "Вопрос", "Сделать", "Позвонить", "Клиент")
_ROP_TASKS = ("Обновить карту клиента {c} до пятницы", "Связаться с {c}: нет закупок два месяца",
              "Провести обучение для сотрудников {c}", "Подготовить КП для {c} по LEGRABOX",
              "Закрыть висящие сделки по {c} в CRM", "Собрать NPS-опрос у контактов {c}",
              "Согласовать с {c} график поставок на квартал")
_ACKS = ("Принято, беру в работу.", "Добрый день! Взял(а), сегодня отвечу.", "Видела, займусь.",
         "Ок, уточню и вернусь с ответом.")
_RESULTS = ("Готово, результат во вложении.", "Сделано, клиент в курсе.",
            "Заказали у поставщика, срок — три недели.", "Доставка запланирована на четверг.",
            "Включили в контент-план.")
# Share of reactions within two working hours, for people who are not reps.
_FAST = {"procurement": (0.9, 0.8), "logistics": (0.85, 0.75), "marketing": (0.7, 0.8)}


@dataclass
class TaskPlan:
    """A task before insertion, with its timeline of comments and field changes."""

    title: str
    creator: int
    responsible: int
    created: datetime
    deadline: datetime | None
    group: int = 0
    description: str = ""
    crm: list[str] = field(default_factory=list)
    auditors: list[int] = field(default_factory=list)
    # (when, user, field, from, to); field "COMMENT" carries the text in ``to``.
    events: list[tuple[datetime, int, str, Any, Any]] = field(default_factory=list)


class Tasks:
    """Plans tasks and their lives, then inserts tasks, comments and history."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.plans: list[TaskPlan] = []
        self.fast: dict[int, float] = {r.user_id: r.fast_reply for r in w.reps}
        self.fast[w.rop] = 0.8
        for team, shares in _FAST.items():
            for uid, share in zip(getattr(w, team), shares, strict=False):
                self.fast[uid] = share

    def add(self, plan: TaskPlan, *, days: int = 3, defer: float = 0.03,
            reassign: int | None = None) -> TaskPlan:
        """Plan a task and simulate it: first reaction, work, completion (or deferral)."""
        rng = self.w.rng
        if plan.created >= ANCHOR:
            return plan
        self.plans.append(plan)
        ev = plan.events
        who = plan.responsible
        moment = plan.created
        if plan.creator != who:
            if reassign is not None and rng.random() < 0.5:
                moment = add_work_minutes(moment, rng.randint(5, 60))
                ev.append((moment, who, "RESPONSIBLE_ID", who, reassign))
                plan.responsible = who = reassign
            fast = rng.random() < self.fast.get(who, 0.8)
            moment = add_work_minutes(moment, rng.randint(5, 110) if fast
                                      else rng.randint(125, 1200))
            how = rng.random()
            if how < 0.5:
                ev.append((moment, who, "COMMENT", None, rng.choice(_ACKS)))
            elif how < 0.9:
                ev.append((moment, who, "STATUS", 2, 3))
            else:
                ev.append((moment, who, "STATUS", 2, 5))
                return plan
        if rng.random() < 0.05 and plan.deadline is not None:
            moment = add_work_minutes(moment, rng.randint(20, 200))
            new = plan.deadline + timedelta(days=rng.randint(2, 7))
            ev.append((moment, who, "COMMENT", None, "Прошу перенести срок: ждём поставщика."))
            ev.append((moment + timedelta(minutes=3), plan.creator, "DEADLINE", plan.deadline,
                       new))
            plan.deadline = new
        if rng.random() < 0.025:  # Forgotten: stays open and overdue (a «висяк»).
            return plan
        started = any(e[2] == "STATUS" for e in ev)
        moment = add_work_minutes(moment, rng.randint(30, 510 * days))
        if not started and rng.random() < 0.5:
            ev.append((moment, who, "STATUS", 2, 3))
            started = True
            moment = add_work_minutes(moment, rng.randint(20, 600))
        if rng.random() < defer:
            ev.append((moment, who, "STATUS", 3 if started else 2, 6))
            return plan
        if rng.random() < 0.6:
            ev.append((moment, who, "COMMENT", None, rng.choice(_RESULTS)))
        ev.append((moment + timedelta(minutes=1), who, "STATUS", 3 if started else 2, 5))
        return plan

    def flush(self) -> None:
        """Insert tasks, comments and history rows, each table in time order."""
        w = self.w
        self.plans.sort(key=lambda plan: plan.created)
        comments: list[tuple[datetime, int, dict[str, Any]]] = []
        history: list[dict[str, Any]] = []
        for plan in self.plans:
            events = sorted((e for e in plan.events if e[0] < ANCHOR), key=lambda e: e[0])
            task_id = w.portal.tasks.insert(_row(w, plan, events))
            history.append({"TASK_ID": task_id, "CREATED_DATE": plan.created, "FIELD": "NEW",
                            "FROM_VALUE": None, "TO_VALUE": None, "USER_ID": plan.creator})
            for moment, user, name, old, new in events:
                if name == "COMMENT":
                    comments.append((moment, len(history), {
                        "TASK_ID": task_id, "AUTHOR_ID": user, "POST_DATE": moment,
                        "POST_MESSAGE": new}))
                history.append({"TASK_ID": task_id, "CREATED_DATE": moment, "FIELD": name,
                                "FROM_VALUE": _logged(old), "TO_VALUE": _logged(new),
                                "USER_ID": user})
        comments.sort(key=lambda item: item[0])
        for _moment, at_index, row in comments:
            history[at_index]["FROM_VALUE"] = None
            history[at_index]["TO_VALUE"] = str(w.portal.task_comments.insert(row))
        history.sort(key=lambda row: row["CREATED_DATE"])
        for row in history:
            w.portal.task_history.insert(row)


def _logged(value: Any) -> str:
    """A value as ``tasks.task.update`` logs it: a string, dates as unix seconds."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    return str(value)


def _row(w: World, plan: TaskPlan, events: list[tuple[datetime, int, str, Any, Any]]
         ) -> dict[str, Any]:
    status, status_at, status_by = 2, plan.created, plan.creator
    started = closed = None
    title, deadline, responsible = plan.title, plan.deadline, plan.responsible
    for moment, user, name, _old, new in events:
        if name == "STATUS":
            status, status_at, status_by = new, moment, user
            started = started or (moment if new == 3 else None)
            closed = moment if new == 5 else None
    # Changes that lie after the anchor have not happened yet.
    for moment, _user, name, old, _new in sorted(plan.events, key=lambda e: e[0], reverse=True):
        if moment >= ANCHOR:
            if name == "TITLE":
                title = old
            elif name == "DEADLINE":
                deadline = old
            elif name == "RESPONSIBLE_ID":
                responsible = old
    last = events[-1] if events else (plan.created, plan.creator)
    return {
        "PARENT_ID": None, "TITLE": title, "DESCRIPTION": plan.description, "MARK": None,
        "PRIORITY": 2 if plan.title in ("Срочно", "!!!") else 1, "STATUS": status,
        "REAL_STATUS": status, "MULTITASK": "N", "NOT_VIEWED": "N" if events else "Y",
        "REPLICATE": "N", "GROUP_ID": plan.group, "STAGE_ID": 0, "CREATED_BY": plan.creator,
        "CREATED_DATE": plan.created, "RESPONSIBLE_ID": responsible, "ACCOMPLICES": [],
        "AUDITORS": list(plan.auditors), "CHANGED_BY": last[1], "CHANGED_DATE": last[0],
        "STATUS_CHANGED_BY": status_by, "STATUS_CHANGED_DATE": status_at,
        "CLOSED_BY": status_by if closed else None, "CLOSED_DATE": closed,
        "ACTIVITY_DATE": last[0], "DATE_START": started, "DEADLINE": deadline,
        "START_DATE_PLAN": None, "END_DATE_PLAN": None,
        "GUID": "{" + str(uuid.UUID(int=w.rng.getrandbits(128), version=4)) + "}",
        "XML_ID": None, "COMMENTS_COUNT": sum(1 for e in events if e[2] == "COMMENT"),
        "SERVICE_COMMENTS_COUNT": 0, "NEW_COMMENTS_COUNT": 0, "ALLOW_CHANGE_DEADLINE": "Y",
        "ALLOW_TIME_TRACKING": "N", "TASK_CONTROL": "N", "ADD_IN_REPORT": "N",
        "TIME_ESTIMATE": 0, "TIME_SPENT_IN_LOGS": 0, "MATCH_WORK_TIME": "N",
        "FORUM_TOPIC_ID": None, "FORUM_ID": None, "SITE_ID": "s1",
        "SUBORDINATE": "Y" if plan.creator == w.rop else "N", "FAVORITE": "N",
        "VIEWED_DATE": events[0][0] if events else None, "SORTING": None,
        "DURATION_PLAN": None, "DURATION_FACT": None, "DURATION_TYPE": "days",
        "IS_MUTED": "N", "IS_PINNED": "N", "DESCRIPTION_IN_BBCODE": "Y", "CHAT_ID": None,
        "UF_CRM_TASK": list(plan.crm), "TAGS": [],
    }


def _deadline(day: date, workdays_ahead: int, hour: int = 17) -> datetime:
    return at(add_workdays(day, workdays_ahead), hour, 0)


def _rep_clients(w: World, rep: Rep) -> list[Client]:
    return [c for c in w.clients if c.rep == rep.user_id and c.created < ANCHOR]


def _weekly(t: Tasks, rep: Rep, monday: date, clients: list[Client]) -> None:
    """The needs report to procurement, usually on Friday afternoon."""
    w = t.w
    rng = w.rng
    if rng.random() < rep.needs_skip:
        return
    friday = shift_workday(monday + timedelta(days=4), -1)
    created = work_time(rng, friday, 13 * 60, 17 * 60 + 20)
    live = [c for c in clients if c.created < created and c.segment != "prospect"]
    picked = rng.sample(live, min(len(live), rng.randint(2, 5)))
    lines = [f"— {rng.choice(NEEDS)}, {rng.randint(2, 40) * 10} шт. ({c.title})" for c in picked]
    week = monday.isocalendar().week
    t.add(TaskPlan(
        f"Потребности клиентов: неделя {week} ({monday:%d.%m}–{friday:%d.%m})", rep.user_id,
        w.procurement[0], created, _deadline(friday, 2), w.groups[GROUP_PROCUREMENT],
        "\n".join(lines), [f"CO_{c.company_id}" for c in picked], [w.rop]),
        days=2, reassign=w.procurement[1])


def _monthly(t: Tasks, rep: Rep, days: tuple[date, ...], clients: list[Client]) -> None:
    w = t.w
    rng = w.rng
    idx = month_index(days[0])
    for _ in range(max(0, round(rng.gauss(rep.ideas, 0.7) * len(days) / 21))):
        created = work_time(rng, rng.choice(days))
        idea = rng.choice(IDEAS)
        t.add(TaskPlan(f"Идея: {idea}", rep.user_id, w.marketing[0], created,
                       _deadline(created.date(), 10), w.groups[GROUP_MARKETING],
                       f"Предлагаю для контент-плана: {idea}."), days=6, defer=0.15,
              reassign=w.marketing[1])
    won = [d for d in w.closed_deals if d.won and d.rep == rep.user_id
           and month_index(d.closed) == idx]
    for deal in rng.sample(won, min(len(won), rng.randint(2, 5))):
        bad = rng.random() < 0.05
        created = deal.closed + timedelta(minutes=rng.randint(10, 120))
        t.add(TaskPlan("Срочно!!!" if bad else
                       f"Доставка: {deal.client.title}, заказ от {deal.closed:%d.%m}",
                       rep.user_id, rng.choice(w.logistics), created,
                       (created - timedelta(days=1)) if bad else _deadline(created.date(), 2),
                       w.groups[GROUP_LOGISTICS], f"Адрес: {deal.client.city}. Собрать и "
                       "доставить заказ, согласовать время с клиентом.",
                       [f"D_{deal.deal_id}", f"CO_{deal.client.company_id}"]), days=2)
    for _ in range(rng.choice((0, 1, 1, 2))):
        client = rng.choice(clients)
        created = work_time(rng, rng.choice(days))
        kind = rng.choice(("Заказная позиция", "Рекламация"))
        t.add(TaskPlan(f"{kind}: {rng.choice(NEEDS)} для {client.title}", rep.user_id,
                       w.procurement[0], created, _deadline(created.date(), 3),
                       w.groups[GROUP_PROCUREMENT], "Подробности в карточке клиента.",
                       [f"CO_{client.company_id}"]), days=4, reassign=w.procurement[1])
    for _ in range(rng.randint(2, 4)):
        client = rng.choice(clients)
        created = work_time(rng, rng.choice(days))
        title = rng.choice(_ROP_TASKS).format(c=client.title)
        plan = TaskPlan(title, w.rop, rep.user_id, created, _deadline(created.date(), 4),
                        description="Прошу отписаться о результате в задаче.",
                        crm=[f"CO_{client.company_id}"])
        _maybe_bad(t, plan)
        t.add(plan, days=4, defer=0.05)
    for _ in range(rng.randint(1, 3)):
        client = rng.choice(clients)
        created = work_time(rng, rng.choice(days))
        t.add(TaskPlan(f"Перезвонить {client.title} по счёту", rep.user_id, rep.user_id,
                       created, _deadline(created.date(), 1), crm=[f"CO_{client.company_id}"]),
              days=1)
    if rng.random() < 0.6:
        client = rng.choice(clients)
        created = work_time(rng, rng.choice(days))
        t.add(TaskPlan(f"Уточнить у клиента артикулы по заявке: {client.title}",
                       rng.choice(w.procurement), rep.user_id, created,
                       _deadline(created.date(), 1), w.groups[GROUP_PROCUREMENT],
                       crm=[f"CO_{client.company_id}"]), days=1)


def _maybe_bad(t: Tasks, plan: TaskPlan) -> None:
    """Break the task format now and then; fix some later (the history keeps both)."""
    rng = t.w.rng
    roll = rng.random()
    if roll > 0.16:
        return
    good_title, good_deadline = plan.title, plan.deadline
    if roll < 0.08:
        plan.title = rng.choice(BAD_TITLES)
    if roll < 0.04 or roll > 0.12:
        plan.deadline = None
    elif roll >= 0.08:
        plan.deadline = plan.created - timedelta(hours=rng.randint(2, 48))
    if rng.random() < 0.35:  # Fixed by the creator within hours, after a reminder.
        fixed = add_work_minutes(plan.created, rng.randint(20, 240))
        if plan.title != good_title:
            plan.events.append((fixed, plan.creator, "TITLE", plan.title, good_title))
            plan.title = good_title
        if plan.deadline != good_deadline:
            plan.events.append((fixed, plan.creator, "DEADLINE", plan.deadline, good_deadline))
            plan.deadline = good_deadline


def _around_anchor(t: Tasks) -> None:
    """A few tasks just before the anchor that nobody has answered yet."""
    w = t.w
    friday = add_workdays(ANCHOR.date(), -1)
    reps = w.reps
    client = next(c for c in w.clients if c.rep == reps[0].user_id)
    unanswered = (
        TaskPlan("Подготовить отчёт по визитам за октябрь", w.rop, reps[3].user_id,
                 at(friday, 11, 10), _deadline(friday, 3)),
        TaskPlan(f"Доставка: {client.title}, заказ от {friday:%d.%m}", reps[0].user_id,
                 w.logistics[0], at(friday, 16, 40), _deadline(friday, 2),
                 w.groups[GROUP_LOGISTICS], crm=[f"CO_{client.company_id}"]),
        TaskPlan("Срочно", w.rop, reps[5].user_id, at(friday, 15, 30), None),
        TaskPlan(f"Идея: {IDEAS[0]}", reps[2].user_id, w.marketing[0], at(friday, 12, 5),
                 _deadline(friday, 10), w.groups[GROUP_MARKETING]),
        TaskPlan("Уточнить артикулы по заявке на подъёмники AVENTOS", w.procurement[0],
                 reps[1].user_id, at(ANCHOR.date(), 8, 45), _deadline(ANCHOR.date(), 1),
                 w.groups[GROUP_PROCUREMENT]),
    )
    t.plans.extend(unanswered)


def build_tasks(w: World) -> None:
    """All tasks since TASKS_FROM, with comments and history."""
    t = Tasks(w)
    monday = TASKS_FROM
    while monday + timedelta(days=4) < ANCHOR.date():
        for rep in w.reps:
            _weekly(t, rep, monday, _rep_clients(w, rep))
        monday += timedelta(days=7)
    month = TASKS_FROM.replace(day=1)
    while month <= ANCHOR.date():
        days = tuple(d for d in workdays(month.year, month.month)
                     if TASKS_FROM <= d < ANCHOR.date())
        if days:
            for rep in w.reps:
                _monthly(t, rep, days, _rep_clients(w, rep))
        month = (month + timedelta(days=32)).replace(day=1)
    _around_anchor(t)
    t.flush()
