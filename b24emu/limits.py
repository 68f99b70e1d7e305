"""Bitrix24 cloud limits: the request leaky bucket and the per-method operating-time budget."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from b24emu.errors import ApiError


@dataclass
class LimitSettings:
    """Tunable limits; ``enabled=False`` turns both off for fast tests."""

    enabled: bool = True
    burst: int = 50
    rate: float = 2.0
    operating_limit: float = 480.0
    operating_window: int = 600
    operating_multiplier: float = 1.0


class LeakyBucket:
    """+1 per HTTP request, drains ``rate`` per second, 503 above ``burst``."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._level = 0.0
        self._stamp = time.monotonic()
        self._lock = threading.Lock()
        self.rejected = 0

    def hit(self) -> None:
        """Count one request or raise ``QUERY_LIMIT_EXCEEDED``."""
        if not self.settings.enabled:
            return
        with self._lock:
            now = time.monotonic()
            self._level = max(0.0, self._level - (now - self._stamp) * self.settings.rate)
            self._stamp = now
            if self._level + 1 > self.settings.burst:
                self.rejected += 1
                raise ApiError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
            self._level += 1

    def reset(self) -> None:
        """Empty the bucket."""
        with self._lock:
            self._level = 0.0


class OperatingBudget:
    """Execution seconds per method and caller, summed over ten one-minute buckets."""

    def __init__(self, settings: LimitSettings) -> None:
        self.settings = settings
        self._buckets: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        self._lock = threading.Lock()

    def _window(self, key: tuple[str, str], now: float) -> dict[int, float]:
        minute_now = int(now // 60)
        span = self.settings.operating_window // 60
        buckets = self._buckets[key]
        for minute in [m for m in buckets if m <= minute_now - span]:
            del buckets[minute]
        return buckets

    def used(self, method: str, actor: str, now: float) -> tuple[float, int]:
        """Seconds used in the window and the unix time the oldest bucket expires."""
        with self._lock:
            buckets = self._window((method, actor), now)
            total = sum(buckets.values())
            oldest = min(buckets) if buckets else int(now // 60)
            reset = (oldest + self.settings.operating_window // 60) * 60
            return total, reset

    def check(self, method: str, actor: str, now: float) -> None:
        """Raise ``OPERATION_TIME_LIMIT`` (429) while the method's budget is spent."""
        if not self.settings.enabled:
            return
        total, reset = self.used(method, actor, now)
        if total >= self.settings.operating_limit:
            raise ApiError(429, "OPERATION_TIME_LIMIT",
                           f"Method is blocked due to operation time limit. Reset at {reset}",
                           operating_reset_at=reset)

    def charge(self, method: str, actor: str, now: float, seconds: float) -> float:
        """Add execution time; returns the seconds used in the window."""
        cost = seconds * self.settings.operating_multiplier
        with self._lock:
            buckets = self._window((method, actor), now)
            minute = int(now // 60)
            buckets[minute] = buckets.get(minute, 0.0) + cost
            return math.fsum(buckets.values())

    def reset(self) -> None:
        """Forget all usage."""
        with self._lock:
            self._buckets.clear()
