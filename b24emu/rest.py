"""HTTP face of the portal: ``/rest/...`` (webhook and OAuth), ``/oauth/token/``."""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request

from b24emu.batch import batch_time, run_batch
from b24emu.dispatch import Caller, invoke, is_harness
from b24emu.errors import ApiError
from b24emu.events import CURRENT_HIT
from b24emu.phpquery import parse, parse_pairs
from b24emu.portal import Portal

bp = Blueprint("b24emu", __name__)


def _portal() -> Portal:
    portal: Portal = current_app.config["B24EMU_PORTAL"]
    return portal


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), status=status,
                    mimetype="application/json")


def _error(err: ApiError) -> Response:
    return _json(err.body(), err.status)


def request_params() -> dict[str, Any]:
    """Query string, then form or JSON body, merged (body wins) like PHP's $_REQUEST."""
    params: dict[str, Any] = parse(request.query_string.decode("utf-8", "replace"))
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
        elif body is not None or request.content_length:
            raise ApiError(400, "INVALID_REQUEST", "Invalid JSON body")
    elif request.form:
        params.update(parse_pairs(request.form.items(multi=True)))
    return params


def _caller_for_webhook(portal: Portal, user: str, secret: str) -> Caller:
    hook = portal.auth.webhooks.get((int(user) if user.isdigit() else -1, secret))
    if hook is None:
        raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
    return Caller(user_id=hook.user_id, scopes=hook.scopes, webhook_id=hook.id)


