"""Acceptance: the app is down while the portal makes 500 changes; started again, it catches up.

"Processed once" means, for every object the portal touched while the app was down: its
final state is in the mirror (a deleted one is marked deleted, or was never mirrored), and
it got exactly one *applied* outcome after the restart (``mirror:created``/``updated``/
``deleted``) when its final state differs from what the mirror held before the stop, none
otherwise; every other inbox row about it ends ``mirror:unchanged``, or never existed
because it collapsed onto another row's dedup key. Handlers re-read the record, so the
first row to run applies the final state and the rest find nothing to do.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.factory import GatewayFactory
from b24app.inbox import queue
from b24app.inbox.queue import ClaimedEvent
from b24app.models import InboxEvent, utcnow
from b24app.scheduler import SYNC_JOB, build_scheduler, recover_portal, sync_portals
from b24app.web import create_app
from b24app.worker import Worker
from b24emu import EmulatorServer, Portal
from b24emu.dispatch import act
from handlers.registry import HandlerContext, build_registry
from sync.mirror import MirrorChange
from tests.appfixtures import build_ctx, emulator_settings
from tests.test_offline import FAST, drain, install, mirror_mismatches, portal_gateway

APPLIED = ("mirror:created", "mirror:updated", "mirror:deleted")
KINDS = ("deal", "company", "contact", "task")


# -- the app as a restartable service --------------------------------------------------------
class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log."""


class _Late:
    """A WSGI app set after the server exists (the app's settings need the server's URL)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


class Restartable:
    """The app's HTTP server on one loopback port, stopped and started like a deploy."""

    def __init__(self) -> None:
        self.wsgi = _Late()
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL (the same across restarts)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Serve on the port (a free one the first time)."""
        server = make_server("127.0.0.1", self.port, self.wsgi, threaded=True,
                             request_handler=_Quiet)
        self.port, self._server = server.server_port, server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving: Bitrix24's deliveries now fail and are lost."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass
class Service:
    """The app (server, context) on one emulator portal."""

    emulator: EmulatorServer
    server: Restartable
    ctx: AppContext
    portal_id: int = 0

    @property
    def portal(self) -> Portal:
        """The emulated portal."""
        return self.emulator.portal

    def gateway(self) -> BitrixGateway:
        """The app's gateway of the portal (its client counts requests)."""
        gateway = self.ctx.gateways.for_portal(self.portal_id)
        assert isinstance(gateway, BitrixGateway)
        return gateway


@pytest.fixture
def service(emulator: EmulatorServer, engine: Engine, session_factory: sessionmaker[Session],
            secret_box: SecretBox) -> Iterator[Service]:
    """The app served on loopback, installed on the emulator portal through ONAPPINSTALL."""
    server = Restartable()
    server.start()
    base = emulator_settings(emulator, server.url)
    # The emulator's limits are off: no client-side pacing either, or the test only waits.
    settings = dataclasses.replace(base, portal=dataclasses.replace(
        base.portal, requests_per_second=FAST, burst=int(FAST)))
    gateways = GatewayFactory(settings, session_factory, secret_box, utcnow)
    ctx = build_ctx(settings, engine, session_factory, secret_box, gateways)
    server.wsgi.app = create_app(ctx, allow_insecure_endpoints=True)
    built = Service(emulator, server, ctx)
    try:
        built.portal_id = install(emulator, _AsAppServer(server.url, ctx))
        yield built
    finally:
        server.stop()
        gateways.close()


@dataclass
class _AsAppServer:
    """What ``install`` needs of an app server."""

    url: str
    ctx: AppContext


