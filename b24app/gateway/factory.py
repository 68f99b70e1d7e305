"""One ``BitrixGateway`` per portal per process, all clients on one shared loop thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session, sessionmaker

from b24app.config import ConfigError, Settings
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient, TokenProvider
from b24app.gateway.loop import LoopThread
from b24app.models.portal import Portal, PortalMode

if TYPE_CHECKING:
    from b24app.crypto import SecretBox


class TokenSource(Protocol):
    """What the factory needs of ``b24app.tokens.TokenStore``."""

    def provider(self, portal_id: int) -> TokenProvider:
        """The token provider of one portal."""


class GatewayFactory:
    """``GatewayProvider``: a cached gateway per portal; one loop thread for all of them."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], secrets: SecretBox,
                 clock: Callable[[], datetime], *, token_store: TokenSource | None = None) -> None:
        self._settings = settings
        self._sessions = sessions
        self._secrets = secrets
        self._clock = clock
        self._tokens = token_store
        self._gateways: dict[int, BitrixGateway] = {}
        self._lock = threading.Lock()
        self._loop: LoopThread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"GatewayFactory(portals={sorted(self._gateways)})"

    @property
    def loop(self) -> LoopThread | None:
        """The shared loop thread (None until the first gateway is made)."""
        return self._loop

    def for_portal(self, portal_id: int) -> BitrixGateway:
        """The portal's gateway, made on first use (thread-safe)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("GatewayFactory is closed")
            gateway = self._gateways.get(portal_id)
            if gateway is None:
                gateway = BitrixGateway(self._client(portal_id))
                self._gateways[portal_id] = gateway
            return gateway

    def forget(self, portal_id: int) -> None:
        """Drop and close a portal's client (credentials changed, portal uninstalled).

        Calls still running on the old client fail with ``Transport``; the next
        ``for_portal`` builds a fresh client from the database.
        """
        with self._lock:
            gateway = self._gateways.pop(portal_id, None)
        if gateway is not None:
            gateway.client.close()

    def close(self) -> None:
        """Close every client, then stop the loop thread."""
        with self._lock:
            self._closed = True
            gateways, self._gateways = list(self._gateways.values()), {}
            loop, self._loop = self._loop, None
        for gateway in gateways:
            gateway.client.close()
        if loop is not None:
            loop.stop()

    # -- building ----------------------------------------------------------------------------
    def _client(self, portal_id: int) -> BitrixClient:
        """A client bound to the portal's endpoint and credentials (called under the lock)."""
        endpoint, provider = self._target(portal_id)
        if self._loop is None:
            self._loop = LoopThread()
        portal = self._settings.portal
        return BitrixClient(endpoint, token_provider=provider,
                            requests_per_second=portal.requests_per_second, burst=portal.burst,
                            loop=self._loop)

    def _target(self, portal_id: int) -> tuple[str, TokenProvider | None]:
        """Where to send a portal's calls: the webhook URL, or its endpoint plus its tokens."""
        with self._sessions() as session:
            row = session.get(Portal, portal_id)
            if row is None:
                raise LookupError(f"no portal with id {portal_id}")
            mode, endpoint = row.mode, row.client_endpoint
        if mode == PortalMode.WEBHOOK.value:
            url = self._settings.portal.webhook_url.reveal()
            if not url:
                raise ConfigError("[portal] webhook_url is required for a webhook-mode portal")
            return url, None
        if not endpoint:
            raise LookupError(f"portal {portal_id} has no client_endpoint (not installed?)")
        return endpoint, self._token_store().provider(portal_id)

    def _token_store(self) -> TokenSource:
        """The injected store, or one built from settings on first need."""
        if self._tokens is None:
            from b24app.oauth import OAuthClient
            from b24app.tokens import TokenStore

            portal = self._settings.portal
            oauth = OAuthClient(portal.oauth_url, portal.client_id, portal.client_secret)
            self._tokens = TokenStore(self._sessions, self._secrets, oauth, self._clock)
        return self._tokens
