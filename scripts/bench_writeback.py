"""KPI write-back benchmark: write requests against the floor ceil(changed / 50), wall time.

Command (about a minute with the defaults; ``--pg`` repeats everything on PostgreSQL):

    .venv/bin/python scripts/bench_writeback.py [--companies 1000,10000] [--reps 10]
        [--share 0.1] [--pg] [--pg-url URL] [--json PATH]

For each portal size N a child process serves an emulator portal (limits off) with N
companies and ``--reps`` sales reps; the service side runs here, on a freshly migrated SQLite
file (or a throwaway PostgreSQL database), over a ``BitrixGateway`` on the admin's webhook with
no client throttle. ``lifecycle.setup_portal`` creates the company fields, «KPI менеджера» and
its 49 fields first. Then three write-backs of ``sync.writeback.write_back``:

1. first: every company's nine fields and one new item per rep (all 16 KPIs);
2. again: the same values (the floor is zero requests);
3. changed: ``--share`` of the companies get a new LTV, every rep a new visits count.

A write request is an HTTP request sent inside ``update_many``, ``update_items`` or
``add_item``; reads (``crm.type.list``, ``crm.item.fields``) are counted apart. The floor of
company writes is ceil(changed companies / 50); items are added one request each and
updated ceil(changed items / 50). Figures only; never part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from b24app.config import PortalSettings, Settings
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient
from b24app.gateway.errors import B24Error
from b24app.lifecycle import setup_portal
from kpi.definitions import DEFINITIONS, KpiId
from kpi.results import CompanyMetrics, RepKpi

CTX = mp.get_context("spawn")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
TZ = "Asia/Novosibirsk"
PERIOD = "2026-11"
Figures = dict[str, Any]


# -- the portal process ------------------------------------------------------------------------
def _serve(conn: Connection, companies: int, reps: int) -> None:
    """Build the portal, serve it until told to stop."""
    import b24emu.methods  # noqa: F401 - registers the REST methods act() calls
    from b24emu import EmulatorServer, Portal, PortalConfig
    from b24emu.datasets import build_dataset
    from b24emu.dispatch import act
    from b24emu.limits import LimitSettings

    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False)))
    build_dataset(portal, "empty")
    rep_ids = [int(portal.users.insert({"NAME": f"Менеджер{n}", "LAST_NAME": f"Фамилия{n}",
                                        "ACTIVE": True, "UF_DEPARTMENT": [1],
                                        "USER_TYPE": "employee"})) for n in range(reps)]
    ids = [int(act(portal, "crm.company.add", {"fields": {
        "TITLE": f"ООО Клиент {n}", "ASSIGNED_BY_ID": rep_ids[n % reps]}}))
        for n in range(companies)]
    server = EmulatorServer(portal).start()
    conn.send((portal.webhook_url, ids, rep_ids))
    conn.recv()
    server.stop()


class Served:
    """An emulator portal in a child process."""

    def __init__(self, companies: int, reps: int) -> None:
        self._conn, child = CTX.Pipe()
        self._proc = CTX.Process(target=_serve, args=(child, companies, reps), daemon=True)
        self._proc.start()
        child.close()
        self.url, self.companies, self.reps = self._conn.recv()

    def stop(self) -> None:
        """Stop serving."""
        self._conn.send("stop")
        self._proc.join()


# -- the service side --------------------------------------------------------------------------
class CountingGateway(BitrixGateway):
    """Counts the HTTP requests sent by the write calls apart from everything else."""

    writes = 0

    def _counted(self, call: Any, *args: Any) -> Any:
        before = self.client.stats.requests
        try:
            return call(*args)
        finally:
            self.writes += self.client.stats.requests - before

    def update_many(self, entity: str, changes: Mapping[int, Mapping[str, Any]]
                    ) -> dict[int, B24Error | None]:
        """Counted ``update_many``."""
        result: dict[int, B24Error | None] = self._counted(super().update_many, entity, changes)
        return result

    def update_items(self, entity_type_id: int, changes: Mapping[int, Mapping[str, Any]]
                     ) -> dict[int, B24Error | None]:
        """Counted ``update_items``."""
        result: dict[int, B24Error | None] = self._counted(super().update_items,
                                                           entity_type_id, changes)
        return result

    def add_item(self, entity_type_id: int, fields: Mapping[str, Any]) -> int:
        """Counted ``add_item``."""
        return int(self._counted(super().add_item, entity_type_id, fields))


def metrics_of(ids: Sequence[int], bump: set[int] | None = None) -> list[CompanyMetrics]:
    """Every field set, values varied by ID; ``bump`` companies get another LTV."""
    out = []
    for cid in ids:
        extra = 1000 if bump and cid in bump else 0
        out.append(CompanyMetrics(
            cid, Decimal(cid * 10 + extra) + Decimal("0.25"), Decimal(cid * 3),
            date(2026, 1, 1) + timedelta(days=cid % 300), ("new", "returning", "at_risk",
                                                           "lost")[cid % 4],
            cid % 3 == 0, cid % 11, date(2026, 10, 1), date(2026, 9, 1) + timedelta(cid % 60),
            Decimal(cid % 100) / 100))
    return out


def kpi_rows(reps: Sequence[int], visits: int) -> list[RepKpi]:
    """All 16 KPIs of every rep."""
    rows = []
    for rep in reps:
        for n, kpi in enumerate(KpiId):
            value = Decimal(visits if kpi is KpiId.VISITS else n * 7 + rep % 5)
            target = DEFINITIONS[kpi].default_target or Decimal(100)
            rows.append(RepKpi(rep, PERIOD, kpi.value, value, target,
                               "ok" if value >= target else "below"))
    return rows


def _database(url: str) -> tuple[Any, int]:
    """Migrate and register the portal; the session factory and the portal's ID."""
    from b24app import portals
    from b24app.crypto import SecretBox, generate_key
    from b24app.db import make_engine, make_session_factory, migrate, session_scope
    from b24app.models import utcnow

    engine = make_engine(url)
    migrate(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        portal = portals.register_install(
            session, SecretBox(generate_key()), member_id=uuid.uuid4().hex,
            domain="bench.bitrix24.ru", client_endpoint="https://bench.bitrix24.ru/rest/",
            access="a", refresh="r", expires_at=utcnow() + timedelta(hours=1),
            application_token=uuid.uuid4().hex, scope="crm", version="1")
        portal_id = portal.id
    return sessions, portal_id


@contextlib.contextmanager
def pg_database(server_url: str) -> Iterator[str]:
    """A throwaway PostgreSQL database on ``server_url``, dropped afterwards."""
    import psycopg
    from psycopg import sql

    from b24app.db import normalize_url, url_to_string

    server = normalize_url(server_url)
    libpq = url_to_string(server.set(drivername="postgresql"))
    name = f"b24bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_to_string(server.set(database=name))
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def measure(db_url: str, companies: int, reps: int, share: float) -> list[Figures]:
    """The three runs on one portal size; a line of figures per run."""
    from sync.writeback import write_back

    served = Served(companies, reps)
    client = BitrixClient(served.url, requests_per_second=10_000.0, burst=10_000)
    gateway = CountingGateway(client)
    try:
        setup_portal(gateway, Settings(portal=PortalSettings(mode="webhook")), "http://127.0.0.1",
                     "1")
        sessions, portal_id = _database(db_url)
        names = {rep: f"Менеджер {n}" for n, rep in enumerate(served.reps)}
        changed = set(served.companies[::max(1, round(1 / share))]) if share else set()
        runs = [("first", metrics_of(served.companies), kpi_rows(served.reps, 12)),
                ("again", metrics_of(served.companies), kpi_rows(served.reps, 12)),
                ("changed", metrics_of(served.companies, changed), kpi_rows(served.reps, 13))]
        out = []
        for label, metrics, rows in runs:
            requests, writes = client.stats.requests, gateway.writes
            start = time.perf_counter()
            report = write_back(sessions, gateway, portal_id, rows, metrics, now=NOW, tz=TZ,
                                rep_names=names)
            seconds = time.perf_counter() - start
            write_requests = gateway.writes - writes
            floor = (math.ceil(report.companies_written / 50) + report.items_created
                     + math.ceil(report.items_written / 50))
            out.append({"companies": companies, "reps": reps, "run": label,
                        "changed_companies": report.companies_written,
                        "company_floor": math.ceil(report.companies_written / 50),
                        "items_created": report.items_created,
                        "items_updated": report.items_written,
                        "write_requests": write_requests, "floor": floor,
                        "read_requests": client.stats.requests - requests - write_requests,
                        "seconds": seconds, "ok": report.ok})
        sessions.kw["bind"].dispose()
        return out
    finally:
        client.close()
        served.stop()


def main() -> None:
    """Run the measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", default="1000,10000",
                        help="portal sizes, comma-separated")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--share", type=float, default=0.1,
                        help="share of companies changed in the third run")
    parser.add_argument("--pg", action="store_true", help="also on PostgreSQL")
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL server for --pg")
    parser.add_argument("--json", metavar="PATH", help="also dump the figures as JSON here")
    args = parser.parse_args()
    sizes = [int(x) for x in args.companies.split(",") if x.strip()]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'db':10} {'companies':>9} {'run':8} {'changed':>7} {'items +/~':>9} "
          f"{'write req':>9} {'floor':>5} {'reads':>5} {'wall s':>7}")
    figures: list[Figures] = []
    backends = ["sqlite"] + (["postgresql"] if args.pg else [])
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for size in sizes:
                with contextlib.ExitStack() as stack:
                    url = (f"sqlite:///{Path(tmp) / f'bench{size}.sqlite3'}"
                           if backend == "sqlite" else stack.enter_context(
                               pg_database(args.pg_url)))
                    for row in measure(url, size, args.reps, args.share):
                        row["db"] = backend
                        figures.append(row)
                        print(f"{backend:10} {size:>9,} {row['run']:8} "
                              f"{row['changed_companies']:>7,} "
                              f"{row['items_created']:>4}/{row['items_updated']:<4} "
                              f"{row['write_requests']:>9,} {row['floor']:>5,} "
                              f"{row['read_requests']:>5} {row['seconds']:>7.2f}"
                              + ("" if row["ok"] else "  FAILURES"))
    print("floor = ceil(changed companies / 50) + items added + ceil(items updated / 50)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
