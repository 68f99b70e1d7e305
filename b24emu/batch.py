"""The ``batch`` method: up to 50 commands, ``$result[...]`` references, always HTTP 200."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from b24emu.dispatch import Caller, invoke, time_block
from b24emu.errors import ApiError
from b24emu.phpquery import parse
from b24emu.portal import Portal

MAX_COMMANDS = 50
_REF = re.compile(r"\$(result|result_total|result_next)((?:\[[^\]]*\])+)")


def php(value: dict[str, Any]) -> Any:
    """A PHP array as ``json_encode`` writes it: ``[]`` when empty, a list when keyed 0..n-1."""
    # Bitrix24 is PHP: an empty map is ``[]`` (resp-batch.json), and an array whose keys are
    # exactly 0, 1, ... in order (``cmd`` sent as a list) is a JSON list, not an object.
    if not value:
        return []
    if list(value) == [str(i) for i in range(len(value))]:
        return list(value.values())
    return value


def _lookup(store: Mapping[str, Any], path: list[str]) -> Any:
    node: Any = store
    for part in path:
        if isinstance(node, list):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                return None
        elif isinstance(node, Mapping):
            if part in node:
                node = node[part]
            else:
                return None
        else:
            return None
    return node


def _substitute(value: Any, refs: dict[str, dict[str, Any]]) -> Any:
    """Replace ``$result[cmd][0][ID]`` references with values of earlier commands."""
    if isinstance(value, dict):
        return {k: _substitute(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, refs) for v in value]
    if not isinstance(value, str) or "$result" not in value:
        return value

    def resolve(match: re.Match[str]) -> Any:
        path = re.findall(r"\[([^\]]*)\]", match.group(2))
        return _lookup(refs[match.group(1)], path)

    whole = _REF.fullmatch(value)
    if whole:
        return resolve(whole)
    return _REF.sub(lambda m: "" if (v := resolve(m)) is None else str(v), value)


def _commands(raw: Any) -> list[tuple[str, str]]:
    if isinstance(raw, Mapping):
        return [(str(k), str(v)) for k, v in raw.items()]
    if isinstance(raw, list):
        return [(str(i), str(v)) for i, v in enumerate(raw)]
    return []


def run_batch(portal: Portal, params: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
    """Execute a batch; returns the ``result`` object of the envelope."""
    lowered = {str(k).lower(): v for k, v in params.items()}
    cmds = _commands(lowered.get("cmd"))
    halt = str(lowered.get("halt", "0")).lower() in ("1", "true", "y")
    if len(cmds) > MAX_COMMANDS:
        raise ApiError(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    nexts: dict[str, Any] = {}
    times: dict[str, Any] = {}
    refs = {"result": results, "result_total": totals, "result_next": nexts}
    for key, command in cmds:
        name, _, query = command.partition("?")
        name = name.strip().removesuffix(".json")
        try:
            if name.lower() == "batch":
                raise ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED",
                               "Method is not allowed for batch usage")
            sub_params = _substitute(parse(query), refs)
            outcome = invoke(portal, name, sub_params, caller, in_batch=True)
        except ApiError as err:
            errors[key] = err.body()
            if halt:
                break
            continue
        results[key] = outcome.value
        times[key] = outcome.time
        if outcome.total is not None:
            totals[key] = outcome.total
        if outcome.next is not None:
            nexts[key] = outcome.next
    return {"result": php(results), "result_error": php(errors), "result_total": php(totals),
            "result_next": php(nexts), "result_time": php(times)}


def batch_time(portal: Portal, start: float, finish: float) -> dict[str, Any]:
    """The outer ``time`` of a batch (the outer call itself is not charged)."""
    return time_block(portal, start, finish, finish - start, None)
