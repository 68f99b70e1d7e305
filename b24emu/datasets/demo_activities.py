"""CRM activities: visits, trainings, calls, e-mails, the monthly mailing, planned to-dos."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from b24emu.datasets.demo_common import (
    ANCHOR,
    ANCHOR_MONTH,
    SEASON,
    Client,
    Rep,
    World,
    add_work_minutes,
    add_workdays,
    at,
    month_of,
    past_workdays,
    work_time,
    workdays,
)
from b24emu.datasets.names import MONTHS_NOM, NEEDS, TRAINING_TOPICS

MEETING, CALL, EMAIL = 1, 2, 4
IN, OUT = 1, 2
_PROVIDERS = {MEETING: ("CRM_MEETING", "MEETING"), CALL: ("VOXIMPLANT_CALL", "CALL"),
              EMAIL: ("CRM_EMAIL", "EMAIL")}
_SLOTS = ((10, 0), (11, 45), (14, 0), (15, 45))
_VISIT_SUBJECTS = ("Визит к клиенту: {t}", "Визит к клиенту: {t}", "Встреча с технологом: {t}",
                   "Презентация новинок Blum: {t}", "Визит: согласование заказа, {t}",
                   "Визит: рекламация, {t}")
_REQUESTS = ("Запрос цены: {n}", "Наличие и сроки: {n}", "Прошу выставить счёт: {n}",
             "Рекламация: {n}", "Подбор комплектации: {n}")
_WEIGHT = {"regular": 3.0, "occasional": 1.2, "churned": 1.5, "new25": 2.5, "new26": 2.5,
           "prospect": 0.8}


class Acts:
    """Collects activity rows, then inserts them in creation order."""

    def __init__(self, w: World) -> None:
        self.w = w
        self.rows: list[dict[str, Any]] = []

    def add(self, kind: int, client: Client, rep: int, start: datetime, subject: str, *,
            minutes: int = 0, direction: int = 0, done: bool = True,
            created: datetime | None = None, deal: int | None = None, description: str = "",
            bindings: list[int] | None = None, author: int | None = None) -> dict[str, Any]:
        """One activity bound to a company (and a deal, if given)."""
        w = self.w
        end = start + timedelta(minutes=minutes)
        made = created or start
        if made <= client.created:  # Nothing can be planned before the company existed.
            made = min(start, client.created + timedelta(minutes=10))
        provider, provider_type = _PROVIDERS[kind]
        owner_type, owner_id = (2, deal) if deal else (4, client.company_id)
        links = [{"OWNER_TYPE_ID": 2, "OWNER_ID": deal}] if deal else []
        links += [{"OWNER_TYPE_ID": 4, "OWNER_ID": cid}
                  for cid in (bindings or [client.company_id])]
        comm_type = "EMAIL" if kind == EMAIL else ("PHONE" if kind == CALL else "")
        value = client.email if kind == EMAIL else (client.phone if kind == CALL else "")
        row: dict[str, Any] = {
            "OWNER_ID": owner_id, "OWNER_TYPE_ID": owner_type, "TYPE_ID": kind,
            "PROVIDER_ID": provider, "PROVIDER_TYPE_ID": provider_type,
            "PROVIDER_GROUP_ID": None, "ASSOCIATED_ENTITY_ID": 0, "SUBJECT": subject,
            "CREATED": made, "LAST_UPDATED": max(end, made) if done else made,
            "START_TIME": start, "END_TIME": end,
            "DEADLINE": start, "COMPLETED": "Y" if done else "N", "STATUS": 2 if done else 1,
            "RESPONSIBLE_ID": rep, "PRIORITY": 2, "NOTIFY_TYPE": 0 if done else 1,
            "NOTIFY_VALUE": 0 if done else 15, "DESCRIPTION": description,
            "DESCRIPTION_TYPE": 3 if kind == EMAIL else 1, "DIRECTION": direction,
            "LOCATION": "", "SETTINGS": {}, "ORIGINATOR_ID": None, "ORIGIN_ID": None,
            "AUTHOR_ID": author or rep, "EDITOR_ID": author or rep, "BINDINGS": links,
            "COMMUNICATIONS": [{"TYPE": comm_type, "VALUE": value, "ENTITY_TYPE_ID": 4,
                                "ENTITY_ID": client.company_id}] if comm_type else [],
            "FILES": [],
        }
        self.rows.append(row)
        seen = max(end, made) if done else made
        if seen <= ANCHOR:
            for link in links:
                w.touch(link["OWNER_TYPE_ID"], link["OWNER_ID"], seen, rep)
        return row

    def flush(self) -> None:
        """Insert rows in creation order so IDs grow with time, as on a real portal."""
        self.rows.sort(key=lambda row: row["CREATED"])
        for row in self.rows:
            self.w.portal.activities.insert(row)


def _eligible(w: World, rep: Rep, index: int) -> tuple[list[Client], list[float]]:
    """The rep's clients that exist in month ``index`` and deserve attention, with weights."""
    y, m = month_of(index)
    start = date(y, m, 1)
    clients: list[Client] = []
    weights: list[float] = []
    for c in w.clients:
        if rep.user_id not in (c.rep, c.second_rep) or c.created.date() >= start:
            continue
        weight = _WEIGHT[c.segment]
        if c.churn is not None and index >= c.churn:
            weight = 0.3 if index < c.churn + 2 else 0.0
        if weight:
            clients.append(c)
            weights.append(weight)
    return clients, weights


