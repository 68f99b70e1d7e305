"""Deals with stage history: two years of purchases, open and stale deals, a refund."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from b24emu.datasets.demo_common import (
    ANCHOR,
    ANCHOR_MONTH,
    SEASON,
    Client,
    ClosedDeal,
    OpenDeal,
    World,
    add_workdays,
    at,
    midnight,
    month_index,
    month_of,
    past_workdays,
    work_time,
    workdays,
)
from b24emu.schema.crm import stage_semantic

OPEN_STAGES = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE")
_PROBABILITY = {"NEW": 10, "PREPARATION": 30, "PREPAYMENT_INVOICE": 50, "EXECUTING": 70,
                "FINAL_INVOICE": 90, "WON": 100, "LOSE": 0}
_WON_PATHS = (("NEW", "PREPARATION", "EXECUTING", "WON"),
              ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "WON"),
              ("NEW", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "WON"),
              ("NEW", "EXECUTING", "WON"))
_LOST_PATHS = (("NEW", "PREPARATION", "LOSE"), ("NEW", "LOSE"),
               ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "LOSE"))
_LOST_REASONS = ("Клиент выбрал Boyard: дешевле на 18 %", "Нет нужных позиций в наличии, срок "
                 "поставки не устроил", "Проект кухни отменён заказчиком", "Купили у Hettich "
                 "по акции", "Бюджет заморожен до следующего сезона")
REFUND_NOTE = ("Возврат: клиент вернул партию (рекламация по подъёмникам AVENTOS), "
               "сделка переведена из «Сделка успешна» в «Сделка провалена», сумма сторнирована.")
OPEN_FRESH, OPEN_STALE = 22, 12


@dataclass
class DealPlan:
    """A deal before insertion: its stages with times and money."""

    client: Client
    rep: int
    author: int
    stages: list[tuple[str, datetime]]
    amount: float
    returning: bool
    planned_close: datetime | None = None
    comments: str = ""
    source: str = "SELF"
    extra: dict[str, Any] = field(default_factory=dict)


def _amount(rng: random.Random, client: Client, month: int) -> float:
    value = client.size * rng.lognormvariate(0, 0.35) * SEASON[month] ** 0.3
    return float(round(min(1_500_000.0, max(10_000.0, value)), -1))


def _path_times(rng: random.Random, path: tuple[str, ...], start: datetime,
                end: datetime) -> list[tuple[str, datetime]]:
    """Stage moves spread between ``start`` (creation) and ``end`` (the last move)."""
    span = (end - start).total_seconds()
    cuts = sorted(rng.uniform(0.05, 0.95) for _ in path[1:-1])
    times = [start] + [start + timedelta(seconds=int(span * c)) for c in cuts] + [end]
    return list(zip(path, times, strict=True))


def _closed_plan(w: World, client: Client, month: int, won: bool,
                 returning: bool) -> DealPlan | None:
    rng = w.rng
    days = past_workdays(month)
    if not days:
        return None
    closed = work_time(rng, rng.choice(days))
    created = work_time(rng, add_workdays(closed.date(), -rng.randint(1, 8)))
    if created <= client.created:
        created = client.created + timedelta(hours=1)
    if closed <= created:
        return None
    path = rng.choice(_WON_PATHS if won else _LOST_PATHS)
    rep = client.rep
    if client.second_rep is not None and rng.random() < 0.35:
        rep = client.second_rep
    author = w.rop if rng.random() < 0.04 else rep
    plan = DealPlan(client, rep, author, _path_times(rng, path, created, closed),
                    _amount(rng, client, month_of(month)[1]), returning,
                    source="REPEAT_SALE" if returning else rng.choice(
                        ("CALL", "EMAIL", "SELF", "RECOMMENDATION", "TRADE_SHOW")))
    if not won:
        plan.comments = rng.choice(_LOST_REASONS)
    return plan


def _client_deals(w: World, client: Client) -> list[DealPlan]:
    rng = w.rng
    plans: list[DealPlan] = []
    if client.segment == "prospect":
        first = month_index(client.created) + 1
        for _ in range(rng.randint(0, 2)):
            if first < ANCHOR_MONTH:
                plan = _closed_plan(w, client, rng.randrange(max(0, first), ANCHOR_MONTH),
                                    False, False)
                if plan:
                    plans.append(plan)
        return plans
    bought_before = client.segment in ("regular", "occasional", "churned")
    for m in range(client.first, ANCHOR_MONTH + 1):
        if client.churn is not None and m >= client.churn:
            break
        days = past_workdays(m)
        if not days:
            continue
        frac = len(days) / len(workdays(*month_of(m)))
        season = SEASON[month_of(m)[1]]
        chance = 1.0 if m == client.first and not bought_before else (
            min(0.95, client.rate * season) * frac)
        if rng.random() < chance:
            repeat = 2 if client.segment == "regular" and rng.random() < 0.12 * season else 1
            for _ in range(repeat):
                plan = _closed_plan(w, client, m, True, bought_before)
                if plan:
                    plans.append(plan)
                    bought_before = True
                    client.won.append(m)
        if rng.random() < 0.05 * frac:
            plan = _closed_plan(w, client, m, False, bought_before)
            if plan:
                plans.append(plan)
    return plans


def _open_plan(w: World, client: Client, kind: str) -> DealPlan:
    rng = w.rng
    today = ANCHOR.date()
    if kind == "fresh":
        created = work_time(rng, add_workdays(today, -rng.randint(2, 15)))
        moves = rng.randint(0, 3)
        last_day = add_workdays(today, -rng.randint(1, 2))
        horizon = max(created + timedelta(hours=2), work_time(rng, last_day))
    elif kind == "stale":
        created = work_time(rng, add_workdays(today, -rng.randint(32, 85)))
        moves = rng.randint(1, 2)
        horizon = at(add_workdays(created.date(), rng.randint(2, 8)), 16, 0)
    else:
        created = (at(add_workdays(today, -1), 14, rng.randint(5, 55)) if kind == "new"
                   else at(today, 8, rng.randint(20, 50)))
        moves, horizon = 0, created
    path = ("NEW", *sorted(rng.sample(OPEN_STAGES[1:], moves), key=OPEN_STAGES.index))
    stages = [("NEW", created)] if moves == 0 else _path_times(rng, path, created, horizon)
    planned = created + timedelta(days=rng.randint(10, 30))
    returning = bool(client.won)
    plan = DealPlan(client, client.rep, client.rep, stages,
                    _amount(rng, client, month_of(ANCHOR_MONTH)[1]), returning,
                    planned_close=planned,
                    source="EMAIL" if kind in ("new", "today") else "REPEAT_SALE")
    plan.extra["kind"] = kind
    return plan


def _pick_specials(w: World) -> None:
    """One large client served by two reps (its second workshop has its own manager)."""
    first, second = w.reps[0].user_id, w.reps[1].user_id
    regulars = [c for c in w.clients if c.segment == "regular" and c.rep == first]
    pool = [c for c in regulars if c.kind == 0] or regulars or [
        c for c in w.clients if c.segment == "regular"]
    client = pool[0]
    client.second_rep = second if client.rep != second else first
    other = w.rep(client.second_rep).person
    w.portal.companies.rows[client.company_id]["COMMENTS"] = (
        f"Второй цех (ул. Станционная) ведёт {other.name} {other.last_name}.")


def _refund(w: World, plans: list[DealPlan]) -> None:
    """Reverse one recent won deal of a regular client: WON, then moved to LOSE."""
    rng = w.rng
    latest = ANCHOR - timedelta(days=16)
    pool = [p for p in plans if p.stages[-1][0] == "WON" and p.client.segment == "regular"
            and month_index(p.stages[-1][1]) >= ANCHOR_MONTH - 2 and p.stages[-1][1] < latest]
    plan = pool[rng.randrange(len(pool))]
    won_at = plan.stages[-1][1]
    back = work_time(rng, add_workdays(won_at.date(), rng.randint(6, 10)))
    plan.stages.append(("LOSE", back))
    plan.comments = REFUND_NOTE
    plan.extra["refund"] = True


def build_deals(w: World) -> None:
    """All deals and their stage history, inserted in creation order."""
    rng = w.rng
    _pick_specials(w)
    plans: list[DealPlan] = []
    for client in w.clients:
        plans.extend(_client_deals(w, client))
    _refund(w, plans)
    candidates = [c for c in w.clients if c.churn is None and c.segment != "prospect"
                  and c.rate >= 0.3]
    chosen = rng.sample(candidates, OPEN_FRESH + OPEN_STALE + 2)
    kinds = ["fresh"] * OPEN_FRESH + ["stale"] * OPEN_STALE + ["new", "today"]
    plans.extend(_open_plan(w, c, k) for c, k in zip(chosen, kinds, strict=True))
    plans.sort(key=lambda plan: plan.stages[0][1])
    history: list[dict[str, Any]] = []
    for plan in plans:
        deal_id = _insert(w, plan)
        for i, (stage, moment) in enumerate(plan.stages):
            history.append({"TYPE_ID": 1 if i == 0 else 2, "OWNER_TYPE_ID": 2,
                            "OWNER_ID": deal_id, "CREATED_TIME": moment, "CATEGORY_ID": 0,
                            "STAGE_SEMANTIC_ID": stage_semantic(stage), "STAGE_ID": stage})
    history.sort(key=lambda row: row["CREATED_TIME"])
    for row in history:
        w.portal.stage_history.insert(row)


def _insert(w: World, plan: DealPlan) -> int:
    rng = w.rng
    client = plan.client
    created = plan.stages[0][1]
    stage, moved = plan.stages[-1]
    semantic = stage_semantic(stage)
    closed = semantic != "P"
    contacts = [c for c in client.contacts
                if w.portal.contacts.rows[c]["DATE_CREATE"] < created]
    contact = (contacts[0] if rng.random() < 0.8 else rng.choice(contacts)) if contacts else None
    close_date = plan.stages[-2][1] if plan.extra.get("refund") else moved
    row: dict[str, Any] = {
        "TITLE": f"Заказ фурнитуры Blum — {client.title}", "TYPE_ID": "SALE", "CATEGORY_ID": 0,
        "STAGE_ID": stage, "STAGE_SEMANTIC_ID": semantic, "IS_NEW": "Y" if stage == "NEW" else "N",
        "IS_RECURRING": "N", "IS_RETURN_CUSTOMER": "Y" if plan.returning else "N",
        "IS_REPEATED_APPROACH": "N", "PROBABILITY": _PROBABILITY.get(stage),
        "CURRENCY_ID": "RUB", "OPPORTUNITY": plan.amount, "IS_MANUAL_OPPORTUNITY": "Y",
        "TAX_VALUE": 0.0, "COMPANY_ID": client.company_id, "CONTACT_ID": contact,
        "CONTACT_IDS": [contact] if contact else [], "QUOTE_ID": None,
        "BEGINDATE": midnight(created),
        "CLOSEDATE": midnight(close_date if closed or plan.planned_close is None
                              else plan.planned_close),
        "OPENED": "Y", "CLOSED": "Y" if closed else "N", "COMMENTS": plan.comments,
        "ASSIGNED_BY_ID": plan.rep, "CREATED_BY_ID": plan.author, "MODIFY_BY_ID": plan.rep,
        "MOVED_BY_ID": plan.rep, "DATE_CREATE": created, "DATE_MODIFY": moved,
        "MOVED_TIME": moved, "SOURCE_ID": plan.source, "SOURCE_DESCRIPTION": None,
        "LEAD_ID": None, "ADDITIONAL_INFO": None, "LOCATION_ID": None, "ORIGINATOR_ID": None,
        "ORIGIN_ID": None, "UTM_SOURCE": None, "UTM_MEDIUM": None, "UTM_CAMPAIGN": None,
        "UTM_CONTENT": None, "UTM_TERM": None, "LAST_ACTIVITY_TIME": None,
        "LAST_ACTIVITY_BY": None,
    }
    deal_id = w.portal.deals.insert(row)
    if closed:
        w.closed_deals.append(ClosedDeal(deal_id, client, plan.rep, created, close_date,
                                         any(s == "WON" for s, _ in plan.stages)))
    else:
        w.open_deals.append(OpenDeal(deal_id, client, plan.rep, created,
                                     str(plan.extra.get("kind"))))
    return deal_id
