"""Small builders for KPI facts in Novosibirsk time, shared by the KPI formula tests."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from kpi.facts import Activity, ClientCard, NpsAnswerFact, Purchase, TaskFact
from kpi.periods import Period, PeriodKind

NSK = ZoneInfo("Asia/Novosibirsk")
UTC = ZoneInfo("UTC")
A, B = 101, 202  # two reps
ACME, BETA, GAMMA = "company:1", "company:2", "company:3"


def nsk(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A Novosibirsk wall-clock instant (noon by default, far from any boundary)."""
    return datetime(year, month, day, hour, minute, tzinfo=NSK)


def month(year: int, number: int) -> Period:
    return Period(PeriodKind.MONTH, year, number)


def quarter(year: int, number: int) -> Period:
    return Period(PeriodKind.QUARTER, year, number)


def year_period(year: int) -> Period:
    return Period(PeriodKind.YEAR, year)


_ids = iter(range(1, 10**9))


def buy(client: str | None, rep: int, amount: str | int, when: datetime) -> Purchase:
    """A purchase with a fresh deal id."""
    return Purchase(client, rep, Decimal(amount), when, next(_ids))


def act(rep: int, when: datetime, *, type_id: int = 1, subject: str = "", completed: bool = True,
        provider: str = "", direction: int = 0, clients: tuple[str, ...] = (ACME,),
        activity_id: int | None = None) -> Activity:
    """An activity with a fresh id unless one is given."""
    return Activity(next(_ids) if activity_id is None else activity_id, type_id, rep, when,
                    completed, provider, subject, direction, clients)


def task(creator: int, when: datetime, title: str = "Подготовить КП для клиента", *,
         responsible: int | None = None, group_id: int = 0, status: int = 2,
         deadline: datetime | None = None, closed_at: datetime | None = None,
         task_id: int | None = None) -> TaskFact:
    """A task with a fresh id unless one is given."""
    return TaskFact(next(_ids) if task_id is None else task_id, title, creator,
                    creator if responsible is None else responsible, when, group_id, status,
                    deadline, closed_at)


def answer(client: str, rep: int, score: int, wave: str, when: datetime, *,
           contact: int | None = None) -> NpsAnswerFact:
    return NpsAnswerFact(client, rep, score, wave, when, contact)


def card(client: str, rep: int, *, updated: datetime | None = None, budget: str | None = None,
         changed: datetime | None = None, name: str = "") -> ClientCard:
    return ClientCard(client, rep, updated, None if budget is None else Decimal(budget),
                      changed, name)
