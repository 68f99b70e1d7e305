"""Survey links: signing and verification, and the form at ``/survey/<token>``."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from itsdangerous import URLSafeSerializer
from sqlalchemy import select
from werkzeug.test import TestResponse

from b24app import portals
from b24app.config import Secret, Settings
from b24app.context import AppContext
from b24app.db import session_scope
from b24app.models import Portal, SurveyInvitation
from b24app.nps.ledger import record_answer, score_from_text
from b24app.nps.survey import (
    SALT,
    Claims,
    LinkSigner,
    LinkState,
    check_link,
    invite,
)
from tests.appfixtures import FakeGatewayProvider
from tests.fakes import FakeClock
from tests.test_nps_ledger import ANSWERED, answers, seed_client, seed_portal

FORM = "application/x-www-form-urlencoded"
WAVE = "2026-H2"


@dataclasses.dataclass
class Link:
    """An invitation's link and what the test needs around it."""

    portal_id: int
    url: str

    @property
    def path(self) -> str:
        """The path the test client requests."""
        return urlsplit(self.url).path

    @property
    def token(self) -> str:
        """The signed token."""
        return self.path.rsplit("/", 1)[1]


def _link(ctx: AppContext, contact_id: int = 11) -> Link:
    portal_id = seed_portal(ctx.sessions, ctx.secrets)
    with session_scope(ctx.sessions) as session:
        seed_client(session, portal_id, 1, 7, [11, 12])
        url = invite(session, portal_id, contact_id, WAVE, 7,
                     signer=LinkSigner.from_settings(ctx.settings), now=ctx.clock())
    return Link(portal_id, url)


def _post(client: FlaskClient, link: Link, **form: str) -> TestResponse:
    return client.post(link.path, data=form, content_type=FORM)


def _invitation(ctx: AppContext) -> SurveyInvitation:
    with ctx.sessions() as session:
        return session.execute(select(SurveyInvitation)).scalar_one()


# -- tokens -------------------------------------------------------------------------------------
def test_invite_builds_a_public_link_and_reuses_it(app_ctx: AppContext) -> None:
    """One invitation per contact and wave: asking again returns the same link."""
    link = _link(app_ctx)
    assert link.url.startswith("http://127.0.0.1:8000/survey/")
    with session_scope(app_ctx.sessions) as session:
        again = invite(session, link.portal_id, 11, WAVE, 7,
                       signer=LinkSigner.from_settings(app_ctx.settings), now=app_ctx.clock())
    assert again == link.url
    invitation = _invitation(app_ctx)
    assert (invitation.contact_id, invitation.wave, invitation.rep_id) == (11, WAVE, 7)
    assert len(invitation.nonce) >= 32 and invitation.used_at is None


def test_a_valid_token_verifies(app_ctx: AppContext) -> None:
    """The claims come back as signed."""
    link = _link(app_ctx)
    claims = LinkSigner.from_settings(app_ctx.settings).verify(link.token)
    assert claims == Claims(link.portal_id, 11, WAVE, _invitation(app_ctx).nonce)


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


CLAIMS = Claims(3, 11, WAVE, "n" * 32)


@pytest.mark.parametrize("mutate", [
    lambda t: _flip(t, 3),  # the payload
    lambda t: _flip(t, len(t) - 2),  # the signature
    lambda t: t + "x",
    lambda t: t.split(".")[0],  # no signature at all
    lambda t: "",
    lambda t: "x" * 600,
])
def test_tampered_tokens_are_refused(app_settings: Settings,
                                     mutate: Callable[[str], str]) -> None:
    """Any change to the token breaks the signature."""
    signer = LinkSigner.from_settings(app_settings)
    assert signer.verify(signer.token(CLAIMS)) == CLAIMS
    assert signer.verify(mutate(signer.token(CLAIMS))) is None


def test_tokens_of_another_secret_or_purpose_are_refused(app_settings: Settings) -> None:
    """A link signed by another installation's key, or by our key for another use, fails."""
    ours = LinkSigner.from_settings(app_settings)
    other = LinkSigner(Secret("another-portal-installation-secret-key"), "https://x.example")
    assert other.verify(ours.token(CLAIMS)) is None
    assert ours.verify(other.token(CLAIMS)) is None
    key = app_settings.app.secret_key.reveal()
    payload = [CLAIMS.portal_id, CLAIMS.contact_id, CLAIMS.wave, CLAIMS.nonce]
    foreign = URLSafeSerializer(key, salt="some-other-purpose").dumps(payload)
    assert ours.verify(str(foreign)) is None
    # Our key and salt, but the default digest (SHA-1), or a payload of another shape.
    sha1 = URLSafeSerializer(key, salt=SALT).dumps(payload)
    assert ours.verify(str(sha1)) is None
    odd = URLSafeSerializer(key, salt=SALT,
                            signer_kwargs={"digest_method": hashlib.sha256}).dumps({"portal": 1})
    assert ours.verify(str(odd)) is None


