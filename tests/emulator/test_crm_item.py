"""Contract tests of ``crm.item.*``, ``crm.type.*`` and ``crm.stagehistory.list``."""

from __future__ import annotations

from datetime import datetime
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


def add_type(emulator: EmulatorServer, **fields: Any) -> dict[str, Any]:
    """Create a smart process; returns its ``type`` object."""
    result: dict[str, Any] = ok(emulator, "crm.type.add", {"fields": {"title": "Визиты",
                                                                      **fields}})["type"]
    return result


def add_item(emulator: EmulatorServer, etid: int, **fields: Any) -> dict[str, Any]:
    """Create an item; returns the ``item`` object."""
    result: dict[str, Any] = ok(emulator, "crm.item.add", {"entityTypeId": etid,
                                                           "fields": fields})["item"]
    return result


def test_item_list_matches_doc_sample_types(emulator: EmulatorServer) -> None:
    sample = example("resp-crm.item.list.json")
    for amount in (19000, 19600.5):
        add_deal(emulator, TITLE="Deal", OPPORTUNITY=amount, SOURCE_ID="WEB",
                 IS_MANUAL_OPPORTUNITY="Y", ASSIGNED_BY_ID=1)
    keys = ["id", "assignedById", "stageId", "opportunity", "sourceId", "title",
            "isManualOpportunity"]
    body = rest(emulator, "crm.item.list", {"entityTypeId": 2, "select": keys}).json()
    assert set(body) == set(sample) and body["total"] == 2 and "next" not in body
    assert set(body["result"]) == {"items"}
    first, second = body["result"]["items"]
    assert list(first) == keys
    for key in keys:
        assert type(first[key]) is type(sample["result"]["items"][0][key]), key
    assert first["opportunity"] == 19000 and second["opportunity"] == 19600.5
    assert first["isManualOpportunity"] == "Y"


def test_item_get_add_update_delete_for_deals(emulator: EmulatorServer) -> None:
    contact = ok(emulator, "crm.contact.add", {"fields": {"NAME": "Иван"}})
    item = add_item(emulator, 2, title="Через item", opportunity=500, contactIds=[contact],
                    begindate="2024-08-30", stageId="PREPARATION")
    assert isinstance(item["id"], int) and item["entityTypeId"] == 2
    assert (item["title"], item["opportunity"], item["stageId"]) == ("Через item", 500,
                                                                     "PREPARATION")
    assert item["contactIds"] == [contact] and item["contactId"] == contact
    assert item["companyId"] == 0  # An empty binding reads 0 in crm.item.
    assert item["begindate"] == "2024-08-30T00:00:00+07:00"
    assert item["opened"] == "Y" and item["assignedById"] == 1
    datetime.fromisoformat(item["createdTime"])
    legacy = ok(emulator, "crm.deal.get", {"id": item["id"]})
    assert legacy["TITLE"] == "Через item" and legacy["OPPORTUNITY"] == "500.00"

    got = ok(emulator, "crm.item.get", {"entityTypeId": 2, "id": item["id"]})["item"]
    assert got == item
    updated = ok(emulator, "crm.item.update", {"entityTypeId": 2, "id": item["id"], "fields": {
        "categoryId": 3, "TITLE": "upper works too"}})["item"]
    # Unlike crm.deal.update, crm.item.update may move a deal to another funnel.
    assert (updated["categoryId"], updated["stageId"]) == (3, "C3:NEW")
    assert updated["title"] == "upper works too"
    history = ok(emulator, "crm.stagehistory.list", {"entityTypeId": 2})["items"]
    assert [h["TYPE_ID"] for h in history] == ["1", "5"]
    assert ok(emulator, "crm.item.delete", {"entityTypeId": 2, "id": item["id"]}) == []
    assert rest(emulator, "crm.deal.get", {"id": item["id"]}).status_code == 400


@pytest.mark.parametrize(("params", "description"), [
    ({"entityTypeId": 2, "id": 999}, "Element not found"),
    ({"entityTypeId": 777, "id": 1}, "SPA not found"),
    ({"entityTypeId": 1, "id": 1}, "SPA not found"),
])
def test_item_not_found(emulator: EmulatorServer, params: dict[str, Any],
                        description: str) -> None:
    for name in ("crm.item.get", "crm.item.update", "crm.item.delete"):
        resp = rest(emulator, name, {**params, "fields": {"title": "x"}})
        assert resp.status_code == 400
        assert resp.json() == {"error": "NOT_FOUND", "error_description": description}


