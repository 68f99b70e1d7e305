"""The response SLA as pure decisions: schedule, first reaction, stage, scope, CRM rules, РОП.

The rule (domain.md, "Communication rules" 2): a task assigned to someone else starts a
clock when it is created or its responsible changes; the responsible's first reaction (a
comment or chat message, a status change, a deadline change) stops it. Warning at
``warn_ratio`` of the target, breach at the target, both in working minutes. The CRM policy
runs on the same engine: an incoming request (a new deal, an incoming e-mail or call) waits
for the assigned rep's first outgoing activity or a stage move of the deal.

Everything here works on plain data (protocols that the gateway types and the models
satisfy) and takes the calendar and ``now`` as arguments; nothing reads a clock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from kpi.calendar import WorkingCalendar
from kpi.task_format import is_service_text

Stage = Literal["running", "warn", "breach"]
ReactionKind = Literal["comment", "status", "deadline", "activity", "stage"]
Subject = tuple[str, int]  # ("task", 12), ("deal", 7), ("company", 3)

# tasks.task.history.list field names that are a reaction when the responsible makes them.
# COMMENT rows duplicate the comments themselves: they help when the comment list is not
# readable (new task card without the im scope).
HISTORY_REACTIONS: Mapping[str, ReactionKind] = {
    "STATUS": "status", "REAL_STATUS": "status", "DEADLINE": "deadline", "COMMENT": "comment",
}
CLOSED_STATUSES = frozenset({4, 5})  # awaiting control, completed (platform doc 5.5)
# How far a COMMENT history line may lie from the service's own comment to be its twin.
_TWIN_SECONDS = 60

# CRM enums (platform doc 5.3 and 5.1).
CALL, EMAIL = 2, 4
INCOMING, OUTGOING = 1, 2
OWNER_DEAL, OWNER_COMPANY = 2, 4
_OWNER_KINDS = {OWNER_DEAL: "deal", OWNER_COMPANY: "company"}


@dataclass(frozen=True)
class SlaPolicy:
    """The target in working minutes and the share of it at which the warning goes out."""

    target_minutes: int = 120
    warn_ratio: float = 0.75

    def __post_init__(self) -> None:
        if self.target_minutes <= 0 or not 0 < self.warn_ratio < 1:
            raise ValueError(f"bad SLA policy: {self.target_minutes} min, ratio {self.warn_ratio}")

    @property
    def warn_minutes(self) -> float:
        """Working minutes after the start at which the responsible is warned."""
        return self.target_minutes * self.warn_ratio


def schedule(start: datetime, policy: SlaPolicy,
             calendar: WorkingCalendar) -> tuple[datetime, datetime]:
    """``(warn_at, due_at)`` of a clock started at ``start``."""
    return (calendar.add_working_minutes(start, policy.warn_minutes),
            calendar.add_working_minutes(start, policy.target_minutes))


# ---------------------------------------------------------------- reactions


class HistoryLike(Protocol):
    """A task log line (``TaskHistoryEntry``)."""

    @property
    def field(self) -> str: ...
    @property
    def user_id(self) -> int: ...
    @property
    def created_at(self) -> datetime | None: ...


class CommentLike(Protocol):
    """A task comment or chat message (``TaskComment``)."""

    @property
    def author_id(self) -> int: ...
    @property
    def posted_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Reaction:
    """The responsible's first reaction: when, what kind, and a short source note."""

    at: datetime
    kind: ReactionKind
    source: str = ""


def _service_comments(comments: Iterable[CommentLike]) -> list[CommentLike]:
    """The service's own remarks among the comments (recognised by their text)."""
    return [c for c in comments if is_service_text(str(getattr(c, "message", "") or ""))]


def _twin_of(entry: HistoryLike, own: Sequence[CommentLike]) -> bool:
    """Whether a COMMENT history line logs one of the service's own comments."""
    value = getattr(entry, "to_value", None)
    at = entry.created_at
    for comment in own:
        if value is not None and value == str(getattr(comment, "id", "")):
            return True
        posted = comment.posted_at
        if (comment.author_id == entry.user_id and at is not None and posted is not None
                and abs((at - posted).total_seconds()) <= _TWIN_SECONDS):
            return True
    return False


