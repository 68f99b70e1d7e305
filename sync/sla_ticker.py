"""Response clocks over time: the clock store the hooks share, source verification, the tick.

The hooks (``handlers/sla.py``) start and stop clocks as events arrive; the tick (a job
every minute) moves running clocks to their warning and breach. Bitrix24 never re-sends a
lost event, so before any notification the tick re-reads the source (task history and
comments, CRM activities and the deal): a reaction the hooks missed stops the clock as
answered at its real time, and nobody is notified. The tick may run late (the worker was
down): one pass handles everything overdue, and the clock's own marks (``warned_at``,
``breached_at``) plus the outbox's unique tags keep every notification to one.

A breach is a fact of the due instant, not of the tick: a clock that stops after its due
instant without a breach notice (the reaction came while the worker was down or the
source could not be read, a hook stopped it first, the task was closed or handed over
late) still gets its breach notice, saying how it ended. A warning still queued when its
clock stops is withdrawn: nobody is warned about a task they have answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from b24app import outbox
from b24app.calendar_rules import calendar_from_settings
from b24app.config import CalendarSettings, Settings, SlaSettings
from b24app.context import AppContext
from b24app.db import insert_ignoring_conflict, session_scope
from b24app.gateway.errors import AuthRevoked, B24Error
from b24app.gateway.protocol import Gateway
from b24app.gateway.types import Activity, Department, TaskHistoryEntry, User
from b24app.gateway.wire import to_int
from b24app.models import (
    ClockState,
    MirrorCompany,
    MirrorDeal,
    MirrorDepartment,
    MirrorTask,
    MirrorUser,
    Portal,
    PortalStatus,
    SlaClock,
    SlaClockEvent,
)
from kpi import sla
from kpi.calendar import WorkingCalendar

log = logging.getLogger(__name__)

T = TypeVar("T")
TASK, CRM = "task", "crm"
RUNNING = ClockState.RUNNING.value
REFRESH_LOOKBACK = timedelta(days=7)
# How long past a stage an unreadable source may hold its notification back: a warning
# or a breach an hour late, unverified, beats silence while the portal misbehaves.
VERIFY_GRACE = timedelta(hours=1)
# How far back a clock that stopped after its due instant still gets its missed breach.
LATE_WINDOW = timedelta(days=7)


# ---------------------------------------------------------------- rules of one run


@lru_cache(maxsize=8)
def calendar_for(settings: CalendarSettings) -> WorkingCalendar:
    """One calendar (and its day table) per distinct calendar configuration."""
    return calendar_from_settings(settings)


@dataclass(frozen=True)
class Rules:
    """The SLA settings resolved once: policy, calendar, scope and the configured РОП."""

    policy: sla.SlaPolicy
    calendar: WorkingCalendar
    settings: SlaSettings

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        """Rules from the ``[sla]`` and ``[calendar]`` sections."""
        return cls(sla.SlaPolicy(settings.sla.target_minutes, settings.sla.warn_ratio),
                   calendar_for(settings.calendar), settings.sla)

    def send_at(self, now: datetime) -> datetime:
        """When a notification may go out: now in working hours, else the next start of work."""
        return now if self.calendar.is_working(now) else self.calendar.next_working_instant(now)


# ---------------------------------------------------------------- people and departments


class PortalPeople:
    """Users and departments read from the portal once, for what the mirror lacks.

    ``tolerant``: a failed read counts as "nobody known" (the tick then writes «#id» and
    falls back to the configured РОП) instead of failing the caller (a hook retries).
    """

    def __init__(self, gateway: Gateway, *, tolerant: bool = False) -> None:
        self._gateway = gateway
        self._tolerant = tolerant
        self._users: dict[int, User] | None = None
        self._departments: list[Department] | None = None

    def _read(self, read: Callable[[], list[T]]) -> list[T]:
        try:
            return read()
        except AuthRevoked:
            raise
        except B24Error as exc:
            if not self._tolerant:
                raise
            log.warning("sla: reading people from the portal failed (%s)", exc.code)
            return []

    def user(self, user_id: int) -> User | None:
        """A user by ID (one ``user.get`` export on first use)."""
        if self._users is None:
            self._users = {u.id: u for u in self._read(self._gateway.users)}
        return self._users.get(user_id)

    def departments(self) -> list[Department]:
        """All departments (one ``department.get`` export on first use)."""
        if self._departments is None:
            self._departments = self._read(self._gateway.departments)
        return self._departments


class Directory:
    """Names, departments and heads: the mirror first, the portal for the rest."""

    def __init__(self, session: Session, portal_id: int, people: PortalPeople) -> None:
        self._session = session
        self._portal_id = portal_id
        self._people = people
        self._depts: dict[int, sla.Dept] | None = None

    def _mirrored(self, user_id: int) -> MirrorUser | None:
        return self._session.get(MirrorUser, {"portal_id": self._portal_id, "id": user_id})

    def user_departments(self, user_id: int) -> tuple[int, ...]:
        """The user's departments, the main one first."""
        row = self._mirrored(user_id)
        if row is not None:
            return tuple(row.departments or ())
        user = self._people.user(user_id)
        return user.departments if user is not None else ()

    def name(self, user_id: int | None) -> str:
        """«Имя Фамилия», or «#id» when nobody knows the user."""
        if not user_id:
            return ""
        row = self._mirrored(user_id)
        if row is not None:
            return f"{row.name} {row.last_name}".strip() or f"#{user_id}"
        user = self._people.user(user_id)
        return user.full_name if user is not None else f"#{user_id}"

    def departments(self) -> Mapping[int, sla.Dept]:
        """Every department's parent and head."""
        if self._depts is None:
            rows = self._session.scalars(select(MirrorDepartment).where(
                MirrorDepartment.portal_id == self._portal_id,
                MirrorDepartment.deleted_at.is_(None))).all()
            self._depts = {r.id: sla.Dept(r.parent_id, r.head_id) for r in rows} or {
                d.id: sla.Dept(d.parent_id, d.head_id) for d in self._people.departments()}
        return self._depts

    def head_for(self, user_id: int, configured: int = 0) -> int | None:
        """The РОП of a user's breach (see :func:`kpi.sla.department_head`)."""
        if configured > 0 and configured != user_id:
            return configured
        return sla.department_head(user_id, self.user_departments(user_id), self.departments())