# -- changes on the portal -------------------------------------------------------------------
@dataclass
class Churn:
    """What the portal did: objects per kind, and their fate."""

    live: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in KINDS})
    added: set[tuple[str, int]] = field(default_factory=set)
    updated: set[tuple[str, int]] = field(default_factory=set)
    deleted: set[tuple[str, int]] = field(default_factory=set)
    changes: int = 0
    by_automation: int = 0

    def touched(self) -> set[tuple[str, int]]:
        """Every object a change reached."""
        return self.added | self.updated | self.deleted

    def reset(self) -> None:
        """Forget the fates (a new phase starts), keep the live objects."""
        self.added, self.updated, self.deleted = set(), set(), set()
        self.changes = self.by_automation = 0


def _fields(kind: str, step: int) -> dict[str, Any]:
    return {"deal": {"TITLE": f"Сделка v{step}", "OPPORTUNITY": step},
            "company": {"TITLE": f"Клиент v{step}"},
            "contact": {"NAME": f"Контакт v{step}"},
            "task": {"TITLE": f"Задача v{step}", "RESPONSIBLE_ID": 1}}[kind]


def add(portal: Portal, churn: Churn, kind: str, step: int, automation: bool = False) -> int:
    """Create an object as a user (or an automation rule)."""
    if kind == "task":
        answer = act(portal, "tasks.task.add", {"fields": _fields(kind, step)},
                     automation=automation)
        rid = int(answer["task"]["id"])
    else:
        rid = int(act(portal, f"crm.{kind}.add", {"fields": _fields(kind, step)},
                      automation=automation))
    churn.live[kind].append(rid)
    churn.added.add((kind, rid))
    return rid


def update(portal: Portal, churn: Churn, kind: str, rid: int, step: int, *,
           automation: bool = False) -> None:
    """Change an object's fields."""
    if kind == "task":
        act(portal, "tasks.task.update", {"taskId": rid, "fields": _fields(kind, step)},
            automation=automation)
    else:
        act(portal, f"crm.{kind}.update", {"id": rid, "fields": _fields(kind, step)},
            automation=automation)
    churn.updated.add((kind, rid))


def delete(portal: Portal, churn: Churn, kind: str, rid: int, automation: bool = False) -> None:
    """Delete an object."""
    if kind == "task":
        act(portal, "tasks.task.delete", {"taskId": rid}, automation=automation)
    else:
        act(portal, f"crm.{kind}.delete", {"id": rid}, automation=automation)
    churn.live[kind].remove(rid)
    churn.deleted.add((kind, rid))


def make_changes(portal: Portal, churn: Churn, count: int, seed: int) -> None:
    """``count`` mixed changes: mostly repeated updates, some adds and deletes, 30 % by
    automation rules (no tokens in their events)."""
    rng = random.Random(seed)
    for step in range(count):
        automation = rng.random() < 0.3
        kind = rng.choice(KINDS)
        roll = rng.random()
        pool = churn.live[kind]
        if roll < 0.12 or not pool:
            add(portal, churn, kind, 1000 + step, automation)
        elif roll < 0.2 and len(pool) > 2:
            delete(portal, churn, kind, rng.choice(pool), automation)
        else:
            update(portal, churn, kind, rng.choice(pool), 1000 + step, automation=automation)
        churn.changes += 1
        churn.by_automation += automation


def seed(service: Service, churn: Churn) -> None:
    """A handful of objects, created while the app is up."""
    for kind in KINDS:
        for i in range(4):
            add(service.portal, churn, kind, i)


