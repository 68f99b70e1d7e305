"""Contract tests of ``userfieldconfig.*`` and of the user fields they add to ``crm.item.*``."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from b24emu import EmulatorServer
from tests.emulator.helpers import add_user, admin_token, hook, oauth

# Keys of a field in the add/get/update samples (userfieldconfig-add.md, -get.md, -update.md).
FIELD_KEYS = ["id", "entityId", "fieldName", "userTypeId", "xmlId", "sort", "multiple",
              "mandatory", "showFilter", "showInList", "editInList", "isSearchable", "settings",
              "languageId", "editFormLabel", "listColumnLabel", "listFilterLabel",
              "errorMessage", "helpMessage"]
# Five fields of «KPI менеджера» (smart process id 2): postfix, type, extra field keys,
# the value crm.item.add sends and what crm.item returns.
FIELDS: list[tuple[str, str, dict[str, Any], Any, Any]] = [
    ("KPI_VALUE", "double", {"settings": {"PRECISION": 2}}, "87,456", 87.46),
    ("PLAN", "integer", {"mandatory": "Y"}, "120", 120),
    ("COMMENT", "string", {"editFormLabel": "Комментарий"}, "Звонки по плану", "Звонки по плану"),
    ("PERIOD", "date", {}, "2024-09-01", "2024-09-01T00:00:00+07:00"),
    ("IS_CLOSED", "boolean", {}, "Y", "Y"),
]
CAMEL = {"KPI_VALUE": "ufCrm2KpiValue", "PLAN": "ufCrm2Plan", "COMMENT": "ufCrm2Comment",
         "PERIOD": "ufCrm2Period", "IS_CLOSED": "ufCrm2IsClosed"}


def call(emulator: EmulatorServer, name: str, params: dict[str, Any] | None = None,
         *, url: str | None = None) -> requests.Response:
    """A method through the admin's webhook (or another webhook ``url``)."""
    return hook(emulator, name, params, url=url)


def ok(emulator: EmulatorServer, name: str, params: dict[str, Any] | None = None,
       *, url: str | None = None) -> Any:
    """The ``result`` of a successful call."""
    resp = call(emulator, name, params, url=url)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def failure(resp: requests.Response) -> tuple[int, str, str]:
    """Status, ``error`` and ``error_description`` of a failed call."""
    body = resp.json()
    return resp.status_code, body["error"], body["error_description"]


def add_field(emulator: EmulatorServer, entity: str, name: str, user_type: str,
              **extra: Any) -> dict[str, Any]:
    """``userfieldconfig.add`` in module crm; returns ``field``."""
    field: dict[str, Any] = ok(emulator, "userfieldconfig.add", {"moduleId": "crm", "field": {
        "entityId": entity, "fieldName": name, "userTypeId": user_type, **extra}})["field"]
    return field


def webhook(emulator: EmulatorServer, user_id: int, scopes: set[str] | None = None) -> str:
    """A new incoming webhook of ``user_id``, all default scopes unless given."""
    secret = f"hook{user_id}{len(emulator.portal.auth.webhooks)}"
    if scopes is None:
        emulator.portal.auth.add_webhook(user_id, secret)
    else:
        emulator.portal.auth.add_webhook(user_id, secret, frozenset(scopes))
    return f"{emulator.portal.base_url}/rest/{user_id}/{secret}/"


@pytest.fixture
def kpi(emulator: EmulatorServer) -> dict[str, Any]:
    """«KPI менеджера», the second smart process: id 2, entityTypeId 129."""
    ok(emulator, "crm.type.add", {"fields": {"title": "Визиты"}})
    kind: dict[str, Any] = ok(emulator, "crm.type.add", {"fields": {
        "title": "KPI менеджера", "code": "kpi"}})["type"]
    assert (kind["id"], kind["entityTypeId"]) == (2, 129)
    return kind


