"""Incoming webhooks, OAuth tokens on REST calls, and the OAuth server (1.3, 2)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from b24emu import EmulatorServer
from tests.emulator.helpers import (
    TIMEOUT,
    add_user,
    example,
    hook,
    oauth,
    quick_install,
    refresh,
)


@pytest.mark.parametrize("suffix", ["", ".json"])
def test_webhook_url_with_and_without_json(emulator: EmulatorServer, suffix: str) -> None:
    """``/rest/<user>/<secret>/<method>[.json]`` runs as the webhook's user (2)."""
    resp = requests.get(f"{emulator.portal.webhook_url}user.current{suffix}", timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.json()["result"]["ID"] == "1"


@pytest.mark.parametrize(
    "path",
    ["rest/1/wrong-secret/user.current", "rest/2/{secret}/user.current",
     "rest/user.current"],
)
def test_no_auth_found(emulator: EmulatorServer, path: str) -> None:
    """A wrong webhook secret or no token at all: 401 ``NO_AUTH_FOUND`` (2, 4.3)."""
    url = f"{emulator.url}/" + path.format(secret=emulator.portal.webhook.secret)
    resp = requests.post(url, json={}, timeout=TIMEOUT)
    assert resp.status_code == 401
    assert resp.json() == {"error": "NO_AUTH_FOUND",
                           "error_description": "Wrong authorization data"}


def test_webhook_of_another_user_runs_as_that_user(emulator: EmulatorServer) -> None:
    """Each webhook acts as the employee who created it (2)."""
    user_id = add_user(emulator.portal, "Manager")
    emulator.portal.auth.add_webhook(user_id, "managerhook")
    resp = requests.get(f"{emulator.url}/rest/{user_id}/managerhook/user.current",
                        timeout=TIMEOUT)
    assert resp.json()["result"]["ID"] == str(user_id)


def test_oauth_auth_param_in_json_query_and_form(emulator: EmulatorServer) -> None:
    """``auth`` works in a JSON body, the query string or a form body (1.3)."""
    token, _ = quick_install(emulator)
    url = emulator.portal.client_endpoint + "user.current"
    answers = [
        requests.post(url, json={"auth": token}, timeout=TIMEOUT),
        requests.get(url, params={"auth": token}, timeout=TIMEOUT),
        requests.post(url, data={"auth": token}, timeout=TIMEOUT),
    ]
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert {r.json()["result"]["ID"] for r in answers} == {"1"}


def test_token_runs_as_its_user(emulator: EmulatorServer) -> None:
    """Tokens belong to the user they were issued to (1.4)."""
    user_id = add_user(emulator.portal, "Manager")
    token, _ = quick_install(emulator, user_id=user_id)
    assert oauth(emulator, token, "user.current").json()["result"]["ID"] == str(user_id)
    assert oauth(emulator, token, "user.admin").json()["result"] is False


def test_expired_token_after_one_hour(emulator: EmulatorServer) -> None:
    """After 3600 s the token answers 401 with exactly ``error-expired_token.json``."""
    token, _ = quick_install(emulator)
    emulator.portal.clock.advance(3599)
    assert oauth(emulator, token, "user.current").status_code == 200
    emulator.portal.clock.advance(2)
    resp = oauth(emulator, token, "user.current")
    assert resp.status_code == 401
    assert resp.json() == example("error-expired_token.json")


def test_tokens_expire_switch(emulator: EmulatorServer) -> None:
    """``b24emu.tokens.expire`` expires every token at once (the fault tests use it)."""
    token, _ = quick_install(emulator)
    assert hook(emulator, "b24emu.tokens.expire").json()["result"] >= 1
    assert oauth(emulator, token, "user.current").json()["error"] == "expired_token"


def test_invalid_token(emulator: EmulatorServer) -> None:
    """An unknown token is refused with 401 ``invalid_token`` (SDKs file it under 401)."""
    quick_install(emulator)
    resp = oauth(emulator, "0" * 32, "user.current")
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_token"


def test_tokens_of_an_app_that_is_not_installed(emulator: EmulatorServer) -> None:
    """Tokens of an app that is not installed are useless ("Unable to get application")."""
    access, _ = emulator.portal.auth.issue(emulator.portal.app.client_id, 1)
    resp = oauth(emulator, access.token, "user.current")
    assert (resp.status_code, resp.json()["error"]) == (401, "invalid_token")


@pytest.mark.parametrize("post", [False, True])
def test_refresh_grant(emulator: EmulatorServer, post: bool) -> None:
    """GET query (docs) and POST form (CRest) both refresh; keys equal the sample (1.3)."""
    _, refresh_token = quick_install(emulator)
    resp = refresh(emulator, refresh_token, post=post)
    assert resp.status_code == 200
    body = resp.json()
    sample = example("resp-oauth-token-refresh.json")
    assert set(body) == set(sample)
    assert {k: type(v) for k, v in body.items()} == {k: type(v) for k, v in sample.items()}
    assert body["expires_in"] == 3600
    assert body["expires"] == pytest.approx(emulator.portal.clock.timestamp() + 3600, abs=2)
    assert body["domain"] == "oauth.bitrix.info"
    assert body["client_endpoint"] == emulator.portal.client_endpoint
    assert body["server_endpoint"] == emulator.portal.server_endpoint
    assert (body["member_id"], body["status"], body["user_id"]) == (
        emulator.portal.member_id, "L", 1)
    assert set(body["scope"].split(",")) == set(emulator.portal.app.scopes)
    assert oauth(emulator, body["access_token"], "user.current").status_code == 200


def test_refresh_tokens_are_single_use_and_rotate(emulator: EmulatorServer) -> None:
    """Every refresh returns a new pair; the old refresh token is dead (1.3)."""
    _, first = quick_install(emulator)
    second = refresh(emulator, first).json()["refresh_token"]
    assert second != first
    reused = refresh(emulator, first)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    third = refresh(emulator, second)
    assert third.status_code == 200
    stats = hook(emulator, "b24emu.stats").json()["result"]
    assert stats["refreshes"] == 2


def test_refresh_token_lives_180_days(emulator: EmulatorServer) -> None:
    """A refresh token older than 180 days is ``invalid_grant`` → full re-auth (1.3)."""
    _, token = quick_install(emulator)
    emulator.portal.clock.advance(180 * 86400 + 1)
    resp = refresh(emulator, token)
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    ("grant", "client_secret", "code"),
    [
        ("refresh_token", "wrong", "invalid_client"),
        ("password", None, "invalid_request"),
    ],
)
def test_oauth_server_errors(emulator: EmulatorServer, grant: str, client_secret: str | None,
                             code: str) -> None:
    """Errors come as ``{"error", "error_description"}`` with HTTP 400 (error-codes.md)."""
    _, token = quick_install(emulator)
    app = emulator.portal.app
    resp = requests.get(f"{emulator.url}/oauth/token/", timeout=TIMEOUT, params={
        "grant_type": grant, "client_id": app.client_id,
        "client_secret": client_secret or app.client_secret, "refresh_token": token})
    assert resp.status_code == 400
    assert set(resp.json()) == {"error", "error_description"}
    assert resp.json()["error"] == code


