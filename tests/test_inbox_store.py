"""Storing events: duplicates collapse while waiting; a finished key re-opens (same second)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from b24app.events.parse import IncomingEvent
from b24app.inbox.store import store_event
from b24app.models import InboxEvent, InboxStatus, Portal

NOW = datetime(2026, 11, 16, 3, 0, tzinfo=UTC)


def _event(ts: int = 1766047124) -> IncomingEvent:
    return IncomingEvent(name="ONTASKUPDATE", member_id="m1", application_token="t", ts=ts,
                         entity_id="42", data={"FIELDS_AFTER": {"ID": "42"}}, auth={},
                         by_user=True)


def _store(sessions: sessionmaker[Session], portal_id: int, event: IncomingEvent) -> bool:
    with sessions.begin() as session:
        return store_event(session, portal_id, event, now=NOW)


def test_duplicates_collapse_and_finished_keys_reopen(
        session_factory: sessionmaker[Session]) -> None:
    """Pending: a repeat is a duplicate. Done: the same key is pending again, one row only."""
    with session_factory.begin() as session:
        portal = Portal(member_id="m1", domain="nois.bitrix24.ru")
        session.add(portal)
        session.flush()
        portal_id = portal.id
    assert _store(session_factory, portal_id, _event()) is True
    assert _store(session_factory, portal_id, _event()) is False  # still waiting: a duplicate
    with session_factory.begin() as session:
        row = session.scalars(select(InboxEvent)).one()
        row.status, row.attempts, row.outcome = InboxStatus.DONE.value, 1, "mirror:updated"
    # A second edit within the same second carries the same key: it must not be dropped.
    assert _store(session_factory, portal_id, _event()) is True
    with session_factory() as session:
        rows = session.scalars(select(InboxEvent)).all()
        assert len(rows) == 1
        assert (rows[0].status, rows[0].attempts, rows[0].outcome) == ("pending", 0, None)
    assert _store(session_factory, portal_id, _event(ts=1766047125)) is True