def scope_for(settings: SlaSettings, directory: Directory) -> sla.SlaScope:
    """The configured departments (with sub-departments) and request groups."""
    configured = settings.department_ids
    departments: frozenset[int] = frozenset()
    if configured:
        parents = {d: info.parent_id for d, info in directory.departments().items()}
        departments = sla.with_subdepartments(configured, parents)
    return sla.SlaScope(departments, frozenset(settings.request_group_ids))


# ---------------------------------------------------------------- the clock store


def _plain(value: Any) -> Any:
    """A JSON-able form of event details (instants as ISO 8601)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def add_event(session: Session, clock: SlaClock, kind: str, at: datetime,
              **detail: Any) -> None:
    """Append one line to the clock's history (what the report explains)."""
    session.add(SlaClockEvent(clock_id=clock.id, at=at, kind=kind, detail=_plain(detail)))


def running_clocks(session: Session, portal_id: int, policy: str,
                   subjects: Iterable[sla.Subject], *, lock: bool = False) -> list[SlaClock]:
    """Running clocks of ``policy`` on any of ``subjects``."""
    wanted = set(subjects)
    if not wanted:
        return []
    statement = select(SlaClock).where(
        SlaClock.portal_id == portal_id, SlaClock.policy == policy, SlaClock.state == RUNNING,
        SlaClock.subject_id.in_({i for _, i in wanted})).order_by(SlaClock.id)
    if lock:
        statement = statement.with_for_update()
    return [c for c in session.scalars(statement) if (c.subject_type, c.subject_id) in wanted]


def before_install(session: Session, portal_id: int, moment: datetime) -> bool:
    """Whether ``moment`` precedes the portal's install (such starts are refused)."""
    # The first sync after an install replays every old record as "new": judging the
    # past would flood the РОП with breaches nobody could have prevented.
    portal = session.get(Portal, portal_id)
    return portal is not None and moment < portal.installed_at


