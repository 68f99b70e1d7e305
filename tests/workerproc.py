"""Helpers of the worker tests, and a worker/leader process that tests kill.

``python -m tests.workerproc drain URL EFFECTS [--delay S] [--lease S] [--batch N]`` drains
the inbox with a handler that appends each event id to ``EFFECTS`` (the external effect:
at least once) and inserts it into ``test_effects`` (the database effect: exactly once);
it runs until SIGTERM. ``python -m tests.workerproc hold-leader URL NAME`` takes the leader
lock, prints ``acquired`` and waits to be killed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import EventsSettings, Settings
from b24app.context import AppContext, Clock, system_clock
from b24app.crypto import SecretBox, generate_key
from b24app.db import make_engine, make_session_factory, session_scope
from b24app.gateway.protocol import Gateway
from b24app.inbox.queue import ClaimedEvent
from b24app.leader import LeaderLock
from b24app.models import InboxEvent, Portal
from b24app.worker import Worker
from handlers.registry import HandlerContext, Registry
from tests.fakes import FakeGateway

TEST_EVENT = "ONTESTEFFECT"
EFFECTS = Table("test_effects", MetaData(), Column("event_id", Integer, primary_key=True))


class FakeGateways:
    """A ``GatewayProvider`` handing out one fake gateway for every portal."""

    def __init__(self, gateway: FakeGateway | None = None) -> None:
        self.gateway = gateway if gateway is not None else FakeGateway()
        self.forgotten: list[int] = []

    def for_portal(self, portal_id: int) -> Gateway:
        """The fake gateway."""
        return self.gateway

    def forget(self, portal_id: int) -> None:
        """Note the portal whose client was dropped."""
        self.forgotten.append(portal_id)

    def close(self) -> None:
        """Nothing to close."""


def make_context(engine: Engine, *, clock: Clock = system_clock,
                 gateways: FakeGateways | None = None, batch_size: int = 50,
                 max_attempts: int = 8) -> AppContext:
    """An ``AppContext`` on ``engine`` with fake gateways and small inbox settings."""
    events = EventsSettings(batch_size=batch_size, max_attempts=max_attempts,
                            backoff_base_seconds=5.0, backoff_max_seconds=60.0)
    return AppContext(settings=dataclasses.replace(Settings(), events=events), engine=engine,
                      sessions=make_session_factory(engine), secrets=SecretBox(generate_key()),
                      gateways=gateways if gateways is not None else FakeGateways(),
                      clock=clock)


def seed_portal(sessions: sessionmaker[Session], member_id: str = "member-1") -> int:
    """An active portal; returns its id."""
    with session_scope(sessions) as session:
        portal = Portal(member_id=member_id, domain=f"{member_id}.bitrix24.ru")
        session.add(portal)
        session.flush()
        return portal.id


def add_events(sessions: sessionmaker[Session], portal_id: int, count: int, now: datetime, *,
               event: str = TEST_EVENT, first: int = 1) -> list[int]:
    """Insert ``count`` pending rows (entity ids ``first``...) in one statement; their ids."""
    rows = [{"portal_id": portal_id, "event": event, "entity_id": str(n), "ts": 1_700_000_000,
             "dedup_key": f"{event}|{n}|1700000000", "source": "online",
             "data": {"FIELDS": {"ID": str(n)}}, "by_user": True, "status": "pending",
             "attempts": 0, "next_attempt_at": now, "received_at": now}
            for n in range(first, first + count)]
    with session_scope(sessions) as session:
        session.execute(insert(InboxEvent), rows)
        return list(session.scalars(select(InboxEvent.id).where(
            InboxEvent.portal_id == portal_id, InboxEvent.event == event)
            .order_by(InboxEvent.id)))


def status_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Rows per status."""
    with sessions() as session:
        return dict(session.execute(select(InboxEvent.status, func.count())
                                    .group_by(InboxEvent.status)).all())


def _insert_effect(session: Session, event_id: int) -> None:
    # Idempotent: a re-run of the same event (after a crash) adds nothing.
    table: Any = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(table.insert(EFFECTS).values(event_id=event_id).on_conflict_do_nothing())


def effect_registry(seen: Callable[[int], None] | None = None,
                    delay: float = 0.0) -> Registry:
    """A registry whose only handler records the event (``seen``) and its database effect."""

    def handle(ctx: HandlerContext, event: ClaimedEvent) -> str:
        if delay:
            time.sleep(delay)  # the deliberately slow handler of the SIGKILL test
        if seen is not None:
            seen(event.id)
        _insert_effect(ctx.session, event.id)
        return "test:effect"

    return Registry({TEST_EVENT: handle})


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0,
             poll: float = 0.02) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass (waiting on another process)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(poll)
    return predicate()


def _append_line(path: Path) -> Callable[[int], None]:
    def seen(event_id: int) -> None:
        # One write() per line: a SIGKILL cannot tear it, the kernel already has it.
        with path.open("a", encoding="ascii") as handle:
            handle.write(f"{event_id}\n")

    return seen


def _drain(args: argparse.Namespace) -> int:
    engine = make_engine(args.url)
    ctx = make_context(engine, batch_size=args.batch)
    worker = Worker(ctx, registry=effect_registry(_append_line(Path(args.effects)), args.delay),
                    lease=timedelta(seconds=args.lease))
    stop = threading.Event()
    guard = threading.Timer(args.max_seconds, stop.set)  # never outlive a failed test
    guard.daemon = True
    guard.start()
    print("draining", flush=True)
    worker.run_forever(stop, idle_sleep=0.05)
    guard.cancel()
    ctx.close()
    return 0


def _hold_leader(args: argparse.Namespace) -> int:
    lock = LeaderLock(args.url, args.name)
    if not lock.try_acquire():
        print("busy", flush=True)
        return 1
    print("acquired", flush=True)
    sys.stdin.read()  # until the test kills us (or closes our stdin)
    lock.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``drain`` or ``hold-leader``."""
    parser = argparse.ArgumentParser(prog="tests.workerproc")
    commands = parser.add_subparsers(dest="command", required=True)
    drain = commands.add_parser("drain")
    drain.add_argument("url")
    drain.add_argument("effects")
    drain.add_argument("--delay", type=float, default=0.05)
    drain.add_argument("--lease", type=float, default=60.0)
    drain.add_argument("--batch", type=int, default=10)
    drain.add_argument("--max-seconds", type=float, default=60.0)
    hold = commands.add_parser("hold-leader")
    hold.add_argument("url")
    hold.add_argument("name")
    args = parser.parse_args(argv)
    return _drain(args) if args.command == "drain" else _hold_leader(args)


if __name__ == "__main__":
    sys.exit(main())