def _visits(acts: Acts, rep: Rep, index: int, clients: list[Client],
            weights: list[float]) -> None:
    rng = acts.w.rng
    days = past_workdays(index)
    full = workdays(*month_of(index))
    if not days or not clients:
        return
    mean = rep.visits * min(1.0, len(full) / 21)
    count = max(rep.visits - 6, min(rep.visits + 4, round(mean + rng.gauss(0, 2.5))))
    count = round(count * len(days) / len(full))
    slots = [(d, s) for d in days for s in _SLOTS]
    for day, (hour, minute) in rng.sample(slots, min(count, len(slots))):
        client = rng.choices(clients, weights)[0]
        start = at(day, hour, minute + rng.randint(0, 14))
        created = work_time(rng, add_workdays(day, -rng.randint(1, 6)))
        subject = rng.choice(_VISIT_SUBJECTS).format(t=client.title)
        row = acts.add(MEETING, client, rep.user_id, start, subject,
                       minutes=rng.choice((45, 60, 60, 90, 120)), created=created,
                       description="Обсудили текущие заказы и потребности, обновили карту.")
        row["LOCATION"] = f"{client.city}, " + str(
            acts.w.portal.companies.rows[client.company_id]["ADDRESS"])
    if rng.random() >= rep.training_skip:
        big = [c for c in clients if c.kind in (0, 4)] or clients
        client = rng.choice(big)
        day = rng.choice(days)
        topic = rng.choice(TRAINING_TOPICS)
        acts.add(MEETING, client, rep.user_id, at(day, rng.choice((10, 14)), 0),
                 f"Обучение: {topic}", minutes=rng.choice((120, 150, 180)),
                 created=work_time(rng, add_workdays(day, -rng.randint(3, 8))),
                 description=f"Техническое обучение для сотрудников клиента: {topic}.")


