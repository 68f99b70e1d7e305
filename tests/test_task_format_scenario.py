"""End to end against the emulator over HTTP: a badly set task, its remark, the fix.

The portal delivers events to the app server, a worker drains the inbox with the task-format
hook, the outbox sender notifies; everything is read back from the portal over REST. Each
scenario runs on both databases and on both task cards (classic comments and the new card's
task chat).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from b24app import outbox
from b24app.config import Settings
from b24app.db import session_scope
from b24app.gateway.client import BitrixClient
from b24app.models import InboxEvent, InboxStatus, TaskFormatCheck, utcnow
from b24app.worker import Worker
from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.dispatch import act
from b24emu.limits import LimitSettings
from handlers.registry import build_registry
from handlers.task_format import task_format_hook
from kpi.task_format import REGULATION, fixed_text
from tests import appfixtures
from tests.appfixtures import AppServer

DRAIN_ROUNDS = 50


@pytest.fixture(autouse=True)
def _unthrottled_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's client without Bitrix24's rate (2 requests/s once 50 are spent).

    The install alone makes about 45 calls, so with the real rate every call of the
    scenario would wait half a second; the emulator's own limits are off as well.
    """
    original = appfixtures.emulator_settings

    def fast(emulator: EmulatorServer, public_url: str) -> Settings:
        settings = original(emulator, public_url)
        portal = dataclasses.replace(settings.portal, requests_per_second=1000.0)
        return dataclasses.replace(settings, portal=portal)

    monkeypatch.setattr(appfixtures, "emulator_settings", fast)


