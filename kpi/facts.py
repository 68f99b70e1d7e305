"""The plain facts KPI formulas read: purchases, activities, tasks, NPS answers, client cards.

The caller (SQL over the mirror, or a test table) builds these; the formulas never see a
Bitrix24 row. Every instant is aware (naive ones raise ValueError) and money is Decimal
(a float amount raises TypeError: binary floats do not add up kopecks exactly).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from kpi.periods import require_aware

# Task statuses after which the responsible has nothing left to do: 4 awaiting the
# creator's control, 5 completed, 7 declined (legacy). 2, 3 and 6 (deferred) are open.
TASK_CLOSED_STATUSES = frozenset({4, 5, 7})
TASK_COMPLETED = 5


def _money(value: Decimal, what: str) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__} {value!r}")


COMPANY_PREFIX, CONTACT_PREFIX = "company:", "contact:"


def client_key(company_id: int | None, contact_id: int | None = None) -> str | None:
    """The client a record belongs to: its company, else its contact; None without either."""
    # Bitrix24 writes 0 (or "0") for "no company"; both count as missing.
    if company_id:
        return f"{COMPANY_PREFIX}{int(company_id)}"
    if contact_id:
        return f"{CONTACT_PREFIX}{int(contact_id)}"
    return None


@dataclass(frozen=True, slots=True)
class Purchase:
    """One purchase: a won deal (or a paid smart invoice) of a client, closed at an instant."""

    client_key: str | None  # None: a sale without a client; counts in volume only
    rep_id: int
    amount: Decimal
    closed_at: datetime
    deal_id: int = 0

    def __post_init__(self) -> None:
        _money(self.amount, "amount")
        require_aware(self.closed_at, "closed_at")


@dataclass(frozen=True, slots=True)
class SaleRecord:
    """A deal or a smart invoice as the mirror holds it, before it is judged a purchase."""

    record_id: int
    semantic: str  # STAGE_SEMANTIC_ID: "S" won/paid, "F" lost (refunded), "P" in progress
    amount: Decimal
    closed_at: datetime | None
    assigned_by_id: int
    company_id: int | None = None
    contact_id: int | None = None

    def __post_init__(self) -> None:
        _money(self.amount, "amount")
        if self.closed_at is not None:
            require_aware(self.closed_at, "closed_at")


def purchases_from(records: Iterable[SaleRecord]) -> list[Purchase]:
    """Purchases: records whose stage semantic is now S, with a close instant and amount > 0."""
    # The current semantic decides, so a deal won and later moved to a lost stage (a refund)
    # is no purchase in any period, and recomputing a past period drops it. A zero "won" deal
    # is a placeholder, not a purchase. Deals and smart invoices both map to SaleRecord, so
    # switching the purchase source changes the caller's query only.
    return [
        Purchase(client_key(r.company_id, r.contact_id), r.assigned_by_id, r.amount,
                 r.closed_at, r.record_id)
        for r in records
        if r.semantic == "S" and r.closed_at is not None and r.amount > 0
    ]


@dataclass(frozen=True, slots=True)
class Activity:
    """A CRM activity (meeting, call, e-mail, to-do, calendar import) of a responsible user."""

    activity_id: int
    type_id: int  # 1 meeting, 2 call, 3 task, 4 e-mail, 5 calendar import, 6 provider
    responsible_id: int
    occurred_at: datetime  # START_TIME, else END_TIME, else CREATED: when it took place
    completed: bool = True
    provider_id: str = ""  # CRM_MEETING, CRM_TODO, CRM_EMAIL, VOXIMPLANT_CALL ...
    subject: str = ""
    direction: int = 0  # 1 incoming, 2 outgoing
    client_keys: tuple[str, ...] = ()  # the companies/contacts it is bound to

    def __post_init__(self) -> None:
        require_aware(self.occurred_at, "occurred_at")


@dataclass(frozen=True, slots=True)
class TaskFact:
    """A task as the KPIs need it."""

    task_id: int
    title: str
    creator_id: int
    responsible_id: int
    created_at: datetime
    group_id: int = 0  # the workgroup; 0 = none
    status: int = 2
    deadline: datetime | None = None
    closed_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.created_at, "created_at")
        for name in ("deadline", "closed_at"):
            value = getattr(self, name)
            if value is not None:
                require_aware(value, name)

    @property
    def is_open(self) -> bool:
        """Whether the responsible still has the task to do."""
        return self.status not in TASK_CLOSED_STATUSES


@dataclass(frozen=True, slots=True)
class OpenDeal:
    """An open deal (semantic P) of a rep, for CRM freshness."""

    deal_id: int
    title: str
    rep_id: int
    stage_since: datetime  # when the deal entered its current stage (MOVED_TIME)
    has_planned_activity: bool  # an activity bound to the deal that is not completed

    def __post_init__(self) -> None:
        require_aware(self.stage_since, "stage_since")


@dataclass(frozen=True, slots=True)
class ClientCard:
    """The client card (company card) of a client and its owner."""

    client_key: str
    rep_id: int
    updated_at: datetime | None  # the last change by a person (the service's writes excluded)
    budget: Decimal | None = None  # declared annual component budget, ₽
    card_fields_changed_at: datetime | None = None  # needs, competitors, potential, budget
    name: str = ""

    def __post_init__(self) -> None:
        if self.budget is not None:
            _money(self.budget, "budget")
        for name in ("updated_at", "card_fields_changed_at"):
            value = getattr(self, name)
            if value is not None:
                require_aware(value, name)


@dataclass(frozen=True, slots=True)
class NpsAnswerFact:
    """One NPS answer (0-10) of a client's contact in a survey wave such as "2026-H2"."""

    client_key: str
    rep_id: int  # the rep the survey was sent for (the invitation's rep)
    score: int
    wave: str
    answered_at: datetime
    contact_id: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.score, bool) or not isinstance(self.score, int) \
                or not 0 <= self.score <= 10:
            raise ValueError(f"an NPS score is an integer 0..10, got {self.score!r}")
        require_aware(self.answered_at, "answered_at")


@dataclass(frozen=True, slots=True)
class SlaClockFact:
    """A decided response clock: answered (in time or late) or breached and still unanswered."""

    rep_id: int  # the responsible whose reply the clock waited for
    started_at: datetime
    answered_in_time: bool
    minutes: float  # working minutes to the first reaction, or elapsed so far if unanswered

    def __post_init__(self) -> None:
        require_aware(self.started_at, "started_at")


@dataclass(frozen=True, slots=True)
class TaskFormatFact:
    """The format verdict of a task at its creation."""

    creator_id: int
    created_at: datetime
    compliant: bool

    def __post_init__(self) -> None:
        require_aware(self.created_at, "created_at")
