"""Fault switches tests flip to prove the service copes: lost, doubled or late events, 5xx."""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import dataclass
from typing import Any


@dataclass
class Rule:
    """A fault rule: what it matches and how many more times it fires (``None`` = always)."""

    kind: str
    pattern: str
    remaining: int | None = None
    value: float = 0.0
    status: int = 0

    def take(self, name: str) -> bool:
        """Whether the rule applies to ``name`` now; consumes one use if so."""
        if not fnmatch.fnmatchcase(name.upper(), self.pattern.upper()):
            return False
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def as_dict(self) -> dict[str, Any]:
        """The rule as the debug API shows it."""
        return {"kind": self.kind, "pattern": self.pattern, "remaining": self.remaining,
                "value": self.value, "status": self.status}


KINDS = ("drop_events", "duplicate_events", "delay_events", "method_error", "operating_cost")


class Faults:
    """All active fault rules of a portal."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()

    def add(self, kind: str, pattern: str = "*", count: int | None = None, value: float = 0.0,
            status: int = 0) -> Rule:
        """Activate a rule; ``count`` limits how many times it fires."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
        rule = Rule(kind, pattern or "*", count, value, status)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self._rules.clear()

    def fire(self, kind: str, name: str) -> Rule | None:
        """The first rule of ``kind`` that fires for ``name``, consuming it."""
        with self._lock:
            for rule in self._rules:
                if rule.kind == kind and rule.take(name):
                    return rule
        return None

    def listing(self) -> list[dict[str, Any]]:
        """Active rules, for the debug API."""
        with self._lock:
            return [r.as_dict() for r in self._rules]
