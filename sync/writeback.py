"""KPI write-back: desired values → diff against the last written snapshot → batched writes.

Two targets, one design:

* Company cards: the nine ``UF_CRM_NOIS_*`` fields of every company with metrics
  (``CompanyMetrics``), written by ``update_many("company", ...)``.
* «KPI менеджера» items: one per rep and period (``KpiItem`` maps it to the item ID), with the
  period, and the value, target and status of every KPI the compute produced
  (``lifecycle.kpi_part_name``), written by ``add_item`` once and ``update_items`` after.

Every value is encoded in its wire form first (``wire``: two decimals, ``YYYY-MM-DD``,
``1``/``0``, ``""`` clears), then compared as text with ``WrittenValue`` (the value last
sent, keyed by portal, target, record ID and field). Only the changed fields of changed
records are sent, in full batches of 50 across all records, so a run costs
ceil(changed records / 50) write requests and a repeated run costs none. The snapshot is
stored per record only for what Bitrix24 accepted: a failed record is retried, alone, by the
next run. A missing snapshot reads as "unknown", so its fields are written.

Own writes are recorded (``sync.own_writes``) and committed before each slice is sent, so the
echo events of our writes are recognised even when the worker reads them at once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from b24app.db import session_scope
from b24app.gateway.errors import AuthRevoked, B24Error, NotFound
from b24app.gateway.protocol import CrmType, Gateway
from b24app.lifecycle import (
    KPI_PERIOD,
    ensure_kpi_fields,
    find_kpi_type,
    kpi_field_name,
    kpi_part_name,
)
from b24app.models import KpiItem, MirrorUser, WrittenValue
from kpi.definitions import percent
from kpi.digest import STATUS_TITLES
from kpi.formulas import ReturnStatus
from kpi.periods import Period
from kpi.results import CompanyMetrics, RepKpi
from sync import own_writes

log = logging.getLogger(__name__)

COMPANY = "company"  # WrittenValue.target of company cards (target_id = company ID)
KPI_ITEM = "kpi_item"  # WrittenValue.target of «KPI менеджера» items (target_id = item ID)
SLICE = 500  # records per commit of the snapshot: ten full batches
CHUNK = 1000  # IDs per IN (...) when reading the snapshot
CENTS = Decimal("0.01")
# Date fields of the company card: the echo of a write reads back as local midnight.
DATE_FIELDS = frozenset({"UF_CRM_NOIS_LAST_PURCHASE", "UF_CRM_NOIS_NPS_DATE",
                         "UF_CRM_NOIS_CARD_UPDATED"})
Fields = dict[str, str]
K = TypeVar("K")


# ---------------------------------------------------------------- wire form


def decimal2(value: Decimal | float | int) -> str:
    """A number with two decimals, half-up (``1234.5`` → ``"1234.50"``); -0 is 0."""
    number = Decimal(str(value)).quantize(CENTS, rounding=ROUND_HALF_UP)
    return format(number if number else abs(number), "f")


def wire(value: Any) -> str:
    """A value as the service sends it and keeps it in the snapshot."""
    if value is None:
        return ""  # clears the field
    if isinstance(value, bool):
        # A boolean user field stores 1/0 and legacy CRM reads it back as "1"/"0". "N" is no
        # false there: the field saves any non-empty text as 1, and the echo of "Y" would read
        # "1" and not be recognised as our own write.
        return "1" if value else "0"
    if isinstance(value, datetime):
        raise TypeError("write-back sends dates, not instants")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | float):
        return decimal2(value)
    return str(value)  # integers and text


def return_status_title(status: str | None) -> str | None:
    """The Russian return status shown in the card («под угрозой»); None stays None."""
    if status is None:
        return None
    try:
        return ReturnStatus(status).title_ru
    except ValueError:
        return status


def company_fields(metrics: CompanyMetrics) -> Fields:
    """The desired ``UF_CRM_NOIS_*`` values of one company, in wire form."""
    return {
        "UF_CRM_NOIS_LTV": wire(metrics.ltv),
        "UF_CRM_NOIS_LTV_12M": wire(metrics.ltv_12m),
        "UF_CRM_NOIS_LAST_PURCHASE": wire(metrics.last_purchase),
        "UF_CRM_NOIS_RETURN_STATUS": wire(return_status_title(metrics.return_status)),
        "UF_CRM_NOIS_REGULAR": wire(metrics.regular),
        "UF_CRM_NOIS_NPS_LAST": wire(metrics.nps_last),
        "UF_CRM_NOIS_NPS_DATE": wire(metrics.nps_date),
        "UF_CRM_NOIS_CARD_UPDATED": wire(metrics.card_updated),
        # A share is shown in percent, as every KPI share is (0.7143 → 71.43).
        "UF_CRM_NOIS_SHARE": wire(percent(metrics.nois_share)),
    }


def item_title(name: str, period: str, tz: str) -> str:
    """«KPI: Иван Петров — ноябрь 2026»."""
    return f"KPI: {name} — {Period.parse(period, tz).title}"


def item_fields(kind: CrmType, rep_id: int, period: str, rows: Iterable[RepKpi], *,
                name: str, tz: str) -> Fields:
    """The desired fields of a rep's «KPI менеджера» item, in wire form."""
    out: Fields = {"title": item_title(name, period, tz), "assignedById": wire(rep_id),
                   kpi_field_name(kind.id, KPI_PERIOD): period}
    for row in rows:
        out[kpi_part_name(kind.id, row.kpi, "VALUE")] = wire(row.value)
        out[kpi_part_name(kind.id, row.kpi, "TARGET")] = wire(row.target)
        out[kpi_part_name(kind.id, row.kpi, "STATUS")] = STATUS_TITLES.get(row.status,
                                                                          row.status)
    return out