def first_reaction(history: Iterable[HistoryLike], comments: Iterable[CommentLike],
                   responsible_id: int, since: datetime) -> Reaction | None:
    """The earliest comment, status or deadline change by the responsible at or after ``since``.

    Entries by anyone else (the creator moving the deadline, an auditor's comment) and
    entries before ``since`` (reactions of an earlier responsible) do not count. Neither do
    the service's own remarks, nor their COMMENT history lines: Bitrix24 signs them with the
    installer's account, which may well be the responsible's.
    """
    comments = list(comments)
    own = _service_comments(comments)
    found: list[Reaction] = []
    for entry in history:
        field = entry.field.upper()
        kind = HISTORY_REACTIONS.get(field)
        at = entry.created_at
        if (kind and entry.user_id == responsible_id and at is not None and at >= since
                and not (field == "COMMENT" and own and _twin_of(entry, own))):
            found.append(Reaction(at, kind, f"history:{field}"))
    for comment in comments:
        at = comment.posted_at
        if (comment.author_id == responsible_id and at is not None and at >= since
                and not any(comment is o for o in own)):
            found.append(Reaction(at, "comment", "comment"))
    # On a tie the comment list wins over its COMMENT history twin: both say "comment".
    return min(found, key=lambda r: (r.at, r.source != "comment"), default=None)


# ---------------------------------------------------------------- stages and elapsed time


class ClockLike(Protocol):
    """What stage and elapsed-time questions need of a clock (``SlaClock`` satisfies it)."""

    @property
    def started_at(self) -> datetime: ...
    @property
    def warn_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def stopped_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class ClockTimes:
    """A clock as plain data (tests, re-scoring)."""

    started_at: datetime
    warn_at: datetime
    due_at: datetime
    stopped_at: datetime | None = None


def stage(clock: ClockLike, now: datetime) -> Stage:
    """The stage reached by ``now``, or by the stop if the clock stopped earlier."""
    until = now if clock.stopped_at is None else min(now, clock.stopped_at)
    if until >= clock.due_at:
        return "breach"
    if until >= clock.warn_at:
        return "warn"
    return "running"


def elapsed(clock: ClockLike, until: datetime, calendar: WorkingCalendar) -> float:
    """Working minutes from the start to ``until`` (or to the stop, if earlier); never < 0."""
    end = until if clock.stopped_at is None else min(until, clock.stopped_at)
    return max(calendar.working_minutes(clock.started_at, end), 0.0)


# ---------------------------------------------------------------- scope


@dataclass(frozen=True)
class TaskFacts:
    """What scope needs to know about a task and its people."""

    creator_id: int
    responsible_id: int
    group_id: int = 0
    creator_departments: tuple[int, ...] = ()
    responsible_departments: tuple[int, ...] = ()


@dataclass(frozen=True)
class SlaScope:
    """Departments (with their sub-departments) and request workgroups under the SLA."""

    department_ids: frozenset[int] = frozenset()  # empty: every department
    group_ids: frozenset[int] = frozenset()

    @property
    def needs_departments(self) -> bool:
        """Whether deciding scope needs the people's departments at all."""
        return bool(self.department_ids)


def in_scope(task: TaskFacts, scope: SlaScope) -> bool:
    """Whether a task gets a clock: assigned to someone else, and in a scoped group or dept."""
    if task.responsible_id <= 0 or task.responsible_id == task.creator_id:
        return False  # self-assigned tasks have no clock (domain.md rule 2)
    if task.group_id and task.group_id in scope.group_ids:
        return True  # requests (заявки) to other departments go through these groups
    if not scope.department_ids:
        return True
    people = {*task.creator_departments, *task.responsible_departments}
    return bool(people & scope.department_ids)


def with_subdepartments(department_ids: Iterable[int],
                        parents: Mapping[int, int | None]) -> frozenset[int]:
    """The departments and every department below them (``parents``: id → parent id)."""
    chosen = set(department_ids)
    grew = True
    while grew:
        more = {dept for dept, parent in parents.items()
                if parent in chosen and dept not in chosen}
        chosen |= more
        grew = bool(more)
    return frozenset(chosen)


# ---------------------------------------------------------------- who is the РОП


@dataclass(frozen=True)
class Dept:
    """A department's parent and head, for walking up the structure."""

    parent_id: int | None
    head_id: int | None