def test_an_empty_secret_key_signs_nothing() -> None:
    """Refuse to build a signer whose links anyone could forge."""
    with pytest.raises(ValueError, match="secret_key"):
        LinkSigner(Secret(), "https://x.example")


def test_claims_must_match_the_invitation(app_ctx: AppContext) -> None:
    """A genuine nonce under other portal, contact or wave claims is unknown."""
    link = _link(app_ctx)
    nonce = _invitation(app_ctx).nonce
    with app_ctx.sessions() as session:
        for claims in (Claims(link.portal_id + 1, 11, WAVE, nonce),
                       Claims(link.portal_id, 12, WAVE, nonce),
                       Claims(link.portal_id, 11, "2026-H1", nonce),
                       Claims(link.portal_id, 11, WAVE, "0" * 32)):
            check = check_link(session, claims, now=app_ctx.clock(), ttl_days=60)
            assert check.state is LinkState.UNKNOWN


def test_expiry_and_replay_states(app_ctx: AppContext) -> None:
    """Open until used or until link_ttl_days have passed since the invitation."""
    link = _link(app_ctx)
    signer = LinkSigner.from_settings(app_ctx.settings)
    claims = signer.verify(link.token)
    assert claims is not None
    now = app_ctx.clock()
    with app_ctx.sessions() as session:
        assert check_link(session, claims, now=now, ttl_days=60).state is LinkState.OPEN
        later = now + timedelta(days=60)
        assert check_link(session, claims, now=later, ttl_days=60).state is LinkState.EXPIRED
    with session_scope(app_ctx.sessions) as session:
        record_answer(session, link.portal_id, 11, 1, 9, WAVE, ANSWERED, "import")
    with app_ctx.sessions() as session:
        assert check_link(session, claims, now=now, ttl_days=60).state is LinkState.ANSWERED


# -- the page -----------------------------------------------------------------------------------
def test_form_renders_in_russian(app_ctx: AppContext, client: FlaskClient) -> None:
    """The question, a 0..10 scale, an optional comment and a submit button."""
    link = _link(app_ctx)
    response = client.get(link.path)
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Насколько вероятно, что вы порекомендуете НОИС коллегам?" in html
    for value in range(11):
        assert f'name="score" value="{value}"' in html
    assert 'name="comment"' in html and "необязательно" in html and "Отправить" in html
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_answer_is_recorded_once(app_ctx: AppContext, client: FlaskClient,
                                 gateway_provider: FakeGatewayProvider) -> None:
    """POST records the answer and uses the link up; a second POST changes nothing."""
    link = _link(app_ctx)
    response = _post(client, link, score="9", comment="  Быстрая доставка, спасибо!  ")
    assert response.status_code == 200
    assert "Спасибо за ответ!" in response.get_data(as_text=True)
    rows = answers(app_ctx.sessions, link.portal_id)
    assert [(r.contact_id, r.company_id, r.score, r.wave, r.source, r.comment) for r in rows] == [
        (11, 1, 9, WAVE, "survey", "Быстрая доставка, спасибо!")]
    assert rows[0].answered_at == app_ctx.clock()
    assert _invitation(app_ctx).used_at == app_ctx.clock()

    again = _post(client, link, score="2", comment="передумал")
    assert again.status_code == 200
    assert "Спасибо, ответ уже получен" in again.get_data(as_text=True)
    assert "Спасибо, ответ уже получен" in client.get(link.path).get_data(as_text=True)
    assert [(r.score, r.comment) for r in answers(app_ctx.sessions, link.portal_id)] == [
        (9, "Быстрая доставка, спасибо!")]
    assert gateway_provider.asked == []  # no Bitrix24 call inside the request


@pytest.mark.parametrize("form", [{"score": "11"}, {"comment": "без оценки"}])
def test_a_bad_score_shows_the_form_with_an_error(app_ctx: AppContext, client: FlaskClient,
                                                  form: dict[str, str]) -> None:
    """Nothing is recorded; the form comes back with a Russian error, the comment kept."""
    link = _link(app_ctx)
    response = _post(client, link, **form)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Выберите оценку от 0 до 10." in html
    assert "Насколько вероятно" in html
    if "comment" in form:
        assert form["comment"] in html
    assert answers(app_ctx.sessions, link.portal_id) == []
    assert _invitation(app_ctx).used_at is None
    assert _post(client, link, score="0").status_code == 200  # the link still works


