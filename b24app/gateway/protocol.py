"""What the rest of the service may ask of Bitrix24 (the gateway interface; fakes implement it)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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

# Entities the service reads and mirrors, by the names used across the service.
ENTITIES = ("deal", "company", "contact", "activity", "task")
Record = Deal | Company | Contact | Activity | Task


@dataclass(frozen=True)
class EventBinding:
    """A handler bound on the portal (``event.get``)."""

    event: str
    handler: str
    offline: bool = False


@dataclass(frozen=True)
class OfflineEvent:
    """One record of the offline queue."""

    id: int
    event: str
    timestamp: datetime | None
    message_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class OfflineBatch:
    """Records reserved under ``process_id`` by ``event.offline.get(clear=0)``."""

    process_id: str
    events: list[OfflineEvent]


@dataclass(frozen=True)
class UserFieldSpec:
    """A CRM user field to create (``crm.<entity>.userfield.add``)."""

    name: str  # full name, UF_CRM_...
    type: str  # string, double, date, datetime, boolean, integer, enumeration...
    label: str
    multiple: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CrmType:
    """A smart process type (``crm.type.*``)."""

    id: int
    entity_type_id: int
    title: str
    code: str


class Gateway(Protocol):
    """Intent-named Bitrix24 operations returning our own types; failures are ``B24Error``s."""

    # -- single records (None when it no longer exists) ------------------------------------
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

    def get_record(self, entity: str, record_id: int) -> Record | None:
        """Any mirrored record by entity name (``deal``, ``company``...)."""

    def task_history(self, task_id: int) -> list[TaskHistoryEntry]:
        """The change log of a task."""

    def task_comments(self, task_id: int) -> list[TaskComment]:
        """Comments of a task (chat messages in the new card)."""

    # -- bulk reads ------------------------------------------------------------------------
    def iter_records(self, entity: str, *, modified_since: datetime | None = None,
                     after_id: int = 0) -> Iterator[list[Record]]:
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
        """Write field changes to many CRM records in batches of 50; per-record outcome."""

    # -- app lifecycle and portal facts -----------------------------------------------------
    def app_info(self) -> dict[str, Any]:
        """``app.info`` of the calling app (version, INSTALLED...)."""

    def bound_events(self) -> list[EventBinding]:
        """Handlers the app has bound."""

    def bind_event(self, event: str, handler: str = "", *, offline: bool = False) -> bool:
        """Bind a handler (or an offline queue); False when it was bound already."""

    def unbind_event(self, event: str, handler: str = "", *, offline: bool = False) -> int:
        """Unbind; returns how many bindings were removed."""

    def userfields(self, entity: str) -> list[str]:
        """Names of the user fields of ``company``, ``deal`` or ``contact``."""

    def add_userfield(self, entity: str, spec: UserFieldSpec) -> None:
        """Create a user field on ``entity``."""

    def crm_types(self) -> list[CrmType]:
        """Smart process types of the portal."""

    def add_crm_type(self, title: str, code: str) -> CrmType:
        """Create a smart process type."""

    # -- smart-process items (``crm.item.*``, user-field names UPPER_CASE) --------------------
    def item_fields(self, entity_type_id: int) -> list[str]:
        """Names of the user fields of a smart process's items (``UF_CRM_<id>_...``)."""

    def add_item_userfield(self, type_settings_id: int, spec: UserFieldSpec) -> None:
        """Create a user field on a smart process (its ``crm.type`` record ``id``)."""

    def add_item_userfields(self, type_settings_id: int, specs: Sequence[UserFieldSpec]
                            ) -> dict[str, B24Error | None]:
        """Create several user fields in batches of 50; per-field outcome by name."""

    def add_item(self, entity_type_id: int, fields: Mapping[str, Any]) -> int:
        """Create an item (camelCase system fields, UPPER user fields); returns its ID."""

    def update_items(self, entity_type_id: int, changes: Mapping[int, Mapping[str, Any]]
                     ) -> dict[int, B24Error | None]:
        """Write field changes to many items in batches of 50; per-item outcome."""

    def find_items(self, entity_type_id: int, flt: Mapping[str, Any],
                   select: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Items matching a ``crm.item.list`` filter, ascending ID (``select`` empty = all)."""

    def offline_events(self, *, limit: int = 50, process_id: str = "") -> OfflineBatch:
        """Reserve (or re-read, with ``process_id``) a batch of offline events."""

    def clear_offline(self, process_id: str, message_ids: list[str] | None = None) -> None:
        """Delete processed offline records of a batch."""

    def fail_offline(self, process_id: str, message_ids: list[str]) -> None:
        """Mark offline records as failed."""

    def offline_reserved(self) -> list[str]:
        """Process IDs that hold reserved offline records (a run that died before saving)."""

    def server_time(self) -> datetime:
        """The portal's clock (for skew checks)."""

    def calendar_settings(self) -> dict[str, Any]:
        """``calendar.settings.get``: the portal's work hours and holidays."""
