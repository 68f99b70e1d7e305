"""A portal clock that tests can set, freeze and advance."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Real time by default; ``set`` moves it to an instant, optionally frozen there."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen: float | None = None

    def timestamp(self) -> float:
        """Unix seconds on the portal clock."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return time.time() + self._offset

    def now(self) -> datetime:
        """The current instant as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), tz=UTC)

    def set(self, instant: datetime, *, frozen: bool = False) -> None:
        """Jump to ``instant``; time flows on from there unless ``frozen``."""
        ts = instant.timestamp()
        with self._lock:
            if frozen:
                self._frozen = ts
            else:
                self._frozen = None
                self._offset = ts - time.time()

    def advance(self, seconds: float) -> None:
        """Move the clock forward (works frozen or flowing)."""
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
            else:
                self._offset += seconds

    def advance_to(self, instant: datetime) -> None:
        """Advance to ``instant`` if it lies ahead; never goes backwards."""
        delta = (instant - self.now()) / timedelta(seconds=1)
        if delta > 0:
            self.advance(delta)

    def snapshot(self) -> tuple[float, float | None]:
        """The offset from real time and the frozen instant (what a restart must keep)."""
        with self._lock:
            return self._offset, self._frozen

    def restore(self, offset: float, frozen: float | None) -> None:
        """Resume a snapshot: the same shift from real time, or the same frozen instant."""
        with self._lock:
            self._offset, self._frozen = offset, frozen
