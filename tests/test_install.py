"""Install lifecycle: both shapes against the emulator, setup, re-install, uninstall, pages."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from b24app import lifecycle
from b24app.config import Settings
from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.gateway.client import BitrixClient
from b24app.gateway.errors import AccessDenied
from b24app.gateway.protocol import EventBinding
from b24app.lifecycle import (
    COMPANY_FIELDS,
    KPI_TYPE_CODE,
    OFFLINE_EVENTS,
    ONLINE_EVENTS,
    setup_portal,
)
from b24app.models import InboxEvent, Portal
from b24app.web import create_app
from b24emu import EmulatorServer
from tests.appfixtures import (
    APP_TOKEN,
    MEMBER_ID,
    AppServer,
    FakeGatewayProvider,
    build_ctx,
    deal_event,
    form_body,
    inbox_count,
    portal_count,
    register_portal,
)
from tests.fakes import FakeClock, FakeGateway

FORM = "application/x-www-form-urlencoded"
FIELD_NAMES = {spec.name for spec in COMPANY_FIELDS}


# -- setup_portal over the FakeGateway -------------------------------------------------------
def test_setup_binds_creates_and_then_skips_everything(app_settings: Settings) -> None:
    """A first setup binds online+offline events and creates fields and the type; a second
    one changes nothing."""
    gateway = FakeGateway()
    report = setup_portal(gateway, app_settings, "https://nois.example/", "1")
    handler = "https://nois.example/b24/events"
    assert report.handler == handler
    assert {b for b in gateway.bindings if not b.offline} == {
        EventBinding(e, handler) for e in ONLINE_EVENTS}
    assert {b.event for b in gateway.bindings if b.offline} == set(OFFLINE_EVENTS)
    assert "ONAPPUNINSTALL" in ONLINE_EVENTS and "ONAPPUNINSTALL" not in OFFLINE_EVENTS
    assert set(gateway.fields["company"]) == FIELD_NAMES
    assert [t.code for t in gateway.types] == [KPI_TYPE_CODE]
    assert report.changed
    again = setup_portal(gateway, app_settings, "https://nois.example", "1")
    assert not again.changed
    assert len(again.skipped) == len(ONLINE_EVENTS) + len(OFFLINE_EVENTS) + len(FIELD_NAMES) + 1
    assert len(gateway.bindings) == len(ONLINE_EVENTS) + len(OFFLINE_EVENTS)


def test_setup_moves_handlers_from_an_old_url(app_settings: Settings) -> None:
    """Handlers of ours at an old public URL are unbound; foreign-looking ones stay."""
    gateway = FakeGateway()
    old = "https://old.example/b24/events"
    gateway.bindings = [EventBinding("ONCRMDEALADD", old), EventBinding("ONCRMLEADADD", old),
                        EventBinding("ONUSERADD", "https://nois.example/other")]
    report = setup_portal(gateway, app_settings, "https://nois.example", "2")
    assert sorted(report.unbound) == [f"ONCRMDEALADD {old}", f"ONCRMLEADADD {old}"]
    assert not [b for b in gateway.bindings if b.handler == old]
    assert EventBinding("ONUSERADD", "https://nois.example/other") in gateway.bindings


def test_setup_keeps_existing_fields_and_type(app_settings: Settings) -> None:
    """Fields and the smart process that exist already are left alone."""
    gateway = FakeGateway()
    gateway.fields["company"] = ["UF_CRM_NOIS_LTV", "UF_CRM_OTHER"]
    gateway.add_crm_type("KPI менеджера", "NOIS_KPI")
    report = setup_portal(gateway, app_settings, "https://nois.example", "1")
    assert "UF_CRM_NOIS_LTV" not in report.fields_created
    assert len(report.fields_created) == len(FIELD_NAMES) - 1
    assert report.types_created == []
    assert len(gateway.types) == 1


def test_setup_in_webhook_mode_binds_nothing(app_settings: Settings) -> None:
    """Incoming webhooks cannot bind events; fields and the type are still created."""
    settings = dataclasses.replace(
        app_settings, portal=dataclasses.replace(app_settings.portal, mode="webhook"))
    gateway = FakeGateway()
    report = setup_portal(gateway, settings, "https://nois.example", "1")
    assert gateway.bindings == [] and report.bound == []
    assert len(report.fields_created) == len(FIELD_NAMES)


# -- against the emulator over HTTP -----------------------------------------------------------
def _admin_client(emulator: EmulatorServer) -> BitrixClient:
    """An independent REST client (the admin's incoming webhook) to read the portal back."""
    return BitrixClient(emulator.portal.webhook_url)


def _portal_row(sessions: sessionmaker[Session]) -> Portal:
    with sessions() as session:
        return session.scalars(select(Portal)).one()


def _our_bindings(emulator: EmulatorServer) -> list[Any]:
    return [b for b in emulator.portal.events.bindings
            if b.owner == emulator.portal.app.client_id]


def _install(emulator: EmulatorServer, app_server: AppServer, **kwargs: Any) -> Any:
    result = emulator.portal.install_app(f"{app_server.url}/b24/install", **kwargs)
    assert result.status == 200, (result.error, app_server.last("/b24/install").body[:500])
    return result


def test_api_only_install_registers_the_portal_and_sets_it_up(
        emulator: EmulatorServer, app_server: AppServer) -> None:
    """ONAPPINSTALL: tokens stored encrypted, events bound, fields and smart process created."""
    result = _install(emulator, app_server)
    sent = dict(parse_qsl(result.body))
    portal = _portal_row(app_server.ctx.sessions)
    secrets = app_server.ctx.secrets
    assert (portal.member_id, portal.status, portal.mode) == (
        emulator.portal.member_id, "active", "local_app")
    assert portal.client_endpoint == emulator.portal.client_endpoint
    assert portal.domain == emulator.portal.domain
    assert portal.app_version == "1" and portal.expires_at is not None
    for name, key in (("access_token", "auth[access_token]"),
                      ("refresh_token", "auth[refresh_token]"),
                      ("application_token", "auth[application_token]")):
        stored = getattr(portal, f"{name}_enc")
        assert sent[key] not in stored  # encrypted at rest
        assert portal.get_secret(secrets, name) == sent[key]
    handler = f"{app_server.url}/b24/events"
    bindings = _our_bindings(emulator)
    assert {b.event for b in bindings if not b.offline and b.handler == handler} == set(
        ONLINE_EVENTS)
    assert {b.event for b in bindings if b.offline} == set(OFFLINE_EVENTS)
    client = _admin_client(emulator)
    try:
        fields = {r["FIELD_NAME"]: r for r in client.call("crm.company.userfield.list").value}
        types = client.call("crm.type.list").value["types"]
    finally:
        client.close()
    assert set(fields) >= FIELD_NAMES
    assert fields["UF_CRM_NOIS_LTV"]["USER_TYPE_ID"] == "double"
    assert fields["UF_CRM_NOIS_LAST_PURCHASE"]["USER_TYPE_ID"] == "date"
    assert [(t["title"], t["code"]) for t in types] == [("KPI менеджера", KPI_TYPE_CODE)]
    answer = app_server.last("/b24/install")
    assert answer.status == 200 and b'"result":"installed"' in answer.body.replace(b" ", b"")


def test_a_second_install_changes_nothing(emulator: EmulatorServer,
                                          app_server: AppServer) -> None:
    """Re-install of the same version: nothing bound, created or unbound; one portal row."""
    _install(emulator, app_server)
    before = (len(_our_bindings(emulator)), len(emulator.portal.userfields),
              len(emulator.portal.crm_types))
    _install(emulator, app_server)
    setup = _json(app_server.last("/b24/install").body)["setup"]
    assert (setup["bound"], setup["unbound"], setup["fields_created"],
            setup["types_created"]) == ([], [], [], [])
    assert before == (len(_our_bindings(emulator)), len(emulator.portal.userfields),
                      len(emulator.portal.crm_types))
    assert portal_count(app_server.ctx.sessions) == 1


def test_a_new_version_rebinds_the_dropped_handlers(emulator: EmulatorServer,
                                                    app_server: AppServer) -> None:
    """Bitrix24 drops handlers on a new version; the install binds them again."""
    _install(emulator, app_server)
    _install(emulator, app_server, version=2)
    setup = _json(app_server.last("/b24/install").body)["setup"]
    assert len(setup["bound"]) == len(ONLINE_EVENTS) + len(OFFLINE_EVENTS)
    assert setup["fields_created"] == [] and setup["types_created"] == []
    assert _portal_row(app_server.ctx.sessions).app_version == "2"


def _json(body: bytes) -> Any:
    return json.loads(body)


def test_ui_install_finishes_only_after_setup_and_events_flow(
        emulator: EmulatorServer, app_server: AppServer) -> None:
    """The install page answers HTML with BX24.installFinish; after it, events reach the inbox."""
    _install(emulator, app_server, ui=True)
    page = app_server.last("/b24/install")
    html = page.body.decode()
    assert page.status == 200
    assert "//api.bitrix24.com/api/v1/" in html and "BX24.installFinish()" in html
    assert "Приложение установлено" in html
    assert {b.event for b in _our_bindings(emulator) if not b.offline} == set(ONLINE_EVENTS)
    portal = _portal_row(app_server.ctx.sessions)
    assert portal.get_secret(app_server.ctx.secrets, "application_token") == (
        emulator.portal.app.application_token)
    emulator.portal.finish_install()
    client = _admin_client(emulator)
    try:
        deal_id = client.call("crm.deal.add", {"fields": {"TITLE": "Поставка"}}).value
    finally:
        client.close()
    assert emulator.portal.events.wait_idle(10)
    with app_server.ctx.sessions() as session:
        rows = session.scalars(select(InboxEvent)).all()
    assert [(r.event, r.entity_id) for r in rows] == [("ONCRMDEALADD", str(deal_id))]


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "keep"])
def test_uninstall_from_the_emulator(emulator: EmulatorServer, app_server: AppServer,
                                     clean: bool) -> None:
    """ONAPPUNINSTALL from the portal: status uninstalled, tokens dropped, data per CLEAN."""
    _install(emulator, app_server)
    client = _admin_client(emulator)
    try:
        client.call("crm.company.add", {"fields": {"TITLE": "ООО Ромашка"}})
    finally:
        client.close()
    assert emulator.portal.events.wait_idle(10)
    portal_id = _portal_row(app_server.ctx.sessions).id
    assert inbox_count(app_server.ctx.sessions, portal_id) == 1
    results = emulator.portal.uninstall_app(clean=clean)
    assert [r.status for r in results] == [200]
    portal = _portal_row(app_server.ctx.sessions)
    assert portal.status == "uninstalled"
    assert portal.access_token_enc is None and portal.refresh_token_enc is None
    assert inbox_count(app_server.ctx.sessions, portal_id) == (0 if clean else 1)


