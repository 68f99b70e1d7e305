"""Contract tests of ``tasks.task.*``: UPPER in, camelCase strings out, statuses, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fast_bitrix24 import Bitrix

from b24emu import EmulatorServer, Portal
from b24emu.dispatch import act
from tests.emulator.helpers import Receiver, add_user, example, hook

NOW = datetime(2025, 10, 21, 9, 0, tzinfo=UTC)


def ok(server: EmulatorServer, method: str, params: dict[str, Any] | None = None,
       *, url: str | None = None) -> Any:
    """Call over HTTP and return ``result`` (asserting HTTP 200)."""
    resp = hook(server, method, params, url=url)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def fail(server: EmulatorServer, method: str, params: dict[str, Any] | None = None,
         *, url: str | None = None) -> tuple[int, dict[str, Any]]:
    """Call over HTTP expecting an error; return the status and the body."""
    resp = hook(server, method, params, url=url)
    assert resp.status_code != 200, resp.text
    return resp.status_code, resp.json()


def add(server: EmulatorServer, **fields: Any) -> dict[str, Any]:
    """``tasks.task.add`` with defaults (responsible = the admin); the task object."""
    fields = {"TITLE": "Задача", "RESPONSIBLE_ID": 1, **fields}
    task: dict[str, Any] = ok(server, "tasks.task.add", {"fields": fields})["task"]
    return task


def user_hook(portal: Portal, user_id: int) -> str:
    """An incoming-webhook base URL acting as ``user_id``."""
    hook_ = portal.auth.add_webhook(user_id, f"secret{user_id}")
    return f"{portal.base_url}/rest/{hook_.user_id}/{hook_.secret}/"


@pytest.fixture
def server(emulator: EmulatorServer) -> EmulatorServer:
    """The emulator with a frozen clock, so that dates are predictable."""
    emulator.portal.clock.set(NOW, frozen=True)
    return emulator


# -- shapes -------------------------------------------------------------------------------
def test_list_has_the_documented_keys_and_types(server: EmulatorServer) -> None:
    sample = example("resp-tasks.task.list.json")
    want = sample["result"]["tasks"][0]
    maria = add_user(server.portal, "Maria")
    john, sam = add_user(server.portal, "John"), add_user(server.portal, "Samantha")
    add(server, TITLE="Task Example", DESCRIPTION="Task description with [B]formatting[/B]",
        DEADLINE="2025-10-24T19:00:00+02:00", RESPONSIBLE_ID=maria, PRIORITY=2,
        AUDITORS=[john, sam])
    select = ["ID", "TITLE", "DESCRIPTION", "STATUS", "DEADLINE", "CREATED_DATE",
              "RESPONSIBLE_ID", "ACCOMPLICES", "AUDITORS", "PRIORITY", "MARK"]
    resp = hook(server, "tasks.task.list", {"select": select})
    body = resp.json()
    assert resp.status_code == 200
    assert set(body) >= {"result", "total", "time"} and "next" not in body
    assert isinstance(body["total"], type(sample["total"]))
    got = body["result"]["tasks"][0]
    supported = {"id", "title", "description", "deadline", "createdDate", "responsibleId",
                 "priority", "mark", "status", "auditors", "accomplices", "group", "responsible",
                 "accomplicesData", "auditorsData", "subStatus"}
    assert supported <= set(want) and supported <= set(got)
    for key in set(want) & set(got):
        assert type(got[key]) is type(want[key]), key
    assert set(got["responsible"]) == set(want["responsible"])
    assert set(got["auditorsData"]) == {str(john), str(sam)}
    assert set(got["auditorsData"][str(john)]) == set(want["auditorsData"]["13"])
    assert got["auditors"] == [str(john), str(sam)]
    assert got["status"] == got["subStatus"] == "2"
    assert got["deadline"] == "2025-10-25T00:00:00+07:00"  # In the portal's zone.
    assert got["createdDate"] == "2025-10-21T16:00:00+07:00"


def test_add_answers_the_full_object_with_string_values(server: EmulatorServer) -> None:
    task = add(server, TITLE="Позвонить", DEADLINE="2025-10-22T18:00:00",
               UF_CRM_TASK=["D_12", "CO_3"])
    assert task["id"] == "1" and task["title"] == "Позвонить"
    assert (task["status"], task["priority"], task["groupId"]) == ("2", "1", "0")
    assert (task["createdBy"], task["responsibleId"], task["closedBy"]) == ("1", "1", "0")
    assert task["closedDate"] is None and task["chatId"] is None
    assert task["deadline"] == "2025-10-22T18:00:00+07:00"  # Offset-less input: portal zone.
    assert task["createdDate"] == task["changedDate"] == task["activityDate"]
    assert task["creator"] == {"id": "1", "name": "Алексей Админов",
                               "link": "/company/personal/user/1/",
                               "icon": "/bitrix/images/tasks/default_avatar.png",
                               "workPosition": ""}
    assert task["group"] == [] and task["accomplicesData"] == [] and task["auditorsData"] == []
    assert task["newCommentsCount"] == 0 and isinstance(task["action"], dict)
    assert "ufCrmTask" not in task
    stored = server.portal.tasks.get(1)
    assert stored is not None
    assert stored["UF_CRM_TASK"] == ["D_12", "CO_3"] and stored["STATUS"] == 2
    assert stored["DEADLINE"] == datetime(2025, 10, 22, 11, tzinfo=UTC)


def test_add_errors(server: EmulatorServer) -> None:
    assert fail(server, "tasks.task.add", {}) == (400, {
        "error": "100",
        "error_description": "Could not find value for parameter {fields} (internal error)"})
    assert fail(server, "tasks.task.add", {"fields": {"RESPONSIBLE_ID": 1}}) == (400, {
        "error": "ERROR_CORE", "error_description": "Task title is not specified<br>"})
    _, body = fail(server, "tasks.task.add", {"fields": {"TITLE": "x"}})
    assert body["error"] == "ERROR_CORE"
    _, body = fail(server, "tasks.task.add", {"fields": {"TITLE": "x", "RESPONSIBLE_ID": 77}})
    assert body["error"] == "ERROR_CORE" and "Responsible" in body["error_description"]
    _, body = fail(server, "tasks.task.add",
                   {"fields": {"TITLE": "x", "RESPONSIBLE_ID": 1, "STATUS": 9}})
    assert body["error_description"] == "Incorrect status<br>"


def test_get_select_and_missing(server: EmulatorServer) -> None:
    add(server, UF_CRM_TASK=["D_7"])
    add(server)
    task = ok(server, "tasks.task.get", {"taskId": 1, "select": ["ID", "UF_CRM_TASK"]})["task"]
    assert task["id"] == "1" and task["ufCrmTask"] == ["D_7"]
    assert task["ufTaskWebdavFiles"] is False and task["ufMailMessage"] is None
    assert "title" not in task and task["group"] == []
    bare = ok(server, "tasks.task.get", {"taskId": 2, "select": ["UF_CRM_TASK"]})["task"]
    assert bare["ufCrmTask"] is False
    full = ok(server, "tasks.task.get", {"taskId": 2})["task"]
    assert "ufCrmTask" not in full and "chatId" in full and full["title"] == "Задача"
    assert ok(server, "tasks.task.get", {"taskId": 99}) == []
    assert fail(server, "tasks.task.get", {})[1]["error"] == "100"
    assert fail(server, "tasks.task.get", {"taskId": "abc"})[1] == {
        "error": "0", "error_description": "wrong task id"}


def test_time_comes_from_the_portal_clock(server: EmulatorServer) -> None:
    task = add(server)
    server.portal.clock.set(NOW + timedelta(hours=3), frozen=True)
    started = ok(server, "tasks.task.start", {"taskId": task["id"]})["task"]
    assert task["createdDate"] == "2025-10-21T16:00:00+07:00"
    assert started["changedDate"] == started["statusChangedDate"] == "2025-10-21T19:00:00+07:00"
    assert started["dateStart"] == "2025-10-21T19:00:00+07:00"


# -- list ---------------------------------------------------------------------------------
def ids(server: EmulatorServer, params: dict[str, Any], *, url: str | None = None) -> list[int]:
    """IDs of ``tasks.task.list`` (first page)."""
    result = ok(server, "tasks.task.list", {"select": ["ID"], **params}, url=url)
    return [int(t["id"]) for t in result["tasks"]]


def test_list_filters(server: EmulatorServer) -> None:
    bob = add_user(server.portal, "Боб")
    server.portal.groups.insert({"NAME": "Продажи", "OPENED": "Y"})
    add(server, TITLE="Позвонить клиенту", DEADLINE="2025-10-20T10:00:00",
        UF_CRM_TASK=["D_12"])                                                    # 1, overdue
    add(server, TITLE="Отправить КП", RESPONSIBLE_ID=bob, ACCOMPLICES=[1],
        DEADLINE="2025-10-21T20:00:00", GROUP_ID=1)                               # 2, soon
    add(server, TITLE="позвонить снова", AUDITORS=[bob], PARENT_ID=1,
        DEADLINE="2025-11-01T10:00:00", UF_CRM_TASK=["CO_3", "D_12"])            # 3
    ok(server, "tasks.task.complete", {"taskId": 3})
    assert ids(server, {}) == [3, 2, 1]                                          # ID desc
    assert ids(server, {"order": {"ID": "asc"}}) == [1, 2, 3]
    assert ids(server, {"filter": {"RESPONSIBLE_ID": bob}}) == [2]
    assert ids(server, {"filter": {"!RESPONSIBLE_ID": bob}}) == [3, 1]
    assert ids(server, {"filter": {"ID": [1, 3]}}) == [3, 1]
    assert ids(server, {"filter": {">ID": 1, "<=ID": 2}}) == [2]
    assert ids(server, {"filter": {"%TITLE": "ПОЗВОНИТЬ"}}) == [3, 1]
    assert ids(server, {"filter": {"TITLE": "отправить кп"}}) == [2]
    assert ids(server, {"filter": {"TITLE": "%снова"}}) == [3]
    assert ids(server, {"filter": {"ACCOMPLICE": 1}}) == [2]
    assert ids(server, {"filter": {"AUDITOR": bob}}) == [3]
    assert ids(server, {"filter": {"MEMBER": bob}}) == [3, 2]
    assert ids(server, {"filter": {"UF_CRM_TASK": "D_12"}}) == [3, 1]
    assert ids(server, {"filter": {"UF_CRM_TASK": ["CO_3", "L_1"]}}) == [3]
    assert ids(server, {"filter": {"GROUP_ID": 1}}) == [2]
    assert ids(server, {"filter": {"PARENT_ID": 1}}) == [3]
    assert ids(server, {"filter": {"PARENT_ID": 0}}) == [2, 1]
    assert ids(server, {"filter": {"CREATED_BY": 1}}) == [3, 2, 1]
    assert ids(server, {"filter": {"REAL_STATUS": 5}}) == [3]
    assert ids(server, {"filter": {"!REAL_STATUS": [5, 6]}}) == [2, 1]
    assert ids(server, {"filter": {">=DEADLINE": "2025-10-21"}}) == [3, 2]
    assert ids(server, {"filter": {"<DEADLINE": "2025-10-21T00:00:00+07:00"}}) == [1]
    assert ids(server, {"filter": {">=CLOSED_DATE": "2025-10-01"}}) == [3]
    assert ids(server, {"filter": {">=CREATED_DATE": "2025-10-21", "<CHANGED_DATE": "2026-01-01"}}
               ) == [3, 2, 1]
    # STATUS is the sub-status: -1 overdue, -3 almost overdue; real statuses otherwise.
    assert ids(server, {"filter": {"STATUS": -1}}) == [1]
    assert ids(server, {"filter": {"STATUS": -3}}) == [2]
    assert ids(server, {"filter": {"STATUS": [2, 5]}}) == [3]
    assert ids(server, {"filter": {"!STATUS": -1}}) == [3, 2]
    assert ids(server, {"filter": {"::SUBFILTER-PARAMS": {"FAVORITE": "Y"}, "ID": 2}}) == [2]
    listed = ok(server, "tasks.task.list", {"select": ["ID", "STATUS"], "order": {"ID": "asc"}})
    assert [t["subStatus"] for t in listed["tasks"]] == ["-1", "-3", "5"]
    assert [t["status"] for t in listed["tasks"]] == ["2", "2", "5"]


def test_list_order_and_errors(server: EmulatorServer) -> None:
    add(server, TITLE="б", DEADLINE="2025-10-25")
    add(server, TITLE="а", DEADLINE="2025-10-23")
    add(server, TITLE="в")
    assert ids(server, {"order": {"TITLE": "asc"}}) == [2, 1, 3]
    assert ids(server, {"order": {"DEADLINE": "desc"}}) == [1, 2, 3]
    status, body = fail(server, "tasks.task.list", {"order": {"NOPE": "asc"}})
    assert (status, body) == (400, {"error": "0",
                                    "error_description": "Invalid sorting key (internal error)"})


def test_list_paging_over_stored_rows(server: EmulatorServer) -> None:
    # Rows as a dataset generator stores them: only a few typed keys.
    for n in range(120):
        server.portal.tasks.insert({"TITLE": f"Задача {n}", "RESPONSIBLE_ID": 1,
                                    "CREATED_BY": 1, "STATUS": 2, "REAL_STATUS": 2,
                                    "CREATED_DATE": NOW})
    body = hook(server, "tasks.task.list", {"select": ["ID", "TITLE"],
                                            "order": {"ID": "asc"}}).json()
    assert (body["total"], body["next"], len(body["result"]["tasks"])) == (120, 50, 50)
    assert body["result"]["tasks"][0] == {"id": "1", "title": "Задача 0", "group": []}
    body = hook(server, "tasks.task.list", {"order": {"ID": "asc"}, "start": 100}).json()
    assert len(body["result"]["tasks"]) == 20 and "next" not in body
    assert body["result"]["tasks"][0]["status"] == "2"
    assert body["result"]["tasks"][0]["closedBy"] == "0"
    body = hook(server, "tasks.task.list", {"start": -1, "select": ["ID"]}).json()
    assert (body["total"], "next" in body, len(body["result"]["tasks"])) == (0, False, 50)
    assert body["result"]["tasks"][0]["id"] == "120"


def test_get_all_through_fast_bitrix24(server: EmulatorServer) -> None:
    for n in range(120):
        server.portal.tasks.insert({"TITLE": f"T{n}", "RESPONSIBLE_ID": 1, "CREATED_BY": 1,
                                    "STATUS": 2, "REAL_STATUS": 2, "CREATED_DATE": NOW})
    bitrix = Bitrix(server.portal.webhook_url, verbose=False, requests_per_second=50.0)
    tasks = bitrix.get_all("tasks.task.list", {"select": ["ID", "TITLE"]})
    assert sorted(int(t["id"]) for t in tasks) == list(range(1, 121))


def test_list_shows_a_user_only_what_they_may_see(server: EmulatorServer) -> None:
    portal = server.portal
    boss = add_user(portal, "Начальник", departments=[2])
    worker = add_user(portal, "Сотрудник", departments=[3])
    stranger = add_user(portal, "Чужой", departments=[4])
    portal.departments.insert({"NAME": "Root", "PARENT": None, "UF_HEAD": 1}, row_id=1)
    portal.departments.insert({"NAME": "Sales", "PARENT": 1, "UF_HEAD": boss}, row_id=2)
    portal.departments.insert({"NAME": "Team", "PARENT": 2, "UF_HEAD": None}, row_id=3)
    portal.departments.insert({"NAME": "Other", "PARENT": 1, "UF_HEAD": None}, row_id=4)
    add(server, RESPONSIBLE_ID=worker)                                           # 1
    add(server, AUDITORS=[stranger])                                             # 2
    add(server)                                                                  # 3
    assert ids(server, {}, url=user_hook(portal, worker)) == [1]
    assert ids(server, {}, url=user_hook(portal, boss)) == [1]                   # staff's task
    assert ids(server, {}, url=user_hook(portal, stranger)) == [2]
    assert ids(server, {}) == [3, 2, 1]                                          # admin
    assert ok(server, "tasks.task.get", {"taskId": 3}, url=user_hook(portal, stranger)) == []


# -- update and statuses ------------------------------------------------------------------
def test_update_changes_fields_and_writes_history(server: EmulatorServer) -> None:
    bob = add_user(server.portal, "Боб")
    add(server, DEADLINE="2025-10-25T10:00:00+07:00")
    server.portal.clock.set(NOW + timedelta(minutes=5), frozen=True)
    task = ok(server, "tasks.task.update", {"taskId": 1, "fields": {
        "TITLE": "Новое", "RESPONSIBLE_ID": bob, "DEADLINE": "2025-10-26T10:00:00+07:00",
        "AUDITORS": [1], "UF_CRM_TASK": ["D_5"]}})["task"]
    assert (task["title"], task["responsibleId"], task["auditors"]) == ("Новое", str(bob), ["1"])
    assert task["changedDate"] == "2025-10-21T16:05:00+07:00" and task["changedBy"] == "1"
    assert task["deadline"] == "2025-10-26T10:00:00+07:00"
    stored = server.portal.tasks.get(1)
    assert stored is not None and stored["UF_CRM_TASK"] == ["D_5"]
    rows = {r["FIELD"]: (r["FROM_VALUE"], r["TO_VALUE"]) for r in server.portal.task_history}
    assert rows["TITLE"] == ("Задача", "Новое")
    assert rows["RESPONSIBLE_ID"] == ("1", str(bob))
    assert rows["DEADLINE"] == (str(int(datetime(2025, 10, 25, 3, tzinfo=UTC).timestamp())),
                                str(int(datetime(2025, 10, 26, 3, tzinfo=UTC).timestamp())))
    assert rows["AUDITORS"] == ("", "1") and "UF_CRM_TASK" not in rows


def test_update_errors_and_rights(server: EmulatorServer) -> None:
    portal = server.portal
    resp, outsider = add_user(portal, "Исполнитель"), add_user(portal, "Посторонний")
    add(server, RESPONSIBLE_ID=resp)
    assert fail(server, "tasks.task.update", {"fields": {"TITLE": "x"}})[1]["error"] == "100"
    assert fail(server, "tasks.task.update", {"taskId": 1})[1] == {
        "error": "100",
        "error_description": "Could not find value for parameter {fields} (internal error)"}
    status, body = fail(server, "tasks.task.update", {"taskId": 1, "fields": {"TITLE": "x"}},
                        url=user_hook(portal, outsider))
    assert (status, body["error"]) == (400, "0")
    assert body["error_description"].startswith("Action on the task is not allowed")
    assert fail(server, "tasks.task.update", {"taskId": 9, "fields": {"TITLE": "x"}})[1][
        "error"] == "0"
    changed = ok(server, "tasks.task.update", {"taskId": 1, "fields": {"TITLE": "y"}},
                 url=user_hook(portal, resp))["task"]
    assert changed["title"] == "y" and changed["changedBy"] == str(resp)
    _, body = fail(server, "tasks.task.update", {"taskId": 1, "fields": {"PARENT_ID": 1}})
    assert body == {"error": "ERROR_CORE",
                    "error_description": "Cannot bind the node to itself<br>"}
    assert fail(server, "tasks.task.update", {"taskId": 1, "fields": {"TITLE": ""}})[1][
        "error_description"] == "Task title is not specified<br>"


def status_of(server: EmulatorServer, action: str, task_id: int, *,
              url: str | None = None) -> str:
    """Run ``tasks.task.<action>`` and return the new status."""
    result = ok(server, f"tasks.task.{action}", {"taskId": task_id}, url=url)
    return str(result["task"]["status"])


def test_status_transitions(server: EmulatorServer) -> None:
    add(server)
    assert status_of(server, "start", 1) == "3"
    assert status_of(server, "pause", 1) == "2"
    assert status_of(server, "defer", 1) == "6"
    assert status_of(server, "renew", 1) == "2"
    server.portal.clock.set(NOW + timedelta(hours=1), frozen=True)
    done = ok(server, "tasks.task.complete", {"taskId": 1})["task"]
    assert (done["status"], done["closedBy"]) == ("5", "1")
    assert done["closedDate"] == done["statusChangedDate"] == "2025-10-21T17:00:00+07:00"
    renewed = ok(server, "tasks.task.renew", {"taskId": 1})["task"]
    assert (renewed["status"], renewed["closedBy"], renewed["closedDate"]) == ("2", "0", None)
    row = server.portal.tasks.get(1)
    assert row is not None and row["STATUS"] == row["REAL_STATUS"] == 2
    changes = [(r["FROM_VALUE"], r["TO_VALUE"]) for r in server.portal.task_history
               if r["FIELD"] == "STATUS"]
    assert changes == [("2", "3"), ("3", "2"), ("2", "6"), ("6", "2"), ("2", "5"), ("5", "2")]


def test_status_errors_use_each_methods_code(server: EmulatorServer) -> None:
    add(server)
    ok(server, "tasks.task.complete", {"taskId": 1})
    for action, code in (("start", "0"), ("complete", "0"), ("pause", "1048582"),
                         ("defer", "1048582"), ("approve", "1048582"),
                         ("disapprove", "1048582")):
        status, body = fail(server, f"tasks.task.{action}", {"taskId": 1})
        assert (status, body) == (400, {"error": code,
                                        "error_description": "Action on the task is not allowed"})
    assert fail(server, "tasks.task.start", {"taskId": 42})[1]["error"] == "0"


def test_completion_control(server: EmulatorServer) -> None:
    portal = server.portal
    worker = add_user(portal, "Исполнитель")
    as_worker = user_hook(portal, worker)
    add(server, RESPONSIBLE_ID=worker, TASK_CONTROL="Y")
    assert status_of(server, "complete", 1, url=as_worker) == "4"
    assert fail(server, "tasks.task.approve", {"taskId": 1}, url=as_worker)[1]["error"] == "1048582"
    assert status_of(server, "disapprove", 1) == "2"
    assert status_of(server, "complete", 1, url=as_worker) == "4"
    approved = ok(server, "tasks.task.approve", {"taskId": 1})["task"]
    assert (approved["status"], approved["closedBy"]) == ("5", "1")


def test_delete(server: EmulatorServer) -> None:
    portal = server.portal
    worker = add_user(portal, "Исполнитель")
    add(server, RESPONSIBLE_ID=worker)
    assert fail(server, "tasks.task.delete", {"taskId": 1}, url=user_hook(portal, worker))[1] == {
        "error": "1048582", "error_description": "No access to delete the task"}
    assert ok(server, "tasks.task.delete", {"taskId": 1}) == {"task": True}
    assert ok(server, "tasks.task.get", {"taskId": 1}) == []
    assert ok(server, "tasks.task.history.list", {"taskId": 1}) == {"list": []}


# -- history ------------------------------------------------------------------------------
def test_history_list(server: EmulatorServer) -> None:
    add(server)
    server.portal.clock.set(NOW + timedelta(minutes=1), frozen=True)
    ok(server, "tasks.task.start", {"taskId": 1})
    ok(server, "tasks.task.update", {"taskId": 1, "fields": {"TITLE": "Другое"}})
    result = ok(server, "tasks.task.history.list", {"taskId": 1})
    assert [r["field"] for r in result["list"]] == ["TITLE", "STATUS", "NEW"]  # newest first
    new = result["list"][-1]
    assert new == {"id": 1, "createdDate": "2025-10-21T16:00:00+07:00", "field": "NEW",
                   "value": {"from": None, "to": None},
                   "user": {"id": 1, "name": "Алексей", "lastName": "Админов",
                            "secondName": "", "login": "admin@nois.example"}}
    status = ok(server, "tasks.task.history.list",
                {"taskId": 1, "filter": {"FIELD": "STATUS"}, "order": {"createdDate": "ASC"}})
    assert [(r["field"], r["value"]) for r in status["list"]] == [
        ("STATUS", {"from": "2", "to": "3"})]
    asc = ok(server, "tasks.task.history.list", {"taskId": 1, "order": {"ID": "asc"}})
    assert [r["id"] for r in asc["list"]] == [1, 2, 3]
    assert fail(server, "tasks.task.history.list", {"taskId": "x"})[1] == {
        "error": "0", "error_description": "wrong task id (internal error)"}
    outsider = add_user(server.portal, "Чужой")
    assert fail(server, "tasks.task.history.list", {"taskId": 1},
                url=user_hook(server.portal, outsider))[1] == {
        "error": "0", "error_description": "Access denied. (internal error)"}


# -- events -------------------------------------------------------------------------------
def test_task_events_on_the_wire(server: EmulatorServer) -> None:
    portal = server.portal
    portal.app.installed = True
    portal.app.application_token = "apptoken"
    with Receiver() as rx:
        for event in ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE"):
            portal.events.bind(event, rx.url(f"/{event}"), portal.app.client_id)
        add(server)
        ok(server, "tasks.task.update", {"taskId": 1, "fields": {"TITLE": "x"}})
        ok(server, "tasks.task.complete", {"taskId": 1})
        ok(server, "tasks.task.delete", {"taskId": 1})
        assert portal.events.wait_idle()
        hits = rx.wait(4)
    added = rx.on("/ONTASKADD")[0].form
    assert added["event"] == "ONTASKADD"
    assert added["data[FIELDS_BEFORE]"] == "undefined"
    assert added["data[FIELDS_AFTER][ID]"] == "1"
    assert (added["data[IS_ACCESSIBLE_BEFORE]"], added["data[IS_ACCESSIBLE_AFTER]"]) == (
        "N", "undefined")
    assert added["auth[application_token]"] == "apptoken"
    assert added["auth[member_id]"] == portal.member_id and added["auth[access_token]"]
    updates = [h.form for h in rx.on("/ONTASKUPDATE")]
    assert len(updates) == 2  # update + complete
    for form in updates:
        assert form["data[FIELDS_BEFORE][ID]"] == form["data[FIELDS_AFTER][ID]"] == "1"
        assert form["data[IS_ACCESSIBLE_BEFORE]"] == "undefined"
        assert form["data[IS_ACCESSIBLE_AFTER]"] == "undefined"
        assert not any(k.startswith("data[FIELDS_AFTER][") and k != "data[FIELDS_AFTER][ID]"
                       for k in form)
    deleted = rx.on("/ONTASKDELETE")[0].form
    assert deleted["data[FIELDS_BEFORE][ID]"] == "1"
    assert deleted["data[FIELDS_AFTER]"] == "undefined"
    assert deleted["data[IS_ACCESSIBLE_AFTER]"] == "N"
    assert len(hits) == 4


def test_automation_changes_carry_no_tokens(server: EmulatorServer) -> None:
    portal = server.portal
    portal.app.installed = True
    with Receiver() as rx:
        portal.events.bind("ONTASKUPDATE", rx.url(), portal.app.client_id)
        add(server)
        act(portal, "tasks.task.start", {"taskId": 1}, automation=True)
        assert portal.events.wait_idle()
        form = rx.wait(1)[0].form
    assert form["data[FIELDS_AFTER][ID]"] == "1" and "auth[access_token]" not in form