def start_clock(session: Session, rules: Rules, *, portal_id: int, policy: str,
                subject: sla.Subject, responsible_id: int, requester_id: int | None,
                started_at: datetime, trigger: str, now: datetime,
                **detail: Any) -> SlaClock | None:
    """Start a clock unless the subject already has a running one; the new clock or ``None``.

    Starts before the portal's install are refused. The unique key (portal, policy,
    subject, start) makes a repeated start a no-op. A different responsible at the very
    same second (a task handed over within the second it was created) moves the start by a
    second rather than lose the new clock.
    """
    if before_install(session, portal_id, started_at):
        return None
    if running_clocks(session, portal_id, policy, [subject], lock=True):
        return None
    for _attempt in range(3):
        warn_at, due_at = sla.schedule(started_at, rules.policy, rules.calendar)
        statement = insert_ignoring_conflict(session, SlaClock, {
            "portal_id": portal_id, "policy": policy, "subject_type": subject[0],
            "subject_id": subject[1], "trigger": trigger, "responsible_id": responsible_id,
            "requester_id": requester_id, "started_at": started_at,
            "target_minutes": rules.policy.target_minutes, "warn_at": warn_at,
            "due_at": due_at, "state": RUNNING, "updated_at": now,
        }, ["portal_id", "policy", "subject_type", "subject_id", "started_at"]
        ).returning(SlaClock.id)
        clock_id = session.execute(statement).scalar_one_or_none()
        if clock_id is not None:
            clock = session.get_one(SlaClock, clock_id)
            add_event(session, clock, "started", started_at, trigger=trigger,
                      responsible_id=responsible_id, requester_id=requester_id,
                      target_minutes=rules.policy.target_minutes, warn_at=warn_at,
                      due_at=due_at, recorded_at=now, **detail)
            return clock
        existing = session.scalars(select(SlaClock).where(
            SlaClock.portal_id == portal_id, SlaClock.policy == policy,
            SlaClock.subject_id == subject[1], SlaClock.started_at == started_at)).first()
        if existing is None or existing.responsible_id == responsible_id:
            return None  # the same start seen again
        started_at += timedelta(seconds=1)
    return None


def stop_clock(session: Session, rules: Rules, clock: SlaClock, *, kind: str, at: datetime,
               reason: str, now: datetime, **detail: Any) -> None:
    """Stop a running clock: ``kind`` answered, or cancelled/reassigned (state cancelled)."""
    stopped = max(at, clock.started_at)
    minutes = max(rules.calendar.working_minutes(clock.started_at, stopped), 0.0)
    clock.state = (ClockState.ANSWERED if kind == "answered" else ClockState.CANCELLED).value
    clock.stopped_at, clock.stop_reason = stopped, reason
    clock.working_minutes = round(minutes, 3)
    clock.updated_at = now
    withdrawn = outbox.withdraw(session, clock_id=clock.id, kind="sla_warning")
    if withdrawn:
        detail["warning_withdrawn"] = withdrawn
    add_event(session, clock, kind, stopped, reason=reason, working_minutes=round(minutes, 3),
              in_time=minutes <= clock.target_minutes, recorded_at=now, **detail)


def stopped_late(clock: SlaClock) -> bool:
    """Whether a clock stopped after its due instant and nobody was told of the breach.

    A deleted subject is left alone: there is nothing left to link to.
    """
    return (clock.state != RUNNING and clock.breached_at is None
            and clock.stop_reason != "deleted" and clock.stopped_at is not None
            and clock.stopped_at > clock.due_at)


# ---------------------------------------------------------------- task and CRM facts


class TaskRow(Protocol):
    """What starting a task clock needs (``Task`` and ``MirrorTask`` both have it)."""

    @property
    def id(self) -> int: ...
    @property
    def created_by(self) -> int: ...
    @property
    def responsible_id(self) -> int: ...
    @property
    def group_id(self) -> int: ...
    @property
    def status(self) -> int: ...


