"""KPI definitions: one per KPI, targets, status, evaluation, numbers, recognition rules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from b24app.config import DEFAULT_KPI_TARGETS
from kpi.definitions import (
    DEFAULT_RULES,
    DEFINITIONS,
    Comparison,
    KpiId,
    RecognitionRules,
    Share,
    contains_any,
    evaluate,
    money_mean,
    percent,
    ratio,
    starts_with_any,
    status,
    target_for,
)
from kpi.periods import PeriodKind

D = Decimal


def test_every_kpi_has_a_russian_definition() -> None:
    assert set(DEFINITIONS) == set(KpiId)
    assert len(KpiId) == 16
    for kpi, definition in DEFINITIONS.items():
        assert definition.id is kpi
        assert any("а" <= ch <= "я" for ch in definition.title.lower())
        assert definition.unit


def test_defaults_agree_with_the_config_targets() -> None:
    # KpiSettings.targets (b24app.config) and the definitions must tell the same story.
    for name, number in DEFAULT_KPI_TARGETS.items():
        assert DEFINITIONS[KpiId(name)].default_target == D(str(number)), name


@pytest.mark.parametrize(("kpi", "comparison", "kind", "target"), [
    (KpiId.SALES_VOLUME, Comparison.AT_LEAST, PeriodKind.MONTH, None),
    (KpiId.RETURN_RATE, Comparison.AT_LEAST, PeriodKind.QUARTER, D(70)),
    (KpiId.NPS, Comparison.AT_LEAST, PeriodKind.HALF, D(70)),
    (KpiId.LTV, Comparison.GROWTH, PeriodKind.QUARTER, None),
    (KpiId.NEW_ACTIVE_CLIENTS, Comparison.AT_LEAST, PeriodKind.YEAR, D(15)),
    (KpiId.VISITS, Comparison.AT_LEAST, PeriodKind.MONTH, D(30)),
    (KpiId.CRM_FRESHNESS, Comparison.AT_LEAST, PeriodKind.MONTH, D(95)),
    (KpiId.CLIENT_CARD, Comparison.ALL, PeriodKind.QUARTER, D(100)),
    (KpiId.NOIS_SHARE, Comparison.GROWTH, PeriodKind.QUARTER, None),
    (KpiId.PROCUREMENT_NEEDS, Comparison.ALL, PeriodKind.MONTH, D(100)),
    (KpiId.TASK_FORMAT, Comparison.ALL, PeriodKind.MONTH, D(100)),
])
def test_table_of_the_domain(kpi: KpiId, comparison: Comparison, kind: PeriodKind,
                             target: Decimal | None) -> None:
    definition = DEFINITIONS[kpi]
    assert (definition.comparison, definition.period_kind, definition.default_target) == (
        comparison, kind, target)


@pytest.mark.parametrize(("value", "target", "comparison", "expected"), [
    (D("71.43"), D(70), "at_least", "ok"),
    (D(70), D(70), "at_least", "ok"),
    (D("69.99"), D(70), "at_least", "below"),
    (None, D(70), "at_least", "no_data"),  # nothing to measure (e.g. no clients in P−1)
    (D(5), None, "at_least", "no_data"),  # no plan configured
    (D(100), D(100), "all", "ok"),
    (D("99.99"), D(100), "all", "below"),
    (D(12), D(10), "growth", "ok"),
    (D(10), D(10), "growth", "ok"),  # stable is not a decline
    (D(9), D(10), "growth", "below"),
    (D(9), None, "growth", "no_data"),  # no previous value
    (0.5, 0.25, Comparison.AT_LEAST, "ok"),  # floats work too
    (float("nan"), 1, "at_least", "no_data"),
])
def test_status(value: Any, target: Any, comparison: str, expected: str) -> None:
    assert status(value, target, comparison) == expected


@pytest.mark.parametrize(("kpi", "raw", "kwargs", "expected"), [
    ("return_rate", D("0.7143"), {}, (D("71.43"), D(70), "ok")),
    ("return_rate", D("0.6"), {}, (D("60.00"), D(70), "below")),
    ("return_rate", None, {}, (None, D(70), "no_data")),
    ("return_rate", D("0.6"), {"targets": {"return_rate": 55.0}}, (D("60.00"), D(55), "ok")),
    ("visits", D(31), {}, (D(31), D(30), "ok")),
    ("nps", D("72.5"), {}, (D("72.5"), D(70), "ok")),
    ("sales_volume", D(900), {"target": D(1000)}, (D(900), D(1000), "below")),
    ("sales_volume", D(900), {}, (D(900), None, "no_data")),
    ("nois_share", D("0.31"), {"previous": D("0.3")}, (D("31.00"), D("30.00"), "ok")),
    ("ltv", D(100), {"previous": D(120)}, (D(100), D(120), "below")),
    ("ltv", D(100), {}, (D(100), None, "no_data")),
    ("task_format", D(1), {}, (D("100.00"), D(100), "ok")),
])
def test_evaluate(kpi: str, raw: Decimal | None, kwargs: dict[str, Any],
                  expected: tuple[Decimal | None, Decimal | None, str]) -> None:
    result = evaluate(kpi, raw, **kwargs)
    assert (result.value, result.target, result.status) == expected


def test_target_for_prefers_the_configuration() -> None:
    assert target_for("visits", {"visits": 25.0}) == D(25)
    assert target_for(KpiId.VISITS) == D(30)
    assert target_for("response_sla") is None


@pytest.mark.parametrize(("part", "whole", "expected"), [
    (5, 7, D("0.7143")),
    (2, 3, D("0.6667")),  # half-up
    (1, 8, D("0.1250")),
    (0, 3, D("0.0000")),
    (3, 0, None),  # a zero denominator is "no data", never ZeroDivisionError
    (0, 0, None),
    (D("150000.00"), D("1000000"), D("0.1500")),
])
def test_ratio(part: int | Decimal, whole: int | Decimal, expected: Decimal | None) -> None:
    assert ratio(part, whole) == expected
    if isinstance(part, int) and isinstance(whole, int):
        assert Share(part, whole).value == expected


def test_percent_and_money_mean() -> None:
    assert percent(D("0.7143")) == D("71.43")
    assert percent(None) is None
    assert money_mean(D("100.00"), 3) == D("33.33")
    assert money_mean(D("0.005"), 1) == D("0.01")
    assert money_mean(D(5), 0) is None


# ---- recognition rules ----

@pytest.mark.parametrize(("text", "markers", "starts", "contains"), [
    ("Обучение монтажу Blum", ("Обучение",), True, True),
    ("обучение монтажу", ("Обучение",), True, True),
    ("Семинар: обучение по AVENTOS", ("Обучение",), False, True),
    ("  ВИЗИТ к клиенту", ("Визит",), True, True),
    ("Рассылка  новинок: ноябрь", ("Рассылка новинок",), True, True),  # spaces collapse
    ("Идея: пост про LEGRABOX", ("Идея:",), True, True),
    ("Идея пост", ("Идея:",), False, False),
    ("Ёлочные новинки", ("елочные",), True, True),  # ё = е
    ("Встреча", (), False, False),
    ("Встреча", ("",), False, False),  # an empty marker never matches everything
])
def test_marker_matching(text: str, markers: tuple[str, ...], starts: bool,
                         contains: bool) -> None:
    assert starts_with_any(text, markers) is starts
    assert contains_any(text, markers) is contains


def test_rules_from_mapping() -> None:
    rules = RecognitionRules.from_mapping({
        "marketing_group_ids": [12, 14], "training_markers": ["Обучение", "Семинар"],
        "stage_max_working_days": 7, "visit_provider_ids": ["CRM_MEETING", "CRM_TODO"],
        "visit_marker_type_ids": [6],
    })
    assert rules.visit_marker_type_ids == frozenset({6})
    assert DEFAULT_RULES.visit_marker_type_ids == frozenset({3, 5, 6})  # no calls, no e-mails
    assert rules.marketing_group_ids == frozenset({12, 14})
    assert rules.training_markers == ("Обучение", "Семинар")
    assert rules.stage_max_working_days == 7
    assert rules.visit_provider_ids == frozenset({"CRM_MEETING", "CRM_TODO"})
    assert rules.card_max_age_days == DEFAULT_RULES.card_max_age_days == 92
    assert RecognitionRules.from_mapping({}) == DEFAULT_RULES
    hash(rules)  # frozen and hashable: usable as a cache key


@pytest.mark.parametrize(("data", "message"), [
    ({"visit_markrs": ["Визит"]}, "unknown recognition rule"),
    ({"marketing_group_ids": "12"}, "marketing_group_ids: expected a list of integers"),
    ({"marketing_group_ids": [True]}, "expected a list of integers"),
    ({"idea_markers": "Идея:"}, "idea_markers: expected a list of strings"),
    ({"card_max_age_days": "92"}, "expected an integer"),
    ({"promoter_min": 6}, "detractor_max < promoter_min"),
    ({"active_months": 0}, "active_months must be >= 1"),
    ({"stage_max_working_days": -1}, "must be >= 0"),
])
def test_rules_reject_bad_configuration(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecognitionRules.from_mapping(data)