def diff(desired: Mapping[str, str], written: Mapping[str, str]) -> Fields:
    """The fields whose desired wire value differs from the one last written."""
    return {name: value for name, value in desired.items() if written.get(name) != value}


# ---------------------------------------------------------------- the report


@dataclass
class WritebackReport:
    """What one write-back did: records and fields written, created, failed."""

    companies_changed: int = 0  # companies with at least one field to write
    companies_written: int = 0
    company_fields: int = 0
    items_created: int = 0
    items_adopted: int = 0  # found on the portal when the mapping was missing
    items_written: int = 0  # updated items
    item_fields: int = 0
    fields_created: list[str] = field(default_factory=list)  # KPI item fields made here
    failures: list[str] = field(default_factory=list)  # one line per record not written
    problems: list[str] = field(default_factory=list)  # what stopped a whole part

    @property
    def ok(self) -> bool:
        """Whether everything desired is now on the portal."""
        return not self.failures and not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (CLI output, logs)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "ok": self.ok}


# ---------------------------------------------------------------- the snapshot


def chunked(items: Sequence[K], size: int) -> Iterator[Sequence[K]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def load_snapshot(session: Session, portal_id: int, target: str,
                  ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """The last written wire values of the given records, by record ID and field."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for chunk in chunked(ids, CHUNK):
        rows = session.execute(select(WrittenValue.target_id, WrittenValue.field,
                                      WrittenValue.value)
                               .where(WrittenValue.portal_id == portal_id,
                                      WrittenValue.target == target,
                                      WrittenValue.target_id.in_(chunk)))
        for target_id, name, value in rows:
            out[target_id][name] = value
    return out


def save_snapshot(session: Session, portal_id: int, target: str,
                  written: Mapping[int, Mapping[str, str]], now: datetime) -> None:
    """Upsert what Bitrix24 accepted (a concurrent run's row is overwritten, never duplicated)."""
    rows = [{"portal_id": portal_id, "target": target, "target_id": str(record_id),
             "field": name, "value": value, "written_at": now}
            for record_id, fields in written.items() for name, value in fields.items()]
    if not rows:
        return
    keys = ["portal_id", "target", "target_id", "field"]
    statement: Any
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(WrittenValue)
        statement = pg.on_conflict_do_update(index_elements=keys, set_={
            "value": pg.excluded.value, "written_at": pg.excluded.written_at})
    else:
        lite = sqlite.insert(WrittenValue)
        statement = lite.on_conflict_do_update(index_elements=keys, set_={
            "value": lite.excluded.value, "written_at": lite.excluded.written_at})
    for chunk in chunked(rows, CHUNK):
        session.execute(statement, list(chunk))


def forget(session: Session, portal_id: int, target: str, target_id: str) -> None:
    """Drop a record's snapshot (it is gone from the portal)."""
    session.execute(delete(WrittenValue).where(WrittenValue.portal_id == portal_id,
                                               WrittenValue.target == target,
                                               WrittenValue.target_id == target_id))


def _record_own(session: Session, portal_id: int, entity: str,
                changes: Mapping[int, Mapping[str, str]], *, now: datetime, tz: str) -> None:
    """Own-write marks for a slice, dates also in the form their echo reads back."""
    zone = ZoneInfo(tz)

    def marks(fields: Mapping[str, str]) -> list[tuple[str, Any]]:
        # Legacy CRM answers a date field as local midnight with offset (platform doc 5.1).
        midnight = [(name, datetime.combine(date.fromisoformat(value), datetime.min.time(), zone))
                    for name, value in fields.items() if name in DATE_FIELDS and value]
        return [*fields.items(), *midnight]

    own_writes.record_many(session, portal_id, entity,
                           {record_id: marks(fields) for record_id, fields in changes.items()},
                           now=now)


def _failure(kind: str, record_id: int | str, error: B24Error) -> str:
    return f"{kind} {record_id}: {error.code or type(error).__name__} {error.description}".strip()


def _raise_revoked(outcome: Mapping[int, B24Error | None]) -> None:
    """Dead credentials end the run (the caller marks the portal); other errors do not."""
    revoked = next((e for e in outcome.values() if isinstance(e, AuthRevoked)), None)
    if revoked is not None:
        raise revoked


# ---------------------------------------------------------------- companies


def write_companies(sessions: sessionmaker[Session], gateway: Gateway, portal_id: int,
                    companies: Iterable[CompanyMetrics], report: WritebackReport, *,
                    now: datetime, tz: str) -> None:
    """Company cards: diff, then ``update_many`` in slices, snapshot what was accepted."""
    desired = {m.company_id: company_fields(m) for m in companies}
    with sessions() as session:
        written = load_snapshot(session, portal_id, COMPANY, [str(i) for i in desired])
    changes = {cid: changed for cid, fields in desired.items()
               if (changed := diff(fields, written.get(str(cid), {})))}
    report.companies_changed += len(changes)
    ids = list(changes)
    for part_ids in chunked(ids, SLICE):
        part = {cid: changes[cid] for cid in part_ids}
        with session_scope(sessions) as session:
            _record_own(session, portal_id, COMPANY, part, now=now, tz=tz)
        outcome = gateway.update_many(COMPANY, part)
        accepted = {cid: part[cid] for cid, error in outcome.items() if error is None}
        with session_scope(sessions) as session:
            save_snapshot(session, portal_id, COMPANY, accepted, now)
        report.companies_written += len(accepted)
        report.company_fields += sum(len(f) for f in accepted.values())
        report.failures += [_failure("компания", cid, error)
                            for cid, error in outcome.items() if error is not None]
        _raise_revoked(outcome)


# ---------------------------------------------------------------- KPI items


@dataclass
class _Items:
    """One run over the «KPI менеджера» items of a portal."""

    sessions: sessionmaker[Session]
    gateway: Gateway
    portal_id: int
    kind: CrmType
    report: WritebackReport
    now: datetime
    tz: str

    def ensure_fields(self) -> bool:
        """Create fields missing on the smart process (an install of an older version)."""
        try:
            self.report.fields_created += ensure_kpi_fields(self.gateway, self.kind)
        except AuthRevoked:
            raise
        except B24Error as exc:
            # Bitrix24 ignores unknown fields: writing now would snapshot values never stored.
            self.report.problems.append(f"поля «KPI менеджера» не созданы: {exc.code} "
                                        f"{exc.description}".strip())
            return False
        return True

    def mappings(self, periods: Iterable[str]) -> dict[tuple[int, str], int]:
        """Known item IDs by (rep, period); mappings to another smart process are dropped."""
        out: dict[tuple[int, str], int] = {}
        with session_scope(self.sessions) as session:
            for row in session.scalars(select(KpiItem).where(
                    KpiItem.portal_id == self.portal_id, KpiItem.period.in_(list(periods)))):
                if row.entity_type_id == self.kind.entity_type_id:
                    out[row.rep_id, row.period] = row.item_id
                else:  # the type was deleted and made again: its old items are gone
                    forget(session, self.portal_id, KPI_ITEM, str(row.item_id))
                    session.delete(row)
        return out

    def remember(self, rep_id: int, period: str, item_id: int,
                 written: Fields | None = None) -> None:
        """Store the mapping (and what the add wrote) in one commit."""
        with session_scope(self.sessions) as session:
            session.merge(KpiItem(portal_id=self.portal_id, rep_id=rep_id, period=period,
                                  entity_type_id=self.kind.entity_type_id, item_id=item_id,
                                  created_at=self.now))
            if written:
                save_snapshot(session, self.portal_id, KPI_ITEM, {item_id: written}, self.now)

    def adopt(self, missing: Sequence[tuple[int, str]], desired: Mapping[tuple[int, str], Fields]
              ) -> dict[tuple[int, str], int]:
        """Items already on the portal for keys without a mapping (lost after a restore)."""
        found: dict[tuple[int, str], int] = {}
        period_field = kpi_field_name(self.kind.id, KPI_PERIOD)
        for period in sorted({p for _, p in missing}):
            rows = self.gateway.find_items(self.kind.entity_type_id, {period_field: period},
                                           select=["id", "title", "assignedById", period_field])
            for rep_id, _ in (k for k in missing if k[1] == period):
                title = desired[rep_id, period]["title"]
                match = ([r for r in rows if str(r.get("assignedById")) == str(rep_id)]
                         or [r for r in rows if r.get("title") == title])
                if match:
                    item_id = min(int(r["id"]) for r in match)
                    self.remember(rep_id, period, item_id)
                    found[rep_id, period] = item_id
        self.report.items_adopted += len(found)
        return found

    def create(self, key: tuple[int, str], fields: Fields) -> None:
        """``add_item`` with every field; the mapping and snapshot follow only on success."""
        try:
            item_id = self.gateway.add_item(self.kind.entity_type_id, fields)
        except AuthRevoked:
            raise
        except B24Error as exc:
            self.report.failures.append(_failure("KPI менеджера", f"{key[0]}/{key[1]}", exc))
            return
        # Marked after the add: the ID is known only now (items are not mirrored anyway).
        with session_scope(self.sessions) as session:
            own_writes.record(session, self.portal_id, KPI_ITEM, item_id, fields, now=self.now)
        self.remember(*key, item_id, fields)
        self.report.items_created += 1

    def update(self, changes: Mapping[int, Fields]) -> None:
        """``update_items`` in slices; a deleted item loses its mapping to be made again."""
        ids = list(changes)
        for part_ids in chunked(ids, SLICE):
            part = {item_id: changes[item_id] for item_id in part_ids}
            with session_scope(self.sessions) as session:
                _record_own(session, self.portal_id, KPI_ITEM, part, now=self.now, tz=self.tz)
            outcome = self.gateway.update_items(self.kind.entity_type_id, part)
            accepted = {i: part[i] for i, error in outcome.items() if error is None}
            with session_scope(self.sessions) as session:
                save_snapshot(session, self.portal_id, KPI_ITEM, accepted, self.now)
                for item_id, error in outcome.items():
                    if isinstance(error, NotFound):
                        forget(session, self.portal_id, KPI_ITEM, str(item_id))
                        session.execute(delete(KpiItem).where(
                            KpiItem.portal_id == self.portal_id, KpiItem.item_id == item_id,
                            KpiItem.entity_type_id == self.kind.entity_type_id))
            self.report.items_written += len(accepted)
            self.report.item_fields += sum(len(f) for f in accepted.values())
            self.report.failures += [_failure("KPI менеджера", i, e)
                                     for i, e in outcome.items() if e is not None]
            _raise_revoked(outcome)

    def changes(self, desired: Mapping[tuple[int, str], Fields],
                mapped: Mapping[tuple[int, str], int]) -> dict[int, Fields]:
        """The changed fields of mapped items, by item ID."""
        with self.sessions() as session:
            written = load_snapshot(session, self.portal_id, KPI_ITEM,
                                    [str(mapped[k]) for k in desired if k in mapped])
        return {mapped[key]: changed for key, fields in desired.items() if key in mapped
                and (changed := diff(fields, written.get(str(mapped[key]), {})))}

    def run(self, desired: Mapping[tuple[int, str], Fields]) -> None:
        """Adopt or create the missing items, then update the changed ones."""
        mapped = self.mappings({period for _, period in desired})
        changes = self.changes(desired, mapped)
        missing = [key for key in desired if key not in mapped]
        # Reads and writes beyond the snapshot only when there is something to write.
        if not (missing or changes) or not self.ensure_fields():
            return
        if missing:
            found = self.adopt(missing, desired)
            changes |= self.changes(desired, found)
            for key in missing:
                if key not in found:
                    self.create(key, desired[key])
        self.update(changes)


def write_items(sessions: sessionmaker[Session], gateway: Gateway, portal_id: int,
                rows: Iterable[RepKpi], report: WritebackReport, *, now: datetime, tz: str,
                rep_names: Mapping[int, str]) -> None:
    """One «KPI менеджера» item per rep and period: created once, then diff-updated."""
    groups: dict[tuple[int, str], list[RepKpi]] = defaultdict(list)
    for row in rows:
        groups[row.rep_id, row.period].append(row)
    if not groups:
        return
    kind = find_kpi_type(gateway)  # one read: the type's IDs name the fields
    if kind is None:
        report.problems.append("смарт-процесс «KPI менеджера» не найден: переустановите "
                               "приложение (b24app bind-events)")
        log.warning("portal %s: no «KPI менеджера» smart process; items not written", portal_id)
        return
    desired = {key: item_fields(kind, key[0], key[1], items, name=rep_name(rep_names, key[0]),
                                tz=tz)
               for key, items in groups.items()}
    _Items(sessions, gateway, portal_id, kind, report, now, tz).run(desired)


# ---------------------------------------------------------------- entry points


def rep_name(names: Mapping[int, str], rep_id: int) -> str:
    """The rep's «Имя Фамилия», or «сотрудник #ID» when the mirror has no name."""
    return names.get(rep_id) or f"сотрудник #{rep_id}"


def load_rep_names(session: Session, portal_id: int, ids: Iterable[int]) -> dict[int, str]:
    """«Имя Фамилия» of users from the mirror."""
    wanted = sorted(set(ids))
    out: dict[int, str] = {}
    for chunk in chunked(wanted, CHUNK):
        for user_id, name, last in session.execute(
                select(MirrorUser.id, MirrorUser.name, MirrorUser.last_name).where(
                    MirrorUser.portal_id == portal_id, MirrorUser.id.in_(chunk))):
            full = f"{name} {last}".strip()
            if full:
                out[user_id] = full
    return out


def write_back(sessions: sessionmaker[Session], gateway: Gateway, portal_id: int,
               rows: Iterable[RepKpi], companies: Iterable[CompanyMetrics], *,
               now: datetime, tz: str, rep_names: Mapping[int, str] | None = None
               ) -> WritebackReport:
    """Write what changed since the last write-back: company cards, then KPI items."""
    report = WritebackReport()
    write_companies(sessions, gateway, portal_id, companies, report, now=now, tz=tz)
    write_items(sessions, gateway, portal_id, rows, report, now=now, tz=tz,
                rep_names=rep_names or {})
    log.info("write-back of portal %s: %s companies (%s fields), %s items created, "
             "%s adopted, %s updated (%s fields), %s failures", portal_id,
             report.companies_written, report.company_fields, report.items_created,
             report.items_adopted, report.items_written, report.item_fields,
             len(report.failures))
    return report
