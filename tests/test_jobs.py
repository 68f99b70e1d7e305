"""The product wiring: rules on the worker's registry, jobs on the leader's scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from b24app import jobs, outbox
from b24app.db import session_scope
from handlers.sla import sla_hook
from handlers.task_format import task_format_hook
from tests.fakes import FakeClock, FakeGateway
from tests.workerproc import FakeGateways, make_context, seed_portal


def test_the_worker_runs_the_rules_and_the_scheduler_has_every_job(engine: Engine) -> None:
    """Task format and SLA hooks after each mirror change; sync, SLA, KPI, digest, NPS jobs."""
    ctx = make_context(engine)
    worker, scheduler = jobs.build_worker(ctx)
    try:
        assert worker.registry.after_mirror == [task_format_hook, sla_hook]
        names = set(scheduler.jobs)
        assert {"sla", "sla-refresh", "kpi-nightly", "kpi-digest", "nps"} <= names
        assert worker.on_tick  # the standby polls for leadership from the worker's ticks
    finally:
        scheduler.shutdown(wait=False)


def test_the_sla_minute_sends_due_notifications(engine: Engine) -> None:
    """A due notification leaves within the minute the SLA job runs."""
    gateway = FakeGateway()
    clock = FakeClock(datetime(2026, 11, 16, 3, 0, tzinfo=UTC))
    ctx = make_context(engine, gateways=FakeGateways(gateway), clock=clock)
    portal = seed_portal(ctx.sessions)
    with session_scope(ctx.sessions) as session:
        outbox.enqueue(session, portal_id=portal, user_id=5, kind="sla_breach",
                       tag="sla-1-breach", message="Задача #1 — нет ответа",
                       not_before=clock() - timedelta(minutes=1), now=clock())
    jobs.sla_minute(ctx)
    assert gateway.notifications == [(5, "Задача #1 — нет ответа", "sla-1-breach")]