@pytest.fixture(params=[False, True], ids=["classic-card", "new-card"])
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorServer]:
    """The conftest portal (one admin, limits off), with the classic or the new task card."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False),
                                 new_task_card=request.param))
    portal.users.insert({"NAME": "Алексей", "LAST_NAME": "Админов", "ACTIVE": True,
                         "IS_ADMIN": True, "UF_DEPARTMENT": [1], "USER_TYPE": "employee",
                         "EMAIL": "admin@nois.example"})
    server = EmulatorServer(portal).start()
    try:
        yield server
    finally:
        server.stop()


class Scenario:
    """The installed app, two reps, a worker with the hook and a REST client to read back."""

    def __init__(self, emulator: EmulatorServer, app_server: AppServer) -> None:
        self.emulator, self.portal, self.server = emulator, emulator.portal, app_server
        result = self.portal.install_app(f"{app_server.url}/b24/install")
        assert result.status == 200, result.error
        self.rep = self._user("Ирина", "Петрова")
        self.other = self._user("Олег", "Сидоров")
        self.worker = Worker(app_server.ctx, registry=build_registry(
            after_mirror=[task_format_hook]))
        self.client = BitrixClient(self.portal.webhook_url)

    def _user(self, name: str, last_name: str) -> int:
        return int(self.portal.users.insert({
            "NAME": name, "LAST_NAME": last_name, "ACTIVE": True, "IS_ADMIN": False,
            "UF_DEPARTMENT": [1], "USER_TYPE": "employee"}))

    def act(self, method: str, params: dict[str, Any]) -> Any:
        """A change made by the rep in the portal (it fires events like any user's)."""
        # Events carry whole-second ``ts`` and the inbox takes (event, entity, ts) for a
        # repeated delivery, so two edits of one task within a second would collapse into
        # one event: a rep's edits here are a second apart, as a person's are.
        self.portal.clock.advance(1)
        return act(self.portal, method, params, user_id=self.rep)

    def settle(self) -> None:
        """Deliver, drain and send until nothing moves (our posts fire events of their own)."""
        ctx = self.server.ctx
        for _ in range(DRAIN_ROUNDS):
            assert self.portal.events.wait_idle(10)
            processed = self.worker.run_once()
            sent = outbox.send_due(ctx.sessions, ctx.gateways.for_portal, utcnow())
            if not processed and not sent and not self.portal.events.pending():
                return
        raise AssertionError("the inbox did not settle")

    def comments(self, task_id: int) -> list[dict[str, Any]]:
        """Comments of the task, read over REST: getlist, or the task chat in the new card."""
        if not self.portal.config.new_task_card:
            rows = self.client.call("task.commentitem.getlist", {"0": task_id}).value
            return [{"author": int(r["AUTHOR_ID"]), "text": r["POST_MESSAGE"]}
                    for r in sorted(rows, key=lambda r: int(r["ID"]))]
        task = self.client.call("tasks.task.get", {"taskId": task_id}).value["task"]
        value = self.client.call("im.dialog.messages.get",
                                 {"DIALOG_ID": f"chat{task['chatId']}", "LIMIT": 50}).value
        messages = sorted(value["messages"], key=lambda m: int(m["id"]))
        return [{"author": int(m["author_id"]), "text": m["text"]} for m in messages
                if int(m["author_id"])]

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification the rep received."""
        return list(self.client.call("b24emu.notifications.list", {"user_id": self.rep}).value)

    def redeliver_everything(self) -> None:
        """Put every processed inbox row back in the queue (a lease lost after the work)."""
        with session_scope(self.server.ctx.sessions) as session:
            session.execute(update(InboxEvent).values(
                status=InboxStatus.PENDING.value, next_attempt_at=utcnow(), locked_by=None,
                locked_until=None))

    def inbox(self, event: str) -> list[InboxEvent]:
        """The inbox rows of one event name."""
        with self.server.ctx.sessions() as session:
            return list(session.scalars(select(InboxEvent).where(InboxEvent.event == event)))

    def close(self) -> None:
        """Close the REST client."""
        self.client.close()


@pytest.fixture
def scenario(emulator: EmulatorServer, app_server: AppServer) -> Iterator[Scenario]:
    """An installed app with its worker, on both databases and both task cards."""
    built = Scenario(emulator, app_server)
    try:
        yield built
    finally:
        built.close()


def test_a_badly_set_task_gets_one_remark_and_the_fix_closes_it(scenario: Scenario) -> None:
    s = scenario
    s.portal.faults.add("duplicate_events", "ONTASK*")  # every task event arrives twice
    created = s.act("tasks.task.add", {"fields": {"TITLE": "Срочно",
                                                  "RESPONSIBLE_ID": s.other}})
    task_id = int(created["task"]["id"])
    s.settle()

    (remark,) = s.comments(task_id)
    assert remark["text"].startswith(REGULATION)
    assert "Название «Срочно» не объясняет, что нужно сделать" in remark["text"]
    assert "Не указан крайний срок: установите дату и время выполнения." in remark["text"]
    (note,) = s.notifications()
    link = (f"https://{s.portal.domain}/company/personal/user/{s.other}/tasks/task/view/"
            f"{task_id}/")
    assert link in note["MESSAGE"]
    assert note["MESSAGE"].startswith(f"Задача #{task_id} «Срочно» поставлена не по регламенту")
    assert note["TAG"].startswith(f"task-format-{task_id}-")

    # Ten more edits that leave the violations as they are: still one remark.
    for n in range(10):
        s.act("tasks.task.update", {"taskId": task_id,
                                    "fields": {"DESCRIPTION": f"подробности {n}"}})
    s.settle()
    assert len(s.comments(task_id)) == 1 and len(s.notifications()) == 1
    assert len(s.inbox("ONTASKUPDATE")) == 10
    s.redeliver_everything()  # and every event once more: the stored state decides
    s.settle()
    assert len(s.comments(task_id)) == 1 and len(s.notifications()) == 1

    deadline = (utcnow() + timedelta(days=3)).replace(microsecond=0).isoformat()
    s.act("tasks.task.update", {"taskId": task_id, "fields": {
        "TITLE": "Подготовить КП для ООО Ромашка", "DEADLINE": deadline}})
    s.settle()
    comments = s.comments(task_id)
    assert [c["text"] for c in comments[1:]] == [fixed_text()]
    assert len(s.notifications()) == 1
    s.redeliver_everything()
    s.settle()
    assert len(s.comments(task_id)) == 2 and len(s.notifications()) == 1

    # Our two comments came back as events, were recognised and counted for nothing.
    own = s.inbox("ONTASKCOMMENTADD")
    assert len(own) == 2
    assert {(r.status, r.outcome) for r in own} == {(InboxStatus.IGNORED.value,
                                                    "ignored:own-write")}
    everything = s.inbox("ONTASKADD") + s.inbox("ONTASKUPDATE") + own
    assert {r.status for r in everything} <= {InboxStatus.DONE.value, InboxStatus.IGNORED.value}
    with s.server.ctx.sessions() as session:
        row = session.scalars(select(TaskFormatCheck)).one()
    assert (row.task_id, row.created_by, row.compliant_at_creation, row.violations) == (
        task_id, s.rep, False, [])
    assert row.fixed_at is not None


def test_a_well_set_task_is_never_commented(scenario: Scenario) -> None:
    s = scenario
    deadline = (utcnow() + timedelta(days=1)).replace(microsecond=0).isoformat()
    created = s.act("tasks.task.add", {"fields": {
        "TITLE": "Согласовать спецификацию петель Blum", "RESPONSIBLE_ID": s.other,
        "DEADLINE": deadline}})
    s.settle()
    assert s.comments(int(created["task"]["id"])) == [] and s.notifications() == []


def test_strict_mode_returns_the_task_to_its_creator(scenario: Scenario) -> None:
    s = scenario
    base = s.server.ctx.settings
    strict = dataclasses.replace(base, task_format=dataclasses.replace(
        base.task_format, strict_mode=True))
    s.worker = Worker(dataclasses.replace(s.server.ctx, settings=strict),
                      registry=build_registry(after_mirror=[task_format_hook]))
    created = s.act("tasks.task.add", {"fields": {"TITLE": "Вопрос?", "RESPONSIBLE_ID": s.other}})
    task_id = int(created["task"]["id"])
    s.settle()

    task = s.client.call("tasks.task.get", {"taskId": task_id}).value["task"]
    assert int(task["responsibleId"]) == s.rep
    (remark,) = s.comments(task_id)
    assert "Задача возвращена постановщику" in remark["text"]
    (note,) = s.notifications()
    assert f"/company/personal/user/{s.rep}/tasks/task/view/{task_id}/" in note["MESSAGE"]
    # The reassignment came back as an update of ours: mirrored, and no rule reacted.
    (echo,) = s.inbox("ONTASKUPDATE")
    assert (echo.status, echo.outcome) == (InboxStatus.IGNORED.value, "ignored:own-write")
    with s.server.ctx.sessions() as session:
        row = session.scalars(select(TaskFormatCheck)).one()
    assert row.returned_at is not None and row.violations == [
        "title_short", "title_stop_word", "deadline_missing"]
