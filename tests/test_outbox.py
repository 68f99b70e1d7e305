"""The notification outbox: once per tag, only when due, batched per user and kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from b24app import outbox
from b24app.gateway.errors import BadRequest
from b24app.models import Notification, Portal
from tests.fakes import FakeGateway

NOW = datetime(2026, 11, 16, 3, 0, tzinfo=UTC)


def _portal(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        portal = Portal(member_id="m1", domain="nois.bitrix24.ru", client_endpoint="")
        session.add(portal)
        session.flush()
        return portal.id


def _enqueue(sessions: sessionmaker[Session], portal_id: int, user: int, kind: str, tag: str,  # noqa: PLR0917
             message: str, not_before: datetime = NOW) -> bool:
    with sessions.begin() as session:
        return outbox.enqueue(session, portal_id=portal_id, user_id=user, kind=kind, tag=tag,
                              message=message, not_before=not_before, now=NOW)


def test_same_tag_is_queued_once(session_factory: sessionmaker[Session]) -> None:
    """A second notification with one tag for one user is refused (once per clock and stage)."""
    pid = _portal(session_factory)
    assert _enqueue(session_factory, pid, 7, "sla_warning", "sla-1-warn", "Задача #1")
    assert not _enqueue(session_factory, pid, 7, "sla_warning", "sla-1-warn", "Задача #1")
    assert _enqueue(session_factory, pid, 8, "sla_warning", "sla-1-warn", "Задача #1")


def test_only_due_rows_go_out_and_only_once(session_factory: sessionmaker[Session]) -> None:
    """A row waiting for working hours stays queued; a sent row is never sent again."""
    pid = _portal(session_factory)
    gateway = FakeGateway()
    _enqueue(session_factory, pid, 7, "task_format", "fmt-1", "Исправьте задачу #1")
    _enqueue(session_factory, pid, 7, "sla_breach", "sla-2-breach", "Задача #2",
             not_before=NOW + timedelta(hours=14))
    assert outbox.send_due(session_factory, lambda _: gateway, NOW) == 1
    assert gateway.notifications == [(7, "Исправьте задачу #1", "fmt-1")]
    assert outbox.send_due(session_factory, lambda _: gateway, NOW) == 0
    assert outbox.send_due(session_factory, lambda _: gateway, NOW + timedelta(hours=14)) == 1
    assert gateway.notifications[-1] == (7, "Задача #2", "sla-2-breach")


def test_several_breaches_for_one_user_become_one_message(
        session_factory: sessionmaker[Session]) -> None:
    """Three breaches due at once for the РОП: one message listing all three lines."""
    pid = _portal(session_factory)
    gateway = FakeGateway()
    for n in (1, 2, 3):
        _enqueue(session_factory, pid, 5, "sla_breach", f"sla-{n}-breach",
                 f"Задача #{n}: нет ответа\nподробности")
    _enqueue(session_factory, pid, 9, "sla_breach", "sla-4-breach", "Задача #4: нет ответа")
    assert outbox.send_due(session_factory, lambda _: gateway, NOW) == 2
    to_head = [n for n in gateway.notifications if n[0] == 5]
    assert len(to_head) == 1
    message = to_head[0][1]
    assert message.startswith("Нарушен срок ответа (2 рабочих часа) — 3:")
    assert all(f"• Задача #{n}: нет ответа" in message for n in (1, 2, 3))
    assert "подробности" not in message
    with session_factory() as session:
        rows = session.scalars(select(Notification)).all()
        assert all(r.sent_at is not None for r in rows)


def test_a_bitrix24_error_keeps_the_row_for_a_retry(
        session_factory: sessionmaker[Session]) -> None:
    """A failed send is retried later; nothing is lost."""
    pid = _portal(session_factory)

    class Failing(FakeGateway):
        def notify(self, user_id: int, message: str, tag: str = "") -> int | None:
            raise BadRequest("USER_ID_EMPTY", "Recipient is not specified")

    _enqueue(session_factory, pid, 7, "task_format", "fmt-1", "Исправьте задачу")
    assert outbox.send_due(session_factory, lambda _: Failing(), NOW) == 0
    with session_factory() as session:
        row = session.scalars(select(Notification)).one()
        assert (row.sent_at, row.attempts) == (None, 1)
        assert row.last_error is not None and "USER_ID_EMPTY" in row.last_error
    gateway = FakeGateway()
    assert outbox.send_due(session_factory, lambda _: gateway, NOW + timedelta(minutes=6)) == 1
