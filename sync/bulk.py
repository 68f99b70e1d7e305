"""A fast full load of deals, companies, contacts, activities and tasks straight into the mirror.

For an initial import and for benchmarks: no inbox, no handlers. Records arrive page by page
and are written a chunk per transaction (one batch request's worth, 2,500 rows), so memory is
bounded by a chunk whatever the portal's size, and a re-run writes only rows that differ
(the same comparison as ``sync.cursor.differs``: typed columns, and the listed keys of
``raw``). The cursor sync and the event handlers keep the mirror current afterwards.

Two readers: the chained export (``start=-1`` + ``>ID``, 50 pages per batch, streamed) and
fast-bitrix24's ``get_all``, which holds the whole table before it answers. The chained one is
the default: on one 100k-deal emulator portal it loaded in 10.4 s against 16.8 s with a peak
RSS growth of 51 MiB against 888 MiB, in the same 46 requests (docs/benchmarks.md, "CRM sync
and KPI compute").
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from queue import Empty, Queue
from typing import Any, Literal, Protocol, TypeVar, cast

from sqlalchemy import JSON, Insert, Numeric, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from b24app.db import session_scope
from b24app.gateway.protocol import Gateway, Record
from sync import mirror

ENTITIES = ("company", "contact", "deal", "activity", "task")
CHUNK = 2500
PAGE = 50
READ_AHEAD = 100  # pages (5,000 records) read ahead of the writes
T = TypeVar("T")
Mode = Literal["chained", "get_all"]
DEFAULT_MODE: Mode = "chained"


class AllRows(Protocol):
    """fast-bitrix24's whole-table read, as ``BitrixClient.get_all`` offers it."""

    def get_all(self, method: str, params: Any = None) -> list[dict[str, Any]]:
        """Every row of a list method."""
        ...


def chained_pages(gateway: Gateway, entity: str) -> Iterator[Sequence[Record]]:
    """Pages of ``entity`` from the chained ``start=-1`` export (``Gateway.iter_records``)."""
    yield from gateway.iter_records(entity)


def get_all_pages(client: AllRows, entity: str) -> Iterator[Sequence[Record]]:
    """Pages of ``entity`` cut from one ``get_all`` answer (the whole table in memory)."""
    from b24app.gateway.bitrix import kind_of  # the read recipes; only this mode needs them

    kind = kind_of(entity)
    with warnings.catch_warnings():
        # fast-bitrix24 warns about select "*" without a filter even when a filter is given
        # (it looks for "filter" among upper-cased keys); the full select is the point here.
        warnings.filterwarnings("ignore", "You are selecting all fields", UserWarning)
        rows = client.get_all(kind.method, {"select": list(kind.select)})
    for start in range(0, len(rows), PAGE):
        yield [kind.convert(row) for row in rows[start:start + PAGE]]


@dataclass(frozen=True)
class _Failed:
    """An exception raised while reading ahead, handed to the consumer."""

    error: BaseException


_END = object()


