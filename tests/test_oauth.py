"""The OAuth client: the documented refresh request, error mapping, retries, no secrets in logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from responses import matchers, registries

from b24app.config import Secret
from b24app.gateway.errors import AuthRevoked, BadRequest, Transport
from b24app.oauth import OAuthClient, RedactSecrets, TokenGrant, redact
from b24emu import EmulatorServer
from tests.emulator.helpers import example, quick_install

URL = "https://oauth.bitrix.info/oauth/token/"
CLIENT_ID = "local.6537665f598492.98090704"
SECRET = "Xq9-client-secret-7d1e0c55aa0b4b7f9e2d"
OLD_REFRESH = "old-refresh-2b9f1c0e8d7a6b5c"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SAMPLE = example("resp-oauth-token-refresh.json")


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """The auth server, mocked; answers are consumed in the order they are registered."""
    with responses.RequestsMock(registry=registries.OrderedRegistry) as rsps:
        yield rsps


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays the client asked for (nobody really sleeps)."""
    return []


@pytest.fixture
def client(sleeps: list[float]) -> Iterator[OAuthClient]:
    """A client of the mocked server with a fixed clock and a recorded sleep."""
    built = OAuthClient(URL, CLIENT_ID, Secret(SECRET), clock=lambda: NOW, sleep=sleeps.append)
    try:
        yield built
    finally:
        built.close()


def _error(mocked: responses.RequestsMock, code: str, status: int = 400) -> None:
    mocked.get(URL, json={"error": code, "error_description": f"{code} happened"}, status=status)


# ---------------------------------------------------------------- success


def test_refresh_sends_the_documented_get_and_parses_the_answer(
    mocked: responses.RequestsMock, client: OAuthClient
) -> None:
    """``GET /oauth/token/?grant_type=refresh_token&client_id&client_secret&refresh_token``."""
    mocked.get(URL, json=SAMPLE, match=[matchers.query_param_matcher({
        "grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": SECRET,
        "refresh_token": OLD_REFRESH})])
    grant = client.refresh(OLD_REFRESH, member_id="a223c6b3")
    assert grant == TokenGrant(
        access_token=SAMPLE["access_token"], refresh_token=SAMPLE["refresh_token"],
        expires_at=datetime.fromtimestamp(SAMPLE["expires"], tz=UTC), scope="crm,entity,im,task",
        member_id=SAMPLE["member_id"], client_endpoint=SAMPLE["client_endpoint"], user_id=67)
    assert grant.expires_at.tzinfo is UTC
    assert [call.request.method for call in mocked.calls] == ["GET"]


def test_expires_at_falls_back_to_now_plus_expires_in(
    mocked: responses.RequestsMock, client: OAuthClient
) -> None:
    """The code-exchange shape has no ``expires``: our clock plus ``expires_in``."""
    body = {k: v for k, v in SAMPLE.items() if k not in ("expires", "user_id")}
    mocked.get(URL, json={**body, "expires_in": 1800})
    grant = client.refresh(OLD_REFRESH)
    assert grant.expires_at == NOW + timedelta(seconds=1800)
    assert grant.user_id is None


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("code", "status"), [
    ("invalid_grant", 400), ("invalid_client", 401), ("invalid_request", 400),
    ("PAYMENT_REQUIRED", 402), ("invalid_grant", 200)])
def test_a_dead_grant_raises_auth_revoked_with_its_code_and_no_retry(
    mocked: responses.RequestsMock, client: OAuthClient, sleeps: list[float], code: str,
    status: int,
) -> None:
    """The documented auth-server errors mean "re-install", so retrying is pointless."""
    _error(mocked, code, status)
    with pytest.raises(AuthRevoked) as caught:
        client.refresh(OLD_REFRESH)
    assert (caught.value.code, caught.value.status) == (code, status)
    assert len(mocked.calls) == 1 and sleeps == []


def test_other_client_errors_are_bad_requests_not_revocations(
    mocked: responses.RequestsMock, client: OAuthClient
) -> None:
    """An unknown 4xx (or an HTML 404 from a wrong ``oauth_url``) is no proof the grant died."""
    _error(mocked, "insufficient_scope")
    mocked.get(URL, body="<html>Not Found</html>", status=404)
    for expected in ("insufficient_scope", "HTTP_404"):
        with pytest.raises(BadRequest) as caught:
            client.refresh(OLD_REFRESH)
        assert not isinstance(caught.value, AuthRevoked)
        assert caught.value.code == expected
    assert len(mocked.calls) == 2


def test_5xx_is_retried_with_backoff_then_succeeds(
    mocked: responses.RequestsMock, client: OAuthClient, sleeps: list[float]
) -> None:
    mocked.get(URL, body="Service Unavailable", status=503)
    mocked.get(URL, json={"error": "internal"}, status=500)
    mocked.get(URL, json=SAMPLE)
    assert client.refresh(OLD_REFRESH).access_token == SAMPLE["access_token"]
    assert len(mocked.calls) == 3
    assert sleeps == [0.5, 1.0]


