"""Benchmark of the CRM mirror's full sync and of the KPI compute (issue #5).

Run from the project root (about ten minutes; PostgreSQL is the local server of the tests):

    .venv/bin/python scripts/bench_kpi.py [--sync-deals 100000] [--kpi-deals 1000000]
        [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--skip-sync] [--skip-kpi]
        [--json PATH]

(a) Full sync: an emulator portal ``empty`` + N scale deals (and N/250 companies) served by a
child process, once with limits off and once with the cloud limits on (2 requests/s, burst 50);
the client is paced as in production when limits are on (``BitrixClient`` 2 req/s, burst 50),
unpaced otherwise. Each full load (``sync.bulk.bulk_load`` of the five CRM entities into a
fresh SQLite mirror) runs in its own spawned process, with the chained export and with
fast-bitrix24's ``get_all``, each against a freshly started server (an empty leaky bucket).
Memory is the growth of the process's peak RSS (``ru_maxrss``) over its value just before.

(b) KPI compute: a mirror with M synthetic deals over the three years before 2026-11-16, six
reps, M/250 companies (with budgets and card dates), 20k activities and 5k tasks, on a SQLite
file and on PostgreSQL, filled by bulk insert (``executemany`` on the raw sqlite3 connection,
``COPY`` on PostgreSQL, then ANALYZE). ``compute_period`` for November 2026 (the running month,
now = 2026-11-16 09:00 Novosibirsk, so every KPI including the CRM-freshness snapshot is
computed) runs in a fresh process, twice (cold, then warm), with the peak-RSS growth; then in
another fresh process under tracemalloc for the peak of Python allocations.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import random
import resource
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg
from psycopg import sql
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import KpiSettings
from b24app.db import make_engine, make_session_factory, migrate, normalize_url, url_to_string
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient
from b24app.models import (
    MirrorActivity,
    MirrorCompany,
    MirrorDepartment,
    MirrorGroup,
    MirrorTask,
    MirrorUser,
    Portal,
)
from b24emu.cli import build_server
from kpi.calendar import WorkingCalendar
from kpi.compute import compute_period
from kpi.periods import Period
from sync.bulk import ENTITIES, bulk_load

CTX = mp.get_context("spawn")
TZ = ZoneInfo("Asia/Novosibirsk")
ANCHOR = datetime(2026, 11, 16, 9, 0, tzinfo=TZ)
PERIOD = "2026-11"
REPS = (11, 12, 13, 14, 15, 16)
HEAD, SALES = 10, 2
PAGE_ROWS = 2500  # rows one batch request carries: 50 lists of 50
WORKDIR = Path(tempfile.gettempdir()) / "b24bench_kpi"  # SQLite files, replaced each run
SQLITE_PATH = WORKDIR / "kpi.sqlite3"
BENCH_DB = "b24bench_kpi"
SEASON = {1: 0.35, 2: 0.8, 3: 1.25, 4: 1.35, 5: 1.1, 6: 0.75, 7: 0.6, 8: 0.75, 9: 1.25,
          10: 1.35, 11: 1.3, 12: 0.95}
Figures = dict[str, Any]


def _rss_mib() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_main(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    conn.send(func(*args))


def _in_child(func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a fresh spawned process."""
    receiver, sender = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_child_main, args=(sender, func, args))
    proc.start()
    sender.close()
    try:
        return receiver.recv()
    except EOFError as exc:
        raise RuntimeError(f"{func.__name__}{args} failed in its process") from exc
    finally:
        proc.join()


# ---------------------------------------------------------------- (a) full sync


def _serve(conn: Connection, deals: int, limits: bool) -> None:
    """The server process: build, serve until told to stop, report rejections and RSS."""
    server = build_server(dataset="empty", scale=deals, limits=limits)
    server.start()
    conn.send(server.portal.webhook_url)
    conn.recv()
    server.stop()
    conn.send({"rejected_503": server.portal.bucket.rejected, "server_rss_mib": _rss_mib()})