@pytest.mark.parametrize(("flt", "expected"), [
    ({"title": "B"}, ["B"]),
    ({">opportunity": 150}, ["B", "C"]),
    ({"<=opportunity": 150}, ["A"]),
    ({"@id": [1, 3]}, ["A", "C"]),
    ({"!@id": [1, 3]}, ["B"]),
    ({"%title": "b"}, ["B"]),
    ({"!%title": "b"}, ["A", "C"]),
    ({"stageId": "WON"}, ["C"]),
    ({"!=stageId": "WON"}, ["A", "B"]),
    ({"0": {"logic": "OR", "0": {"title": "A"}, "1": {"title": "C"}}}, ["A", "C"]),
    ({"STAGE_SEMANTIC_ID": "S"}, ["C"]),
    ({"unknownField": 1}, ["A", "B", "C"]),
])
def test_item_filters(emulator: EmulatorServer, flt: dict[str, Any], expected: list[str]) -> None:
    for title, amount in (("A", 100), ("B", 200), ("C", 300)):
        add_item(emulator, 2, title=title, opportunity=amount,
                 stageId="WON" if title == "C" else "NEW")
    items = ok(emulator, "crm.item.list", {"entityTypeId": 2, "filter": flt,
                                           "select": ["title"]})["items"]
    assert [i["title"] for i in items] == expected
    assert all(set(i) == {"id", "title"} for i in items)


def test_item_order_paging_and_fields(emulator: EmulatorServer) -> None:
    for i in range(60):
        emulator.portal.companies.insert({"TITLE": f"Co{i:02d}", "REVENUE": float(i)})
    page = rest(emulator, "crm.item.list", {"entityTypeId": 4, "order": {"revenue": "DESC"},
                                            "select": ["id", "title", "revenue"]}).json()
    items = page["result"]["items"]
    assert len(items) == 50 and page["next"] == 50 and page["total"] == 60
    assert items[0] == {"id": 60, "title": "Co59", "revenue": 59}
    rest_page = rest(emulator, "crm.item.list", {"entityTypeId": 4, "start": 50,
                                                 "select": ["id"]}).json()
    assert len(rest_page["result"]["items"]) == 10 and "next" not in rest_page
    fields = ok(emulator, "crm.item.fields", {"entityTypeId": 4})["fields"]
    assert fields["title"]["upperName"] == "TITLE"
    assert fields["createdTime"]["upperName"] == "DATE_CREATE"
    assert fields["opened"]["type"] == "boolean"
    assert {"type", "isRequired", "isReadOnly", "isImmutable", "isMultiple", "isDynamic",
            "title"} <= set(fields["title"])


def test_user_fields_in_crm_item(emulator: EmulatorServer) -> None:
    ok(emulator, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": "KPI_SCORE",
                                                       "USER_TYPE_ID": "double"}})
    ok(emulator, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": "VIP",
                                                       "USER_TYPE_ID": "boolean"}})
    item = add_item(emulator, 2, title="uf", ufCrmKpiScore=4.5, ufCrmVip="Y")
    assert (item["ufCrmKpiScore"], item["ufCrmVip"]) == (4.5, "Y")
    original = ok(emulator, "crm.item.get", {"entityTypeId": 2, "id": item["id"],
                                             "useOriginalUfNames": "Y"})["item"]
    assert original["UF_CRM_KPI_SCORE"] == 4.5 and "ufCrmKpiScore" not in original
    add_item(emulator, 2, title="plain", ufCrmVip="N")
    # Boolean user fields read Y/N but filter with 1/0.
    vip = ok(emulator, "crm.item.list", {"entityTypeId": 2, "filter": {"ufCrmVip": 1},
                                         "select": ["id", "ufCrmVip"]})["items"]
    assert vip == [{"id": item["id"], "ufCrmVip": "Y"}]
    upper = ok(emulator, "crm.item.list", {"entityTypeId": 2, "useOriginalUfNames": "Y",
                                           "filter": {">UF_CRM_KPI_SCORE": 1},
                                           "select": ["UF_CRM_KPI_SCORE"]})["items"]
    assert upper == [{"id": item["id"], "UF_CRM_KPI_SCORE": 4.5}]
    assert ok(emulator, "crm.deal.get", {"id": item["id"]})["UF_CRM_VIP"] == "1"


