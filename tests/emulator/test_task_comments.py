"""Contract tests of task comments: positional ``task.commentitem.*`` and the new card's chat."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.limits import LimitSettings
from tests.emulator.helpers import TIMEOUT, Receiver, add_user, hook

NOW = datetime(2025, 10, 21, 9, 0, tzinfo=UTC)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def ok(server: EmulatorServer, method: str, params: dict[str, Any] | None = None,
       *, url: str | None = None) -> Any:
    """Call with a JSON body and return ``result`` (asserting HTTP 200)."""
    resp = hook(server, method, params, url=url)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def form(server: EmulatorServer, method: str, body: str) -> requests.Response:
    """POST a form body exactly as written (``0=5&1[POST_MESSAGE]=...``)."""
    return requests.post(server.portal.webhook_url + method, data=body.encode(), headers=FORM,
                         timeout=TIMEOUT)


def user_hook(portal: Portal, user_id: int) -> str:
    """An incoming-webhook base URL acting as ``user_id``."""
    hook_ = portal.auth.add_webhook(user_id, f"secret{user_id}")
    return f"{portal.base_url}/rest/{hook_.user_id}/{hook_.secret}/"


def new_task(server: EmulatorServer, **fields: Any) -> int:
    """A task for the admin; its ID."""
    task = ok(server, "tasks.task.add",
              {"fields": {"TITLE": "Задача", "RESPONSIBLE_ID": 1, **fields}})["task"]
    return int(task["id"])


@pytest.fixture
def server(emulator: EmulatorServer) -> EmulatorServer:
    """The classic task card, clock frozen."""
    emulator.portal.clock.set(NOW, frozen=True)
    return emulator


@pytest.fixture
def new_card() -> Iterator[EmulatorServer]:
    """A portal with the new task card (comments in the task chat)."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False), new_task_card=True))
    portal.users.insert({"NAME": "Алексей", "LAST_NAME": "Админов", "ACTIVE": True,
                         "IS_ADMIN": True, "UF_DEPARTMENT": [1], "EMAIL": "admin@nois.example"})
    portal.clock.set(NOW, frozen=True)
    server = EmulatorServer(portal).start()
    try:
        yield server
    finally:
        server.stop()


# -- classic card -------------------------------------------------------------------------
def test_positional_add_and_getlist(server: EmulatorServer) -> None:
    tid = new_task(server)
    resp = form(server, "task.commentitem.add", f"0={tid}&1[POST_MESSAGE]=Первый")
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == 1
    second = ok(server, "task.commentitem.add", {"TASKID": tid, "FIELDS": {
        "POST_MESSAGE": "Второй", "POST_DATE": "2025-10-21T17:00:00+07:00"}})
    assert second == 2
    rows = form(server, "task.commentitem.getlist", f"0={tid}").json()["result"]
    assert [r["ID"] for r in rows] == ["2", "1"]  # newest first by default
    assert rows[1] == {"POST_MESSAGE_HTML": None, "ID": "1", "AUTHOR_ID": "1",
                       "AUTHOR_NAME": "Алексей Админов", "AUTHOR_EMAIL": "",
                       "POST_DATE": "2025-10-21T16:00:00+07:00", "POST_MESSAGE": "Первый",
                       "ATTACHED_OBJECTS": {}}
    assert rows[0]["POST_DATE"] == "2025-10-21T17:00:00+07:00"
    assert server.portal.task_comments.get(1) == {
        "ID": 1, "TASK_ID": tid, "AUTHOR_ID": 1, "POST_DATE": NOW, "POST_MESSAGE": "Первый"}
    history = ok(server, "tasks.task.history.list", {"taskId": tid, "filter": {"FIELD": "COMMENT"}})
    assert sorted(r["value"]["to"] for r in history["list"]) == ["1", "2"]
    task = ok(server, "tasks.task.get", {"taskId": tid})["task"]
    assert task["commentsCount"] == "2"