def test_a_forged_install_is_refused(emulator: EmulatorServer, app_server: AppServer) -> None:
    """An ONAPPINSTALL whose token app.info does not accept stores nothing."""
    payload = _install_payload(emulator, access="forged-access-token")
    response = requests.post(f"{app_server.url}/b24/install", data=form_body(payload),
                             headers={"Content-Type": FORM}, timeout=10)
    assert response.status_code == 403
    assert set(response.json()) == {"error"}
    assert portal_count(app_server.ctx.sessions) == 0
    assert _our_bindings(emulator) == []


def test_an_install_for_another_app_is_refused(emulator: EmulatorServer, engine: Engine,
                                               session_factory: sessionmaker[Session],
                                               secret_box: SecretBox,
                                               app_settings: Settings) -> None:
    """With ``portal.client_id`` set, app.info must name that app."""
    access, _ = emulator.portal.auth.issue(emulator.portal.app.client_id, 1)
    emulator.portal.app.installed = True
    settings = dataclasses.replace(app_settings, portal=dataclasses.replace(
        app_settings.portal, client_id="local.000000000000.1"))
    provider = FakeGatewayProvider()
    ctx = build_ctx(settings, engine, session_factory, secret_box, provider)
    client = create_app(ctx, allow_insecure_endpoints=True).test_client()
    payload = _install_payload(emulator, access=access.token)
    response = client.post("/b24/install", data=form_body(payload), content_type=FORM)
    assert response.status_code == 403
    assert portal_count(session_factory) == 0 and provider.asked == []


