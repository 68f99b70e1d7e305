"""The HTTP edge: ``create_app(ctx)`` and what its blueprints share (state, capped form reads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from b24app.context import AppContext
from b24app.events.form import MAX_FIELDS

FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class WebState:
    """What the views need: the context and the edge's own switches."""

    ctx: AppContext
    # Plain-http REST endpoints on loopback hosts (the emulator); never on for real portals.
    allow_insecure_endpoints: bool = False


class BodyRejected(Exception):
    """The request body is refused before parsing (size, content type, encoding)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def web_state() -> WebState:
    """The ``WebState`` of the running app."""
    return cast(WebState, current_app.extensions["b24app"])


def json_error(status: int, message: str) -> tuple[Response, int]:
    """A short JSON error body: ``{"error": message}``."""
    return jsonify({"error": message}), status


def read_form(limit: int) -> list[tuple[str, str]]:
    """The url-encoded body as pairs, read at most ``limit`` bytes; raise ``BodyRejected``."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyRejected(413, "body too large")  # refused before a byte is read
    # Bitrix24 sends events and frame POSTs url-encoded (platform doc 3.2, 1.4); multipart
    # would only widen what strangers can make us parse.
    if request.mimetype != FORM_TYPE:
        raise BodyRejected(415, f"expected {FORM_TYPE}")
    try:
        raw = request.stream.read(limit + 1)  # capped even without a Content-Length
    except RequestEntityTooLarge:
        raise BodyRejected(413, "body too large") from None
    if len(raw) > limit:
        raise BodyRejected(413, "body too large")
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                         errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:  # bad UTF-8 (raw or escaped), too many fields
        raise BodyRejected(400, "body is not a url-encoded form") from None


def _too_large(_error: Exception) -> Any:
    return json_error(413, "body too large")


def create_app(ctx: AppContext, *, allow_insecure_endpoints: bool | None = None) -> Flask:
    """The Flask app of one process over ``ctx`` (no module-level app, engine or gateway)."""
    from b24app.web import events, install, pages, survey

    if allow_insecure_endpoints is None:
        allow_insecure_endpoints = ctx.settings.portal.allow_insecure_endpoints
    app = Flask(__name__)
    # Werkzeug refuses bigger bodies for request.form too (the app pages).
    app.config["MAX_CONTENT_LENGTH"] = ctx.settings.events.max_body_bytes
    app.extensions["b24app"] = WebState(ctx, allow_insecure_endpoints)
    app.register_error_handler(413, _too_large)
    app.register_blueprint(events.bp)
    app.register_blueprint(install.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(survey.bp)
    return app
