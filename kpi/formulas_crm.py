"""KPIs of the client base: NPS and its coverage, CRM freshness with its «висяки», client card."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from kpi.definitions import DEFAULT_RULES, RecognitionRules, Share, percent, ratio
from kpi.facts import COMPANY_PREFIX, ClientCard, NpsAnswerFact, OpenDeal, Purchase, TaskFact
from kpi.formulas_sales import active_clients
from kpi.periods import Period, require_aware, trailing_start

# ---------------------------------------------------------------- NPS


@dataclass(frozen=True, slots=True)
class NpsScore:
    """Answers of one wave split into promoters, passives and detractors."""

    promoters: int
    passives: int
    detractors: int

    @property
    def answers(self) -> int:
        """How many answers the score is over."""
        return self.promoters + self.passives + self.detractors

    @property
    def value(self) -> Decimal | None:
        """NPS in points, -100..100 (2 places); None without answers."""
        share = ratio(self.promoters - self.detractors, self.answers)
        return percent(share)


def _dedupe(answers: Iterable[NpsAnswerFact]) -> list[NpsAnswerFact]:
    """One answer per contact and wave, the latest; answers without a contact all stay."""
    # The ledger is unique per (contact, wave); an import may still repeat a survey answer.
    latest: dict[tuple[int, str], NpsAnswerFact] = {}
    rest: list[NpsAnswerFact] = []
    for a in answers:
        if a.contact_id is None:
            rest.append(a)
            continue
        key = (a.contact_id, a.wave)
        if key not in latest or a.answered_at > latest[key].answered_at:
            latest[key] = a
    return [*latest.values(), *rest]


def latest_wave(answers: Iterable[NpsAnswerFact], up_to: str | None = None) -> str | None:
    """The latest wave label (e.g. "2026-H2") with any answer, not after ``up_to``."""
    # Team-wide on purpose: every rep is judged on the same wave. Labels "YYYY-Hn" sort as text.
    waves = [a.wave for a in answers if up_to is None or a.wave <= up_to]
    return max(waves, default=None)


def nps(answers: Iterable[NpsAnswerFact], rep_id: int | None, wave: str, *,
        rules: RecognitionRules = DEFAULT_RULES) -> NpsScore:
    """NPS = (promoters 9–10 − detractors 0–6) ÷ the rep's answers in the wave × 100."""
    # "The rep's clients' answers": the rep is the one the survey was sent for (the invitation),
    # so a later reassignment of the company does not move old answers.
    scores = [a.score for a in _dedupe(answers)
              if a.wave == wave and (rep_id is None or a.rep_id == rep_id)]
    promoters = sum(1 for s in scores if s >= rules.promoter_min)
    detractors = sum(1 for s in scores if s <= rules.detractor_max)
    return NpsScore(promoters, len(scores) - promoters - detractors, detractors)


def nps_coverage(answers: Iterable[NpsAnswerFact], purchases: Iterable[Purchase],
                 rep_id: int | None, period: Period, *, now: datetime | None = None,
                 rules: RecognitionRules = DEFAULT_RULES) -> Share:
    """Share of the rep's active clients with answers in ≥ 2 distinct waves in the last 12 mo."""
    # Window [as_of − 12 months, as_of). "Surveyed" means answered: an unanswered invitation is
    # not a survey the РОП can read. Two contacts answering one wave are one survey.
    as_of = period.as_of(now)
    clients = active_clients(purchases, rep_id, as_of, rules=rules, tz=period.tz)
    start = trailing_start(as_of, rules.nps_window_months, period.tz)
    waves: dict[str, set[str]] = {}
    for a in answers:
        if a.client_key in clients and start <= a.answered_at < as_of:
            waves.setdefault(a.client_key, set()).add(a.wave)
    surveyed = sum(1 for c in clients if len(waves.get(c, ())) >= rules.nps_min_waves)
    return Share(surveyed, len(clients))


# ---------------------------------------------------------------- CRM freshness


class WorkdayCalendar(Protocol):
    """What freshness needs of ``kpi.calendar.WorkingCalendar``."""

    @property
    def tz(self) -> tzinfo:
        """The zone local dates are taken in."""
        ...

    def is_working_day(self, day: date) -> bool:
        """Whether the local date has working time."""
        ...


class StaleKind(StrEnum):
    """What a stale record («висяк») is."""

    DEAL = "deal"
    TASK = "task"
    CLIENT_CARD = "client_card"

    @property
    def title_ru(self) -> str:
        """The Russian name of the record kind."""
        return {"deal": "сделка", "task": "задача", "client_card": "карточка клиента"}[self.value]


@dataclass(frozen=True, slots=True)
class StaleItem:
    """A stale record with its name and the reasons, in Russian."""

    kind: StaleKind
    item_id: int | str  # deal or task id; the client key for a card
    name: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Freshness:
    """The rep's fresh records out of all and the stale ones («висяки»)."""

    fresh: int
    total: int
    stale: tuple[StaleItem, ...]

    @property
    def value(self) -> Decimal | None:
        """fresh ÷ total (4 places); None when the rep has no records."""
        return ratio(self.fresh, self.total)


