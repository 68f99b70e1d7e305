"""PHP-style bracketed query strings: parse into nested data and build them back."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

_KEY_RE = re.compile(r"\[([^\]]*)\]")

Nested = dict[str, Any]


def _split_key(key: str) -> list[str]:
    """Split ``a[b][c][]`` into ``['a', 'b', 'c', '']`` like PHP does."""
    head, bracket, _ = key.partition("[")
    if not bracket or not head:
        return [key]
    rest = key[len(head) :]
    parts = _KEY_RE.findall(rest)
    if "".join(f"[{p}]" for p in parts) != rest:
        # PHP keeps malformed tails as part of the first segment's sibling; we keep it verbatim.
        return [key]
    return [head, *parts]


def assign(target: Nested, key: str, value: Any) -> None:
    """Assign ``value`` at a bracketed ``key`` inside ``target``; ``[]`` appends."""
    parts = _split_key(key)
    node: Any = target
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if part == "":
                if last:
                    node.append(value)
                    return
                child: Any = {}
                node.append(child)
                node = child
                continue
            # A numbered key on a list: turn it into a mapping keyed by position.
            mapping = {str(j): v for j, v in enumerate(node)}
            node.clear()
            node = mapping
        name = part or str(len(node))
        if last:
            node[name] = value
            return
        nxt_is_append = parts[i + 1] == ""
        existing = node.get(name)
        if not isinstance(existing, dict | list):
            existing = [] if nxt_is_append else {}
            node[name] = existing
        elif isinstance(existing, list) and not nxt_is_append:
            existing = {str(j): v for j, v in enumerate(existing)}
            node[name] = existing
        node = existing


def parse(query: str) -> Nested:
    """Parse ``a[b]=1&c[]=2`` into ``{'a': {'b': '1'}, 'c': ['2']}`` (all values strings)."""
    out: Nested = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        assign(out, key, value)
    return out


def parse_pairs(pairs: Iterable[tuple[str, str]]) -> Nested:
    """Like :func:`parse` for already-decoded key/value pairs (a form body)."""
    out: Nested = {}
    for key, value in pairs:
        assign(out, key, value)
    return out


def flatten(data: Mapping[str, Any], prefix: str = "", *,
            skip_empty: bool = False) -> list[tuple[str, str]]:
    """Flatten nested data into bracketed pairs; every scalar becomes a string.

    ``skip_empty`` drops empty arrays entirely, as PHP's ``http_build_query`` does;
    otherwise an empty list is sent as ``key[]=`` so that it can clear a value.
    """
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        pairs.extend(_flatten_value(name, value, skip_empty))
    return pairs


def _flatten_value(name: str, value: Any, skip_empty: bool) -> list[tuple[str, str]]:
    if isinstance(value, Mapping | list | tuple) and not value:
        if skip_empty:
            return []
        return [(f"{name}[]" if isinstance(value, list | tuple) else name, "")]
    if isinstance(value, Mapping):
        return flatten(value, name, skip_empty=skip_empty)
    if isinstance(value, list | tuple):
        out: list[tuple[str, str]] = []
        for i, item in enumerate(value):
            out.extend(_flatten_value(f"{name}[{i}]", item, skip_empty))
        return out
    return [(name, scalar(value))]


def scalar(value: Any) -> str:
    """Render a scalar the way PHP's http_build_query would."""
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    return str(value)


def build(data: Mapping[str, Any]) -> str:
    """Encode nested data as a PHP-style query string."""
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in flatten(data))


def as_list(value: Any) -> list[Any]:
    """Read a PHP array that may have arrived as a list, a numbered mapping or a scalar."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return list(value.values())
    return [value]
