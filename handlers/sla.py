"""The response-SLA hook: start, stop and hand over clocks as mirror changes arrive.

Register :func:`sla_hook` as an after-mirror hook. It runs in the handler's transaction
(a failure retries the whole event) and only for changes made by people, never for the
service's own writes. Events carry no author, so a reaction is confirmed by re-reading the
task's history and comments: the time stored is the reaction's own time, not the time the
event arrived. A lost event is the tick's business (``sync.sla_ticker`` verifies the source
before any warning or breach).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from b24app.gateway.types import Activity, Deal, Task
from b24app.gateway.wire import to_int
from kpi import sla
from sync.mirror import MirrorChange
from sync.sla_ticker import (
    CRM,
    TASK,
    Directory,
    PortalPeople,
    Rules,
    activity_facts,
    before_install,
    last_handover,
    related_subjects,
    running_clocks,
    start_clock,
    start_task_clock,
    stop_clock,
    subject_assignee,
)

if TYPE_CHECKING:
    from b24app.inbox.queue import ClaimedEvent
    from handlers.registry import HandlerContext

# Task columns whose change may be the responsible's reaction (who made it: the history).
REACTION_COLUMNS = frozenset({"status", "deadline", "status_changed_at", "closed_at"})


@dataclass
class _Run:
    """One hook call: the context, the resolved rules, the time and the event's name."""

    ctx: HandlerContext
    rules: Rules
    now: datetime
    source: str

    @cached_property
    def directory(self) -> Directory:
        """People and departments (the mirror, else the portal)."""
        return Directory(self.ctx.session, self.ctx.portal_id, PortalPeople(self.ctx.gateway))


def sla_hook(ctx: HandlerContext, event: ClaimedEvent, change: MirrorChange) -> None:
    """After-mirror hook: tasks, deals and activities move response clocks."""
    run = _Run(ctx, Rules.from_settings(ctx.settings), ctx.now(), event.event.upper())
    if change.entity == "task":
        _on_task(run, change)
    elif change.entity == "deal":
        _on_deal(run, change)
    elif change.entity == "activity" and change.kind == "created":
        _on_activity(run, change)


# ---------------------------------------------------------------- tasks


def _cancel(run: _Run, policy: str, subject: sla.Subject, reason: str) -> None:
    session = run.ctx.session
    for clock in running_clocks(session, run.ctx.portal_id, policy, [subject], lock=True):
        stop_clock(session, run.rules, clock, kind="cancelled", at=run.now, reason=reason,
                   now=run.now, source=run.source)


def _on_task(run: _Run, change: MirrorChange) -> None:
    if change.kind == "deleted":
        _cancel(run, TASK, ("task", change.record_id), "deleted")
        return
    task = change.record
    if not isinstance(task, Task):
        return
    comment = run.source.startswith("ONTASKCOMMENT")
    # First sight of a task through a later event (its ONTASKADD was lost): it may have
    # been answered already, so the source is read at once.
    late = change.kind == "created" and run.source != "ONTASKADD"
    if change.kind == "created":
        _first_sight(run, task, late=late)
    elif "responsible_id" in change.after:
        _hand_over(run, task)
    if comment or late or (change.kind == "updated" and change.after.keys() & REACTION_COLUMNS):
        _check_reaction(run, task)


def _first_sight(run: _Run, task: Task, *, late: bool) -> None:
    """Start the clock of a task seen for the first time (normally: just created)."""
    session, portal_id = run.ctx.session, run.ctx.portal_id
    start, trigger = task.created_at or run.now, "created"
    if late and task.responsible_id != task.created_by and not before_install(
            session, portal_id, start):
        # Seen late, the task may have changed hands since: its clock starts at the handover.
        handed = last_handover(run.ctx.gateway.task_history(task.id), task.responsible_id, start)
        start, trigger = (handed, "reassigned") if handed else (start, trigger)
    start_task_clock(session, run.rules, run.directory, task, portal_id=portal_id, at=start,
                     trigger=trigger, now=run.now, source=run.source)


def _hand_over(run: _Run, task: Task) -> None:
    """A new responsible: the old clock ends as reassigned, the new one starts now."""
    session, at = run.ctx.session, task.changed_at or run.now
    previous = None
    for clock in running_clocks(session, run.ctx.portal_id, TASK, [("task", task.id)],
                                lock=True):
        if clock.responsible_id == task.responsible_id:
            return  # the tick already followed this handover
        stop_clock(session, run.rules, clock, kind="reassigned", at=at, reason="reassigned",
                   now=run.now, source=run.source, to_responsible=task.responsible_id)
        previous = clock.id
    start_task_clock(session, run.rules, run.directory, task, portal_id=run.ctx.portal_id,
                     at=at, trigger="reassigned", now=run.now, source=run.source,
                     previous_clock=previous)


