"""``ONOFFLINEEVENT``: the offline queue has new records; the scheduled catch-up reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from b24app.inbox.queue import ClaimedEvent
    from handlers.registry import HandlerContext

OFFLINE_NOTED = "offline:noted"


def offline_event(ctx: HandlerContext, event: ClaimedEvent) -> str:
    """Note the ping only: reading the queue here would race the catch-up job for batches."""
    return OFFLINE_NOTED
