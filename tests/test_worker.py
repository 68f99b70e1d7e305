"""The worker: dispatch and finish, failures, revoked portals, lost leases, concurrency, kills.

"Exactly once" here means: every inbox row ends finished, each event's *database* effects
commit exactly once (they commit with the row's ``done`` mark, under the lease), and a
handler runs more than once only for a row whose worker died before committing; handlers
are idempotent, so that re-run changes nothing.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.gateway.errors import AuthRevoked, MethodBlocked
from b24app.gateway.types import Deal
from b24app.inbox.queue import ClaimedEvent
from b24app.models import InboxEvent, MirrorDeal, Portal
from b24app.worker import Worker
from handlers.registry import HandlerContext, Registry, build_registry
from sync.mirror import MirrorChange
from tests.fakes import FakeClock, FakeGateway
from tests.workerproc import (
    EFFECTS,
    FakeGateways,
    add_events,
    effect_registry,
    make_context,
    seed_portal,
    status_counts,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clock() -> FakeClock:
    """The test's clock."""
    return FakeClock()


@pytest.fixture
def ctx(engine: Engine, clock: FakeClock) -> Iterator[AppContext]:
    """An app context on the test database with fake gateways."""
    built = make_context(engine, clock=clock)
    yield built
    built.gateways.close()


def _rows(sessions: sessionmaker[Session]) -> list[InboxEvent]:
    with sessions() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def _effects(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.scalars(select(EFFECTS.c.event_id).order_by(EFFECTS.c.event_id)))


def _registry(**handlers: Callable[[HandlerContext, ClaimedEvent], str]) -> Registry:
    return Registry(handlers)


def test_run_once_dispatches_and_finishes_each_event(ctx: AppContext, clock: FakeClock) -> None:
    portal = seed_portal(ctx.sessions)
    for name in ("ONDONE", "ONMINE", "ONNOBODY"):
        add_events(ctx.sessions, portal, 1, clock(), event=name)
    registry = _registry(ondone=lambda c, e: "mirror:updated",
                         onmine=lambda c, e: "ignored:own-write")
    assert Worker(ctx, "w1", registry=registry).run_once() == 3
    assert [(r.event, r.status, r.outcome, r.processed_at) for r in _rows(ctx.sessions)] == [
        ("ONDONE", "done", "mirror:updated", clock()),
        ("ONMINE", "ignored", "ignored:own-write", clock()),
        ("ONNOBODY", "ignored", "ignored:unknown-event", clock())]


def test_one_failing_event_does_not_stop_the_others(ctx: AppContext, clock: FakeClock) -> None:
    portal = seed_portal(ctx.sessions)
    add_events(ctx.sessions, portal, 3, clock(), event="ONX")

    def handle(hctx: HandlerContext, event: ClaimedEvent) -> str:
        if event.entity_id == "2":
            raise RuntimeError("boom access_token=secret-value")
        return "mirror:updated"

    worker = Worker(ctx, "w1", registry=_registry(onx=handle), rng=lambda: 0.0)
    assert worker.run_once() == 3
    first, failed, last = _rows(ctx.sessions)
    assert (first.status, last.status) == ("done", "done")
    assert (failed.status, failed.attempts, failed.locked_by) == ("pending", 1, None)
    assert failed.next_attempt_at == clock() + timedelta(seconds=5)
    assert failed.last_error == "RuntimeError: boom access_token=***"


def test_a_revoked_portal_is_flagged_and_its_events_wait(ctx: AppContext,
                                                         clock: FakeClock) -> None:
    revoked, healthy = seed_portal(ctx.sessions, "m-rev"), seed_portal(ctx.sessions, "m-ok")
    add_events(ctx.sessions, revoked, 3, clock(), event="ONX")
    add_events(ctx.sessions, healthy, 2, clock(), event="ONX", first=10)
    calls: list[int] = []

    def handle(hctx: HandlerContext, event: ClaimedEvent) -> str:
        calls.append(hctx.portal_id)
        if hctx.portal_id == revoked:
            raise AuthRevoked("invalid_token", "the refresh token is dead")
        return "mirror:updated"

    worker = Worker(ctx, "w1", registry=_registry(onx=handle))
    assert worker.run_once() == 5
    assert calls == [revoked, healthy, healthy]  # one REST failure, not three
    with ctx.sessions() as session:
        assert session.get(Portal, revoked).status == "needs_reinstall"  # type: ignore[union-attr]
        assert session.get(Portal, healthy).status == "active"  # type: ignore[union-attr]
    waiting = [r for r in _rows(ctx.sessions) if r.portal_id == revoked]
    assert {(r.status, r.attempts, r.locked_by) for r in waiting} == {("pending", 0, None)}
    assert isinstance(ctx.gateways, FakeGateways)
    assert ctx.gateways.forgotten == [revoked]
    assert worker.run_once() == 0  # nothing to do until the portal is re-installed