def _install_payload(emulator: EmulatorServer | None, *, access: str,
                     endpoint: str | None = None) -> dict[str, Any]:
    """An ONAPPINSTALL form for the emulator's portal (or the documented sample portal)."""
    domain = emulator.portal.domain if emulator else "some-domain.bitrix24.com"
    member_id = emulator.portal.member_id if emulator else MEMBER_ID
    return {"event": "ONAPPINSTALL", "data": {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y",
                                              "LANGUAGE_ID": "ru"},
            "ts": "1696527000",
            "auth": {"domain": domain, "scope": "crm task", "access_token": access,
                     "refresh_token": "r" * 32, "expires_in": "3600",
                     "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "L",
                     "client_endpoint": endpoint or f"http://{domain}/rest/",
                     "member_id": member_id, "application_token": "t" * 32}}


# -- endpoint checks without the network ------------------------------------------------------
@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:1/rest/",  # plain http is refused unless explicitly allowed
    "http://portal.bitrix24.ru/rest/",
    "https://portal.bitrix24.ru/rest/app.info?x=1",
    "https://user:pw@portal.bitrix24.ru/rest/",
    "ftp://portal.bitrix24.ru/rest/",
    "https://portal.bitrix24.ru/elsewhere/",
])
def test_unsafe_client_endpoints_are_refused_without_a_call(
        client: FlaskClient, app_ctx: AppContext, gateway_provider: FakeGatewayProvider,
        monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """https://<portal>/rest/ only; http only for loopback with the flag on."""
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("app.info must not be called")

    monkeypatch.setattr("b24app.web.install.fetch_app_info", no_network)
    payload = _install_payload(None, access="a" * 32, endpoint=endpoint)
    response = client.post("/b24/install", data=form_body(payload), content_type=FORM)
    assert response.status_code == 400
    assert portal_count(app_ctx.sessions) == 0 and gateway_provider.asked == []


def test_install_garbage_is_refused(client: FlaskClient, app_ctx: AppContext) -> None:
    """Neither shape, a wrong content type, or missing tokens: 4xx, nothing stored."""
    for body, content_type, status in (
            ("hello=1", FORM, 400), ("{}", "application/json", 415),
            (form_body({"event": "ONAPPINSTALL", "auth": {"member_id": "x"}}), FORM, 400)):
        response = client.post("/b24/install", data=body, content_type=content_type)
        assert response.status_code == status
    assert portal_count(app_ctx.sessions) == 0


def _ui_form(token: str = APP_TOKEN) -> dict[str, str]:
    return {"AUTH_ID": "a" * 32, "AUTH_EXPIRES": "3600", "REFRESH_ID": "r" * 32,
            "SERVER_ENDPOINT": "https://oauth.bitrix.info/rest/", "APPLICATION_TOKEN": token,
            "APPLICATION_SCOPE": "crm,task", "member_id": MEMBER_ID, "status": "L",
            "PLACEMENT": "DEFAULT"}


UI_QUERY = "/b24/install?DOMAIN=some-domain.bitrix24.com&PROTOCOL=1&LANG=ru&APP_SID=abc"


class BrokenGateway(FakeGateway):
    """A portal that refuses the setup calls."""

    def bound_events(self) -> list[EventBinding]:
        raise AccessDenied("ACCESS_DENIED", "Access denied!", status=403, method="event.get")


def test_ui_install_failure_shows_an_error_page_without_install_finish(
        client: FlaskClient, app_ctx: AppContext, gateway_provider: FakeGatewayProvider,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Setup fails: a Russian error page, no installFinish; the verified grant is kept."""
    monkeypatch.setattr("b24app.web.install.fetch_app_info",
                        lambda endpoint, token: {"CODE": "local.x", "VERSION": 3})
    gateway_provider.gateway = BrokenGateway()
    response = client.post(UI_QUERY, data=_ui_form(), content_type=FORM)
    html = response.get_data(as_text=True)
    assert response.status_code == 502
    assert "Не удалось завершить установку" in html
    assert "installFinish" not in html and "api.bitrix24.com" not in html
    portal = _portal_row(app_ctx.sessions)
    assert (portal.member_id, portal.client_endpoint, portal.app_version) == (
        MEMBER_ID, "https://some-domain.bitrix24.com/rest/", "3")


def test_ui_install_success_with_the_fake_gateway(client: FlaskClient, app_ctx: AppContext,
                                                  gateway_provider: FakeGatewayProvider,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The page shape builds https://DOMAIN/rest/ from the query and finishes the install."""
    seen: list[str] = []

    def app_info(endpoint: str, token: str) -> dict[str, Any]:
        seen.append(endpoint)
        return {"CODE": "local.x", "VERSION": 1}

    monkeypatch.setattr("b24app.web.install.fetch_app_info", app_info)
    response = client.post(UI_QUERY, data=_ui_form(), content_type=FORM)
    assert response.status_code == 200
    assert "BX24.installFinish()" in response.get_data(as_text=True)
    assert seen == ["https://some-domain.bitrix24.com/rest/"]
    assert len(gateway_provider.gateway.bindings) == len(ONLINE_EVENTS) + len(OFFLINE_EVENTS)


def test_an_installed_member_id_cannot_be_moved_to_another_host(
        client: FlaskClient, app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a client_id to check, a live token of another portal cannot take a member_id."""
    register_portal(app_ctx.sessions, app_ctx.secrets, domain="victim.bitrix24.ru")
    monkeypatch.setattr("b24app.web.install.fetch_app_info",
                        lambda endpoint, token: {"CODE": "local.attacker", "VERSION": 1})
    response = client.post(UI_QUERY, data=_ui_form(token="attacker"), content_type=FORM)
    assert response.status_code == 403
    portal = _portal_row(app_ctx.sessions)
    assert portal.client_endpoint == "https://victim.bitrix24.ru/rest/"
    assert portal.get_secret(app_ctx.secrets, "application_token") == APP_TOKEN


# -- the app's pages ----------------------------------------------------------------------------
def test_main_page_verifies_the_frame_post(client: FlaskClient, app_ctx: AppContext,
                                           gateway_provider: FakeGatewayProvider) -> None:
    """Unknown portal, wrong token, then the status page with counts."""
    response = client.get("/")
    assert response.status_code == 200 and "Откройте приложение" in response.get_data(True)
    frame = {"member_id": MEMBER_ID, "APPLICATION_TOKEN": APP_TOKEN, "PLACEMENT": "DEFAULT",
             "AUTH_ID": "x", "REFRESH_ID": "y"}
    response = client.post("/?DOMAIN=some-domain.bitrix24.com", data=frame)
    assert response.status_code == 404
    assert "не установлено" in response.get_data(as_text=True)
    register_portal(app_ctx.sessions, app_ctx.secrets)
    response = client.post("/", data={**frame, "APPLICATION_TOKEN": "forged"})
    assert response.status_code == 403
    setup_portal(gateway_provider.gateway, app_ctx.settings, app_ctx.settings.app.public_url,
                 "1")
    for ts in range(2):
        client.post("/b24/events", data=form_body(deal_event(ts=ts)), content_type=FORM)
    response = client.post("/", data=frame)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "some-domain.bitrix24.com" in html and "активно" in html
    assert f"<td>{len(ONLINE_EVENTS)}</td>" in html
    assert "ждут обработки</td><td>2</td>" in html


def test_main_page_renders_when_the_portal_is_unreachable(
        client: FlaskClient, app_ctx: AppContext, gateway_provider: FakeGatewayProvider) -> None:
    """A failing gateway shows «нет данных» instead of an error."""
    register_portal(app_ctx.sessions, app_ctx.secrets)
    gateway_provider.gateway = BrokenGateway()
    response = client.post("/", data={"member_id": MEMBER_ID, "APPLICATION_TOKEN": APP_TOKEN})
    assert response.status_code == 200
    assert "нет данных" in response.get_data(as_text=True)


def test_healthz(client: FlaskClient) -> None:
    """The database answers; the version is reported."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"db": "ok", "version": "0.1.0"}


def test_lifecycle_url_helper() -> None:
    """The handler URL is the public URL plus /b24/events, without a double slash."""
    assert lifecycle.events_url("https://nois.example/") == "https://nois.example/b24/events"


def test_fake_clock_is_used_for_expiry(engine: Engine, session_factory: sessionmaker[Session],
                                       secret_box: SecretBox, app_settings: Settings,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``expires_at`` = the context clock + ``AUTH_EXPIRES``."""
    clock = FakeClock()
    ctx = build_ctx(app_settings, engine, session_factory, secret_box, FakeGatewayProvider(),
                    clock=clock)
    monkeypatch.setattr("b24app.web.install.fetch_app_info",
                        lambda endpoint, token: {"VERSION": 1})
    client = create_app(ctx).test_client()
    assert client.post(UI_QUERY, data=_ui_form(), content_type=FORM).status_code == 200
    portal = _portal_row(session_factory)
    assert portal.expires_at is not None
    assert (portal.expires_at - clock.now).total_seconds() == 3600
