"""The task-format hook through the real registry, a fake gateway and both databases."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Settings
from b24app.db import session_scope
from b24app.gateway.types import Task
from b24app.inbox.queue import ClaimedEvent
from b24app.models import MirrorUser, Notification, OwnWrite, TaskFormatCheck
from handlers.registry import HandlerContext, build_registry
from handlers.task_format import (
    CreatorCompliance,
    codes_tag,
    compliance,
    enforce,
    format_rules,
    task_format_hook,
    task_link,
)
from kpi.task_format import CLOSING, REGULATION, fixed_text
from tests.fakes import FakeGateway
from tests.workerproc import seed_portal

CREATOR, RESPONSIBLE = 3, 5
WIRE: dict[str, Any] = {
    "id": "11", "title": "Срочно", "description": "", "status": "2",
    "createdBy": str(CREATOR), "responsibleId": str(RESPONSIBLE),
    "createdDate": "2026-11-16T09:00:00+07:00", "changedDate": "2026-11-16T09:00:00+07:00",
    "deadline": None, "groupId": "0",
}
GOOD = {"title": "Подготовить КП для ООО Ромашка", "deadline": "2026-11-18T17:00:00+07:00"}


def task(**changes: Any) -> Task:
    """The test task (a bad one by default) with wire fields changed."""
    return Task.from_wire({**WIRE, **changes})


def strict() -> Settings:
    """Settings with strict mode on."""
    base = Settings()
    return dataclasses.replace(
        base, task_format=dataclasses.replace(base.task_format, strict_mode=True))


class Harness:
    """Runs task events through the registry with the hook, against one portal."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.portal = seed_portal(sessions)
        self.gateway = FakeGateway()
        self.clock = self.gateway.clock
        self.settings = Settings()
        self._ts = 0

    def handle(self, name: str, entity_id: str | int = 11) -> str:
        """Dispatch one event in its own transaction; the outcome."""
        registry = build_registry([task_format_hook])
        self._ts += 1
        event = ClaimedEvent(self._ts, self.portal, name, str(entity_id), {}, True, 1, "online",
                             0, "w")
        with session_scope(self.sessions) as session:
            ctx = HandlerContext(session, self.gateway, self.portal, self.clock, self.settings,
                                 registry.after_mirror)
            return registry.dispatch(ctx, event)

    def put(self, **changes: Any) -> Task:
        """Store the task as the portal now has it."""
        record = task(**changes)
        self.gateway.put("task", record)
        return record

    def comments(self, task_id: int = 11) -> list[str]:
        """Texts the service posted into the task."""
        return [c.message for c in self.gateway.comments.get(task_id, [])]

    def row(self, task_id: int = 11) -> TaskFormatCheck:
        """The stored verdict."""
        with self.sessions() as session:
            found = session.get(TaskFormatCheck, {"portal_id": self.portal, "task_id": task_id})
            assert found is not None
            return found

    def notifications(self) -> list[Notification]:
        """Queued notifications, oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(Notification).order_by(Notification.id)))


@pytest.fixture
def h(session_factory: sessionmaker[Session]) -> Harness:
    """A harness on the test database (both backends)."""
    return Harness(session_factory)


def test_a_bad_task_gets_one_comment_and_one_notification(h: Harness) -> None:
    h.put()
    assert h.handle("ONTASKADD") == "mirror:created"
    (text,) = h.comments()
    assert text.startswith(REGULATION) and text.endswith(CLOSING)
    assert "Название «Срочно» не объясняет, что нужно сделать" in text
    assert "Не указан крайний срок" in text
    assert "слишком короткое" not in text  # the stop-word line says it all
    (note,) = h.notifications()
    codes = ["title_short", "title_stop_word", "deadline_missing"]
    link = task_link("member-1.bitrix24.ru", RESPONSIBLE, 11)
    assert link == "https://member-1.bitrix24.ru/company/personal/user/5/tasks/task/view/11/"
    assert (note.user_id, note.kind, note.tag, note.task_id) == (
        CREATOR, "task_format", codes_tag(11, codes, h.gateway.comments[11][0].id), 11)
    assert note.tag.startswith("task-format-11-")
    assert note.message.startswith("Задача #11 «Срочно» поставлена не по регламенту: ")
    assert link in note.message
    assert (note.not_before, note.sent_at) == (h.clock(), None)
    row = h.row()
    assert (row.created_by, row.compliant_at_creation, row.violations, row.commented_codes) == (
        CREATOR, False, codes, codes)
    assert row.comment_id == h.gateway.comments[11][0].id
    assert (row.opened_at, row.fixed_at, row.returned_at) == (h.clock(), None, None)
    assert row.task_created_at == datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
    assert h.gateway.updates == []  # strict mode is off


def test_repeats_and_unrelated_updates_change_nothing(h: Harness) -> None:
    h.put()
    h.handle("ONTASKADD")
    assert h.handle("ONTASKADD") == "mirror:unchanged"  # the same event delivered again
    for n in range(10):  # ten real edits that leave the violations as they are
        h.clock.advance(minutes=1)
        h.put(description=f"правка {n}", changedDate=f"2026-11-16T09:{n + 1:02d}:00+07:00")
        assert h.handle("ONTASKUPDATE") == "mirror:updated"
    assert len(h.comments()) == 1 and len(h.notifications()) == 1
    checked = h.row().checked_at
    # Running the hook itself again for a state it has seen does nothing either.
    with session_scope(h.sessions) as session:
        actions = enforce(session, h.gateway, h.portal, task(), format_rules(h.settings),
                          now=h.clock() + timedelta(hours=1))
    assert (actions.comment, actions.confirm) == ((), False)
    assert len(h.comments()) == 1 and h.row().checked_at == checked


def test_the_fix_closes_the_violation_once(h: Harness) -> None:
    h.put()
    h.handle("ONTASKADD")
    h.clock.advance(minutes=30)
    h.put(**GOOD)
    assert h.handle("ONTASKUPDATE") == "mirror:updated"
    assert h.comments()[1:] == [fixed_text()]
    row = h.row()
    assert (row.violations, row.commented_codes, row.fixed_at) == ([], [], h.clock())
    assert row.compliant_at_creation is False  # the KPI counts the task as it was set
    h.put(**GOOD, description="уточнение")
    h.handle("ONTASKUPDATE")
    assert len(h.comments()) == 2 and len(h.notifications()) == 1


def test_a_new_violation_after_the_fix_is_commented_again(h: Harness) -> None:
    h.put()
    h.handle("ONTASKADD")
    h.put(**GOOD)
    h.handle("ONTASKUPDATE")
    h.clock.advance(hours=1)
    h.put(**{**GOOD, "deadline": None})
    h.handle("ONTASKUPDATE")
    assert len(h.comments()) == 3
    third = h.comments()[2]
    assert "Не указан крайний срок" in third and "Название" not in third
    first, second = h.notifications()
    third_id = h.gateway.comments[11][2].id
    assert second.tag == codes_tag(11, ["deadline_missing"], third_id) != first.tag
    row = h.row()
    assert (row.violations, row.opened_at, row.fixed_at) == (["deadline_missing"], h.clock(),
                                                             None)


def test_the_same_violation_broken_again_after_its_fix_notifies_again(h: Harness) -> None:
    """Regression: the tag was the task and its codes only, so the outbox refused the
    second notification of a remark posted again after a fix (comment without notice)."""
    h.put()
    h.handle("ONTASKADD")
    h.put(**GOOD)
    h.handle("ONTASKUPDATE")
    h.clock.advance(hours=1)
    h.put()  # «Срочно» without a deadline again
    h.handle("ONTASKUPDATE")
    assert len(h.comments()) == 3 and h.comments()[2].startswith(REGULATION)
    first, second = h.notifications()
    assert first.tag != second.tag
    assert second.message.startswith("Задача #11 «Срочно» поставлена не по регламенту")
    # The remark seen again (a duplicate event) still notifies once.
    h.handle("ONTASKUPDATE")
    assert len(h.notifications()) == 2 and len(h.comments()) == 3


def test_a_partial_fix_is_silent(h: Harness) -> None:
    h.put()
    h.handle("ONTASKADD")
    h.put(deadline=GOOD["deadline"])
    h.handle("ONTASKUPDATE")
    assert len(h.comments()) == 1
    assert h.row().violations == ["title_short", "title_stop_word"]


def test_our_own_comment_events_are_ignored(h: Harness) -> None:
    h.put()
    h.handle("ONTASKADD")
    (comment,) = h.gateway.comments[11]
    assert h.handle("ONTASKCOMMENTADD", f"11:{comment.id}") == "ignored:own-write"
    # The new task card names the same post by its chat message ID.
    assert h.handle("ONTASKCOMMENTADD", f"11:m{comment.id}") == "ignored:own-write"
    # A user's comment on an unchanged task is not a task change.
    assert h.handle("ONTASKCOMMENTADD", "11:5") == "task:refreshed"
    assert len(h.comments()) == 1 and len(h.notifications()) == 1


def test_a_comment_event_that_sees_the_fix_first_closes_it(h: Harness) -> None:
    """The fix reaches the mirror through a comment event; the ONTASKUPDATE finds nothing."""
    h.put()
    h.handle("ONTASKADD")
    h.put(**GOOD)
    assert h.handle("ONTASKCOMMENTADD", "11:5") == "task:refreshed"
    assert h.handle("ONTASKUPDATE") == "mirror:unchanged"
    assert h.comments()[1:] == [fixed_text()]


def test_a_good_task_is_left_alone(h: Harness) -> None:
    h.put(**GOOD)
    h.handle("ONTASKADD")
    assert h.comments() == [] and h.notifications() == []
    row = h.row()
    assert (row.compliant_at_creation, row.violations, row.opened_at) == (True, [], None)


def test_a_task_first_seen_by_an_update_gets_its_creation_verdict(h: Harness) -> None:
    """ONTASKADD was lost: the update gives the verdict, the past deadline included."""
    h.clock.advance(days=3)
    h.put(title=GOOD["title"], deadline="2026-11-15T17:00:00+07:00")
    h.handle("ONTASKUPDATE")
    (text,) = h.comments()
    assert "Срок 15.11.2026 17:00 уже прошёл в момент постановки задачи" in text
    row = h.row()
    assert (row.compliant_at_creation, row.violations) == (False, ["deadline_past"])
    # Moving the deadline after the creation instant fixes it.
    h.put(title=GOOD["title"], deadline="2026-11-17T17:00:00+07:00")
    h.handle("ONTASKUPDATE")
    assert h.comments()[1:] == [fixed_text()]


def test_deleted_and_closed_tasks(h: Harness) -> None:
    h.put(status="5")
    h.handle("ONTASKADD")
    assert h.comments() == [] and h.notifications() == []
    assert h.row().compliant_at_creation is False  # still counted
    h.handle("ONTASKDELETE")
    assert h.comments() == []


def test_strict_mode_returns_the_task_and_records_the_write(h: Harness) -> None:
    h.settings = strict()
    h.put()
    h.handle("ONTASKADD")
    assert h.gateway.updates == [("task", 11, {"RESPONSIBLE_ID": CREATOR})]
    (text,) = h.comments()
    assert "Задача возвращена постановщику" in text
    (note,) = h.notifications()
    assert task_link("member-1.bitrix24.ru", CREATOR, 11) in note.message
    assert "Задача возвращена вам как постановщику." in note.message
    assert h.row().returned_at == h.clock()
    with h.sessions() as session:
        marks = session.scalars(select(OwnWrite.entity_id).where(OwnWrite.entity == "task"))
        assert list(marks) == ["11"]
    # The echo of our write: the mirror follows, no rule reacts, nothing is returned twice.
    assert h.handle("ONTASKUPDATE") == "ignored:own-write"
    h.put(responsibleId=str(CREATOR), description="правка")
    h.handle("ONTASKUPDATE")
    assert len(h.gateway.updates) == 1 and len(h.comments()) == 1


def test_strict_mode_never_returns_a_self_assigned_task(h: Harness) -> None:
    h.settings = strict()
    h.put(responsibleId=str(CREATOR))
    h.handle("ONTASKADD")
    assert h.gateway.updates == []
    assert "возвращена" not in h.comments()[0]
    assert h.row().returned_at is None


def test_compliance_per_creator_and_department(h: Harness) -> None:
    with session_scope(h.sessions) as session:
        session.add_all([MirrorUser(portal_id=h.portal, id=3, departments=[7, 9]),
                         MirrorUser(portal_id=h.portal, id=4, departments=[])])
    rows = [  # (task, creator, good?, created)
        (21, 3, True, "2026-11-02T10:00:00+07:00"), (22, 3, False, "2026-11-03T10:00:00+07:00"),
        (23, 3, True, "2026-11-04T10:00:00+07:00"), (24, 4, True, "2026-11-05T10:00:00+07:00"),
        (25, 6, False, "2026-11-06T10:00:00+07:00"),
        (26, 3, False, "2026-10-31T10:00:00+07:00"),  # the month before
    ]
    for task_id, creator, good, created in rows:
        h.put(id=str(task_id), createdBy=str(creator), createdDate=created,
              **(GOOD if good else {}))
        h.handle("ONTASKADD", task_id)
    h.put(id="22", createdBy="3", createdDate=rows[1][3], **GOOD)  # a fix later: still counts
    h.handle("ONTASKUPDATE", 22)
    since, until = datetime(2026, 10, 31, 17, tzinfo=UTC), datetime(2026, 11, 30, 17, tzinfo=UTC)
    with h.sessions() as session:
        found = compliance(session, h.portal, since, until)
    assert found == [CreatorCompliance(3, 7, 3, 2), CreatorCompliance(4, None, 1, 1),
                     CreatorCompliance(6, None, 1, 0)]
    assert round(found[0].share, 1) == 66.7
    with h.sessions() as session:
        assert compliance(session, h.portal, until, until + timedelta(days=30)) == []
