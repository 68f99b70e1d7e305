"""Loaders of the month-scoped KPI facts from the mirror: reps, groups, activities, tasks, cards.

Each query is bounded by one period (activities, tasks, clocks, verdicts), by the open work of
the reps (open deals and tasks) or by the client base (cards, NPS answers): never by the
deal history. The facts are ``kpi.facts`` types, so the pure formulas judge them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from b24app.models import (
    ClockState,
    MirrorActivity,
    MirrorCompany,
    MirrorContact,
    MirrorDeal,
    MirrorDepartment,
    MirrorGroup,
    MirrorStageHistory,
    MirrorTask,
    MirrorUser,
    NpsAnswer,
    SlaClock,
    SurveyInvitation,
    TaskFormatCheck,
)
from kpi.definitions import RecognitionRules, normalize, starts_with_any
from kpi.facts import (
    TASK_CLOSED_STATUSES,
    Activity,
    ClientCard,
    NpsAnswerFact,
    OpenDeal,
    SlaClockFact,
    TaskFact,
    TaskFormatFact,
    client_key,
)
from kpi.formulas_crm import WorkdayCalendar
from kpi.periods import local_midnight

SALES_DEPARTMENT_MARKER = "продаж"  # «Отдел продаж», «Продажи»: matched inside the name
MARKETING_GROUPS = ("Маркетинг",)
PROCUREMENT_GROUPS = ("Заявки в закупки",)
COMPANY, CONTACT, DEAL = 4, 3, 2  # CRM owner type ids
_CHUNK = 500  # ids per IN (...) list


class Calendar(WorkdayCalendar, Protocol):
    """What the compute needs of ``kpi.calendar.WorkingCalendar``."""

    def working_minutes(self, start: datetime, end: datetime) -> float:
        """Working minutes from start to end."""
        ...


@dataclass(frozen=True, slots=True)
class Rep:
    """A sales rep whose KPIs are computed."""

    user_id: int
    name: str


@dataclass(frozen=True, slots=True)
class CardFields:
    """The company user fields of the client card that the KPIs read."""

    budget: str = "UF_CRM_CARD_BUDGET"  # declared annual component budget, ₽
    updated: str = "UF_CRM_CARD_UPDATED"  # the date the rep last updated the card


def _chunks(ids: Collection[int]) -> Iterable[list[int]]:
    items = sorted(ids)
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


# ---------------------------------------------------------------- people and groups


def sales_reps(session: Session, portal_id: int, *, department_ids: Collection[int] = (),
               include_head: bool = False) -> list[Rep]:
    """Active users of the sales department (by name, or the given ids) and its sub-departments."""
    # The head of the department (the РОП) is judged on the team, not as a rep.
    departments = session.execute(
        select(MirrorDepartment.id, MirrorDepartment.name, MirrorDepartment.parent_id,
               MirrorDepartment.head_id)
        .where(MirrorDepartment.portal_id == portal_id,
               MirrorDepartment.deleted_at.is_(None))).all()
    roots = set(department_ids) or {d.id for d in departments
                                    if SALES_DEPARTMENT_MARKER in normalize(d.name)}
    scope, grew = set(roots), True
    while grew:  # sub-departments (regional teams) belong to the sales department too
        more = {d.id for d in departments if d.parent_id in scope} - scope
        scope |= more
        grew = bool(more)
    heads = {d.head_id for d in departments if d.id in roots and d.head_id}
    users = session.execute(
        select(MirrorUser.id, MirrorUser.name, MirrorUser.last_name, MirrorUser.departments)
        .where(MirrorUser.portal_id == portal_id, MirrorUser.deleted_at.is_(None),
               MirrorUser.active.is_(True))
        .order_by(MirrorUser.id)).all()
    return [Rep(u.id, f"{u.name} {u.last_name}".strip() or f"#{u.id}") for u in users
            if scope & set(u.departments or ()) and (include_head or u.id not in heads)]


def groups_named(session: Session, portal_id: int, markers: Sequence[str]) -> frozenset[int]:
    """Live workgroups whose name starts with one of the markers."""
    rows = session.execute(select(MirrorGroup.id, MirrorGroup.name).where(
        MirrorGroup.portal_id == portal_id, MirrorGroup.deleted_at.is_(None)))
    return frozenset(gid for gid, name in rows if starts_with_any(name, markers))


def with_groups(session: Session, portal_id: int, rules: RecognitionRules) -> RecognitionRules:
    """The rules with marketing/procurement groups found by name when none are configured."""
    marketing = rules.marketing_group_ids or groups_named(session, portal_id, MARKETING_GROUPS)
    procurement = rules.procurement_group_ids or groups_named(session, portal_id,
                                                              PROCUREMENT_GROUPS)
    return dataclasses.replace(rules, marketing_group_ids=marketing,
                               procurement_group_ids=procurement)


# ---------------------------------------------------------------- activities


def _deal_clients(session: Session, portal_id: int, deal_ids: Collection[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(deal_ids):
        rows = session.execute(select(MirrorDeal.id, MirrorDeal.company_id, MirrorDeal.contact_id)
                               .where(MirrorDeal.portal_id == portal_id, MirrorDeal.id.in_(chunk)))
        for deal_id, company_id, contact_id in rows:
            key = client_key(company_id, contact_id)
            if key is not None:
                out[deal_id] = key
    return out


def _owners(row: Any) -> list[tuple[int, int]]:
    pairs = [(row.owner_type_id, row.owner_id)]
    pairs += [(int(b[0]), int(b[1])) for b in row.bindings or () if len(b) >= 2]
    return pairs


def _client_keys(pairs: list[tuple[int, int]], deals: Mapping[int, str]) -> tuple[str, ...]:
    keys: list[str] = []
    for kind, oid in pairs:
        key = (client_key(oid) if kind == COMPANY else client_key(None, oid) if kind == CONTACT
               else deals.get(oid) if kind == DEAL else None)
        if key is not None and key not in keys:
            keys.append(key)
    return tuple(keys)


def activities(session: Session, portal_id: int, start: datetime, end: datetime,
               reps: Collection[int]) -> list[Activity]:
    """The reps' activities that took place (START_TIME, else END_TIME, else CREATED) then."""
    a = MirrorActivity
    when = func.coalesce(a.start_time, a.end_time, a.created_at)
    rows = session.execute(
        select(a.id, a.type_id, a.responsible_id, when.label("occurred_at"), a.completed,
               a.provider_id, a.subject, a.direction, a.owner_type_id, a.owner_id, a.bindings)
        .where(a.portal_id == portal_id, a.deleted_at.is_(None), a.responsible_id.in_(reps),
               when >= start, when < end)).all()
    # An activity bound only to a deal is bound to the deal's client.
    via_deal = {oid for row in rows for kind, oid in _owners(row) if kind == DEAL}
    deals = _deal_clients(session, portal_id, via_deal) if via_deal else {}
    return [Activity(r.id, r.type_id, r.responsible_id, r.occurred_at, bool(r.completed),
                     r.provider_id or "", r.subject or "", r.direction,
                     _client_keys(_owners(r), deals)) for r in rows]


