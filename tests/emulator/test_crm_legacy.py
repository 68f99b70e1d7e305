"""Contract tests of the legacy ``crm.deal|company|contact.*`` methods over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests

from b24emu import EmulatorServer

EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "b24-examples"


def example(name: str) -> Any:
    """A verbatim doc sample."""
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def rest(emulator: EmulatorServer, name: str, params: dict[str, Any] | None = None,
         ) -> requests.Response:
    """POST a method through the admin's incoming webhook (JSON body)."""
    return requests.post(f"{emulator.portal.webhook_url}{name}.json", json=params or {},
                         timeout=10)


def ok(emulator: EmulatorServer, name: str, params: dict[str, Any] | None = None) -> Any:
    """The ``result`` of a successful call."""
    resp = rest(emulator, name, params)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


class Receiver:
    """A loopback HTTP endpoint that records form-encoded event POSTs."""

    def __init__(self) -> None:
        bodies: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                bodies.append(dict(parse_qsl(self.rfile.read(size).decode())))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                """Keep test output quiet."""

        self.bodies = bodies
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def events(self, name: str) -> list[dict[str, str]]:
        """Bodies received for one event."""
        return [b for b in self.bodies if b.get("event") == name]


@pytest.fixture
def receiver(emulator: EmulatorServer) -> Iterator[Receiver]:
    """An installed app whose handlers point at a local receiver."""
    emulator.portal.app.installed = True
    emulator.portal.app.application_token = "51856fefc120afa4b628cc82d3935cce"
    recv = Receiver()
    try:
        yield recv
    finally:
        recv.close()


def bind(emulator: EmulatorServer, receiver: Receiver, *events: str) -> None:
    """Bind the app's online handlers for ``events``."""
    for event in events:
        emulator.portal.events.bind(event, receiver.url, emulator.portal.app.client_id)


def add_deal(emulator: EmulatorServer, **fields: Any) -> int:
    """Create a deal and return its ID."""
    result = ok(emulator, "crm.deal.add", {"fields": fields})
    assert isinstance(result, int)
    return result


# -- shapes against the doc samples -------------------------------------------------------------
def test_deal_get_matches_doc_sample(emulator: EmulatorServer) -> None:
    sample = example("resp-crm.deal.get.json")["result"]
    ok(emulator, "crm.deal.userfield.add",
       {"fields": {"FIELD_NAME": "1721244482250", "USER_TYPE_ID": "string", "LABEL": "Note"}})
    company = ok(emulator, "crm.company.add", {"fields": {"TITLE": "ООО Ромашка"}})
    contact = ok(emulator, "crm.contact.add", {"fields": {"NAME": "Иван"}})
    deal = add_deal(emulator, TITLE="New Deal #1", TYPE_ID="COMPLEX", STAGE_ID="PREPARATION",
                    PROBABILITY=99, CURRENCY_ID="EUR", OPPORTUNITY=1000000,
                    IS_MANUAL_OPPORTUNITY="Y", COMPANY_ID=company, CONTACT_ID=contact,
                    BEGINDATE="2024-08-30", CLOSEDATE="2024-09-09",
                    COMMENTS="[B]Example comment[/B]", SOURCE_ID="CALLBACK",
                    UTM_SOURCE="google", UF_CRM_1721244482250="Hello world!")
    got = ok(emulator, "crm.deal.get", {"id": deal})
    assert set(got) == set(sample) - {"PARENT_ID_1220"}
    for key, value in got.items():
        assert value is None or isinstance(value, str), key
        if sample[key] is not None and value is not None:
            assert isinstance(sample[key], str)
    assert got["ID"] == str(deal)
    assert got["OPPORTUNITY"] == "1000000.00"
    assert got["TAX_VALUE"] == "0.00"
    assert got["PROBABILITY"] == "99"
    assert got["BEGINDATE"] == "2024-08-30T00:00:00+07:00"  # A date is a datetime at midnight.
    assert got["CLOSED"] == "N" and got["STAGE_SEMANTIC_ID"] == "P"
    assert got["UF_CRM_1721244482250"] == "Hello world!"
    assert got["COMPANY_ID"] == str(company) and got["CONTACT_ID"] == str(contact)
    assert got["LEAD_ID"] is None and got["QUOTE_ID"] is None
    assert datetime.fromisoformat(got["DATE_CREATE"]).utcoffset() is not None