def _plural(n: int, one: str, few: str, many: str) -> str:
    """The Russian noun form for a count: 1 день, 2 дня, 5 дней, 21 день, 11 дней."""
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


class _WorkingDaysBack:
    """Working days d with day < d ≤ today, memoised as a running count back from today."""

    def __init__(self, calendar: WorkdayCalendar, today: date) -> None:
        self.calendar, self.today = calendar, today
        self.counts = [0]  # counts[k] = working days in (today − k, today]

    def since(self, day: date) -> int:
        back = (self.today - day).days
        while len(self.counts) <= back:
            k = len(self.counts)
            working = self.calendar.is_working_day(self.today - timedelta(days=k - 1))
            self.counts.append(self.counts[-1] + working)
        return self.counts[back] if back > 0 else 0


def _deal_reasons(deal: OpenDeal, age: int, rules: RecognitionRules) -> tuple[str, ...]:
    reasons = []
    if not deal.has_planned_activity:
        reasons.append("нет запланированного дела")
    if age > rules.stage_max_working_days:
        word = _plural(age, "рабочий день", "рабочих дня", "рабочих дней")
        reasons.append(f"стадия не менялась {age} {word} "
                       f"(допустимо до {rules.stage_max_working_days})")
    return tuple(reasons)


def _card_reasons(card: ClientCard, today: date, zone: tzinfo,
                  rules: RecognitionRules) -> tuple[str, ...]:
    if card.updated_at is None:
        return ("карточка ни разу не обновлялась",)
    days = (today - card.updated_at.astimezone(zone).date()).days
    if days <= rules.card_max_age_days:
        return ()
    word = _plural(days, "день", "дня", "дней")
    return (f"карточка не обновлялась {days} {word} (допустимо до {rules.card_max_age_days})",)


def _card_name(card: ClientCard) -> str:
    """The card's company name, else «Компания #5» (never the key "company:5")."""
    if card.name:
        return card.name
    kind, _, number = card.client_key.partition(":")
    return f"{'Контакт' if kind == 'contact' else 'Компания'} #{number}"


def crm_freshness(deals: Iterable[OpenDeal], tasks: Iterable[TaskFact],
                  cards: Iterable[ClientCard], rep_id: int | None, now: datetime, *,
                  calendar: WorkdayCalendar,
                  rules: RecognitionRules = DEFAULT_RULES) -> Freshness:
    """Fresh ÷ all of the rep's open deals, open tasks and client cards; the rest are «висяки»."""
    # Fresh deal: a planned (not completed) activity and ≤ 10 working days in its stage
    # (working days after the day it entered the stage, up to today). Fresh task: no deadline
    # or a deadline not before now. Fresh card: a change by a person ≤ 92 days ago (local
    # dates). Tasks count for their responsible; the caller passes the cards in scope.
    zone = calendar.tz
    today = require_aware(now, "now").astimezone(zone).date()
    back = _WorkingDaysBack(calendar, today)
    stale: list[StaleItem] = []
    total = 0
    for deal in deals:
        if rep_id is None or deal.rep_id == rep_id:
            total += 1
            age = back.since(deal.stage_since.astimezone(zone).date())
            if reasons := _deal_reasons(deal, age, rules):
                stale.append(StaleItem(StaleKind.DEAL, deal.deal_id,
                                       deal.title or f"Сделка #{deal.deal_id}", reasons))
    for task in tasks:
        if task.is_open and (rep_id is None or task.responsible_id == rep_id):
            total += 1
            if task.deadline is not None and task.deadline < now:
                reason = f"просрочена: срок {task.deadline.astimezone(zone):%d.%m.%Y %H:%M}"
                stale.append(StaleItem(StaleKind.TASK, task.task_id,
                                       task.title or f"Задача #{task.task_id}", (reason,)))
    for card in cards:
        if rep_id is None or card.rep_id == rep_id:
            total += 1
            if reasons := _card_reasons(card, today, zone, rules):
                stale.append(StaleItem(StaleKind.CLIENT_CARD, card.client_key,
                                       _card_name(card), reasons))
    return Freshness(total - len(stale), total, tuple(stale))


# ---------------------------------------------------------------- client card


def client_card(cards: Iterable[ClientCard], purchases: Iterable[Purchase],
                rep_id: int | None, period: Period, *, now: datetime | None = None,
                rules: RecognitionRules = DEFAULT_RULES) -> Share:
    """Share of the rep's active client companies whose card changed in [period start, as_of)."""
    # The period is a quarter by default («обновление не реже 1 раза в квартал»). An active
    # company without a card in the input counts as not updated. A client that is a contact
    # alone has no company card to keep: it is left out, or 100 % could never be reached.
    as_of = period.as_of(now)
    clients = {c for c in active_clients(purchases, rep_id, as_of, rules=rules, tz=period.tz)
               if c.startswith(COMPANY_PREFIX)}
    changed = {c.client_key for c in cards
               if c.card_fields_changed_at is not None
               and period.start <= c.card_fields_changed_at < as_of}
    return Share(len(clients & changed), len(clients))
