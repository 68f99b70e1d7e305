"""Typed failures of BitrixGateway: rights, parameters, auth, the 429 window and 503 storms."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import pytest

from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import MAX_TOKEN_REJECTIONS, BitrixClient, CommandResult
from b24app.gateway.errors import (
    AccessDenied,
    AuthRevoked,
    B24Error,
    BadRequest,
    MethodBlocked,
    NotFound,
    RateLimited,
)
from b24app.gateway.protocol import UserFieldSpec
from b24emu import EmulatorServer
from tests.test_gateway import (
    StaticTokens,
    add_deals,
    add_task,
    app_token,
    gateway_at,
    requests_of,
)


def _hook_url(emulator: EmulatorServer, user_id: int, secret: str,
              scopes: frozenset[str] | None = None) -> str:
    portal = emulator.portal
    if scopes is None:
        portal.auth.add_webhook(user_id, secret)
    else:
        portal.auth.add_webhook(user_id, secret, scopes)
    return f"{portal.base_url}/rest/{user_id}/{secret}/"


# -- rights, parameters, credentials ------------------------------------------------------------
def test_scope_rights_and_auth_type_are_access_denied(emulator: EmulatorServer) -> None:
    """insufficient_scope, ACCESS_DENIED and WRONG_AUTH_TYPE → AccessDenied, code kept."""
    portal = emulator.portal
    manager = int(portal.users.insert({"NAME": "Менеджер", "ACTIVE": True, "IS_ADMIN": False,
                                       "UF_DEPARTMENT": [1], "USER_TYPE": "employee"}))
    with gateway_at(_hook_url(emulator, 1, "crmonly", frozenset({"crm"}))) as crm_only:
        with pytest.raises(AccessDenied) as scope:
            crm_only.get_task(1)
        assert scope.value.code == "insufficient_scope"
        assert scope.value.method == "tasks.task.get"
    with gateway_at(_hook_url(emulator, manager, "manager")) as as_manager:
        with pytest.raises(AccessDenied) as rights:
            as_manager.add_userfield("deal", UserFieldSpec("UF_CRM_X", "string", "X"))
        assert rights.value.code == "ACCESS_DENIED"
    with gateway_at(portal.webhook_url) as hooked:
        # An app-only method through a webhook: the webhook still works, it is not revoked.
        with pytest.raises(AccessDenied) as wrong:
            hooked.bind_event("ONCRMDEALADD", "https://app.example/h")
        assert wrong.value.code == "WRONG_AUTH_TYPE"
        assert hooked.server_time() is not None


def test_bad_parameters_are_bad_requests(emulator: EmulatorServer) -> None:
    """Parameter errors keep Bitrix24's code and text; a missing method is not 'not found'."""
    tid = add_task(emulator.portal)
    with gateway_at(emulator.portal.webhook_url) as hooked:
        with pytest.raises(BadRequest) as no_fields:
            hooked.update_task(tid, {})
        assert no_fields.value.code == "100"
        with pytest.raises(BadRequest, match="ID is not defined"):
            hooked.get_deal(0)
        with pytest.raises(BadRequest) as empty:
            hooked.add_task_comment(tid, "")
        assert empty.value.code == "ERROR_CORE"
        with pytest.raises(BadRequest) as nobody:
            hooked.notify(0, "Кому?")
        assert nobody.value.code == "USER_ID_EMPTY"
        with pytest.raises(BadRequest) as missing:
            hooked.client.call("no.such.method")
        assert missing.value.code == "ERROR_METHOD_NOT_FOUND"
        with pytest.raises(NotFound):
            hooked.client.call("crm.deal.get", {"id": 404})


def test_wrong_webhook_secret_is_auth_revoked(emulator: EmulatorServer) -> None:
    """401 NO_AUTH_FOUND on the whole request → AuthRevoked with the HTTP status."""
    with gateway_at(f"{emulator.url}/rest/1/wrong-secret/") as gateway, \
            pytest.raises(AuthRevoked) as caught:
        gateway.get_deal(1)
    assert (caught.value.code, caught.value.status) == ("NO_AUTH_FOUND", 401)


def test_rejected_token_gives_up_after_the_cap(emulator: EmulatorServer) -> None:
    """A token the portal keeps refusing: a few retries, then AuthRevoked (no endless loop)."""
    app_token(emulator.portal)
    tokens = StaticTokens("not-a-token")
    with gateway_at(emulator.portal.client_endpoint, tokens) as gateway, \
            pytest.raises(AuthRevoked) as caught:
        gateway.app_info()
    assert caught.value.code == "TOKEN_REJECTED"
    assert tokens.rejections == MAX_TOKEN_REJECTIONS


