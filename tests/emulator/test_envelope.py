"""The REST envelope: ``result``/``total``/``next``/``time``, error bodies, scopes (4.2, 4.3)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from b24emu import EmulatorServer
from b24emu.errors import (
    ApiError,
    access_denied,
    argument_null,
    legacy_crm,
    not_found_item,
    task_core,
)
from tests.emulator.helpers import TIMEOUT, add_user, example, hook, oauth, quick_install

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish"}


def _check_time(block: dict[str, Any]) -> None:
    assert set(block) >= TIME_KEYS
    assert isinstance(block["start"], float)
    assert block["finish"] >= block["start"]
    assert block["duration"] == pytest.approx(block["finish"] - block["start"])
    assert ISO.match(block["date_start"]) and ISO.match(block["date_finish"])


def test_single_result_envelope(emulator: EmulatorServer) -> None:
    """``{"result": ..., "time": {...}}`` with ``operating`` and ``operating_reset_at`` (4.2)."""
    resp = hook(emulator, "server.time")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert list(body) == ["result", "time"]
    _check_time(body["time"])
    # Outside batch the time block carries the method's budget use, as resp-tasks.task.list.json.
    assert isinstance(body["time"]["operating_reset_at"], int)
    assert body["time"]["operating"] >= 0
    assert set(body["time"]) == set(example("resp-tasks.task.list.json")["time"])


def test_time_block_dates_use_the_portal_offset(emulator: EmulatorServer) -> None:
    """``date_start`` is the portal's local time with offset (+07:00 in Novosibirsk)."""
    emulator.portal.clock.set(datetime(2024, 8, 29, 7, 30, 38, tzinfo=UTC), frozen=True)
    block = hook(emulator, "server.time").json()["time"]
    assert block["date_start"] == "2024-08-29T14:30:38+07:00"
    assert block["start"] == datetime(2024, 8, 29, 7, 30, 38, tzinfo=UTC).timestamp()


def test_list_envelope_total_and_next(emulator: EmulatorServer) -> None:
    """Lists add ``total`` and, only while rows remain, ``next`` (4.2)."""
    for i in range(60):
        add_user(emulator.portal, f"U{i}")
    first = hook(emulator, "user.get").json()
    assert list(first) == ["result", "total", "next", "time"]
    assert (len(first["result"]), first["total"], first["next"]) == (50, 61, 50)
    last = hook(emulator, "user.get", {"start": 50}).json()
    assert list(last) == ["result", "total", "time"]
    assert (len(last["result"]), last["total"]) == (11, 61)


def test_start_minus_one_has_total_zero_and_no_next(emulator: EmulatorServer) -> None:
    """``start=-1`` turns the count off: ``total`` 0, no ``next`` (huge-data.md)."""
    for i in range(60):
        add_user(emulator.portal, f"U{i}")
    body = hook(emulator, "user.get", {"start": -1}).json()
    assert (len(body["result"]), body["total"]) == (50, 0)
    assert "next" not in body


@pytest.mark.parametrize("name", ["user.current", "USER.CURRENT", "user.current.json"])
def test_method_names_are_case_insensitive_and_take_json_suffix(
        emulator: EmulatorServer, name: str) -> None:
    """Method names ignore case and the optional ``.json`` suffix (2, 4.1)."""
    resp = hook(emulator, name)
    assert resp.status_code == 200
    assert resp.json()["result"]["ID"] == "1"


def test_get_with_query_string_and_form_post(emulator: EmulatorServer) -> None:
    """GET with a query string and a form POST reach the method like a JSON body (4.1)."""
    add_user(emulator.portal, "Second")
    url = emulator.portal.webhook_url + "user.get.json"
    by_get = requests.get(url, params={"FILTER[ID]": "2"}, timeout=TIMEOUT).json()
    by_form = requests.post(url, data={"FILTER[ID]": "2"}, timeout=TIMEOUT).json()
    assert [u["ID"] for u in by_get["result"]] == ["2"]
    assert by_form["result"] == by_get["result"]


def test_method_not_found(emulator: EmulatorServer) -> None:
    """An unknown method: 404 ``ERROR_METHOD_NOT_FOUND`` "Method not found!" (4.3)."""
    resp = hook(emulator, "crm.nothing.here")
    assert resp.status_code == 404
    assert resp.json() == {"error": "ERROR_METHOD_NOT_FOUND",
                           "error_description": "Method not found!"}


