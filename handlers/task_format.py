"""Task format: the after-mirror hook that comments, notifies the creator and closes remarks.

The rules and decisions are pure (``kpi.task_format``); this module loads the task's
``TaskFormatCheck`` row, acts through the gateway and stores the new state, all inside the
event's transaction. The stored state decides, so running the hook again for a state it has
seen does nothing, whatever the event.

Edges:

* The creation verdict is the first check of a task (no row yet). A task first seen through
  ``ONTASKUPDATE`` (its ``ONTASKADD`` lost, or created before the install) gets it then, from
  its current title, deadline and responsible and its own ``created_at``.
* A comment event runs the check only when its refresh changed the task (then the following
  ``ONTASKUPDATE`` finds the mirror unchanged and would run no hook); the service's own
  comments never get here (the handler drops them as own writes).
* A closed task (awaiting control or completed) gets its verdict but no remark.
* Posting is at least once: if the transaction fails after a comment went out, the retried
  event comments again. Everything in the database happens once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from b24app import outbox
from b24app.config import Settings
from b24app.db import insert_ignoring_conflict
from b24app.gateway.protocol import Gateway
from b24app.gateway.types import Task
from b24app.models import MirrorUser, Portal, TaskFormatCheck
from kpi.task_format import (
    CODES,
    Actions,
    CheckState,
    FormatRules,
    TaskFacts,
    check,
    comment_text,
    decide,
    fixed_text,
    notify_text,
)
from sync import own_writes
from sync.mirror import MirrorChange

if TYPE_CHECKING:
    from b24app.inbox.queue import ClaimedEvent
    from handlers.registry import HandlerContext

log = logging.getLogger(__name__)

KIND = "task_format"
CLOSED_STATUSES = frozenset({4, 5})  # awaiting control, completed


@dataclass(frozen=True)
class CreatorCompliance:
    """Tasks one creator set in a period, and how many met the format at creation."""

    created_by: int
    department_id: int | None
    total: int
    compliant: int

    @property
    def share(self) -> float:
        """Compliant tasks in percent (100 when there were none)."""
        return 100.0 * self.compliant / self.total if self.total else 100.0


def format_rules(settings: Settings) -> FormatRules:
    """The pure rules from ``[task_format]`` and the portal time zone of ``[calendar]``."""
    tf = settings.task_format
    return FormatRules(min_words=tf.min_words, min_chars=tf.min_chars,
                       stop_words=tf.stop_words, title_regex=tf.title_regex,
                       strict_mode=tf.strict_mode, timezone=settings.calendar.timezone)


def task_facts(task: Task, now: datetime) -> TaskFacts:
    """The facts the rules read; a task without ``createdDate`` counts as created now."""
    return TaskFacts(title=task.title, description=task.description, deadline=task.deadline,
                     responsible_id=task.responsible_id, created_by=task.created_by,
                     created_at=task.created_at or now)


def task_link(domain: str, user_id: int, task_id: int) -> str:
    """The task's page on the portal."""
    host = domain.split("://", 1)[-1].strip("/")
    return f"https://{host}/company/personal/user/{user_id}/tasks/task/view/{task_id}/"


def codes_tag(task_id: int, codes: Collection[str], comment_id: int = 0) -> str:
    """The notification tag: once per remark (its codes and its comment ID).

    The comment ID tells a violation broken again after its fix (a new remark, so a new
    notification) from the same remark seen twice; the outbox keeps one row per tag.
    """
    digest = hashlib.sha256(",".join(sorted(codes)).encode()).hexdigest()[:12]
    return f"task-format-{task_id}-{digest}" + (f"-{comment_id}" if comment_id else "")


def task_format_hook(ctx: HandlerContext, event: ClaimedEvent, change: MirrorChange) -> None:
    """``AfterMirrorHook``: check a created or changed task and act on the verdict."""
    task = change.record
    if change.entity != "task" or change.kind not in ("created", "updated"):
        return
    if not isinstance(task, Task):
        return
    enforce(ctx.session, ctx.gateway, ctx.portal_id, task, format_rules(ctx.settings),
            now=ctx.now())


@dataclass(frozen=True)
class _Run:
    """One check of one task: where to read, write and post, and when."""

    session: Session
    gateway: Gateway
    portal_id: int
    task: Task
    now: datetime


def enforce(session: Session, gateway: Gateway, portal_id: int, task: Task,
            rules: FormatRules, *, now: datetime) -> Actions:
    """Check ``task``, post and queue what the decision says, store the new state."""
    run = _Run(session, gateway, portal_id, task, now)
    row = _locked_row(session, portal_id, task, now)
    previous = CheckState(row.compliant_at_creation, frozenset(row.violations),
                          frozenset(row.commented_codes), row.returned_at is not None)
    violations = check(task_facts(task, now), rules, at_creation=previous.at_creation,
                       open_codes=row.violations)
    may_return = (rules.strict_mode and task.created_by > 0
                  and task.created_by != task.responsible_id)
    actions = decide(previous, violations, may_return=may_return,
                     quiet=task.status in CLOSED_STATUSES)
    _act(run, actions, row)
    if actions.state != previous or previous.at_creation:
        _store(run, row, previous, actions)
    return actions