def test_getlist_order_filter_and_argument_errors(server: EmulatorServer) -> None:
    tid = new_task(server)
    bob = add_user(server.portal, "Боб")
    for text, author in (("a", 1), ("b", bob), ("c", 1)):
        ok(server, "task.commentitem.add",
           {"TASKID": tid, "FIELDS": {"POST_MESSAGE": text, "AUTHOR_ID": author}})
    rows = ok(server, "task.commentitem.getlist",
              {"TASKID": tid, "ORDER": {"ID": "asc"}, "FILTER": {"AUTHOR_ID": 1}})
    assert [r["POST_MESSAGE"] for r in rows] == ["a", "c"]
    rows = ok(server, "task.commentitem.getlist", {"TASKID": tid, "ORDER": {"ID": "asc"},
                                                    "FILTER": {">ID": 1, "!AUTHOR_ID": bob}})
    assert [r["ID"] for r in rows] == ["3"]
    # Parameters are positional: a filter where the order belongs is an error.
    resp = hook(server, "task.commentitem.getlist", {"TASKID": tid, "FILTER": {">ID": 1}})
    assert resp.status_code == 400
    assert resp.json() == {"error": "ERROR_CORE", "error_description":
                           'TASKS_ERROR_EXCEPTION_#256; Param #1 (arOrder) for method '
                           'ctaskcommentitem::getlist() must not contain key ">ID".; '
                           "256/TE/WRONG_ARGUMENTS<br>"}
    resp = hook(server, "task.commentitem.add", {"FIELDS": {"POST_MESSAGE": "x"}, "TASKID": tid})
    assert resp.status_code == 400 and "Param #0 (taskId)" in resp.json()["error_description"]
    resp = hook(server, "task.commentitem.add", {"TASKID": tid, "FIELDS": {"POST_MESSAGE": " "}})
    assert resp.json()["error_description"] == "Comment text is not specified<br>"
    resp = hook(server, "task.commentitem.add", {"TASKID": 99, "FIELDS": {"POST_MESSAGE": "x"}})
    assert resp.json() == {"error": "ERROR_CORE", "error_description":
                           "Insufficient permissions to add a comment.<br>"}


def test_get_update_delete(server: EmulatorServer) -> None:
    portal = server.portal
    bob = add_user(portal, "Боб")
    tid = new_task(server, AUDITORS=[bob])
    cid = ok(server, "task.commentitem.add", {"TASKID": tid, "FIELDS": {"POST_MESSAGE": "x"}})
    got = ok(server, "task.commentitem.get", {"TASKID": tid, "ITEMID": cid})
    assert got["ID"] == str(cid) and got["POST_MESSAGE"] == "x"
    missing = hook(server, "task.commentitem.get", {"TASKID": tid, "ITEMID": 77})
    assert missing.status_code == 400 and "ITEM_NOT_FOUND" in missing.json()["error_description"]
    as_bob = user_hook(portal, bob)
    denied = hook(server, "task.commentitem.update",
                  {"TASKID": tid, "ITEMID": cid, "FIELDS": {"POST_MESSAGE": "y"}}, url=as_bob)
    assert denied.json()["error_description"] == (
        "TASKS_ERROR_EXCEPTION_#4; Action is not allowed; 4/TE/ACTION_NOT_ALLOWED<br>")
    assert ok(server, "task.commentitem.update",
              {"TASKID": tid, "ITEMID": cid, "FIELDS": {"POST_MESSAGE": "y"}}) is True
    assert (portal.task_comments.get(cid) or {}).get("POST_MESSAGE") == "y"
    assert ok(server, "task.commentitem.delete", {"TASKID": tid, "ITEMID": cid}) is True
    assert ok(server, "task.commentitem.getlist", {"TASKID": tid}) == []