def _full_sync(url: str, mode: str, limits: bool, db_path: str) -> Figures:
    """Load every entity of the portal into a fresh SQLite mirror."""
    rps, burst = (2.0, 50) if limits else (1000.0, 1000)
    engine = make_engine(f"sqlite:///{db_path}")
    migrate(engine)
    sessions = make_session_factory(engine)
    portal_id = _seed(sessions)
    client = BitrixClient(url, requests_per_second=rps, burst=burst)
    before, start = _rss_mib(), time.perf_counter()
    loads = bulk_load(sessions, portal_id, BitrixGateway(client), now=datetime.now(UTC),
                      mode=mode)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    client.close()
    engine.dispose()
    rows = {entity: load.read for entity, load in loads.items()}
    return {"mode": mode, "limits": limits, "seconds": seconds, "rows": rows,
            "requests": client.stats.requests, "commands": client.stats.by_method,
            # A list costs one request even when it is empty (it has to say so).
            "floor": sum(max(1, math.ceil(n / PAGE_ROWS)) for n in rows.values()),
            "deal_floor": math.ceil(rows["deal"] / PAGE_ROWS),
            "rss_mib": _rss_mib(), "rss_growth_mib": _rss_mib() - before}


def bench_sync(deals: int) -> list[Figures]:
    """Chained vs get_all, limits off and on; a fresh server for each run."""
    out = []
    for limits in (False, True):
        for mode in ("chained", "get_all"):
            conn, child = CTX.Pipe()
            proc = CTX.Process(target=_serve, args=(child, deals, limits), daemon=True)
            proc.start()
            child.close()
            url = conn.recv()
            path = WORKDIR / f"sync_{mode}_{int(limits)}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            figures = _in_child(_full_sync, url, mode, limits, str(path))
            conn.send("stop")
            figures.update(conn.recv())
            proc.join()
            out.append(figures)
            print(json.dumps(figures, ensure_ascii=False), flush=True)
    return out


# ---------------------------------------------------------------- (b) the 1M-deal mirror


def _seed(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        portal = Portal(member_id="bench", domain="bench.bitrix24.ru")
        session.add(portal)
        session.flush()
        return portal.id


def _days() -> tuple[list[date], list[float]]:
    """Working days of the three years before the anchor, weighted by the season."""
    first = ANCHOR.date() - timedelta(days=3 * 365)
    days = [first + timedelta(days=i) for i in range((ANCHOR.date() - first).days)]
    days = [d for d in days if d.weekday() < 5]
    return days, [SEASON[d.month] for d in days]


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)


DEAL_COLUMNS = ("portal_id", "id", "deleted_at", "synced_at", "title", "stage_id", "semantic",
                "category_id", "amount", "currency", "company_id", "contact_id",
                "assigned_by_id", "created_by_id", "created_at", "modified_at", "moved_at",
                "begin_date", "close_date", "closed", "last_activity_at", "raw")


def deal_rows(portal_id: int, deals: int, companies: int,
              seed: int = 1) -> Iterator[tuple[Any, ...]]:
    """Synthetic deals: 89.8 % won, 10 % lost, 0.2 % open; 2 % of a contact, 1 % of nobody."""
    rng = random.Random(seed)
    days, weights = _days()
    picks = rng.choices(range(len(days)), weights=weights, k=deals)
    stamp = datetime.now(UTC)
    for deal_id, pick in enumerate(picks, start=1):
        company = rng.randrange(1, companies + 1)
        rep = REPS[company % len(REPS)] if rng.random() < 0.9 else rng.choice(REPS)
        roll = rng.random()
        semantic = "S" if roll < 0.898 else "F" if roll < 0.998 else "P"
        who = rng.random()
        company_id = company if who >= 0.03 else None
        contact_id = rng.randrange(1, 2001) if 0.01 <= who < 0.03 else None
        day = days[pick]
        closed = _local(day, 9 + rng.randrange(8), 30)
        created = closed - timedelta(days=rng.randrange(1, 8))
        amount = Decimal(round(20_000 * rng.lognormvariate(1.2, 0.8), -1)).quantize(
            Decimal("0.01"))
        yield (portal_id, deal_id, None, stamp, f"Заказ фурнитуры Blum №{deal_id}",
               {"S": "WON", "F": "LOSE", "P": "NEW"}[semantic], semantic, 0, amount, "RUB",
               company_id, contact_id, rep, rep, created, closed, closed, created.date(), day,
               semantic != "P", None, "{}")


