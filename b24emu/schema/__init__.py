"""Field definitions of the emulated entities, as their ``*.fields`` methods describe them."""

from __future__ import annotations

from b24emu.store import FieldDef


def fields(*defs: FieldDef) -> dict[str, FieldDef]:
    """Index field definitions by name, keeping declaration order."""
    return {d.name: d for d in defs}


def f(name: str, type_: str = "string", title: str = "", **kw: object) -> FieldDef:
    """Shorthand for a :class:`FieldDef`."""
    return FieldDef(name, type_, title or name, **kw)  # type: ignore[arg-type]
