"""Typed failures of Bitrix24 calls: the rest of the service never sees HTTP or aiohttp."""

from __future__ import annotations

from typing import Any


class B24Error(Exception):
    """A Bitrix24 error with its code kept (``error``, ``error_description``, HTTP status)."""

    def __init__(self, code: str, description: str = "", *, status: int | None = None,
                 method: str = "") -> None:
        super().__init__(f"{method or 'bitrix24'}: {code or '(no code)'} {description}".strip())
        self.code = code
        self.description = description
        self.status = status
        self.method = method


class AuthExpired(B24Error):
    """The access token expired; a refresh and one retry are due."""


class AuthRevoked(B24Error):
    """Credentials are no longer accepted (refresh token dead, app removed, wrong webhook)."""


class RateLimited(B24Error):
    """503 ``QUERY_LIMIT_EXCEEDED`` persisted through the client's retries."""


class MethodBlocked(B24Error):
    """429 ``OPERATION_TIME_LIMIT``: the method's time budget is spent until ``reset_at``."""

    def __init__(self, code: str, description: str = "", *, status: int | None = None,
                 method: str = "", reset_at: float = 0.0) -> None:
        super().__init__(code, description, status=status, method=method)
        self.reset_at = reset_at


class NotFound(B24Error):
    """The entity does not exist (or is not visible to the caller)."""


class AccessDenied(B24Error):
    """The caller lacks rights or scope."""


class BadRequest(B24Error):
    """Bitrix24 rejected the parameters."""


class Transport(B24Error):
    """No usable answer: connection failure, timeout, a non-JSON page, retries exhausted."""


_AUTH_REVOKED = {"invalid_token", "NO_AUTH_FOUND", "INVALID_CREDENTIALS", "APPLICATION_NOT_FOUND",
                 "PAYMENT_REQUIRED", "invalid_grant", "invalid_client", "ERROR_OAUTH",
                 "NOT_INSTALLED"}
# WRONG_AUTH_TYPE (403) says "this method does not take this kind of auth" (an app-only method
# called through a webhook); the credentials still work, so it must not mark a portal revoked.
_ACCESS = {"ACCESS_DENIED", "insufficient_scope", "user_access_error", "allowed_only_intranet_user",
           "AccessException", "WRONG_AUTH_TYPE"}
_NOT_FOUND_TEXT = ("not found", "not accessible", "не найден")


def classify(body: Any, *, status: int | None, method: str) -> B24Error:  # noqa: PLR0911
    """Map an error body (``{"error", "error_description"}``) to our typed error."""
    code, description = "", ""
    if isinstance(body, dict):
        code = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
    kw: dict[str, Any] = {"status": status, "method": method}
    if code == "expired_token":
        return AuthExpired(code, description, **kw)
    if code in _AUTH_REVOKED:
        return AuthRevoked(code, description, **kw)
    if code in ("QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT"):
        return RateLimited(code, description, **kw)
    if code == "OPERATION_TIME_LIMIT" or status == 429:
        reset = float(body.get("operating_reset_at") or 0) if isinstance(body, dict) else 0.0
        return MethodBlocked(code or "OPERATION_TIME_LIMIT", description, reset_at=reset, **kw)
    if code in _ACCESS or status == 403:
        return AccessDenied(code, description, **kw)
    if code == "ERROR_METHOD_NOT_FOUND":
        # "Method not found!" is a missing method (module off, old portal), not a missing record.
        return BadRequest(code, description, **kw)
    if code == "NOT_FOUND" or any(t in description.lower() for t in _NOT_FOUND_TEXT):
        return NotFound(code, description, **kw)
    if status is not None and status >= 500:
        return Transport(code or f"HTTP_{status}", description, **kw)
    return BadRequest(code, description, **kw)