@pytest.fixture
def kpi_fields(emulator: EmulatorServer, kpi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The five fields, by postfix."""
    return {postfix: add_field(emulator, "CRM_2", f"UF_CRM_2_{postfix}", user_type, **extra)
            for postfix, user_type, extra, _, _ in FIELDS}


# -- add / get / list / update / delete ---------------------------------------------------------
def test_add_returns_the_documented_field(kpi_fields: dict[str, dict[str, Any]]) -> None:
    ids = [int(f["id"]) for f in kpi_fields.values()]
    assert ids == list(range(ids[0], ids[0] + 5))
    kpi_value = kpi_fields["KPI_VALUE"]
    assert list(kpi_value) == FIELD_KEYS
    assert (kpi_value["entityId"], kpi_value["fieldName"], kpi_value["userTypeId"]) == (
        "CRM_2", "UF_CRM_2_KPI_VALUE", "double")
    # Scalars are strings, xmlId null until set, flags Y/N (userfieldconfig-add.md sample).
    assert (kpi_value["id"], kpi_value["sort"], kpi_value["xmlId"]) == (str(ids[0]), "100", None)
    assert (kpi_value["multiple"], kpi_value["mandatory"], kpi_value["showInList"],
            kpi_value["editInList"]) == ("N", "N", "Y", "Y")
    # Passed settings keys override the type's defaults.
    assert kpi_value["settings"] == {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0,
                                     "MAX_VALUE": 0, "DEFAULT_VALUE": None}
    assert kpi_value["languageId"] == [] and kpi_value["editFormLabel"] == []
    assert kpi_fields["PLAN"]["mandatory"] == "Y"
    assert kpi_fields["PLAN"]["settings"]["MIN_VALUE"] == 0
    assert kpi_fields["COMMENT"]["settings"]["ROWS"] == 1
    # A plain-string label applies to every language; unset labels are null per language.
    comment = kpi_fields["COMMENT"]
    assert comment["languageId"] == {"ru": "ru", "en": "en"}
    assert comment["editFormLabel"] == {"ru": "Комментарий", "en": "Комментарий"}
    assert comment["listColumnLabel"] == {"ru": None, "en": None}
    assert kpi_fields["IS_CLOSED"]["settings"]["DISPLAY"] == "CHECKBOX"
    assert "enum" not in comment


def test_add_ignores_keys_add_does_not_process(emulator: EmulatorServer,
                                               kpi: dict[str, Any]) -> None:
    field = add_field(emulator, "CRM_2", "UF_CRM_2_NOTE", "string", showInList="N",
                      listColumnLabel={"ru": "x"}, label="y", xmlId="note", sort="300",
                      editFormLabel={"ru": "Заметка", "en": "Note"},
                      helpMessage={"ru": "Подсказка"}, settings={"ROWS": 3})
    assert (field["showInList"], field["xmlId"], field["sort"]) == ("Y", "note", "300")
    assert field["listColumnLabel"] == {"ru": None, "en": None}
    assert field["helpMessage"] == {"ru": "Подсказка", "en": None}
    assert field["settings"]["ROWS"] == 3 and field["settings"]["SIZE"] == 20


def test_get_list_update_delete(emulator: EmulatorServer,
                                kpi_fields: dict[str, dict[str, Any]]) -> None:
    plan = kpi_fields["PLAN"]
    assert ok(emulator, "userfieldconfig.get", {"moduleId": "crm", "id": plan["id"]}) == {
        "field": plan}

    body = call(emulator, "userfieldconfig.list", {
        "moduleId": "crm", "filter": {"entityId": "CRM_2"}, "order": {"id": "DESC"},
        "select": ["id", "fieldName"]}).json()
    assert body["total"] == 5 and "next" not in body
    assert body["result"]["fields"] == [{"id": f["id"], "fieldName": f["fieldName"]}
                                        for f in reversed(kpi_fields.values())]
    # Labels come only with select[language] (precision tutorial, userfieldconfig-list.md).
    plain = ok(emulator, "userfieldconfig.list", {"moduleId": "crm",
                                                  "filter": {"fieldName": "UF_CRM_2_COMMENT"}})
    assert [list(f) for f in plain["fields"]] == [FIELD_KEYS[:13]]
    labelled = ok(emulator, "userfieldconfig.list", {
        "moduleId": "crm", "select": {"0": "*", "language": "ru"},
        "filter": {"@userTypeId": ["string", "double"]}})["fields"]
    assert [f["fieldName"] for f in labelled] == ["UF_CRM_2_KPI_VALUE", "UF_CRM_2_COMMENT"]
    assert labelled[1]["languageId"] == {"ru": "ru"}
    assert labelled[1]["editFormLabel"] == {"ru": "Комментарий"}
    assert labelled[1]["listColumnLabel"] is None and labelled[0]["editFormLabel"] is None

    change = {"sort": 50, "mandatory": "N", "editFormLabel": {"en": "Plan"}, "xmlId": "plan",
              "settings": {"MAX_VALUE": 500}, "fieldName": "UF_CRM_2_OTHER", "multiple": "Y",
              "userTypeId": "string"}
    updated = ok(emulator, "userfieldconfig.update", {"moduleId": "crm", "id": plan["id"],
                                                      "field": change})["field"]
    # entityId, fieldName, userTypeId and multiple stay; labels and settings are replaced.
    assert (updated["fieldName"], updated["userTypeId"], updated["multiple"]) == (
        "UF_CRM_2_PLAN", "integer", "N")
    assert (updated["sort"], updated["mandatory"], updated["xmlId"]) == ("50", "N", "plan")
    assert updated["languageId"] == {"en": "en"} and updated["editFormLabel"] == {"en": "Plan"}
    assert updated["settings"] == {"SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 500,
                                   "DEFAULT_VALUE": None}
    assert ok(emulator, "userfieldconfig.get", {"moduleId": "crm", "id": plan["id"]}) == {
        "field": updated}
    first = ok(emulator, "userfieldconfig.list", {"moduleId": "crm",
                                                  "filter": {"entityId": "CRM_2"}})["fields"]
    assert first[0]["fieldName"] == "UF_CRM_2_PLAN"  # Default order: sort, then id.

    item = ok(emulator, "crm.item.add", {"entityTypeId": 129, "fields": {"ufCrm2Plan": 7}})
    assert ok(emulator, "userfieldconfig.delete", {"moduleId": "crm", "id": plan["id"]}) is None
    resp = call(emulator, "userfieldconfig.get", {"moduleId": "crm", "id": plan["id"]})
    assert failure(resp) == (400, "", "You do not have permission to view user field settings")
    got = ok(emulator, "crm.item.get", {"entityTypeId": 129, "id": item["item"]["id"]})["item"]
    assert "ufCrm2Plan" not in got
    assert "ufCrm2Plan" not in ok(emulator, "crm.item.fields", {"entityTypeId": 129})["fields"]


def test_enum_items(emulator: EmulatorServer, kpi: dict[str, Any]) -> None:
    field = add_field(emulator, "CRM_2", "UF_CRM_2_GRADE", "enumeration", multiple="Y", enum=[
        {"value": "Выполнен", "def": "Y", "sort": 100}, {"value": "Не выполнен", "sort": 200}])
    items = field["enum"]
    assert [(i["value"], i["def"], i["sort"]) for i in items] == [
        ("Выполнен", "Y", "100"), ("Не выполнен", "N", "200")]
    assert all(i["userFieldId"] == field["id"] and isinstance(i["id"], str) for i in items)
    assert field["settings"] == {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "CAPTION_NO_VALUE": "",
                                 "SHOW_NO_VALUE": "Y"}
    change = [{"id": items[0]["id"], "value": "Выполнен полностью"},
              {"id": items[1]["id"], "del": "Y"}, {"value": "Перевыполнен", "sort": 50}]
    # Without userTypeId=enumeration the enum part of update is not applied.
    same = ok(emulator, "userfieldconfig.update", {"moduleId": "crm", "id": field["id"],
                                                   "field": {"enum": change}})["field"]
    assert same["enum"] == items
    as_enum = {"userTypeId": "enumeration", "enum": change}
    changed = ok(emulator, "userfieldconfig.update", {"moduleId": "crm", "id": field["id"],
                                                      "field": as_enum})["field"]
    assert [i["value"] for i in changed["enum"]] == ["Перевыполнен", "Выполнен полностью"]
    chosen = int(changed["enum"][0]["id"])
    item = ok(emulator, "crm.item.add", {"entityTypeId": 129,
                                         "fields": {"ufCrm2Grade": [chosen]}})["item"]
    assert item["ufCrm2Grade"] == [chosen]
    desc = ok(emulator, "crm.item.fields", {"entityTypeId": 129})["fields"]["ufCrm2Grade"]
    assert desc["type"] == "enumeration" and desc["isMultiple"] is True
    assert desc["items"][0] == {"ID": changed["enum"][1]["id"], "VALUE": "Выполнен полностью"}


def test_list_pages_by_fifty(emulator: EmulatorServer) -> None:
    for i in range(55):
        add_field(emulator, "CRM_DEAL", f"UF_CRM_DEAL_F{i:02d}", "string")
    page = call(emulator, "userfieldconfig.list", {"moduleId": "crm"}).json()
    assert (len(page["result"]["fields"]), page["total"], page["next"]) == (50, 55, 50)
    rest = call(emulator, "userfieldconfig.list", {"moduleId": "crm", "start": 50}).json()
    assert [f["fieldName"] for f in rest["result"]["fields"]] == [
        f"UF_CRM_DEAL_F{i}" for i in range(50, 55)]
    assert rest["total"] == 55 and "next" not in rest


# -- the fields in crm.item ---------------------------------------------------------------------
@pytest.fixture
def kpi_items(emulator: EmulatorServer, kpi_fields: dict[str, dict[str, Any]]) -> list[int]:
    """Three items: every field set, other values, no values."""
    first = {CAMEL[postfix]: sent for postfix, _, _, sent, _ in FIELDS}
    second = {"ufCrm2KpiValue": 40, "ufCrm2Plan": 80, "ufCrm2Comment": "Встречи",
              "ufCrm2Period": "2024-10-01", "ufCrm2IsClosed": "N"}
    ids = []
    for title, values in (("Иванов, сентябрь", first), ("Петров, октябрь", second),
                          ("Сидоров, пусто", {})):
        item = ok(emulator, "crm.item.add", {"entityTypeId": 129,
                                             "fields": {"title": title, **values}})["item"]
        ids.append(item["id"])
    return ids


def test_items_carry_typed_values(emulator: EmulatorServer, kpi_items: list[int]) -> None:
    item = ok(emulator, "crm.item.get", {"entityTypeId": 129, "id": kpi_items[0]})["item"]
    for postfix, _, _, _, expected in FIELDS:
        value = item[CAMEL[postfix]]
        assert value == expected and type(value) is type(expected), postfix
    empty = ok(emulator, "crm.item.get", {"entityTypeId": 129, "id": kpi_items[2]})["item"]
    assert all(empty[name] is None for name in CAMEL.values())

    original = ok(emulator, "crm.item.get", {"entityTypeId": 129, "id": kpi_items[0],
                                             "useOriginalUfNames": "Y"})["item"]
    assert original["UF_CRM_2_KPI_VALUE"] == 87.46 and original["UF_CRM_2_IS_CLOSED"] == "Y"
    assert not set(CAMEL.values()) & set(original)

    updated = ok(emulator, "crm.item.update", {"entityTypeId": 129, "id": kpi_items[0],
                                               "useOriginalUfNames": "Y", "fields": {
                                                   "UF_CRM_2_PLAN": 150,
                                                   "UF_CRM_2_KPI_VALUE": 1.005}})["item"]
    assert (updated["UF_CRM_2_PLAN"], updated["UF_CRM_2_KPI_VALUE"]) == (150, 1.01)
    listed = ok(emulator, "crm.item.list", {"entityTypeId": 129, "order": {"id": "ASC"},
                                            "select": ["ufCrm2Plan", "ufCrm2Comment"]})
    assert listed["items"][1] == {"id": kpi_items[1], "ufCrm2Plan": 80, "ufCrm2Comment": "Встречи"}


def test_precision_rounds_on_save(emulator: EmulatorServer, kpi: dict[str, Any]) -> None:
    # Without PRECISION a double rounds to an integer (how-to-add-precision-to-user-field.md).
    add_field(emulator, "CRM_2", "UF_CRM_2_SCORE", "double")
    add_field(emulator, "CRM_2", "UF_CRM_2_RATE", "double", settings={"PRECISION": 3})
    item = ok(emulator, "crm.item.add", {"entityTypeId": 129, "fields": {
        "ufCrm2Score": 4.5, "ufCrm2Rate": "1,23456"}})["item"]
    assert (item["ufCrm2Score"], item["ufCrm2Rate"]) == (5, 1.235)


def test_item_fields_describe_user_fields(emulator: EmulatorServer,
                                          kpi_fields: dict[str, dict[str, Any]]) -> None:
    fields = ok(emulator, "crm.item.fields", {"entityTypeId": 129})["fields"]
    for postfix, user_type, _, _, _ in FIELDS:
        desc = fields[CAMEL[postfix]]
        assert (desc["upperName"], desc["type"], desc["isDynamic"]) == (
            f"UF_CRM_2_{postfix}", user_type, True)
    assert fields["ufCrm2Plan"]["isRequired"] is True
    assert fields["ufCrm2Comment"]["title"] == "Комментарий"
    assert fields["ufCrm2KpiValue"]["settings"]["PRECISION"] == 2
    upper = ok(emulator, "crm.item.fields", {"entityTypeId": 129, "useOriginalUfNames": "Y"})
    assert upper["fields"]["UF_CRM_2_PERIOD"]["type"] == "date"
    assert "ufCrm2Period" not in upper["fields"]


@pytest.mark.parametrize(("flt", "expected"), [
    ({">ufCrm2KpiValue": 50}, [0]),
    ({"<=ufCrm2KpiValue": 50}, [1]),
    ({"ufCrm2Plan": 80}, [1]),
    ({"@ufCrm2Plan": [80, 120]}, [0, 1]),
    ({"%ufCrm2Comment": "звон"}, [0]),
    ({">=ufCrm2Period": "2024-09-15"}, [1]),
    ({"ufCrm2IsClosed": 1}, [0]),
    ({"ufCrm2IsClosed": 0}, [1]),
    ({"UF_CRM_2_PLAN": 120}, [0]),
    ({"0": {"logic": "OR", "0": {"ufCrm2Plan": 80}, "1": {"ufCrm2IsClosed": 1}}}, [0, 1]),
])
def test_filter_by_user_field(emulator: EmulatorServer, kpi_items: list[int],
                              flt: dict[str, Any], expected: list[int]) -> None:
    items = ok(emulator, "crm.item.list", {"entityTypeId": 129, "filter": flt,
                                           "select": ["id"]})["items"]
    assert [i["id"] for i in items] == [kpi_items[i] for i in expected]


def test_filter_with_original_names(emulator: EmulatorServer, kpi_items: list[int]) -> None:
    items = ok(emulator, "crm.item.list", {"entityTypeId": 129, "useOriginalUfNames": "Y",
                                           "filter": {">UF_CRM_2_PLAN": 100},
                                           "select": ["UF_CRM_2_PLAN"]})["items"]
    assert items == [{"id": kpi_items[0], "UF_CRM_2_PLAN": 120}]


@pytest.mark.parametrize(("name", "camel"), [
    ("UF_CRM_2_KPI_VALUE", "ufCrm2KpiValue"),
    ("UF_CRM_2_1747309727", "ufCrm2_1747309727"),
    ("UF_CRM_2_DIGIT10", "ufCrm_2_DIGIT10"),
    ("UF_CRM_2_DIGIT_10", "ufCrm_2_DIGIT_10"),
])
def test_item_names_follow_the_documented_rules(emulator: EmulatorServer, kpi: dict[str, Any],
                                                name: str, camel: str) -> None:
    add_field(emulator, "CRM_2", name, "string")
    item = ok(emulator, "crm.item.add", {"entityTypeId": 129, "fields": {camel: "v"}})["item"]
    assert item[camel] == "v"


# -- the same store as crm.<entity>.userfield.* ------------------------------------------------
@pytest.mark.parametrize(("entity", "legacy", "type_id", "base"), [
    ("CRM_DEAL", "deal", 2, {"title": "Сделка"}),
    ("CRM_CONTACT", "contact", 3, {"name": "Иван"}),
    ("CRM_COMPANY", "company", 4, {"title": "ООО Ромашка"}),
])
def test_shared_with_legacy_userfields(emulator: EmulatorServer, entity: str, legacy: str,
                                       type_id: int, base: dict[str, Any]) -> None:
    name = f"UF_{entity}_NPS"
    created = add_field(emulator, entity, name, "integer", editFormLabel={"ru": "NPS"})
    rows = ok(emulator, f"crm.{legacy}.userfield.list")
    assert [(r["ID"], r["FIELD_NAME"], r["ENTITY_ID"]) for r in rows] == [
        (created["id"], name, entity)]
    old_id = ok(emulator, f"crm.{legacy}.userfield.add", {"fields": {
        "FIELD_NAME": "SOURCE_NOTE", "USER_TYPE_ID": "string", "LABEL": "Источник"}})
    listed = ok(emulator, "userfieldconfig.list", {"moduleId": "crm",
                                                   "filter": {"entityId": entity}})["fields"]
    assert [f["fieldName"] for f in listed] == [name, "UF_CRM_SOURCE_NOTE"]
    old = ok(emulator, "userfieldconfig.get", {"moduleId": "crm", "id": old_id})["field"]
    assert old["editFormLabel"] == {"ru": "Источник", "en": "Источник"}
    ok(emulator, f"crm.{legacy}.userfield.update", {"id": created["id"],
                                                    "fields": {"MANDATORY": "Y"}})
    assert ok(emulator, "userfieldconfig.get", {"moduleId": "crm", "id": created["id"]})[
        "field"]["mandatory"] == "Y"

    camel = f"ufCrm{entity[4:].capitalize()}Nps"
    item = ok(emulator, "crm.item.add", {"entityTypeId": type_id,
                                         "fields": {**base, camel: 9}})["item"]
    assert item[camel] == 9
    assert ok(emulator, f"crm.{legacy}.get", {"id": item["id"]})[name] == "9"
    ok(emulator, "userfieldconfig.delete", {"moduleId": "crm", "id": created["id"]})
    assert call(emulator, f"crm.{legacy}.userfield.get", {"id": created["id"]}).status_code == 400
    assert name not in ok(emulator, f"crm.{legacy}.get", {"id": item["id"]})


def test_smart_invoice_fields(emulator: EmulatorServer) -> None:
    field = add_field(emulator, "CRM_SMART_INVOICE", "UF_CRM_SMART_INVOICE_PO_NUMBER", "string")
    assert field["entityId"] == "CRM_SMART_INVOICE"
    invoice = ok(emulator, "crm.item.add", {"entityTypeId": 31, "fields": {
        "title": "Счёт", "ufCrmSmartInvoicePoNumber": "PO-17"}})["item"]
    assert invoice["ufCrmSmartInvoicePoNumber"] == "PO-17"
    found = ok(emulator, "crm.item.list", {"entityTypeId": 31, "useOriginalUfNames": "Y",
                                           "filter": {"UF_CRM_SMART_INVOICE_PO_NUMBER": "PO-17"},
                                           "select": ["UF_CRM_SMART_INVOICE_PO_NUMBER"]})
    assert found["items"] == [{"id": invoice["id"], "UF_CRM_SMART_INVOICE_PO_NUMBER": "PO-17"}]
    desc = ok(emulator, "crm.item.fields", {"entityTypeId": 31})["fields"]
    assert desc["ufCrmSmartInvoicePoNumber"]["upperName"] == "UF_CRM_SMART_INVOICE_PO_NUMBER"


# -- errors ------------------------------------------------------------------------------------
CANNOT_CREATE = (400, "", "You cannot create custom fields")


@pytest.mark.parametrize(("method", "params", "expected"), [
    ("userfieldconfig.add", {"field": {}}, (400, "100",
                                            "Could not find value for parameter {moduleId}")),
    ("userfieldconfig.list", {}, (400, "100", "Could not find value for parameter {moduleId}")),
    ("userfieldconfig.get", {"moduleId": "rpa", "id": 1},
     (400, "", "No settings for UserFieldAccess")),
    ("userfieldconfig.add", {"moduleId": "crm"},
     (400, "100", "Could not find value for parameter {field}")),
    ("userfieldconfig.get", {"moduleId": "crm"},
     (400, "100", "Could not find value for parameter {id}")),
    ("userfieldconfig.get", {"moduleId": "crm", "id": 999},
     (400, "", "You do not have permission to view user field settings")),
    ("userfieldconfig.update", {"moduleId": "crm", "id": 999, "field": {"sort": 1}},
     (400, "", "You cannot change the settings of the user field")),
    ("userfieldconfig.delete", {"moduleId": "crm", "id": 999},
     (400, "", "You cannot delete the user field")),
])
def test_request_errors(emulator: EmulatorServer, method: str, params: dict[str, Any],
                        expected: tuple[int, str, str]) -> None:
    assert failure(call(emulator, method, params)) == expected


@pytest.mark.parametrize(("field", "expected"), [
    # entityTypeId instead of the smart process id (how-to-add-user-field-to-spa.md).
    ({"entityId": "CRM_129", "fieldName": "UF_CRM_129_X"}, CANNOT_CREATE),
    ({"entityId": "CRM_LEAD", "fieldName": "UF_CRM_LEAD_X"}, CANNOT_CREATE),
    ({"entityId": None}, CANNOT_CREATE),
    ({"userTypeId": "nope"}, CANNOT_CREATE),
    ({"fieldName": ""}, (400, "", "The 'FIELD_NAME' field is not found.")),
    ({"userTypeId": None}, (400, "", "The 'USER_TYPE_ID' field is not found.")),
    ({"fieldName": "UF_CRM_KPI"}, (400, "", "Incorrect field code")),
    ({"fieldName": "uf_crm_2_kpi"}, (400, "", "Incorrect field code")),
    ({"fieldName": "UF_CRM_2_"}, (400, "", "Incorrect field code")),
    ({"fieldName": "UF_CRM_2_КПИ"}, (400, "", "Field name contains invalid characters. "
                                              "Allowed characters are: A-Z, 0-9 and _.")),
    ({"fieldName": "UF_CRM_2_" + "X" * 42},
     (400, "", "Field name is too long (more than 50 characters).")),
    ({"fieldName": "UF_CRM_2_KPI_VALUE"},
     (400, "", "The field UF_CRM_2_KPI_VALUE for object CRM_2 already exists.")),
])
def test_add_errors(emulator: EmulatorServer, kpi_fields: dict[str, dict[str, Any]],
                    field: dict[str, Any], expected: tuple[int, str, str]) -> None:
    sent = {"entityId": "CRM_2", "fieldName": "UF_CRM_2_NEW", "userTypeId": "string", **field}
    sent = {k: v for k, v in sent.items() if v is not None}  # None: the key is not sent.
    resp = call(emulator, "userfieldconfig.add", {"moduleId": "crm", "field": sent})
    assert failure(resp) == expected


def test_fifty_characters_is_the_limit(emulator: EmulatorServer, kpi: dict[str, Any]) -> None:
    name = "UF_CRM_2_" + "X" * 41
    assert len(name) == 50 and add_field(emulator, "CRM_2", name, "string")["fieldName"] == name


METHODS = [("userfieldconfig.add", {"field": {"entityId": "CRM_2", "fieldName": "UF_CRM_2_Z",
                                              "userTypeId": "string"}}),
           ("userfieldconfig.list", {}), ("userfieldconfig.get", {"id": 1}),
           ("userfieldconfig.update", {"id": 1, "field": {"sort": 5}}),
           ("userfieldconfig.delete", {"id": 1})]


@pytest.mark.parametrize(("method", "params"), METHODS)
def test_scopes(emulator: EmulatorServer, kpi: dict[str, Any], method: str,
                params: dict[str, Any]) -> None:
    body = {"moduleId": "crm", **params}
    crm_only = call(emulator, method, body, url=webhook(emulator, 1, {"crm"}))
    assert crm_only.status_code == 403 and crm_only.json()["error"] == "insufficient_scope"
    # The module's scope is needed as well (userfieldconfig/index.md).
    no_crm = call(emulator, method, body, url=webhook(emulator, 1, {"userfieldconfig"}))
    assert failure(no_crm) == (400, "", "The current method required more scopes. (crm)")


def test_app_has_the_scope_by_default(emulator: EmulatorServer, kpi: dict[str, Any]) -> None:
    emulator.portal.app.installed = True
    resp = oauth(emulator, admin_token(emulator.portal), "userfieldconfig.add", {
        "moduleId": "crm", "field": {"entityId": "CRM_2", "fieldName": "UF_CRM_2_APP",
                                     "userTypeId": "string"}})
    assert resp.status_code == 200 and resp.json()["result"]["field"]["fieldName"] == "UF_CRM_2_APP"


def test_non_admin(emulator: EmulatorServer, kpi_fields: dict[str, dict[str, Any]]) -> None:
    url = webhook(emulator, add_user(emulator.portal, "Менеджер"))
    field_id = kpi_fields["PLAN"]["id"]
    denied = {
        "userfieldconfig.add": ({"field": {"entityId": "CRM_2", "fieldName": "UF_CRM_2_MINE",
                                           "userTypeId": "string"}}, CANNOT_CREATE[2]),
        "userfieldconfig.update": ({"id": field_id, "field": {"sort": 1}},
                                   "You cannot change the settings of the user field"),
        "userfieldconfig.delete": ({"id": field_id}, "You cannot delete the user field"),
    }
    for method, (params, text) in denied.items():
        resp = call(emulator, method, {"moduleId": "crm", **params}, url=url)
        assert failure(resp) == (400, "", text), method
    # Reading needs only read access to the object (userfieldconfig-get.md, -list.md).
    assert ok(emulator, "userfieldconfig.get", {"moduleId": "crm", "id": field_id},
              url=url)["field"] == kpi_fields["PLAN"]
    assert len(ok(emulator, "userfieldconfig.list", {"moduleId": "crm"}, url=url)["fields"]) == 5


def test_in_batch(emulator: EmulatorServer, kpi: dict[str, Any]) -> None:
    result = ok(emulator, "batch", {"halt": 1, "cmd": {
        "add": "userfieldconfig.add?moduleId=crm&field[entityId]=CRM_2"
               "&field[fieldName]=UF_CRM_2_BATCH&field[userTypeId]=integer",
        "get": "userfieldconfig.get?moduleId=crm&id=$result[add][field][id]"}})
    assert result["result"]["get"]["field"]["fieldName"] == "UF_CRM_2_BATCH"
