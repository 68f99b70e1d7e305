"""Pytest plugin: the Flask app over a test database, its test client, and a live app server."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from b24app import portals
from b24app.config import Secret, Settings, with_generated_secrets
from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.db import session_scope
from b24app.gateway.protocol import Gateway
from b24app.models import InboxEvent, Portal, utcnow
from b24app.web import create_app
from b24emu import EmulatorServer
from tests.fakes import FakeClock, FakeGateway

MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"


# -- gateway providers -------------------------------------------------------------------------
@dataclass
class FakeGatewayProvider:
    """``GatewayProvider`` handing out one ``FakeGateway``; records what it was asked."""

    gateway: FakeGateway = field(default_factory=FakeGateway)
    asked: list[int] = field(default_factory=list)
    forgotten: list[int] = field(default_factory=list)

    def for_portal(self, portal_id: int) -> Gateway:
        """The fake, for any portal."""
        self.asked.append(portal_id)
        return self.gateway

    def forget(self, portal_id: int) -> None:
        """Record the request."""
        self.forgotten.append(portal_id)

    def close(self) -> None:
        """Nothing to close."""


class NoGatewayProvider(FakeGatewayProvider):
    """A provider that fails the test if anyone asks it for a gateway."""

    def for_portal(self, portal_id: int) -> Gateway:
        """Asking for a gateway is the failure under test."""
        raise AssertionError(f"a gateway was requested for portal {portal_id}")


# -- wire helpers ------------------------------------------------------------------------------
def flatten(payload: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Bracketed form pairs of a nested payload, every scalar a string (Bitrix24's wire)."""
    pairs: list[tuple[str, str]] = []
    for key, value in payload.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs.extend(flatten(value, name))
        elif isinstance(value, list):
            pairs.extend(flatten({str(i): v for i, v in enumerate(value)}, name))
        else:
            pairs.append((name, str(value)))
    return pairs


def form_body(payload: Mapping[str, Any] | Iterable[tuple[str, str]]) -> str:
    """The url-encoded body of a payload (or of ready pairs)."""
    pairs = flatten(payload) if isinstance(payload, Mapping) else list(payload)
    return urlencode(pairs)


def deal_event(entity_id: int = 7405, ts: int = 1766047124, *, member_id: str = MEMBER_ID,
               token: str = APP_TOKEN, name: str = "ONCRMDEALADD") -> dict[str, Any]:
    """An ONCRMDEAL* event as a local app receives it."""
    return {"event": name, "event_handler_id": "975", "data": {"FIELDS": {"ID": entity_id}},
            "ts": ts, "auth": {"access_token": "user-access", "expires_in": 3600,
                               "scope": "crm", "domain": "some-domain.bitrix24.com",
                               "server_endpoint": "https://oauth.bitrix.info/rest/",
                               "status": "L",
                               "client_endpoint": "https://some-domain.bitrix24.com/rest/",
                               "member_id": member_id, "application_token": token}}


def register_portal(sessions: sessionmaker[Session], secrets: SecretBox, *,
                    member_id: str = MEMBER_ID, token: str = APP_TOKEN,
                    domain: str = "some-domain.bitrix24.com") -> int:
    """Store an installed portal directly (as a verified install would); returns its id."""
    with session_scope(sessions) as session:
        portal = portals.register_install(
            session, secrets, member_id=member_id, domain=domain,
            client_endpoint=f"https://{domain}/rest/", access="access-1", refresh="refresh-1",
            expires_at=utcnow() + timedelta(hours=1), application_token=token, scope="crm",
            version="1")
        return portal.id


def inbox_count(sessions: sessionmaker[Session], portal_id: int | None = None) -> int:
    """Rows in ``inbox_events`` (of one portal, or all)."""
    statement = select(func.count()).select_from(InboxEvent)
    if portal_id is not None:
        statement = statement.where(InboxEvent.portal_id == portal_id)
    with sessions() as session:
        return int(session.scalar(statement) or 0)


