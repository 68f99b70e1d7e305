"""Application-level events that reach the inbox but need no work."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b24app.inbox.queue import ClaimedEvent
    from handlers.registry import HandlerContext

IGNORED_APP_TEST = "ignored:app-test"


def app_test(ctx: HandlerContext, event: ClaimedEvent) -> str:
    """``ONAPPTEST`` (fired by ``event.test``): proves delivery works; nothing to do."""
    return IGNORED_APP_TEST