def task_in_scope(task: TaskRow, rules: Rules, directory: Directory) -> bool:
    """Whether the task's current responsible gets a clock."""
    scope = scope_for(rules.settings, directory)
    creator, responsible = task.created_by, task.responsible_id
    facts = sla.TaskFacts(creator, responsible, task.group_id)
    if scope.needs_departments and responsible != creator:
        facts = sla.TaskFacts(creator, responsible, task.group_id,
                              directory.user_departments(creator),
                              directory.user_departments(responsible))
    return sla.in_scope(facts, scope)


def start_task_clock(session: Session, rules: Rules, directory: Directory, task: TaskRow, *,
                     portal_id: int, at: datetime, trigger: str, now: datetime,
                     **detail: Any) -> SlaClock | None:
    """Start the clock of an open task in scope (not self-assigned)."""
    if task.status in sla.CLOSED_STATUSES or before_install(session, portal_id, at):
        return None  # checked before the scope, which may read the portal's directory
    if not task_in_scope(task, rules, directory):
        return None
    return start_clock(session, rules, portal_id=portal_id, policy=TASK,
                       subject=("task", task.id), responsible_id=task.responsible_id,
                       requester_id=task.created_by or None, started_at=at, trigger=trigger,
                       now=now, **detail)


def activity_facts(activity: Activity) -> sla.ActivityFacts:
    """An activity as the CRM policy sees it (owner first, then its bindings)."""
    owners = ((activity.owner_type_id, activity.owner_id), *activity.bindings)
    return sla.ActivityFacts(activity.type_id, activity.direction, activity.responsible_id,
                             activity.author_id, owners, activity.created_at or
                             activity.start_time)


def related_subjects(session: Session, portal_id: int,
                     subjects: Iterable[sla.Subject]) -> set[sla.Subject]:
    """The subjects, plus the company of each deal and the deals of each company (mirror)."""
    out = set(subjects)
    deals = [i for kind, i in out if kind == "deal"]
    companies = [i for kind, i in out if kind == "company"]
    if deals:
        out |= {("company", c) for c in session.scalars(select(MirrorDeal.company_id).where(
            MirrorDeal.portal_id == portal_id, MirrorDeal.id.in_(deals))) if c}
    if companies:
        out |= {("deal", d) for d in session.scalars(select(MirrorDeal.id).where(
            MirrorDeal.portal_id == portal_id, MirrorDeal.company_id.in_(companies),
            MirrorDeal.deleted_at.is_(None)))}
    return out


def subject_assignee(session: Session, gateway: Gateway, portal_id: int,
                     subject: sla.Subject) -> int:
    """The rep assigned to a deal or company: the mirror, else the portal; 0 when unknown."""
    key = {"portal_id": portal_id, "id": subject[1]}
    row = (session.get(MirrorDeal, key) if subject[0] == "deal"
           else session.get(MirrorCompany, key))
    if row is not None:
        return row.assigned_by_id
    record = gateway.get_deal(subject[1]) if subject[0] == "deal" else gateway.get_company(
        subject[1])
    return record.assigned_by_id if record is not None else 0


def mirror_title(session: Session, portal_id: int, subject: sla.Subject) -> str:
    """The mirrored title of a task, deal or company ("" when not mirrored)."""
    key = {"portal_id": portal_id, "id": subject[1]}
    row: MirrorTask | MirrorDeal | MirrorCompany | None = (
        session.get(MirrorTask, key) if subject[0] == "task"
        else session.get(MirrorDeal, key) if subject[0] == "deal"
        else session.get(MirrorCompany, key))
    return row.title if row is not None else ""


# ---------------------------------------------------------------- verification at the source


@dataclass(frozen=True)
class Finding:
    """What the source says about a running clock."""

    reaction: sla.Reaction | None = None
    cancel: str = ""  # deleted, closed, reassigned
    cancel_at: datetime | None = None
    new_responsible: int = 0
    task: TaskRow | None = None
    title: str = ""
    checked: dict[str, Any] = field(default_factory=dict)


def last_handover(history: Iterable[TaskHistoryEntry], to_user: int,
              since: datetime) -> datetime | None:
    """When the task was last handed to ``to_user`` (its RESPONSIBLE_ID history line)."""
    times = [h.created_at for h in history
             if h.field.upper() == "RESPONSIBLE_ID" and h.to_value == str(to_user)
             and h.created_at is not None and h.created_at >= since]
    return max(times, default=None)


