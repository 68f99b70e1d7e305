"""The worker's periodic jobs: APScheduler 3, run by exactly one leader process.

Every worker builds the same :class:`Scheduler`, but only the holder of the leader lock
(``LeaderLock(engine, "scheduler")``) starts APScheduler; the others poll the lock (from the
worker's ``on_tick`` hook) and take over when the leader dies. Jobs are coalesced and never
overlap: runs missed while the process was busy or asleep run once, not once per miss.
Jobs are idempotent anyway (the inbox collapses duplicates, handlers diff).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.gateway.errors import AuthRevoked
from b24app.leader import LeaderLock
from b24app.models import Portal, PortalMode, PortalStatus
from b24app.worker import Worker, mark_needs_reinstall
from sync import own_writes
from sync.cursor import sync_all
from sync.initial import initial_import, refresh_extras
from sync.offline import catch_up

log = logging.getLogger(__name__)

LOCK_NAME = "scheduler"
SYNC_JOB = "sync"
PURGE_JOB = "purge-own-writes"
POLL_SECONDS = 5.0  # how often a standby tries the lock (and the leader re-checks it)
# A coalesced run still happens if its last missed time is at most this old: every interval
# job qualifies, and a nightly job missed by a day-long outage is skipped, not run at noon.
MISFIRE_GRACE_SECONDS = 24 * 3600
JOB_THREADS = 4

JobFunc = Callable[[], None]


@dataclass
class JobSpec:
    """A job as registered: APScheduler gets it only while this process leads."""

    name: str
    func: JobFunc
    trigger: Any  # an APScheduler trigger
    run_at_start: bool = False  # also run as soon as this process becomes the leader
    options: dict[str, Any] = field(default_factory=dict)  # more add_job() keywords


class Scheduler:
    """APScheduler under a leader lock: jobs run only while this process holds it."""

    def __init__(self, ctx: AppContext, *, lock: LeaderLock | None = None,
                 poll_seconds: float = POLL_SECONDS, threads: int = JOB_THREADS) -> None:
        self.ctx = ctx
        self.lock = lock if lock is not None else LeaderLock(ctx.engine, LOCK_NAME)
        self.tz = ctx.settings.calendar.tzinfo
        self.poll_seconds = poll_seconds
        self.jobs: dict[str, JobSpec] = {}
        self._aps = BackgroundScheduler(
            timezone=self.tz, executors={"default": ThreadPoolExecutor(threads)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": MISFIRE_GRACE_SECONDS})
        self._started = False
        self._leading = False
        self._closed = False
        self._last_poll = float("-inf")
        self._mutex = threading.RLock()

    # -- jobs --------------------------------------------------------------------------------
    def register_job(self, name: str, func: JobFunc, trigger: Any, *,
                     run_at_start: bool = False, **options: Any) -> None:
        """Add (or replace) a job; the leader runs it on ``trigger``'s schedule."""
        with self._mutex:
            self.jobs[name] = JobSpec(name, func, trigger, run_at_start, dict(options))
            if self._leading:
                self._add(self.jobs[name])

    def interval(self, *, minutes: float = 0, seconds: float = 0) -> IntervalTrigger:
        """An interval trigger in the calendar's time zone."""
        return IntervalTrigger(minutes=minutes, seconds=seconds, timezone=self.tz)

    def cron(self, crontab: str) -> CronTrigger:
        """A crontab trigger (``"0 2 * * *"``) in ``calendar.timezone``, not the host's zone."""
        return CronTrigger.from_crontab(crontab, timezone=self.tz)

    def _add(self, spec: JobSpec) -> None:
        options = dict(spec.options)
        if spec.run_at_start:
            options.setdefault("next_run_time", datetime.now(self.tz))
        self._aps.add_job(_guarded(spec.name, spec.func), spec.trigger, id=spec.name,
                          name=spec.name, replace_existing=True, **options)

    def next_run(self, name: str) -> datetime | None:
        """When the leader runs ``name`` next (``None`` on a standby or a paused job)."""
        job = self._aps.get_job(name)
        return None if job is None else job.next_run_time

    # -- leadership ----------------------------------------------------------------------------
    @property
    def leading(self) -> bool:
        """Whether this process runs the jobs now."""
        return self._leading

    def poll(self) -> bool:
        """Take the lead if the lock is free, step down if it was lost; ``True`` if leading."""
        with self._mutex:
            if self._closed:
                return False
            self._last_poll = time.monotonic()
            if self._leading:
                if not self.lock.verify():
                    log.warning("scheduler lost its leader lock; stepping down")
                    self._step_down()
            elif self.lock.try_acquire():
                self._lead()
            return self._leading

    def tick(self, now: datetime | None = None) -> None:
        """The worker's ``on_tick`` hook: :meth:`poll` at most every ``poll_seconds``."""
        if time.monotonic() - self._last_poll >= self.poll_seconds:
            self.poll()

    def start(self) -> bool:
        """First poll: lead at once if no other process does; ``True`` if leading."""
        return self.poll()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the jobs (waiting for running ones if ``wait``) and free the lock."""
        with self._mutex:
            self._closed = True
            self._leading = False
            if self._started:
                self._aps.shutdown(wait=wait)
                self._started = False
            self.lock.close()

    def _lead(self) -> None:
        log.info("scheduler is the leader: %s jobs", len(self.jobs))
        self._leading = True
        for spec in self.jobs.values():
            self._add(spec)
        if not self._started:
            self._aps.start()
            self._started = True
        else:
            self._aps.resume()

    def _step_down(self) -> None:
        # Running jobs finish (threads cannot be stopped); they are idempotent, so a new
        # leader starting the same job meanwhile does no harm.
        self._leading = False
        self._aps.pause()
        self._aps.remove_all_jobs()
        self.lock.release()


def _guarded(name: str, func: JobFunc) -> JobFunc:
    """Log a job's failure with its name; the next run is the retry."""

    def run() -> None:
        started = time.monotonic()
        try:
            func()
        except Exception:
            log.exception("scheduled job %s failed", name)
        else:
            log.debug("scheduled job %s done in %.1f s", name, time.monotonic() - started)

    run.__name__ = f"job_{name}"
    return run


