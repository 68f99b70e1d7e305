"""Client-base KPIs as tables: NPS and coverage, CRM freshness with «висяки», client card."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from kpi.calendar import WorkingCalendar
from kpi.definitions import RecognitionRules
from kpi.facts import NpsAnswerFact, OpenDeal, TaskFact
from kpi.formulas import (
    StaleItem,
    StaleKind,
    client_card,
    crm_freshness,
    latest_wave,
    nps,
    nps_coverage,
)
from kpi.formulas_crm import _plural
from tests.kpi.kpifactories import ACME, BETA, GAMMA, A, B, answer, buy, card, month, nsk, quarter

D = Decimal
CAL = WorkingCalendar()
H2 = "2026-H2"


# ---- NPS ----

def scores(*values: int, rep: int = A, wave: str = H2) -> list[NpsAnswerFact]:
    return [answer(ACME, rep, v, wave, nsk(2026, 10, 5)) for v in values]


@pytest.mark.parametrize(("answers", "rep", "counts", "value"), [
    pytest.param([], A, (0, 0, 0), None, id="no answers"),
    pytest.param(scores(10, 9, 8, 7, 6, 0), A, (2, 2, 2), D("0.00"), id="boundaries 9 and 6"),
    pytest.param(scores(10, 10, 10, 6), A, (3, 0, 1), D("50.00"), id="50"),
    pytest.param(scores(10, 9), A, (2, 0, 0), D("100.00"), id="all promoters"),
    pytest.param(scores(0, 6), A, (0, 0, 2), D("-100.00"), id="all detractors"),
    pytest.param(scores(10, 8, 8), A, (1, 2, 0), D("33.33"), id="rounded"),
    pytest.param(scores(10, 10, 10, 10, 10, 10, 10, 0, 8, 7), A, (7, 2, 1), D("60.00"),
                 id="below 70"),
    pytest.param(scores(10) + scores(0, wave="2026-H1"), A, (1, 0, 0), D("100.00"),
                 id="other waves ignored"),
    pytest.param(scores(10) + scores(0, rep=B), A, (1, 0, 0), D("100.00"), id="two reps: A"),
    pytest.param(scores(10) + scores(0, rep=B), B, (0, 0, 1), D("-100.00"), id="two reps: B"),
    pytest.param(scores(10) + scores(0, rep=B), None, (1, 0, 1), D("0.00"), id="team"),
    pytest.param([answer(ACME, A, 3, H2, nsk(2026, 10, 1), contact=7),
                  answer(ACME, A, 10, H2, nsk(2026, 10, 9), contact=7),
                  answer(ACME, A, 9, H2, nsk(2026, 10, 2), contact=8)], A, (2, 0, 0),
                 D("100.00"), id="one answer per contact and wave: the latest"),
])
def test_nps(answers: list[NpsAnswerFact], rep: int | None, counts: tuple[int, int, int],
             value: Decimal | None) -> None:
    result = nps(answers, rep, H2)
    assert (result.promoters, result.passives, result.detractors) == counts
    assert result.answers == sum(counts)
    assert result.value == value


def test_nps_thresholds_are_rules() -> None:
    rules = RecognitionRules(promoter_min=8, detractor_max=5)
    result = nps(scores(8, 6, 5), A, H2, rules=rules)
    assert (result.promoters, result.passives, result.detractors) == (1, 1, 1)


@pytest.mark.parametrize("bad", [-1, 11, True, 9.5])
def test_nps_answer_validates_the_score(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"0\.\.10"):
        answer(ACME, A, bad, H2, nsk(2026, 10, 5))


def test_latest_wave() -> None:
    answers = scores(9, wave="2025-H2") + scores(9, wave="2026-H1") + scores(9, wave="2027-H1")
    assert latest_wave(answers) == "2027-H1"
    assert latest_wave(answers, up_to=H2) == "2026-H1"  # H2 has no answers yet
    assert latest_wave([], up_to=H2) is None


# ---- NPS coverage ----

def test_nps_coverage() -> None:
    purchases = [buy(c, A, 1, nsk(2026, 6, 1)) for c in (ACME, BETA, GAMMA)]
    purchases.append(buy("company:9", B, 1, nsk(2026, 6, 1)))
    answers = [
        answer(ACME, A, 9, "2026-H1", nsk(2026, 3, 10)),
        answer(ACME, A, 3, H2, nsk(2026, 10, 10)),  # covered: two waves
        answer(BETA, A, 9, H2, nsk(2026, 10, 10), contact=1),
        answer(BETA, A, 9, H2, nsk(2026, 10, 11), contact=2),  # two contacts, one wave
        answer(GAMMA, A, 9, "2025-H2", nsk(2025, 11, 30, 23, 30)),  # before the window
        answer(GAMMA, A, 9, H2, nsk(2026, 10, 10)),
    ]
    result = nps_coverage(answers, purchases, A, month(2026, 11))
    assert (result.part, result.whole, result.value) == (1, 3, D("0.3333"))
    answers[4] = answer(GAMMA, A, 9, "2025-H2", nsk(2025, 12, 1, 0, 10))  # inside it
    assert nps_coverage(answers, purchases, A, month(2026, 11)).part == 2
    assert nps_coverage(answers, [], A, month(2026, 11)).value is None  # no active clients
    assert nps_coverage([], purchases, A, month(2026, 11)).value == D(0)  # no answers
    assert nps_coverage(answers, purchases, B, month(2026, 11)).value == D(0)


# ---- CRM freshness ----

NOW = nsk(2026, 11, 20, 12, 0)  # Friday; 4 November was a holiday


def deal(since: datetime, planned: bool = True, rep: int = A, title: str = "Кухни Сибири",
         deal_id: int = 1) -> OpenDeal:
    return OpenDeal(deal_id, title, rep, since, planned)


@pytest.mark.parametrize(("since", "now", "reasons"), [
    (nsk(2026, 11, 20, 9), NOW, ()),  # moved today: age 0
    (nsk(2026, 11, 6), NOW, ()),  # 10 working days: 9-13, 16-20 November
    (nsk(2026, 11, 5), NOW, ("стадия не менялась 11 рабочих дней (допустимо до 10)",)),
    (nsk(2026, 11, 2), nsk(2026, 11, 17), ()),  # 10, because 4 November is a holiday
    (nsk(2026, 10, 30), nsk(2026, 11, 17),
     ("стадия не менялась 11 рабочих дней (допустимо до 10)",)),
    (nsk(2026, 11, 5, 23, 30), NOW, ("стадия не менялась 11 рабочих дней (допустимо до 10)",)),
    (nsk(2026, 11, 6, 0, 10), NOW, ()),  # local dates decide
    (nsk(2026, 9, 1), NOW, ("стадия не менялась 57 рабочих дней (допустимо до 10)",)),
])
def test_deal_stage_age_in_working_days(since: datetime, now: datetime,
                                        reasons: tuple[str, ...]) -> None:
    result = crm_freshness([deal(since)], [], [], A, now, calendar=CAL)
    assert [s.reasons for s in result.stale] == ([reasons] if reasons else [])
    assert (result.fresh, result.total) == (0 if reasons else 1, 1)


def test_freshness_lists_the_stale_items_in_russian() -> None:
    deals = [
        deal(nsk(2026, 11, 19), deal_id=1, title="Фасады Бердск"),  # fresh
        deal(nsk(2026, 11, 19), planned=False, deal_id=2, title="Шкафы Обь"),
        deal(nsk(2026, 10, 1), planned=False, deal_id=3, title=""),
        deal(nsk(2026, 10, 1), rep=B, deal_id=4),  # another rep's deal
    ]
    tasks = [
        TaskFact(10, "Отправить КП", A, A, nsk(2026, 11, 1), deadline=nsk(2026, 11, 19, 15, 0)),
        TaskFact(11, "Позвонить", A, A, nsk(2026, 11, 1)),  # no deadline: fresh
        TaskFact(12, "Сверка", A, A, nsk(2026, 11, 1), deadline=NOW),  # due right now: fresh
        TaskFact(13, "Закрыта", A, A, nsk(2026, 11, 1), status=5, deadline=nsk(2026, 11, 2)),
        TaskFact(14, "На контроле", A, A, nsk(2026, 11, 1), status=4,
                 deadline=nsk(2026, 11, 2)),
        TaskFact(15, "", B, A, nsk(2026, 11, 1), status=6, deadline=nsk(2026, 11, 2, 9, 30)),
        TaskFact(16, "Чужая", A, B, nsk(2026, 11, 1), deadline=nsk(2026, 11, 2)),
    ]
    cards = [
        card(ACME, A, updated=nsk(2026, 8, 20), name="ООО «Акме»"),  # 92 days: fresh
        card(BETA, A, updated=nsk(2026, 8, 19), name="ИП Бета"),  # 93 days
        card(GAMMA, A),  # never updated
        card("company:9", B),
    ]
    result = crm_freshness(deals, tasks, cards, A, NOW, calendar=CAL)
    # 3 deals, 4 open tasks of A as responsible (13 and 14 are done, 16 is B's), 3 cards.
    assert (result.fresh, result.total, result.value) == (4, 10, D("0.4000"))
    assert result.stale == (
        StaleItem(StaleKind.DEAL, 2, "Шкафы Обь", ("нет запланированного дела",)),
        StaleItem(StaleKind.DEAL, 3, "Сделка #3", (
            "нет запланированного дела", "стадия не менялась 35 рабочих дней (допустимо до 10)")),
        StaleItem(StaleKind.TASK, 10, "Отправить КП", ("просрочена: срок 19.11.2026 15:00",)),
        StaleItem(StaleKind.TASK, 15, "Задача #15", ("просрочена: срок 02.11.2026 09:30",)),
        StaleItem(StaleKind.CLIENT_CARD, BETA, "ИП Бета", (
            "карточка не обновлялась 93 дня (допустимо до 92)",)),
        # Regression: an unnamed card was listed as "company:3" in the Russian list.
        StaleItem(StaleKind.CLIENT_CARD, GAMMA, "Компания #3",
                  ("карточка ни разу не обновлялась",)),
    )
    assert [s.kind.title_ru for s in result.stale[::2]] == ["сделка", "задача",
                                                            "карточка клиента"]
    team = crm_freshness(deals, tasks, cards, None, NOW, calendar=CAL)
    assert team.total == 13


def test_freshness_without_records_is_no_data() -> None:
    result = crm_freshness([], [], [], A, NOW, calendar=CAL)
    assert (result.fresh, result.total, result.value, result.stale) == (0, 0, None, ())


def test_freshness_thresholds_are_rules() -> None:
    rules = RecognitionRules(stage_max_working_days=3, card_max_age_days=30)
    result = crm_freshness([deal(nsk(2026, 11, 16))], [],
                           [card(ACME, A, updated=nsk(2026, 10, 20))], A, NOW, calendar=CAL,
                           rules=rules)
    assert [s.reasons for s in result.stale] == [
        ("стадия не менялась 4 рабочих дня (допустимо до 3)",),
        ("карточка не обновлялась 31 день (допустимо до 30)",)]


def test_freshness_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        crm_freshness([], [], [], A, datetime(2026, 11, 20), calendar=CAL)


@pytest.mark.parametrize(("n", "word"), [
    (0, "дней"), (1, "день"), (2, "дня"), (4, "дня"), (5, "дней"), (11, "дней"), (12, "дней"),
    (14, "дней"), (21, "день"), (22, "дня"), (93, "дня"), (111, "дней"), (101, "день"),
])
def test_russian_plural(n: int, word: str) -> None:
    assert _plural(n, "день", "дня", "дней") == word


# ---- client card ----

Q4 = quarter(2026, 4)


@pytest.mark.parametrize(("changed", "kwargs", "part", "whole"), [
    ({ACME: nsk(2026, 10, 1, 0, 10), BETA: nsk(2026, 9, 30, 23, 30)}, {}, 1, 2),  # boundary
    ({ACME: nsk(2026, 11, 5), BETA: nsk(2026, 12, 31, 23, 59)}, {}, 2, 2),
    ({ACME: nsk(2026, 11, 5)}, {}, 1, 2),  # BETA has no card fact: not updated
    ({ACME: nsk(2026, 11, 5), BETA: nsk(2026, 12, 5)}, {"now": nsk(2026, 12, 1)}, 1, 2),
    ({}, {}, 0, 2),
])
def test_client_card(changed: dict[str, datetime], kwargs: dict[str, Any], part: int,
                     whole: int) -> None:
    purchases = [buy(ACME, A, 1, nsk(2026, 5, 1)), buy(BETA, A, 1, nsk(2026, 10, 5)),
                 buy(GAMMA, B, 1, nsk(2026, 10, 5))]
    cards = [card(client, A, changed=when) for client, when in changed.items()]
    cards.append(card(GAMMA, A, changed=nsk(2026, 11, 1)))  # GAMMA buys from B: not A's
    result = client_card(cards, purchases, A, Q4, **kwargs)
    assert (result.part, result.whole) == (part, whole)


def test_client_card_leaves_out_clients_without_a_company() -> None:
    # Regression: a client that is a contact alone (no company, so no card to keep) counted
    # as never updated and held the KPI below its 100 % target for good.
    purchases = [buy(ACME, A, 1, nsk(2026, 10, 5)), buy("contact:7", A, 1, nsk(2026, 11, 5))]
    result = client_card([card(ACME, A, changed=nsk(2026, 11, 1))], purchases, A, Q4)
    assert (result.part, result.whole) == (1, 1)
    only_contacts = client_card([], [buy("contact:7", A, 1, nsk(2026, 11, 5))], A, Q4)
    assert only_contacts.value is None


def test_client_card_without_active_clients_is_no_data() -> None:
    assert client_card([card(ACME, A, changed=nsk(2026, 11, 1))], [], A, Q4).value is None
    old = [buy(ACME, A, 1, nsk(2025, 1, 1))]  # bought, but not in the last 12 months
    assert client_card([], old, A, Q4).value is None
