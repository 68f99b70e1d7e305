"""The local app's lifecycle: install (API-only and UI), frames, uninstall, widgets, options."""

from __future__ import annotations

import json
from typing import Any

import pytest

from b24emu import EmulatorServer
from tests.emulator.helpers import (
    Receiver,
    add_user,
    bind,
    emit,
    example,
    hook,
    iframe_keys,
    install,
    oauth,
    quick_install,
    refresh,
)


# -- install ----------------------------------------------------------------------------------
def test_api_only_install_posts_onappinstall(emulator: EmulatorServer) -> None:
    """Saving an API-only app POSTs ONAPPINSTALL once, form-encoded, keys of the sample (1.2)."""
    sample = example("event-ONAPPINSTALL.json")
    with Receiver() as rcv:
        app = install(emulator, rcv)
        (hit,) = rcv.on("/install")
        assert hit.headers["Content-Type"] == "application/x-www-form-urlencoded"
        body = hit.nested
        assert set(body) == set(sample)
        assert set(body["data"]) == set(sample["data"])
        assert set(body["auth"]) == set(sample["auth"])
        assert body["event"] == "ONAPPINSTALL"
        assert (body["data"]["ACTIVE"], body["data"]["INSTALLED"]) == ("Y", "Y")
        auth = body["auth"]
        assert auth["status"] == "L"  # a local app (1.5)
        assert auth["expires_in"] == "3600"
        assert auth["member_id"] == emulator.portal.member_id
        assert auth["client_endpoint"] == emulator.portal.client_endpoint
        assert set(auth["scope"].replace(" ", ",").split(",")) == set(emulator.portal.app.scopes)
        assert oauth(emulator, app.access, "user.current").json()["result"]["ID"] == "1"
        info = oauth(emulator, app.access, "app.info").json()["result"]
        assert info["INSTALLED"] is True
        assert refresh(emulator, app.refresh).status_code == 200


def test_app_info_keys(emulator: EmulatorServer) -> None:
    """``app.info`` has the documented keys, ``INSTALLED`` a boolean (5.9)."""
    token, _ = quick_install(emulator)
    info = oauth(emulator, token, "app.info").json()["result"]
    assert set(info) == {"ID", "CODE", "VERSION", "STATUS", "INSTALLED", "PAYMENT_EXPIRED",
                         "DAYS", "LANGUAGE_ID", "LICENSE", "LICENSE_TYPE", "LICENSE_FAMILY"}
    assert (info["CODE"], info["STATUS"]) == (emulator.portal.app.client_id, "L")


