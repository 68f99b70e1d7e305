"""Task events: they carry no changed fields, so the mirror diff is what tells the change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from handlers.crm import IGNORED_BAD_ID, IGNORED_OWN_WRITE, record_id, refresh, refreshed, removed
from sync import own_writes

if TYPE_CHECKING:
    from b24app.inbox.queue import ClaimedEvent
    from handlers.registry import HandlerContext

TASK_REFRESHED = "task:refreshed"


def task_changed(ctx: HandlerContext, event: ClaimedEvent) -> str:
    """``ONTASKADD``/``ONTASKUPDATE``: re-read the task into the mirror."""
    return refreshed(ctx, event, "task")


def task_deleted(ctx: HandlerContext, event: ClaimedEvent) -> str:
    """``ONTASKDELETE``: mark the task deleted."""
    return removed(ctx, event, "task")


def comment_added(ctx: HandlerContext, event: ClaimedEvent) -> str:
    """``ONTASKCOMMENTADD`` (entity ``<task>:<comment>``): refresh the task it belongs to.

    The comment itself is news even when the task did not change (an answer stops the SLA
    clock in a later issue), so the hooks always run, unless the comment is our own.
    """
    task_id = record_id(event)
    if task_id is None:
        return IGNORED_BAD_ID
    change, _own_field_write = refresh(ctx, "task", task_id)
    if own_writes.is_own_comment(ctx.session, ctx.portal_id, event.entity_id, now=ctx.now()):
        return IGNORED_OWN_WRITE
    ctx.mirror_changed(event, change)
    return TASK_REFRESHED
