"""Run one REST method for a caller: scope, rights, faults, limits, timing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from b24emu.core import REGISTRY, Call, Listed, Params, has_scope
from b24emu.errors import ApiError, method_not_found
from b24emu.portal import Portal
from b24emu.timefmt import render_dt


@dataclass
class Caller:
    """The authenticated side of a request."""

    user_id: int
    scopes: frozenset[str]
    client_id: str | None = None
    webhook_id: int | None = None
    automation: bool = False

    @property
    def budget_key(self) -> str:
        """Operating-time budgets are per app or per webhook."""
        if self.client_id:
            return f"app:{self.client_id}"
        if self.webhook_id is not None:
            return f"hook:{self.webhook_id}"
        return "portal"


@dataclass
class Outcome:
    """A method's result and its ``time`` block."""

    value: Any
    time: dict[str, Any]
    total: int | None = None
    next: int | None = None


def time_block(portal: Portal, start: float, finish: float, processing: float,
               operating: tuple[float, int] | None) -> dict[str, Any]:
    """The ``time`` object every response carries (``operating*`` only outside batch)."""
    block: dict[str, Any] = {
        "start": start, "finish": finish, "duration": finish - start, "processing": processing,
        "date_start": _iso(portal, start), "date_finish": _iso(portal, finish),
    }
    if operating is not None:
        block["operating_reset_at"] = operating[1]
        block["operating"] = round(operating[0], 6)
    return block


def _iso(portal: Portal, ts: float) -> str:
    return render_dt(datetime.fromtimestamp(ts, tz=UTC), portal.tz) or ""


HARNESS_PREFIX = "b24emu."


def is_harness(name: str) -> bool:
    """Whether ``name`` is one of the emulator's own ``b24emu.*`` methods (not Bitrix24)."""
    return name.lower().startswith(HARNESS_PREFIX)


def scope_error(caller: Caller, *, in_batch: bool = False) -> ApiError:
    """``insufficient_scope`` worded per auth type (``_includes/system-errors.md``)."""
    # Inside batch the description is empty, exactly as resp-batch-error-halt0.json shows.
    if in_batch:
        return ApiError(403, "insufficient_scope", "")
    token = "webhook token" if caller.webhook_id is not None else "access token"
    return ApiError(403, "insufficient_scope",
                    f"The request requires higher privileges than provided by the {token}")


def invoke(portal: Portal, name: str, params: dict[str, Any], caller: Caller, *,
           in_batch: bool = False) -> Outcome:
    """Execute ``name`` with ``params`` for ``caller``; raises :class:`ApiError`."""
    key = name.lower()
    spec = REGISTRY.get(key)
    if spec is None:
        raise method_not_found(name)
    if not has_scope(caller.scopes, spec.scope):
        raise scope_error(caller, in_batch=in_batch)
    if spec.app_only and not caller.client_id:
        raise ApiError(403, "WRONG_AUTH_TYPE",
                       "Current authorization type is denied for this method")
    if spec.admin_only and not portal.user_is_admin(caller.user_id):
        raise ApiError(403, "ACCESS_DENIED", "Access denied! Administrator access required")
    # The harness's own methods are not Bitrix24: no faults and no budget, so that a
    # ``method_error`` on "*" can still be switched off and limit tests stay exact.
    harness = is_harness(key)
    rule = None if harness else portal.faults.fire("method_error", key)
    if rule is not None:
        status = rule.status or 500
        code = "QUERY_LIMIT_EXCEEDED" if status == 503 else "INTERNAL_SERVER_ERROR"
        raise ApiError(status, code, "Injected fault")
    start = portal.clock.timestamp()
    if not harness:
        portal.budget.check(key, caller.budget_key, start)
    t0 = time.perf_counter()
    call = Call(portal=portal, method=key, params=Params(params), user_id=caller.user_id,
                now=portal.clock.now(), client_id=caller.client_id,
                webhook_id=caller.webhook_id, automation=caller.automation,
                scopes=caller.scopes, in_batch=in_batch)
    try:
        with portal.lock:
            value = spec.fn(call)
    finally:
        processing = time.perf_counter() - t0
        if not harness:
            extra = portal.faults.fire("operating_cost", key)
            cost = processing + (extra.value if extra else 0.0)
            portal.budget.charge(key, caller.budget_key, start, cost)
    finish = start + processing
    operating = None if in_batch else portal.budget.used(key, caller.budget_key, start)
    block = time_block(portal, start, finish, processing, operating)
    if isinstance(value, Listed):
        return Outcome(value.result, block, value.total, value.next)
    return Outcome(value, block)


def act(portal: Portal, name: str, params: dict[str, Any] | None = None, *, user_id: int = 1,
        automation: bool = False) -> Any:
    """Make a change as a portal user (or an automation rule) without HTTP: the scenario driver.

    The change fires events exactly like one made over REST; automation carries no tokens.
    """
    from b24emu.auth import ALL_SCOPES

    caller = Caller(user_id=user_id, scopes=ALL_SCOPES, automation=automation)
    return invoke(portal, name, dict(params or {}), caller).value