def _locked_row(session: Session, portal_id: int, task: Task, now: datetime) -> TaskFormatCheck:
    """The task's row, created empty if missing, locked (PostgreSQL) until the commit."""
    # Insert-or-nothing first: two workers seeing a new task both get the one row, and the
    # second waits on its lock, then sees the first one's verdict.
    session.execute(insert_ignoring_conflict(session, TaskFormatCheck, {
        "portal_id": portal_id, "task_id": task.id, "created_by": task.created_by,
        "violations": [], "commented_codes": [], "checked_at": now,
    }, ["portal_id", "task_id"]))
    return session.execute(
        select(TaskFormatCheck)
        .where(TaskFormatCheck.portal_id == portal_id, TaskFormatCheck.task_id == task.id)
        .with_for_update()).scalar_one()


def _act(run: _Run, actions: Actions, row: TaskFormatCheck) -> None:
    session, portal_id, task, now = run.session, run.portal_id, run.task, run.now
    responsible = task.responsible_id
    if actions.return_to_creator:
        fields = {"RESPONSIBLE_ID": task.created_by}
        run.gateway.update_task(task.id, fields)
        # The echo ONTASKUPDATE of this write must not look like a user's reassignment.
        own_writes.record(session, portal_id, "task", task.id, fields, now=now)
        responsible = task.created_by
        log.info("task %s returned to its creator %s (strict mode)", task.id, task.created_by)
    if actions.comment:
        text = comment_text(actions.comment, returned=actions.return_to_creator)
        row.comment_id = _post(run, text)
        codes = [v.code for v in actions.comment]
        log.info("task %s: format remark %s", task.id, ",".join(codes))
        if task.created_by > 0:
            portal = session.get(Portal, portal_id)
            link = task_link(portal.domain if portal else "", responsible or task.created_by,
                             task.id)
            outbox.enqueue(session, portal_id=portal_id, user_id=task.created_by, kind=KIND,
                           tag=codes_tag(task.id, codes, row.comment_id or 0),
                           message=notify_text(task.id, task.title, actions.comment, link,
                                               returned=actions.return_to_creator),
                           not_before=now, now=now, task_id=task.id)
    if actions.confirm:
        _post(run, fixed_text())
        log.info("task %s: format remark closed", task.id)


def _post(run: _Run, text: str) -> int:
    """Comment in the task and remember it, so its ONTASKCOMMENTADD is known as ours."""
    comment_id = run.gateway.add_task_comment(run.task.id, text)
    # One number comes back: a comment ID in the classic card, a chat message ID in the new
    # one, whose event names it ``m<id>``. The task does not say which card the portal runs,
    # so both forms are remembered (for the 15-minute own-write window).
    for form in (comment_id, f"m{comment_id}"):
        own_writes.record_comment(run.session, run.portal_id, run.task.id, form, now=run.now)
    return comment_id


def _store(run: _Run, row: TaskFormatCheck, previous: CheckState, actions: Actions) -> None:
    session, task, now, state = run.session, run.task, run.now, actions.state
    if previous.at_creation:
        row.created_by = task.created_by
        row.task_created_at = task.created_at or now
    if row.department_id is None:
        row.department_id = _department(session, row.portal_id, row.created_by)
    row.compliant_at_creation = state.compliant_at_creation
    row.violations = [c for c in CODES if c in state.violations]
    row.commented_codes = [c for c in CODES if c in state.commented]
    if actions.opened:
        row.opened_at, row.fixed_at = now, None
    if actions.fixed:
        row.fixed_at = now
    if actions.return_to_creator:
        row.returned_at = now
    row.checked_at = now


def _department(session: Session, portal_id: int, user_id: int) -> int | None:
    """The user's first department from the mirror, if the user is known."""
    user = session.get(MirrorUser, {"portal_id": portal_id, "id": user_id})
    return int(user.departments[0]) if user is not None and user.departments else None


def compliance(session: Session, portal_id: int, since: datetime,
               until: datetime) -> list[CreatorCompliance]:
    """Per creator (and department): tasks created in [since, until) and compliant ones."""
    compliant = func.sum(case((TaskFormatCheck.compliant_at_creation.is_(True), 1), else_=0))
    rows = session.execute(
        select(TaskFormatCheck.created_by, TaskFormatCheck.department_id, func.count(),
               compliant)
        .where(TaskFormatCheck.portal_id == portal_id,
               TaskFormatCheck.compliant_at_creation.is_not(None),
               TaskFormatCheck.task_created_at >= since,
               TaskFormatCheck.task_created_at < until)
        .group_by(TaskFormatCheck.created_by, TaskFormatCheck.department_id)).all()
    found = [CreatorCompliance(int(by), dept, int(total), int(ok or 0))
             for by, dept, total, ok in rows]
    # Sorted here: the backends disagree on where NULL departments go.
    return sorted(found, key=lambda c: (c.created_by, c.department_id is None,
                                        c.department_id or 0))
