"""The method registry and the per-call context every REST method receives."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from b24emu.errors import ApiError

if TYPE_CHECKING:
    from b24emu.portal import Portal


class Params(Mapping[str, Any]):
    """Request parameters with case-insensitive top-level keys, as Bitrix24 reads them."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self._upper = {str(k).upper(): k for k in self._data}

    def __getitem__(self, key: str) -> Any:
        if key in self._data:
            return self._data[key]
        return self._data[self._upper[key.upper()]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data or (isinstance(key, str) and key.upper() in self._upper)

    def raw(self) -> dict[str, Any]:
        """The underlying dict, keys as sent."""
        return self._data

    def first(self, *names: str, default: Any = None) -> Any:
        """The value of the first present name (case-insensitive)."""
        for name in names:
            if name in self:
                return self[name]
        return default

    def int(self, *names: str, required: bool = False, error: ApiError | None = None) -> int:
        """An integer parameter; ``error`` (or a generic one) when required and absent/invalid."""
        value = self.first(*names)
        try:
            return int(str(value).strip())
        except (TypeError, ValueError):
            if required:
                raise error or ApiError(400, "ERROR_ARGUMENT",
                                        f"{names[0]} is not defined") from None
            return 0

    def mapping(self, *names: str) -> dict[str, Any]:
        """A nested object parameter (``fields``, ``filter``...), empty when absent."""
        value = self.first(*names)
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, list):
            return {str(i): v for i, v in enumerate(value)}
        return {}


@dataclass
class Listed:
    """A list result: the ``result`` value plus the envelope's ``total`` and ``next``."""

    result: Any
    total: int
    next: int | None


@dataclass
class Call:
    """Who is calling which method with what, at what portal time."""

    portal: Portal
    method: str
    params: Params
    user_id: int
    now: datetime
    client_id: str | None = None
    webhook_id: int | None = None
    automation: bool = False
    scopes: frozenset[str] = field(default_factory=frozenset)
    in_batch: bool = False

    @property
    def actor_key(self) -> str:
        """The budget key of the caller: an app or a webhook, as Bitrix24 counts limits."""
        if self.client_id:
            return f"app:{self.client_id}"
        if self.webhook_id is not None:
            return f"hook:{self.webhook_id}"
        return "portal"


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Method:
    """A registered REST method."""

    name: str
    fn: Handler
    scope: str | None
    app_only: bool = False
    admin_only: bool = False


REGISTRY: dict[str, Method] = {}

# Scope aliases: any of these satisfies the method's scope.
SCOPE_ALIASES: dict[str, frozenset[str]] = {
    "user": frozenset({"user", "user_brief", "user_basic"}),
    "sonet_group": frozenset({"sonet_group", "sonet", "socialnetwork"}),
    "task": frozenset({"task", "tasks"}),
}


def method(name: str, scope: str | None = None, *, app_only: bool = False,
           admin_only: bool = False) -> Callable[[Handler], Handler]:
    """Register ``fn`` as REST method ``name`` (names are case-insensitive, as on Bitrix24)."""

    def deco(fn: Handler) -> Handler:
        REGISTRY[name.lower()] = Method(name, fn, scope, app_only, admin_only)
        return fn

    return deco


def has_scope(granted: frozenset[str], needed: str | None) -> bool:
    """Whether the granted scopes allow a method of scope ``needed``."""
    if needed is None:
        return True
    return bool(granted & SCOPE_ALIASES.get(needed, frozenset({needed})))