def test_contact_item_fm(emulator: EmulatorServer) -> None:
    item = add_item(emulator, 3, name="Иван", fm=[
        {"typeId": "PHONE", "valueType": "WORK", "value": "+79990000000"}])
    assert item["fm"] == [{"id": item["fm"][0]["id"], "valueType": "WORK",
                           "value": "+79990000000", "typeId": "PHONE"}]
    assert item["hasPhone"] == "Y"
    assert ok(emulator, "crm.contact.get", {"id": item["id"]})["PHONE"][0]["VALUE"] == \
        "+79990000000"


def test_smart_process_type_and_items(emulator: EmulatorServer) -> None:
    created = add_type(emulator, isCategoriesEnabled="Y", code="visits")
    assert created["entityTypeId"] == 128 and isinstance(created["id"], int)
    assert created["isCategoriesEnabled"] == "Y" and created["isStagesEnabled"] == "N"
    assert created["code"] == "visits" and created["createdBy"] == 1
    second = add_type(emulator, title="Заявки", entityTypeId=1032)
    assert second["entityTypeId"] == 1032
    for bad in (100, 1031, 193):
        resp = rest(emulator, "crm.type.add", {"fields": {"title": "x", "entityTypeId": bad}})
        assert resp.json()["error"] == "INVALID_ARG_VALUE"
    body = rest(emulator, "crm.type.list", {"order": {"id": "DESC"}}).json()
    assert body["total"] == 2
    assert [t["entityTypeId"] for t in body["result"]["types"]] == [1032, 128]
    assert ok(emulator, "crm.type.list", {"filter": {"%title": "Виз"}})["types"][0]["id"] == \
        created["id"]
    assert ok(emulator, "crm.type.get", {"id": created["id"]})["type"]["title"] == "Визиты"
    assert ok(emulator, "crm.type.getByEntityTypeId",
              {"entityTypeId": 1032})["type"]["id"] == second["id"]
    assert rest(emulator, "crm.type.get", {"id": 99}).json()["error"] == "NOT_FOUND"
    assert emulator.portal.items[128] is not None

    item = add_item(emulator, 128, title="Визит 1", opportunity="1500.5",
                    assignedById=1, companyId=0)
    assert item["stageId"] == "DT128_0:NEW" and item["opportunity"] == 1500.5
    assert {"id", "title", "assignedById", "stageId", "categoryId", "createdTime",
            "updatedTime", "createdBy", "updatedBy", "opened", "companyId", "contactId",
            "begindate", "closedate", "opportunity", "currencyId"} <= set(item)
    moved = ok(emulator, "crm.item.update", {"entityTypeId": 128, "id": item["id"],
                                             "fields": {"stageId": "DT128_0:SUCCESS"}})["item"]
    assert moved["stageSemanticId"] == "S" and moved["previousStageId"] == "DT128_0:NEW"
    history = ok(emulator, "crm.stagehistory.list", {"entityTypeId": 128})["items"]
    assert [(h["TYPE_ID"], h["STAGE_ID"]) for h in history] == [
        ("1", "DT128_0:NEW"), ("3", "DT128_0:SUCCESS")]
    untitled = add_item(emulator, 128)
    assert untitled["title"] == f"Визиты #{untitled['id']}"

    ok(emulator, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": "X",
                                                       "USER_TYPE_ID": "string"}})
    from b24emu.userfields import register_userfield

    register_userfield(emulator.portal, f"CRM_{created['id']}",
                       {"FIELD_NAME": f"UF_CRM_{created['id']}_RESULT",
                        "USER_TYPE_ID": "string"})
    with_uf = ok(emulator, "crm.item.update", {"entityTypeId": 128, "id": item["id"],
                                               "fields": {"ufCrm1Result": "ok"}})["item"]
    assert with_uf["ufCrm1Result"] == "ok"
    assert ok(emulator, "crm.item.fields", {"entityTypeId": 128})["fields"]["ufCrm1Result"][
        "upperName"] == "UF_CRM_1_RESULT"


def test_smart_invoice_table_appears_on_use(emulator: EmulatorServer) -> None:
    assert ok(emulator, "crm.item.list", {"entityTypeId": 31})["items"] == []
    invoice = add_item(emulator, 31, title="Счёт", opportunity=100)
    assert invoice["stageId"] == "DT31_0:N"
    paid = ok(emulator, "crm.item.update", {"entityTypeId": 31, "id": invoice["id"],
                                            "fields": {"stageId": "DT31_0:P"}})["item"]
    assert paid["stageSemanticId"] == "S"


