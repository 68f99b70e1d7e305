"""Shared fixtures: the Bitrix24 emulator on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.limits import LimitSettings

pytest_plugins = ["tests.dbfixtures"]


def _admin(portal: Portal) -> None:
    portal.users.insert({"NAME": "Алексей", "LAST_NAME": "Админов", "ACTIVE": True,
                         "IS_ADMIN": True, "UF_DEPARTMENT": [1], "USER_TYPE": "employee",
                         "EMAIL": "admin@nois.example"})


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """An empty portal (one admin user) with limits off, served on 127.0.0.1:<free port>."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False)))
    _admin(portal)
    server = EmulatorServer(portal).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def limited_emulator() -> Iterator[EmulatorServer]:
    """Like ``emulator`` but with Bitrix24's cloud limits on (burst 50, 2 requests/s)."""
    portal = Portal(PortalConfig())
    _admin(portal)
    server = EmulatorServer(portal).start()
    try:
        yield server
    finally:
        server.stop()
