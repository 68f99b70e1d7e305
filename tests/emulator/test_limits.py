"""Cloud limits: the leaky bucket (503) and the per-method operating budget (429) (4.5)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.limits import LeakyBucket, LimitSettings
from tests.emulator.helpers import hook, oauth, quick_install

BURST = 5
RATE = 2.0  # the cloud's drain rate; one slot every 0.5 s


@pytest.fixture
def small_bucket() -> Iterator[EmulatorServer]:
    """A portal with a bucket of 5 that drains 2 per second (the cloud has 50 and 2/s)."""
    portal = Portal(PortalConfig(limits=LimitSettings(burst=BURST, rate=RATE)))
    portal.users.insert({"NAME": "Admin", "ACTIVE": True, "IS_ADMIN": True,
                         "UF_DEPARTMENT": [1], "USER_TYPE": "employee"})
    server = EmulatorServer(portal).start()
    try:
        yield server
    finally:
        server.stop()


def test_cloud_defaults() -> None:
    """The defaults are the cloud's: X=50, Y=2/s, 480 s per 10 min (limits.md)."""
    settings = LimitSettings()
    assert (settings.burst, settings.rate) == (50, 2.0)
    assert (settings.operating_limit, settings.operating_window) == (480.0, 600)


def test_burst_then_503_then_drain(small_bucket: EmulatorServer) -> None:
    """``burst`` requests pass, the next is 503 ``QUERY_LIMIT_EXCEEDED``; it drains over time."""
    statuses = [hook(small_bucket, "server.time").status_code for _ in range(BURST)]
    assert statuses == [200] * BURST
    refused = hook(small_bucket, "server.time")
    assert refused.status_code == 503
    assert refused.json() == {"error": "QUERY_LIMIT_EXCEEDED",
                              "error_description": "Too many requests"}
    time.sleep(1.2 / RATE)  # one slot drains, not two
    assert hook(small_bucket, "server.time").status_code == 200
    assert hook(small_bucket, "server.time").status_code == 503
    stats = hook(small_bucket, "b24emu.stats").json()["result"]
    assert stats["rejected_503"] == 2


def test_a_batch_counts_as_one_request(small_bucket: EmulatorServer) -> None:
    """A batch of many commands costs one slot of the bucket (4.4)."""
    cmd = {f"c{i}": "server.time" for i in range(20)}
    for _ in range(BURST):
        resp = hook(small_bucket, "batch", {"cmd": cmd})
        assert resp.status_code == 200
        assert len(resp.json()["result"]["result"]) == 20
    assert hook(small_bucket, "batch", {"cmd": cmd}).status_code == 503


def test_harness_calls_do_not_count(small_bucket: EmulatorServer) -> None:
    """``b24emu.*`` calls are not Bitrix24 traffic and leave the bucket alone."""
    for _ in range(3 * BURST):
        assert hook(small_bucket, "b24emu.stats").status_code == 200
    assert [hook(small_bucket, "profile").status_code for _ in range(BURST)] == [200] * BURST


def test_errors_before_the_bucket_are_not_counted(small_bucket: EmulatorServer) -> None:
    """A request refused for its credentials does not reach the bucket."""
    bad = f"{small_bucket.url}/rest/1/wrong/"
    for _ in range(2 * BURST):
        assert hook(small_bucket, "profile", url=bad).status_code == 401
    assert hook(small_bucket, "profile").status_code == 200


def test_limits_off_switch(small_bucket: EmulatorServer) -> None:
    """``b24emu.limits.set enabled=0`` turns both limits off; ``enabled=1`` back on."""
    result = hook(small_bucket, "b24emu.limits.set", {"enabled": 0}).json()["result"]
    assert result["enabled"] is False
    assert [hook(small_bucket, "profile").status_code for _ in range(3 * BURST)] == [200] * 15
    hook(small_bucket, "b24emu.limits.set", {"enabled": 1, "burst": 2})
    assert [hook(small_bucket, "profile").status_code for _ in range(3)] == [200, 200, 503]


