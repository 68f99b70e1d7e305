"""Scope-less and app-level methods: server.time, profile, app.*, placement.*, calendar settings."""

from __future__ import annotations

import copy
from typing import Any

from b24emu.core import Call, method
from b24emu.errors import ApiError
from b24emu.timefmt import render_dt


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


@method("app.option.get")
def app_option_get(call: Call) -> Any:
    """All app options, or one by ``option``."""
    if not call.client_id:
        raise ApiError(400, "ERROR_OAUTH", "Application context required")
    options = call.portal.auth.apps[call.client_id].options
    name = call.params.first("option")
    if name:
        return options.get(str(name))
    return copy.deepcopy(options) if options else []


@method("app.option.set", app_only=True)
def app_option_set(call: Call) -> Any:
    """Store app options (admins only)."""
    if not call.portal.user_is_admin(call.user_id):
        raise ApiError(403, "AccessException", "Access denied.")
    options = call.params.mapping("options")
    if not options:
        raise ApiError(400, "ArgumentNullException", "Argument 'options' is null or empty")
    call.portal.auth.apps[call.client_id or ""].options.update(options)
    return True


@method("placement.bind", "placement", app_only=True, admin_only=True)
def placement_bind(call: Call) -> Any:
    """Bind a widget; errors come with HTTP 200 as the docs show."""
    placement = str(call.params.first("PLACEMENT", default="") or "")
    handler = str(call.params.first("HANDLER", default="") or "")
    if not placement:
        return {"error": "ERROR_ARGUMENT", "argument": "PLACEMENT",
                "error_description": "Argument 'PLACEMENT' is null or empty"}
    if not handler:
        return {"error": "ERROR_ARGUMENT", "argument": "HANDLER",
                "error_description": "Argument 'HANDLER' is null or empty"}
    for row in call.portal.placements:
        if row["_owner"] == call.client_id and (row["placement"], row["handler"]) == (placement, handler):
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