# -- reading the outcome ---------------------------------------------------------------------
class Applied:
    """The after-mirror hook: every change the handlers applied (what business rules see)."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, int, str]] = []

    def __call__(self, ctx: HandlerContext, event: ClaimedEvent, change: MirrorChange) -> None:
        self.changes.append((change.entity, change.record_id, change.kind))

    def per_object(self, start: int = 0) -> Counter[tuple[str, int]]:
        """Applied changes per object since the ``start``-th one."""
        return Counter((entity, rid) for entity, rid, _ in self.changes[start:])


def outcomes_since(sessions: sessionmaker[Session], portal_id: int,
                   since: datetime) -> tuple[Counter[str], Counter[str]]:
    """Outcomes and sources of the rows processed since ``since`` (a re-opened row counts
    with its last run only)."""
    outcomes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    with sessions() as session:
        rows = session.execute(select(InboxEvent.outcome, InboxEvent.source)
                               .where(InboxEvent.portal_id == portal_id,
                                      InboxEvent.processed_at >= since)).all()
    for row in rows:
        outcomes[row.outcome or ""] += 1
        sources[row.source] += 1
    return outcomes, sources


def expected_applied(churn: Churn, before: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """One applied outcome per touched object whose final state differs from the mirror."""
    out: dict[tuple[str, int], int] = {}
    for obj in churn.touched():
        if obj in before:
            out[obj] = 1  # deleted, or updated to a new title (every update is unique)
        else:
            out[obj] = 0 if obj in churn.deleted else 1  # created (and maybe gone again)
    return out


def by_kind(objects: set[tuple[str, int]]) -> dict[str, set[int]]:
    """``{kind: ids}``."""
    grouped: dict[str, set[int]] = defaultdict(set)
    for kind, rid in objects:
        grouped[kind].add(rid)
    return dict(grouped)


def assert_mirror_matches(service: Service, objects: set[tuple[str, int]]) -> None:
    """Every object's mirror row equals the portal's record, or is deleted/absent with it."""
    reader = portal_gateway(service.emulator)
    try:
        assert mirror_mismatches(service.ctx.sessions, service.portal_id, reader,
                                 by_kind(objects)) == []
    finally:
        reader.client.close()


def assert_nothing_failed(service: Service) -> None:
    """The inbox drained without a retry or a dead row."""
    with service.ctx.sessions() as session:
        counts = queue.stats(session, service.portal_id)
        errors = session.scalars(select(InboxEvent.last_error)
                                 .where(InboxEvent.last_error.is_not(None))).all()
    assert counts["pending"] == counts["processing"] == counts["dead"] == 0, counts
    assert errors == []


# -- the scenarios ---------------------------------------------------------------------------
@pytest.mark.slow
def test_500_changes_while_the_app_is_down_are_each_processed_once(service: Service) -> None:
    portal, ctx = service.portal, service.ctx
    churn = Churn()
    applied = Applied()
    worker = Worker(ctx, registry=build_registry([applied]))
    # 1. Up: some changes arrive online and are processed; one recovery round settles the
    #    offline queue and the cursors (the full sync).
    seed(service, churn)
    assert portal.events.wait_idle()
    assert drain(worker) == len(churn.added)
    recover_portal(ctx, service.portal_id, "local_app", ctx.clock())
    drain(worker)
    assert_mirror_matches(service, churn.touched())
    mirrored = churn.touched()
    # 2. Down: the server stops; 500 changes; every online delivery fails and is lost.
    service.server.stop()
    churn.reset()
    deliveries = len(portal.events.log)
    make_changes(portal, churn, 500, seed=7)
    assert portal.events.wait_idle(timeout=30)
    lost = portal.events.log[deliveries:]
    assert churn.changes == 500 and churn.by_automation > 100
    assert len(lost) == 500 and all(d.status is None for d in lost)  # no retries either
    assert churn.deleted and churn.added and churn.added & churn.deleted
    # 3. Up again: the worker starts, its scheduler leads and runs the recovery at once.
    restart, mark = utcnow(), len(applied.changes)
    started = time.perf_counter()
    service.server.start()
    stats = service.gateway().client.stats
    requests_before, methods_before = stats.requests, Counter(stats.by_method)
    scheduler = build_scheduler(ctx, worker)
    synced = threading.Event()

    def sync_job() -> None:
        sync_portals(ctx)
        synced.set()

    scheduler.register_job(SYNC_JOB, sync_job, scheduler.interval(minutes=5),
                           run_at_start=True)
    try:
        assert scheduler.start()
        assert synced.wait(60)
        processed = drain(worker)
    finally:
        scheduler.shutdown()
    seconds = time.perf_counter() - started
    requests = stats.requests - requests_before
    methods = Counter(stats.by_method) - methods_before
    # Every touched object holds its final state; deletions are marked.
    assert_mirror_matches(service, churn.touched() | mirrored)
    assert_nothing_failed(service)
    # None twice: one applied outcome per object whose state changed, none for the others.
    per_object = applied.per_object(mark)
    expected = expected_applied(churn, mirrored)
    assert {o: per_object[o] for o in expected} == expected
    assert max(per_object.values()) == 1
    outcomes, sources = outcomes_since(ctx.sessions, service.portal_id, restart)
    assert set(outcomes) <= {*APPLIED, "mirror:unchanged"}
    print(f"\nrecovery of {churn.changes} changes ({len(churn.touched())} objects, "
          f"{len(churn.deleted)} deleted): {processed} inbox rows {dict(sources)}, "
          f"{dict(outcomes)}; {requests} REST requests {dict(methods)}; {seconds:.2f} s")


@pytest.mark.slow
def test_duplicate_and_late_deliveries_are_harmless(service: Service) -> None:
    portal, ctx = service.portal, service.ctx
    churn = Churn()
    applied = Applied()
    worker = Worker(ctx, registry=build_registry([applied]))
    seed(service, churn)
    assert portal.events.wait_idle()
    drain(worker)
    recover_portal(ctx, service.portal_id, "local_app", ctx.clock())
    drain(worker)
    mirrored = churn.touched()
    churn.reset()
    # Every delivery twice; three deal updates held back so that the next update of the
    # same deal overtakes them; then more updates at random.
    portal.faults.add("duplicate_events", "ONCRM*")
    portal.faults.add("duplicate_events", "ONTASK*")
    deliveries = len(portal.events.log)
    steps = iter(range(2000, 3000))
    for deal_id in churn.live["deal"][:3]:
        portal.faults.add("delay_events", "ONCRMDEALUPDATE", count=1, value=1.0)
        for _ in range(2):
            update(portal, churn, "deal", deal_id, next(steps))
            portal.clock.advance(1)  # distinct ts per change, so the order is visible
    rng = random.Random(11)
    for step in range(54):
        kind = rng.choice(KINDS)
        update(portal, churn, kind, rng.choice(churn.live[kind]), next(steps),
               automation=step % 3 == 0)
        portal.clock.advance(1)
    assert portal.events.wait_idle(timeout=30)
    delivered = portal.events.log[deliveries:]
    assert len(delivered) == 120 and all(d.status == 200 for d in delivered)
    keys = [_key(d.body) for d in delivered]
    assert any(later[2] < earlier[2] for i, earlier in enumerate(keys)
               for later in keys[i + 1:] if later[:2] == earlier[:2]), "nothing overtook"
    with ctx.sessions() as session:
        stored = session.scalars(select(InboxEvent.dedup_key).where(
            InboxEvent.status == "pending")).all()
    assert sorted(stored) == sorted({"|".join(map(str, k)) for k in keys})  # twins collapsed
    restart, mark = utcnow(), len(applied.changes)
    drain(worker)
    recover_portal(ctx, service.portal_id, "local_app", ctx.clock())
    drain(worker)
    assert_mirror_matches(service, churn.touched() | mirrored)
    assert_nothing_failed(service)
    assert applied.per_object(mark) == Counter(churn.touched())  # once each, late or twice
    outcomes, _ = outcomes_since(ctx.sessions, service.portal_id, restart)
    assert set(outcomes) <= {*APPLIED, "mirror:unchanged"}


def _key(body: str) -> tuple[str, str, int]:
    """``(event, entity id, ts)`` of a delivered form body."""
    form = {k: v[0] for k, v in parse_qs(body).items()}
    rid = form.get("data[FIELDS][ID]") or form.get("data[FIELDS_AFTER][ID]") or ""
    return form["event"], rid, int(form["ts"])
