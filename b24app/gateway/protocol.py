"""What the rest of the service may ask of Bitrix24 (the gateway interface; fakes implement it)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from b24app.gateway.errors import B24Error
from b24app.gateway.types import (
    Activity,
    Company,
    Contact,
    Deal,
    Department,
    Group,
    Task,
    TaskComment,
    TaskHistoryEntry,
    User,
)

# Entity names used across the service: the CRM/task tables we read and mirror.
ENTITIES = ("deal", "company", "contact", "activity", "task")


class OfflineBatch(Protocol):
    """A reserved batch of offline events."""

    process_id: str
    events: list[dict[str, Any]]


class Gateway(Protocol):
    """Intent-named Bitrix24 operations returning our own types; errors are ``B24Error``s."""

    # -- reads of single entities (None when it no longer exists) ---------------------------
    def get_deal(self, deal_id: int) -> Deal | None:
        """A deal by ID."""

    def get_company(self, company_id: int) -> Company | None:
        """A company by ID."""

    def get_contact(self, contact_id: int) -> Contact | None:
        """A contact by ID."""

    def get_activity(self, activity_id: int) -> Activity | None:
        """An activity by ID."""

    def get_task(self, task_id: int) -> Task | None:
        """A task by ID."""

    def task_history(self, task_id: int) -> list[TaskHistoryEntry]:
        """The change log of a task."""

    def task_comments(self, task_id: int) -> list[TaskComment]:
        """Comments of a task (chat messages in the new card)."""

    # -- bulk reads ------------------------------------------------------------------------
    def iter_entities(self, entity: str, *, modified_since: datetime | None = None,
                      after_id: int = 0) -> Iterator[list[Any]]:
        """Pages of ``entity`` in ascending ID, optionally only those changed since a time."""

    def users(self) -> list[User]:
        """All employees."""

    def departments(self) -> list[Department]:
        """All departments with their heads."""

    def groups(self) -> list[Group]:
        """All workgroups."""

    # -- actions ---------------------------------------------------------------------------
    def add_task_comment(self, task_id: int, text: str) -> int:
        """Post a comment into a task; returns its ID."""

    def update_task(self, task_id: int, fields: Mapping[str, Any]) -> None:
        """Change task fields (UPPER_CASE names)."""

    def notify(self, user_id: int, message: str, tag: str = "") -> int | None:
        """A system notification; the same ``tag`` replaces an older one."""

    def update_many(self, entity: str, changes: Mapping[int, Mapping[str, Any]]
                    ) -> dict[int, B24Error | None]:
        """Write field changes to many CRM records in batches; per-record outcome."""
