"""``POST /b24/events``: verify the sender, persist the event in the inbox, answer at once."""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from b24app import portals
from b24app.db import session_scope
from b24app.events.form import MalformedForm, parse_form
from b24app.events.parse import IncomingEvent, parse_event
from b24app.inbox.store import store_event
from b24app.models import Portal, PortalMode, PortalStatus
from b24app.web import BodyRejected, WebState, json_error, read_form, web_state

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)

# One answer for every authentication failure: a stranger learns nothing about member_ids.
UNAUTHORIZED = "invalid application token"


@bp.post("/b24/events")
def receive() -> ResponseReturnValue:
    """Parse, verify and store one event; no Bitrix24 REST call happens in here."""
    state = web_state()
    try:
        form = parse_form(read_form(state.ctx.settings.events.max_body_bytes))
    except BodyRejected as exc:
        return json_error(exc.status, exc.message)
    except MalformedForm as exc:
        return json_error(400, f"malformed form: {exc}"[:120])
    if not _has_token(form):
        log.info("event refused: no application token")
        return json_error(401, UNAUTHORIZED)
    try:
        event = parse_event(form)
    except MalformedForm as exc:
        return json_error(400, f"malformed event: {exc}"[:120])
    if event.name == "ONAPPINSTALL":
        return json_error(400, "install events belong to /b24/install")
    return _accept(state, event)


def _has_token(form: dict[str, Any]) -> bool:
    auth = form.get("auth")
    return isinstance(auth, dict) and bool(auth.get("application_token"))


def _accept(state: WebState, event: IncomingEvent) -> ResponseReturnValue:
    ctx = state.ctx
    uninstall = event.name == "ONAPPUNINSTALL"
    clean = uninstall and str(event.data.get("CLEAN", "0")) == "1"
    stored = False
    with session_scope(ctx.sessions) as session:
        portal = verified_portal(session, state, event)
        if portal is None:
            log.info("event refused: member_id=%s event=%s", event.member_id, event.name)
            return json_error(401, UNAUTHORIZED)
        portal_id = portal.id
        if uninstall:
            # Synchronous on purpose: it needs no REST call, and the tokens must die now.
            portals.uninstall(session, portal, clean, now=ctx.clock())
        else:
            stored = store_event(session, portal_id, event, now=ctx.clock())
    if uninstall:
        ctx.gateways.forget(portal_id)
        log.info("portal uninstalled: member_id=%s clean=%s", event.member_id, clean)
        return jsonify({"result": "uninstalled"})
    log.info("event %s: member_id=%s event=%s entity=%s", "stored" if stored else "duplicate",
             event.member_id, event.name, event.entity_id)
    return jsonify({"result": "ok" if stored else "duplicate"})


def verified_portal(session: Session, state: WebState, event: IncomingEvent) -> Portal | None:
    """The portal the event proves it comes from, or ``None`` (unknown, uninstalled, forged)."""
    portal = portals.find_by_member(session, event.member_id)
    if portal is not None and portal.status == PortalStatus.UNINSTALLED.value:
        return None
    if portal is not None and portal.mode == PortalMode.LOCAL_APP.value:
        ok = portals.verify_application_token(portal, event.application_token, state.ctx.secrets)
        return portal if ok else None
    if portal is None and state.ctx.settings.portal.mode != PortalMode.WEBHOOK.value:
        portals.verify_application_token(None, event.application_token, state.ctx.secrets)
        return None
    return _webhook_portal(session, state, event, portal)


def _webhook_portal(session: Session, state: WebState, event: IncomingEvent,
                    portal: Portal | None) -> Portal | None:
    """Outgoing-webhook events: the configured token, then the pinned (or first) member_id."""
    settings = state.ctx.settings.portal
    expected = settings.outgoing_webhook_token.reveal().encode("utf-8")
    given = event.application_token.encode("utf-8", "surrogatepass")
    if not expected or not hmac.compare_digest(given, expected):
        return None
    if portal is not None:
        return portal
    # Trust on first use: one webhook deployment serves one portal, and the first member_id
    # that proves the configured token is pinned; another member_id is refused from then on.
    if portals.active_webhook_portals(session):
        return None
    if not _domain_matches_webhook_url(event.auth.get("domain", ""),
                                       settings.webhook_url.reveal()):
        return None
    log.info("webhook portal pinned: member_id=%s", event.member_id)
    return portals.register_webhook_portal(
        session, state.ctx.secrets, member_id=event.member_id,
        domain=event.auth.get("domain", ""), client_endpoint=event.auth.get("client_endpoint", ""),
        application_token=event.application_token, now=state.ctx.clock())


def _domain_matches_webhook_url(domain: str, webhook_url: str) -> bool:
    """The event's portal is the one of the configured incoming webhook (when configured)."""
    if not webhook_url:
        return True
    return bool(domain) and urlsplit(webhook_url).netloc.lower() == domain.lower()