@pytest.mark.parametrize(("text", "score"), [
    ("0", 0), ("9", 9), ("10", 10), (" 7 ", 7), ("11", None), ("", None), ("-1", None),
    ("девять", None), ("9.5", None), ("０", None), ("²", None), ("010", None)])
def test_score_from_text(text: str, score: int | None) -> None:
    """Only ASCII 0..10 passes (``str.isdigit`` would take fullwidth digits and «²»)."""
    assert score_from_text(text) == score


def test_a_too_long_comment_is_refused(app_ctx: AppContext, client: FlaskClient) -> None:
    """Comments are capped (the textarea says so too)."""
    link = _link(app_ctx)
    response = _post(client, link, score="8", comment="а" * 2001)
    assert response.status_code == 400
    assert "Комментарий длиннее 2000 знаков" in response.get_data(as_text=True)
    assert answers(app_ctx.sessions, link.portal_id) == []


def test_a_forged_token_gets_a_russian_404(app_ctx: AppContext, client: FlaskClient) -> None:
    """A tampered link records nothing and says the link is invalid."""
    link = _link(app_ctx)
    path = link.path[:-3] + ("AAA" if not link.path.endswith("AAA") else "BBB")
    for method in ("GET", "POST"):
        response = client.open(path, method=method, data={"score": "10"}, content_type=FORM)
        assert response.status_code == 404
        assert "Ссылка недействительна" in response.get_data(as_text=True)
    assert answers(app_ctx.sessions, link.portal_id) == []


def test_an_expired_link_records_nothing(app_ctx: AppContext, client: FlaskClient) -> None:
    """After link_ttl_days (60 by default) the page says the survey is closed."""
    link = _link(app_ctx)
    clock = app_ctx.clock
    assert isinstance(clock, FakeClock)
    clock.advance(days=60)
    for response in (client.get(link.path), _post(client, link, score="10")):
        assert response.status_code == 410
        assert "Срок действия ссылки истёк" in response.get_data(as_text=True)
    assert answers(app_ctx.sessions, link.portal_id) == []


def test_an_answer_from_another_source_closes_the_link(app_ctx: AppContext,
                                                       client: FlaskClient) -> None:
    """The contact already answered this wave (import): the link says so, the ledger keeps it."""
    link = _link(app_ctx)
    with session_scope(app_ctx.sessions) as session:
        record_answer(session, link.portal_id, 11, 1, 6, WAVE, ANSWERED, "import")
    for response in (client.get(link.path), _post(client, link, score="10")):
        assert response.status_code == 200
        assert "Спасибо, ответ уже получен" in response.get_data(as_text=True)
    assert [(r.score, r.source) for r in answers(app_ctx.sessions, link.portal_id)] == [
        (6, "import")]


def test_a_link_of_an_uninstalled_portal_is_unknown(app_ctx: AppContext,
                                                    client: FlaskClient) -> None:
    """Removing the app closes its links."""
    link = _link(app_ctx)
    with session_scope(app_ctx.sessions) as session:
        portal = session.get(Portal, link.portal_id)
        assert portal is not None
        portals.uninstall(session, portal, clean=False)
    assert client.get(link.path).status_code == 404


def test_other_methods_are_not_allowed(app_ctx: AppContext, client: FlaskClient) -> None:
    """Only GET (the form) and POST (the answer)."""
    link = _link(app_ctx)
    for method in ("PUT", "DELETE", "PATCH"):
        assert client.open(link.path, method=method).status_code == 405


def test_a_non_form_body_is_refused(app_ctx: AppContext, client: FlaskClient) -> None:
    """JSON or multipart bodies are not parsed; nothing is recorded."""
    link = _link(app_ctx)
    response = client.post(link.path, json={"score": 9})
    assert response.status_code == 415
    assert "Ответ не принят" in response.get_data(as_text=True)
    assert answers(app_ctx.sessions, link.portal_id) == []


def test_the_token_never_reaches_a_log(app_ctx: AppContext, client: FlaskClient,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """Logs name the invitation, never the capability."""
    caplog.set_level(logging.DEBUG)
    link = _link(app_ctx)
    client.get(link.path)
    _post(client, link, score="7")
    assert any("invitation=" in record.getMessage() for record in caplog.records)
    assert all(link.token not in record.getMessage() for record in caplog.records)


def test_control_characters_are_dropped_from_comments(app_ctx: AppContext,
                                                      client: FlaskClient) -> None:
    """A NUL in a comment would make PostgreSQL refuse the row: it is removed first."""
    link = _link(app_ctx)
    response = _post(client, link, score="10", comment="всё\x00 отлично\x07\r\nспасибо")
    assert response.status_code == 200
    assert [r.comment for r in answers(app_ctx.sessions, link.portal_id)] == [
        "всё отлично\nспасибо"]
