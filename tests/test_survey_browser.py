"""The survey page in headless Chromium: a client answers once; a second submit is refused."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask.testing import FlaskClient
from playwright.sync_api import Page, Route

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.nps.survey import LinkSigner, invite
from tests.test_nps_ledger import answers, seed_client, seed_portal

ORIGIN = "http://app.test"


def _serve_app(page: Page, client: FlaskClient) -> list[str]:
    """Route ``http://app.test/...`` to the Flask test client (GET and the form's POST)."""
    requested: list[str] = []

    def handle(route: Route) -> None:
        request = route.request
        requested.append(f"{request.method} {request.url}")
        if not request.url.startswith(f"{ORIGIN}/"):
            route.abort()
            return
        path = request.url[len(ORIGIN):]
        headers = {"Content-Type": request.headers.get("content-type", "")}
        body = (request.post_data or "").encode("utf-8")
        response = client.open(path, method=request.method, data=body or None,
                               headers=headers if body else None)
        route.fulfill(status=response.status_code, headers=dict(response.headers),
                      body=response.get_data())

    page.route("**/*", handle)
    return requested


def _survey_url(ctx: AppContext) -> tuple[int, str]:
    portal_id = seed_portal(ctx.sessions, ctx.secrets)
    with session_scope(ctx.sessions) as session:
        seed_client(session, portal_id, 1, 7, [11])
        url = invite(session, portal_id, 11, "2026-H2", 7,
                     signer=LinkSigner.from_settings(ctx.settings), now=ctx.clock())
    return portal_id, ORIGIN + urlsplit(url).path


def test_client_answers_in_the_browser(app_ctx: AppContext, client: FlaskClient,
                                       page: Page) -> None:
    """Click «9», write a comment, submit: the thanks page, and the answer in the ledger."""
    portal_id, url = _survey_url(app_ctx)
    requested = _serve_app(page, client)
    page.goto(url)
    assert page.inner_text("h1") == "Насколько вероятно, что вы порекомендуете НОИС коллегам?"
    page.get_by_text("9", exact=True).click()
    assert page.get_by_label("9", exact=True).is_checked()
    page.fill("textarea[name=comment]", "Привозите образцы почаще")
    page.get_by_role("button", name="Отправить").click()
    page.wait_for_selector("text=Спасибо за ответ!")
    assert "Ваша оценка 9 сохранена" in page.inner_text("body")
    assert [(r.score, r.comment, r.source) for r in answers(app_ctx.sessions, portal_id)] == [
        (9, "Привозите образцы почаще", "survey")]
    assert [r.split(" ")[0] for r in requested] == ["GET", "POST"]  # the page loads nothing else


def test_a_second_submit_is_refused(app_ctx: AppContext, client: FlaskClient,
                                    page: Page) -> None:
    """The form open in two tabs: the first answer counts, the second says it is received."""
    portal_id, url = _survey_url(app_ctx)
    other = page.context.new_page()
    for tab in (page, other):
        _serve_app(tab, client)
        tab.goto(url)
    page.get_by_text("10", exact=True).click()
    page.get_by_role("button", name="Отправить").click()
    page.wait_for_selector("text=Спасибо за ответ!")

    other.get_by_text("3", exact=True).click()
    other.fill("textarea[name=comment]", "передумал")
    other.get_by_role("button", name="Отправить").click()
    other.wait_for_selector("h1")
    assert other.inner_text("h1") == "Спасибо, ответ уже получен"
    assert [(r.score, r.comment) for r in answers(app_ctx.sessions, portal_id)] == [(10, "")]


def test_the_form_needs_a_score_before_it_submits(app_ctx: AppContext, client: FlaskClient,
                                                  page: Page) -> None:
    """Without a chosen score the browser keeps the form (the server would refuse it too)."""
    portal_id, url = _survey_url(app_ctx)
    requested = _serve_app(page, client)
    page.goto(url)
    page.get_by_role("button", name="Отправить").click()
    assert page.evaluate("document.querySelector('input[name=score]').validity.valueMissing")
    assert [r.split(" ")[0] for r in requested] == ["GET"]
    assert answers(app_ctx.sessions, portal_id) == []