def test_deal_list_matches_doc_sample(emulator: EmulatorServer) -> None:
    sample = example("resp-crm.deal.list.json")
    for i in range(6):
        add_deal(emulator, TITLE=f"[A] Deal {i}", TYPE_ID="COMPLEX", CATEGORY_ID=1,
                 OPPORTUNITY="19999.99", IS_MANUAL_OPPORTUNITY="Y")
    select = list(sample["result"][0])
    body = rest(emulator, "crm.deal.list", {"select": select}).json()
    assert body["total"] == 6 and "next" not in body
    assert set(body) == set(sample)
    assert set(body["time"]) >= set(sample["time"])
    row = body["result"][0]
    assert list(row) == select
    assert all(isinstance(v, str) for v in row.values())
    assert row["STAGE_ID"] == "C1:NEW" and row["CATEGORY_ID"] == "1"
    assert row["OPPORTUNITY"] == "19999.99"


def test_legacy_errors_match_doc_sample(emulator: EmulatorServer) -> None:
    resp = rest(emulator, "crm.deal.add", {"fields": "TITLE"})
    assert resp.status_code == 400
    assert resp.json() == example("error-crm.deal.get.json")
    for params, text in (({}, "ID is not defined or invalid"),
                         ({"id": "abc"}, "ID is not defined or invalid"),
                         ({"id": 999}, "Not found")):
        resp = rest(emulator, "crm.deal.get", params)
        assert resp.status_code == 400
        assert resp.json() == {"error": "", "error_description": text}
    deal = add_deal(emulator, TITLE="x")
    resp = rest(emulator, "crm.deal.update", {"id": deal, "fields": "x"})
    assert resp.json()["error_description"] == "Parameter 'fields' must be array."


def test_params_are_case_insensitive(emulator: EmulatorServer) -> None:
    deal = ok(emulator, "crm.deal.add", {"FIELDS": {"TITLE": "Upper"}})
    assert ok(emulator, "crm.deal.get", {"ID": deal})["TITLE"] == "Upper"
    assert ok(emulator, "crm.deal.update", {"Id": deal, "Fields": {"TITLE": "Mixed"}}) is True
    rows = ok(emulator, "crm.deal.list", {"FILTER": {"ID": deal}, "SELECT": ["TITLE"]})
    assert rows == [{"ID": str(deal), "TITLE": "Mixed"}]


def test_untitled_deal_gets_default_title_and_defaults(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator)
    got = ok(emulator, "crm.deal.get", {"id": deal})
    assert got["TITLE"] == f"Сделка #{deal}"
    assert (got["STAGE_ID"], got["CATEGORY_ID"], got["CURRENCY_ID"]) == ("NEW", "0", "RUB")
    assert (got["OPENED"], got["CLOSED"], got["ASSIGNED_BY_ID"]) == ("Y", "N", "1")
    assert got["DATE_CREATE"] == got["DATE_MODIFY"] == got["MOVED_TIME"]
    assert add_deal(emulator, CATEGORY_ID=3) == deal + 1
    assert ok(emulator, "crm.deal.get", {"id": deal + 1})["STAGE_ID"] == "C3:NEW"


# -- filters, order, select, paging -------------------------------------------------------------
@pytest.fixture
def five_deals(emulator: EmulatorServer) -> list[int]:
    """Deals with amounts 100..500, two funnels, one company and distinct dates."""
    ids = []
    for i, title in enumerate(["Alpha", "Beta", "Gamma", "Delta", "alphabet"], start=1):
        ids.append(add_deal(emulator, TITLE=title, OPPORTUNITY=i * 100,
                            CATEGORY_ID=0 if i % 2 else 1, BEGINDATE=f"2024-0{i}-15",
                            COMPANY_ID=7 if i == 3 else None))
    return ids


