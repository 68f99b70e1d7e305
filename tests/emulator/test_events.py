"""Events: bindings, the online wire format, faults, the offline queue, outgoing webhooks (3)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from b24emu import EmulatorServer
from b24emu.dispatch import act
from tests.emulator.helpers import (
    Installed,
    Receiver,
    add_user,
    bind,
    dead_url,
    emit,
    example,
    hook,
    install,
    oauth,
)

SAMPLE_AUTH = set(example("event-ONCRMDEALADD.json")["auth"])
TOKENLESS_AUTH = set(example("event-ONCRMDEALADD-outgoing-webhook.json")["auth"])


def _setup(emulator: EmulatorServer, rcv: Receiver) -> Installed:
    return install(emulator, rcv)


def _user_token(emulator: EmulatorServer, user_id: int) -> str:
    access, _ = emulator.portal.auth.issue(emulator.portal.app.client_id, user_id)
    return access.token


def _idle(emulator: EmulatorServer) -> None:
    assert emulator.portal.events.wait_idle(5)


# -- registration ---------------------------------------------------------------------------
def test_bind_get_unbind(emulator: EmulatorServer) -> None:
    """``event.bind`` → true, ``event.get`` rows, ``event.unbind`` → ``{"count": N}`` (3.1)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        resp = bind(emulator, app.access, "ONCRMDEALADD", rcv.url())
        assert resp.json()["result"] is True
        bind(emulator, app.access, "ONCRMDEALUPDATE", rcv.url(), auth_type=1)
        rows = oauth(emulator, app.access, "event.get").json()["result"]
        assert rows == [
            {"event": "ONCRMDEALADD", "handler": rcv.url(), "auth_type": "0", "offline": 0},
            {"event": "ONCRMDEALUPDATE", "handler": rcv.url(), "auth_type": "1", "offline": 0},
        ]
        gone = oauth(emulator, app.access, "event.unbind",
                     {"event": "ONCRMDEALADD", "handler": rcv.url()})
        assert gone.json()["result"] == {"count": 1}
        again = oauth(emulator, app.access, "event.unbind",
                      {"event": "ONCRMDEALADD", "handler": rcv.url()})
        assert again.json()["result"] == {"count": 0}


def test_unbind_auth_type_zero_keeps_user_bound_handlers(emulator: EmulatorServer) -> None:
    """``auth_type=0`` removes only handlers without one; no auth_type removes all."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/a"))
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/b"), auth_type=1)
        zero = oauth(emulator, app.access, "event.unbind",
                     {"event": "ONCRMDEALADD", "auth_type": 0})
        assert zero.json()["result"] == {"count": 1}
        rest = oauth(emulator, app.access, "event.unbind", {"event": "ONCRMDEALADD"})
        assert rest.json()["result"] == {"count": 1}


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"event": "ONNOTHING", "handler": "http://h/"}, 400, "ERROR_EVENT_NOT_FOUND"),
        ({"event": "ONCRMDEALADD"}, 400, "ERROR_ARGUMENT"),
    ],
)
def test_bind_errors(emulator: EmulatorServer, params: dict[str, Any], status: int,
                     code: str) -> None:
    """An unknown event is ``ERROR_EVENT_NOT_FOUND``; an online bind needs a handler (3.1)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        resp = oauth(emulator, app.access, "event.bind", params)
        assert (resp.status_code, resp.json()["error"]) == (status, code)


