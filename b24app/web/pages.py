"""The app's own pages: the main page opened inside Bitrix24, and ``/healthz``."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select, text

from b24app import __version__, portals
from b24app.db import session_scope
from b24app.lifecycle import events_url
from b24app.models import InboxEvent, InboxStatus, PortalStatus
from b24app.web import web_state

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)

PORTAL_STATUS_RU = {
    PortalStatus.ACTIVE.value: "активно",
    PortalStatus.NEEDS_REINSTALL.value: "требуется переустановка",
    PortalStatus.UNINSTALLED.value: "удалено",
}
INBOX_STATUS_RU = {
    InboxStatus.PENDING.value: "ждут обработки",
    InboxStatus.PROCESSING.value: "обрабатываются",
    InboxStatus.DONE.value: "обработаны",
    InboxStatus.DEAD.value: "с ошибкой (нужна помощь)",
    InboxStatus.IGNORED.value: "пропущены",
}


def _message(title: str, body: str, status: int) -> ResponseReturnValue:
    return render_template("message.html", title=title, body=body), status


@bp.route("/", methods=["GET", "POST"])
def index() -> ResponseReturnValue:
    """The page Bitrix24 opens in its frame (POST with ``member_id``/``APPLICATION_TOKEN``)."""
    ctx = web_state().ctx
    member_id = request.form.get("member_id", "")
    token = request.form.get("APPLICATION_TOKEN", "")
    if not member_id:
        return _message("NOIS для Битрикс24", "Откройте приложение из меню вашего Битрикс24.",
                        200)
    with session_scope(ctx.sessions) as session:
        portal = portals.find_by_member(session, member_id)
        if portal is None or portal.status == PortalStatus.UNINSTALLED.value:
            return _message("Приложение не установлено",
                            "Приложение не установлено на этом портале. Попросите "
                            "администратора Битрикс24 установить его.", 404)
        if not portals.verify_application_token(portal, token, ctx.secrets):
            log.info("page refused: member_id=%s", member_id)
            return _message("Доступ запрещён",
                            "Не удалось подтвердить, что запрос пришёл из вашего Битрикс24.",
                            403)
        rows = session.execute(select(InboxEvent.status, func.count()).where(
            InboxEvent.portal_id == portal.id).group_by(InboxEvent.status)).all()
        portal_id, domain, status = portal.id, portal.domain, portal.status
    counts = {INBOX_STATUS_RU.get(name, name): number for name, number in rows}
    return render_template("status.html", domain=domain,
                           status=PORTAL_STATUS_RU.get(status, status),
                           bound=_bound_count(portal_id, ctx.settings.app.public_url),
                           counts=counts)


def _bound_count(portal_id: int, public_url: str) -> int | None:
    """Online handlers of ours on the portal; ``None`` when the portal cannot be asked now."""
    try:
        gateway = web_state().ctx.gateways.for_portal(portal_id)
        handler = events_url(public_url)
        return sum(1 for b in gateway.bound_events() if not b.offline and b.handler == handler)
    except Exception:  # the page must render even when the portal is unreachable
        log.warning("bound events unavailable: portal_id=%s", portal_id, exc_info=True)
        return None


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Liveness for load balancers: the database answers, and which version runs."""
    ctx = web_state().ctx
    try:
        with ctx.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        log.warning("health check: database unavailable", exc_info=True)
        return jsonify({"db": "error", "version": __version__}), 503
    return jsonify({"db": "ok", "version": __version__})