@pytest.mark.parametrize(("flt", "expected"), [
    ({"OPPORTUNITY": 300}, [3]),
    ({"=OPPORTUNITY": "300"}, [3]),
    ({">OPPORTUNITY": 300}, [4, 5]),
    ({">=OPPORTUNITY": 300}, [3, 4, 5]),
    ({"<OPPORTUNITY": 300}, [1, 2]),
    ({"<=OPPORTUNITY": 300}, [1, 2, 3]),
    ({"!OPPORTUNITY": 300}, [1, 2, 4, 5]),
    ({"!=OPPORTUNITY": 300}, [1, 2, 4, 5]),
    ({"@ID": [2, 4]}, [2, 4]),
    ({"!@ID": [2, 4]}, [1, 3, 5]),
    ({"ID": [1, 5]}, [1, 5]),
    ({"%TITLE": "alpha"}, [1, 5]),
    ({"!%TITLE": "alpha"}, [2, 3, 4]),
    ({"=%TITLE": "%ta"}, [2, 4]),
    ({"%=TITLE": "Gam%"}, [3]),
    ({"><OPPORTUNITY": [200, 400]}, [2, 3, 4]),
    ({">=BEGINDATE": "2024-03-01", "<BEGINDATE": "2024-05-01T00:00:00+07:00"}, [3, 4]),
    ({"CATEGORY_ID": 1}, [2, 4]),
    ({"STAGE_ID": "C1:NEW"}, [2, 4]),
    ({"COMPANY_ID": 7}, [3]),
    ({"NO_SUCH_FIELD": 1}, [1, 2, 3, 4, 5]),  # Unknown fields are ignored.
    ({">ID": 3}, [4, 5]),
    ({"<=ID": 2}, [1, 2]),
])
def test_deal_filters(emulator: EmulatorServer, five_deals: list[int],
                      flt: dict[str, Any], expected: list[int]) -> None:
    rows = ok(emulator, "crm.deal.list", {"filter": flt, "select": ["ID"]})
    assert [int(r["ID"]) for r in rows] == [five_deals[i - 1] for i in expected]


def test_deal_order_and_select(emulator: EmulatorServer, five_deals: list[int]) -> None:
    rows = ok(emulator, "crm.deal.list", {"order": {"OPPORTUNITY": "DESC"},
                                          "select": ["TITLE", "OPPORTUNITY"]})
    assert [r["OPPORTUNITY"] for r in rows] == ["500.00", "400.00", "300.00", "200.00",
                                                "100.00"]
    assert set(rows[0]) == {"ID", "TITLE", "OPPORTUNITY"}
    rows = ok(emulator, "crm.deal.list", {"order": {"CATEGORY_ID": "DESC", "ID": "ASC"},
                                          "select": ["ID"]})
    assert [int(r["ID"]) for r in rows] == [2, 4, 1, 3, 5]
    full = ok(emulator, "crm.deal.list", {"filter": {"ID": 1}})[0]
    assert "CONTACT_IDS" not in full  # Multiple fields only when named.
    named = ok(emulator, "crm.deal.list", {"filter": {"ID": 1}, "select": ["CONTACT_IDS"]})
    assert named[0]["CONTACT_IDS"] == []


def test_paging_by_fifty(emulator: EmulatorServer) -> None:
    portal = emulator.portal
    for _ in range(120):
        ok(emulator, "crm.deal.add", {"fields": {"TITLE": "bulk"}})
    first = rest(emulator, "crm.deal.list", {"select": ["ID"]}).json()
    assert (len(first["result"]), first["total"], first["next"]) == (50, 120, 50)
    second = rest(emulator, "crm.deal.list", {"select": ["ID"], "start": 50}).json()
    assert second["result"][0]["ID"] == "51" and second["next"] == 100
    last = rest(emulator, "crm.deal.list", {"select": ["ID"], "start": 100}).json()
    assert len(last["result"]) == 20 and "next" not in last and last["total"] == 120
    fast = rest(emulator, "crm.deal.list", {"select": ["ID"], "start": -1,
                                            "order": {"ID": "ASC"}, "filter": {">ID": 110}}).json()
    assert [r["ID"] for r in fast["result"]] == [str(i) for i in range(111, 121)]
    assert fast["total"] == 0 and "next" not in fast
    assert len(portal.deals) == 120


def test_list_is_fast_on_a_large_table(emulator: EmulatorServer) -> None:
    portal = emulator.portal
    for i in range(100_000):
        portal.deals.insert({"TITLE": f"D{i}", "STAGE_ID": "NEW", "CATEGORY_ID": 0,
                             "OPPORTUNITY": float(i)})
    body = rest(emulator, "crm.deal.list", {"select": ["ID", "TITLE"], "start": -1,
                                            "order": {"ID": "ASC"},
                                            "filter": {">ID": 99_960}}).json()
    assert [r["ID"] for r in body["result"]][:2] == ["99961", "99962"]
    assert body["time"]["processing"] < 0.5
    body = rest(emulator, "crm.deal.list", {"select": ["ID"], "start": 99_950}).json()
    assert body["total"] == 100_000 and len(body["result"]) == 50 and "next" not in body
    assert body["time"]["processing"] < 0.5