def verify_task(gateway: Gateway, clock: SlaClock, now: datetime) -> Finding:
    """Re-read the task, its history and comments: a missed reaction, deletion, handover."""
    task = gateway.get_task(clock.subject_id)
    if task is None:
        return Finding(cancel="deleted", cancel_at=now)
    history = gateway.task_history(task.id)
    comments = gateway.task_comments(task.id)
    reaction = sla.first_reaction(history, comments, clock.responsible_id, clock.started_at)
    if reaction is not None and reaction.at > now:
        reaction = None  # stamped after our "now" (clock skew): the next tick sees it
    handover = None
    if task.responsible_id != clock.responsible_id:
        handover = (last_handover(history, task.responsible_id, clock.started_at)
                    or task.changed_at or now)
    if reaction is not None and (handover is None or reaction.at <= handover):
        return Finding(reaction=reaction)
    if handover is not None:
        return Finding(cancel="reassigned", cancel_at=handover,
                       new_responsible=task.responsible_id, task=task)
    if task.status in sla.CLOSED_STATUSES:
        return Finding(cancel="closed", cancel_at=(task.closed_at or task.status_changed_at
                                                   or now))
    return Finding(title=task.title, checked={"history": len(history),
                                              "comments": len(comments)})


def verify_crm(gateway: Gateway, clock: SlaClock, subjects: set[sla.Subject],
               now: datetime) -> Finding:
    """Re-read the deal or company and recent activities: a missed reply or stage move."""
    kind, number = clock.subject_type, clock.subject_id
    record = gateway.get_deal(number) if kind == "deal" else gateway.get_company(number)
    if record is None:
        return Finding(cancel="deleted", cancel_at=now)
    found: list[sla.Reaction] = []
    moved_at = getattr(record, "moved_at", None)
    moved_by = to_int(record.fields.get("MOVED_BY_ID"))
    if moved_at is not None and clock.started_at < moved_at <= now and moved_by in (
            0, clock.responsible_id):
        found.append(sla.Reaction(moved_at, "stage", "deal:MOVED_TIME"))
    seen = 0
    for page in gateway.iter_records("activity", modified_since=clock.started_at):
        for activity in page:
            if not isinstance(activity, Activity):
                continue
            seen += 1
            facts = activity_facts(activity)
            if (facts.at is not None and clock.started_at <= facts.at <= now
                    and sla.answers_request(facts, clock.responsible_id, subjects)):
                found.append(sla.Reaction(facts.at, "activity", f"activity:{activity.id}"))
    reaction = min(found, key=lambda r: r.at, default=None)
    if reaction is not None:
        return Finding(reaction=reaction)
    if record.assigned_by_id and record.assigned_by_id != clock.responsible_id:
        return Finding(cancel="reassigned", cancel_at=record.modified_at or now,
                       new_responsible=record.assigned_by_id)
    return Finding(title=record.title, checked={"activities": seen})


# ---------------------------------------------------------------- the tick


@dataclass
class TickReport:
    """What one tick did, over every portal."""

    portals: int = 0
    due: int = 0  # clocks that reached a stage and were looked at
    warned: int = 0
    breached: int = 0
    answered: int = 0  # reactions found at the source that the hooks had missed
    cancelled: int = 0
    deferred: int = 0  # the source could not be read; retried on the next tick
    queued: int = 0  # notifications put into the outbox
    failed_portals: int = 0  # an unexpected error stopped a portal's pass (logged)


def tick(ctx: AppContext, now: datetime) -> TickReport:
    """Warn, verify and breach every clock that reached a stage, on every active portal."""
    report = TickReport()
    rules = Rules.from_settings(ctx.settings)
    with ctx.sessions() as session:
        portals = session.execute(select(Portal.id, Portal.domain).where(
            Portal.status == PortalStatus.ACTIVE.value).order_by(Portal.id)).all()
    for portal_id, domain in portals:
        report.portals += 1
        try:
            _tick_portal(ctx, rules, (portal_id, domain), now, report)
        except AuthRevoked:
            # The inbox worker flags the portal for re-install; its clocks wait for it.
            log.warning("sla tick: portal %s rejects our credentials", portal_id)
        except Exception:
            # One portal's failure must not starve the others; the next tick retries it.
            report.failed_portals += 1
            log.exception("sla tick: portal %s failed", portal_id)
    return report