def test_persistent_5xx_raises_transport_after_the_retries(
    mocked: responses.RequestsMock, client: OAuthClient, sleeps: list[float]
) -> None:
    for _ in range(3):
        mocked.get(URL, body="Bad Gateway", status=502)
    with pytest.raises(Transport) as caught:
        client.refresh(OLD_REFRESH)
    assert (caught.value.code, caught.value.status) == ("HTTP_502", 502)
    assert len(mocked.calls) == 3 and sleeps == [0.5, 1.0]


def test_timeout_raises_transport_after_the_retries(
    mocked: responses.RequestsMock, client: OAuthClient, sleeps: list[float]
) -> None:
    for _ in range(3):
        mocked.get(URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(Transport) as caught:
        client.refresh(OLD_REFRESH)
    assert caught.value.code == "TIMEOUT"
    assert len(mocked.calls) == 3 and len(sleeps) == 2


def test_the_deadline_caps_the_retries(mocked: responses.RequestsMock) -> None:
    """A refresh gives up well within SQLite's busy timeout (it holds the write lock)."""
    mocked.get(URL, body=requests.ConnectTimeout("connect timed out"))
    client = OAuthClient(URL, CLIENT_ID, SECRET, deadline=0.4, sleep=lambda _: None)
    try:
        with pytest.raises(Transport):
            client.refresh(OLD_REFRESH)
    finally:
        client.close()
    assert len(mocked.calls) == 1  # the first backoff (0.5 s) would pass the deadline


@pytest.mark.parametrize("body", [
    "<html>maintenance</html>", '{"result": "no tokens here"}', '["not", "an", "object"]'])
def test_a_broken_200_is_transport(
    mocked: responses.RequestsMock, client: OAuthClient, body: str
) -> None:
    """A 200 without a token pair (a proxy page, a changed API) is retried, never stored."""
    for _ in range(3):
        mocked.get(URL, body=body, status=200)
    with pytest.raises(Transport):
        client.refresh(OLD_REFRESH)
    assert len(mocked.calls) == 3


def test_transport_errors_never_quote_the_url(
    mocked: responses.RequestsMock, client: OAuthClient
) -> None:
    """urllib3 puts the URL (and so the query's secret) in its messages; we drop them."""
    leaked = f"Max retries exceeded with url: /oauth/token/?client_secret={SECRET}"
    for _ in range(3):
        mocked.get(URL, body=requests.ConnectionError(leaked))
    with pytest.raises(Transport) as caught:
        client.refresh(OLD_REFRESH)
    assert SECRET not in str(caught.value) and OLD_REFRESH not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "oauth.bitrix.info" in str(caught.value)


# ---------------------------------------------------------------- secrets


def test_secret_and_tokens_never_reach_the_logs(
    mocked: responses.RequestsMock, client: OAuthClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Success, a dead grant, a 5xx storm and timeouts: only ``member_id`` is logged."""
    caplog.set_level(logging.DEBUG)
    mocked.get(URL, json=SAMPLE)
    _error(mocked, "invalid_grant")
    for _ in range(3):
        mocked.get(URL, body="oops", status=503)
    for _ in range(3):
        mocked.get(URL, body=requests.ReadTimeout(f"url=/oauth/token/?client_secret={SECRET}"))
    grant = client.refresh(OLD_REFRESH, member_id="m-42")
    for expected in (AuthRevoked, Transport, Transport):
        with pytest.raises(expected):
            client.refresh(OLD_REFRESH, member_id="m-42")
    text = caplog.text + repr(grant) + repr(client)
    for secret in (SECRET, OLD_REFRESH, SAMPLE["access_token"], SAMPLE["refresh_token"]):
        assert secret not in text
    assert "refresh for member_id=m-42" in caplog.text


def test_redact_scrubs_secret_query_parameters() -> None:
    line = f'GET /oauth/token/?grant_type=refresh_token&client_secret={SECRET}&refresh_token=r1 200'
    assert redact(line) == ("GET /oauth/token/?grant_type=refresh_token&client_secret=***"
                            "&refresh_token=*** 200")
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               '"%s %s"', ("GET", f"/x?access_token={SECRET}"), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == '"GET /x?access_token=***"'


def test_urllib3_request_lines_are_redacted_on_real_http(
    emulator: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The real transport (no mock): urllib3's DEBUG request line keeps no secret."""
    caplog.set_level(logging.DEBUG)
    _, refresh_token = quick_install(emulator)
    app = emulator.portal.app
    client = OAuthClient(f"{emulator.url}/oauth/token/", app.client_id, Secret(app.client_secret))
    try:
        grant = client.refresh(refresh_token)
    finally:
        client.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("client_secret=***" in line and "refresh_token=***" in line for line in lines)
    for secret in (app.client_secret, refresh_token, grant.access_token, grant.refresh_token):
        assert secret not in caplog.text
    assert emulator.portal.auth.refresh_count == 1