def read_ahead(pages: Iterable[T], depth: int = READ_AHEAD) -> Generator[T, None, None]:
    """``pages`` read in a thread up to ``depth`` ahead, so reading overlaps writing."""
    # The portal answers a batch while we write the previous one: a 100k-deal load takes
    # about the longer of the two instead of their sum. The bounded queue keeps memory bounded.
    queue: Queue[Any] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for page in pages:
                if stop.is_set():
                    return
                queue.put(page)
            queue.put(_END)
        except BaseException as exc:  # handed over and re-raised in the consumer
            queue.put(_Failed(exc))

    thread = threading.Thread(target=produce, name="bulk-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with suppress(Empty):
                queue.get(timeout=0.05)
        thread.join()


@dataclass(frozen=True)
class EntityLoad:
    """What loading one entity did."""

    entity: str
    read: int
    created: int
    updated: int
    unchanged: int
    seconds: float


def _insert_missing(session: Session, table: Table) -> Insert:
    # DO NOTHING: a row a handler wrote since the chunk was read is newer than ours.
    keys = ["portal_id", "id"]
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: what a JSON column gives back."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@cache
def _columns(entity: str) -> tuple[tuple[str, str, Decimal | None], ...]:
    """(key, kind, quantum) of the copied columns: kind is raw, json, money or plain."""
    out = []
    for column in mirror.model_for(entity).__table__.columns:
        if column.key in ("portal_id", "id", "deleted_at", "synced_at"):
            continue
        scale: int | None = getattr(column.type, "scale", None)
        quantum = None
        if column.key == "raw":
            kind = "raw"
        elif isinstance(column.type, JSON):
            kind = "json"
        elif isinstance(column.type, Numeric) and scale is not None:
            kind, quantum = "money", Decimal(1).scaleb(-scale)
        else:
            kind = "plain"
        out.append((column.key, kind, quantum))
    return tuple(out)


def row_values(entity: str, record: Record) -> dict[str, Any]:
    """``sync.mirror.row_values`` without its JSON round trip (2× faster on wide records)."""
    # ``fields`` came out of json.loads, so it is stored as is; the typed JSON columns hold
    # tuples (bindings, departments) that a JSON column returns as lists.
    values: dict[str, Any] = {}
    for key, kind, quantum in _columns(entity):
        if kind == "raw":
            values[key] = dict(getattr(record, "fields", {}))
            continue
        value = getattr(record, key)
        if kind == "json":
            value = _plain(value)
        elif kind == "money" and isinstance(value, Decimal) and quantum is not None:
            value = value.quantize(quantum)
        values[key] = value
    return values


def _merged(entity: str, record: Record, stored: Any | None) -> tuple[dict[str, Any], bool]:
    """The row's new values and whether they differ from ``stored`` (None: a new row)."""
    values = row_values(entity, record)
    if stored is None:
        return values, True
    old = stored._mapping
    raw = values.get("raw")
    if raw is not None:
        # A list answers fewer keys than a get: keep the stored ones, compare the listed ones.
        before: dict[str, Any] = old["raw"] or {}
        values["raw"] = {**before, **raw}
        if any(before.get(k) != v for k, v in raw.items()):
            return values, True
    changed = old["deleted_at"] is not None or any(
        old[name] != value for name, value in values.items() if name != "raw")
    return values, changed


def write_chunk(session: Session, portal_id: int, entity: str, records: Iterable[Record], *,
                now: datetime) -> tuple[int, int, int]:
    """Insert new rows and update differing ones; (created, updated, unchanged)."""
    model = mirror.model_for(entity)
    table = cast(Table, model.__table__)
    latest = {r.id: r for r in records}  # a record listed twice: the later page wins
    if not latest:
        return 0, 0, 0
    names = [c.key for c in table.columns if c.key not in ("portal_id", "synced_at")]
    stored = {row.id: row for row in session.execute(
        select(*(table.c[n] for n in names))
        .where(table.c.portal_id == portal_id, table.c.id.in_(list(latest))))}
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for rid, record in latest.items():
        values, changed = _merged(entity, record, stored.get(rid))
        if rid not in stored:
            inserts.append({**values, "portal_id": portal_id, "id": rid, "deleted_at": None,
                            "synced_at": now})
        elif changed:
            updates.append({**values, "b_portal": portal_id, "b_id": rid, "deleted_at": None,
                            "synced_at": now})
    if inserts:
        session.execute(_insert_missing(session, table), inserts)
    if updates:
        session.execute(update(table).where(table.c.portal_id == bindparam("b_portal"),
                                            table.c.id == bindparam("b_id")), updates)
    return len(inserts), len(updates), len(latest) - len(inserts) - len(updates)


def load_entity(sessions: sessionmaker[Session], portal_id: int, entity: str,
                pages: Iterable[Sequence[Record]], *, now: datetime,
                chunk: int = CHUNK) -> EntityLoad:
    """Write ``pages`` of ``entity`` into the mirror, one transaction per ``chunk`` records."""
    began = time.perf_counter()
    buffer: list[Record] = []
    read = created = updated = unchanged = 0

    def flush() -> None:
        nonlocal created, updated, unchanged
        with session_scope(sessions) as session:
            new, changed, same = write_chunk(session, portal_id, entity, buffer, now=now)
        created, updated, unchanged = created + new, updated + changed, unchanged + same
        buffer.clear()

    for page in read_ahead(pages):
        buffer.extend(page)
        read += len(page)
        if len(buffer) >= chunk:
            flush()
    if buffer:
        flush()
    return EntityLoad(entity, read, created, updated, unchanged, time.perf_counter() - began)


def bulk_load(sessions: sessionmaker[Session], portal_id: int, gateway: Gateway, *,
              now: datetime, entities: Iterable[str] = ENTITIES, mode: Mode = DEFAULT_MODE,
              chunk: int = CHUNK) -> dict[str, EntityLoad]:
    """Load every record of each entity into the mirror; ``get_all`` needs a BitrixGateway."""
    out: dict[str, EntityLoad] = {}
    for entity in entities:
        mirror.model_for(entity)  # ValueError for an entity without a mirror, before any call
        if mode == "get_all":
            client: AllRows = gateway.client  # type: ignore[attr-defined]
            pages = get_all_pages(client, entity)
        else:
            pages = chained_pages(gateway, entity)
        out[entity] = load_entity(sessions, portal_id, entity, pages, now=now, chunk=chunk)
    return out
