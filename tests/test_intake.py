"""``POST /b24/events``: verified events land in the inbox once; everything else stores nothing."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Secret, Settings
from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.models import InboxEvent, MirrorDeal, Portal, PortalStatus, SyncCursor
from b24app.web import create_app
from tests.appfixtures import (
    APP_TOKEN,
    MEMBER_ID,
    FakeGatewayProvider,
    NoGatewayProvider,
    build_ctx,
    deal_event,
    form_body,
    inbox_count,
    portal_count,
    register_portal,
)
from tests.fakes import FakeClock

EXAMPLES = Path("/work/shared/reference/b24-examples")
FORM = "application/x-www-form-urlencoded"


def post(client: FlaskClient, body: str | bytes, content_type: str = FORM) -> Any:
    """POST a raw body to the event endpoint."""
    return client.post("/b24/events", data=body, content_type=content_type)


@pytest.fixture
def portal_id(app_ctx: AppContext) -> int:
    """An installed portal with the sample member_id and application_token."""
    return register_portal(app_ctx.sessions, app_ctx.secrets)


def test_a_valid_event_is_stored_once(client: FlaskClient, app_ctx: AppContext,
                                      portal_id: int) -> None:
    """200 ``ok`` and one pending row; the same delivery again is a ``duplicate``, no new row."""
    response = post(client, form_body(deal_event()))
    assert response.status_code == 200
    assert response.get_json() == {"result": "ok"}
    again = post(client, form_body(deal_event()))
    assert again.status_code == 200
    assert again.get_json() == {"result": "duplicate"}
    with app_ctx.sessions() as session:
        rows = session.scalars(select(InboxEvent)).all()
    assert len(rows) == 1
    row = rows[0]
    assert (row.portal_id, row.event, row.entity_id, row.ts) == (
        portal_id, "ONCRMDEALADD", "7405", 1766047124)
    assert (row.source, row.status, row.by_user) == ("online", "pending", True)
    assert row.dedup_key == "ONCRMDEALADD|7405|1766047124"
    assert row.data == {"FIELDS": {"ID": "7405"}}


def test_a_later_change_of_the_same_entity_is_a_new_row(client: FlaskClient,
                                                        app_ctx: AppContext,
                                                        portal_id: int) -> None:
    """Another ``ts`` or another event of the same deal is another delivery."""
    for payload in (deal_event(ts=1), deal_event(ts=2), deal_event(ts=2, name="ONCRMDEALUPDATE")):
        assert post(client, form_body(payload)).get_json() == {"result": "ok"}
    assert inbox_count(app_ctx.sessions, portal_id) == 3


def test_automation_events_without_tokens_are_stored_as_not_by_user(
        client: FlaskClient, app_ctx: AppContext, portal_id: int) -> None:
    """An event from a robot has no access_token: stored with ``by_user`` false."""
    payload = deal_event()
    del payload["auth"]["access_token"]
    assert post(client, form_body(payload)).status_code == 200
    with app_ctx.sessions() as session:
        assert session.scalars(select(InboxEvent.by_user)).one() is False


def _without(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return payload


REFUSED = {
    "forged token": deal_event(token="0" * 32),
    "token of another portal": deal_event(token="jvh9y1ulvt2m6k5or90v9mg8nn32ozas"),
    "empty token": deal_event(token=""),
    "missing token": _without(deal_event(), "auth", "application_token"),
    "unknown member_id": deal_event(member_id="d897063e1ce7c5eb9f04b9751eef5915"),
    "non-ASCII token": deal_event(token="токен"),
}


@pytest.mark.parametrize("payload", REFUSED.values(), ids=REFUSED.keys())
def test_unverified_events_get_401_and_store_nothing(client: FlaskClient, app_ctx: AppContext,
                                                     portal_id: int,
                                                     payload: dict[str, Any]) -> None:
    """Forged, missing or foreign tokens and unknown member_ids: 401 JSON, no row."""
    response = post(client, form_body(payload))
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid application token"}
    assert inbox_count(app_ctx.sessions) == 0
    assert portal_count(app_ctx.sessions) == 1


def test_an_uninstalled_portal_gets_401(client: FlaskClient, app_ctx: AppContext,
                                        portal_id: int) -> None:
    """After uninstall even the right token is refused."""
    with app_ctx.sessions() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        portal.status = PortalStatus.UNINSTALLED.value
        session.commit()
    assert post(client, form_body(deal_event())).status_code == 401
    assert inbox_count(app_ctx.sessions) == 0


GARBAGE: dict[str, tuple[bytes | str, str, int]] = {
    "binary": (b"\x00\xff\xfe garbage \x80", FORM, 400),
    "bad percent-escape": ("event=ONCRMDEALADD&ts=%FF%FE", FORM, 400),
    "json body": (json.dumps(deal_event()), "application/json", 415),
    "json with form type": (json.dumps(deal_event()), FORM, 400),
    "multipart": ("--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415),
    "no content type": (form_body(deal_event()), "", 415),
    "text": ("hello", "text/plain", 415),
    "unclosed bracket": (form_body(deal_event()) + "&auth[member_id=1", FORM, 400),
    "bad key chars": (form_body(deal_event()) + "&da%20ta[x]=1", FORM, 400),
    "too deep": (form_body(deal_event()) + "&data" + "[a]" * 9 + "=1", FORM, 400),
    "value and map": (form_body(deal_event()) + "&ts[x]=1", FORM, 400),
    "too many fields": ("&".join(f"f{i}=1" for i in range(400)), FORM, 400),
    "empty": ("", FORM, 401),
    "missing event": (form_body(_without(deal_event(), "event")), FORM, 400),
    "missing ts": (form_body(_without(deal_event(), "ts")), FORM, 400),
    "bad ts": (form_body({**deal_event(), "ts": "soon"}), FORM, 400),
    "missing member_id": (form_body(_without(deal_event(), "auth", "member_id")), FORM, 400),
    "bad member_id": (form_body(deal_event(member_id="../../etc")), FORM, 400),
    "missing entity id": (form_body({**deal_event(), "data": {"FIELDS": {}}}), FORM, 400),
    "bad event name": (form_body({**deal_event(), "event": "ON CRM"}), FORM, 400),
    "install event": (form_body({**deal_event(), "event": "ONAPPINSTALL"}), FORM, 400),
}


@pytest.mark.usefixtures("portal_id")
@pytest.mark.parametrize(("body", "content_type", "status"), GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_bodies_get_4xx_and_store_nothing(client: FlaskClient, app_ctx: AppContext,
                                                  body: bytes | str, content_type: str,
                                                  status: int) -> None:
    """Not a form, wrong keys, missing routing fields: a short JSON error, no row."""
    response = post(client, body, content_type)
    assert response.status_code == status
    assert set(response.get_json()) == {"error"}
    assert len(response.get_json()["error"]) <= 120
    assert inbox_count(app_ctx.sessions) == 0


def test_an_oversized_body_gets_413_before_it_is_read(client: FlaskClient, app_ctx: AppContext,
                                                      portal_id: int) -> None:
    """A body over ``events.max_body_bytes`` is refused by its Content-Length."""
    limit = app_ctx.settings.events.max_body_bytes
    body = form_body(deal_event()) + "&data[PAD]=" + "x" * limit
    response = post(client, body)
    assert response.status_code == 413
    assert response.get_json() == {"error": "body too large"}
    assert inbox_count(app_ctx.sessions) == 0


def test_an_oversized_body_without_content_length_gets_413(client: FlaskClient,
                                                           app_ctx: AppContext,
                                                           portal_id: int) -> None:
    """A chunked body with no Content-Length is read only up to the limit."""
    limit = app_ctx.settings.events.max_body_bytes
    body = (form_body(deal_event()) + "&data[PAD]=" + "x" * limit).encode()
    response = client.post("/b24/events", input_stream=io.BytesIO(body), content_type=FORM,
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert inbox_count(app_ctx.sessions) == 0


def test_a_body_just_under_the_limit_is_accepted(client: FlaskClient, app_ctx: AppContext,
                                                 portal_id: int) -> None:
    """The limit is the limit: a padded valid event that fits is stored."""
    limit = app_ctx.settings.events.max_body_bytes
    base = form_body(deal_event()) + "&data[PAD]="
    response = post(client, base + "x" * (limit - len(base)))
    assert response.status_code == 200
    assert inbox_count(app_ctx.sessions) == 1


def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("event-*.json") if "ONAPPINSTALL" not in p.name)


@pytest.mark.parametrize("path", _examples(), ids=lambda p: p.stem)
def test_every_documented_event_sample_is_accepted(client: FlaskClient, app_ctx: AppContext,
                                                   path: Path) -> None:
    """Each sample, sent as the bracketed all-string form, is accepted for its portal."""
    sample = json.loads(path.read_text())
    auth = sample["auth"]
    portal_id = register_portal(app_ctx.sessions, app_ctx.secrets, member_id=auth["member_id"],
                                token=auth["application_token"], domain=auth["domain"])
    response = post(client, form_body(sample))
    assert response.status_code == 200, response.get_json()
    if sample["event"] == "ONAPPUNINSTALL":
        assert response.get_json() == {"result": "uninstalled"}
        assert inbox_count(app_ctx.sessions) == 0
    else:
        assert response.get_json() == {"result": "ok"}
        assert inbox_count(app_ctx.sessions, portal_id) == 1


def test_the_request_makes_no_rest_call(engine: Engine, session_factory: sessionmaker[Session],
                                        secret_box: SecretBox, app_settings: Settings) -> None:
    """The event endpoint never asks for a gateway: storing is all it does."""
    provider = NoGatewayProvider()
    ctx = build_ctx(app_settings, engine, session_factory, secret_box, provider,
                    clock=FakeClock())
    register_portal(session_factory, secret_box)
    client = create_app(ctx).test_client()
    for ts in range(5):
        assert post(client, form_body(deal_event(ts=ts))).status_code == 200
    assert post(client, form_body(deal_event(token="forged"))).status_code == 401
    assert provider.gateway.calls == []
    assert provider.asked == []


# -- uninstall ----------------------------------------------------------------------------------
def _uninstall(clean: bool) -> dict[str, Any]:
    return {"event": "ONAPPUNINSTALL", "data": {"LANGUAGE_ID": "ru", "CLEAN": int(clean)},
            "ts": 1466439714, "auth": {"domain": "some-domain.bitrix24.com",
                                       "member_id": MEMBER_ID, "application_token": APP_TOKEN}}


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "keep"])
def test_uninstall_disables_the_portal_and_purges_on_clean(
        client: FlaskClient, app_ctx: AppContext, portal_id: int,
        gateway_provider: FakeGatewayProvider, clean: bool) -> None:
    """ONAPPUNINSTALL: status uninstalled, tokens gone, rows purged only with CLEAN=1."""
    other = register_portal(app_ctx.sessions, app_ctx.secrets, member_id="other",
                            token="other-token", domain="other.bitrix24.com")
    for ts in range(3):
        assert post(client, form_body(deal_event(ts=ts))).status_code == 200
    with app_ctx.sessions() as session:
        session.add_all([MirrorDeal(portal_id=portal_id, id=7405, title="Поставка"),
                         SyncCursor(portal_id=portal_id, entity="deal", last_id=7405),
                         MirrorDeal(portal_id=other, id=7405, title="Чужая")])
        session.commit()
    other_event = deal_event(member_id="other", token="other-token")
    assert post(client, form_body(other_event)).status_code == 200
    response = post(client, form_body(_uninstall(clean)))
    assert response.status_code == 200
    assert response.get_json() == {"result": "uninstalled"}
    with app_ctx.sessions() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        assert portal.status == "uninstalled"
        assert (portal.access_token_enc, portal.refresh_token_enc,
                portal.application_token_enc) == (None, None, None)
    assert inbox_count(app_ctx.sessions, portal_id) == (0 if clean else 3)
    assert inbox_count(app_ctx.sessions, other) == 1  # another portal's rows are untouched
    with app_ctx.sessions() as session:
        mirrored = session.scalars(select(MirrorDeal.portal_id)).all()
        cursors = session.scalars(select(SyncCursor.portal_id)).all()
    assert sorted(mirrored) == ([other] if clean else sorted([portal_id, other]))
    assert cursors == ([] if clean else [portal_id])
    assert gateway_provider.forgotten == [portal_id]
    assert gateway_provider.asked == []  # no REST call: the app's access is gone anyway
    # A replayed uninstall or a late event no longer verifies.
    assert post(client, form_body(_uninstall(clean))).status_code == 401
    assert post(client, form_body(deal_event(ts=9))).status_code == 401


# -- outgoing webhooks --------------------------------------------------------------------------
WEBHOOK_SAMPLE = EXAMPLES / "event-ONCRMDEALADD-outgoing-webhook.json"


def _webhook_client(engine: Engine, sessions: sessionmaker[Session], secrets: SecretBox,
                    settings: Settings, *, token: str, webhook_url: str = "") -> FlaskClient:
    portal = dataclasses.replace(settings.portal, mode="webhook",
                                 outgoing_webhook_token=Secret(token),
                                 webhook_url=Secret(webhook_url))
    ctx = build_ctx(dataclasses.replace(settings, portal=portal), engine, sessions, secrets,
                    NoGatewayProvider(), clock=FakeClock())
    return create_app(ctx).test_client()


def test_webhook_mode_pins_the_first_verified_member_id(
        engine: Engine, session_factory: sessionmaker[Session], secret_box: SecretBox,
        app_settings: Settings) -> None:
    """The configured token admits the first member_id; another one is refused afterwards."""
    sample = json.loads(WEBHOOK_SAMPLE.read_text())
    token = sample["auth"]["application_token"]
    client = _webhook_client(engine, session_factory, secret_box, app_settings, token=token,
                             webhook_url="https://some-domain.bitrix24.com/rest/1/abcdef/")
    assert post(client, form_body({**sample, "auth": {**sample["auth"],
                                                      "application_token": "x" * 32}})
                ).status_code == 401
    assert portal_count(session_factory) == 0
    response = post(client, form_body(sample))
    assert response.status_code == 200
    assert response.get_json() == {"result": "ok"}
    with session_factory() as session:
        portal = session.scalars(select(Portal)).one()
    assert (portal.member_id, portal.mode, portal.status) == (
        sample["auth"]["member_id"], "webhook", "active")
    assert post(client, form_body({**sample, "ts": "1766047125"})).status_code == 200
    intruder = {**sample, "auth": {**sample["auth"], "member_id": "f" * 32}}
    assert post(client, form_body(intruder)).status_code == 401
    assert portal_count(session_factory) == 1
    assert inbox_count(session_factory) == 2


def test_webhook_mode_refuses_a_portal_other_than_the_webhook_url(
        engine: Engine, session_factory: sessionmaker[Session], secret_box: SecretBox,
        app_settings: Settings) -> None:
    """With an incoming webhook configured, its host is the only portal that can be pinned."""
    sample = json.loads(WEBHOOK_SAMPLE.read_text())
    client = _webhook_client(engine, session_factory, secret_box, app_settings,
                             token=sample["auth"]["application_token"],
                             webhook_url="https://elsewhere.bitrix24.ru/rest/1/abcdef/")
    assert post(client, form_body(sample)).status_code == 401
    assert portal_count(session_factory) == 0
    assert inbox_count(session_factory) == 0


def test_webhook_mode_without_a_configured_token_refuses_everything(
        engine: Engine, session_factory: sessionmaker[Session], secret_box: SecretBox,
        app_settings: Settings) -> None:
    """An empty ``outgoing_webhook_token`` never matches, not even an empty token."""
    sample = json.loads(WEBHOOK_SAMPLE.read_text())
    client = _webhook_client(engine, session_factory, secret_box, app_settings, token="")
    assert post(client, form_body(sample)).status_code == 401
    assert portal_count(session_factory) == 0
