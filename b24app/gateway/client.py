"""The one owner of fast-bitrix24: a ``BitrixAsync`` on a loop thread, raw batches, typed errors."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from aiohttp import ClientResponse, ClientResponseError
from fast_bitrix24 import BitrixAsync

from b24app.gateway import encode
from b24app.gateway.errors import (
    AuthExpired,
    AuthRevoked,
    B24Error,
    MethodBlocked,
    Transport,
    classify,
)
from b24app.gateway.loop import LoopThread

log = logging.getLogger(__name__)
# fast-bitrix24 logs full requests and responses at DEBUG (CRM data): keep it quiet.
logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)

PAGE = 50
MAX_BATCH = 50
MAX_TOKEN_REJECTIONS = 3


class TokenProvider(Protocol):
    """Where OAuth access tokens come from (the token store); blocking calls are fine."""

    def current(self) -> str:
        """The stored access token."""

    def rejected(self, token: str) -> str:
        """``token`` was refused: return a newer stored one or refresh; raise AuthRevoked."""


class HttpError(ClientResponseError):
    """An HTTP error that keeps Bitrix24's JSON body (aiohttp would drop it)."""

    def __init__(self, response: ClientResponse, body: Any) -> None:
        super().__init__(response.request_info, response.history, status=response.status,
                         message=str(body)[:200], headers=response.headers)
        self.body = body


@dataclass
class CommandResult:
    """One command's answer inside a batch."""

    value: Any
    total: int | None = None
    next: int | None = None


@dataclass
class ClientStats:
    """What the client sent: HTTP requests and batch commands."""

    requests: int = 0
    commands: int = 0
    by_method: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ListSpec:
    """How a list method pages: where rows sit in ``result`` and what their ID key is."""

    method: str
    rows_key: str | None = None
    id_field: str = "ID"
    filter_key: str = "filter"
    order_key: str = "order"
    # The ID's name in filter/order when it differs from the row key: tasks answer ``id`` but
    # take UPPER_CASE input (``filter[>ID]``, ``order[ID]``) (platform doc 5.5).
    input_id: str = ""

    @property
    def id_input(self) -> str:
        """The ID field as ``filter``/``order`` name it."""
        return self.input_id or self.id_field

    def rows(self, value: Any) -> list[dict[str, Any]]:
        """The rows of one page."""
        if self.rows_key is not None and isinstance(value, Mapping):
            value = value.get(self.rows_key)
        return list(value or [])


LEGACY = {m: ListSpec(m) for m in ("crm.deal.list", "crm.company.list", "crm.contact.list",
                                    "crm.activity.list")}
SPECS: dict[str, ListSpec] = {
    **LEGACY,
    "crm.item.list": ListSpec("crm.item.list", "items", "id"),
    "crm.stagehistory.list": ListSpec("crm.stagehistory.list", "items", "ID"),
    "tasks.task.list": ListSpec("tasks.task.list", "tasks", "id", input_id="ID"),
    "crm.type.list": ListSpec("crm.type.list", "types", "id"),
    "user.get": ListSpec("user.get", None, "ID", "FILTER", "sort"),
}


