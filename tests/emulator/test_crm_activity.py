"""Contract tests of ``crm.activity.*``, ``crm.activity.todo.add`` and timeline comments."""

from __future__ import annotations

from typing import Any

import pytest

from b24emu import EmulatorServer
from tests.emulator.test_crm_legacy import (
    Receiver,
    add_deal,
    bind,
    example,
    ok,
    receiver,
    rest,
)

__all__ = ["receiver"]  # The fixture, imported for this module's tests.

# Keys of a crm.activity.list row in the doc sample (b24restdocs crm-activity-list.md).
DOC_ROW_KEYS = {"ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID",
                "PROVIDER_GROUP_ID", "ASSOCIATED_ENTITY_ID", "SUBJECT", "CREATED", "LAST_UPDATED",
                "START_TIME", "END_TIME", "DEADLINE", "COMPLETED", "STATUS", "RESPONSIBLE_ID",
                "PRIORITY", "NOTIFY_TYPE", "NOTIFY_VALUE", "DESCRIPTION", "DESCRIPTION_TYPE",
                "DIRECTION", "LOCATION", "ORIGINATOR_ID", "ORIGIN_ID", "AUTHOR_ID", "EDITOR_ID"}


def add_call(emulator: EmulatorServer, deal: int, **extra: Any) -> int:
    """A call activity on a deal."""
    fields = {"OWNER_TYPE_ID": 2, "OWNER_ID": deal, "TYPE_ID": 2, "SUBJECT": "Звонок",
              "COMMUNICATIONS": [{"VALUE": "+79990000000"}], "DIRECTION": 2,
              "START_TIME": "2024-09-02T10:00:00+07:00", "END_TIME": "2024-09-02T10:30:00+07:00",
              **extra}
    result = ok(emulator, "crm.activity.add", {"fields": fields})
    assert isinstance(result, int)
    return result


def test_activity_add_get_shape(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="d", ASSIGNED_BY_ID=1)
    act = add_call(emulator, deal)
    got = ok(emulator, "crm.activity.get", {"id": act})
    assert set(got) >= DOC_ROW_KEYS
    assert all(v is None or isinstance(v, str | list) for v in got.values())
    assert (got["TYPE_ID"], got["PROVIDER_ID"], got["PROVIDER_TYPE_ID"]) == (
        "2", "VOXIMPLANT_CALL", "CALL")
    assert (got["COMPLETED"], got["STATUS"], got["DIRECTION"]) == ("N", "1", "2")
    assert got["DEADLINE"] == got["START_TIME"] == "2024-09-02T10:00:00+07:00"
    assert (got["AUTHOR_ID"], got["EDITOR_ID"], got["RESPONSIBLE_ID"]) == ("1", "1", "1")
    assert got["BINDINGS"] == [{"OWNER_ID": str(deal), "OWNER_TYPE_ID": "2"}]
    assert got["COMMUNICATIONS"][0]["VALUE"] == "+79990000000"
    assert got["SETTINGS"] == []


def test_activity_list_shape_order_select(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="d")
    late = add_call(emulator, deal, START_TIME="2024-09-03T10:00:00+07:00")
    early = add_call(emulator, deal, START_TIME="2024-09-01T10:00:00+07:00")
    body = rest(emulator, "crm.activity.list", {"filter": {"OWNER_ID": deal}}).json()
    assert body["total"] == 2 and "next" not in body
    rows = body["result"]
    assert [r["ID"] for r in rows] == [str(early), str(late)]  # Default order START_TIME asc.
    assert set(rows[0]) >= DOC_ROW_KEYS
    assert "COMMUNICATIONS" not in rows[0] and "FILES" not in rows[0]
    assert all(v is None or isinstance(v, str | list) for v in rows[0].values())
    rows = ok(emulator, "crm.activity.list", {"order": {"ID": "DESC"},
                                              "select": ["ID", "COMMUNICATIONS"]})
    assert [r["ID"] for r in rows] == [str(early), str(late)]  # IDs: late=1, early=2.
    assert rows[0]["COMMUNICATIONS"][0]["TYPE"] == "PHONE"
    assert set(rows[0]) == {"ID", "COMMUNICATIONS"}


def test_deadline_follows_end_time_for_tasks_and_errors(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="d")
    task = ok(emulator, "crm.activity.add", {"fields": {
        "OWNER_TYPE_ID": 2, "OWNER_ID": deal, "TYPE_ID": 3, "SUBJECT": "Task",
        "START_TIME": "2024-09-01T09:00:00+07:00", "END_TIME": "2024-09-05T18:00:00+07:00"}})
    assert ok(emulator, "crm.activity.get", {"id": task})["DEADLINE"] == \
        "2024-09-05T18:00:00+07:00"
    cases = [
        ({"OWNER_TYPE_ID": 2, "OWNER_ID": deal, "TYPE_ID": 2, "SUBJECT": "x"},
         "The field COMMUNICATIONS is not defined or invalid."),
        ({"OWNER_TYPE_ID": 2, "OWNER_ID": deal, "TYPE_ID": 2,
          "COMMUNICATIONS": [{"VALUE": "1"}]}, "The field SUBJECT is not defined or empty."),
        ({"OWNER_TYPE_ID": 2, "OWNER_ID": 999, "TYPE_ID": 3, "SUBJECT": "x"},
         "Could not build binding. Please ensure that owner info and communications are "
         "defined correctly."),
        ({"OWNER_TYPE_ID": 2, "OWNER_ID": deal, "SUBJECT": "x"},
         "The field TYPE_ID is not defined or invalid."),
    ]
    for fields, text in cases:
        resp = rest(emulator, "crm.activity.add", {"fields": fields})
        assert resp.status_code == 400
        assert resp.json() == {"error": "", "error_description": text}
    assert rest(emulator, "crm.activity.get", {"id": 999}).json()["error_description"] == \
        "Not found"


