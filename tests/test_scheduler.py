"""The scheduler: one leader runs the jobs, a standby takes over, missed runs coalesce."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from sqlalchemy import Engine, select, update

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.gateway.errors import AuthRevoked
from b24app.gateway.protocol import Gateway, OfflineBatch
from b24app.models import OwnWrite, Portal
from b24app.scheduler import (
    LOCK_NAME,
    PURGE_JOB,
    SYNC_JOB,
    Scheduler,
    build_scheduler,
    purge_own_writes,
    sync_portals,
)
from b24app.worker import Worker
from sync import own_writes
from tests.fakes import FakeClock, FakeGateway
from tests.workerproc import make_context, seed_portal, wait_for

ROOT = Path(__file__).resolve().parents[1]
HOUR = timedelta(hours=1)


@pytest.fixture
def ctx(engine: Engine) -> Iterator[AppContext]:
    """An app context on ``db_url`` with fake gateways."""
    built = make_context(engine)
    yield built
    built.gateways.close()


@pytest.fixture
def schedulers(ctx: AppContext) -> Iterator[Callable[[], Scheduler]]:
    """Makes schedulers on ``ctx``'s database (each with its own lock); shuts them all down."""
    made: list[Scheduler] = []

    def make() -> Scheduler:
        made.append(Scheduler(ctx, poll_seconds=0))
        return made[-1]

    yield make
    for scheduler in made:
        scheduler.shutdown()


class Probe:
    """A job that records which scheduler ran it."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.ran = threading.Condition()

    def job(self, name: str) -> Callable[[], None]:
        """The job function of scheduler ``name``."""

        def run() -> None:
            with self.ran:
                self.runs.append(name)
                self.ran.notify_all()

        return run

    def wait(self, count: int, timeout: float = 10.0) -> bool:
        """Until ``count`` runs happened."""
        with self.ran:
            return self.ran.wait_for(lambda: len(self.runs) >= count, timeout)


def hourly(scheduler: Scheduler, probe: Probe, name: str, **options: object) -> None:
    """Register the probe job, hourly, first run at once."""
    scheduler.register_job("probe", probe.job(name), scheduler.interval(minutes=60),
                           run_at_start=True, **options)


# -- leadership ------------------------------------------------------------------------------
def test_only_the_leader_runs_jobs_and_a_standby_takes_over(
        schedulers: Callable[[], Scheduler]) -> None:
    probe = Probe()
    first, second = schedulers(), schedulers()
    hourly(first, probe, "first")
    hourly(second, probe, "second")
    assert first.start() and first.leading
    assert not second.start() and not second.leading
    assert probe.wait(1)
    assert second.next_run("probe") is None  # a standby has no job scheduled at all
    assert not second.poll()
    assert probe.runs == ["first"]
    first.shutdown()  # a clean stop frees the lock
    assert second.poll() and second.leading
    assert probe.wait(2)
    assert probe.runs == ["first", "second"]
    assert not first.poll()  # a shut-down scheduler never leads again


def test_a_leader_that_loses_its_lock_steps_down(schedulers: Callable[[], Scheduler],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    probe = Probe()
    first, second = schedulers(), schedulers()
    hourly(first, probe, "first")
    hourly(second, probe, "second")
    assert first.start() and probe.wait(1)
    monkeypatch.setattr(first.lock, "verify", lambda: False)  # e.g. its connection dropped
    assert not first.poll()
    assert first.next_run("probe") is None and not first.lock.held
    assert second.poll() and probe.wait(2)
    assert probe.runs == ["first", "second"]


@pytest.mark.slow
def test_a_killed_leader_process_hands_over(db_url: str,
                                           schedulers: Callable[[], Scheduler]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.workerproc", "hold-leader", db_url,
                             LOCK_NAME], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    probe = Probe()
    standby = schedulers()
    hourly(standby, probe, "standby")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acquired"
        assert not standby.start()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_for(standby.poll, timeout=10), "the standby never took over"
        assert probe.wait(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_the_worker_tick_polls_no_more_often_than_poll_seconds(ctx: AppContext) -> None:
    worker = Worker(ctx)
    scheduler = build_scheduler(ctx, worker, poll_seconds=3600)
    polls: list[bool] = []
    original = scheduler.poll

    def counting() -> bool:
        polls.append(original())
        return polls[-1]

    scheduler.poll = counting  # type: ignore[method-assign]
    try:
        assert scheduler.tick in worker.on_tick
        worker._tick()
        worker._tick()
        assert polls == [True]
    finally:
        scheduler.shutdown()


# -- job behaviour ---------------------------------------------------------------------------
def test_a_job_that_missed_three_runs_runs_once(schedulers: Callable[[], Scheduler]) -> None:
    """Asleep for three hours (a suspended VM, a long GC): one run, not four."""
    probe = Probe()
    scheduler = schedulers()
    now = datetime.now(scheduler.tz)
    hourly(scheduler, probe, "leader", next_run_time=now - 3 * HOUR - timedelta(minutes=1))
    assert scheduler.start()
    assert probe.wait(1)
    assert wait_for(lambda: (scheduler.next_run("probe") or now) > now)
    next_run = scheduler.next_run("probe")
    assert next_run is not None and next_run > now + timedelta(minutes=58)
    assert probe.runs == ["leader"]


def test_runs_of_one_job_never_overlap(schedulers: Callable[[], Scheduler]) -> None:
    """A run longer than the interval: the next ones are refused, not started beside it."""
    scheduler = schedulers()
    release = threading.Event()
    running: list[int] = []
    overlap: list[int] = []
    refused = Probe()
    lock = threading.Lock()

    def slow() -> None:
        with lock:
            running.append(1)
            overlap.append(len(running))
        release.wait(10)
        with lock:
            running.pop()

    scheduler.register_job("slow", slow, scheduler.interval(seconds=0.05), run_at_start=True)
    # APScheduler's own signal that max_instances held a run back.
    scheduler._aps.add_listener(lambda _event: refused.job("refused")(), EVENT_JOB_MAX_INSTANCES)
    assert scheduler.start()
    assert refused.wait(3)  # three intervals came while the first run still held on
    release.set()
    scheduler.shutdown()
    assert overlap and max(overlap) == 1


def test_cron_triggers_use_the_calendar_time_zone(ctx: AppContext) -> None:
    scheduler = build_scheduler(ctx)
    try:
        trigger = scheduler.cron("0 2 * * *")
        assert trigger.timezone == ZoneInfo(ctx.settings.calendar.timezone)
        assert set(scheduler.jobs) == {SYNC_JOB, PURGE_JOB}
        assert scheduler.jobs[PURGE_JOB].trigger.timezone == scheduler.tz
        assert scheduler.jobs[SYNC_JOB].trigger.interval == timedelta(
            minutes=ctx.settings.scheduler.sync_minutes)
    finally:
        scheduler.shutdown()


def test_a_job_registered_while_leading_is_scheduled_at_once(
        schedulers: Callable[[], Scheduler]) -> None:
    probe = Probe()
    scheduler = schedulers()
    assert scheduler.start()
    hourly(scheduler, probe, "late")
    assert probe.wait(1)


# -- this jobs -----------------------------------------------------------------------
class PerPortal:
    """A provider with one recording fake gateway per portal."""

    def __init__(self) -> None:
        self.gateways: dict[int, Recording] = {}

    def for_portal(self, portal_id: int) -> Gateway:
        """The portal's fake."""
        return self.gateways.setdefault(portal_id, Recording())

    def forget(self, portal_id: int) -> None:
        """Nothing cached."""

    def close(self) -> None:
        """Nothing to close."""


