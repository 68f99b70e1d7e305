"""The weekly KPI digest to the РОП: plain Russian text, a one-line summary first (pure).

The same presentation helpers (number format, status words, the stale-item lines of CRM
freshness) serve the Excel report, so the digest and the file the РОП forwards agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

from kpi.definitions import DEFINITIONS, KpiId
from kpi.periods import DEFAULT_TZ, Period
from kpi.results import RepKpi

MARKS = {"ok": "✓", "below": "✗", "no_data": "—"}
STATUS_TITLES = {"ok": "выполнен", "below": "не выполнен", "no_data": "нет данных"}
STALE_TOP = 5  # stale items listed per rep; the rest are counted
NBSP = "\u00a0"  # thousands separator: a number is never broken across lines
ORDER = {kpi.value: n for n, kpi in enumerate(KpiId)}
# The count units of ``DEFINITIONS`` (genitive plural) agree with their number: the forms
# for 1, for 2–4 and for 5 and more; a fraction takes the second («2,5 визита»).
COUNT_FORMS = {
    "визитов": ("визит", "визита", "визитов"),
    "клиентов": ("клиент", "клиента", "клиентов"),
    "обучений": ("обучение", "обучения", "обучений"),
    "рассылок": ("рассылка", "рассылки", "рассылок"),
    "идей": ("идея", "идеи", "идей"),
}


def plural(count: int, forms: tuple[str, str, str]) -> str:
    """The Russian form for a count: (1 менеджер, 2 менеджера, 5 менеджеров)."""
    tail, tens = count % 10, count % 100
    if tail == 1 and tens != 11:
        return forms[0]
    if 2 <= tail <= 4 and not 12 <= tens <= 14:
        return forms[1]
    return forms[2]


def format_number(value: Decimal) -> str:
    """Russian style, at most two decimals: 1250000 → «1 250 000», 71.43 → «71,43»."""
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        rounded = rounded.quantize(Decimal(1))
    text = f"{abs(rounded):,f}".replace(",", NBSP).replace(".", ",")
    return f"-{text}" if rounded < 0 else text


def kpi_title(kpi: str) -> str:
    """The Russian title of a KPI id (the id itself if unknown)."""
    try:
        return DEFINITIONS[KpiId(kpi)].title
    except ValueError:
        return kpi


def kpi_unit(kpi: str) -> str:
    """The unit a KPI's value and target are shown in."""
    try:
        return DEFINITIONS[KpiId(kpi)].unit
    except ValueError:
        return ""


def unit_for(value: Decimal, unit: str) -> str:
    """The unit in the form its number takes: 1 визит, 2 визита, 5 визитов, 21 визит."""
    forms = COUNT_FORMS.get(unit)
    if forms is None:
        return unit
    rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if rounded != rounded.to_integral_value():
        return forms[1]
    return plural(abs(int(rounded)), forms)


def format_value(value: Decimal | None, unit: str) -> str:
    """«1 250 000 ₽», «71,43 %», «12 визитов», «1 обучение»; «нет данных» for None."""
    if value is None:
        return "нет данных"
    return f"{format_number(value)} {unit_for(value, unit)}".strip()


def stale_items(detail: str) -> list[str]:
    """The stale items («висяки») of a CRM freshness row: one per line of its detail."""
    return [line.strip() for line in detail.splitlines() if line.strip()]


def kpi_line(row: RepKpi) -> str:
    """«✗ Личные визиты к клиентам: 12 визитов (цель 30 визитов)»."""
    unit = kpi_unit(row.kpi)
    target = "цели нет" if row.target is None else f"цель {format_value(row.target, unit)}"
    mark = MARKS.get(row.status, "—")
    return f"{mark} {kpi_title(row.kpi)}: {format_value(row.value, unit)} ({target})"


def _stale_of(rows: Iterable[RepKpi]) -> list[str]:
    found = next((r for r in rows if r.kpi == KpiId.CRM_FRESHNESS.value), None)
    return stale_items(found.detail) if found is not None else []


def rep_block(name: str, rows: Sequence[RepKpi], stale_top: int = STALE_TOP) -> list[str]:
    """One rep's lines: the heading with the count met, a line per KPI, the top stale items."""
    ordered = sorted(rows, key=lambda r: ORDER.get(r.kpi, len(ORDER)))
    met = sum(r.status == "ok" for r in ordered)
    lines = [f"{name} — выполнено {met} из {len(ordered)}"]
    lines += [kpi_line(r) for r in ordered]
    stale = _stale_of(ordered)
    if stale:
        lines.append(f"Висяки ({len(stale)}):")
        lines += [f"• {item}" for item in stale[:stale_top]]
        if len(stale) > stale_top:
            rest = len(stale) - stale_top
            lines.append(f"…и ещё {rest} {plural(rest, ('висяк', 'висяка', 'висяков'))}")
    return lines


def summary(period: Period, reps: int, met: int, total: int, stale: int) -> str:
    """The one-line summary (the outbox shows it when it batches messages)."""
    of = "показателя" if total % 10 == 1 and total % 100 != 11 else "показателей"
    people = plural(reps, ("менеджер", "менеджера", "менеджеров"))
    return (f"KPI отдела продаж за {period.title}: {reps} {people}, выполнено {met} из {total} "
            f"{of}, висяков: {stale}")


def build_digest(rows: Iterable[RepKpi], names: Mapping[int, str], period: Period | str, *,
                 stale_top: int = STALE_TOP, tz: str = DEFAULT_TZ) -> str:
    """The digest of one period: the summary line, then a block per rep (by name)."""
    period = Period.parse(period, tz) if isinstance(period, str) else period
    by_rep: dict[int, list[RepKpi]] = defaultdict(list)
    for row in rows:
        if row.period == period.label:
            by_rep[row.rep_id].append(row)
    if not by_rep:
        return f"KPI отдела продаж за {period.title}: показатели ещё не рассчитаны"

    def name(rep_id: int) -> str:
        return names.get(rep_id) or f"сотрудник #{rep_id}"

    reps = sorted(by_rep, key=lambda r: (name(r).casefold(), r))
    every = [r for rep in reps for r in by_rep[rep]]
    stale = sum(len(_stale_of(by_rep[rep])) for rep in reps)
    lines = [summary(period, len(reps), sum(r.status == "ok" for r in every), len(every), stale)]
    for rep in reps:
        lines += ["", *rep_block(name(rep), by_rep[rep], stale_top)]
    return "\n".join(lines)