def test_update_completed_status_and_owner_activity_time(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="d")
    act = add_call(emulator, deal)
    emulator.portal.clock.advance(7200)
    emulator.portal.users.insert({"NAME": "Мария", "ACTIVE": True})
    assert ok(emulator, "crm.activity.update", {"id": act, "fields": {
        "COMPLETED": "Y", "OWNER_ID": 555, "TYPE_ID": 1}}) is True
    got = ok(emulator, "crm.activity.get", {"id": act})
    assert (got["COMPLETED"], got["STATUS"]) == ("Y", "2")
    assert (got["OWNER_ID"], got["TYPE_ID"]) == (str(deal), "2")  # Immutable fields stay.
    assert got["LAST_UPDATED"] > got["CREATED"]
    deal_row = ok(emulator, "crm.deal.get", {"id": deal})
    assert deal_row["LAST_ACTIVITY_TIME"] == got["LAST_UPDATED"]
    assert deal_row["LAST_ACTIVITY_BY"] == "1"
    ok(emulator, "crm.activity.update", {"id": act, "fields": {"STATUS": 1}})
    assert ok(emulator, "crm.activity.get", {"id": act})["COMPLETED"] == "N"
    assert ok(emulator, "crm.activity.delete", {"id": act}) is True
    assert ok(emulator, "crm.activity.list", {}) == []


@pytest.mark.parametrize(("bindings", "expected"), [
    ([{"OWNER_TYPE_ID": 3}], ["meeting"]),
    ([{"OWNER_TYPE_ID": 2}], ["meeting", "call"]),
    ([{"OWNER_TYPE_ID": 2, "OWNER_ID": 2}], ["call"]),
    ([{"OWNER_TYPE_ID": 4}, {"OWNER_TYPE_ID": 3}], ["meeting"]),
])
def test_bindings_filter(emulator: EmulatorServer, bindings: list[dict[str, int]],
                         expected: list[str]) -> None:
    first, second = add_deal(emulator, TITLE="a"), add_deal(emulator, TITLE="b")
    contact = ok(emulator, "crm.contact.add", {"fields": {"NAME": "c"}})
    ok(emulator, "crm.activity.add", {"fields": {
        "OWNER_TYPE_ID": 2, "OWNER_ID": first, "TYPE_ID": 1, "SUBJECT": "meeting",
        "COMMUNICATIONS": [{"VALUE": "+7", "ENTITY_ID": contact, "ENTITY_TYPE_ID": 3}]}})
    add_call(emulator, second, SUBJECT="call")
    rows = ok(emulator, "crm.activity.list", {"filter": {"BINDINGS": bindings},
                                              "order": {"ID": "ASC"}, "select": ["SUBJECT"]})
    assert [r["SUBJECT"] for r in rows] == expected


def test_todo_add(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="d")
    result = ok(emulator, "crm.activity.todo.add", {
        "ownerTypeId": 2, "ownerId": deal, "deadline": "2025-02-03T15:00:00+07:00",
        "title": "Перезвонить", "description": "Про договор", "responsibleId": 1,
        "pingOffsets": [0, 15], "colorId": 2})
    assert set(result) == {"id"} and isinstance(result["id"], int)
    got = ok(emulator, "crm.activity.get", {"id": result["id"]})
    assert (got["TYPE_ID"], got["PROVIDER_ID"], got["SUBJECT"]) == ("6", "CRM_TODO",
                                                                      "Перезвонить")
    assert got["DEADLINE"] == "2025-02-03T15:00:00+07:00"
    assert got["DESCRIPTION"] == "Про договор" and got["COMPLETED"] == "N"
    for params, code in (
        ({"ownerTypeId": 2, "ownerId": deal}, "100"),
        ({"ownerTypeId": 2, "ownerId": 999, "deadline": "2025-02-03T15:00:00"}, "NOT_FOUND"),
        ({"ownerTypeId": 2, "ownerId": deal, "deadline": "tomorrow"}, "WRONG_DATETIME_FORMAT"),
    ):
        resp = rest(emulator, "crm.activity.todo.add", params)
        assert resp.status_code == 400 and resp.json()["error"] == code