def test_item_events(emulator: EmulatorServer, receiver: Receiver) -> None:
    bind(emulator, receiver, "ONCRMDYNAMICITEMADD", "ONCRMDYNAMICITEMUPDATE",
         "ONCRMDYNAMICITEMDELETE", "ONCRMDEALADD", "ONCRMCONTACTUPDATE")
    etid = add_type(emulator)["entityTypeId"]
    item = add_item(emulator, etid, title="v")
    ok(emulator, "crm.item.update", {"entityTypeId": etid, "id": item["id"],
                                     "fields": {"title": "w"}})
    ok(emulator, "crm.item.delete", {"entityTypeId": etid, "id": item["id"]})
    deal = add_item(emulator, 2, title="d")
    contact = add_item(emulator, 3, name="c")
    ok(emulator, "crm.item.update", {"entityTypeId": 3, "id": contact["id"],
                                     "fields": {"name": "d"}})
    assert emulator.portal.events.wait_idle()
    for event in ("ONCRMDYNAMICITEMADD", "ONCRMDYNAMICITEMUPDATE", "ONCRMDYNAMICITEMDELETE"):
        body = receiver.events(event)[0]
        assert body["data[FIELDS][ID]"] == str(item["id"])
        assert body["data[FIELDS][ENTITY_TYPE_ID]"] == str(etid)
    assert receiver.events("ONCRMDEALADD")[0]["data[FIELDS][ID]"] == str(deal["id"])
    assert receiver.events("ONCRMCONTACTUPDATE")[0]["data[FIELDS][ID]"] == str(contact["id"])


# -- crm.stagehistory.list --------------------------------------------------------------------
def test_stage_history_list(emulator: EmulatorServer) -> None:
    first = add_deal(emulator, TITLE="a")
    second = add_deal(emulator, TITLE="b", CATEGORY_ID=2)
    emulator.portal.clock.advance(86400)
    ok(emulator, "crm.deal.update", {"id": first, "fields": {"STAGE_ID": "PREPARATION"}})
    ok(emulator, "crm.deal.update", {"id": second, "fields": {"STAGE_ID": "C2:WON"}})
    body = rest(emulator, "crm.stagehistory.list", {"entityTypeId": 2}).json()
    assert body["total"] == 4 and "next" not in body
    row = body["result"]["items"][0]
    # Real portals send strings here (the doc page shows ints; SDK fixtures show strings).
    assert list(row) == ["ID", "TYPE_ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID",
                         "STAGE_SEMANTIC_ID", "STAGE_ID"]
    assert all(isinstance(v, str) for v in row.values())
    moved = ok(emulator, "crm.stagehistory.list", {
        "entityTypeId": 2, "filter": {">=CREATED_TIME": body["result"]["items"][2][
            "CREATED_TIME"]}, "order": {"ID": "DESC"}, "select": ["OWNER_ID", "STAGE_ID"]})
    assert moved["items"] == [{"OWNER_ID": str(second), "STAGE_ID": "C2:WON"},
                              {"OWNER_ID": str(first), "STAGE_ID": "PREPARATION"}]
    won = ok(emulator, "crm.stagehistory.list", {"entityTypeId": 2,
                                                 "filter": {"STAGE_SEMANTIC_ID": "S"}})
    assert [(i["TYPE_ID"], i["CATEGORY_ID"]) for i in won["items"]] == [("3", "2")]
    assert ok(emulator, "crm.stagehistory.list", {"entityTypeId": 1})["items"] == []
    resp = rest(emulator, "crm.stagehistory.list", {"entityTypeId": 3})
    assert resp.status_code == 400 and resp.json()["error"] == "ENTITY_TYPE_NOT_SUPPORTED"


def test_stage_history_paging(emulator: EmulatorServer) -> None:
    for _ in range(60):
        add_deal(emulator)
    page = rest(emulator, "crm.stagehistory.list", {"entityTypeId": 2}).json()
    assert len(page["result"]["items"]) == 50 and page["next"] == 50 and page["total"] == 60
    fast = rest(emulator, "crm.stagehistory.list", {"entityTypeId": 2, "start": -1,
                                                    "filter": {">ID": 55}}).json()
    assert len(fast["result"]["items"]) == 5 and fast["total"] == 0 and "next" not in fast