class Recording(FakeGateway):
    """Counts offline reads; ``revoked`` makes every call fail as a revoked token would."""

    revoked = False
    offline_reads = 0

    def offline_events(self, *, limit: int = 50, process_id: str = "") -> OfflineBatch:
        if self.revoked:
            raise AuthRevoked("invalid_token", "revoked")
        self.offline_reads += 1
        return super().offline_events(limit=limit, process_id=process_id)


def test_the_sync_job_recovers_active_portals_only(engine: Engine) -> None:
    provider = PerPortal()
    ctx = make_context(engine, gateways=provider)  # type: ignore[arg-type]
    app, hook, locked, gone = (seed_portal(ctx.sessions, m) for m in ("a", "b", "c", "d"))
    with session_scope(ctx.sessions) as session:
        session.execute(update(Portal).where(Portal.id == hook).values(mode="webhook"))
        session.execute(update(Portal).where(Portal.id == locked)
                        .values(status="needs_reinstall"))
        session.execute(update(Portal).where(Portal.id == gone).values(status="uninstalled"))
    sync_portals(ctx)
    assert sorted(provider.gateways) == [app, hook]
    assert provider.gateways[app].offline_reads == 1
    assert provider.gateways[hook].offline_reads == 0  # offline events need app auth


def test_a_revoked_portal_is_flagged_and_the_others_still_sync(engine: Engine) -> None:
    provider = PerPortal()
    ctx = make_context(engine, gateways=provider)  # type: ignore[arg-type]
    bad, good = seed_portal(ctx.sessions, "bad"), seed_portal(ctx.sessions, "good")
    provider.gateways[bad] = Recording()
    provider.gateways[bad].revoked = True
    sync_portals(ctx)
    assert provider.gateways[good].offline_reads == 1
    with ctx.sessions() as session:
        assert session.scalar(select(Portal.status).where(Portal.id == bad)) == "needs_reinstall"


def test_the_purge_job_drops_expired_own_write_marks(engine: Engine) -> None:
    clock = FakeClock()
    ctx = make_context(engine, clock=clock)
    portal = seed_portal(ctx.sessions)
    with session_scope(ctx.sessions) as session:
        own_writes.record(session, portal, "deal", 1, {"TITLE": "x"}, now=clock())
        own_writes.record(session, portal, "deal", 2, {"TITLE": "y"},
                          now=clock() + timedelta(days=1))
    clock.advance(hours=1)
    purge_own_writes(ctx)
    with ctx.sessions() as session:
        assert session.scalars(select(OwnWrite.entity_id)).all() == ["2"]
