"""Wiring of the product: the rules that run after each mirror change and the scheduled jobs.

The worker drains the inbox through a registry whose after-mirror hooks are the business
rules (task format, response SLA). The leader's scheduler runs the timed work: the loss
recovery sync (registered by ``build_scheduler``), the SLA minute (tick, then send due
notifications), the nightly KPI compute and write-back, the weekly digest to the РОП and
the NPS jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from b24app import kpi_jobs, outbox
from b24app.calendar_rules import calendar_from_settings
from b24app.context import AppContext
from b24app.gateway.errors import AuthRevoked
from b24app.nps.crm_field import run_crm_field
from b24app.nps.waves import run_wave
from b24app.scheduler import Scheduler, active_portals, build_scheduler
from b24app.worker import Worker, mark_needs_reinstall
from handlers.registry import Registry, build_registry
from handlers.sla import sla_hook
from handlers.task_format import task_format_hook
from sync.sla_ticker import refresh_missing
from sync.sla_ticker import tick as sla_tick

log = logging.getLogger(__name__)


def rules_registry() -> Registry:
    """Every event handler, with the business rules run after each mirror change."""
    return build_registry(after_mirror=[task_format_hook, sla_hook])


def sla_minute(ctx: AppContext) -> None:
    """Warn and breach due clocks, then send every due notification in the same minute."""
    now = ctx.clock()
    sla_tick(ctx, now)
    calendar = calendar_from_settings(ctx.settings.calendar)
    outbox.send_due(ctx.sessions, ctx.gateways.for_portal, now,
                    next_working=calendar.next_working_instant)


def sla_refresh(ctx: AppContext) -> None:
    """Give a clock to mirrored tasks whose creation event was lost (a net under the hooks)."""
    now = ctx.clock()
    for portal_id, _mode in active_portals(ctx):
        _per_portal(ctx, portal_id, "sla-refresh",
                    lambda pid: refresh_missing(ctx, pid, now))


def nps_daily(ctx: AppContext) -> None:
    """Ingest NPS answers kept in contact fields; open the survey wave when it starts."""
    now = ctx.clock()
    for portal_id, _mode in active_portals(ctx):
        _per_portal(ctx, portal_id, "nps", lambda pid: _nps_portal(ctx, pid, now))


def _nps_portal(ctx: AppContext, portal_id: int, now: datetime) -> None:
    run_crm_field(ctx, portal_id)
    calendar = calendar_from_settings(ctx.settings.calendar)
    # The reps' lists of survey links wait for working hours, like every notification.
    run_wave(ctx, portal_id, now, not_before=calendar.next_working_instant(now))


def _per_portal(ctx: AppContext, portal_id: int, job: str, run: Callable[[int], object]) -> None:
    try:
        run(portal_id)
    except AuthRevoked as exc:
        mark_needs_reinstall(ctx, portal_id, f"{job}: {exc.code}")
    except Exception:
        # One portal's failure must not starve the others; the next run retries it.
        log.exception("%s job of portal %s failed", job, portal_id)


def register_product_jobs(scheduler: Scheduler, ctx: AppContext) -> None:
    """The SLA minute, the nightly KPIs, the Monday digest and the daily NPS jobs."""
    cron = ctx.settings.scheduler
    scheduler.register_job("sla", lambda: sla_minute(ctx), scheduler.interval(minutes=1),
                           run_at_start=True)
    scheduler.register_job("sla-refresh", lambda: sla_refresh(ctx),
                           scheduler.interval(minutes=cron.sync_minutes))
    scheduler.register_job("kpi-nightly", lambda: kpi_jobs.nightly(ctx),
                           scheduler.cron(cron.kpi_cron))
    scheduler.register_job("kpi-digest", lambda: kpi_jobs.weekly_digests(ctx),
                           scheduler.cron(cron.digest_cron))
    scheduler.register_job("nps", lambda: nps_daily(ctx), scheduler.cron("30 1 * * *"))


def build_worker(ctx: AppContext) -> tuple[Worker, Scheduler]:
    """A worker with the rules and a scheduler (leader-elected) with every job."""
    worker = Worker(ctx, registry=rules_registry())
    scheduler = build_scheduler(ctx, worker)
    register_product_jobs(scheduler, ctx)
    return worker, scheduler