def department_head(user_id: int, user_departments: Sequence[int], departments: Mapping[int, Dept],
                    configured: int = 0) -> int | None:
    """Who hears about a breach: the configured user, else the head of the user's department.

    A head is never told about their own breach as "the head": when the responsible heads
    their department (or it has no head), the walk goes up to the parent department.
    """
    if configured > 0 and configured != user_id:
        return configured
    dept = user_departments[0] if user_departments else None
    seen: set[int] = set()
    while dept is not None and dept not in seen and dept in departments:
        seen.add(dept)
        head = departments[dept].head_id
        if head and head != user_id:
            return head
        dept = departments[dept].parent_id
    return None


# ---------------------------------------------------------------- the CRM policy


@dataclass(frozen=True)
class ActivityFacts:
    """A CRM activity as the CRM policy sees it."""

    type_id: int
    direction: int
    responsible_id: int
    author_id: int
    owners: tuple[tuple[int, int], ...]  # (OWNER_TYPE_ID, OWNER_ID): the owner, then BINDINGS
    at: datetime | None = None


def activity_subjects(activity: ActivityFacts) -> list[Subject]:
    """Deals, then companies the activity is bound to (contacts and leads are not subjects)."""
    found = dict.fromkeys((_OWNER_KINDS[t], i) for t, i in activity.owners
                          if t in _OWNER_KINDS and i > 0)
    return sorted(found, key=lambda s: (s[0] != "deal", s[1]))


def request_subject(activity: ActivityFacts) -> Subject | None:
    """The deal (else the company) an incoming e-mail or call asks about; else ``None``."""
    if activity.direction != INCOMING or activity.type_id not in (CALL, EMAIL):
        return None
    subjects = activity_subjects(activity)
    return subjects[0] if subjects else None


def request_trigger(activity: ActivityFacts) -> str:
    """The clock trigger name of an incoming activity."""
    return "email" if activity.type_id == EMAIL else "call"


def answers_request(activity: ActivityFacts, responsible_id: int,
                    subjects: Collection[Subject]) -> bool:
    """Whether an activity is the rep's outgoing reply about one of ``subjects``."""
    if activity.direction != OUTGOING:
        return False
    if responsible_id not in (activity.responsible_id, activity.author_id):
        return False
    return any(s in subjects for s in activity_subjects(activity))


def new_deal_starts(assigned_by_id: int, created_by_id: int) -> bool:
    """A new deal waits for its rep, unless the rep created it (then the rep is on it)."""
    return assigned_by_id > 0 and assigned_by_id != created_by_id


def stage_move_answers(before_stage: str, after_stage: str, moved_by_id: int,
                       responsible_id: int) -> bool:
    """Whether a deal's stage move is the rep's reaction (an unknown mover counts)."""
    return before_stage != after_stage and moved_by_id in (0, responsible_id)


# ---------------------------------------------------------------- wording (Russian)


def _plural(n: int, one: str, few: str, many: str) -> str:
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def duration_text(minutes: float) -> str:
    """«2 рабочих часа», «1,5 рабочего часа», «45 рабочих минут», «3 ч 20 мин рабочего времени».

    The phrase is a duration («нет ответа 21 рабочую минуту»): the accusative, which for
    the feminine «минута» differs from the nominative in the singular.
    """
    whole = round(minutes)
    if whole < 60:
        return f"{whole} " + _plural(whole, "рабочую минуту", "рабочие минуты", "рабочих минут")
    hours, rest = divmod(whole, 60)
    if rest == 0:
        return f"{hours} " + _plural(hours, "рабочий час", "рабочих часа", "рабочих часов")
    if rest == 30:
        return f"{hours},5 рабочего часа"
    return f"{hours} ч {rest} мин рабочего времени"


WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")
SUBJECT_NAMES = {"task": "Задача", "deal": "Сделка", "company": "Компания"}
TRIGGER_NAMES = {"created": "задача поставлена", "reassigned": "задача передана исполнителю",
                 "deal": "сделка создана", "email": "входящее письмо",
                 "call": "входящий звонок"}
# A deal or company changes hands too: it is not «задача» and has no «исполнитель».
CRM_TRIGGER_NAMES = {"reassigned": "передано другому ответственному"}
TITLE_LIMIT = 60


def trigger_name(trigger: str, subject_type: str, default: str = "отсчёт начат") -> str:
    """What started a clock, in Russian, for a task or a CRM subject."""
    if subject_type != "task" and trigger in CRM_TRIGGER_NAMES:
        return CRM_TRIGGER_NAMES[trigger]
    return TRIGGER_NAMES.get(trigger, default)