def test_duplicate_handler(emulator: EmulatorServer) -> None:
    """Binding the same handler twice: "Handler already exists!" (error-codes.md)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url())
        resp = oauth(emulator, app.access, "event.bind",
                     {"event": "onCrmDealAdd", "handler": rcv.url()})
        assert resp.status_code == 400
        assert resp.json() == {"error": "ERROR_HANDLER_ALREADY_EXIST",
                               "error_description": "Handler already exists!"}


@pytest.mark.parametrize(
    "params",
    [{"event": "ONCRMDEALADD", "event_type": "offline"},
     {"event": "ONCRMDEALADD", "handler": "http://h/", "auth_type": 1}],
)
def test_non_admin_limits(emulator: EmulatorServer, params: dict[str, Any]) -> None:
    """Non-admins bind online events for themselves only: else 403 ``ACCESS_DENIED`` (3.1)."""
    with Receiver() as rcv:
        _setup(emulator, rcv)
        user = add_user(emulator.portal, "Manager")
        token = _user_token(emulator, user)
        resp = oauth(emulator, token, "event.bind", params)
        assert (resp.status_code, resp.json()["error"]) == (403, "ACCESS_DENIED")
        own = oauth(emulator, token, "event.bind",
                    {"event": "ONCRMDEALADD", "handler": rcv.url(), "auth_type": user})
        assert own.json()["result"] is True


@pytest.mark.parametrize("method", ["event.bind", "event.get", "event.unbind", "event.test"])
def test_webhooks_have_no_app_context(emulator: EmulatorServer, method: str) -> None:
    """Incoming webhooks cannot use ``event.*``: 403 ``WRONG_AUTH_TYPE`` (2)."""
    resp = hook(emulator, method, {"event": "ONCRMDEALADD", "handler": "http://h/"})
    assert (resp.status_code, resp.json()["error"]) == (403, "WRONG_AUTH_TYPE")


def test_events_lists_codes(emulator: EmulatorServer) -> None:
    """``events`` returns the event codes the portal knows."""
    codes = hook(emulator, "events").json()["result"]
    assert {"ONCRMDEALADD", "ONTASKUPDATE", "ONAPPUNINSTALL", "ONOFFLINEEVENT"} <= set(codes)


# -- online delivery ------------------------------------------------------------------------
def test_wire_format(emulator: EmulatorServer) -> None:
    """Form-encoded POST, bracketed keys, the triggering user's tokens (3.2)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        # Bound in mixed case, delivered upper case (3.1).
        bind(emulator, app.access, "OnCrmDealAdd", rcv.url("/events"))
        manager = add_user(emulator.portal, "Manager")
        emit(emulator, _user_token(emulator, manager), "ONCRMDEALADD", "deal:6641", 6641)
        _idle(emulator)
        (hit,) = rcv.on("/events")
        assert hit.headers["Content-Type"] == "application/x-www-form-urlencoded"
        form = hit.form
        assert form["event"] == "ONCRMDEALADD"
        assert form["data[FIELDS][ID]"] == "6641"
        assert form["event_handler_id"].isdigit()
        assert form["ts"].isdigit()
        assert abs(int(form["ts"]) - emulator.portal.clock.timestamp()) < 5
        auth = hit.nested["auth"]
        # The sample's keys; refresh_token is only promised for long-lived events (3.2).
        assert set(auth) == SAMPLE_AUTH - {"refresh_token"}
        assert auth["application_token"] == app.application_token
        assert auth["expires_in"] == "3600"
        assert auth["status"] == "L"
        assert (auth["member_id"], auth["domain"]) == (emulator.portal.member_id,
                                                       emulator.portal.domain)
        assert auth["client_endpoint"] == emulator.portal.client_endpoint
        me = oauth(emulator, auth["access_token"], "user.current").json()["result"]
        assert me["ID"] == str(manager)
        handler_ids = [b.id for b in emulator.portal.events.bindings]
        assert int(form["event_handler_id"]) in handler_ids


def test_auth_type_binding_gets_that_users_tokens(emulator: EmulatorServer) -> None:
    """``auth_type`` = the user whose token the handler gets (3.1)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALUPDATE", rcv.url(), auth_type=1)
        manager = add_user(emulator.portal, "Manager")
        emit(emulator, _user_token(emulator, manager), "ONCRMDEALUPDATE", "deal:1", 1)
        _idle(emulator)
        token = rcv.hits[-1].form["auth[access_token]"]
        assert oauth(emulator, token, "user.current").json()["result"]["ID"] == "1"


def test_automation_changes_carry_no_tokens(emulator: EmulatorServer) -> None:
    """A change by an automation rule: ``auth`` without any token (3.2)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALUPDATE", rcv.url("/events"))
        act(emulator.portal, "b24emu.events.emit",
            {"event": "ONCRMDEALUPDATE", "key": "deal:759", "data": {"FIELDS": {"ID": 759}}},
            automation=True)
        _idle(emulator)
        (hit,) = rcv.on("/events")
        auth = hit.nested["auth"]
        assert not {"access_token", "refresh_token", "expires_in", "scope"} & set(auth)
        assert set(auth) >= TOKENLESS_AUTH
        assert auth["application_token"] == app.application_token
        assert hit.form["data[FIELDS][ID]"] == "759"