# -- writes -------------------------------------------------------------------------------------
def test_update_ignores_unknown_and_read_only(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="x")
    before = ok(emulator, "crm.deal.get", {"id": deal})
    emulator.portal.clock.advance(60)
    assert ok(emulator, "crm.deal.update", {
        "id": deal, "fields": {"TITLE": "y", "NOPE": 1, "DATE_CREATE": "2000-01-01",
                               "CREATED_BY_ID": 5, "CATEGORY_ID": 4}}) is True
    after = ok(emulator, "crm.deal.get", {"id": deal})
    assert after["TITLE"] == "y"
    assert after["DATE_CREATE"] == before["DATE_CREATE"]
    assert after["CREATED_BY_ID"] == "1" and after["CATEGORY_ID"] == "0"
    assert after["DATE_MODIFY"] > before["DATE_MODIFY"]
    assert after["MOVED_TIME"] == before["MOVED_TIME"]  # No stage change.


def test_stage_change_updates_system_fields_and_history(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="x")
    emulator.portal.clock.advance(3600)
    ok(emulator, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "EXECUTING"}})
    ok(emulator, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "LOSE"}})
    got = ok(emulator, "crm.deal.get", {"id": deal})
    assert (got["STAGE_SEMANTIC_ID"], got["CLOSED"]) == ("F", "Y")
    assert got["MOVED_TIME"] == got["DATE_MODIFY"] != got["DATE_CREATE"]
    history = ok(emulator, "crm.stagehistory.list", {"entityTypeId": 2,
                                                     "filter": {"OWNER_ID": deal}})["items"]
    assert [(h["TYPE_ID"], h["STAGE_ID"], h["STAGE_SEMANTIC_ID"]) for h in history] == [
        ("1", "NEW", "P"), ("2", "EXECUTING", "P"), ("3", "LOSE", "F")]


def test_delete(emulator: EmulatorServer) -> None:
    deal = add_deal(emulator, TITLE="x")
    assert ok(emulator, "crm.deal.delete", {"id": deal}) is True
    assert rest(emulator, "crm.deal.get", {"id": deal}).json()["error_description"] == "Not found"
    assert rest(emulator, "crm.deal.delete", {"id": deal}).status_code == 400


def test_contact_multifields(emulator: EmulatorServer) -> None:
    contact = ok(emulator, "crm.contact.add", {"fields": {
        "NAME": "Иван", "LAST_NAME": "Петров", "BIRTHDATE": "1990-05-01",
        "PHONE": [{"VALUE": "+7 999 000-00-00", "VALUE_TYPE": "WORK"}]}})
    got = ok(emulator, "crm.contact.get", {"id": contact})
    assert (got["HAS_PHONE"], got["HAS_EMAIL"]) == ("Y", "N")
    birth = datetime.fromisoformat(got["BIRTHDATE"])  # 1990 Novosibirsk had +08:00 (DST).
    assert (birth.date().isoformat(), birth.hour, birth.minute) == ("1990-05-01", 0, 0)
    phone = got["PHONE"][0]
    assert phone == {"ID": phone["ID"], "VALUE_TYPE": "WORK", "VALUE": "+7 999 000-00-00",
                     "TYPE_ID": "PHONE"}
    assert "EMAIL" not in got
    ok(emulator, "crm.contact.update", {"id": contact, "fields": {
        "EMAIL": [{"VALUE": "ivan@example.com", "VALUE_TYPE": "HOME"}],
        "PHONE": [{"ID": phone["ID"], "VALUE": ""}]}})
    rows = ok(emulator, "crm.contact.list", {"select": ["*", "PHONE", "EMAIL"]})
    assert rows[0]["PHONE"] == [] and rows[0]["EMAIL"][0]["VALUE"] == "ivan@example.com"
    assert (rows[0]["HAS_PHONE"], rows[0]["HAS_EMAIL"]) == ("N", "Y")
    assert "PHONE" not in ok(emulator, "crm.contact.list", {})[0]
    company = ok(emulator, "crm.company.add", {"fields": {
        "TITLE": "ООО", "EMAIL": [{"VALUE": "a@b.c", "VALUE_TYPE": "WORK"}]}})
    assert ok(emulator, "crm.company.get", {"id": company})["HAS_EMAIL"] == "Y"
    assert ok(emulator, "crm.company.list", {"filter": {"HAS_EMAIL": "Y"}})[0]["TITLE"] == "ООО"


