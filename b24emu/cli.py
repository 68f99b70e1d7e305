"""Build a served portal for ``b24app emulator``: dataset, seed, scale, saved state."""

from __future__ import annotations

from pathlib import Path

from b24emu.datasets import build_dataset
from b24emu.limits import LimitSettings
from b24emu.portal import Portal, PortalConfig
from b24emu.server import EmulatorServer
from b24emu.state import load_state, save_state

__all__ = ["build_server", "save_state"]


def build_server(*, dataset: str = "demo", seed: int = 1, scale: int = 0, port: int = 0,
                 state: str = "", limits: bool = True) -> EmulatorServer:
    """A portal with ``dataset`` (or the saved ``state``), not yet serving."""
    portal = Portal(PortalConfig(seed=seed, limits=LimitSettings(enabled=limits)))
    if state and Path(state).exists():
        load_state(portal, state)
    else:
        build_dataset(portal, dataset, seed=seed, scale=scale)
    return EmulatorServer(portal, port=port)