# ---------------------------------------------------------------- tasks and deals


_TASK = (MirrorTask.id, MirrorTask.title, MirrorTask.created_by, MirrorTask.responsible_id,
         MirrorTask.created_at, MirrorTask.group_id, MirrorTask.status, MirrorTask.deadline,
         MirrorTask.closed_at)


def _tasks(session: Session, portal_id: int, *where: Any) -> list[TaskFact]:
    rows = session.execute(select(*_TASK).where(
        MirrorTask.portal_id == portal_id, MirrorTask.deleted_at.is_(None),
        MirrorTask.created_at.is_not(None), *where))
    return [TaskFact(r.id, r.title or "", r.created_by, r.responsible_id, r.created_at,
                     r.group_id or 0, r.status, r.deadline, r.closed_at) for r in rows]


def tasks_created(session: Session, portal_id: int, start: datetime, end: datetime,
                  reps: Collection[int]) -> list[TaskFact]:
    """Tasks the reps created in [start, end)."""
    return _tasks(session, portal_id, MirrorTask.created_by.in_(reps),
                  MirrorTask.created_at >= start, MirrorTask.created_at < end)


def tasks_closed(session: Session, portal_id: int, start: datetime, end: datetime,
                 reps: Collection[int]) -> list[TaskFact]:
    """Tasks of the reps (responsible) closed in [start, end)."""
    return _tasks(session, portal_id, MirrorTask.responsible_id.in_(reps),
                  MirrorTask.closed_at >= start, MirrorTask.closed_at < end)