def test_ui_install_opens_the_install_page(emulator: EmulatorServer) -> None:
    """A UI app: the install URL gets the frame POST of ``iframe-open-DEFAULT.txt`` (1.2, 1.4)."""
    with Receiver() as rcv:
        emulator.portal.install_app(rcv.url("/install"), ui=True)
        (hit,) = rcv.on("/install")
        assert set(hit.query) == {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
        assert sorted([*hit.query, *hit.form]) == sorted(iframe_keys("iframe-open-DEFAULT.txt"))
        form = hit.form
        assert (form["PLACEMENT"], form["AUTH_EXPIRES"], form["status"]) == ("DEFAULT", "3600",
                                                                            "L")
        assert hit.query["PROTOCOL"] == "0"  # plain http on loopback
        assert hit.query["DOMAIN"] == emulator.portal.domain
        assert form["member_id"] == emulator.portal.member_id
        assert form["SERVER_ENDPOINT"] == emulator.portal.server_endpoint
        token = form["AUTH_ID"]
        # Tokens work during the wizard, but the app is not installed until installFinish().
        assert oauth(emulator, token, "app.info").json()["result"]["INSTALLED"] is False
        assert refresh(emulator, form["REFRESH_ID"]).status_code == 200


def test_events_flow_only_after_install_finish(emulator: EmulatorServer) -> None:
    """Until ``BX24.installFinish()`` events are not delivered, even after event.bind (1.2)."""
    with Receiver() as rcv:
        emulator.portal.install_app(rcv.url("/install"), ui=True)
        form = rcv.on("/install")[0].form
        token, app_token = form["AUTH_ID"], form["APPLICATION_TOKEN"]
        bind(emulator, token, "ONCRMDEALADD", rcv.url("/events"))
        emit(emulator, token, "ONCRMDEALADD", "deal:1", 1)
        assert emulator.portal.events.wait_idle(5)
        assert rcv.on("/events") == []
        emulator.portal.finish_install()
        assert oauth(emulator, token, "app.info").json()["result"]["INSTALLED"] is True
        emit(emulator, token, "ONCRMDEALADD", "deal:2", 2)
        assert emulator.portal.events.wait_idle(5)
        (hit,) = rcv.on("/events")
        assert hit.form["data[FIELDS][ID]"] == "2"
        # The frame's APPLICATION_TOKEN is what events carry (1.4).
        assert hit.form["auth[application_token]"] == app_token


def test_widget_open_posts_placement_options(emulator: EmulatorServer) -> None:
    """A widget frame: the keys of the CRM detail-tab sample, options as a JSON string (1.4)."""
    quick_install(emulator)
    with Receiver() as rcv:
        emulator.portal.open_app(rcv.url("/tab"), user_id=1, placement="CRM_DEAL_DETAIL_TAB",
                                 options={"ID": "8061"})
        emulator.portal.open_app(rcv.url("/tab"), placement="CRM_DEAL_DETAIL_TAB",
                                 options={"ID": "8062"})
        first, second = rcv.on("/tab")
        assert sorted([*first.query, *first.form]) == sorted(
            iframe_keys("iframe-placement-CRM_DEAL_DETAIL_TAB.txt"))
        assert json.loads(first.form["PLACEMENT_OPTIONS"]) == {"ID": "8061"}
        # APP_SID is new for every render.
        assert first.query["APP_SID"] != second.query["APP_SID"]
        assert first.form["APPLICATION_TOKEN"] == emulator.portal.app.application_token


def test_frame_tokens_belong_to_the_opening_user(emulator: EmulatorServer) -> None:
    """Frame tokens are the opening user's (1.4)."""
    quick_install(emulator)
    manager = add_user(emulator.portal, "Manager")
    with Receiver() as rcv:
        emulator.portal.open_app(rcv.url("/app"), user_id=manager)
        token = rcv.on("/app")[0].form["AUTH_ID"]
        assert oauth(emulator, token, "user.current").json()["result"]["ID"] == str(manager)


# -- uninstall --------------------------------------------------------------------------------
@pytest.mark.parametrize("clean", [True, False])
def test_uninstall(emulator: EmulatorServer, clean: bool) -> None:
    """ONAPPUNINSTALL with ``data[CLEAN]`` and no tokens, then everything of the app is gone."""
    sample = example("event-ONAPPUNINSTALL.json")
    with Receiver() as rcv:
        app = install(emulator, rcv)
        bind(emulator, app.access, "ONAPPUNINSTALL", rcv.url("/bye"))
        bind(emulator, app.access, "ONCRMDEALADD", rcv.url("/events"))
        oauth(emulator, app.access, "placement.bind",
              {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": rcv.url("/tab")})
        oauth(emulator, app.access, "app.option.set", {"options": {"k": "v"}})
        emulator.portal.uninstall_app(clean=clean)
        (hit,) = rcv.on("/bye")
        body = hit.nested
        assert set(body) - {"event_handler_id"} == set(sample)
        assert set(body["data"]) == set(sample["data"])
        assert set(body["auth"]) == set(sample["auth"])  # no tokens at all
        assert body["data"]["CLEAN"] == ("1" if clean else "0")
        assert body["auth"]["application_token"] == app.application_token
        # API access is revoked; refresh is refused.
        assert oauth(emulator, app.access, "user.current").status_code == 401
        assert refresh(emulator, app.refresh).json()["error"] == "invalid_client"
        portal = emulator.portal
        assert (portal.events.bindings, portal.placements, portal.app.options) == ([], [], {})
        hook(emulator, "b24emu.events.emit",
             {"event": "ONCRMDEALADD", "key": "deal:1", "data": {"FIELDS": {"ID": 1}}})
        assert portal.events.wait_idle(5)
        assert rcv.on("/events") == []
        # A reinstall starts from scratch.
        again = install(emulator, rcv, "/install2")
        assert oauth(emulator, again.access, "event.get").json()["result"] == []
        assert oauth(emulator, again.access, "app.option.get").json()["result"] == []


# -- placements ------------------------------------------------------------------------------
def test_placement_bind_get_unbind(emulator: EmulatorServer) -> None:
    """``placement.bind`` → true; ``placement.get`` lists; ``placement.unbind`` counts (5.9)."""
    token, _ = quick_install(emulator)
    params = {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": "http://app/tab", "TITLE": "KPI"}
    assert oauth(emulator, token, "placement.bind", params).json()["result"] is True
    rows = oauth(emulator, token, "placement.get").json()["result"]
    assert [(r["placement"], r["handler"], r["title"]) for r in rows] == [
        ("CRM_DEAL_DETAIL_TAB", "http://app/tab", "KPI")]
    again = oauth(emulator, token, "placement.bind", params)
    assert again.status_code == 400
    gone = oauth(emulator, token, "placement.unbind", {"PLACEMENT": "CRM_DEAL_DETAIL_TAB"})
    assert gone.json()["result"] == {"count": 1}
    assert oauth(emulator, token, "placement.get").json()["result"] == []


@pytest.mark.parametrize(
    ("params", "code", "argument"),
    [
        ({"HANDLER": "http://app/tab"}, "ERROR_ARGUMENT", "PLACEMENT"),
        ({"PLACEMENT": "CRM_DEAL_DETAIL_TAB"}, "ERROR_ARGUMENT", "HANDLER"),
        ({"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": "http://app/", "USER_ID": 1},
         "ERROR_PLACEMENT_USER_MODE", None),
    ],
)
def test_placement_errors_come_with_http_200(emulator: EmulatorServer, params: dict[str, Any],
                                            code: str, argument: str | None) -> None:
    """Argument errors are a top-level error body with HTTP 200 (placement-bind.md)."""
    token, _ = quick_install(emulator)
    resp = oauth(emulator, token, "placement.bind", params)
    assert resp.status_code == 200
    body = resp.json()
    assert "result" not in body
    assert body["error"] == code
    assert body.get("argument") == argument


def test_background_worker_allows_one_handler(emulator: EmulatorServer) -> None:
    """PAGE_BACKGROUND_WORKER takes USER_ID and one handler: then ``ERROR_PLACEMENT_MAX_COUNT``."""
    token, _ = quick_install(emulator)
    params = {"PLACEMENT": "PAGE_BACKGROUND_WORKER", "HANDLER": "http://app/w", "USER_ID": 1}
    assert oauth(emulator, token, "placement.bind", params).json()["result"] is True
    second = oauth(emulator, token, "placement.bind", {**params, "HANDLER": "http://app/w2"})
    assert (second.status_code, second.json()["error"]) == (200, "ERROR_PLACEMENT_MAX_COUNT")


def test_placement_bind_needs_app_context_and_admin(emulator: EmulatorServer) -> None:
    """Webhook → 403 ``WRONG_AUTH_TYPE``; a non-admin → 403 ``ACCESS_DENIED`` (5.9)."""
    params = {"PLACEMENT": "CRM_DEAL_DETAIL_TAB", "HANDLER": "http://app/tab"}
    by_hook = hook(emulator, "placement.bind", params)
    assert (by_hook.status_code, by_hook.json()["error"]) == (403, "WRONG_AUTH_TYPE")
    quick_install(emulator)
    manager = add_user(emulator.portal, "Manager")
    access, _ = emulator.portal.auth.issue(emulator.portal.app.client_id, manager)
    by_user = oauth(emulator, access.token, "placement.bind", params)
    assert (by_user.status_code, by_user.json()["error"]) == (403, "ACCESS_DENIED")


# -- app options -----------------------------------------------------------------------------
def test_app_options(emulator: EmulatorServer) -> None:
    """``app.option.set`` → true; get all, one, unknown → null, none → ``[]`` (5.9)."""
    token, _ = quick_install(emulator)
    assert oauth(emulator, token, "app.option.get").json()["result"] == []
    resp = oauth(emulator, token, "app.option.set",
                 {"options": {"mode": "digest", "limit": 5, "flags": {"a": True}}})
    assert resp.json()["result"] is True
    oauth(emulator, token, "app.option.set", {"options": {"mode": "instant"}})
    everything = oauth(emulator, token, "app.option.get").json()["result"]
    # JSON values keep their types; only the passed keys are overwritten.
    assert everything == {"mode": "instant", "limit": 5, "flags": {"a": True}}
    one = oauth(emulator, token, "app.option.get", {"option": "limit"}).json()["result"]
    assert one == 5
    assert oauth(emulator, token, "app.option.get", {"option": "nope"}).json()["result"] is None


def test_app_option_set_without_options_key(emulator: EmulatorServer) -> None:
    """Without ``options`` the request parameters themselves are the settings."""
    token, _ = quick_install(emulator)
    assert oauth(emulator, token, "app.option.set", {"data": "value"}).json()["result"] is True
    assert oauth(emulator, token, "app.option.get", {"option": "data"}).json()["result"] == "value"


@pytest.mark.parametrize(
    ("who", "params", "status", "body"),
    [
        ("hook", {"options": {"a": 1}}, 403,
         {"error": "ACCESS_DENIED",
          "error_description": "Access denied! Application context required"}),
        ("user", {"options": {"a": 1}}, 403,
         {"error": "ACCESS_DENIED",
          "error_description": "Access denied! Administrator authorization required"}),
        ("admin", {"options": {}}, 400,
         {"error": "ERROR_ARGUMENT", "error_description": "Argument 'options' is null or empty",
          "argument": "options"}),
    ],
)
def test_app_option_set_errors(emulator: EmulatorServer, who: str, params: dict[str, Any],
                               status: int, body: dict[str, Any]) -> None:
    """AccessException / ArgumentNullException as they reach the wire (app-option-set.md)."""
    token, _ = quick_install(emulator)
    if who == "hook":
        resp = hook(emulator, "app.option.set", params)
    else:
        user = 1 if who == "admin" else add_user(emulator.portal, "Manager")
        access, _ = emulator.portal.auth.issue(emulator.portal.app.client_id, user)
        resp = oauth(emulator, access.token, "app.option.set", params)
    assert resp.status_code == status
    assert resp.json() == body
    assert oauth(emulator, token, "app.option.get").json()["result"] == []