def test_a_blocked_method_retries_after_its_reset(ctx: AppContext, clock: FakeClock) -> None:
    add_events(ctx.sessions, seed_portal(ctx.sessions), 1, clock(), event="ONX")
    reset = clock() + timedelta(minutes=7)

    def handle(hctx: HandlerContext, event: ClaimedEvent) -> str:
        raise MethodBlocked("OPERATION_TIME_LIMIT", reset_at=reset.timestamp())

    Worker(ctx, "w1", registry=_registry(onx=handle), rng=lambda: 0.0).run_once()
    (row,) = _rows(ctx.sessions)
    assert (row.status, row.next_attempt_at) == ("pending", reset)


def test_a_lost_lease_rolls_the_handler_effects_back(ctx: AppContext, engine: Engine,
                                                     clock: FakeClock) -> None:
    EFFECTS.create(engine)
    add_events(ctx.sessions, seed_portal(ctx.sessions), 1, clock())
    inner = effect_registry().handlers["ONTESTEFFECT"]

    def stolen(hctx: HandlerContext, event: ClaimedEvent) -> str:
        with session_scope(ctx.sessions) as other:  # another worker took the row over
            other.execute(update(InboxEvent).where(InboxEvent.id == event.id)
                          .values(locked_by="thief", attempts=InboxEvent.attempts + 1))
        return inner(hctx, event)

    assert Worker(ctx, "w1", registry=Registry({"ONTESTEFFECT": stolen})).run_once() == 1
    (row,) = _rows(ctx.sessions)
    assert (row.status, row.locked_by) == ("processing", "thief")
    assert _effects(engine) == []


def test_a_failing_hook_rolls_the_mirror_back_and_sees_the_change_again(
        engine: Engine, clock: FakeClock) -> None:
    gateway = FakeGateway()
    gateway.put("deal", Deal.from_wire({"ID": "7", "TITLE": "Поставка", "OPPORTUNITY": "10"}))
    ctx = make_context(engine, clock=clock, gateways=FakeGateways(gateway))
    portal = seed_portal(ctx.sessions)
    add_events(ctx.sessions, portal, 1, clock(), event="ONCRMDEALADD", first=7)
    seen: list[str] = []

    def hook(hctx: HandlerContext, event: ClaimedEvent, change: MirrorChange) -> None:
        seen.append(change.kind)
        if len(seen) == 1:
            raise RuntimeError("rule failed")

    worker = Worker(ctx, "w1", registry=build_registry([hook]), rng=lambda: 0.0)
    worker.run_once()
    with ctx.sessions() as session:
        assert session.get(MirrorDeal, {"portal_id": portal, "id": 7}) is None
    clock.advance(seconds=5)
    worker.run_once()
    assert seen == ["created", "created"]
    (row,) = _rows(ctx.sessions)
    assert (row.status, row.outcome, row.attempts) == ("done", "mirror:created", 2)


def test_run_forever_stops_on_its_event_and_calls_tick_hooks(ctx: AppContext,
                                                             clock: FakeClock) -> None:
    add_events(ctx.sessions, seed_portal(ctx.sessions), 3, clock(), event="ONX")
    worker = Worker(ctx, "w1", registry=_registry(onx=lambda c, e: "mirror:updated"))
    stop = threading.Event()
    ticks: list[datetime] = []

    def tick(now: datetime) -> None:
        ticks.append(now)
        stop.set()

    worker.on_tick.append(tick)
    worker.run_forever(stop, idle_sleep=0)
    assert ticks == [clock()]
    assert status_counts(ctx.sessions) == {"done": 3}


