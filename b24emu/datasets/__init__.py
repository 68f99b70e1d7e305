"""Seeded datasets: ``empty`` (an admin and the company) and ``demo`` (the NOIS portal)."""

from __future__ import annotations

from b24emu.datasets.empty import build_empty
from b24emu.portal import Portal


def build_dataset(portal: Portal, name: str, *, seed: int = 1, scale: int = 0) -> None:
    """Fill ``portal`` with dataset ``name``; ``scale`` adds that many generated deals."""
    if name == "empty":
        build_empty(portal)
    elif name == "demo":
        from b24emu.datasets.demo import build_demo

        build_demo(portal, seed=seed)
    else:
        raise ValueError(f"unknown dataset {name!r}: use demo or empty")
    if scale:
        from b24emu.datasets.scale import add_scale

        add_scale(portal, deals=scale, seed=seed)