# -- the jobs of this issue ----------------------------------------------------------------
def active_portals(ctx: AppContext) -> list[tuple[int, str]]:
    """``(id, mode)`` of every active portal (uninstalled or locked-out ones wait)."""
    with ctx.sessions() as session:
        rows = session.execute(select(Portal.id, Portal.mode)
                               .where(Portal.status == PortalStatus.ACTIVE.value)
                               .order_by(Portal.id)).all()
    return [(row.id, row.mode) for row in rows]


def recover_portal(ctx: AppContext, portal_id: int, mode: str, now: datetime) -> None:
    """First sync by bulk load; then offline catch-up and the cursor sync; then extras."""
    # After a bulk load the cursors start at ``now``: the passes below are then cheap.
    initial_import(ctx, portal_id, now)
    # Offline events need app auth (platform doc 3.7): a webhook portal has the cursor only.
    if mode == PortalMode.LOCAL_APP.value:
        report = catch_up(ctx, portal_id, now)
        if report.records:
            log.info("offline catch-up of portal %s: %s records, %s new inbox rows",
                     portal_id, report.records, report.stored)
    sync_all(ctx, portal_id, now)
    refresh_extras(ctx, portal_id, now)


def sync_portals(ctx: AppContext) -> None:
    """The sync job: recover lost events of every active portal, one portal at a time."""
    now = ctx.clock()
    for portal_id, mode in active_portals(ctx):
        try:
            recover_portal(ctx, portal_id, mode, now)
        except AuthRevoked as exc:
            mark_needs_reinstall(ctx, portal_id, f"scheduler: {exc.code}")
        except Exception:
            # One portal's outage must not starve the others; the next run retries it.
            log.exception("loss recovery of portal %s failed", portal_id)


def purge_own_writes(ctx: AppContext) -> None:
    """The daily job: drop expired own-write marks."""
    with session_scope(ctx.sessions) as session:
        gone = own_writes.purge_expired(session, ctx.clock())
    log.info("purged %s expired own-write marks", gone)


def build_scheduler(ctx: AppContext, worker: Worker | None = None, *,
                    lock: LeaderLock | None = None,
                    poll_seconds: float = POLL_SECONDS) -> Scheduler:
    """The scheduler with this issue's jobs, polled from ``worker``'s ticks when given.

    More jobs come with ``scheduler.register_job(name, func, trigger)`` (SLA ticker, outbox,
    KPI nightly with ``scheduler.cron(settings.scheduler.kpi_cron)``, digest).
    """
    scheduler = Scheduler(ctx, lock=lock, poll_seconds=poll_seconds)
    minutes = ctx.settings.scheduler.sync_minutes
    scheduler.register_job(SYNC_JOB, lambda: sync_portals(ctx),
                           scheduler.interval(minutes=minutes), run_at_start=True)
    scheduler.register_job(PURGE_JOB, lambda: purge_own_writes(ctx), scheduler.cron("17 3 * * *"))
    if worker is not None:
        worker.on_tick.append(scheduler.tick)
    return scheduler

