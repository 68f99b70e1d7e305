"""``batch``: up to 50 commands, ``halt``, ``$result`` references, PHP ``[]``, HTTP 200 (4.4)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import requests

from b24emu import EmulatorServer
from b24emu.portal import Portal
from tests.emulator.helpers import TIMEOUT, add_user, example, hook, oauth, quick_install

SUB_TIME_KEYS = set(example("resp-batch.json")["result"]["result_time"]["get_user"])


def _department(portal: Portal) -> None:
    portal.departments.insert({"NAME": "DEMO", "SORT": 500, "PARENT": None, "UF_HEAD": 1})


def _batch(emulator: EmulatorServer, cmd: Any, halt: int = 0,
           url: str | None = None) -> requests.Response:
    return hook(emulator, "batch", {"halt": halt, "cmd": cmd}, url=url)


def test_linked_calls_like_the_documented_example(emulator: EmulatorServer) -> None:
    """``user.current`` → ``department.get?ID=$result[get_user][UF_DEPARTMENT][0]``."""
    _department(emulator.portal)
    resp = _batch(emulator, {
        "get_user": "user.current",
        "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
    })
    assert resp.status_code == 200
    body = resp.json()
    sample = example("resp-batch.json")
    assert list(body) == list(sample)
    result = body["result"]
    assert list(result) == list(sample["result"])
    assert result["result"]["get_user"]["UF_DEPARTMENT"] == [1]
    assert result["result"]["get_department"] == [
        {"ID": "1", "NAME": "DEMO", "SORT": 500, "UF_HEAD": "1"}]
    # Empty maps are PHP ``[]``, filled ones objects, exactly like resp-batch.json.
    assert result["result_error"] == sample["result"]["result_error"] == []
    assert result["result_next"] == sample["result"]["result_next"] == []
    assert result["result_total"] == sample["result"]["result_total"] == {"get_department": 1}
    assert list(result["result_time"]) == ["get_user", "get_department"]
    for block in result["result_time"].values():
        # Sub-results carry no operating* keys (4.2).
        assert set(block) == SUB_TIME_KEYS
    # The outer time has no operating* either, as in the sample.
    assert set(body["time"]) == set(sample["time"])


def test_error_example_halt0_matches_the_sample(emulator: EmulatorServer) -> None:
    """Every command refused: HTTP 200 and exactly ``resp-batch-error-halt0.json``."""
    emulator.portal.auth.add_webhook(1, "crmonly", frozenset({"crm"}))
    resp = _batch(emulator, {
        "get_user": "user.current",
        "get_department": "department.get?ID=$result[get_user][UF_DEPARTMENT][0]",
    }, url=f"{emulator.url}/rest/1/crmonly/")
    assert resp.status_code == 200
    expected = example("resp-batch-error-halt0.json")
    assert resp.json()["result"] == expected["result"]


def test_halt_1_stops_at_the_first_error(emulator: EmulatorServer) -> None:
    """``halt=1``: the failing command is reported and nothing after it runs (batch.md)."""
    add_user(emulator.portal, "Second")
    cmd = {"one": "user.get?ID=1", "bad": "no.such.method", "three": "user.get?ID=2"}
    halted = _batch(emulator, cmd, halt=1).json()["result"]
    assert list(halted["result"]) == ["one"]
    assert list(halted["result_error"]) == ["bad"]
    assert halted["result_error"]["bad"] == {"error": "ERROR_METHOD_NOT_FOUND",
                                             "error_description": "Method not found!"}
    going = _batch(emulator, cmd, halt=0).json()["result"]
    assert list(going["result"]) == ["one", "three"]
    assert list(going["result_error"]) == ["bad"]
    assert list(going["result_time"]) == ["one", "three"]


@pytest.mark.parametrize("halt", [True, "1", "Y"])
def test_halt_spellings(emulator: EmulatorServer, halt: Any) -> None:
    """``halt`` is a boolean however it is written."""
    resp = hook(emulator, "batch", {"halt": halt, "cmd": {"a": "nope", "b": "profile"}})
    assert resp.json()["result"]["result"] == []


def test_list_references(emulator: EmulatorServer) -> None:
    """``$result[cmd][0][ID]`` takes a field of the first row of a list (batch.md)."""
    second = add_user(emulator.portal, "Second")
    body = _batch(emulator, {
        "find": f"user.get?FILTER[ID]={second}",
        "again": "user.get?ID=$result[find][0][ID]",
        "text": "im.notify.system.add?USER_ID=1&MESSAGE=user $result[find][0][ID] found",
    }).json()["result"]
    assert body["result"]["again"][0]["ID"] == str(second)
    note = emulator.portal.notifications.get(body["result"]["text"])
    assert note is not None
    assert note["MESSAGE"] == f"user {second} found"


def test_total_and_next_per_command(emulator: EmulatorServer) -> None:
    """``result_total``/``result_next`` per command, as the list envelope would say."""
    for i in range(60):
        add_user(emulator.portal, f"U{i}")
    body = _batch(emulator, {"p1": "user.get", "p2": "user.get?start=50",
                             "one": "user.current"}).json()["result"]
    assert body["result_total"] == {"p1": 61, "p2": 61}
    assert body["result_next"] == {"p1": 50}
    assert len(body["result"]["p2"]) == 11


def test_fifty_commands_pass(emulator: EmulatorServer) -> None:
    """50 commands is the maximum that runs (batch.md)."""
    cmd = {f"c{i}": "server.time" for i in range(50)}
    body = _batch(emulator, cmd).json()["result"]
    assert len(body["result"]) == 50


def test_more_than_fifty_commands(emulator: EmulatorServer) -> None:
    """51 commands: ``ERROR_BATCH_LENGTH_EXCEEDED`` (4.3: HTTP 400), nothing runs."""
    emulator.portal.notifications.insert({"MARK": 1})
    cmd = {f"c{i}": "im.notify.system.add?USER_ID=1&MESSAGE=x" for i in range(51)}
    resp = _batch(emulator, cmd)
    assert resp.status_code == 400
    assert resp.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    assert len(emulator.portal.notifications) == 1


def test_nested_batch_is_refused(emulator: EmulatorServer) -> None:
    """No ``batch`` inside ``batch`` since rest 24.0.0: ``ERROR_BATCH_METHOD_NOT_ALLOWED``."""
    resp = _batch(emulator, {"inner": "batch?cmd[x]=profile", "ok": "profile"})
    assert resp.status_code == 200
    body = resp.json()["result"]
    assert body["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert list(body["result"]) == ["ok"]


def test_http_200_even_when_every_command_fails(emulator: EmulatorServer) -> None:
    """Sub-call errors of any HTTP status stay inside a 200 answer (4.4)."""
    resp = _batch(emulator, {"a": "nope", "b": "event.bind?event=ONCRMDEALADD&handler=x",
                             "c": "im.notify?MESSAGE=x"})
    assert resp.status_code == 200
    errors = resp.json()["result"]["result_error"]
    assert {k: v["error"] for k, v in errors.items()} == {
        "a": "ERROR_METHOD_NOT_FOUND", "b": "WRONG_AUTH_TYPE", "c": "USER_ID_EMPTY"}


def test_cmd_as_a_list_gives_lists(emulator: EmulatorServer) -> None:
    """A ``cmd`` array keyed 0..n-1 comes back as JSON lists, as PHP encodes it."""
    body = _batch(emulator, ["profile", "server.time"]).json()["result"]
    assert isinstance(body["result"], list) and len(body["result"]) == 2
    assert isinstance(body["result_time"], list)
    partial = _batch(emulator, ["nope", "profile"]).json()["result"]
    # Key 1 alone is not a list in PHP, so it stays an object; key 0 alone is a list.
    assert partial["result"] == {"1": partial["result"]["1"]}
    assert isinstance(partial["result_error"], list)
    assert partial["result_error"][0]["error"] == "ERROR_METHOD_NOT_FOUND"


def test_fast_bitrix24_json_body(emulator: EmulatorServer) -> None:
    """The exact JSON fast-bitrix24 posts for ``get_all`` pages (bitrix24-clients.md 1.4)."""
    for i in range(70):
        add_user(emulator.portal, f"U{i}")
    resp = hook(emulator, "batch", {"halt": 0, "cmd": {
        "cmd0000000000": "user.get?order[ID]=ASC&start=50&",
        "cmd0000000001": "user.get?FILTER[%3E%3DID]=60&select[0]=ID&",
    }})
    body = resp.json()["result"]
    assert [u["ID"] for u in body["result"]["cmd0000000000"]][:2] == ["51", "52"]
    assert body["result"]["cmd0000000001"][0]["ID"] == "60"
    assert body["result_total"] == {"cmd0000000000": 71, "cmd0000000001": 12}


def test_form_body_and_double_encoded_query_string(emulator: EmulatorServer) -> None:
    """Form bodies, and query strings with double-encoded commands, like the doc's HTTP tab."""
    _department(emulator.portal)
    url = emulator.portal.webhook_url + "batch"
    sub = "department.get?ID=$result[get_user][UF_DEPARTMENT][0]"
    form = requests.post(url, timeout=TIMEOUT, data={
        "halt": "0", "cmd[get_user]": "user.current", "cmd[get_department]": sub})
    query = ("halt=0&cmd[get_user]=user.current%3F&cmd[get_department]="
             + quote(quote(sub, safe=""), safe="%"))
    by_get = requests.get(f"{url}?{query}", timeout=TIMEOUT)
    for resp in (form, by_get):
        assert resp.status_code == 200
        result = resp.json()["result"]
        assert result["result_error"] == []
        assert result["result"]["get_department"][0]["NAME"] == "DEMO"


def test_batch_through_oauth(emulator: EmulatorServer) -> None:
    """``auth`` at the top level of a batch body applies to every command (1.3)."""
    token, _ = quick_install(emulator)
    body = oauth(emulator, token, "batch", {"cmd": {"info": "app.info", "me": "user.current"}})
    result = body.json()["result"]
    assert result["result"]["info"]["INSTALLED"] is True
    assert result["result"]["me"]["ID"] == "1"
