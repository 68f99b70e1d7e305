"""KPIs of the rep's own activity: visits, trainings, mailing, ideas, needs reports, SLA, format.

Counts go by the local period of the instant named in each docstring; ``rep_id`` None means
the whole team. What counts as a visit, a training and so on is ``RecognitionRules`` data.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from kpi.definitions import (
    DEFAULT_RULES,
    RecognitionRules,
    Share,
    contains_any,
    normalize,
    starts_with_any,
)
from kpi.facts import TASK_COMPLETED, Activity, SlaClockFact, TaskFact, TaskFormatFact
from kpi.formulas_crm import WorkdayCalendar
from kpi.periods import Period, Week

EMAIL_TYPE_ID = 4
OUTGOING = 2


def _mine(user_id: int, rep_id: int | None) -> bool:
    return rep_id is None or user_id == rep_id


# ---------------------------------------------------------------- recognition


def is_visit(activity: Activity, rules: RecognitionRules = DEFAULT_RULES) -> bool:
    """A completed meeting (type, provider, or a to-do's subject marker) bound to a client."""
    return (activity.completed and bool(activity.client_keys)
            and (activity.type_id in rules.visit_type_ids
                 or activity.provider_id in rules.visit_provider_ids
                 or (activity.type_id in rules.visit_marker_type_ids
                     and starts_with_any(activity.subject, rules.visit_markers))))


def is_training(activity: Activity, rules: RecognitionRules = DEFAULT_RULES) -> bool:
    """A completed non-e-mail activity (or calendar import) whose subject contains a marker."""
    # No client binding needed: a training in the office may gather several clients. A
    # training held at a client's site is also a visit.
    return (activity.completed and activity.type_id in rules.training_type_ids
            and contains_any(activity.subject, rules.training_markers))


def is_mailing_email(activity: Activity, rules: RecognitionRules = DEFAULT_RULES) -> bool:
    """An outgoing e-mail whose subject starts with a mailing marker."""
    # Sent is sent: an outgoing e-mail counts even if nobody closed its activity.
    return (activity.type_id == EMAIL_TYPE_ID and activity.direction == OUTGOING
            and starts_with_any(activity.subject, rules.mailing_markers))


def is_mailing_task(task: TaskFact, rules: RecognitionRules = DEFAULT_RULES) -> bool:
    """A completed task whose title starts with a mailing marker."""
    return task.status == TASK_COMPLETED and task.closed_at is not None \
        and starts_with_any(task.title, rules.mailing_markers)


def is_marketing_idea(task: TaskFact, rules: RecognitionRules = DEFAULT_RULES) -> bool:
    """A task in a marketing workgroup or whose title starts with an idea marker."""
    return task.group_id in rules.marketing_group_ids \
        or starts_with_any(task.title, rules.idea_markers)


def is_procurement_report(task: TaskFact, rules: RecognitionRules = DEFAULT_RULES) -> bool:
    """A task in a procurement workgroup or whose title starts with a needs-report marker."""
    return task.group_id in rules.procurement_group_ids \
        or starts_with_any(task.title, rules.procurement_markers)


# ---------------------------------------------------------------- monthly counts


def visits(activities: Iterable[Activity], rep_id: int | None, period: Period, *,
           rules: RecognitionRules = DEFAULT_RULES) -> int:
    """Distinct activities of the rep that are visits (``is_visit``) and occurred in the period."""
    return len({a.activity_id for a in activities
                if _mine(a.responsible_id, rep_id) and period.contains(a.occurred_at)
                and is_visit(a, rules)})


def trainings(activities: Iterable[Activity], rep_id: int | None, period: Period, *,
              rules: RecognitionRules = DEFAULT_RULES) -> int:
    """Distinct activities of the rep recognised as training that occurred in the period."""
    return len({a.activity_id for a in activities
                if _mine(a.responsible_id, rep_id) and period.contains(a.occurred_at)
                and is_training(a, rules)})


def mailings(activities: Iterable[Activity], tasks: Iterable[TaskFact], rep_id: int | None,
             period: Period, *, rules: RecognitionRules = DEFAULT_RULES) -> int:
    """Distinct subjects of mailing e-mails the rep sent and mailing tasks closed in the period."""
    # One mailing to fifty clients is fifty e-mail activities with one subject: one mailing.
    # A task with the same title as the e-mails is the same mailing.
    subjects = {normalize(a.subject) for a in activities
                if _mine(a.responsible_id, rep_id) and period.contains(a.occurred_at)
                and is_mailing_email(a, rules)}
    subjects |= {normalize(t.title) for t in tasks
                 if _mine(t.responsible_id, rep_id) and is_mailing_task(t, rules)
                 and t.closed_at is not None and period.contains(t.closed_at)}
    return len(subjects)


def marketing_ideas(tasks: Iterable[TaskFact], rep_id: int | None, period: Period, *,
                    rules: RecognitionRules = DEFAULT_RULES) -> int:
    """Distinct tasks the rep created in the period that are marketing ideas."""
    return len({t.task_id for t in tasks
                if _mine(t.creator_id, rep_id) and period.contains(t.created_at)
                and is_marketing_idea(t, rules)})


# ---------------------------------------------------------------- weekly needs reports


@dataclass(frozen=True, slots=True)
class WeeklyReports:
    """The weeks of a period that are due and those with a needs report (by Monday)."""

    due: tuple[date, ...]
    reported: tuple[date, ...]

    @property
    def missed(self) -> tuple[date, ...]:
        """Mondays of due weeks without a report."""
        done = set(self.reported)
        return tuple(m for m in self.due if m not in done)

    @property
    def share(self) -> Share:
        """Reported weeks of the due weeks."""
        return Share(len(self.reported), len(self.due))


def _works(week: Week, calendar: WorkdayCalendar | None) -> bool:
    """Whether the week has a working day (every week does without a calendar)."""
    return calendar is None or any(calendar.is_working_day(week.monday + timedelta(days=n))
                                   for n in range(7))


def procurement_needs(tasks: Iterable[TaskFact], rep_id: int | None, period: Period, *,
                      now: datetime | None = None, calendar: WorkdayCalendar | None = None,
                      rules: RecognitionRules = DEFAULT_RULES) -> WeeklyReports:
    """Weeks with a needs report the rep created ÷ weeks due; Monday–Sunday local weeks."""
    # A week belongs to the period holding its Thursday (ISO), so 2026-11-30..12-06 is a
    # December week and a report on Monday 30 November counts for December. Due: the weeks
    # that have ended by ``now``, plus the running week once it has a report (a week in
    # progress is not yet missed). Without ``now`` every week of the period is due. A week
    # without a working day (5–11 January 2026) is due only if a report came anyway: nobody
    # can be asked to report in the New Year holidays.
    weeks = period.weeks()
    created = [t.created_at for t in tasks
               if _mine(t.creator_id, rep_id) and is_procurement_report(t, rules)]
    reported = tuple(w.monday for w in weeks if any(w.contains(c) for c in created))
    due = tuple(w.monday for w in weeks if w.monday in reported
                or ((now is None or w.end <= now) and _works(w, calendar)))
    return WeeklyReports(due, tuple(m for m in reported if m in due))


# ---------------------------------------------------------------- SLA and task format


@dataclass(frozen=True, slots=True)
class SlaSummary:
    """The rep's decided response clocks: answered in time, and the median working minutes."""

    in_time: Share
    median_minutes: Decimal | None  # 1 place; None without clocks

    @property
    def value(self) -> Decimal | None:
        """The KPI value: the in-time fraction."""
        return self.in_time.value


def response_sla(clocks: Iterable[SlaClockFact], rep_id: int | None,
                 period: Period) -> SlaSummary:
    """Clocks started in the period answered in time ÷ decided clocks; median working minutes."""
    # Only decided clocks come in: answered ones and breached ones still unanswered (their
    # minutes are the time elapsed so far), so the median is not flattered by the silent ones.
    mine = [c for c in clocks if _mine(c.rep_id, rep_id) and period.contains(c.started_at)]
    median = None
    if mine:
        middle = Decimal(repr(statistics.median(c.minutes for c in mine)))
        median = middle.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return SlaSummary(Share(sum(1 for c in mine if c.answered_in_time), len(mine)), median)


def task_format(facts: Iterable[TaskFormatFact], rep_id: int | None, period: Period) -> Share:
    """Tasks the rep created in the period that met the format at creation ÷ all created."""
    mine = [f for f in facts if _mine(f.creator_id, rep_id) and period.contains(f.created_at)]
    return Share(sum(1 for f in mine if f.compliant), len(mine))

