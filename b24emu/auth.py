"""Apps, OAuth tokens and incoming webhooks of the emulated portal."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from b24emu.clock import Clock
from b24emu.errors import ApiError

ALL_SCOPES = frozenset(
    {"crm", "task", "im", "user", "department", "sonet_group", "calendar", "placement",
     "timeman", "entity", "user_brief", "user_basic", "userfieldconfig"}
)


@dataclass
class App:
    """A local application registered on the portal."""

    client_id: str
    client_secret: str
    scopes: frozenset[str]
    application_token: str = ""
    installed: bool = False
    install_pending: bool = False
    version: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    install_url: str = ""
    handler_url: str = ""


@dataclass
class Webhook:
    """An incoming webhook: a user, a secret and scopes."""

    id: int
    user_id: int
    secret: str
    scopes: frozenset[str]


@dataclass
class AccessToken:
    """An issued access token."""

    token: str
    user_id: int
    client_id: str
    expires_at: float


@dataclass
class RefreshToken:
    """A single-use refresh token and the access token issued with it."""

    token: str
    user_id: int
    client_id: str
    expires_at: float
    access: str


class AuthServer:
    """Issues and checks tokens: 1-hour access tokens, single-use rotating refresh tokens."""

    def __init__(self, clock: Clock, access_ttl: int = 3600, refresh_ttl: int = 180 * 86400,
                 revoke_old_access: bool = True) -> None:
        self.clock = clock
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.revoke_old_access = revoke_old_access
        self.apps: dict[str, App] = {}
        self.webhooks: dict[tuple[int, str], Webhook] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.refresh_count = 0
        self.codes: dict[str, tuple[str, int, float]] = {}
        self._lock = threading.Lock()

    def add_app(self, client_id: str, client_secret: str, scopes: frozenset[str]) -> App:
        """Register a local app (what saving the form in the portal UI does)."""
        app = App(client_id, client_secret, scopes)
        self.apps[client_id] = app
        return app

    def add_webhook(self, user_id: int, secret: str,
                    scopes: frozenset[str] = ALL_SCOPES) -> Webhook:
        """Create an incoming webhook for ``user_id``."""
        hook = Webhook(len(self.webhooks) + 1, user_id, secret, scopes)
        self.webhooks[(user_id, secret)] = hook
        return hook

    def issue(self, client_id: str, user_id: int) -> tuple[AccessToken, RefreshToken]:
        """A fresh token pair for ``user_id`` in app ``client_id``."""
        now = self.clock.timestamp()
        access = AccessToken(secrets.token_hex(16), user_id, client_id, now + self.access_ttl)
        refresh = RefreshToken(secrets.token_hex(16), user_id, client_id,
                               now + self.refresh_ttl, access.token)
        with self._lock:
            self._prune(now)
            self.access[access.token] = access
            self.refresh[refresh.token] = refresh
        return access, refresh

    def _prune(self, now: float) -> None:
        if len(self.access) > 5000:
            for key in [k for k, t in self.access.items() if t.expires_at < now]:
                del self.access[key]

    def check_access(self, token: str) -> AccessToken:
        """The token's grant, or the 401 Bitrix24 answers."""
        grant = self.access.get(token)
        if grant is None:
            raise ApiError(401, "invalid_token", "The access token provided is invalid.")
        if grant.expires_at <= self.clock.timestamp():
            raise ApiError(401, "expired_token", "The access token provided has expired.")
        app = self.apps.get(grant.client_id)
        if app is None or not (app.installed or app.install_pending):
            raise ApiError(401, "invalid_token", "Unable to get application by token")
        return grant

    def exchange_refresh(self, client_id: str, client_secret: str,
                         refresh_token: str) -> tuple[AccessToken, RefreshToken]:
        """Rotate a refresh token; the old pair dies at once (refresh tokens are single-use)."""
        app = self.apps.get(client_id)
        if app is None or not secrets.compare_digest(app.client_secret, client_secret):
            raise ApiError(400, "invalid_client", "Invalid client credentials")
        if not (app.installed or app.install_pending):
            raise ApiError(400, "invalid_client", "Application not installed")
        with self._lock:
            old = self.refresh.pop(refresh_token, None)
            now = self.clock.timestamp()
            if old is None or old.client_id != client_id or old.expires_at <= now:
                raise ApiError(400, "invalid_grant", "Invalid refresh token")
            if self.revoke_old_access:
                self.access.pop(old.access, None)
            self.refresh_count += 1
        return self.issue(client_id, old.user_id)

    def expire_all(self) -> int:
        """Fault switch: every access token is expired from now on."""
        now = self.clock.timestamp()
        with self._lock:
            for grant in self.access.values():
                grant.expires_at = min(grant.expires_at, now)
            return len(self.access)

    def revoke_app(self, client_id: str) -> None:
        """Drop every token of an app (uninstall)."""
        with self._lock:
            self.access = {k: v for k, v in self.access.items() if v.client_id != client_id}
            self.refresh = {k: v for k, v in self.refresh.items() if v.client_id != client_id}