def _due_clock_ids(session: Session, portal_id: int, now: datetime) -> list[int]:
    running = and_(SlaClock.state == RUNNING,
                   or_(and_(SlaClock.warn_at <= now, SlaClock.warned_at.is_(None)),
                       SlaClock.due_at <= now))
    # A clock re-scored after its stop (``b24app.sla_report.rescore``) is history judged
    # by new rules: it is reported, never notified.
    rescored = exists().where(SlaClockEvent.clock_id == SlaClock.id,
                              SlaClockEvent.kind == "rescored",
                              SlaClockEvent.at >= SlaClock.stopped_at)
    late = and_(SlaClock.state != RUNNING, SlaClock.stop_reason != "deleted",
                SlaClock.due_at <= now, SlaClock.due_at >= now - LATE_WINDOW,
                SlaClock.stopped_at > SlaClock.due_at, ~rescored)
    return list(session.scalars(select(SlaClock.id).where(
        SlaClock.portal_id == portal_id,
        SlaClock.breached_at.is_(None),  # after a breach a warning would be stale
        or_(running, late),
    ).order_by(SlaClock.due_at, SlaClock.id)))


def _tick_portal(ctx: AppContext, rules: Rules, portal: tuple[int, str], now: datetime,
                 report: TickReport) -> None:
    with ctx.sessions() as session:
        clock_ids = _due_clock_ids(session, portal[0], now)
    if not clock_ids:
        return
    run = _PortalTick(ctx, rules, ctx.gateways.for_portal(portal[0]), portal=portal, now=now,
                      report=report)
    for clock_id in clock_ids:
        report.due += 1
        try:
            run.advance(clock_id)
        except AuthRevoked:
            raise
        except B24Error as exc:
            # Never declare a breach without the source: try again on the next tick.
            report.deferred += 1
            log.warning("sla clock %s: source check failed (%s); retrying next tick",
                        clock_id, exc.code)


def verify(gateway: Gateway, clock: SlaClock, subjects: set[sla.Subject],
           now: datetime) -> Finding:
    """Ask the source about a clock of either policy."""
    if clock.policy == TASK:
        return verify_task(gateway, clock, now)
    return verify_crm(gateway, clock, subjects, now)