def test_fields_description(emulator: EmulatorServer) -> None:
    fields = ok(emulator, "crm.deal.fields")
    assert fields["TITLE"] == {"type": "string", "isRequired": False, "isReadOnly": False,
                               "isImmutable": False, "isMultiple": False, "isDynamic": False,
                               "title": fields["TITLE"]["title"]}
    assert fields["STAGE_ID"]["statusType"] == "DEAL_STAGE"
    assert fields["CATEGORY_ID"]["isImmutable"] is True
    assert fields["ID"]["isReadOnly"] is True
    assert ok(emulator, "crm.contact.fields")["PHONE"]["isMultiple"] is True
    assert "TITLE" in ok(emulator, "crm.company.fields")


# -- user fields --------------------------------------------------------------------------------
def test_userfields_lifecycle(emulator: EmulatorServer) -> None:
    field_id = ok(emulator, "crm.deal.userfield.add", {"fields": {
        "FIELD_NAME": "KPI_SCORE", "USER_TYPE_ID": "double", "LABEL": "KPI", "SORT": 200}})
    enum_id = ok(emulator, "crm.deal.userfield.add", {"fields": {
        "FIELD_NAME": "UF_CRM_RESULT", "USER_TYPE_ID": "enumeration",
        "EDIT_FORM_LABEL": {"ru": "Итог", "en": "Result"},
        "LIST": [{"VALUE": "Успех"}, {"VALUE": "Отказ"}]}})
    assert isinstance(field_id, int) and enum_id == field_id + 1
    rows = ok(emulator, "crm.deal.userfield.list", {"order": {"SORT": "DESC"}})
    assert [r["FIELD_NAME"] for r in rows] == ["UF_CRM_KPI_SCORE", "UF_CRM_RESULT"]
    row = rows[0]
    assert row["ID"] == str(field_id) and row["ENTITY_ID"] == "CRM_DEAL"
    assert (row["SORT"], row["MULTIPLE"], row["MANDATORY"]) == ("200", "N", "N")
    assert row["EDIT_FORM_LABEL"] == "KPI"
    enum = ok(emulator, "crm.deal.userfield.get", {"id": enum_id})
    assert enum["EDIT_FORM_LABEL"] == "Итог"
    assert [i["VALUE"] for i in enum["LIST"]] == ["Успех", "Отказ"]
    assert all(isinstance(v, str) for i in enum["LIST"] for v in i.values())
    assert ok(emulator, "crm.deal.userfield.list",
              {"filter": {"USER_TYPE_ID": "enumeration"}})[0]["ID"] == str(enum_id)
    assert ok(emulator, "crm.company.userfield.list") == []

    success = int(enum["LIST"][0]["ID"])
    deal = add_deal(emulator, TITLE="uf", UF_CRM_KPI_SCORE="7.5", UF_CRM_RESULT=success)
    add_deal(emulator, TITLE="other", UF_CRM_KPI_SCORE=1)
    got = ok(emulator, "crm.deal.get", {"id": deal})
    assert (got["UF_CRM_KPI_SCORE"], got["UF_CRM_RESULT"]) == ("7.50", str(success))
    found = ok(emulator, "crm.deal.list", {"filter": {">UF_CRM_KPI_SCORE": 5}, "select": ["ID"]})
    assert found == [{"ID": str(deal)}]
    found = ok(emulator, "crm.deal.list", {"filter": {"UF_CRM_RESULT": str(success)},
                                           "select": ["ID", "UF_*"]})
    assert found[0]["ID"] == str(deal) and "UF_CRM_KPI_SCORE" in found[0]
    desc = ok(emulator, "crm.deal.fields")["UF_CRM_RESULT"]
    assert desc["isDynamic"] is True and desc["type"] == "enumeration"
    assert (desc["title"], desc["formLabel"], desc["listLabel"]) == (
        "UF_CRM_RESULT", "Итог", "Итог")
    assert desc["items"][0] == {"ID": str(success), "VALUE": "Успех"}

    assert ok(emulator, "crm.deal.userfield.update", {"id": field_id, "fields": {
        "EDIT_FORM_LABEL": "KPI score", "MANDATORY": "Y"}}) is True
    updated = ok(emulator, "crm.deal.userfield.get", {"id": field_id})
    assert (updated["EDIT_FORM_LABEL"], updated["MANDATORY"]) == ("KPI score", "Y")
    assert ok(emulator, "crm.deal.fields")["UF_CRM_KPI_SCORE"]["isRequired"] is True
    assert ok(emulator, "crm.deal.userfield.delete", {"id": field_id}) is True
    assert "UF_CRM_KPI_SCORE" not in ok(emulator, "crm.deal.get", {"id": deal})
    assert rest(emulator, "crm.deal.userfield.get", {"id": field_id}).status_code == 400


