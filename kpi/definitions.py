"""What each KPI is: ids, Russian titles, units, targets, comparisons, recognition rules, status.

Numbers, chosen once for every formula:

* Money is Decimal, summed exactly; means of money are rounded to kopecks (0.01).
* A ratio (a share of clients, records, weeks, clocks, tasks) is a Decimal fraction in [0, 1]
  rounded half-up to 4 places (0.7143); a zero denominator gives None, never a
  ZeroDivisionError. ``evaluate`` shows fractions as percent (71.43) because targets in the
  configuration are percent (``return_rate = 70``).
* NPS is in points, -100..100, rounded to 2 places.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from kpi.periods import PeriodKind

RATIO_PLACES = Decimal("0.0001")
PERCENT_PLACES = Decimal("0.01")
MONEY_PLACES = Decimal("0.01")
_CTX = Context(prec=28, rounding=ROUND_HALF_UP)  # independent of the thread's context

Status = Literal["ok", "below", "no_data"]


def ratio(part: int | Decimal, whole: int | Decimal) -> Decimal | None:
    """part ÷ whole as a Decimal with 4 places (half-up); None when whole is 0."""
    if not whole:
        return None
    return _CTX.divide(Decimal(part), Decimal(whole)).quantize(RATIO_PLACES, context=_CTX)


def percent(fraction: Decimal | None) -> Decimal | None:
    """A fraction shown as percent with 2 places (0.7143 → 71.43); None stays None."""
    if fraction is None:
        return None
    return (fraction * 100).quantize(PERCENT_PLACES, context=_CTX)


def money_mean(total: Decimal, count: int) -> Decimal | None:
    """total ÷ count rounded to kopecks; None when count is 0."""
    if not count:
        return None
    return _CTX.divide(total, Decimal(count)).quantize(MONEY_PLACES, context=_CTX)


@dataclass(frozen=True, slots=True)
class Share:
    """part of whole (clients, records, weeks, clocks, tasks); ``value`` is the fraction."""

    part: int
    whole: int

    @property
    def value(self) -> Decimal | None:
        """part ÷ whole, 4 places; None when whole is 0."""
        return ratio(self.part, self.whole)


class KpiId(StrEnum):
    """Every KPI of the domain table; the value is the key used in config and storage."""

    SALES_VOLUME = "sales_volume"
    RETURN_RATE = "return_rate"
    NPS = "nps"
    NPS_COVERAGE = "nps_coverage"
    LTV = "ltv"
    NEW_ACTIVE_CLIENTS = "new_active_clients"
    VISITS = "visits"
    CRM_FRESHNESS = "crm_freshness"
    CLIENT_CARD = "client_card"
    NOIS_SHARE = "nois_share"
    TRAININGS = "trainings"
    NEW_PRODUCTS_MAILING = "new_products_mailing"
    MARKETING_IDEAS = "marketing_ideas"
    PROCUREMENT_NEEDS = "procurement_needs"
    RESPONSE_SLA = "response_sla"
    TASK_FORMAT = "task_format"


class Comparison(StrEnum):
    """How a KPI value is judged against its target."""

    AT_LEAST = "at_least"  # ≥ target (a number, or the rep's plan)
    ALL = "all"  # = 100 %: ok only when the value reaches the target (100)
    GROWTH = "growth"  # the target is the previous period's value; ok when not below it


@dataclass(frozen=True, slots=True)
class KpiDefinition:
    """One KPI's presentation and default judgement."""

    id: KpiId
    title: str  # Russian, as reps and the РОП see it
    unit: str  # Russian unit of the shown value
    default_target: Decimal | None  # in the shown unit; None: plan- or growth-type
    comparison: Comparison
    period_kind: PeriodKind  # the calendar period the KPI is measured over
    is_ratio: bool = False  # the formula gives a fraction that is shown as percent


_M, _Q, _H, _Y = PeriodKind.MONTH, PeriodKind.QUARTER, PeriodKind.HALF, PeriodKind.YEAR
_GE, _ALL, _UP = Comparison.AT_LEAST, Comparison.ALL, Comparison.GROWTH
_RATIO, _NUMBER = True, False