class _PortalTick:
    """One tick over one portal's due clocks."""

    def __init__(self, ctx: AppContext, rules: Rules, gateway: Gateway, *,
                 portal: tuple[int, str], now: datetime, report: TickReport) -> None:
        self.ctx, self.rules, self.gateway = ctx, rules, gateway
        self.portal_id, self.domain = portal
        self.now, self.report = now, report
        self.people = PortalPeople(gateway, tolerant=True)

    def _read(self, clock_id: int) -> tuple[SlaClock | None, set[sla.Subject]]:
        with self.ctx.sessions() as session:
            clock = session.get(SlaClock, clock_id)
            if clock is None:
                return None, set()
            return clock, related_subjects(session, clock.portal_id,
                                           [(clock.subject_type, clock.subject_id)])

    def advance(self, clock_id: int) -> None:
        """Verify one clock at the source (outside the transaction), then move it on."""
        snapshot, subjects = self._read(clock_id)
        if snapshot is None:
            return
        if snapshot.state != RUNNING:
            self._settle_late(clock_id)
            return
        try:
            finding = verify(self.gateway, snapshot, subjects, self.now)
        except AuthRevoked:
            raise
        except B24Error as exc:
            stage_at = snapshot.due_at if snapshot.due_at <= self.now else snapshot.warn_at
            if self.now - stage_at < VERIFY_GRACE:
                raise  # never notify unverified while there is time to retry
            log.warning("sla clock %s: source unreadable for %s (%s); notifying unverified",
                        clock_id, self.now - stage_at, exc.code)
            finding = Finding(checked={"unverified": exc.code})
        with session_scope(self.ctx.sessions) as session:
            clock = session.execute(select(SlaClock).where(SlaClock.id == clock_id)
                                    .with_for_update()).scalar_one_or_none()
            if clock is None or clock.state != RUNNING:
                return  # a hook stopped it meanwhile
            directory = Directory(session, self.portal_id, self.people)
            if finding.reaction is not None:
                stop_clock(session, self.rules, clock, kind="answered",
                           at=finding.reaction.at, reason=finding.reaction.kind, now=self.now,
                           source="verification", evidence=finding.reaction.source)
                self.report.answered += 1
            elif finding.cancel:
                self._cancel(session, directory, clock, finding)
                self.report.cancelled += 1
            else:
                add_event(session, clock, "verified", self.now, **finding.checked)
                title = finding.title or mirror_title(
                    session, clock.portal_id, (clock.subject_type, clock.subject_id))
                self._notify(session, directory, clock, title)
                return
            if stopped_late(clock):  # the source shows the stop came after the due instant
                self._breach(session, directory, clock, mirror_title(
                    session, clock.portal_id, (clock.subject_type, clock.subject_id)))

    def _settle_late(self, clock_id: int) -> None:
        """The missed breach of a clock a hook stopped after its due instant."""
        with session_scope(self.ctx.sessions) as session:
            clock = session.execute(select(SlaClock).where(SlaClock.id == clock_id)
                                    .with_for_update()).scalar_one_or_none()
            if clock is None or not stopped_late(clock):
                return
            self._breach(session, Directory(session, self.portal_id, self.people), clock,
                         mirror_title(session, clock.portal_id,
                                      (clock.subject_type, clock.subject_id)))

    def _cancel(self, session: Session, directory: Directory, clock: SlaClock,
                finding: Finding) -> None:
        """Stop a clock the source shows deleted, closed by someone else, or handed over."""
        at, now = finding.cancel_at or self.now, self.now
        kind = "reassigned" if finding.cancel == "reassigned" else "cancelled"
        stop_clock(session, self.rules, clock, kind=kind, at=at, reason=finding.cancel,
                   now=now, source="verification",
                   to_responsible=finding.new_responsible or None)
        if finding.cancel != "reassigned":
            return
        if finding.task is not None:
            start_task_clock(session, self.rules, directory, finding.task,
                             portal_id=clock.portal_id, at=at, trigger="reassigned", now=now,
                             previous_clock=clock.id, source="verification")
        elif finding.new_responsible:
            start_clock(session, self.rules, portal_id=clock.portal_id, policy=clock.policy,
                        subject=(clock.subject_type, clock.subject_id),
                        responsible_id=finding.new_responsible,
                        requester_id=clock.requester_id, started_at=at, trigger="reassigned",
                        now=now, previous_clock=clock.id, source="verification")

    def _notice(self, directory: Directory, clock: SlaClock, title: str,
                head: int | None = None) -> sla.Notice:
        subject = (clock.subject_type, clock.subject_id)
        calendar = self.rules.calendar
        outcome = ""
        if clock.state != RUNNING and clock.stopped_at is not None:
            outcome = sla.late_outcome(subject, clock.stop_reason or "", clock.stopped_at,
                                       calendar)
        return sla.Notice(
            subject=subject, title=title, trigger=clock.trigger,
            responsible=directory.name(clock.responsible_id),
            requester=directory.name(clock.requester_id), started_at=clock.started_at,
            due_at=clock.due_at, target_minutes=clock.target_minutes,
            warn_minutes=calendar.working_minutes(clock.started_at, clock.warn_at),
            link=sla.subject_link(self.domain, subject, clock.responsible_id),
            head=directory.name(head), outcome=outcome)

    def _queue(self, session: Session, clock: SlaClock, user_id: int, stage: str,
               text: str) -> None:
        kind = "sla_breach" if stage == "breach" else "sla_warning"
        self.report.queued += outbox.enqueue(
            session, portal_id=clock.portal_id, user_id=user_id, kind=kind,
            tag=f"sla-{clock.id}-{stage}", message=text,
            not_before=self.rules.send_at(self.now), now=self.now, clock_id=clock.id,
            task_id=clock.subject_id if clock.subject_type == "task" else None)

    def _breach(self, session: Session, directory: Directory, clock: SlaClock,
                title: str) -> None:
        """Queue the breach notices to the РОП and the responsible; mark the clock."""
        now, calendar = self.now, self.rules.calendar
        head = directory.head_for(clock.responsible_id,
                                  self.rules.settings.head_of_sales_user_id)
        notice = self._notice(directory, clock, title, head)
        if head is None:
            log.warning("sla clock %s: no head found for user %s; only they are told",
                        clock.id, clock.responsible_id)
        else:
            self._queue(session, clock, head, "breach",
                        sla.breach_text(notice, calendar, to_responsible=False))
        self._queue(session, clock, clock.responsible_id, "breach",
                    sla.breach_text(notice, calendar, to_responsible=True))
        clock.breached_at = clock.updated_at = now
        late = {"late": True, "stopped_at": clock.stopped_at} if notice.outcome else {}
        add_event(session, clock, "breached", now, head_id=head,
                  notified=[u for u in (head, clock.responsible_id) if u],
                  not_before=self.rules.send_at(now), warning_skipped=clock.warned_at is None,
                  **late)
        self.report.breached += 1

    def _notify(self, session: Session, directory: Directory, clock: SlaClock,
                title: str) -> None:
        """The breach if it is due (the warning then is moot), else the warning."""
        now, calendar = self.now, self.rules.calendar
        send_at = self.rules.send_at(now)
        if clock.due_at <= now and clock.breached_at is None:
            self._breach(session, directory, clock, title)
        elif clock.warn_at <= now and clock.warned_at is None and clock.breached_at is None:
            notice = self._notice(directory, clock, title)
            self._queue(session, clock, clock.responsible_id, "warn",
                        sla.warning_text(notice, calendar))
            clock.warned_at = clock.updated_at = now
            add_event(session, clock, "warned", now, notified=[clock.responsible_id],
                      not_before=send_at)
            self.report.warned += 1


