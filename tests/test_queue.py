"""The inbox queue: claim, lease expiry, complete, fail with backoff, dead letters, stats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from b24app.db import session_scope
from b24app.inbox import queue
from b24app.inbox.queue import Backoff, ClaimedEvent
from b24app.models import InboxEvent, InboxStatus, Portal, PortalStatus
from tests.fakes import FakeClock
from tests.workerproc import add_events, seed_portal

LEASE = timedelta(seconds=30)
NO_JITTER = Backoff(5.0, 60.0, 3, rng=lambda: 0.0)


def _row(sessions: sessionmaker[Session], row_id: int) -> InboxEvent:
    with sessions() as session:
        row = session.get(InboxEvent, row_id)
        assert row is not None
        return row


def _claim(sessions: sessionmaker[Session], clock: FakeClock, worker: str = "w1",
           limit: int = 10, **kw: int) -> list[ClaimedEvent]:
    return queue.claim(sessions, worker, clock(), limit, LEASE, **kw)


@pytest.mark.parametrize(("attempts", "seconds"), [
    (1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (9, 60), (500, 60),
])
def test_backoff_doubles_up_to_the_cap(attempts: int, seconds: float) -> None:
    assert Backoff(5.0, 60.0, rng=lambda: 0.0).delay(attempts) == timedelta(seconds=seconds)
    # The RNG adds up to 10 % so rows failed together spread out.
    assert Backoff(5.0, 60.0, rng=lambda: 1.0).delay(attempts) == timedelta(
        seconds=seconds * 1.1)


def test_claim_takes_due_rows_oldest_first_and_leases_them(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    portal = seed_portal(session_factory)
    ids = add_events(session_factory, portal, 5, clock())
    with session_scope(session_factory) as session:  # one row is not due yet
        session.execute(update(InboxEvent).where(InboxEvent.id == ids[0])
                        .values(next_attempt_at=clock() + timedelta(seconds=1)))
    claimed = _claim(session_factory, clock, limit=3)
    assert [c.id for c in claimed] == ids[1:4]
    first = claimed[0]
    assert (first.portal_id, first.event, first.entity_id, first.attempts, first.worker_id) == (
        portal, "ONTESTEFFECT", "2", 1, "w1")
    assert first.data == {"FIELDS": {"ID": "2"}} and first.by_user and first.source == "online"
    row = _row(session_factory, first.id)
    assert (row.status, row.locked_by, row.locked_until, row.attempts) == (
        "processing", "w1", clock() + LEASE, 1)
    # Claimed rows are not claimed again while leased; the rest is.
    assert [c.id for c in _claim(session_factory, clock, "w2")] == [ids[4]]
    clock.advance(seconds=1)
    assert [c.id for c in _claim(session_factory, clock, "w2")] == [ids[0]]


def test_claim_skips_portals_that_wait_for_reinstall(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    waiting, active = seed_portal(session_factory, "m-a"), seed_portal(session_factory, "m-b")
    add_events(session_factory, waiting, 2, clock())
    kept = add_events(session_factory, active, 1, clock())
    with session_scope(session_factory) as session:
        session.execute(update(Portal).where(Portal.id == waiting)
                        .values(status=PortalStatus.NEEDS_REINSTALL.value))
    assert [c.id for c in _claim(session_factory, clock)] == kept


def test_complete_marks_done_once_and_only_for_the_lease_holder(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    portal = seed_portal(session_factory)
    add_events(session_factory, portal, 1, clock())
    (event,) = _claim(session_factory, clock)
    with session_scope(session_factory) as session:
        assert queue.complete(session, event, "mirror:updated", clock())
    row = _row(session_factory, event.id)
    assert (row.status, row.outcome, row.processed_at, row.locked_by) == (
        "done", "mirror:updated", clock(), None)
    with session_scope(session_factory) as session:  # a second finish is refused
        assert not queue.complete(session, event, "mirror:updated", clock())
        assert not queue.fail(session, event, "boom", clock(), NO_JITTER)


def test_an_expired_lease_is_reclaimed_and_the_old_holder_refused(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    portal = seed_portal(session_factory)
    add_events(session_factory, portal, 1, clock())
    (stale,) = _claim(session_factory, clock, "killed")
    clock.advance(seconds=30)  # locked_until == now: still leased
    assert _claim(session_factory, clock, "w2") == []
    clock.advance(seconds=1)
    (fresh,) = _claim(session_factory, clock, "w2")
    assert (fresh.id, fresh.attempts, fresh.worker_id) == (stale.id, 2, "w2")
    with session_scope(session_factory) as session:
        assert not queue.complete(session, stale, "late", clock())
        assert queue.fail(session, stale, "late", clock(), NO_JITTER) is None
        assert not queue.release(session, stale, clock())
    assert _row(session_factory, stale.id).locked_by == "w2"
    with session_scope(session_factory) as session:
        assert queue.complete(session, fresh, "mirror:created", clock())
    assert _row(session_factory, stale.id).status == "done"


def test_a_worker_that_reclaims_its_own_row_fences_its_older_claim(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    add_events(session_factory, seed_portal(session_factory), 1, clock())
    (old,) = _claim(session_factory, clock)
    clock.advance(minutes=1)
    (new,) = _claim(session_factory, clock)
    with session_scope(session_factory) as session:
        assert not queue.complete(session, old, "stale", clock())
        assert queue.complete(session, new, "fresh", clock())


def test_failures_back_off_then_go_dead_and_admin_retries(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    add_events(session_factory, seed_portal(session_factory), 1, clock())
    expected = [(1, InboxStatus.PENDING, 5), (2, InboxStatus.PENDING, 10),
                (3, InboxStatus.DEAD, None)]
    for attempts, status, delay in expected:
        (event,) = _claim(session_factory, clock)
        assert event.attempts == attempts
        with session_scope(session_factory) as session:
            assert queue.fail(session, event, f"boom {attempts}", clock(), NO_JITTER) == status
        row = _row(session_factory, event.id)
        assert (row.status, row.last_error, row.locked_by) == (status, f"boom {attempts}", None)
        if delay is not None:
            assert row.next_attempt_at == clock() + timedelta(seconds=delay)
            clock.advance(seconds=delay - 1)
            assert _claim(session_factory, clock) == []  # not due yet
            clock.advance(seconds=1)
    assert _claim(session_factory, clock) == []
    with session_scope(session_factory) as session:
        assert queue.stats(session)["dead"] == 1
        assert queue.retry_dead(session, clock()) == 1
    (event,) = _claim(session_factory, clock)
    assert event.attempts == 1
    assert _row(session_factory, event.id).last_error == "boom 3"  # why it died stays visible


def test_a_lease_that_expires_on_the_last_attempt_goes_dead(
        session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    add_events(session_factory, seed_portal(session_factory), 1, clock())
    for _ in range(2):  # a row whose processing kills its worker, twice
        assert len(_claim(session_factory, clock, max_attempts=2)) == 1
        clock.advance(minutes=1)
    assert _claim(session_factory, clock, max_attempts=2) == []
    with session_factory() as session:
        row = session.scalars(select(InboxEvent)).one()
        assert (row.status, row.attempts) == ("dead", 2)
        assert row.last_error == "lease expired on the last attempt"


def test_fail_respects_not_before(session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    add_events(session_factory, seed_portal(session_factory), 1, clock())
    (event,) = _claim(session_factory, clock)
    reset = clock() + timedelta(minutes=10)
    with session_scope(session_factory) as session:
        queue.fail(session, event, "blocked", clock(), NO_JITTER, not_before=reset)
    assert _row(session_factory, event.id).next_attempt_at == reset


def test_ignore_and_release(session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    add_events(session_factory, seed_portal(session_factory), 2, clock())
    first, second = _claim(session_factory, clock)
    with session_scope(session_factory) as session:
        assert queue.ignore(session, first, "ignored:own-write", clock())
        assert queue.release(session, second, clock())
    assert _row(session_factory, first.id).status == "ignored"
    row = _row(session_factory, second.id)
    assert (row.status, row.attempts, row.locked_by) == ("pending", 0, None)


def test_last_error_is_truncated_and_has_no_secrets() -> None:
    error = ("Transport: GET https://x.bitrix24.ru/rest/1/s3cr3tw3bh00k/crm.deal.get?"
             "auth=abc123&access_token=tok&id=5 "
             '{"refresh_token": "rt-value", "x": 1} Bearer bbb '
             "postgresql://app:pa55@db/x")
    cleaned = queue.clean_error(error)
    for secret in ("s3cr3tw3bh00k", "abc123", "tok&", "rt-value", "bbb", "pa55"):
        assert secret not in cleaned
    assert "crm.deal.get" in cleaned and "id=5" in cleaned
    assert len(queue.clean_error("x" * 5000)) == queue.ERROR_LIMIT


def test_stats_and_lag(session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    one, two = seed_portal(session_factory, "m1"), seed_portal(session_factory, "m2")
    start = clock()
    add_events(session_factory, one, 3, start)
    clock.advance(minutes=2)
    add_events(session_factory, two, 1, clock())
    clock.advance(minutes=1)
    claimed = _claim(session_factory, clock, limit=1)
    with session_scope(session_factory) as session:
        queue.complete(session, claimed[0], "mirror:created", clock())
    with session_factory() as session:
        assert queue.stats(session) == {"pending": 3, "processing": 0, "done": 1, "dead": 0,
                                        "ignored": 0}
        assert queue.stats(session, portal_id=two)["pending"] == 1
        assert queue.lag(session, clock()) == timedelta(minutes=3)
        assert queue.lag(session, clock(), portal_id=two) == timedelta(minutes=1)
        assert queue.lag(session, clock(), portal_id=999) is None


def test_the_dedup_key_collapses_a_redelivery(session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    portal = seed_portal(session_factory)
    add_events(session_factory, portal, 1, clock())
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(InboxEvent(portal_id=portal, event="ONTESTEFFECT", entity_id="1",
                               ts=1_700_000_000, dedup_key="ONTESTEFFECT|1|1700000000",
                               data={}))
    with session_factory() as session:
        assert len(session.scalars(select(InboxEvent)).all()) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_claim_skips_rows_locked_by_another_claim(
        engine: Engine, session_factory: sessionmaker[Session]) -> None:
    clock = FakeClock()
    ids = add_events(session_factory, seed_portal(session_factory), 3, clock())
    with engine.connect() as other:  # another worker in the middle of its claim
        other.execute(text("SELECT id FROM inbox_events WHERE id = :id FOR UPDATE"),
                      {"id": ids[0]})
        assert [c.id for c in _claim(session_factory, clock)] == ids[1:]
        other.rollback()
    assert [c.id for c in _claim(session_factory, clock)] == ids[:1]
