"""The inbox worker: claim a batch, run each event in its own transaction, finish it.

Each event's handler effects and its ``done`` mark commit together, and only while the
worker still holds the row's lease; a worker that dies mid-event leaves the row leased, and
another worker takes it again when the lease expires. Delivery is therefore at least once,
and handlers are idempotent (re-read, diff, write only what differs), so each event's
database effects happen exactly once.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.gateway.errors import AuthRevoked, MethodBlocked
from b24app.inbox import queue
from b24app.inbox.queue import Backoff, ClaimedEvent
from b24app.models import Portal, PortalStatus
from handlers.registry import HandlerContext, Registry, build_registry

log = logging.getLogger(__name__)

# Must exceed a batch's worst processing time (batch_size events at the REST rate limit).
DEFAULT_LEASE = timedelta(minutes=5)
Tick = Callable[[datetime], None]


class LeaseLost(Exception):
    """Another worker took the row over; this worker's effects were rolled back."""


def default_worker_id() -> str:
    """``host:pid:random``, unique per worker instance (fits ``inbox_events.locked_by``)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def mark_needs_reinstall(ctx: AppContext, portal_id: int, reason: str) -> None:
    """Flag a portal whose credentials Bitrix24 no longer accepts; its events then wait."""
    # The token store owns this flag when the context carries one (b24app.tokens).
    tokens = getattr(ctx, "tokens", None)
    if tokens is not None and hasattr(tokens, "mark_needs_reinstall"):
        tokens.mark_needs_reinstall(portal_id, reason)
    else:
        with session_scope(ctx.sessions) as session:
            session.execute(update(Portal)
                            .where(Portal.id == portal_id,
                                   Portal.status == PortalStatus.ACTIVE.value)
                            .values(status=PortalStatus.NEEDS_REINSTALL.value,
                                    updated_at=ctx.clock()))
        log.warning("portal %s needs re-install: %s", portal_id, reason)
    ctx.gateways.forget(portal_id)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``: the current event finishes; claimed others' leases expire."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.signal(sig, lambda _sig, _frame: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


class Worker:
    """Drains the inbox of every portal through the handler registry."""

    def __init__(self, ctx: AppContext, worker_id: str | None = None, *,
                 registry: Registry | None = None, lease: timedelta = DEFAULT_LEASE,
                 rng: Callable[[], float] = random.random) -> None:
        self.ctx = ctx
        self.worker_id = worker_id or default_worker_id()
        self.registry = registry if registry is not None else build_registry()
        self.lease = lease
        self.backoff = Backoff.from_settings(ctx.settings.events, rng)
        self.stop = threading.Event()
        # Called after every drain round with the time; the scheduler/leader wiring goes here.
        self.on_tick: list[Tick] = []

    def run_once(self, now: datetime | None = None) -> int:
        """Claim one batch and process it; returns how many events were processed."""
        clock = self.ctx.clock if now is None else (lambda: now)
        batch = queue.claim(self.ctx.sessions, self.worker_id, clock(),
                            self.ctx.settings.events.batch_size, self.lease,
                            max_attempts=self.backoff.max_attempts)
        revoked: set[int] = set()
        processed = 0
        for event in batch:
            if self.stop.is_set():
                break  # the rest stay leased to us and are reclaimed when the lease expires
            self._process(event, clock, revoked)
            processed += 1
        return processed

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.5) -> None:
        """Drain until ``stop`` is set (or SIGTERM arrives); idle rounds wait ``idle_sleep``."""
        self.stop = stop
        with _stop_on_signals(stop):
            while not stop.is_set():
                try:
                    processed = self.run_once()
                except Exception:
                    log.exception("inbox claim failed; retrying after %.1f s", idle_sleep)
                    processed = 0
                self._tick()
                if processed == 0:
                    stop.wait(idle_sleep)

    def _tick(self) -> None:
        for tick in self.on_tick:
            try:
                tick(self.ctx.clock())
            except Exception:
                log.exception("worker tick hook %r failed", tick)

    def _process(self, event: ClaimedEvent, clock: Callable[[], datetime],
                 revoked: set[int]) -> None:
        if event.portal_id in revoked:
            self._release(event, clock())
            return
        try:
            outcome = self._handle(event, clock)
        except LeaseLost:
            log.warning("inbox event %s: lease lost to another worker; rolled back", event.id)
        except AuthRevoked as exc:
            log.warning("inbox event %s waits: portal %s rejects our credentials",
                        event.id, event.portal_id)
            revoked.add(event.portal_id)
            self._release(event, clock())
            try:
                mark_needs_reinstall(self.ctx, event.portal_id, f"inbox worker: {exc.code}")
            except Exception:
                log.exception("portal %s: marking needs_reinstall failed", event.portal_id)
        except Exception as exc:
            self._fail(event, exc, clock())
        else:
            log.debug("inbox event %s %s → %s", event.id, event.event, outcome)

    def _handle(self, event: ClaimedEvent, clock: Callable[[], datetime]) -> str:
        """Run the handler and finish the row in one transaction."""
        with session_scope(self.ctx.sessions) as session:
            ctx = HandlerContext(session, self.ctx.gateways.for_portal(event.portal_id),
                                 event.portal_id, clock, self.ctx.settings,
                                 tuple(self.registry.after_mirror))
            outcome = self.registry.dispatch(ctx, event)
            finish = queue.ignore if outcome.startswith("ignored:") else queue.complete
            if not finish(session, event, outcome, clock()):
                raise LeaseLost(event.id)
        return outcome

    def _release(self, event: ClaimedEvent, now: datetime) -> None:
        try:
            with session_scope(self.ctx.sessions) as session:
                queue.release(session, event, now)
        except Exception:
            log.exception("inbox event %s: release failed; its lease will expire", event.id)

    def _fail(self, event: ClaimedEvent, exc: Exception, now: datetime) -> None:
        error = queue.clean_error(f"{type(exc).__name__}: {exc}")
        not_before = None
        if isinstance(exc, MethodBlocked) and exc.reset_at:
            not_before = datetime.fromtimestamp(exc.reset_at, UTC)
        try:
            with session_scope(self.ctx.sessions) as session:
                status = queue.fail(session, event, error, now, self.backoff,
                                    not_before=not_before)
        except Exception:
            log.exception("inbox event %s: recording the failure failed; lease will expire",
                          event.id)
            return
        log.warning("inbox event %s %s attempt %s failed (%s): %s", event.id, event.event,
                    event.attempts, status or "lease lost", error)