@pytest.mark.slow
def test_concurrent_workers_process_every_event_exactly_once(engine: Engine) -> None:
    """Four workers in threads (SKIP LOCKED / BEGIN IMMEDIATE): each row handled once."""
    EFFECTS.create(engine)
    ctx = make_context(engine, batch_size=25)
    # The acceptance figure on PostgreSQL; SQLite (one writer) only needs its path covered.
    total = 2000 if engine.dialect.name == "postgresql" else 500
    add_events(ctx.sessions, seed_portal(ctx.sessions), total, datetime.now(UTC))
    handled: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def seen(event_id: int) -> None:
        with lock:
            handled[event_id] += 1

    registry = effect_registry(seen)
    workers = [Worker(ctx, f"w{n}", registry=registry) for n in range(4)]
    rounds: collections.Counter[str] = collections.Counter()
    errors: list[BaseException] = []

    def drain(worker: Worker) -> None:
        try:
            while worker.run_once():
                rounds[worker.worker_id] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert len(handled) == total and set(handled.values()) == {1}, "an event ran twice"
    assert len(_effects(engine)) == total
    assert status_counts(ctx.sessions) == {"done": total}
    with ctx.sessions() as session:  # nobody ever claimed a row another worker held
        assert session.scalar(select(func.max(InboxEvent.attempts))) == 1
    assert len(rounds) > 1, "the workers did not actually run side by side"


def _start_drain(db_url: str, effects: Path, *, batch: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.workerproc", "drain", db_url, str(effects),
         "--delay", "0.05", "--batch", str(batch), "--lease", "60"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "draining"
    return proc


def _lines(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_a_worker_killed_mid_drain_loses_nothing(db_url: str, engine: Engine,
                                                 tmp_path: Path) -> None:
    """SIGKILL mid-drain, then a second worker: every row done, every effect exactly once."""
    EFFECTS.create(engine)
    ctx = make_context(engine, batch_size=50)
    total = 300
    ids = add_events(ctx.sessions, seed_portal(ctx.sessions), total, datetime.now(UTC))
    effects = tmp_path / "effects.txt"
    proc = _start_drain(db_url, effects, batch=10)
    try:
        # 25: mid-batch (batches of 10), so some claimed rows are still leased to it.
        assert wait_for(lambda: len(_lines(effects)) >= 25), "the worker made no progress"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    counts = status_counts(ctx.sessions)
    assert counts.get("processing", 0) >= 1, f"not killed mid-batch: {counts}"
    assert 0 < counts.get("done", 0) < total

    recorded = collections.Counter(_lines(effects))
    survivor = Worker(ctx, "survivor", registry=effect_registry(
        lambda event_id: recorded.update([event_id])))
    later = datetime.now(UTC) + timedelta(minutes=2)  # the killed worker's lease expired
    while survivor.run_once(now=later):
        pass
    assert status_counts(ctx.sessions) == {"done": total}
    assert set(recorded) == set(ids), "an event was lost"
    assert _effects(engine) == ids  # the database effect: exactly once each
    # The handler re-ran only for the event in flight at the kill (effect recorded, done not
    # committed), and the idempotent insert made that re-run harmless.
    twice = [event_id for event_id, n in recorded.items() if n > 1]
    assert len(twice) <= 1 and max(recorded.values()) <= 2
    reclaimed = [r for r in _rows(ctx.sessions) if r.attempts == 2]
    assert len(reclaimed) == counts["processing"]
    assert all(r.locked_by is None for r in reclaimed)


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_finishes_the_current_event_and_leaves_the_rest_leased(
        db_url: str, engine: Engine, tmp_path: Path) -> None:
    EFFECTS.create(engine)
    ctx = make_context(engine)
    ids = add_events(ctx.sessions, seed_portal(ctx.sessions), 100, datetime.now(UTC))
    effects = tmp_path / "effects.txt"
    proc = _start_drain(db_url, effects, batch=50)
    try:
        assert wait_for(lambda: len(_lines(effects)) >= 5)  # well inside the first batch
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    done = _effects(engine)
    assert _lines(effects) == done  # the event under way when SIGTERM came was finished
    # The rest of the first batch stays leased (reclaimed when the lease expires).
    assert status_counts(ctx.sessions) == {"done": len(done), "processing": 50 - len(done),
                                           "pending": len(ids) - 50}