def test_handler_down_means_event_lost(emulator: EmulatorServer) -> None:
    """Handler down or failing: logged once, never retried (3.5)."""
    with Receiver(status=500) as failing:
        app = _setup(emulator, failing)
        down = dead_url("/down")
        bind(emulator, app.access, "ONCRMDEALADD", down)
        bind(emulator, app.access, "ONCRMDEALADD", failing.url("/fail"))
        emit(emulator, app.access, "ONCRMDEALADD", "deal:1", 1)
        _idle(emulator)
        time.sleep(0.2)
        _idle(emulator)
        log = hook(emulator, "b24emu.events.log").json()["result"]
        to_down = [e for e in log if e["url"] == down]
        to_fail = [e for e in log if e["url"] == failing.url("/fail")]
        assert len(to_down) == 1 and to_down[0]["status"] is None and to_down[0]["error"]
        assert len(to_fail) == 1 and to_fail[0]["status"] == 500
        assert len(failing.on("/fail")) == 1


def test_drop_fault(emulator: EmulatorServer) -> None:
    """``drop_events`` loses the next matching delivery only."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/events"))
        hook(emulator, "b24emu.faults.add",
             {"kind": "drop_events", "pattern": "ONCRMDEAL*", "count": 1})
        emit(emulator, app.access, "ONCRMDEALADD", "deal:1", 1)
        emit(emulator, app.access, "ONCRMDEALADD", "deal:2", 2)
        _idle(emulator)
        assert [h.form["data[FIELDS][ID]"] for h in rcv.on("/events")] == ["2"]
        assert len(emulator.portal.events.dropped) == 1


def test_duplicate_fault(emulator: EmulatorServer) -> None:
    """``duplicate_events`` delivers the same body twice (handlers must be idempotent)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/events"))
        hook(emulator, "b24emu.faults.add", {"kind": "duplicate_events", "count": 1})
        emit(emulator, app.access, "ONCRMDEALADD", "deal:1", 1)
        _idle(emulator)
        first, second = rcv.on("/events")
        assert first.pairs == second.pairs


def test_delay_fault(emulator: EmulatorServer) -> None:
    """``delay_events`` holds a delivery back by ``value`` seconds."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/events"))
        hook(emulator, "b24emu.faults.add", {"kind": "delay_events", "value": 0.4, "count": 1})
        started = time.monotonic()
        emit(emulator, app.access, "ONCRMDEALADD", "deal:1", 1)
        assert emulator.portal.events.pending() == 1
        _idle(emulator)
        (hit,) = rcv.on("/events")
        assert hit.at - started >= 0.35


def test_event_test_fires_onapptest(emulator: EmulatorServer) -> None:
    """``event.test`` → 1 and ONAPPTEST with the params in ``data[QUERY]`` (3.1)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONAPPTEST", rcv.url("/test"))
        assert oauth(emulator, app.access, "event.test", {"x": "42"}).json()["result"] == 1
        _idle(emulator)
        assert rcv.on("/test")[0].form["data[QUERY][x]"] == "42"