def test_userfield_errors(emulator: EmulatorServer) -> None:
    fields = {"FIELD_NAME": "X", "USER_TYPE_ID": "string"}
    ok(emulator, "crm.contact.userfield.add", {"fields": fields})
    assert rest(emulator, "crm.contact.userfield.add", {"fields": fields}).status_code == 400
    bad = rest(emulator, "crm.contact.userfield.add",
               {"fields": {"FIELD_NAME": "Y", "USER_TYPE_ID": "nope"}})
    assert bad.json()["error"] == "ERROR_CORE"
    flag = ok(emulator, "crm.contact.userfield.add",
              {"fields": {"FIELD_NAME": "VIP", "USER_TYPE_ID": "boolean"}})
    assert flag > 0
    contact = ok(emulator, "crm.contact.add", {"fields": {"NAME": "A", "UF_CRM_VIP": "Y"}})
    assert ok(emulator, "crm.contact.get", {"id": contact})["UF_CRM_VIP"] == "1"
    assert len(ok(emulator, "crm.contact.list", {"filter": {"UF_CRM_VIP": 1}})) == 1


# -- events -------------------------------------------------------------------------------------
def test_events_carry_only_ids(emulator: EmulatorServer, receiver: Receiver) -> None:
    bind(emulator, receiver, "ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE",
         "ONCRMCONTACTADD", "ONCRMCOMPANYUPDATE")
    deal = add_deal(emulator, TITLE="evt")
    ok(emulator, "crm.deal.update", {"id": deal, "fields": {"TITLE": "evt2"}})
    ok(emulator, "crm.deal.delete", {"id": deal})
    contact = ok(emulator, "crm.contact.add", {"fields": {"NAME": "x"}})
    company = ok(emulator, "crm.company.add", {"fields": {"TITLE": "x"}})
    ok(emulator, "crm.company.update", {"id": company, "fields": {"TITLE": "y"}})
    assert emulator.portal.events.wait_idle()
    sample = example("event-ONCRMDEALADD.json")
    added = receiver.events("ONCRMDEALADD")[0]
    assert added["data[FIELDS][ID]"] == str(deal)
    assert {k.split("[")[0] for k in added} == set(sample)
    # refresh_token comes only with long-lived events (ONAPPINSTALL, ONOFFLINEEVENT).
    assert {k[5:-1] for k in added if k.startswith("auth[")} == set(sample["auth"]) - {
        "refresh_token"}
    assert receiver.events("ONCRMDEALUPDATE")[0]["data[FIELDS][ID]"] == str(deal)
    assert receiver.events("ONCRMDEALDELETE")[0]["data[FIELDS][ID]"] == str(deal)
    assert receiver.events("ONCRMCONTACTADD")[0]["data[FIELDS][ID]"] == str(contact)
    assert receiver.events("ONCRMCOMPANYUPDATE")[0]["data[FIELDS][ID]"] == str(company)


# -- fast-bitrix24 ------------------------------------------------------------------------------
def test_fast_bitrix24_get_all_and_batch(emulator: EmulatorServer) -> None:
    from fast_bitrix24 import Bitrix

    for i in range(130):
        emulator.portal.deals.insert({"TITLE": f"D{i}", "STAGE_ID": "NEW", "CATEGORY_ID": 0})
    bx = Bitrix(emulator.portal.webhook_url, verbose=False, respect_velocity_policy=True,
                requests_per_second=50.0)
    deals = bx.get_all("crm.deal.list", {"select": ["ID", "TITLE"]})
    assert sorted(int(d["ID"]) for d in deals) == list(range(1, 131))
    assert deals[0].keys() == {"ID", "TITLE"}
    raw = bx.call("batch", {"halt": 0, "cmd": {
        "one": "crm.deal.get?id=1",
        "list": "crm.deal.list?select[]=ID&filter[>ID]=125",
        "missing": "crm.deal.get?id=999",
        "title": "crm.deal.get?id=$result[one][ID]"}}, raw=True)
    result = raw["result"]
    assert result["result"]["one"]["TITLE"] == "D0"
    assert [r["ID"] for r in result["result"]["list"]] == ["126", "127", "128", "129", "130"]
    assert result["result_total"]["list"] == 5
    assert result["result_error"]["missing"]["error_description"] == "Not found"
    assert result["result"]["title"]["ID"] == "1"