def test_comment_events_on_the_wire(server: EmulatorServer) -> None:
    portal = server.portal
    portal.app.installed = True
    tid = new_task(server)
    with Receiver() as rx:
        for event in ("ONTASKCOMMENTADD", "ONTASKUPDATE", "ONTASKCOMMENTUPDATE",
                      "ONTASKCOMMENTDELETE"):
            portal.events.bind(event, rx.url(f"/{event}"), portal.app.client_id)
        assert form(server, "task.commentitem.add",
                    f"0={tid}&1[POST_MESSAGE]=hi").status_code == 200
        ok(server, "task.commentitem.update",
           {"TASKID": tid, "ITEMID": 1, "FIELDS": {"POST_MESSAGE": "hey"}})
        ok(server, "task.commentitem.delete", {"TASKID": tid, "ITEMID": 1})
        assert portal.events.wait_idle()
        rx.wait(3)
    added = rx.on("/ONTASKCOMMENTADD")[0].form
    assert added["data[FIELDS_BEFORE]"] == "undefined"
    assert added["data[FIELDS_AFTER][ID]"] == "1"
    assert added["data[FIELDS_AFTER][TASK_ID]"] == str(tid)
    assert "data[FIELDS_AFTER][MESSAGE_ID]" not in added
    assert added["data[IS_ACCESSIBLE_BEFORE]"] == added["data[IS_ACCESSIBLE_AFTER]"] == "undefined"
    assert added["auth[application_token]"] == portal.app.application_token
    # A comment is not a task update (events-tasks/index.md lists no comments).
    assert rx.on("/ONTASKUPDATE") == []
    edited = rx.on("/ONTASKCOMMENTUPDATE")[0].form
    assert edited["data[FIELDS_BEFORE][ID]"] == "1"
    assert edited["data[FIELDS_AFTER][ACTION]"] == "EDIT"
    removed = rx.on("/ONTASKCOMMENTDELETE")[0].form
    assert removed["data[FIELDS_AFTER][ACTION]"] == "DEL"


def test_chat_send_is_not_there_without_the_new_card(server: EmulatorServer) -> None:
    tid = new_task(server)
    resp = hook(server, "tasks.task.chat.message.send", {"fields": {"taskId": tid, "text": "x"}})
    assert resp.status_code == 404 and resp.json()["error"] == "ERROR_METHOD_NOT_FOUND"


# -- new card -----------------------------------------------------------------------------
def test_new_card_comments_live_in_the_chat(new_card: EmulatorServer) -> None:
    server = new_card
    tid = new_task(server)
    task = ok(server, "tasks.task.get", {"taskId": tid, "select": ["ID", "CHAT_ID"]})["task"]
    chat = task["chatId"]
    assert isinstance(chat, int) and chat > 0
    # The deprecated method still works and posts into the chat.
    resp = form(server, "task.commentitem.add", f"0={tid}&1[POST_MESSAGE]=Старый метод")
    assert resp.status_code == 200, resp.text
    assert ok(server, "tasks.task.chat.message.send",
              {"fields": {"taskId": tid, "text": "Новый метод"}}) == {"result": True}
    assert [(m["TASK_ID"], m["CHAT_ID"], m["MESSAGE"]) for m in server.portal.task_chat] == [
        (tid, chat, "Старый метод"), (tid, chat, "Новый метод")]
    assert len(server.portal.task_comments) == 0
    result = ok(server, "im.dialog.messages.get", {"DIALOG_ID": f"chat{chat}"})
    assert set(result) == {"chat_id", "messages", "users", "files"}
    assert result["chat_id"] == chat
    assert [m["text"] for m in result["messages"]] == ["Новый метод", "Старый метод"]
    message = result["messages"][0]
    assert (message["chat_id"], message["author_id"]) == (chat, 1)
    assert message["date"] == "2025-10-21T16:00:00+07:00"
    assert [u["id"] for u in result["users"]] == [1]
    assert result["users"][0]["name"] == "Алексей Админов"
    older = ok(server, "im.dialog.messages.get",
               {"DIALOG_ID": f"chat{chat}", "LAST_ID": message["id"]})
    assert [m["text"] for m in older["messages"]] == ["Старый метод"]


