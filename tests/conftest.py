"""Shared fixtures: the Bitrix24 emulator on a free loopback port; test-wide settings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.limits import LimitSettings

pytest_plugins = ["tests.dbfixtures", "tests.appfixtures", "tests.browser"]

# Reproducible property tests that do not fail because a shared CI machine is slow.
settings.register_profile("b24app", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("b24app")


@pytest.fixture(autouse=True, scope="session")
def _no_default_event_loop() -> None:
    """No implicit main-thread loop: fast-bitrix24's sync wrapper then uses ``asyncio.run``.

    Otherwise it creates a loop with ``get_event_loop()`` that nobody closes, and the
    ResourceWarning lands on whichever test runs when the garbage collector finds it.
    """
    asyncio.set_event_loop(None)


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