def _calls(acts: Acts, rep: Rep, index: int, clients: list[Client],
           weights: list[float]) -> None:
    rng = acts.w.rng
    days = past_workdays(index)
    if not days or not clients:
        return
    full = workdays(*month_of(index))
    season = SEASON[month_of(index)[1]] ** 0.5
    count = round((rep.visits * 1.4 + rng.gauss(0, 4)) * season * len(days) / len(full))
    for _ in range(max(0, count)):
        client = rng.choices(clients, weights)[0]
        start = work_time(rng, rng.choice(days))
        if rng.random() < 0.6:
            acts.add(CALL, client, rep.user_id, start, f"Исходящий звонок: {client.title}",
                     minutes=rng.randint(1, 12), direction=OUT)
        else:
            missed = rng.random() < 0.04
            subject = ("Пропущенный звонок" if missed else "Входящий звонок") + \
                f" от {client.title}"
            acts.add(CALL, client, rep.user_id, start, subject,
                     minutes=0 if missed else rng.randint(1, 9), direction=IN)


def _reply_minutes(rng: random.Random, rep: Rep) -> int:
    if rng.random() < rep.fast_reply:
        return rng.randint(8, 110)
    return rng.randint(130, 900)


def _requests(acts: Acts, rep: Rep, index: int, clients: list[Client],
              weights: list[float]) -> None:
    """Incoming client e-mails and the rep's replies (some later than two working hours)."""
    rng = acts.w.rng
    days = past_workdays(index)
    if not days or not clients:
        return
    for _ in range(round(rng.uniform(3, 7) * len(days) / len(workdays(*month_of(index))))):
        client = rng.choices(clients, weights)[0]
        got = work_time(rng, rng.choice(days))
        subject = rng.choice(_REQUESTS).format(n=rng.choice(NEEDS))
        reply = add_work_minutes(got, _reply_minutes(rng, rep))
        answered = reply < ANCHOR
        acts.add(EMAIL, client, rep.user_id, got, subject, direction=IN, done=answered,
                 description="Добрый день! Просим сообщить цену и срок поставки.")
        if answered:
            acts.add(EMAIL, client, rep.user_id, reply, f"Re: {subject}", direction=OUT,
                     description="Добрый день! Направляю предложение во вложении.")


def _mailing(acts: Acts, rep: Rep, index: int, clients: list[Client]) -> None:
    """The monthly new-products mailing: one e-mail bound to the rep's active clients."""
    rng = acts.w.rng
    days = past_workdays(index)[:8]
    if not days or rng.random() < rep.mailing_skip:
        return
    active = [c for c in clients if any(m <= index for m in c.won)][:40]
    if not active:
        return
    y, m = month_of(index)
    row = acts.add(EMAIL, active[0], rep.user_id, work_time(rng, rng.choice(days)),
                   f"Рассылка новинок Blum — {MONTHS_NOM[m - 1]} {y}", direction=OUT,
                   bindings=[c.company_id for c in active],
                   description="Новинки месяца: AVENTOS, LEGRABOX, MERIVOBOX; цены и наличие.")
    row["COMMUNICATIONS"] = [{"TYPE": "EMAIL", "VALUE": c.email, "ENTITY_TYPE_ID": 4,
                              "ENTITY_ID": c.company_id} for c in active]


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A working-hours instant strictly inside (start, end), if the span has one."""
    day = start.date() + timedelta(days=rng.randint(0, max(0, (end - start).days)))
    moment = work_time(rng, day)
    if start < moment < end:
        return moment
    return start + (end - start) * rng.uniform(0.2, 0.8)


def _deal_work(acts: Acts) -> None:
    """Calls, proposals and inbound requests along each closed deal's life."""
    w = acts.w
    rng = w.rng
    for deal in w.closed_deals:
        rep = w.rep(deal.rep)
        if rng.random() < 0.25:
            subject = f"Заявка: {rng.choice(NEEDS)}"
            acts.add(EMAIL, deal.client, deal.rep, deal.created + timedelta(minutes=1), subject,
                     direction=IN, deal=deal.deal_id, description="Просим подготовить КП.")
            reply = add_work_minutes(deal.created, _reply_minutes(rng, rep))
            if reply < deal.closed:
                acts.add(EMAIL, deal.client, deal.rep, reply, f"Re: {subject}", direction=OUT,
                         deal=deal.deal_id)
        if rng.random() < 0.6:
            acts.add(EMAIL, deal.client, deal.rep, _between(rng, deal.created, deal.closed),
                     "Коммерческое предложение НОИС" if deal.won else "КП по запросу",
                     direction=OUT, deal=deal.deal_id)
        if rng.random() < 0.5:
            acts.add(CALL, deal.client, deal.rep, _between(rng, deal.created, deal.closed),
                     f"Исходящий звонок: {deal.client.title}", minutes=rng.randint(2, 10),
                     direction=OUT, deal=deal.deal_id)