def _sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy stores it on SQLite (naive UTC text, ISO dates, 0/1, float)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _fill_deals_sqlite(path: Path, portal_id: int, deals: int, companies: int) -> None:
    marks = ", ".join("?" * len(DEAL_COLUMNS))
    statement = f"INSERT INTO mirror_deals ({', '.join(DEAL_COLUMNS)}) VALUES ({marks})"  # noqa: S608
    conn = sqlite3.connect(path)
    try:
        batch: list[tuple[Any, ...]] = []
        for row in deal_rows(portal_id, deals, companies):
            batch.append(tuple(_sqlite_value(v) for v in row))
            if len(batch) == 50_000:
                conn.executemany(statement, batch)
                batch.clear()
        conn.executemany(statement, batch)
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _fill_deals_pg(url: str, portal_id: int, deals: int, companies: int) -> None:
    libpq = url_to_string(normalize_url(url).set(drivername="postgresql"))
    with psycopg.connect(libpq) as conn:
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY mirror_deals ({}) FROM STDIN").format(
                sql.SQL(", ").join(map(sql.Identifier, DEAL_COLUMNS)))) as copy:
            for row in deal_rows(portal_id, deals, companies):
                copy.write_row(row)
        conn.execute("ANALYZE")


def _fill_small(sessions: sessionmaker[Session], portal_id: int, companies: int) -> None:
    """Org, companies with card fields, 20k activities and 5k tasks (ORM bulk inserts)."""
    rng = random.Random(2)
    days, weights = _days()
    with sessions.begin() as session:
        session.add_all([
            MirrorDepartment(portal_id=portal_id, id=1, name="НОИС", head_id=1),
            MirrorDepartment(portal_id=portal_id, id=SALES, name="Отдел продаж", parent_id=1,
                             head_id=HEAD),
            MirrorUser(portal_id=portal_id, id=HEAD, name="РОП", departments=[SALES]),
            *(MirrorUser(portal_id=portal_id, id=rep, name=f"Менеджер {rep}",
                         departments=[SALES]) for rep in REPS),
            MirrorGroup(portal_id=portal_id, id=1, name="Заявки в закупки"),
            MirrorGroup(portal_id=portal_id, id=3, name="Маркетинг: идеи для контента"),
        ])
        session.execute(insert(MirrorCompany), [
            {"portal_id": portal_id, "id": cid, "title": f"Клиент {cid}",
             "assigned_by_id": REPS[cid % len(REPS)],
             "raw": {"UF_CRM_CARD_BUDGET": f"{rng.randrange(1, 40) * 250_000}.00",
                     "UF_CRM_CARD_UPDATED": (ANCHOR.date() - timedelta(
                         days=rng.randrange(400))).isoformat() + "T00:00:00+07:00"}}
            for cid in range(1, companies + 1)])
        session.execute(insert(MirrorActivity), [
            {"portal_id": portal_id, "id": aid, "type_id": 1 if rng.random() < 0.5 else 2,
             "provider_id": "CRM_MEETING", "subject": "Визит к клиенту", "direction": 0,
             "completed": rng.random() < 0.95, "owner_type_id": 4,
             "owner_id": rng.randrange(1, companies + 1), "responsible_id": rng.choice(REPS),
             "start_time": (at := _local(rng.choices(days, weights)[0], 10)),
             "end_time": at, "created_at": at, "bindings": []}
            for aid in range(1, 20_001)])
        session.execute(insert(MirrorTask), [
            {"portal_id": portal_id, "id": tid, "title": "Потребности клиентов на неделю",
             "created_by": (rep := rng.choice(REPS)), "responsible_id": rep,
             "created_at": (at := _local(rng.choices(days, weights)[0], 11)),
             "status": 5 if rng.random() < 0.9 else 2, "group_id": 1,
             "deadline": at + timedelta(days=3), "closed_at": at + timedelta(days=1)}
            for tid in range(1, 5_001)])