def test_activity_events(emulator: EmulatorServer, receiver: Receiver) -> None:
    bind(emulator, receiver, "ONCRMACTIVITYADD", "ONCRMACTIVITYUPDATE", "ONCRMACTIVITYDELETE")
    deal = add_deal(emulator, TITLE="d")
    act = add_call(emulator, deal)
    todo = ok(emulator, "crm.activity.todo.add", {"ownerTypeId": 2, "ownerId": deal,
                                                  "deadline": "2025-02-03T15:00:00"})["id"]
    ok(emulator, "crm.activity.update", {"id": act, "fields": {"COMPLETED": "Y"}})
    ok(emulator, "crm.activity.delete", {"id": todo})
    assert emulator.portal.events.wait_idle()
    sample = example("event-ONCRMACTIVITYADD.json")
    added = receiver.events("ONCRMACTIVITYADD")
    assert [b["data[FIELDS][ID]"] for b in added] == [str(act), str(todo)]
    assert {k for k in added[0] if k.startswith("data")} == {"data[FIELDS][ID]"}
    assert set(sample["data"]["FIELDS"]) == {"ID"}
    assert receiver.events("ONCRMACTIVITYUPDATE")[0]["data[FIELDS][ID]"] == str(act)
    assert receiver.events("ONCRMACTIVITYDELETE")[0]["data[FIELDS][ID]"] == str(todo)


def test_timeline_comments(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="d")
    other = add_deal(emulator, TITLE="e")
    first = ok(emulator, "crm.timeline.comment.add", {"fields": {
        "ENTITY_ID": deal, "ENTITY_TYPE": "deal", "COMMENT": "Первый"}})
    assert isinstance(first, int)
    ok(emulator, "crm.timeline.comment.add", {"fields": {
        "ENTITY_ID": other, "ENTITY_TYPE": "deal", "COMMENT": "Чужой"}})
    second = ok(emulator, "crm.timeline.comment.add", {"fields": {
        "ENTITY_ID": deal, "ENTITY_TYPE": "deal", "COMMENT": "Второй", "AUTHOR_ID": 1}})
    body = rest(emulator, "crm.timeline.comment.list",
                {"filter": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal"}}).json()
    assert body["total"] == 2
    rows = body["result"]
    assert [r["ID"] for r in rows] == [str(first), str(second)]
    assert set(rows[0]) == {"ID", "ENTITY_ID", "ENTITY_TYPE", "CREATED", "COMMENT", "AUTHOR_ID",
                            "FILES"}
    assert (rows[0]["ENTITY_ID"], rows[0]["ENTITY_TYPE"], rows[0]["AUTHOR_ID"]) == (
        str(deal), "deal", "1")
    assert rows[0]["FILES"] == {}
    assert emulator.portal.timeline_comments.get(first) is not None
    rows = ok(emulator, "crm.timeline.comment.list", {
        "filter": {"ENTITY_ID": deal, "ENTITY_TYPE": "deal"}, "order": {"ID": "DESC"},
        "select": ["ID", "COMMENT"]})
    assert rows == [{"ID": str(second), "COMMENT": "Второй"},
                    {"ID": str(first), "COMMENT": "Первый"}]


@pytest.mark.parametrize(("params", "code"), [
    ({"fields": {"ENTITY_ID": 999, "ENTITY_TYPE": "deal", "COMMENT": "x"}}, "NOT_FOUND"),
    ({"fields": {"ENTITY_ID": 1, "ENTITY_TYPE": "lead", "COMMENT": "x"}}, "NOT_FOUND"),
    ({"fields": {"ENTITY_ID": 1, "ENTITY_TYPE": "dynamic_128", "COMMENT": "x"}}, "NOT_FOUND"),
    ({"fields": {"ENTITY_ID": 1, "ENTITY_TYPE": "deal", "COMMENT": " "}}, "INVALID_ARG_VALUE"),
    ({"fields": {"ENTITY_TYPE": "deal", "COMMENT": "x"}}, "100"),
    # Since crm 23.100.0 only the lowercase ``fields`` key is read.
    ({"FIELDS": {"ENTITY_ID": 1, "ENTITY_TYPE": "deal", "COMMENT": "x"}}, "100"),
])
def test_timeline_comment_errors(emulator: EmulatorServer, params: dict[str, Any],
                                 code: str) -> None:
    add_deal(emulator, TITLE="d")
    resp = rest(emulator, "crm.timeline.comment.add", params)
    assert resp.status_code == 400
    assert resp.json()["error"] == code
    if code == "NOT_FOUND":
        assert resp.json()["error_description"] == "Not found."


def test_comment_on_smart_process_item(emulator: EmulatorServer) -> None:
    etid = ok(emulator, "crm.type.add", {"fields": {"title": "Визиты"}})["type"]["entityTypeId"]
    item = ok(emulator, "crm.item.add", {"entityTypeId": etid, "fields": {"title": "v"}})
    comment = ok(emulator, "crm.timeline.comment.add", {"fields": {
        "ENTITY_ID": item["item"]["id"], "ENTITY_TYPE": f"dynamic_{etid}", "COMMENT": "ok"}})
    assert comment > 0