def open_tasks(session: Session, portal_id: int, reps: Collection[int]) -> list[TaskFact]:
    """Tasks the reps are responsible for and have not closed."""
    return _tasks(session, portal_id, MirrorTask.responsible_id.in_(reps),
                  MirrorTask.status.not_in(TASK_CLOSED_STATUSES))


def open_deals(session: Session, portal_id: int, reps: Collection[int]) -> list[OpenDeal]:
    """The reps' open deals (semantic P): since when in the stage, and a planned activity."""
    d, a, h = MirrorDeal, MirrorActivity, MirrorStageHistory
    planned = select(a.id).where(
        a.portal_id == portal_id, a.owner_type_id == DEAL, a.owner_id == d.id,
        a.completed.is_(False), a.deleted_at.is_(None)).exists()
    moved = select(func.max(h.created_at)).where(
        h.portal_id == portal_id, h.owner_id == d.id).scalar_subquery()
    rows = session.execute(
        select(d.id, d.title, d.assigned_by_id, d.moved_at, moved.label("history"),
               d.created_at, planned.label("planned"))
        .where(d.portal_id == portal_id, d.deleted_at.is_(None), d.semantic == "P",
               d.assigned_by_id.in_(reps)))
    out = []
    for r in rows:
        # MOVED_TIME first; the stage history and the creation time cover portals without it.
        since = r.moved_at or r.history or r.created_at
        if since is not None:
            out.append(OpenDeal(r.id, r.title or "", r.assigned_by_id, since, bool(r.planned)))
    return out


# ---------------------------------------------------------------- client cards


def parse_money(value: Any) -> Decimal | None:
    """A money or double field as Decimal (``"1200000.00"``, ``1.2e6``, ``"1200000|RUB"``)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    text = str(value).split("|", 1)[0].strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def parse_day(value: Any) -> date | None:
    """A date field's local date (``2026-10-05T00:00:00+07:00``, ``2026-10-05``, ``05.10.2026``)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    try:
        return datetime.strptime(text[:10], "%d.%m.%Y").date()
    except ValueError:
        return None


def client_cards(session: Session, portal_id: int, fields: CardFields, tz: str) -> list[ClientCard]:
    """Every live company's card: its owner, declared budget and card date (local midnight)."""
    # Two JSON fields, not the whole raw record: the card is one of dozens of fields.
    c = MirrorCompany
    rows = session.execute(
        select(c.id, c.title, c.assigned_by_id, c.raw[fields.budget].label("budget"),
               c.raw[fields.updated].label("updated"))
        .where(c.portal_id == portal_id, c.deleted_at.is_(None)).order_by(c.id))
    cards = []
    for r in rows:
        day = parse_day(r.updated)
        at = None if day is None else local_midnight(day, tz)
        cards.append(ClientCard(f"company:{r.id}", r.assigned_by_id, at, parse_money(r.budget),
                                at, r.title or ""))
    return cards


# ---------------------------------------------------------------- NPS