# Targets of domain.md's KPI table. nps_coverage reads «опросы минимум 2 раза в год» for every
# active client; response_sla has no number ("as high as possible"), so it must not fall.
_TABLE: tuple[tuple[KpiId, str, str, str | None, Comparison, PeriodKind, bool], ...] = (
    (KpiId.SALES_VOLUME, "Объём продаж", "₽", None, _GE, _M, _NUMBER),
    (KpiId.RETURN_RATE, "Возвратность клиентов (ER)", "%", "70", _GE, _Q, _RATIO),
    (KpiId.NPS, "Индекс удовлетворённости клиентов (NPS)", "п.", "70", _GE, _H, _NUMBER),
    (KpiId.NPS_COVERAGE, "Охват опросами NPS", "%", "100", _GE, _H, _RATIO),
    (KpiId.LTV, "Пожизненная ценность клиента (LTV)", "₽", None, _UP, _Q, _NUMBER),
    (KpiId.NEW_ACTIVE_CLIENTS, "Новые активные клиенты", "клиентов", "15", _GE, _Y, _NUMBER),
    (KpiId.VISITS, "Личные визиты к клиентам", "визитов", "30", _GE, _M, _NUMBER),
    (KpiId.CRM_FRESHNESS, "Актуальность CRM", "%", "95", _GE, _M, _RATIO),
    (KpiId.CLIENT_CARD, "Клиентская карта", "%", "100", _ALL, _Q, _RATIO),
    (KpiId.NOIS_SHARE, "Доля НОИС в закупках клиентов", "%", None, _UP, _Q, _RATIO),
    (KpiId.TRAININGS, "Обучения клиентов", "обучений", "1", _GE, _M, _NUMBER),
    (KpiId.NEW_PRODUCTS_MAILING, "Рассылка новинок", "рассылок", "1", _GE, _M, _NUMBER),
    (KpiId.MARKETING_IDEAS, "Идеи для маркетинга", "идей", "2", _GE, _M, _NUMBER),
    (KpiId.PROCUREMENT_NEEDS, "Потребности клиентов — в закупки", "% недель", "100", _ALL, _M,
     _RATIO),
    (KpiId.RESPONSE_SLA, "Ответ за 2 рабочих часа", "%", None, _UP, _M, _RATIO),
    (KpiId.TASK_FORMAT, "Формат постановки задач", "%", "100", _ALL, _M, _RATIO),
)
DEFINITIONS: Mapping[KpiId, KpiDefinition] = MappingProxyType({
    kpi: KpiDefinition(kpi, title, unit, None if target is None else Decimal(target), cmp, kind,
                       is_ratio)
    for kpi, title, unit, target, cmp, kind, is_ratio in _TABLE
})