# -- the 429 window -----------------------------------------------------------------------------
def test_update_many_waits_out_the_operating_limit(emulator: EmulatorServer) -> None:
    """429 OPERATION_TIME_LIMIT mid-batch: wait until operating_reset_at, redo the refused."""
    portal = emulator.portal
    ids = add_deals(portal, 120)
    portal.limits.enabled = True
    portal.limits.burst = 10_000
    portal.limits.operating_limit = 10.0
    # The first update costs 11 s of the 10 s budget: the other 49 of its batch get 429.
    portal.faults.add("operating_cost", "crm.deal.update", count=1, value=11.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        portal.clock.advance(seconds)  # the budget runs on the portal clock

    with gateway_at(portal.webhook_url, sleep=sleep, now=portal.clock.timestamp) as gateway:
        outcome = gateway.update_many("deal", {i: {"TITLE": f"KPI {i}"} for i in ids})
        assert requests_of(gateway) == 4  # 3 batches + 1 retry of the refused 49
    assert outcome == dict.fromkeys(ids)
    assert len(slept) == 1 and 0 < slept[0] <= 600
    assert [portal.deals.rows[i]["TITLE"] for i in ids] == [f"KPI {i}" for i in ids]


class FakeTime:
    """A clock and a sleep that moves it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        """The current fake time."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Record and advance."""
        self.slept.append(seconds)
        self.now += seconds


class ScriptedClient:
    """Stands in for BitrixClient.batch: raises or answers per call, from a script."""

    def __init__(self, *script: B24Error | str) -> None:
        self.script = list(script)
        self.sent: list[list[str]] = []

    def batch(self, commands: Mapping[str, tuple[str, Mapping[str, Any] | None]], *,
              halt: bool = False) -> dict[str, CommandResult | B24Error]:
        """``ok`` answers true to all; ``blockN`` refuses the first N; an error is raised."""
        self.sent.append(list(commands))
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, B24Error):
            raise step
        refused = int(step[5:]) if step.startswith("block") else 0
        return {key: (_blocked(1_000_030.0) if i < refused else CommandResult(True))
                for i, key in enumerate(commands)}


def _blocked(reset_at: float) -> MethodBlocked:
    return MethodBlocked("OPERATION_TIME_LIMIT", "Method is blocked", status=429,
                         method="crm.deal.update", reset_at=reset_at)


def _scripted(*script: B24Error | str) -> tuple[BitrixGateway, ScriptedClient, FakeTime]:
    client = ScriptedClient(*script)
    clock = FakeTime()
    gateway = BitrixGateway(cast(BitrixClient, client), sleep=clock.sleep, now=clock.time,
                            max_wait=120.0, block_retries=2)
    return gateway, client, clock


def test_whole_request_429_waits_then_retries() -> None:
    """A 429 on the request itself: sleep until the reset (+1 s), send the same batch again."""
    gateway, client, clock = _scripted(_blocked(1_000_030.0))
    assert gateway.update_many("deal", {1: {"TITLE": "a"}, 2: {"TITLE": "b"}}) == {1: None,
                                                                                 2: None}
    assert clock.slept == [31.0]
    assert client.sent == [["u1", "u2"], ["u1", "u2"]]


def test_429_waits_are_capped_and_finally_reraised() -> None:
    """Unknown or far resets sleep at most ``max_wait``; after the retries the 429 surfaces."""
    blocked = _blocked(0.0)
    gateway, client, clock = _scripted(blocked, blocked, blocked)
    with pytest.raises(MethodBlocked):
        gateway.update_many("deal", {1: {"TITLE": "a"}})
    assert clock.slept == [120.0, 120.0]
    assert len(client.sent) == 3


def test_items_still_refused_after_the_retries_get_their_429() -> None:
    """Per-command 429s retry only the refused; those still refused at the end report it."""
    gateway, client, clock = _scripted("block1", "block1", "block1")
    outcome = gateway.update_many("deal", {1: {"TITLE": "a"}, 2: {"TITLE": "b"}})
    assert outcome[2] is None and isinstance(outcome[1], MethodBlocked)
    assert client.sent == [["u1", "u2"], ["u1"], ["u1"]]
    assert clock.slept == [31.0, 1.0]  # a reset already past still waits a second


def test_rate_limited_batches_are_reraised_without_waiting() -> None:
    """503 after the client's own retries is the caller's to reschedule: re-raised at once."""
    gateway, _, clock = _scripted(RateLimited("QUERY_LIMIT_EXCEEDED", status=503))
    with pytest.raises(RateLimited):
        gateway.update_many("deal", {1: {"TITLE": "a"}})
    assert clock.slept == []


# -- 503 storms ---------------------------------------------------------------------------------
def test_503_storm_is_ridden_out(emulator: EmulatorServer) -> None:
    """The portal's leaky bucket answers 503 QUERY_LIMIT_EXCEEDED; the client backs off."""
    portal = emulator.portal
    portal.limits.enabled = True
    portal.limits.burst = 2  # the portal takes 2 requests, then one every 0.5 s
    with gateway_at(portal.webhook_url) as gateway:
        times = [gateway.server_time() for _ in range(5)]
    assert len(times) == 5
    assert portal.bucket.rejected >= 1


@pytest.mark.slow
def test_permanent_503_is_rate_limited(emulator: EmulatorServer) -> None:
    """503 on every request: fast-bitrix24 gives up after 11 tries (~17 s) → RateLimited."""
    ids = add_deals(emulator.portal, 2)
    portal = emulator.portal
    portal.limits.enabled = True
    portal.limits.burst = 0  # every request overflows the bucket
    started = time.monotonic()
    with gateway_at(portal.webhook_url) as gateway, pytest.raises(RateLimited) as caught:
        gateway.update_many("deal", {i: {"TITLE": "x"} for i in ids})
    assert (caught.value.code, caught.value.status) == ("QUERY_LIMIT_EXCEEDED", 503)
    assert portal.bucket.rejected == 11
    assert time.monotonic() - started < 60