def nps_answers(session: Session, portal_id: int, as_of: datetime,
                since: datetime) -> list[NpsAnswerFact]:
    """Answers given before as_of: those since ``since`` and all of the latest wave."""
    n = NpsAnswer
    base = (n.portal_id == portal_id, n.answered_at < as_of)
    latest = session.scalar(select(func.max(n.wave)).where(*base))
    if latest is None:
        return []
    invitation, company, contact = (aliased(SurveyInvitation), aliased(MirrorCompany),
                                    aliased(MirrorContact))
    rows = session.execute(
        select(n.contact_id, n.company_id, n.score, n.wave, n.answered_at,
               invitation.rep_id, company.assigned_by_id.label("company_rep"),
               contact.assigned_by_id.label("contact_rep"))
        .outerjoin(invitation, and_(invitation.portal_id == n.portal_id,
                                    invitation.contact_id == n.contact_id,
                                    invitation.wave == n.wave))
        .outerjoin(company, and_(company.portal_id == n.portal_id, company.id == n.company_id))
        .outerjoin(contact, and_(contact.portal_id == n.portal_id, contact.id == n.contact_id))
        .where(*base, or_(n.answered_at >= since, n.wave == latest)))
    out = []
    for r in rows:
        key = client_key(r.company_id, r.contact_id)
        # The rep the survey was sent for; answers from an import or a CRM field have no
        # invitation and go to the client's owner.
        rep = r.rep_id or r.company_rep or r.contact_rep or 0
        if key is not None:
            out.append(NpsAnswerFact(key, rep, r.score, r.wave, r.answered_at, r.contact_id))
    return out


def last_nps(session: Session, portal_id: int, as_of: datetime) -> dict[int, tuple[int, datetime]]:
    """Per company: the score and instant of its contacts' latest answer before as_of."""
    n = NpsAnswer
    # Ties (two contacts answering at the same instant) go to the higher contact id.
    rank = func.row_number().over(partition_by=n.company_id,
                                  order_by=(n.answered_at.desc(), n.contact_id.desc()))
    ranked = (select(n.company_id, n.score, n.answered_at, rank.label("rank"))
              .where(n.portal_id == portal_id, n.company_id.is_not(None), n.answered_at < as_of)
              .subquery())
    rows = session.execute(select(ranked.c.company_id, ranked.c.score, ranked.c.answered_at)
                           .where(ranked.c["rank"] == 1))
    return {cid: (score, at) for cid, score, at in rows}


# ---------------------------------------------------------------- SLA and task format


def sla_clocks(session: Session, portal_id: int, start: datetime, end: datetime,
               reps: Collection[int], *, as_of: datetime, calendar: Calendar,
               policies: Collection[str] = ("task",)) -> list[SlaClockFact]:
    """Clocks of the reps started in [start, end) and decided by as_of (answered or breached)."""
    s = SlaClock
    rows = session.execute(
        select(s.responsible_id, s.started_at, s.due_at, s.state, s.stopped_at,
               s.working_minutes)
        .where(s.portal_id == portal_id, s.policy.in_(policies), s.responsible_id.in_(reps),
               s.started_at >= start, s.started_at < end,
               s.state != ClockState.CANCELLED.value))
    out = []
    for r in rows:
        if r.state == ClockState.ANSWERED.value and r.stopped_at is not None \
                and r.stopped_at <= as_of:
            minutes = r.working_minutes
            if minutes is None:
                minutes = calendar.working_minutes(r.started_at, r.stopped_at)
            out.append(SlaClockFact(r.responsible_id, r.started_at, r.stopped_at <= r.due_at,
                                    minutes))
        elif r.due_at <= as_of:
            # Breached and still unanswered at as_of: the minutes elapsed so far.
            out.append(SlaClockFact(r.responsible_id, r.started_at, False,
                                    calendar.working_minutes(r.started_at, as_of)))
    return out


def task_formats(session: Session, portal_id: int, start: datetime, end: datetime,
                 reps: Collection[int]) -> list[TaskFormatFact]:
    """Format verdicts at creation of the tasks the reps created in [start, end)."""
    t = TaskFormatCheck
    rows = session.execute(
        select(t.created_by, t.task_created_at, t.compliant_at_creation)
        .where(t.portal_id == portal_id, t.created_by.in_(reps),
               t.compliant_at_creation.is_not(None), t.task_created_at >= start,
               t.task_created_at < end))
    return [TaskFormatFact(r.created_by, r.task_created_at, bool(r.compliant_at_creation))
            for r in rows]
