"""The app's pages in a real browser: the install page finishes the install only on success."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Page, Route

from b24app.context import AppContext
from tests.appfixtures import FakeGatewayProvider
from tests.test_install import FORM, UI_QUERY, BrokenGateway, _ui_form

# A stand-in for Bitrix24's JS library: records what the page asks of it.
BX24_STUB = """
window.__bx24 = [];
window.BX24 = {
  init: function (callback) { window.__bx24.push('init'); callback(); },
  installFinish: function () { window.__bx24.push('installFinish'); }
};
"""


def _serve(page: Page, html: str) -> list[str]:
    """Open ``html`` as if served by the app; the Bitrix24 library URL gets the stub."""
    requested: list[str] = []

    def handle(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if "api.bitrix24.com/api/v1" in url:
            route.fulfill(status=200, content_type="application/javascript", body=BX24_STUB)
        elif url.startswith("http://app.test/"):
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
        else:
            route.abort()

    page.route("**/*", handle)
    page.goto("http://app.test/b24/install")
    return requested


def _install_html(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setattr("b24app.web.install.fetch_app_info",
                        lambda endpoint, token: {"CODE": "local.x", "VERSION": 1})
    response = client.post(UI_QUERY, data=_ui_form(), content_type=FORM)
    return response.status_code, response.get_data(as_text=True)


def test_install_page_calls_install_finish_after_setup(
        client: FlaskClient, app_ctx: AppContext, monkeypatch: pytest.MonkeyPatch,
        page: Page) -> None:
    """Success: the page loads the Bitrix24 library, then calls init and installFinish once."""
    status, html = _install_html(client, monkeypatch)
    assert status == 200
    requested = _serve(page, html)
    assert any("api.bitrix24.com/api/v1" in url for url in requested)
    calls: Any = page.evaluate("window.__bx24")
    assert calls == ["init", "installFinish"]
    assert "Приложение установлено" in page.inner_text("h1")


def test_failed_setup_page_never_finishes_the_install(
        client: FlaskClient, app_ctx: AppContext, gateway_provider: FakeGatewayProvider,
        monkeypatch: pytest.MonkeyPatch, page: Page) -> None:
    """Failure: a Russian error page; Bitrix24's library is not even loaded."""
    gateway_provider.gateway = BrokenGateway()
    status, html = _install_html(client, monkeypatch)
    assert status == 502
    requested = _serve(page, html)
    assert not any("api.bitrix24.com" in url for url in requested)
    assert page.evaluate("typeof window.__bx24") == "undefined"
    assert "Не удалось завершить установку" in page.inner_text("body")
