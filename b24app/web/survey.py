"""``/survey/<token>``: the client's NPS form behind a signed, single-use link.

The token is the capability (no session, no cookie, hence no CSRF token); the request only
touches the database, never Bitrix24.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, make_response, render_template
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from b24app.db import session_scope
from b24app.nps import nps_settings
from b24app.nps.ledger import MAX_COMMENT, score_from_text
from b24app.nps.survey import LinkCheck, LinkSigner, LinkState, check_link, submit
from b24app.web import BodyRejected, read_form, web_state

log = logging.getLogger(__name__)
bp = Blueprint("survey", __name__)

QUESTION = "Насколько вероятно, что вы порекомендуете НОИС коллегам?"
MAX_FORM_BYTES = 16 * 1024
# The token sits in the URL: keep it out of Referer headers, caches and search engines, and
# let the page load nothing but itself.
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
PAGES = {
    LinkState.UNKNOWN: (404, "Ссылка недействительна",
                        "Эта ссылка на опрос не найдена. Проверьте, что она скопирована "
                        "полностью, или попросите менеджера НОИС прислать её ещё раз."),
    LinkState.EXPIRED: (410, "Срок действия ссылки истёк",
                        "Опрос по этой ссылке уже закрыт. Если вы хотите поделиться мнением, "
                        "напишите вашему менеджеру НОИС."),
    LinkState.ANSWERED: (200, "Спасибо, ответ уже получен",
                         "Ваша оценка по этой ссылке уже сохранена. Изменить её нельзя."),
}


def _page(template: str, status: int, **context: object) -> Response:
    response = make_response(render_template(template, **context), status)
    response.headers.update(HEADERS)
    return response


def _state_page(state: LinkState) -> Response:
    status, title, body = PAGES[state]
    return _page("survey_message.html", status, title=title, body=body)


def _form(status: int = 200, error: str = "", score: str = "", comment: str = "") -> Response:
    return _page("survey_form.html", status, question=QUESTION, scores=range(11),
                 error=error, chosen=score, comment=comment, max_comment=MAX_COMMENT)


def _read_answer() -> tuple[int, str] | Response:
    """The score and comment of the posted form, or the page that says what is wrong."""
    try:
        form = dict(read_form(MAX_FORM_BYTES))
    except BodyRejected as exc:
        log.info("survey form refused: %s", exc.message)
        return _page("survey_message.html", exc.status, title="Ответ не принят",
                     body="Форма пришла в неожиданном виде. Откройте ссылку ещё раз.")
    raw_score, comment = form.get("score", ""), form.get("comment", "").strip()
    score = score_from_text(raw_score)
    if score is None:
        return _form(400, "Выберите оценку от 0 до 10.", raw_score, comment)
    if len(comment) > MAX_COMMENT:
        return _form(400, f"Комментарий длиннее {MAX_COMMENT} знаков: сократите его, "
                          "пожалуйста.", raw_score, comment)
    return score, comment


def _check(session: Session, token: str) -> LinkCheck:
    ctx = web_state().ctx
    claims = LinkSigner.from_settings(ctx.settings).verify(token)
    if claims is None:
        return LinkCheck(LinkState.UNKNOWN)
    return check_link(session, claims, now=ctx.clock(),
                      ttl_days=nps_settings(ctx.settings).link_ttl_days)


@bp.get("/survey/<token>")
def show(token: str) -> ResponseReturnValue:
    """The form, or why it cannot be answered."""
    with session_scope(web_state().ctx.sessions) as session:
        check = _check(session, token)
    return _form() if check.state is LinkState.OPEN else _state_page(check.state)


@bp.post("/survey/<token>")
def answer(token: str) -> ResponseReturnValue:
    """Record the answer once; a repeat or a late answer changes nothing."""
    ctx = web_state().ctx
    # One transaction from the check to the write; the ledger's unique key settles a race.
    with session_scope(ctx.sessions) as session:
        check = _check(session, token)
        if check.state is not LinkState.OPEN or check.invitation is None:
            return _state_page(check.state)
        parsed = _read_answer()
        if isinstance(parsed, Response):
            return parsed
        score, comment = parsed
        if not submit(session, check.invitation, score, comment, now=ctx.clock()):
            return _state_page(LinkState.ANSWERED)
    return _page("survey_thanks.html", 200, score=score)
