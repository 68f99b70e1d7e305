"""The composition root's product: settings, storage, secrets, clock and gateways in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Settings
from b24app.crypto import SecretBox
from b24app.gateway.protocol import Gateway

if TYPE_CHECKING:
    from b24app.tokens import TokenStore

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Aware UTC now; the only place the service reads the wall clock."""
    return datetime.now(UTC)


class GatewayProvider(Protocol):
    """Hands out the gateway of a portal (one Bitrix24 client per portal per process)."""

    def for_portal(self, portal_id: int) -> Gateway:
        """The gateway bound to ``portal_id``'s endpoint and credentials."""

    def forget(self, portal_id: int) -> None:
        """Drop a cached client (credentials changed, portal uninstalled)."""

    def close(self) -> None:
        """Close every client."""


@dataclass
class AppContext:
    """Everything a request handler, a job or a CLI command needs; built once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    secrets: SecretBox
    gateways: GatewayProvider
    clock: Clock = field(default=system_clock)
    tokens: TokenStore | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Release clients and connections."""
        self.gateways.close()
        for closer in self.closers:
            closer()
        self.engine.dispose()