def test_unbound_and_other_events_are_not_delivered(emulator: EmulatorServer) -> None:
    """Only bound events reach a handler."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/events"))
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:1", 1)
        oauth(emulator, app.access, "event.unbind", {"event": "ONCRMDEALADD"})
        emit(emulator, app.access, "ONCRMDEALADD", "deal:1", 1)
        _idle(emulator)
        assert rcv.on("/events") == []


# -- outgoing webhook -----------------------------------------------------------------------
def test_outgoing_webhook_auth_block(emulator: EmulatorServer) -> None:
    """An outgoing webhook gets the reduced ``auth`` block of the sample (3.6)."""
    with Receiver() as rcv:
        created = hook(emulator, "b24emu.outgoing_webhook.add",
                       {"handler": rcv.url("/out"), "events": ["OnCrmDealAdd"]}).json()["result"]
        act(emulator.portal, "b24emu.events.emit",
            {"event": "ONCRMDEALADD", "key": "deal:7405", "data": {"FIELDS": {"ID": 7405}}})
        _idle(emulator)
        (hit,) = rcv.on("/out")
        body = hit.nested
        assert set(body) == set(example("event-ONCRMDEALADD-outgoing-webhook.json"))
        assert set(body["auth"]) == TOKENLESS_AUTH
        assert body["auth"]["application_token"] == created["application_token"]
        assert body["event_handler_id"] == str(created["id"])
        assert body["data"] == {"FIELDS": {"ID": "7405"}}


# -- offline queue --------------------------------------------------------------------------
def _offline(emulator: EmulatorServer, app: Installed, event: str = "ONCRMDEALUPDATE",
             **extra: Any) -> None:
    resp = oauth(emulator, app.access, "event.bind",
                 {"event": event, "event_type": "offline", **extra})
    assert resp.json()["result"] is True, resp.text


def _get(emulator: EmulatorServer, app: Installed, **params: Any) -> dict[str, Any]:
    resp = oauth(emulator, app.access, "event.offline.get", params)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()["result"]
    return result


def _list(emulator: EmulatorServer, app: Installed, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = oauth(emulator, app.access, "event.offline.list",
                                       params).json()["result"]
    return rows


def test_offline_queue_keeps_latest_record_per_object(emulator: EmulatorServer) -> None:
    """1000 edits of one deal → one record; ``clear=1`` (default) deletes on read (3.7)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        _offline(emulator, app)
        for _ in range(3):
            emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:7", 7)
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:8", 8)
        listed = _list(emulator, app)
        assert [(r["PROCESS_ID"], r["ERROR"]) for r in listed] == [("", "0"), ("", "0")]
        got = _get(emulator, app)
        assert got["process_id"] is None
        sample_keys = set(example("resp-event.offline.get.json")["result"]["events"][0])
        assert all(set(e) == sample_keys for e in got["events"])
        assert [e["EVENT_NAME"] for e in got["events"]] == ["ONCRMDEALUPDATE"] * 2
        assert [e["EVENT_DATA"] for e in got["events"]] == [{"FIELDS": {"ID": 7}},
                                                             {"FIELDS": {"ID": 8}}]
        assert _get(emulator, app)["events"] == []
        assert _list(emulator, app) == []


def test_offline_reserve_reread_and_clear(emulator: EmulatorServer) -> None:
    """``clear=0`` reserves under a ``process_id``, hides from others; re-read; clear (3.7)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        _offline(emulator, app)
        for deal in (1, 2, 3):
            emit(emulator, app.access, "ONCRMDEALUPDATE", f"deal:{deal}", deal)
        first = _get(emulator, app, clear=0, limit=2)
        pid = first["process_id"]
        assert pid and len(first["events"]) == 2
        other = _get(emulator, app, clear=0)
        assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in other["events"]] == [3]
        assert other["process_id"] != pid
        again = _get(emulator, app, clear=0, process_id=pid)
        assert [e["ID"] for e in again["events"]] == [e["ID"] for e in first["events"]]
        listed = {r["ID"]: r["PROCESS_ID"] for r in _list(emulator, app)}
        assert listed[first["events"][0]["ID"]] == pid
        # A new change of a reserved object is a new record, not an overwrite.
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:1", 1)
        assert len(_list(emulator, app)) == 4
        one = first["events"][0]["ID"]
        cleared = oauth(emulator, app.access, "event.offline.clear",
                        {"process_id": pid, "id": [one]})
        assert cleared.json()["result"] is True
        assert one not in {r["ID"] for r in _list(emulator, app)}
        oauth(emulator, app.access, "event.offline.clear", {"process_id": pid})
        assert {r["PROCESS_ID"] for r in _list(emulator, app)} == {other["process_id"], ""}


def test_offline_error_marks_records(emulator: EmulatorServer) -> None:
    """``event.offline.error`` marks records; ``error=1`` is needed to read them again."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        _offline(emulator, app)
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:1", 1)
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:2", 2)
        batch = _get(emulator, app, clear=0)
        bad = batch["events"][0]["MESSAGE_ID"]
        marked = oauth(emulator, app.access, "event.offline.error",
                       {"process_id": batch["process_id"], "message_id": [bad]})
        assert marked.json()["result"] is True
        errors = {r["MESSAGE_ID"]: r["ERROR"] for r in _list(emulator, app)}
        assert errors[bad] == "1"
        assert [r["ID"] for r in _list(emulator, app, filter={"ERROR": "1"})] == [
            batch["events"][0]["ID"]]
        assert _get(emulator, app)["events"] == []
        assert [e["MESSAGE_ID"] for e in _get(emulator, app, error=1)["events"]] == [bad]
        # A new change of that object is a fresh, readable record.
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:1", 1)
        assert [e["MESSAGE_ID"] for e in _get(emulator, app)["events"]] == [bad]


