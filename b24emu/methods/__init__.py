"""Importing this package registers every REST method of the emulator."""

from b24emu.methods import common, debug, events_api, im, org

__all__ = ["common", "debug", "events_api", "im", "org"]