def status(value: Decimal | float | None, target: Decimal | float | None,
           comparison: Comparison | str) -> Status:
    """ok / below against the target; no_data when the value or the target is missing."""
    comparison = Comparison(comparison)
    if value is None or target is None:
        return "no_data"
    have, goal = Decimal(str(value)), Decimal(str(target))
    if have.is_nan() or goal.is_nan():
        return "no_data"
    # AT_LEAST, ALL (the value cannot exceed 100 %) and GROWTH (the target is the previous
    # value; equal counts as ok, so a stable full share is not flagged) all read "not below".
    return "ok" if have >= goal else "below"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A KPI value and target in the shown unit, with its status."""

    kpi: KpiId
    value: Decimal | None
    target: Decimal | None
    status: Status


def target_for(kpi: KpiId | str, targets: Mapping[str, float] | None = None) -> Decimal | None:
    """The configured target of a KPI (``KpiSettings.targets``), else its default."""
    kpi = KpiId(kpi)
    if targets is not None and kpi.value in targets:
        return Decimal(str(targets[kpi.value]))
    return DEFINITIONS[kpi].default_target


def evaluate(kpi: KpiId | str, value: Decimal | None, *,
             targets: Mapping[str, float] | None = None, target: Decimal | None = None,
             previous: Decimal | None = None) -> Evaluation:
    """Value and target in the shown unit and the status; ``target`` overrides (a sales plan)."""
    definition = DEFINITIONS[KpiId(kpi)]

    def shown(raw: Decimal | None) -> Decimal | None:
        return percent(raw) if definition.is_ratio else raw

    if definition.comparison is Comparison.GROWTH:
        goal = shown(previous) if target is None else target
    else:
        goal = target if target is not None else target_for(definition.id, targets)
    result = shown(value)
    return Evaluation(definition.id, result, goal, status(result, goal, definition.comparison))


# ---------------------------------------------------------------- recognition rules


def normalize(text: str) -> str:
    """Text for marker matching: case-folded, «ё» as «е», whitespace collapsed."""
    return " ".join(text.casefold().replace("ё", "е").split())


def starts_with_any(text: str, markers: Iterable[str]) -> bool:
    """Whether the text starts with one of the markers (case- and «ё»-insensitive)."""
    norm = normalize(text)
    return any(m and norm.startswith(normalize(m)) for m in markers)


def contains_any(text: str, markers: Iterable[str]) -> bool:
    """Whether the text contains one of the markers (case- and «ё»-insensitive)."""
    norm = normalize(text)
    return any(m and normalize(m) in norm for m in markers)


def _ints(value: Any) -> frozenset[int]:
    items = list(value) if isinstance(value, list | tuple | set | frozenset) else None
    if items is None or any(isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise ValueError(f"expected a list of integers, got {value!r}")
    return frozenset(items)


def _strs(value: Any) -> tuple[str, ...]:
    items = list(value) if isinstance(value, list | tuple | set | frozenset) else None
    if items is None or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(items)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _rule(default: Any, parse: Any) -> Any:
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True, slots=True)
class RecognitionRules:
    """Which CRM records count as what, and the KPI thresholds; all configurable as data."""

    # Visit: a completed activity by the rep, bound to a client (company or contact), that is
    # a meeting (TYPE_ID 1 or provider CRM_MEETING) or a to-do whose subject starts with a
    # marker (reps in the mobile app log visits as to-dos «Визит …»). The marker is read on
    # to-dos, tasks and calendar imports only: a call or an e-mail «Визит …» arranges a
    # visit, it is none.
    visit_type_ids: frozenset[int] = _rule(frozenset({1}), _ints)
    visit_provider_ids: frozenset[str] = _rule(frozenset({"CRM_MEETING"}),
                                               lambda v: frozenset(_strs(v)))
    visit_markers: tuple[str, ...] = _rule(("Визит",), _strs)
    visit_marker_type_ids: frozenset[int] = _rule(frozenset({3, 5, 6}), _ints)
    # Training: a completed activity of these types (all but e-mail; 5 = calendar import)
    # whose subject contains a marker.
    training_type_ids: frozenset[int] = _rule(frozenset({1, 2, 3, 5, 6}), _ints)
    training_markers: tuple[str, ...] = _rule(("Обучение",), _strs)
    # Mailing: an outgoing e-mail (TYPE_ID 4, DIRECTION 2) or a completed task of the rep whose
    # subject/title starts with a marker; one mailing per distinct subject.
    mailing_markers: tuple[str, ...] = _rule(("Рассылка новинок",), _strs)
    # Marketing idea: a task the rep created in a marketing group or titled with a marker.
    marketing_group_ids: frozenset[int] = _rule(frozenset(), _ints)
    idea_markers: tuple[str, ...] = _rule(("Идея:",), _strs)
    # Procurement needs report: a task the rep created in a procurement group or titled with
    # a marker; counted per Monday week.
    procurement_group_ids: frozenset[int] = _rule(frozenset(), _ints)
    procurement_markers: tuple[str, ...] = _rule(("Потребности клиентов",), _strs)
    # CRM freshness.
    stage_max_working_days: int = _rule(10, _int)
    card_max_age_days: int = _rule(92, _int)
    # NPS: promoters score ≥ promoter_min, detractors ≤ detractor_max; coverage asks for
    # answers in ≥ nps_min_waves distinct waves within nps_window_months.
    promoter_min: int = _rule(9, _int)
    detractor_max: int = _rule(6, _int)
    nps_min_waves: int = _rule(2, _int)
    nps_window_months: int = _rule(12, _int)
    # Clients: active = a purchase in the last active_months (also the trailing window of
    # LTV and NOIS share); regular = purchases in ≥ regular_min_months distinct local months
    # of that window; a new client is active once it bought in ≥ new_client_min_months
    # distinct months.
    active_months: int = _rule(12, _int)
    regular_min_months: int = _rule(3, _int)
    new_client_min_months: int = _rule(3, _int)

    def __post_init__(self) -> None:
        if not 0 <= self.detractor_max < self.promoter_min <= 10:
            raise ValueError("NPS needs 0 <= detractor_max < promoter_min <= 10")
        for name in ("stage_max_working_days", "card_max_age_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("nps_min_waves", "nps_window_months", "active_months",
                     "regular_min_months", "new_client_min_months"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RecognitionRules:
        """Rules from a TOML-like table; keys not given keep their defaults."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in data.items():
            if key not in fields:
                raise ValueError(f"unknown recognition rule {key!r}; known: {', '.join(fields)}")
            try:
                values[key] = fields[key].metadata["parse"](raw)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return cls(**values)


DEFAULT_RULES = RecognitionRules()
