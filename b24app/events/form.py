"""Strict parsing of Bitrix24's bracketed form bodies (``data[FIELDS][ID]=7``) from strangers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MAX_FIELDS = 200
MAX_DEPTH = 5
MAX_KEY = 200
_KEY = re.compile(rf"^([A-Za-z0-9_]{{1,64}})((?:\[[A-Za-z0-9_]{{0,64}}\]){{0,{MAX_DEPTH}}})$")
_PART = re.compile(r"\[([A-Za-z0-9_]*)\]")


class MalformedForm(ValueError):
    """The body is not a Bitrix24 event form."""


def parse_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest bracketed keys into dicts; reject odd keys, deep nesting and too many fields."""
    out: dict[str, Any] = {}
    for count, (key, value) in enumerate(pairs, start=1):
        if count > MAX_FIELDS:
            raise MalformedForm(f"more than {MAX_FIELDS} fields")
        if len(key) > MAX_KEY:
            raise MalformedForm("key too long")
        match = _KEY.match(key)
        if match is None:
            raise MalformedForm(f"bad key {key[:60]!r}")
        path = [match.group(1), *_PART.findall(match.group(2))]
        _assign(out, path, value)
    return out


def _assign(root: dict[str, Any], path: list[str], value: str) -> None:
    node = root
    for i, raw in enumerate(path):
        part = raw or str(len(node))  # "[]" appends, as PHP does.
        if i == len(path) - 1:
            if isinstance(node.get(part), dict):
                raise MalformedForm(f"key {'/'.join(path)} is both a value and a map")
            node[part] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MalformedForm(f"key {'/'.join(path[: i + 1])} is both a value and a map")
        node = child
