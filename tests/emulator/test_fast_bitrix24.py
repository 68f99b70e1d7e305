"""fast-bitrix24 1.8.14 over loopback, used the way the service uses it (bitrix24-clients.md)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import pytest
from fast_bitrix24 import Bitrix, BitrixAsync

from b24emu import EmulatorServer
from tests.emulator.helpers import add_user, hook, quick_install, refresh

logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)


def _client(url: str, **kw: Any) -> BitrixAsync:
    return BitrixAsync(url, verbose=False, requests_per_second=2.0, **kw)


def test_get_all_user_get_over_webhook(emulator: EmulatorServer) -> None:
    """``get_all('user.get')`` pages through 121 users (first call + a batch of pages)."""
    for i in range(120):
        add_user(emulator.portal, f"U{i}", active=i % 10 != 0)
    users = asyncio.run(_client(emulator.portal.webhook_url).get_all("user.get"))
    # The library returns pages in random order (pickle/set dedup): sort ourselves.
    assert sorted(int(u["ID"]) for u in users) == list(range(1, 122))
    assert {type(u["ACTIVE"]) for u in users} == {bool}
    assert all(isinstance(d, int) for u in users for d in u["UF_DEPARTMENT"])


def test_raw_batch_keeps_per_command_errors(emulator: EmulatorServer) -> None:
    """``call('batch', {...}, raw=True)`` returns the full envelope with ``result_error``."""
    async def run() -> Any:
        return await _client(emulator.portal.webhook_url).call(
            "batch", {"halt": 0, "cmd": {
                "me": "user.current",
                "bad": "im.notify.system.add?MESSAGE=x",
                "note": "im.notify.system.add?USER_ID=1&MESSAGE=ok",
            }}, raw=True)

    envelope = asyncio.run(run())
    assert set(envelope) == {"result", "time"}
    result = envelope["result"]
    assert result["result"]["me"]["ID"] == "1"
    assert isinstance(result["result"]["note"], int)
    assert result["result_error"] == {"bad": {"error": "USER_ID_EMPTY",
                                              "error_description": "Recipient is not specified"}}


def test_raw_call_sends_real_json_types(emulator: EmulatorServer) -> None:
    """``raw=True`` sends JSON, so nested values keep their types (clients.md 1.5)."""
    token, _ = quick_install(emulator)

    async def token_func() -> str:
        return token

    async def run() -> Any:
        bx = _client(emulator.portal.client_endpoint, token_func=token_func)
        await bx.call("app.option.set", {"options": {"limit": 5, "on": True, "none": None}},
                      raw=True)
        return await bx.call("app.option.get", {}, raw=True)

    assert asyncio.run(run())["result"] == {"limit": 5, "on": True, "none": None}


def test_sync_client_in_a_worker_thread(emulator: EmulatorServer) -> None:
    """The sync ``Bitrix`` works from a non-main thread (it runs its own loop there)."""
    emulator.portal.departments.insert({"NAME": "НОИС", "SORT": 500, "PARENT": None,
                                        "UF_HEAD": 1})
    bx = Bitrix(emulator.portal.webhook_url, verbose=False, requests_per_second=2.0)
    with ThreadPoolExecutor(1) as pool:
        rows = pool.submit(bx.get_all, "department.get").result(timeout=30)
    assert rows == [{"ID": "1", "NAME": "НОИС", "SORT": 500, "UF_HEAD": "1"}]


def test_oauth_token_func_is_called_again_after_expired_token(emulator: EmulatorServer) -> None:
    """OAuth mode: a 401 ``expired_token`` makes the library ask ``token_func`` again (1.3)."""
    access, refresh_token = quick_install(emulator)
    tokens = {"access": access, "refresh": refresh_token}
    calls: list[str] = []

    async def token_func() -> str:
        # First use: the stored token; on rejection: refresh with the rotating refresh token.
        if calls:
            resp = await asyncio.to_thread(refresh, emulator, tokens["refresh"])
            body = resp.json()
            tokens.update(access=body["access_token"], refresh=body["refresh_token"])
        calls.append(tokens["access"])
        return tokens["access"]

    async def run() -> tuple[Any, Any]:
        bx = _client(emulator.portal.client_endpoint, token_func=token_func)
        first = await bx.call("user.current", {}, raw=True)
        hook(emulator, "b24emu.tokens.expire")
        second = await bx.call("user.current", {}, raw=True)
        return first, second

    first, second = asyncio.run(run())
    assert first["result"]["ID"] == second["result"]["ID"] == "1"
    assert len(calls) == 2 and calls[0] != calls[1]
    assert hook(emulator, "b24emu.stats").json()["result"]["refreshes"] == 1


def test_503_is_retried(emulator: EmulatorServer) -> None:
    """fast-bitrix24 retries 5xx: two injected 503s, then the answer (clients.md 1.8)."""
    hook(emulator, "b24emu.faults.add",
         {"kind": "method_error", "pattern": "user.current", "count": 2, "status": 503})
    envelope = asyncio.run(_client(emulator.portal.webhook_url).call("user.current", {},
                                                                     raw=True))
    assert envelope["result"]["ID"] == "1"


def test_429_surfaces_as_client_response_error(emulator: EmulatorServer) -> None:
    """429 ``OPERATION_TIME_LIMIT`` is not retried by the library: the gateway must map it."""
    emulator.portal.limits.enabled = True
    emulator.portal.limits.operating_limit = 1.0
    hook(emulator, "b24emu.faults.add",
         {"kind": "operating_cost", "pattern": "profile", "count": 1, "value": 2})
    hook(emulator, "profile")

    async def run() -> Any:
        return await _client(emulator.portal.webhook_url).call("profile", {}, raw=True)

    with pytest.raises(aiohttp.ClientResponseError) as err:
        asyncio.run(run())
    assert err.value.status == 429