def _caller_for_token(portal: Portal, params: dict[str, Any]) -> Caller:
    token = params.pop("auth", None) or params.pop("AUTH", None)
    header = request.headers.get("Authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token or not isinstance(token, str):
        raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
    grant = portal.auth.check_access(token)
    app = portal.auth.apps[grant.client_id]
    return Caller(user_id=grant.user_id, scopes=app.scopes, client_id=app.client_id)


@bp.route("/rest/<path:path>", methods=["GET", "POST"])
def rest(path: str) -> Response:
    """Every REST call: ``/rest/<method>`` with ``auth`` or ``/rest/<user>/<secret>/<method>``."""
    portal = _portal()
    started = portal.clock.timestamp()
    try:
        parts = path.strip("/").split("/")
        params = request_params()
        if len(parts) == 3:
            caller = _caller_for_webhook(portal, parts[0], parts[1])
        elif len(parts) == 1:
            caller = _caller_for_token(portal, params)
        else:
            raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        name = parts[-1].removesuffix(".json")
        return _run(portal, name, params, caller, started)
    except ApiError as err:
        return _error(err)


@bp.route("/oauth/rest/<path:path>", methods=["GET", "POST"])
def oauth_rest(path: str) -> Response:
    """The OAuth server's REST root (``server_endpoint``), which answers ``app.info`` only."""
    # The trusted way to read the app's status is app.info on server_endpoint
    # (settings/oauth/simple-way.md, platform doc 1.4).
    portal = _portal()
    started = portal.clock.timestamp()
    try:
        params = request_params()
        caller = _caller_for_token(portal, params)
        name = path.strip("/").removesuffix(".json")
        if name.lower() != "app.info":
            raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        return _run(portal, name, params, caller, started)
    except ApiError as err:
        return _error(err)


def _run(portal: Portal, name: str, params: dict[str, Any], caller: Caller,
         started: float) -> Response:
    """Count the request, run the method or the batch, wrap the envelope."""
    if not is_harness(name):
        # The test harness's own calls must not eat the portal's request budget.
        portal.bucket.hit()
    hit = CURRENT_HIT.set(object())
    try:
        if name.lower() == "batch":
            # A fault on "batch" fails the whole HTTP request, as a portal-wide 5xx would.
            rule = portal.faults.fire("method_error", "batch")
            if rule is not None:
                status = rule.status or 500
                raise ApiError(status, "QUERY_LIMIT_EXCEEDED" if status == 503
                               else "INTERNAL_SERVER_ERROR", "Injected fault")
            result = run_batch(portal, params, caller)
            return _json({"result": result,
                          "time": batch_time(portal, started, portal.clock.timestamp())})
        outcome = invoke(portal, name, params, caller)
    finally:
        CURRENT_HIT.reset(hit)
    body: dict[str, Any] = {"result": outcome.value}
    if outcome.total is not None:
        body["total"] = outcome.total
    if outcome.next is not None:
        body["next"] = outcome.next
    body["time"] = outcome.time
    return _json(body)


@bp.route("/oauth/token/", methods=["GET", "POST"])
def oauth_token() -> Response:
    """The OAuth server: ``grant_type=refresh_token`` (and ``authorization_code``)."""
    portal = _portal()
    args = {**request.args.to_dict(), **request.form.to_dict()}
    grant = args.get("grant_type", "")
    try:
        if grant == "refresh_token":
            access, refresh = portal.auth.exchange_refresh(
                args.get("client_id", ""), args.get("client_secret", ""),
                args.get("refresh_token", ""))
        elif grant == "authorization_code":
            access, refresh = _exchange_code(portal, args)
        else:
            raise ApiError(400, "invalid_request", "Unsupported grant type")
    except ApiError as err:
        return _json({"error": err.code, "error_description": err.description}, err.status)
    app = portal.auth.apps[access.client_id]
    body: dict[str, Any] = {
        "access_token": access.token, "client_endpoint": portal.client_endpoint,
        "domain": "oauth.bitrix.info", "expires": int(access.expires_at),
        "expires_in": portal.auth.access_ttl, "member_id": portal.member_id,
        "refresh_token": refresh.token, "scope": ",".join(sorted(app.scopes)),
        "server_endpoint": portal.server_endpoint, "status": "L", "user_id": access.user_id,
    }
    if grant == "authorization_code":
        # The code-exchange answer lacks ``expires`` and ``user_id`` (settings/oauth/index.md).
        del body["expires"], body["user_id"]
    return _json(body)


@bp.route("/oauth/authorize/", methods=["GET"])
def oauth_authorize() -> Response:
    """Start of the full OAuth flow: redirect to the app with a 30-second ``code``."""
    portal = _portal()
    client_id = request.args.get("client_id", "")
    app = portal.auth.apps.get(client_id)
    if app is None:
        return _json({"error": "invalid_client", "error_description": "Unknown client"}, 400)
    code = secrets.token_hex(16)
    # The code lives 30 s of portal time (settings/oauth/index.md); the admin (user 1) is the
    # user logged in to the portal.
    portal.auth.codes[code] = (client_id, 1, portal.clock.timestamp() + 30)
    target = app.handler_url or app.install_url or f"{portal.base_url}/"
    sep = "&" if "?" in target else "?"
    location = (f"{target}{sep}code={code}&state={request.args.get('state', '')}"
                f"&domain={portal.domain}&member_id={portal.member_id}"
                f"&scope={','.join(sorted(app.scopes))}&server_domain=oauth.bitrix.info")
    return Response(status=302, headers={"Location": location})


def _exchange_code(portal: Portal, args: dict[str, str]) -> Any:
    entry = portal.auth.codes.pop(args.get("code", ""), None)
    app = portal.auth.apps.get(args.get("client_id", ""))
    if app is None or not secrets.compare_digest(app.client_secret, args.get("client_secret", "")):
        raise ApiError(400, "invalid_client", "Invalid client credentials")
    if not (app.installed or app.install_pending):
        raise ApiError(400, "invalid_client", "Application not installed")
    if entry is None or entry[0] != app.client_id or entry[2] < portal.clock.timestamp():
        raise ApiError(400, "invalid_grant", "Invalid authorization code")
    return portal.auth.issue(app.client_id, entry[1])


def create_app(portal: Portal) -> Flask:
    """The emulator's WSGI app for ``portal``."""
    import b24emu.methods  # noqa: F401  - registers every REST method

    app = Flask("b24emu")
    app.config["B24EMU_PORTAL"] = portal
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
    app.register_blueprint(bp)
    return app
