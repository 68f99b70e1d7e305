"""The KPI table of every rep, as the demo prints it (Russian, fixed-width)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from kpi.definitions import DEFINITIONS, KpiId
from kpi.digest import MARKS, format_number
from kpi.results import RepKpi

WIDTH = 14
TITLE = 36


def _cell(row: RepKpi | None, unit: str) -> str:
    if row is None or row.value is None:
        return "—"
    value = row.value
    if unit == "₽":
        # Thousands of roubles keep the table narrow; the cards and the Excel file are exact.
        shown = f"{format_number(Decimal(round(value / 1000)))} т.₽"
    elif unit in ("%", "% недель"):
        shown = f"{format_number(round(value, 1))} %"
    elif unit == "п.":
        shown = f"{format_number(round(value, 1))} п."
    else:
        shown = format_number(value)
    return f"{shown} {MARKS.get(row.status, '')}".strip()


def kpi_table(rows: Sequence[RepKpi], names: Mapping[int, str]) -> list[str]:
    """KPIs down, reps across; ✓ met, ✗ below target, — no data."""
    reps = sorted({r.rep_id for r in rows}, key=lambda rid: names.get(rid, str(rid)))
    by_key = {(r.rep_id, r.kpi): r for r in rows}
    header = f"{'Показатель (цель)':<{TITLE}}" + "".join(
        f"{names.get(rid, str(rid)).split()[-1][:WIDTH - 1]:>{WIDTH}}" for rid in reps)
    lines = [header, "─" * len(header)]
    for kpi in KpiId:
        definition = DEFINITIONS[kpi]
        goal = _target(kpi, rows)
        target = "" if goal is None else f" ({format_number(goal)})"
        title = _short(definition.title, TITLE - 1 - len(target)) + target
        cells = "".join(f"{_cell(by_key.get((rid, kpi.value)), definition.unit):>{WIDTH}}"
                        for rid in reps)
        lines.append(f"{title:<{TITLE}}{cells}")
    return lines


def _target(kpi: KpiId, rows: Sequence[RepKpi]) -> Decimal | None:
    """The one target all reps are judged against (as configured), if the KPI has one."""
    # Plans and growth targets differ per rep: those show in no header.
    default = DEFINITIONS[kpi].default_target
    if default is None:
        return None
    targets = {r.target for r in rows if r.kpi == kpi.value and r.target is not None}
    if not targets:
        return default
    return targets.pop() if len(targets) == 1 else None


def _short(text: str, width: int) -> str:
    """Cut a title to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"