def portal_count(sessions: sessionmaker[Session]) -> int:
    """Rows in ``portals``."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Portal)) or 0)


# -- the app over the test database ------------------------------------------------------------
def build_ctx(settings: Settings, engine: Engine, sessions: sessionmaker[Session],
              secrets: SecretBox, gateways: Any, *, clock: Callable[[], Any] | None = None,
              ) -> AppContext:
    """An ``AppContext`` on the test database."""
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, secrets=secrets,
                     gateways=gateways)
    if clock is not None:
        ctx.clock = clock
    return ctx


@pytest.fixture
def app_settings() -> Settings:
    """Default settings with generated secrets (local-app mode, public URL on loopback)."""
    return with_generated_secrets(Settings())


@pytest.fixture
def gateway_provider() -> FakeGatewayProvider:
    """The FakeGateway provider of ``app_ctx``."""
    return FakeGatewayProvider()


@pytest.fixture
def app_ctx(app_settings: Settings, engine: Engine, session_factory: sessionmaker[Session],
            secret_box: SecretBox, gateway_provider: FakeGatewayProvider) -> AppContext:
    """An ``AppContext`` on ``db_url`` (both backends) with the FakeGateway provider."""
    return build_ctx(app_settings, engine, session_factory, secret_box, gateway_provider,
                     clock=FakeClock())


@pytest.fixture
def flask_app(app_ctx: AppContext) -> Flask:
    """``create_app(app_ctx)``."""
    app = create_app(app_ctx)
    app.testing = True
    return app


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    """The Flask test client of ``flask_app``."""
    return flask_app.test_client()


# -- a live app server for the emulator --------------------------------------------------------
@dataclass
class Recorded:
    """One response the app server sent."""

    path: str
    status: int
    body: bytes


class _Recorder:
    """WSGI middleware that keeps every response (the emulator's DeliveryResult drops them)."""

    def __init__(self) -> None:
        self.app: Any = None
        self.responses: list[Recorded] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status: list[str] = []

        def start(code: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(code)
            return start_response(code, headers, exc_info)

        chunks = self.app(environ, start)
        try:
            body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        with self._lock:
            self.responses.append(Recorded(environ.get("PATH_INFO", ""), int(status[0][:3]),
                                           body))
        return [body]


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log."""


@dataclass
class AppServer:
    """The app served on ``url`` (a free loopback port) with a real ``GatewayFactory``."""

    url: str
    ctx: AppContext
    app: Flask
    recorder: _Recorder

    @property
    def responses(self) -> list[Recorded]:
        """Every response sent so far."""
        return self.recorder.responses

    def last(self, path: str) -> Recorded:
        """The latest response to ``path``."""
        return next(r for r in reversed(self.responses) if r.path == path)


def emulator_settings(emulator: EmulatorServer, public_url: str) -> Settings:
    """Settings that point the token store at the emulator's OAuth server."""
    portal = emulator.portal
    settings = with_generated_secrets(Settings())
    return dataclasses.replace(
        settings, app=dataclasses.replace(settings.app, public_url=public_url),
        portal=dataclasses.replace(
            settings.portal, client_id=portal.app.client_id,
            client_secret=Secret(portal.app.client_secret),
            oauth_url=f"{emulator.url}/oauth/token/"))


@pytest.fixture
def app_server(emulator: EmulatorServer, engine: Engine, session_factory: sessionmaker[Session],
               secret_box: SecretBox) -> Iterator[AppServer]:
    """``create_app(ctx)`` on 127.0.0.1:<free port> in a thread, gateways to the emulator."""
    from b24app.gateway.factory import GatewayFactory

    recorder = _Recorder()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, recorder, threaded=True,
                                         request_handler=_Quiet)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = emulator_settings(emulator, url)
    gateways = GatewayFactory(settings, session_factory, secret_box, utcnow)
    ctx = build_ctx(settings, engine, session_factory, secret_box, gateways)
    # The emulator lives on http://127.0.0.1: only the loopback exception lets it install.
    recorder.app = create_app(ctx, allow_insecure_endpoints=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="b24app-test-http", daemon=True)
    thread.start()
    try:
        yield AppServer(url, ctx, recorder.app, recorder)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        gateways.close()

