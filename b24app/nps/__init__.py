"""NPS answers: the ledger, signed survey links, file import, the CRM field and survey waves.

``NpsSettings`` holds the ``[nps]`` keys with their defaults; ``nps_settings`` reads them
from ``Settings.nps`` when the configuration has that section and falls back to defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

from b24app.config import ConfigError, Settings

DEFAULT_WAVES = ("04-01", "10-01")


def parse_month_day(text: str) -> tuple[int, int]:
    """``"MM-DD"`` → ``(month, day)``; a date that exists every year (no 02-29)."""
    month, sep, day = text.strip().partition("-")
    try:
        if not sep or len(month) != 2 or len(day) != 2:
            raise ValueError(text)
        # 2025 is not a leap year: a wave start must exist in every year.
        parsed = date(2025, int(month), int(day))
    except ValueError:
        raise ConfigError(f"[nps] waves: expected MM-DD, got {text!r}") from None
    return parsed.month, parsed.day


@dataclass(frozen=True)
class NpsSettings:
    """[nps]: where answers come from, when the two yearly waves start, how links live."""

    score_field: str = "UF_CRM_NPS_SCORE"
    date_field: str = "UF_CRM_NPS_DATE"
    waves: tuple[str, ...] = DEFAULT_WAVES
    link_ttl_days: int = 60
    # A wave's invitations go out only this early in it: a service started in March does not
    # survey clients for the wave that began in October, two weeks before the April one.
    invite_within_days: int = 60
    active_months: int = 12

    def __post_init__(self) -> None:
        starts = [parse_month_day(text) for text in self.waves]
        if len(starts) != 2 or starts[0] >= starts[1]:
            raise ConfigError("[nps] waves: expected two start dates in order, e.g. "
                              '["04-01", "10-01"]')
        for name in ("link_ttl_days", "invite_within_days", "active_months"):
            if getattr(self, name) < 1:
                raise ConfigError(f"[nps] {name} must be >= 1")

    @property
    def wave_starts(self) -> tuple[tuple[int, int], ...]:
        """The waves' ``(month, day)`` starts in calendar order."""
        return tuple(parse_month_day(text) for text in self.waves)


def nps_settings(settings: Settings) -> NpsSettings:
    """The ``[nps]`` section of ``settings`` (defaults while config.py has no such section)."""
    section: Any = getattr(settings, "nps", None)
    if section is None:
        return NpsSettings()
    names = [f.name for f in dataclasses.fields(NpsSettings)]
    return NpsSettings(**{name: getattr(section, name) for name in names
                          if hasattr(section, name)})


__all__ = ["DEFAULT_WAVES", "NpsSettings", "nps_settings", "parse_month_day"]