def moment_text(moment: datetime, calendar: WorkingCalendar) -> str:
    """«пн 30.11 в 10:15» in the calendar's zone."""
    local = moment.astimezone(calendar.tz)
    return f"{WEEKDAYS[local.weekday()]} {local:%d.%m} в {local:%H:%M}"


def short_title(title: str, limit: int = TITLE_LIMIT) -> str:
    """The title on one line, cut with «…» when long."""
    flat = " ".join(title.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def subject_link(domain: str, subject: Subject, responsible_id: int) -> str:
    """The portal page of a task, deal or company."""
    kind, number = subject
    if kind == "task":
        return (f"https://{domain}/company/personal/user/{responsible_id}"
                f"/tasks/task/view/{number}/")
    return f"https://{domain}/crm/{kind}/details/{number}/"


@dataclass(frozen=True)
class Notice:
    """Everything a warning or breach message says about one clock."""

    subject: Subject
    title: str
    trigger: str
    responsible: str
    requester: str
    started_at: datetime
    due_at: datetime
    target_minutes: int
    warn_minutes: float
    link: str
    head: str = ""
    outcome: str = ""  # a breach noticed after the clock stopped: how it ended (late_outcome)


def _label(notice: Notice) -> str:
    kind, number = notice.subject
    name = SUBJECT_NAMES.get(kind, kind)
    title = short_title(notice.title)
    return f"{name} #{number} «{title}»" if title else f"{name} #{number}"


def _role(notice: Notice) -> str:
    return "исполнитель" if notice.subject[0] == "task" else "ответственный"


def _no_answer(notice: Notice) -> str:
    return "нет ответа" if notice.subject[0] == "task" else "нет ответа клиенту"


def _origin(notice: Notice, calendar: WorkingCalendar) -> str:
    what = trigger_name(notice.trigger, notice.subject[0]).capitalize()
    text = f"{what} {moment_text(notice.started_at, calendar)}"
    if notice.requester and notice.subject[0] == "task":
        text += f" (постановщик: {notice.requester})"
    return text + "."


def _how_to_answer(notice: Notice) -> str:
    if notice.subject[0] == "task":
        return "Ответьте в задаче: комментарий, смена статуса или срока остановят отсчёт."
    return ("Свяжитесь с клиентом: исходящее письмо или звонок, смена стадии сделки "
            "остановят отсчёт.")


def warning_text(notice: Notice, calendar: WorkingCalendar) -> str:
    """The warning to the responsible; the first line is the one-line summary."""
    due = moment_text(notice.due_at, calendar)
    return "\n".join((
        f"{_label(notice)} — {_no_answer(notice)} {duration_text(notice.warn_minutes)}, "
        f"срок ответа — {due} ({_role(notice)}: {notice.responsible})",
        _origin(notice, calendar), _how_to_answer(notice), notice.link))


def late_outcome(subject: Subject, reason: str, at: datetime, calendar: WorkingCalendar) -> str:
    """How a clock that stopped after its due instant ended, for its (late) breach notice."""
    when = moment_text(at, calendar)
    task = subject[0] == "task"
    if reason == "reassigned":
        return (f"Задача передана другому исполнителю {when}." if task
                else f"Передано другому ответственному {when}.")
    if reason == "closed":
        return f"Задача закрыта {when} без ответа исполнителя."
    return f"Ответ получен с опозданием: {when}."


def breach_text(notice: Notice, calendar: WorkingCalendar, *, to_responsible: bool) -> str:
    """The breach notice to the РОП or the responsible; the first line is the summary."""
    lines = [f"{_label(notice)} — {_no_answer(notice)} {duration_text(notice.target_minutes)} "
             f"({_role(notice)}: {notice.responsible})",
             f"Срок ответа истёк {moment_text(notice.due_at, calendar)}. "
             f"{_origin(notice, calendar)}"]
    if notice.outcome:
        lines.append(notice.outcome)
    if to_responsible:
        if not notice.outcome:
            lines.append(_how_to_answer(notice))
        if notice.head:
            lines.append(f"Руководитель уведомлён: {notice.head}.")
    lines.append(notice.link)
    return "\n".join(lines)