# ---------------------------------------------------------------- lost creation events


def refresh_missing(ctx: AppContext, portal_id: int, now: datetime, *,
                    lookback: timedelta = REFRESH_LOOKBACK) -> int:
    """Give a clock to mirrored open tasks that should have one but whose event was lost.

    Only tasks created since the install (and within ``lookback``) are considered, so an
    install never floods the РОП with last month's tasks. The start is the creation, or the
    last handover to the current responsible per the task history; a reaction already in
    the source stops the new clock at once. Returns how many clocks were started.
    """
    rules = Rules.from_settings(ctx.settings)
    with ctx.sessions() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status != PortalStatus.ACTIVE.value:
            return 0
        since = max(now - lookback, portal.installed_at)
        has_clock = exists().where(SlaClock.portal_id == portal_id, SlaClock.policy == TASK,
                                   SlaClock.subject_id == MirrorTask.id)
        candidates = list(session.scalars(select(MirrorTask).where(
            MirrorTask.portal_id == portal_id, MirrorTask.deleted_at.is_(None),
            MirrorTask.created_at >= since, MirrorTask.created_at <= now,
            MirrorTask.status.not_in(sla.CLOSED_STATUSES),
            MirrorTask.responsible_id != MirrorTask.created_by, ~has_clock,
        ).order_by(MirrorTask.id)))
    if not candidates:
        return 0
    gateway = ctx.gateways.for_portal(portal_id)
    people = PortalPeople(gateway)
    started = 0
    for task in candidates:
        history = gateway.task_history(task.id)
        created = task.created_at or now
        start = last_handover(history, task.responsible_id, created) or created
        trigger = "created" if start == created else "reassigned"
        reaction = sla.first_reaction(history, gateway.task_comments(task.id),
                                      task.responsible_id, start)
        with session_scope(ctx.sessions) as session:
            clock = start_task_clock(session, rules, Directory(session, portal_id, people), task,
                                     portal_id=portal_id, at=start, trigger=trigger, now=now,
                                     source="refresh")
            if clock is None:
                continue
            started += 1
            if reaction is not None and reaction.at <= now:
                stop_clock(session, rules, clock, kind="answered", at=reaction.at,
                           reason=reaction.kind, now=now, source="refresh",
                           evidence=reaction.source)
    return started