@pytest.mark.parametrize("method", ["event.offline.clear", "event.offline.error"])
def test_offline_process_id_required(emulator: EmulatorServer, method: str) -> None:
    """``process_id`` is required for clear and error."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        resp = oauth(emulator, app.access, method, {})
        assert (resp.status_code, resp.json()["error"]) == (400, "ERROR_ARGUMENT")


def test_offline_methods_are_admin_only(emulator: EmulatorServer) -> None:
    """The offline queue is for admins: ``ACCESS_DENIED`` otherwise (3.7)."""
    with Receiver() as rcv:
        _setup(emulator, rcv)
        token = _user_token(emulator, add_user(emulator.portal, "Manager"))
        resp = oauth(emulator, token, "event.offline.get")
        assert (resp.status_code, resp.json()["error"]) == (403, "ACCESS_DENIED")


def test_offline_filter_order_limit(emulator: EmulatorServer) -> None:
    """``filter`` with a prefix before the field, ``order`` and ``limit`` (3.7)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        _offline(emulator, app)
        for deal in range(1, 6):
            emit(emulator, app.access, "ONCRMDEALUPDATE", f"deal:{deal}", deal)
        got = _get(emulator, app, clear=0, filter={">=ID": 3}, order={"ID": "DESC"}, limit=2)
        assert [e["ID"] for e in got["events"]] == ["5", "4"]


def test_auth_connector_suppresses_own_changes(emulator: EmulatorServer) -> None:
    """Changes made with the queue's ``auth_connector`` are not queued (loop breaker, 3.7)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        _offline(emulator, app, auth_connector="nois")
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:1", 1, auth_connector="nois")
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:2", 2)
        assert _list(emulator, app) == []  # the default queue is a different one
        queued = _list(emulator, app, auth_connector="nois")
        assert [r["EVENT_DATA"]["FIELDS"]["ID"] for r in queued] == [2]


def test_onofflineevent_min_timeout(emulator: EmulatorServer) -> None:
    """ONOFFLINEEVENT: at most one notification per ``minTimeout`` (default 1 s) (3.7)."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        emulator.portal.clock.set(emulator.portal.clock.now(), frozen=True)
        _offline(emulator, app)
        bind(emulator, app.access, "ONOFFLINEEVENT", rcv.url("/ping"))
        for deal in (1, 2, 3):
            emit(emulator, app.access, "ONCRMDEALUPDATE", f"deal:{deal}", deal)
        _idle(emulator)
        assert len(rcv.on("/ping")) == 1
        emulator.portal.clock.advance(1.5)
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:1", 1)  # an update is a hit too
        _idle(emulator)
        pings = rcv.on("/ping")
        assert len(pings) == 2
        form = pings[0].form
        assert form["event"] == "ONOFFLINEEVENT"
        assert not any(k.startswith("data") for k in form)  # empty data: nothing on the wire
        # ONOFFLINEEVENT is long-lived: its auth carries a refresh token (3.7).
        assert set(pings[0].nested["auth"]) == set(example("event-ONOFFLINEEVENT.json")["auth"])


def test_onofflineevent_min_timeout_zero_is_once_per_hit(emulator: EmulatorServer) -> None:
    """``minTimeout`` 0: one notification per hit, however many records it queued."""
    with Receiver() as rcv:
        app = _setup(emulator, rcv)
        _offline(emulator, app)
        bind(emulator, app.access, "ONOFFLINEEVENT", rcv.url("/ping"),
             options={"minTimeout": 0})
        emits = {f"e{i}": f"b24emu.events.emit?event=ONCRMDEALUPDATE&key=deal:{i}"
                 f"&data[FIELDS][ID]={i}" for i in range(5)}
        oauth(emulator, app.access, "batch", {"cmd": emits})
        _idle(emulator)
        assert len(rcv.on("/ping")) == 1
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:10", 10)
        emit(emulator, app.access, "ONCRMDEALUPDATE", "deal:11", 11)
        _idle(emulator)
        assert len(rcv.on("/ping")) == 3