def test_leaky_bucket_unit() -> None:
    """The bucket level drains continuously at ``rate`` per second."""
    bucket = LeakyBucket(LimitSettings(burst=2, rate=20.0))
    bucket.hit()
    bucket.hit()
    with pytest.raises(Exception, match="QUERY_LIMIT_EXCEEDED"):
        bucket.hit()
    time.sleep(0.06)
    bucket.hit()
    assert bucket.rejected == 1
    bucket.reset()
    bucket.hit()
    bucket.hit()


def _spend(emulator: EmulatorServer, method: str, seconds: float) -> None:
    hook(emulator, "b24emu.faults.add",
         {"kind": "operating_cost", "pattern": method, "count": 1, "value": seconds})


def test_operating_budget_per_method(emulator: EmulatorServer) -> None:
    """Over the budget a method answers 429 ``OPERATION_TIME_LIMIT`` until its reset (4.5)."""
    portal = emulator.portal
    portal.limits.enabled = True
    portal.limits.burst = 10_000
    portal.limits.operating_limit = 10.0
    _spend(emulator, "user.current", 11)
    first = hook(emulator, "user.current").json()
    assert first["time"]["operating"] >= 11
    reset_at = first["time"]["operating_reset_at"]
    blocked = hook(emulator, "user.current")
    assert blocked.status_code == 429
    body = blocked.json()
    assert body["error"] == "OPERATION_TIME_LIMIT"
    assert body["operating_reset_at"] == reset_at
    assert reset_at > portal.clock.timestamp()
    # Other methods keep their own budgets.
    assert hook(emulator, "server.time").status_code == 200
    # Inside a batch the blocked sub-call fails alone, the batch itself is 200.
    batch = hook(emulator, "batch", {"cmd": {"me": "user.current", "t": "server.time"}})
    assert batch.status_code == 200
    assert batch.json()["result"]["result_error"]["me"]["error"] == "OPERATION_TIME_LIMIT"
    # The block lifts once the oldest minute bucket leaves the 10-minute window.
    portal.clock.advance(reset_at - portal.clock.timestamp() + 1)
    assert hook(emulator, "user.current").status_code == 200


def test_operating_budget_is_per_app_or_webhook(emulator: EmulatorServer) -> None:
    """A webhook that spent its budget does not block the app (per app/webhook, 4.5)."""
    token, _ = quick_install(emulator)
    emulator.portal.limits.enabled = True
    emulator.portal.limits.burst = 10_000
    emulator.portal.limits.operating_limit = 5.0
    _spend(emulator, "profile", 6)
    hook(emulator, "profile")
    assert hook(emulator, "profile").status_code == 429
    assert oauth(emulator, token, "profile").status_code == 200


def test_batch_sub_calls_are_charged_to_their_methods(emulator: EmulatorServer) -> None:
    """Sub-calls count toward their own method's budget; the outer batch is not charged."""
    emulator.portal.limits.enabled = True
    emulator.portal.limits.burst = 10_000
    emulator.portal.limits.operating_limit = 5.0
    _spend(emulator, "profile", 6)
    hook(emulator, "batch", {"cmd": {"p": "profile"}})
    assert hook(emulator, "profile").status_code == 429
    assert hook(emulator, "batch", {"cmd": {"t": "server.time"}}).status_code == 200


def test_operating_multiplier(emulator: EmulatorServer) -> None:
    """``operating_multiplier`` scales measured time so tests can reach the limit quickly."""
    emulator.portal.limits.enabled = True
    emulator.portal.limits.burst = 10_000
    hook(emulator, "b24emu.limits.set", {"enabled": 1, "operating_multiplier": 1e9,
                                          "operating_limit": 1})
    hook(emulator, "server.time")
    assert hook(emulator, "server.time").status_code == 429