def test_refresh_with_unknown_client(emulator: EmulatorServer) -> None:
    """An unknown ``client_id`` is ``invalid_client``."""
    _, token = quick_install(emulator)
    resp = requests.get(f"{emulator.url}/oauth/token/", timeout=TIMEOUT, params={
        "grant_type": "refresh_token", "client_id": "local.nope", "client_secret": "x",
        "refresh_token": token})
    assert resp.json()["error"] == "invalid_client"


def _authorize(emulator: EmulatorServer, state: str = "st8") -> dict[str, str]:
    resp = requests.get(f"{emulator.url}/oauth/authorize/", allow_redirects=False,
                        params={"client_id": emulator.portal.app.client_id, "state": state},
                        timeout=TIMEOUT)
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    return {k: v[0] for k, v in query.items()}


def _exchange(emulator: EmulatorServer, code: str) -> requests.Response:
    app = emulator.portal.app
    return requests.get(f"{emulator.url}/oauth/token/", timeout=TIMEOUT, params={
        "grant_type": "authorization_code", "client_id": app.client_id,
        "client_secret": app.client_secret, "code": code})


def test_authorization_code_flow(emulator: EmulatorServer) -> None:
    """``/oauth/authorize/`` redirects with code, state, domain...; the code buys tokens (1.3)."""
    quick_install(emulator)
    args = _authorize(emulator)
    assert set(args) == {"code", "state", "domain", "member_id", "scope", "server_domain"}
    assert (args["state"], args["member_id"], args["server_domain"]) == (
        "st8", emulator.portal.member_id, "oauth.bitrix.info")
    resp = _exchange(emulator, args["code"])
    assert resp.status_code == 200
    body = resp.json()
    # The code-exchange response lacks ``expires``/``user_id`` (settings/oauth/index.md).
    assert set(body) == set(example("resp-oauth-token-refresh.json")) - {"expires", "user_id"}
    assert oauth(emulator, body["access_token"], "user.current").json()["result"]["ID"] == "1"
    assert refresh(emulator, body["refresh_token"]).status_code == 200
    # A code is single-use.
    again = _exchange(emulator, args["code"])
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def test_authorization_code_lives_30_seconds(emulator: EmulatorServer) -> None:
    """A code older than 30 s is refused (1.3)."""
    quick_install(emulator)
    code = _authorize(emulator)["code"]
    emulator.portal.clock.advance(31)
    assert _exchange(emulator, code).json()["error"] == "invalid_grant"


def test_authorize_unknown_client(emulator: EmulatorServer) -> None:
    """``/oauth/authorize/`` for an unknown client does not redirect."""
    resp = requests.get(f"{emulator.url}/oauth/authorize/", params={"client_id": "local.x"},
                        allow_redirects=False, timeout=TIMEOUT)
    assert (resp.status_code, resp.json()["error"]) == (400, "invalid_client")


def test_server_endpoint_answers_app_info(emulator: EmulatorServer) -> None:
    """``app.info`` on ``server_endpoint`` is the trusted install status (1.4)."""
    token, _ = quick_install(emulator)
    resp = requests.post(emulator.portal.server_endpoint + "app.info", json={"auth": token},
                         timeout=TIMEOUT)
    assert resp.status_code == 200
    assert resp.json()["result"]["INSTALLED"] is True
    other = requests.post(emulator.portal.server_endpoint + "user.current",
                          json={"auth": token}, timeout=TIMEOUT)
    assert other.status_code == 404

