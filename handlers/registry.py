"""Dispatch by a dictionary: event name → handler, built explicitly in one place.

A handler runs inside the transaction that also marks its inbox row done, and returns the
outcome text stored on the row (``mirror:updated``, ``ignored:own-write``...). Delivery is
at least once, so every handler must be idempotent: re-reading the record and diffing it
against the mirror makes a second run of the same event write nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from b24app.gateway.protocol import Gateway
from handlers import app, crm, offline, tasks
from sync.mirror import MirrorChange

if TYPE_CHECKING:
    from b24app.config import Settings
    from b24app.inbox.queue import ClaimedEvent

IGNORED_UNKNOWN = "ignored:unknown-event"

Handler = Callable[["HandlerContext", "ClaimedEvent"], str]
# Business rules (task format, SLA clocks...) plug in here in later issues. A hook runs in
# the handler's transaction: if it raises, the mirror change rolls back with it and the
# whole event is retried, so the hook sees the same change again. Hooks must be idempotent.
AfterMirrorHook = Callable[["HandlerContext", "ClaimedEvent", MirrorChange], None]


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use: the open session, the portal's gateway, time and settings."""

    session: Session
    gateway: Gateway
    portal_id: int
    clock: Callable[[], datetime]
    settings: Settings
    after_mirror: Sequence[AfterMirrorHook] = ()

    def now(self) -> datetime:
        """The current time from the injected clock."""
        return self.clock()

    def mirror_changed(self, event: ClaimedEvent, change: MirrorChange) -> None:
        """Run the after-mirror hooks for a change made by someone other than the service."""
        for hook in self.after_mirror:
            hook(self, event, change)


@dataclass
class Registry:
    """Handlers by upper-case event name (Bitrix24 spells names in either case)."""

    handlers: Mapping[str, Handler]
    after_mirror: list[AfterMirrorHook] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handlers = {name.upper(): handler for name, handler in self.handlers.items()}

    def handler_for(self, event: str) -> Handler | None:
        """The handler of ``event`` (any case), or ``None``."""
        return self.handlers.get(event.upper())

    def dispatch(self, ctx: HandlerContext, event: ClaimedEvent) -> str:
        """Run the event's handler; an event without one is ignored."""
        handler = self.handler_for(event.event)
        return IGNORED_UNKNOWN if handler is None else handler(ctx, event)


def build_registry(after_mirror: Sequence[AfterMirrorHook] = ()) -> Registry:
    """Every event the service binds, each with its handler."""
    return Registry({
        "ONCRMDEALADD": crm.record_changed("deal"),
        "ONCRMDEALUPDATE": crm.record_changed("deal"),
        "ONCRMDEALDELETE": crm.record_deleted("deal"),
        "ONCRMCOMPANYADD": crm.record_changed("company"),
        "ONCRMCOMPANYUPDATE": crm.record_changed("company"),
        "ONCRMCOMPANYDELETE": crm.record_deleted("company"),
        "ONCRMCONTACTADD": crm.record_changed("contact"),
        "ONCRMCONTACTUPDATE": crm.record_changed("contact"),
        "ONCRMCONTACTDELETE": crm.record_deleted("contact"),
        "ONCRMACTIVITYADD": crm.record_changed("activity"),
        "ONCRMACTIVITYUPDATE": crm.record_changed("activity"),
        "ONCRMACTIVITYDELETE": crm.record_deleted("activity"),
        "ONTASKADD": tasks.task_changed,
        "ONTASKUPDATE": tasks.task_changed,
        "ONTASKDELETE": tasks.task_deleted,
        "ONTASKCOMMENTADD": tasks.comment_added,
        "ONAPPTEST": app.app_test,
        "ONOFFLINEEVENT": offline.offline_event,
    }, list(after_mirror))
