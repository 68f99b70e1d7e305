"""The notification outbox: once per tag, only when due, batched per user and kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
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
    assert message.startswith("Нарушен срок ответа — 3 обращения:")
    assert all(f"• Задача #{n}: нет ответа" in message for n in (1, 2, 3))
    assert "подробности" not in message
    with session_factory() as session:
        rows = session.scalars(select(Notification)).all()
        assert all(r.sent_at is not None for r in rows)


def test_a_batch_keeps_every_link_and_never_names_the_target(
        session_factory: sessionmaker[Session]) -> None:
    """Regression: a batch kept only the summaries (no link to any task) and its header said
    «2 рабочих часа» whatever ``[sla] target_minutes`` was."""
    pid = _portal(session_factory)
    gateway = FakeGateway()
    for n in (1, 2):
        _enqueue(session_factory, pid, 5, "sla_breach", f"sla-{n}-breach",
                 f"Задача #{n} — нет ответа 3 рабочих часа\nСрок ответа истёк.\n"
                 f"https://nois.bitrix24.ru/company/personal/user/5/tasks/task/view/{n}/")
    outbox.send_due(session_factory, lambda _: gateway, NOW)
    [(_user, message, _tag)] = gateway.notifications
    assert message.splitlines() == [
        "Нарушен срок ответа — 2 обращения:",
        "• Задача #1 — нет ответа 3 рабочих часа",
        "  https://nois.bitrix24.ru/company/personal/user/5/tasks/task/view/1/",
        "• Задача #2 — нет ответа 3 рабочих часа",
        "  https://nois.bitrix24.ru/company/personal/user/5/tasks/task/view/2/",
    ]


@pytest.mark.parametrize(("n", "words"), [
    (2, "2 обращения"), (5, "5 обращений"), (11, "11 обращений"), (21, "21 обращение"),
    (22, "22 обращения"),
])
def test_batch_header_plurals(n: int, words: str) -> None:
    rows = [Notification(id=i, portal_id=1, user_id=5, kind="sla_warning", tag=f"t{i}",
                         message=f"Задача #{i}") for i in range(n)]
    [item] = outbox.plan(rows)
    assert item.message.splitlines()[0] == f"Скоро истечёт срок ответа — {words}:"


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


def test_a_retry_waits_for_working_hours(session_factory: sessionmaker[Session]) -> None:
    """A send failing at 17:28 in Novosibirsk is retried at 09:00 the next working day."""
    from b24app.calendar_rules import calendar_from_settings
    from b24app.config import CalendarSettings

    calendar = calendar_from_settings(CalendarSettings())
    late = datetime(2026, 11, 17, 10, 28, tzinfo=UTC)  # Tue 17:28 +07
    pid = _portal(session_factory)

    class Failing(FakeGateway):
        def notify(self, user_id: int, message: str, tag: str = "") -> int | None:
            raise BadRequest("INTERNAL", "try later")

    with session_factory.begin() as session:
        outbox.enqueue(session, portal_id=pid, user_id=7, kind="sla_breach", tag="sla-9-breach",
                       message="Задача #9", not_before=late, now=late)
    assert outbox.send_due(session_factory, lambda _: Failing(), late,
                           next_working=calendar.next_working_instant) == 0
    with session_factory() as session:
        row = session.scalars(select(Notification)).one()
        assert row.not_before == datetime(2026, 11, 18, 2, 0, tzinfo=UTC)  # Wed 09:00 +07