class BitrixClient:
    """Calls one portal: single calls and writes as raw batches, lists as chained exports."""

    def __init__(self, endpoint: str, *, token_provider: TokenProvider | None = None,
                 requests_per_second: float = 2.0, burst: int = 50, timeout: float = 60.0,
                 loop: LoopThread | None = None) -> None:
        self.endpoint = endpoint
        self.stats = ClientStats()
        self._provider = token_provider
        self._rejections = 0
        self._own_loop = loop is None
        self._loop = loop or LoopThread()
        self._bx, self._session = self._loop.run(
            self._open(float(requests_per_second), int(burst), timeout))

    async def _open(self, rps: float, burst: int, timeout: float) -> tuple[BitrixAsync,
                                                                           aiohttp.ClientSession]:
        # Our own session: keep-alive across calls and error bodies kept (see HttpError).
        session = aiohttp.ClientSession(raise_for_status=self._check,
                                        timeout=aiohttp.ClientTimeout(total=timeout))
        bx = BitrixAsync(self.endpoint, token_func=self._token if self._provider else None,
                         verbose=False, respect_velocity_policy=True, request_pool_size=burst,
                         requests_per_second=rps, client=session)
        return bx, session

    async def _check(self, response: ClientResponse) -> None:
        self.stats.requests += 1
        if response.status < 400:
            return
        try:
            body: Any = await response.json(content_type=None)
        except (ValueError, aiohttp.ClientError):
            body = {"error": f"HTTP_{response.status}", "error_description": "non-JSON answer"}
        raise HttpError(response, body)

    async def _token(self) -> str:
        """fast-bitrix24's ``token_func``: first token, or a newer one after a 401."""
        srh = self._bx.srh
        previous = srh.token
        try:
            loop = asyncio.get_running_loop()
            provider = self._provider
            assert provider is not None
            if previous is None:
                return await loop.run_in_executor(None, provider.current)
            self._rejections += 1
            if self._rejections > MAX_TOKEN_REJECTIONS:
                # fast-bitrix24 would loop on 401 forever; stop and let the caller mark the portal.
                raise AuthRevoked("TOKEN_REJECTED", "access token rejected repeatedly")
            return await loop.run_in_executor(None, provider.rejected, previous)
        except BaseException:
            srh.token_received.set()  # Otherwise every later caller waits on it forever.
            raise

    @property
    def loop(self) -> LoopThread:
        """The loop thread this client's fast-bitrix24 instance lives on."""
        return self._loop

    def close(self) -> None:
        """Close the HTTP session (and the loop if we own it)."""
        self._loop.run(self._session.close())
        if self._own_loop:
            self._loop.stop()

    # -- calls -------------------------------------------------------------------------------
    def _send(self, method: str, payload: dict[str, Any]) -> Any:
        try:
            envelope = self._loop.run(self._bx.call(method, payload, raw=True))
        except B24Error:
            raise
        except Exception as exc:
            raise _translate(exc, method) from exc
        self._rejections = 0
        return envelope

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any] | None]], *,
              halt: bool = False) -> dict[str, CommandResult | B24Error]:
        """Run up to 50 commands in one request; each gets its result or its typed error."""
        if not commands:
            return {}
        if len(commands) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} commands, got {len(commands)}")
        cmd = {key: encode.command(method, params) for key, (method, params) in commands.items()}
        self.stats.commands += len(cmd)
        for method, _ in commands.values():
            self.stats.by_method[method] = self.stats.by_method.get(method, 0) + 1
        envelope = self._send("batch", {"halt": 1 if halt else 0, "cmd": cmd})
        return parse_batch(envelope, commands)

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> CommandResult:
        """One method call (sent as a one-command batch); raises its typed error."""
        result = self.batch({"c": (method, params)})["c"]
        if isinstance(result, B24Error):
            raise result
        return result

    def get_all(self, method: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """fast-bitrix24's own ``get_all`` (offset pages in parallel), sorted by ID here."""
        try:
            rows = self._loop.run(self._bx.get_all(method, dict(params or {})))
        except B24Error:
            raise
        except Exception as exc:
            raise _translate(exc, method) from exc
        spec = SPECS.get(method, ListSpec(method))
        out = list(rows) if isinstance(rows, list) else spec.rows(rows)
        out.sort(key=lambda r: int(r.get(spec.id_field) or 0))
        return out

    def iter_pages(self, method: str, params: Mapping[str, Any] | None = None, *,
                   after_id: int = 0) -> Iterator[list[dict[str, Any]]]:
        """Pages in ascending ID: ``start=-1`` plus a ``>ID`` filter chained inside batches.

        The first request counts the rows so that later batches hold only the pages needed;
        a chain stops at the first short page (later references would be empty).
        """
        spec = SPECS.get(method, ListSpec(method))
        base = dict(params or {})
        flt = dict(base.pop(spec.filter_key, None) or {})
        key = f">{spec.id_input}"
        base[spec.order_key] = {spec.id_input: "ASC"}
        first = self.call(method, {**base, spec.filter_key: {**flt, key: after_id}})
        rows = spec.rows(first.value)
        if rows:
            yield rows
        remaining = max(0, (first.total or 0) - len(rows))
        while len(rows) == PAGE:
            last = int(rows[-1][spec.id_field])
            pages = min(MAX_BATCH, max(1, math.ceil(remaining / PAGE) + 1))
            commands: dict[str, tuple[str, Mapping[str, Any] | None]] = {}
            for i in range(pages):
                ref = last if i == 0 else self._ref(spec, f"p{i - 1}")
                commands[f"p{i}"] = (method, {**base, "start": -1,
                                              spec.filter_key: {**flt, key: ref}})
            results = self.batch(commands)
            for i in range(pages):
                result = results[f"p{i}"]
                if isinstance(result, B24Error):
                    raise result
                rows = spec.rows(result.value)
                remaining -= len(rows)
                if rows:
                    yield rows
                if len(rows) < PAGE:
                    break

    @staticmethod
    def _ref(spec: ListSpec, key: str) -> str:
        path = f"[{spec.rows_key}]" if spec.rows_key else ""
        return f"$result[{key}]{path}[{PAGE - 1}][{spec.id_field}]"

    def iter_offset(self, method: str, params: Mapping[str, Any] | None = None
                    ) -> Iterator[list[dict[str, Any]]]:
        """Pages by ``start`` offsets (small tables such as users and departments)."""
        spec = SPECS.get(method, ListSpec(method))
        first = self.call(method, dict(params or {}))
        yield spec.rows(first.value)
        total = first.total or 0
        starts = list(range(PAGE, total, PAGE))
        for chunk in range(0, len(starts), MAX_BATCH):
            part = starts[chunk:chunk + MAX_BATCH]
            results = self.batch({f"o{s}": (method, {**(params or {}), "start": s}) for s in part})
            for s in part:
                result = results[f"o{s}"]
                if isinstance(result, B24Error):
                    raise result
                yield spec.rows(result.value)


def parse_batch(envelope: Any, commands: Mapping[str, Any]) -> dict[str, CommandResult | B24Error]:
    """Split a batch envelope into per-command results and typed errors."""
    outer = envelope.get("result", {}) if isinstance(envelope, dict) else {}
    results = _php_map(outer.get("result"))
    errors = _php_map(outer.get("result_error"))
    totals = _php_map(outer.get("result_total"))
    nexts = _php_map(outer.get("result_next"))
    out: dict[str, CommandResult | B24Error] = {}
    for key, (method, _) in commands.items():
        if key in errors:
            out[key] = classify(errors[key], status=None, method=method)
        elif key in results:
            total = totals.get(key)
            nxt = nexts.get(key)
            out[key] = CommandResult(results[key], None if total is None else int(total),
                                     None if nxt is None else int(nxt))
        else:
            out[key] = Transport("NOT_EXECUTED", "command not executed (halted batch)",
                                 method=method)
    return out


def _php_map(value: Any) -> dict[str, Any]:
    """PHP sends an empty map as ``[]`` and a list-keyed one as a list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _translate(exc: BaseException, method: str) -> B24Error:
    """Map whatever fast-bitrix24/aiohttp raised to our typed errors."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or node.__context__
    for item in chain:
        if isinstance(item, HttpError):
            err = classify(item.body, status=item.status, method=method)
            if isinstance(err, AuthExpired):
                return AuthRevoked(err.code, err.description, status=err.status, method=method)
            return err
    for item in chain:
        if isinstance(item, ClientResponseError) and item.status == 429:
            return MethodBlocked("OPERATION_TIME_LIMIT", str(item), status=429, method=method)
    return Transport(type(exc).__name__, str(exc)[:300], method=method)


def pages_to_rows(pages: Iterator[list[dict[str, Any]]],
                  convert: Callable[[dict[str, Any]], Any] | None = None) -> Iterator[Any]:
    """Flatten pages into rows, optionally converting each."""
    for page in pages:
        for row in page:
            yield convert(row) if convert else row