def test_invalid_json_body(emulator: EmulatorServer) -> None:
    """A body that is not a JSON object is refused, not guessed at."""
    resp = requests.post(emulator.portal.webhook_url + "user.current", data="[1,2",
                         headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert resp.status_code == 400
    assert resp.json()["error"] == "INVALID_REQUEST"


def test_webhook_missing_scope(emulator: EmulatorServer) -> None:
    """A webhook without the scope: 403 ``insufficient_scope``, worded for a webhook (4.3)."""
    emulator.portal.auth.add_webhook(1, "crmonly", frozenset({"crm"}))
    url = f"{emulator.url}/rest/1/crmonly/"
    resp = hook(emulator, "user.current", url=url)
    assert resp.status_code == 403
    assert resp.json() == {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the "
                             "webhook token"}
    # ``basic`` methods need no scope (api-reference/scopes/permissions.md).
    assert hook(emulator, "server.time", url=url).status_code == 200


def test_app_missing_scope(emulator: EmulatorServer) -> None:
    """An app token without the scope: same code, worded for an access token."""
    token, _ = quick_install(emulator)
    emulator.portal.app.scopes = frozenset({"crm"})
    resp = oauth(emulator, token, "department.get")
    assert resp.status_code == 403
    assert resp.json()["error_description"].endswith("provided by the access token")


@pytest.mark.parametrize(
    ("granted", "method", "allowed"),
    [
        ({"user_brief"}, "user.get", True),  # user_brief/user_basic satisfy user.*
        ({"user_basic"}, "user.current", True),
        ({"sonet"}, "sonet_group.get", True),  # the page says sonet, the table sonet_group
        ({"socialnetwork"}, "sonet_group.get", True),
        ({"crm"}, "sonet_group.get", False),
        ({"crm"}, "im.notify.system.add", False),
        ({"crm"}, "calendar.settings.get", False),
        (set(), "profile", True),
    ],
)
def test_scope_aliases(emulator: EmulatorServer, granted: set[str], method: str,
                       allowed: bool) -> None:
    """Scope codes and their documented aliases (5.7, scopes/permissions.md)."""
    emulator.portal.auth.add_webhook(1, "scoped", frozenset(granted))
    resp = hook(emulator, method, url=f"{emulator.url}/rest/1/scoped/")
    assert (resp.status_code != 403) is allowed, resp.text


@pytest.mark.parametrize(
    ("err", "status", "body"),
    [
        # Legacy crm.deal/contact/company: HTTP 400 with an empty code (error-crm.deal.get.json).
        (legacy_crm("Parameter 'fields' must be array."), 400,
         example("error-crm.deal.get.json")),
        (not_found_item(), 400, {"error": "NOT_FOUND", "error_description": "Element not found"}),
        # tasks.task.*: ERROR_CORE with a trailing <br> (tasks-task-add.md).
        (task_core("Task title is not specified"), 400,
         {"error": "ERROR_CORE", "error_description": "Task title is not specified<br>"}),
        (access_denied(), 403, {"error": "ACCESS_DENIED", "error_description": "Access denied!"}),
        (argument_null("options"), 400,
         {"error": "ERROR_ARGUMENT", "error_description": "Argument 'options' is null or empty",
          "argument": "options"}),
    ],
)
def test_error_styles_per_module(err: ApiError, status: int, body: dict[str, Any]) -> None:
    """Each module's error style, as methods raise it (4.3)."""
    assert err.status == status
    assert err.body() == body


@pytest.mark.parametrize(
    ("method", "params", "status", "code"),
    [
        ("im.notify.system.add", {"MESSAGE": "x"}, 400, "USER_ID_EMPTY"),
        ("event.bind", {"event": "ONCRMDEALADD", "handler": "http://x/"}, 403,
         "WRONG_AUTH_TYPE"),
        ("app.option.get", {}, 403, "ACCESS_DENIED"),
        ("b24emu.faults.add", {"kind": "nope"}, 400, "ERROR_ARGUMENT"),
    ],
)
def test_error_envelope_over_http(emulator: EmulatorServer, method: str, params: dict[str, Any],
                                  status: int, code: str) -> None:
    """An error is ``{"error", "error_description"}`` with its HTTP status and no ``result``."""
    resp = hook(emulator, method, params)
    assert resp.status_code == status
    body = resp.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str)
    assert "result" not in body and "time" not in body


@pytest.mark.parametrize(("status", "code"), [(500, "INTERNAL_SERVER_ERROR"),
                                              (503, "QUERY_LIMIT_EXCEEDED")])
def test_method_error_fault(emulator: EmulatorServer, status: int, code: str) -> None:
    """The ``method_error`` fault answers a 5xx the given number of times, then recovers."""
    hook(emulator, "b24emu.faults.add",
         {"kind": "method_error", "pattern": "server.*", "count": 1, "status": status})
    failed = hook(emulator, "server.time")
    assert (failed.status_code, failed.json()["error"]) == (status, code)
    assert hook(emulator, "server.time").status_code == 200
    assert hook(emulator, "user.current").status_code == 200  # pattern did not match


def test_faults_on_every_method_can_still_be_cleared(emulator: EmulatorServer) -> None:
    """A ``method_error`` on ``*`` does not hit the harness's own ``b24emu.*`` methods."""
    hook(emulator, "b24emu.faults.add", {"kind": "method_error", "pattern": "*"})
    assert hook(emulator, "profile").status_code == 500
    assert hook(emulator, "b24emu.faults.clear").json()["result"] is True
    assert hook(emulator, "profile").status_code == 200


def test_method_error_fault_on_batch_fails_the_whole_request(emulator: EmulatorServer) -> None:
    """A 503 fault on ``batch`` answers the HTTP request itself with 503, once per count."""
    url = emulator.portal.webhook_url
    requests.post(url + "b24emu.faults.add", json={"kind": "method_error", "pattern": "batch",
                                                   "status": 503, "count": 1}, timeout=10)
    body = {"cmd": {"t": "server.time"}}
    first = requests.post(url + "batch", json=body, timeout=10)
    assert (first.status_code, first.json()["error"]) == (503, "QUERY_LIMIT_EXCEEDED")
    second = requests.post(url + "batch", json=body, timeout=10)
    assert second.status_code == 200 and "t" in second.json()["result"]["result"]