def _check_reaction(run: _Run, task: Task) -> None:
    """Stop running clocks at the responsible's first reaction, or cancel a closed task's."""
    session, gateway = run.ctx.session, run.ctx.gateway
    clocks = running_clocks(session, run.ctx.portal_id, TASK, [("task", task.id)], lock=True)
    if not clocks:
        return
    history, comments = gateway.task_history(task.id), gateway.task_comments(task.id)
    for clock in clocks:
        reaction = sla.first_reaction(history, comments, clock.responsible_id,
                                      clock.started_at)
        if reaction is not None:
            stop_clock(session, run.rules, clock, kind="answered", at=reaction.at,
                       reason=reaction.kind, now=run.now, source=run.source,
                       evidence=reaction.source)
        elif task.status in sla.CLOSED_STATUSES:
            # Closed without a word from the responsible: by the creator or someone else.
            stop_clock(session, run.rules, clock, kind="cancelled",
                       at=task.closed_at or run.now, reason="closed", now=run.now,
                       source=run.source)


# ---------------------------------------------------------------- CRM


def _on_deal(run: _Run, change: MirrorChange) -> None:
    subject: sla.Subject = ("deal", change.record_id)
    if change.kind == "deleted":
        _cancel(run, CRM, subject, "deleted")
        return
    deal = change.record
    if not isinstance(deal, Deal):
        return
    session, portal_id = run.ctx.session, run.ctx.portal_id
    if change.kind == "created":
        if sla.new_deal_starts(deal.assigned_by_id, deal.created_by_id):
            start_clock(session, run.rules, portal_id=portal_id, policy=CRM, subject=subject,
                        responsible_id=deal.assigned_by_id,
                        requester_id=deal.created_by_id or None,
                        started_at=deal.created_at or run.now, trigger="deal", now=run.now,
                        source=run.source)
        return
    if "assigned_by_id" in change.after:
        _hand_over_crm(run, subject, deal.assigned_by_id, deal.modified_at or run.now)
    if "stage_id" in change.after:
        moved_by = to_int(deal.fields.get("MOVED_BY_ID") or deal.fields.get("MODIFY_BY_ID"))
        at = deal.moved_at or deal.modified_at or run.now
        for clock in running_clocks(session, portal_id, CRM, [subject], lock=True):
            if sla.stage_move_answers(str(change.before.get("stage_id") or ""),
                                      deal.stage_id, moved_by, clock.responsible_id):
                stop_clock(session, run.rules, clock, kind="answered", at=at, reason="stage",
                           now=run.now, source=run.source, evidence=f"stage:{deal.stage_id}")


def _hand_over_crm(run: _Run, subject: sla.Subject, responsible_id: int,
                   at: datetime) -> None:
    session = run.ctx.session
    for clock in running_clocks(session, run.ctx.portal_id, CRM, [subject], lock=True):
        if clock.responsible_id == responsible_id:
            continue
        stop_clock(session, run.rules, clock, kind="reassigned", at=at, reason="reassigned",
                   now=run.now, source=run.source, to_responsible=responsible_id)
        if responsible_id:
            start_clock(session, run.rules, portal_id=run.ctx.portal_id, policy=CRM,
                        subject=subject, responsible_id=responsible_id,
                        requester_id=clock.requester_id, started_at=at, trigger="reassigned",
                        now=run.now, source=run.source, previous_clock=clock.id)


def _on_activity(run: _Run, change: MirrorChange) -> None:
    activity = change.record
    if not isinstance(activity, Activity):
        return
    session, portal_id = run.ctx.session, run.ctx.portal_id
    facts = activity_facts(activity)
    at = facts.at or run.now
    subject = sla.request_subject(facts)
    if subject is not None:
        if before_install(session, portal_id, at):
            return  # an old call replayed by the first sync: no REST read for its rep
        responsible = (subject_assignee(session, run.ctx.gateway, portal_id, subject)
                       or activity.responsible_id)
        if responsible:
            start_clock(session, run.rules, portal_id=portal_id, policy=CRM, subject=subject,
                        responsible_id=responsible, requester_id=None, started_at=at,
                        trigger=sla.request_trigger(facts), now=run.now, source=run.source,
                        activity_id=activity.id)
        return
    if facts.direction != sla.OUTGOING:
        return
    nearby = related_subjects(session, portal_id, sla.activity_subjects(facts))
    for clock in running_clocks(session, portal_id, CRM, nearby, lock=True):
        subjects = related_subjects(session, portal_id, [(clock.subject_type, clock.subject_id)])
        if at >= clock.started_at and sla.answers_request(facts, clock.responsible_id, subjects):
            stop_clock(session, run.rules, clock, kind="answered", at=at, reason="activity",
                       now=run.now, source=run.source, evidence=f"activity:{activity.id}")