def _open_work(acts: Acts) -> None:
    """Open deals: planned to-dos for live ones, nothing for weeks on stale ones."""
    w = acts.w
    rng = w.rng
    for i, deal in enumerate(w.open_deals):
        client = deal.client
        if deal.kind in ("new", "today"):
            acts.add(EMAIL, client, deal.rep, deal.created, f"Заявка: {rng.choice(NEEDS)}",
                     direction=IN, done=False, deal=deal.deal_id,
                     description="Нужна комплектация на три кухни, срочно.")
            continue
        acts.add(CALL, client, deal.rep, deal.created + timedelta(minutes=rng.randint(20, 90)),
                 f"Исходящий звонок: {client.title}", minutes=rng.randint(2, 9),
                 direction=OUT, deal=deal.deal_id)
        if deal.kind == "stale":
            continue
        if i % 7 == 3:  # A few planned to-dos are already overdue.
            start = work_time(rng, add_workdays(ANCHOR.date(), -rng.randint(1, 3)))
        else:
            start = work_time(rng, add_workdays(ANCHOR.date(), rng.randint(0, 5)), 10 * 60)
        kind = rng.choice((CALL, MEETING))
        subject = (f"Позвонить: согласовать заказ, {client.title}" if kind == CALL
                   else f"Визит к клиенту: {client.title}")
        acts.add(kind, client, deal.rep, start, subject, minutes=15 if kind == CALL else 60,
                 direction=OUT if kind == CALL else 0, done=False, deal=deal.deal_id,
                 created=max(deal.created + timedelta(hours=1),
                             work_time(rng, add_workdays(ANCHOR.date(), -rng.randint(1, 5)))))


def _planned_visits(acts: Acts, rep: Rep, clients: list[Client], weights: list[float]) -> None:
    rng = acts.w.rng
    for _ in range(rng.randint(4, 9)):
        client = rng.choices(clients, weights)[0]
        day = add_workdays(ANCHOR.date(), rng.randint(0, 5))
        hour, minute = rng.choice(_SLOTS)
        acts.add(MEETING, client, rep.user_id, at(day, hour, minute),
                 f"Визит к клиенту: {client.title}", minutes=60, done=False,
                 created=work_time(rng, add_workdays(ANCHOR.date(), -rng.randint(1, 5))))


def build_activities(w: World) -> None:
    """Every activity of the demo; then LAST_ACTIVITY_* on companies and deals."""
    acts = Acts(w)
    for rep in w.reps:
        clients: list[Client] = []
        weights: list[float] = []
        for index in range(ANCHOR_MONTH + 1):
            clients, weights = _eligible(w, rep, index)
            _visits(acts, rep, index, clients, weights)
            _calls(acts, rep, index, clients, weights)
            _requests(acts, rep, index, clients, weights)
            _mailing(acts, rep, index, clients)
        _planned_visits(acts, rep, clients, weights)
    _deal_work(acts)
    _open_work(acts)
    acts.flush()
    for (owner_type, owner_id), (moment, user) in w.last_activity.items():
        table = w.portal.deals if owner_type == 2 else w.portal.companies
        row = table.rows.get(owner_id)
        if row is not None:
            row["LAST_ACTIVITY_TIME"] = moment
            row["LAST_ACTIVITY_BY"] = user
