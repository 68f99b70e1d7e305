"""The Bitrix24 OAuth server client (``/oauth/token/``) over requests: refresh a token pair.

Secrets never reach a log or an exception message: the refresh request is a GET (as the
docs show), so the client secret and the refresh token travel in the query string, and
urllib3 logs request lines at DEBUG and puts URLs in its error messages. Hence the redacting
filter on urllib3's logger and the sanitised ``Transport`` errors raised ``from None``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from b24app.gateway.errors import AuthRevoked, B24Error, BadRequest, Transport

if TYPE_CHECKING:
    from b24app.config import Secret

log = logging.getLogger(__name__)

# The auth server's answers that mean "this grant is dead: a full re-install is due"
# (settings/oauth/error-codes.md; the SDKs treat the first three as HTTP 400).
REVOKED_CODES = frozenset({"invalid_grant", "invalid_client", "invalid_request",
                           "PAYMENT_REQUIRED"})
DEFAULT_EXPIRES_IN = 3600
# Query parameters that must never be logged.
_SECRET_PARAMS = re.compile(
    r"((?:client_secret|refresh_token|access_token|code|auth)=)[^&\s\"']+", re.IGNORECASE)

Clock = Callable[[], datetime]
Sleep = Callable[[float], None]


def redact(text: str) -> str:
    """``text`` with the values of secret query parameters replaced by ``***``."""
    return _SECRET_PARAMS.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Scrubs secret query parameters from a logger's records (urllib3 logs request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _install_redaction() -> None:
    """Attach the filter once to urllib3's connection-pool logger (idempotent)."""
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())


_install_redaction()


@dataclass(frozen=True)
class TokenGrant:
    """A new token pair from the auth server; the tokens stay out of ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: str = ""
    member_id: str = ""
    client_endpoint: str = ""
    user_id: int | None = None


class OAuthClient:
    """Refreshes token pairs at ``url`` (``https://oauth.bitrix.info/oauth/token/``).

    5xx answers, timeouts and connection errors are retried ``retries`` times with an
    exponential backoff, all within ``deadline`` seconds: on SQLite the token store holds the
    database write lock during a refresh, and other writers wait at most the busy timeout
    (15 s), so a refresh must give up before that.
    """

    def __init__(self, url: str, client_id: str, client_secret: Secret | str, *,
                 timeout: float = 10, session: requests.Session | None = None,
                 retries: int = 2, backoff: float = 0.5, deadline: float = 12.0,
                 clock: Clock | None = None, sleep: Sleep = time.sleep) -> None:
        self.url = url
        self.client_id = client_id
        self._secret = client_secret if isinstance(client_secret, str) else client_secret.reveal()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.deadline = deadline
        self._session = session or requests.Session()
        self._clock = clock or _system_clock()
        self._sleep = sleep
        self._host = urlsplit(url).netloc

    def __repr__(self) -> str:
        return f"OAuthClient(url={self.url!r}, client_id={self.client_id!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def refresh(self, refresh_token: str, *, member_id: str = "") -> TokenGrant:
        """Trade ``refresh_token`` (single-use) for a new pair; ``member_id`` is for logs."""
        log.info("oauth refresh for member_id=%s", member_id or "?")
        params = {"grant_type": "refresh_token", "client_id": self.client_id,
                  "client_secret": self._secret, "refresh_token": refresh_token}
        grant = self._with_retries(params, member_id)
        log.info("oauth refresh ok for member_id=%s, expires_at=%s",
                 grant.member_id or member_id or "?", grant.expires_at.isoformat())
        return grant

    def _with_retries(self, params: Mapping[str, str], member_id: str) -> TokenGrant:
        """One attempt plus ``retries`` more on transport failures, within ``deadline``."""
        started = time.monotonic()
        attempt = 0
        while True:
            remaining = self.deadline - (time.monotonic() - started)
            try:
                return self._attempt(params, min(self.timeout, max(remaining, 0.1)))
            except Transport as exc:
                delay = self.backoff * 2 ** attempt
                attempt += 1
                spent = time.monotonic() - started
                if attempt > self.retries or spent + delay >= self.deadline:
                    log.warning("oauth refresh for member_id=%s failed after %d attempt(s): %s",
                                member_id or "?", attempt, exc.code)
                    raise
                log.info("oauth refresh for member_id=%s: %s, retrying in %.1f s",
                         member_id or "?", exc.code, delay)
                self._sleep(delay)

    def _attempt(self, params: Mapping[str, str], timeout: float) -> TokenGrant:
        """One GET; maps every failure to a typed error without secrets in it."""
        try:
            response = self._session.get(self.url, params=params, timeout=timeout)
        except requests.Timeout:
            # requests' messages may quote the URL (and so the secret): name the class only.
            raise Transport("TIMEOUT", f"no answer from {self._host} within {timeout:.1f} s",
                            method="oauth/token") from None
        except requests.RequestException as exc:
            raise Transport(type(exc).__name__, f"cannot reach {self._host}",
                            method="oauth/token") from None
        return self._parse(response)

    def _parse(self, response: requests.Response) -> TokenGrant:
        """The grant of a 200 answer, or the typed error of any other."""
        status = response.status_code
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if status >= 500 or status == 429:
            raise Transport(_code(body) or f"HTTP_{status}", "auth server unavailable",
                            status=status, method="oauth/token")
        if not isinstance(body, dict):
            if status >= 400:  # an HTML error page: most likely a wrong oauth_url
                raise BadRequest(f"HTTP_{status}", "auth server sent no JSON object",
                                 status=status, method="oauth/token")
            raise Transport(f"HTTP_{status}", "auth server sent no JSON object", status=status,
                            method="oauth/token")
        if "error" in body or status >= 400:
            raise _error(body, status)
        return self._grant(body, status)

    def _grant(self, body: Mapping[str, Any], status: int) -> TokenGrant:
        """Build the grant; an answer without both tokens is a broken answer, not a grant."""
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
            raise Transport("NO_TOKENS", "auth server answer lacks the token pair",
                            status=status, method="oauth/token")
        return TokenGrant(access, refresh, self._expires_at(body),
                          scope=str(body.get("scope") or ""),
                          member_id=str(body.get("member_id") or ""),
                          client_endpoint=str(body.get("client_endpoint") or ""),
                          user_id=_int_or_none(body.get("user_id")))

    def _expires_at(self, body: Mapping[str, Any]) -> datetime:
        """``expires`` (unix seconds) when given, else now + ``expires_in``."""
        expires = _int_or_none(body.get("expires"))
        if expires is not None and expires > 0:
            return datetime.fromtimestamp(expires, tz=UTC)
        expires_in = _int_or_none(body.get("expires_in")) or DEFAULT_EXPIRES_IN
        return self._clock().astimezone(UTC) + timedelta(seconds=expires_in)


def _system_clock() -> Clock:
    # Imported late: b24app.context may come to import the token store, which imports us.
    from b24app.context import system_clock

    return system_clock


def _code(body: Any) -> str:
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _error(body: Mapping[str, Any], status: int) -> B24Error:
    """A revoked grant for the documented codes; anything else is a request we got wrong."""
    code = _code(body)
    description = redact(str(body.get("error_description") or ""))[:300]
    if code in REVOKED_CODES:
        return AuthRevoked(code, description, status=status, method="oauth/token")
    return BadRequest(code or f"HTTP_{status}", description, status=status, method="oauth/token")


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