def _prepare(backend: str, url: str, deals: int) -> Figures:
    """Migrate and fill one backend; seconds of the deal insert."""
    engine = make_engine(url)
    migrate(engine)
    sessions = make_session_factory(engine)
    portal_id = _seed(sessions)
    companies = math.ceil(deals / 250)
    _fill_small(sessions, portal_id, companies)
    engine.dispose()
    start = time.perf_counter()
    if backend == "sqlite":
        _fill_deals_sqlite(SQLITE_PATH, portal_id, deals, companies)
    else:
        _fill_deals_pg(url, portal_id, deals, companies)
    return {"backend": backend, "deals": deals, "companies": companies,
            "fill_seconds": time.perf_counter() - start, "portal_id": portal_id}


def _sql_clock(engine: Engine) -> dict[str, float]:
    """Counts statements and their cursor time."""
    clock = {"statements": 0.0, "seconds": 0.0, "_t": 0.0}

    @event.listens_for(engine, "before_cursor_execute")
    def _before(*_: Any) -> None:
        clock["_t"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(*_: Any) -> None:
        clock["statements"] += 1
        clock["seconds"] += time.perf_counter() - clock["_t"]

    return clock


def _compute(url: str, portal_id: int, traced: bool) -> Figures:
    """compute_period for PERIOD in this fresh process: timed twice, or traced once."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    calendar = WorkingCalendar()
    calendar.working_minutes(ANCHOR, ANCHOR + timedelta(days=1))  # build its table first
    period = Period.parse(PERIOD)

    def run() -> tuple[int, int]:
        with sessions() as session:
            rows, companies = compute_period(session, portal_id, period, now=ANCHOR,
                                             settings=KpiSettings(), calendar=calendar)
        return len(rows), len(companies)

    if traced:
        tracemalloc.start()
        run()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        engine.dispose()
        return {"tracemalloc_peak_mib": peak / 2**20}
    clock = _sql_clock(engine)
    before, start = _rss_mib(), time.perf_counter()
    rows, companies = run()
    cold = time.perf_counter() - start
    growth, sql_cold = _rss_mib() - before, dict(clock)
    start = time.perf_counter()
    run()
    warm = time.perf_counter() - start
    engine.dispose()
    return {"cold_seconds": cold, "warm_seconds": warm, "rss_growth_mib": growth,
            "rss_mib": _rss_mib(), "kpi_rows": rows, "company_metrics": companies,
            "sql_statements": int(sql_cold["statements"]),
            "sql_seconds": sql_cold["seconds"]}


def _pg_database(server_url: str) -> str:
    """A fresh benchmark database on the server; its URL."""
    base = normalize_url(server_url)
    libpq = url_to_string(base.set(drivername="postgresql"))
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(BENCH_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    return url_to_string(base.set(database=BENCH_DB))


def bench_kpi(deals: int, pg_url: str) -> list[Figures]:
    """Fill each backend, then time and trace compute_period in fresh processes."""
    out = []
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    targets = {"sqlite": f"sqlite:///{SQLITE_PATH}", "postgresql": _pg_database(pg_url)}
    for backend, url in targets.items():
        figures = _in_child(_prepare, backend, url, deals)
        figures.update(_in_child(_compute, url, figures["portal_id"], False))
        figures.update(_in_child(_compute, url, figures["portal_id"], True))
        out.append(figures)
        print(json.dumps(figures, ensure_ascii=False), flush=True)
    return out


def main() -> None:
    """Parse the arguments and run the selected parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync-deals", type=int, default=100_000)
    parser.add_argument("--kpi-deals", type=int, default=1_000_000)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--skip-kpi", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    WORKDIR.mkdir(parents=True, exist_ok=True)
    print(f"entities: {', '.join(ENTITIES)}", flush=True)
    figures: Figures = {}
    if not args.skip_sync:
        figures["sync"] = bench_sync(args.sync_deals)
    if not args.skip_kpi:
        figures["kpi"] = bench_kpi(args.kpi_deals, args.pg_url)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2), "utf-8")


if __name__ == "__main__":
    main()
