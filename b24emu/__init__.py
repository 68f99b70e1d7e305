"""A Bitrix24 portal on loopback: REST subset, OAuth server, events, limits, faults, datasets."""

from b24emu.portal import Portal, PortalConfig
from b24emu.server import EmulatorServer

__all__ = ["EmulatorServer", "Portal", "PortalConfig"]
