"""``POST /b24/install``: both install shapes, verified through ``app.info``, then setup."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from flask import Blueprint, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from b24app import portals
from b24app.config import Settings
from b24app.db import session_scope
from b24app.events.form import MalformedForm, parse_form
from b24app.lifecycle import SetupReport, setup_portal
from b24app.models import PortalMode, PortalStatus
from b24app.web import BodyRejected, WebState, read_form, web_state

log = logging.getLogger(__name__)
bp = Blueprint("install", __name__)

_MEMBER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TOKEN = re.compile(r"^[\x21-\x7e]{1,512}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]{1,253}(:\d{1,5})?$")
APP_INFO_TIMEOUT = 10.0
MAX_APP_INFO_BYTES = 256 * 1024


class InstallRejected(Exception):
    """The install request cannot be trusted or used; ``ru`` is for the admin's page."""

    def __init__(self, message: str, ru: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.ru = ru
        self.status = status


@dataclass(frozen=True)
class InstallGrant:
    """What an install request hands over (not yet verified)."""

    member_id: str
    domain: str
    client_endpoint: str
    access: str
    refresh: str
    expires_in: int
    application_token: str
    scope: str
    version: str
    ui: bool


_BAD_REQUEST_RU = "Bitrix24 прислал неполные данные установки."


def _text(source: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise InstallRejected(f"{what} missing or invalid", _BAD_REQUEST_RU, 400)
    return value


def _seconds(value: Any) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        return int(value)
    return 3600  # the documented lifetime of an access token


def _scope(value: Any) -> str:
    # ONAPPINSTALL docs show the scope space-separated, everything else comma-separated.
    text = value if isinstance(value, str) else ""
    return ",".join(part for part in re.split(r"[\s,]+", text) if part)[:1024]


def grant_from_event(form: Mapping[str, Any]) -> InstallGrant:
    """The ``ONAPPINSTALL`` POST of an API-only app (``auth[...]``, ``data[VERSION]``)."""
    auth = form.get("auth")
    data = form.get("data")
    if not isinstance(auth, dict):
        raise InstallRejected("auth block missing", _BAD_REQUEST_RU, 400)
    version = data.get("VERSION") if isinstance(data, dict) else None
    return InstallGrant(
        member_id=_text(auth, "member_id", _MEMBER, "auth[member_id]"),
        domain=_text(auth, "domain", _HOST, "auth[domain]"),
        client_endpoint=_text(auth, "client_endpoint", _TOKEN, "auth[client_endpoint]"),
        access=_text(auth, "access_token", _TOKEN, "auth[access_token]"),
        refresh=_text(auth, "refresh_token", _TOKEN, "auth[refresh_token]"),
        expires_in=_seconds(auth.get("expires_in")),
        application_token=_text(auth, "application_token", _TOKEN, "auth[application_token]"),
        scope=_scope(auth.get("scope")), version=str(version or "")[:32], ui=False)


def grant_from_page(args: Mapping[str, Any], form: Mapping[str, Any]) -> InstallGrant:
    """The install page of a UI app: ``DOMAIN``/``PROTOCOL`` in the query, tokens in the form."""
    domain = _text(args, "DOMAIN", _HOST, "DOMAIN")
    # CRest's installApp() builds the endpoint the same way; PROTOCOL 0 = http, 1 = https.
    scheme = "http" if args.get("PROTOCOL") == "0" else "https"
    return InstallGrant(
        member_id=_text(form, "member_id", _MEMBER, "member_id"), domain=domain,
        client_endpoint=f"{scheme}://{domain}/rest/",
        access=_text(form, "AUTH_ID", _TOKEN, "AUTH_ID"),
        refresh=_text(form, "REFRESH_ID", _TOKEN, "REFRESH_ID"),
        expires_in=_seconds(form.get("AUTH_EXPIRES")),
        # APPLICATION_TOKEN, not APP_SID (CRest's quirk): events carry this one.
        application_token=_text(form, "APPLICATION_TOKEN", _TOKEN, "APPLICATION_TOKEN"),
        scope=_scope(form.get("APPLICATION_SCOPE")), version="", ui=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, *, allow_insecure: bool) -> str:
    """``https://<host>/rest/`` only; plain http only to loopback when explicitly allowed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    shape_ok = (parts.scheme in ("http", "https") and bool(host) and parts.path == "/rest/"
                and not (parts.username or parts.password or parts.query or parts.fragment))
    if not shape_ok:
        raise InstallRejected("client_endpoint is not https://<portal>/rest/",
                              _BAD_REQUEST_RU, 400)
    if parts.scheme == "http" and not (allow_insecure and _is_loopback(host)):
        raise InstallRejected("client_endpoint must use https",
                              "Портал должен быть доступен по HTTPS.", 400)
    return urlunsplit((parts.scheme, parts.netloc.lower(), "/rest/", "", ""))


def fetch_app_info(client_endpoint: str, access_token: str) -> dict[str, Any]:
    """``app.info`` with the received token: proves the token is live on that portal."""
    unreachable = "Не удалось связаться с порталом Bitrix24 для проверки установки."
    try:
        # The token goes in the body, not the URL (URLs end up in proxy logs); no redirects,
        # so a stranger's endpoint cannot bounce us elsewhere.
        with requests.post(f"{client_endpoint}app.info", data={"auth": access_token},
                           timeout=APP_INFO_TIMEOUT, allow_redirects=False,
                           stream=True) as resp:
            raw = resp.raw.read(MAX_APP_INFO_BYTES + 1, decode_content=True)
            status = resp.status_code
    except requests.RequestException as exc:
        raise InstallRejected(f"app.info failed: {type(exc).__name__}", unreachable,
                              502) from None
    if status != 200 or len(raw) > MAX_APP_INFO_BYTES:
        raise InstallRejected(f"app.info answered HTTP {status}",
                              "Портал не подтвердил установку приложения.")
    try:
        result = json.loads(raw).get("result")
    except (ValueError, AttributeError):
        result = None
    if not isinstance(result, dict):
        raise InstallRejected("app.info answered no result",
                              "Портал не подтвердил установку приложения.")
    return result


def check_app_info(info: Mapping[str, Any], grant: InstallGrant, client_id: str) -> bool:
    """Refuse another app's or another portal's token; ``True`` if member_id was proven."""
    wrong = "Данные установки относятся к другому приложению или порталу."
    if client_id and client_id not in (info.get("CODE"), info.get("client_id")):
        raise InstallRejected("app.info names another application", wrong)
    install = info.get("install")
    # oauth.bitrix.info's app.info names the installation; the portal's one does not.
    if isinstance(install, dict) and install.get("member_id") is not None:
        if install.get("member_id") != grant.member_id:
            raise InstallRejected("app.info names another member_id", wrong)
        return True
    return bool(client_id)


def _register(state: WebState, grant: InstallGrant, version: str, proven: bool) -> int:
    """Store the verified grant; returns the portal's id."""
    ctx = state.ctx
    expires_at: datetime = ctx.clock() + timedelta(seconds=grant.expires_in)
    with session_scope(ctx.sessions) as session:
        existing = portals.find_by_member(session, grant.member_id)
        # Without a client_id check, a live token of any portal would pass app.info: an
        # installed portal then keeps its host, so nobody can re-point its member_id.
        if (not proven and existing is not None and existing.client_endpoint
                and existing.status != PortalStatus.UNINSTALLED.value
                and existing.mode == PortalMode.LOCAL_APP.value
                and urlsplit(existing.client_endpoint).netloc
                != urlsplit(grant.client_endpoint).netloc):
            raise InstallRejected("member_id is installed on another host",
                                  "Приложение уже установлено на другом портале.")
        portal = portals.register_install(
            session, ctx.secrets, member_id=grant.member_id, domain=grant.domain,
            client_endpoint=grant.client_endpoint, access=grant.access, refresh=grant.refresh,
            expires_at=expires_at, application_token=grant.application_token,
            scope=grant.scope, version=version, now=ctx.clock())
        return portal.id


def _read_grant(state: WebState) -> InstallGrant:
    try:
        form = parse_form(read_form(state.ctx.settings.events.max_body_bytes))
    except BodyRejected as exc:
        raise InstallRejected(exc.message, _BAD_REQUEST_RU, exc.status) from None
    except MalformedForm as exc:
        raise InstallRejected(f"malformed form: {exc}"[:120], _BAD_REQUEST_RU, 400) from None
    if str(form.get("event", "")).upper() == "ONAPPINSTALL":
        return grant_from_event(form)
    if "AUTH_ID" in form:
        return grant_from_page(request.args, form)
    raise InstallRejected("neither ONAPPINSTALL nor an install page POST", _BAD_REQUEST_RU, 400)


def _setup(state: WebState, portal_id: int, version: str) -> SetupReport:
    settings: Settings = state.ctx.settings
    gateway = state.ctx.gateways.for_portal(portal_id)
    return setup_portal(gateway, settings, settings.app.public_url, version)


@bp.post("/b24/install")
def install() -> ResponseReturnValue:
    """Verify the grant with ``app.info``, store it, then bind events and create fields."""
    state = web_state()
    settings = state.ctx.settings
    ui = "DOMAIN" in request.args  # the page shape's query, until the body says otherwise
    try:
        grant = _read_grant(state)
        ui = grant.ui
        grant = replace(grant, client_endpoint=check_endpoint(
            grant.client_endpoint, allow_insecure=state.allow_insecure_endpoints))
        info = fetch_app_info(grant.client_endpoint, grant.access)
        proven = check_app_info(info, grant, settings.portal.client_id)
        version = str(info.get("VERSION") or grant.version)[:32]
        portal_id = _register(state, grant, version, proven)
    except InstallRejected as exc:
        log.warning("install refused: %s", exc.message)
        return _failure(ui, exc.status, exc.message, exc.ru)
    state.ctx.gateways.forget(portal_id)  # a cached client may hold the previous grant
    try:
        report = _setup(state, portal_id, version)
    except Exception:
        # The grant stays stored: `b24app bind-events` can finish the setup later.
        log.exception("install setup failed: member_id=%s", grant.member_id)
        return _failure(ui, 502, "setup on the portal failed",
                        "Не удалось настроить портал: события и поля не созданы.")
    log.info("installed: member_id=%s version=%s bound=%d fields=%d types=%d",
             grant.member_id, version, len(report.bound), len(report.fields_created),
             len(report.types_created))
    if ui:
        return render_template("install_done.html", report=report, domain=grant.domain)
    return jsonify({"result": "installed", "setup": report.as_dict()})


def _failure(ui: bool, status: int, message: str, ru: str) -> ResponseReturnValue:
    if ui:
        return render_template("install_failed.html", reason=ru), status
    return jsonify({"error": message}), status