def test_new_card_gives_stored_tasks_a_chat(new_card: EmulatorServer) -> None:
    # A generated dataset may leave CHAT_ID empty: the portal gives every task its chat.
    for title in ("a", "b"):
        new_card.portal.tasks.insert({"TITLE": title, "RESPONSIBLE_ID": 1, "CREATED_BY": 1,
                                      "STATUS": 2, "REAL_STATUS": 2, "CHAT_ID": None})
    listed = ok(new_card, "tasks.task.list", {"select": ["ID", "CHAT_ID"],
                                              "order": {"ID": "asc"}})["tasks"]
    assert [t["chatId"] for t in listed] == [1, 2]
    assert ok(new_card, "tasks.task.get", {"taskId": 2})["task"]["chatId"] == 2
    assert ok(new_card, "tasks.task.chat.message.send", {"fields": {"taskId": 2, "text": "x"}})
    result = ok(new_card, "im.dialog.messages.get", {"DIALOG_ID": "chat2", "LIMIT": 5})
    assert [m["text"] for m in result["messages"]] == ["x"]


def test_new_card_old_comment_methods_do_not_work(new_card: EmulatorServer) -> None:
    tid = new_task(new_card)
    ok(new_card, "task.commentitem.add", {"TASKID": tid, "FIELDS": {"POST_MESSAGE": "x"}})
    for name, params in (("getlist", {"TASKID": tid}),
                         ("get", {"TASKID": tid, "ITEMID": 1}),
                         ("update", {"TASKID": tid, "ITEMID": 1,
                                     "FIELDS": {"POST_MESSAGE": "y"}}),
                         ("delete", {"TASKID": tid, "ITEMID": 1})):
        resp = hook(new_card, f"task.commentitem.{name}", params)
        assert resp.status_code == 400, name
        assert resp.json()["error"] == "ERROR_CORE"


def test_new_card_comment_event_carries_the_message_id(new_card: EmulatorServer) -> None:
    portal = new_card.portal
    portal.app.installed = True
    tid = new_task(new_card)
    with Receiver() as rx:
        portal.events.bind("ONTASKCOMMENTADD", rx.url(), portal.app.client_id)
        ok(new_card, "tasks.task.chat.message.send", {"fields": {"taskId": tid, "text": "x"}})
        ok(new_card, "task.commentitem.add", {"TASKID": tid, "FIELDS": {"POST_MESSAGE": "y"}})
        assert portal.events.wait_idle()
        hits = rx.wait(2)
    forms = [h.form for h in hits]
    assert [(f["data[FIELDS_AFTER][ID]"], f["data[FIELDS_AFTER][TASK_ID]"],
             f["data[FIELDS_AFTER][MESSAGE_ID]"]) for f in forms] == [
        ("0", str(tid), "1"), ("0", str(tid), "2")]
    assert all(f["data[FIELDS_BEFORE]"] == "undefined" for f in forms)


def test_new_card_errors(new_card: EmulatorServer) -> None:
    tid = new_task(new_card)
    resp = hook(new_card, "tasks.task.chat.message.send", {"fields": {"taskId": tid}})
    assert resp.status_code == 400
    assert resp.json() == {"error": {
        "code": "BITRIX_REST_V3_EXCEPTION_VALIDATION_DTOVALIDATIONEXCEPTION",
        "message": "Error during object validation",
        "validation": [{"message": 'The required field "text" is not filled', "field": "text"}]}}
    outsider = add_user(new_card.portal, "Чужой")
    url = user_hook(new_card.portal, outsider)
    resp = hook(new_card, "tasks.task.chat.message.send",
                {"fields": {"taskId": tid, "text": "x"}}, url=url)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"
    resp = hook(new_card, "im.dialog.messages.get", {"DIALOG_ID": ""})
    assert (resp.status_code, resp.json()["error"]) == (400, "DIALOG_ID_EMPTY")
    resp = hook(new_card, "im.dialog.messages.get", {"DIALOG_ID": "chat1"}, url=url)
    assert (resp.status_code, resp.json()["error"]) == (403, "ACCESS_ERROR")
