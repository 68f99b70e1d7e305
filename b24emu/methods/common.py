"""Scope-less and app-level methods: server.time, profile, app.*, placement.*, calendar settings."""

from __future__ import annotations

import copy
from typing import Any

from b24emu.core import Call, method
from b24emu.errors import ApiError, argument_null
from b24emu.timefmt import render_dt

# The only widget that takes USER_ID and allows a single handler (placement-bind.md).
BACKGROUND_WORKER = "PAGE_BACKGROUND_WORKER"


@method("server.time")
def server_time(call: Call) -> Any:
    """Portal time in ISO 8601."""
    return render_dt(call.now, call.portal.tz)


@method("profile")
def profile(call: Call) -> Any:
    """Basic data of the calling user."""
    user = call.portal.users.get(call.user_id) or {}
    return {"ID": str(call.user_id), "ADMIN": bool(user.get("IS_ADMIN")),
            "NAME": user.get("NAME", ""), "LAST_NAME": user.get("LAST_NAME", ""),
            "PERSONAL_GENDER": user.get("PERSONAL_GENDER", ""), "TIME_ZONE": "",
            "TIME_ZONE_OFFSET": 25200}


@method("user.admin")
def user_admin(call: Call) -> Any:
    """Whether the caller can manage app settings."""
    return call.portal.user_is_admin(call.user_id)


@method("app.info")
def app_info(call: Call) -> Any:
    """The calling app: version, install state, licence."""
    if not call.client_id:
        raise ApiError(400, "ERROR_OAUTH", "Application not found")
    app = call.portal.auth.apps[call.client_id]
    return {"ID": 7, "CODE": app.client_id, "VERSION": app.version, "STATUS": "L",
            "INSTALLED": app.installed, "PAYMENT_EXPIRED": "N", "DAYS": None,
            "LANGUAGE_ID": "ru", "LICENSE": "ru_company", "LICENSE_TYPE": "company",
            "LICENSE_FAMILY": "company"}


def _app_context(call: Call) -> str:
    """The calling app's client_id, or the 403 a webhook gets (app-option-get.md)."""
    if not call.client_id:
        raise ApiError(403, "ACCESS_DENIED", "Access denied! Application context required")
    return call.client_id


@method("app.option.get")
def app_option_get(call: Call) -> Any:
    """All app options (``[]`` when none), or one by ``option`` (``null`` when unknown)."""
    options = call.portal.auth.apps[_app_context(call)].options
    name = call.params.first("option")
    if name:
        return copy.deepcopy(options.get(str(name)))
    return copy.deepcopy(options) if options else []


@method("app.option.set")
def app_option_set(call: Call) -> Any:
    """Store app options (admins only, app context only)."""
    # Errors are Bitrix24's AccessException / ArgumentNullException as they reach the wire:
    # ACCESS_DENIED 403 and ERROR_ARGUMENT 400 (app-option-set.md).
    client_id = _app_context(call)
    if not call.portal.user_is_admin(call.user_id):
        raise ApiError(403, "ACCESS_DENIED", "Access denied! Administrator authorization required")
    if "options" in call.params:
        options = call.params.mapping("options")
    else:
        # Without ``options`` the request parameters themselves are the settings.
        options = {k: v for k, v in call.params.items() if k.lower() != "auth"}
    if not options:
        raise argument_null("options")
    call.portal.auth.apps[client_id].options.update(copy.deepcopy(options))
    return True


def _placement_error(code: str, description: str, **extra: Any) -> ApiError:
    """placement.bind's argument errors come with HTTP 200 (placement-bind.md)."""
    return ApiError(200, code, description, **extra)


@method("placement.bind", "placement", app_only=True, admin_only=True)
def placement_bind(call: Call) -> Any:
    """Bind a widget; argument errors come as a top-level error body with HTTP 200."""
    placement = str(call.params.first("PLACEMENT", default="") or "")
    handler = str(call.params.first("HANDLER", default="") or "")
    for name, value in (("PLACEMENT", placement), ("HANDLER", handler)):
        if not value:
            raise _placement_error("ERROR_ARGUMENT", f"Argument '{name}' is null or empty",
                                   argument=name)
    user_id = call.params.int("USER_ID")
    if user_id and placement != BACKGROUND_WORKER:
        raise _placement_error("ERROR_PLACEMENT_USER_MODE", "User mode is not available")
    mine = [row for row in call.portal.placements
            if row["_owner"] == call.client_id and row["placement"] == placement]
    if placement == BACKGROUND_WORKER and mine:
        raise _placement_error("ERROR_PLACEMENT_MAX_COUNT", "Placement max count exceeded")
    if any(row["handler"] == handler for row in mine):
        raise ApiError(400, "ERROR_PLACEMENT_HANDLER_EXISTS", "Handler already binded")
    call.portal.placements.append({
        "_owner": call.client_id, "placement": placement, "handler": handler,
        "title": str(call.params.first("TITLE", default="") or ""),
        "description": str(call.params.first("DESCRIPTION", default="") or ""),
        "options": call.params.mapping("OPTIONS"),
    })
    return True


@method("placement.get", "placement", app_only=True)
def placement_get(call: Call) -> Any:
    """Widgets bound by the calling app."""
    return [{k: v for k, v in row.items() if not k.startswith("_")}
            for row in call.portal.placements if row["_owner"] == call.client_id]


@method("placement.unbind", "placement", app_only=True, admin_only=True)
def placement_unbind(call: Call) -> Any:
    """Remove widgets by placement (and handler)."""
    placement = str(call.params.first("PLACEMENT", default=""))
    handler = str(call.params.first("HANDLER", default="") or "")
    before = len(call.portal.placements)
    call.portal.placements = [
        row for row in call.portal.placements
        if not (row["_owner"] == call.client_id and row["placement"] == placement
                and (not handler or row["handler"] == handler))]
    return {"count": before - len(call.portal.placements)}


@method("calendar.settings.get", "calendar")
def calendar_settings_get(call: Call) -> Any:
    """Portal-wide work hours and holidays."""
    return copy.deepcopy(call.portal.calendar_settings)
