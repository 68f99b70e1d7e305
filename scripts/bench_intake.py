"""Event intake benchmark: ``POST /b24/events`` under gunicorn against a bare Flask endpoint.

Command (defaults: 200 events/s for 60 s per line, about 8 minutes, 12 with ``--pg``, which
adds the app on PostgreSQL; ``--quick``: 10 s per line and 2 s ramp steps, about 3 minutes):

    .venv/bin/python scripts/bench_intake.py [--quick] [--pg] [--rate 200] [--seconds 60]
        [--workers 2] [--classes sync,gthread] [--threads 4] [--wait-quiet LOAD]
        [--no-bare] [--no-ramp] [--json PATH]

Per worker class (``sync``, ``gthread``) it starts, one after the other, gunicorn serving
``b24app.wsgi:create()`` on a SQLite file (and on a throwaway PostgreSQL database of
``--pg-url``) with one portal registered directly in the database, and gunicorn serving a bare
Flask app whose one endpoint reads the body and answers 200, with the same worker count. A
separate process drives each with an open-loop load: request *i* is due at ``t0 + i / rate``
whatever happened to earlier ones, and its latency runs from that due time to the end of its
answer (no coordinated omission). Every event is a well-formed ONCRMDEALUPDATE form with its
own deal ID and ``ts``. Then a ramp (100 → 1600 events/s, doubling, ``--ramp-seconds`` each)
finds the highest rate each target sustains (it stops at the first step that fails). Server
CPU per event (the gunicorn workers' user + system time over the sustained run, from /proc) is
reported too: on a shared machine it moves far less than latency does. Figures only; never
part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parents[1]
# The tree this script lives in, before any installed copy: a snapshot can be measured too.
sys.path.insert(0, str(ROOT))
MEMBER_ID = "b3c1d2e4f5a60718293a4b5c6d7e8f90"
APP_TOKEN = "bench-application-token-0123456789"  # noqa: S105 - made up for the bench
DOMAIN = "bench.bitrix24.ru"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RAMP = (100, 200, 400, 800, 1600)
# A ramp step is sustained when nearly every event was acknowledged in time.
SUSTAIN_SHARE = 0.95
SUSTAIN_P99_MS = 500.0
Figures = dict[str, Any]


# -- the bare baseline (gunicorn imports it from here) ------------------------------------------
def bare_app() -> Any:
    """A Flask app whose ``POST /b24/events`` reads the body and answers 200."""
    from flask import Flask, request

    app = Flask("bare")

    @app.post("/b24/events")
    def events() -> tuple[str, int]:
        request.get_data()
        return '{"result":"ok"}', 200

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


# -- the load generator (a child process) -------------------------------------------------------
def event_form(number: int) -> bytes:
    """One ONCRMDEALUPDATE as Bitrix24 posts it; ``number`` makes the dedup key distinct."""
    pairs = [("event", "ONCRMDEALUPDATE"), ("event_handler_id", "17"),
             ("data[FIELDS][ID]", str(number)), ("ts", str(1_700_000_000 + number)),
             ("auth[access_token]", "a" * 32), ("auth[expires_in]", "3600"),
             ("auth[scope]", "crm"), ("auth[domain]", DOMAIN),
             ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"),
             ("auth[status]", "L"), ("auth[client_endpoint]", f"https://{DOMAIN}/rest/"),
             ("auth[member_id]", MEMBER_ID), ("auth[application_token]", APP_TOKEN)]
    return urlencode(pairs).encode()


async def _drive(url: str, rate: float, seconds: float, first: int) -> Figures:
    import aiohttp

    count = max(1, int(rate * seconds))
    bodies = [event_form(first + i) for i in range(count)]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    send_lag: list[float] = []
    dues: list[float] = []  # the due time of each entry of ``latencies``
    errors: dict[str, int] = {}
    accepted = 0
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    connector = aiohttp.TCPConnector(limit=1024)
    timeout = aiohttp.ClientTimeout(total=30)

    async def send(session: aiohttp.ClientSession, body: bytes, due: float) -> None:
        nonlocal accepted
        send_lag.append(loop.time() - due)
        try:
            async with session.post(url, data=body, headers=headers) as response:
                text = await response.text()
                if response.status == 200 and '"ok"' in text.replace(" ", ""):
                    accepted += 1
                else:
                    key = f"HTTP {response.status}"
                    errors[key] = errors.get(key, 0) + 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
        latencies.append(loop.time() - due)
        dues.append(due)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        start = loop.time() + 0.05
        for i, body in enumerate(bodies):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(session, body, due)))
        await asyncio.gather(*tasks)
        wall = loop.time() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"offered_rate": rate, "sent": count, "accepted": accepted, "errors": errors,
            "wall_s": wall, "achieved_rate": accepted / wall, **_percentiles(latencies),
            "send_lag_p99_ms": _pct(sorted(send_lag), 0.99) * 1000,
            "timeline": _timeline(dues, latencies, start, seconds),
            "client_cpu_s": usage.ru_utime + usage.ru_stime}


def _timeline(dues: list[float], latencies: list[float], start: float,
              seconds: float) -> list[list[float]]:
    """Per tenth of the run (by due time): ``[from s, p50 ms, max ms]``, to show drift."""
    width = seconds / 10
    slices: list[list[float]] = [[] for _ in range(10)]
    for due, latency in zip(dues, latencies, strict=True):
        slices[min(9, int((due - start) / width))].append(latency)
    return [[round(i * width, 1), _pct(sorted(part), 0.5) * 1000, max(part) * 1000]
            for i, part in enumerate(slices) if part]


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _percentiles(latencies: list[float]) -> Figures:
    ordered = sorted(latencies)
    return {"p50_ms": _pct(ordered, 0.50) * 1000, "p90_ms": _pct(ordered, 0.90) * 1000,
            "p99_ms": _pct(ordered, 0.99) * 1000, "max_ms": ordered[-1] * 1000,
            "mean_ms": statistics.fmean(ordered) * 1000}


def load(url: str, rate: float, seconds: float, first: int) -> Figures:
    """Run the open-loop generator in a fresh process (own CPU, own GIL) and read its figures."""
    spec = json.dumps({"url": url, "rate": rate, "seconds": seconds, "first": first})
    done = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True,
                          text=True, check=True, timeout=seconds + 120)
    figures: Figures = json.loads(done.stdout)
    return figures


# -- servers ------------------------------------------------------------------------------------
def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Target:
    """What gunicorn serves, and how to count what it stored."""

    label: str
    app: str
    env: dict[str, str] = field(default_factory=dict)
    database_url: str = ""

    def inbox_rows(self) -> int | None:
        """Rows in ``inbox_events`` (``None`` for the bare app)."""
        if not self.database_url:
            return None
        from sqlalchemy import func, select

        from b24app.db import make_engine
        from b24app.models import InboxEvent

        engine = make_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return int(connection.scalar(select(func.count()).select_from(InboxEvent)) or 0)
        finally:
            engine.dispose()


def workers_cpu(master: int) -> float:
    """CPU seconds (user + system) used so far by the worker processes of a gunicorn master."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # Fields after the ")" that closes the command: state ppid ... utime(12) stime(13).
            fields = stat.read_text(encoding="ascii").rpartition(")")[2].split()
            if int(fields[1]) == master:
                total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class Served:
    """A running gunicorn: the events URL and the master's pid."""

    url: str
    pid: int


@contextlib.contextmanager
def gunicorn(target: Target, workers: int, worker_class: str, threads: int,
             log: Path) -> Iterator[Served]:
    """Serve ``target`` on a free port; stops gunicorn afterwards."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("gunicorn")), "-w", str(workers),
               "-k", worker_class, "-b", f"127.0.0.1:{port}", "--pythonpath",
               f"{ROOT},{ROOT / 'scripts'}", "--backlog", "4096", "--log-level", "warning"]
    if worker_class == "gthread":
        command += ["--threads", str(threads)]
    with log.open("ab") as sink:
        proc = subprocess.Popen([*command, target.app], cwd=ROOT, stdout=sink, stderr=sink,
                                env={**os.environ, **target.env})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"gunicorn for {target.label} did not start:\n{tail}")
            time.sleep(0.2)
        yield Served(f"{base}/b24/events", proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def prepare_database(url: str, key: str) -> None:
    """Migrate and register the benchmark portal directly (as a verified install would)."""
    from b24app import portals
    from b24app.crypto import SecretBox
    from b24app.db import make_engine, make_session_factory, migrate, session_scope
    from b24app.models import utcnow

    engine = make_engine(url)
    try:
        migrate(engine)
        with session_scope(make_session_factory(engine)) as session:
            portals.register_install(
                session, SecretBox(key), member_id=MEMBER_ID, domain=DOMAIN,
                client_endpoint=f"https://{DOMAIN}/rest/", access="bench-access",
                refresh="bench-refresh", expires_at=utcnow() + timedelta(hours=1),
                application_token=APP_TOKEN, scope="crm,task", version="1")
    finally:
        engine.dispose()


def app_target(label: str, database_url: str, workdir: Path) -> Target:
    """The service over ``database_url``, configured through a TOML file."""
    from b24app.crypto import generate_key

    key = generate_key()
    prepare_database(database_url, key)
    config = workdir / f"{label}.toml"
    config.write_text(f'[app]\nencryption_key = "{key}"\n[database]\nurl = "{database_url}"\n',
                      encoding="utf-8")
    return Target(label, "b24app.wsgi:create()", {"B24APP_CONFIG": str(config)}, database_url)


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


# -- measuring ----------------------------------------------------------------------------------
class Ids:
    """Distinct deal IDs across every run of the process (so no event is a duplicate)."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, count: int) -> int:
        """The first of ``count`` fresh IDs."""
        first, self.next = self.next, self.next + count
        return first


def wait_quiet(limit: float, patience: float = 600.0) -> float:
    """Wait (up to ``patience`` s) until the 1-minute load average is below ``limit``."""
    deadline = time.monotonic() + patience
    while limit > 0 and os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(10)
    return os.getloadavg()[0]


def measure(target: Target, served: Served, args: argparse.Namespace, ids: Ids) -> Figures:
    """Warm-up, the sustained run (with the inbox check), then the ramp."""
    url = served.url
    load(url, 50, 1, ids.take(50))  # imports, connection pools, first queries
    load_before = wait_quiet(args.wait_quiet)
    before = target.inbox_rows()
    first = ids.take(int(args.rate * args.seconds) + 1)
    cpu = workers_cpu(served.pid)
    run = load(url, args.rate, args.seconds, first)
    # CPU time is the figure least moved by other jobs on a shared machine.
    run["server_cpu_ms_per_event"] = (workers_cpu(served.pid) - cpu) * 1000 / run["sent"]
    after = target.inbox_rows()
    if before is not None and after is not None:
        run["inbox_new_rows"] = after - before
    print_row(target.label, run)
    ramp = []
    for rate in () if args.no_ramp else RAMP:
        step = load(url, rate, args.ramp_seconds, ids.take(int(rate * args.ramp_seconds) + 1))
        step["sustained"] = (not step["errors"] and step["p99_ms"] <= SUSTAIN_P99_MS
                             and step["accepted"] >= SUSTAIN_SHARE * step["sent"]
                             and step["achieved_rate"] >= SUSTAIN_SHARE * rate)
        ramp.append(step)
        print(f"    ramp {rate:>5}/s: {step['achieved_rate']:7.1f}/s p50 {step['p50_ms']:7.1f} "
              f"p99 {step['p99_ms']:8.1f} ms errors {_errors(step)}"
              f"{'' if step['sustained'] else '  (not sustained)'}", flush=True)
        if not step["sustained"]:
            break  # higher rates only pile up a backlog that spills into the next run
    sustained = [s["offered_rate"] for s in ramp if s["sustained"]]
    return {"target": target.label, "run": run, "ramp": ramp, "load_before": load_before,
            "load_after": os.getloadavg()[0], "max_sustained": max(sustained) if sustained else 0}


def machine() -> Figures:
    """nproc, RAM, load average and Python of this machine."""
    meminfo = Path("/proc/meminfo").read_text(encoding="ascii").split()
    ram_kib = int(meminfo[meminfo.index("MemTotal:") + 1])
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return {"nproc": os.cpu_count(), "ram_gib": round(ram_kib / 1024**2, 1),
            "uptime": uptime.strip(), "python": sys.version.split()[0]}


def _errors(figures: Figures) -> str:
    errors: dict[str, int] = figures["errors"]
    return ", ".join(f"{kind} x{count}" for kind, count in errors.items()) or "0"


def print_row(label: str, run: Figures) -> None:
    """One line of the sustained-load table."""
    rows = run.get("inbox_new_rows")
    # A request the client gave up on (timeout) may still be stored by the server later.
    check = "" if rows is None else f"; inbox +{rows} (accepted " + (
        "+ 0)" if rows == run["accepted"] else f"{rows - run['accepted']:+d})")
    print(f"    {run['offered_rate']:.0f}/s for {run['wall_s']:.0f} s: p50 {run['p50_ms']:.1f} "
          f"p90 {run['p90_ms']:.1f} p99 {run['p99_ms']:.1f} max {run['max_ms']:.1f} ms; "
          f"{run['achieved_rate']:.1f}/s; accepted {run['accepted']}/{run['sent']}; errors "
          f"{_errors(run)}{check}; server CPU {run['server_cpu_ms_per_event']:.2f} ms/event; "
          f"client send lag p99 {run['send_lag_p99_ms']:.1f} ms, client CPU "
          f"{run['client_cpu_s']:.1f} s", flush=True)
    print("      p50/max ms by tenth of the run: " + "  ".join(
        f"{p50:.0f}/{peak:.0f}" for _, p50, peak in run["timeline"]), flush=True)


def print_summary(results: list[Figures]) -> None:
    """The table of every target and worker class."""
    print("\ntarget          class     p50 ms  p90 ms  p99 ms  max ms   ev/s  accepted  inbox "
          "  max sustained  load      CPU ms/ev")
    for item in results:
        run = item["run"]
        print(f"{item['target']:15} {item['worker_class']:8} {run['p50_ms']:7.1f} "
              f"{run['p90_ms']:7.1f} {run['p99_ms']:7.1f} {run['max_ms']:7.1f} "
              f"{run['achieved_rate']:6.1f} {run['accepted']:>9} "
              f"{run.get('inbox_new_rows', '-')!s:>6}   {item['max_sustained']:>6}/s    "
              f"{item['load_before']:.1f}→{item['load_after']:.1f}   "
              f"{run['server_cpu_ms_per_event']:.2f}")


def main() -> None:
    """Run every target under every worker class and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="10 s per sustained run, 2 s ramp")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="sustained run length")
    parser.add_argument("--ramp-seconds", type=float, default=5.0, help="length of a ramp step")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn -w (default 2)")
    parser.add_argument("--classes", default="sync,gthread", help="gunicorn worker classes")
    parser.add_argument("--threads", type=int, default=4, help="threads of a gthread worker")
    parser.add_argument("--pg", action="store_true", help="also the app on PostgreSQL")
    parser.add_argument("--pg-url", default=PG_URL, help="PostgreSQL server for --pg")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare Flask baseline")
    parser.add_argument("--no-ramp", action="store_true", help="the sustained runs only")
    parser.add_argument("--json", metavar="PATH", help="also dump every figure as JSON here")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="LOAD",
                        help="before each sustained run wait (up to 10 min) for the 1-minute "
                             "load average to drop below LOAD (a shared machine)")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C: gunicorn stopped, the throwaway database dropped.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(asyncio.run(_drive(spec["url"], spec["rate"], spec["seconds"],
                                            spec["first"]))))
        return
    if args.quick:
        args.seconds, args.ramp_seconds = 10.0, 2.0
    figures: Figures = {"machine_before": machine(), "args": vars(args), "results": []}
    print(f"{figures['machine_before']}\nopen loop {args.rate:.0f} events/s for "
          f"{args.seconds:.0f} s, gunicorn -w {args.workers}", flush=True)
    ids = Ids()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp, \
            contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        targets = [app_target("app-sqlite", f"sqlite:///{workdir / 'bench.sqlite3'}", workdir)]
        if args.pg:
            targets.append(app_target("app-postgresql", stack.enter_context(
                pg_database(args.pg_url)), workdir))
        if not args.no_bare:
            targets.append(Target("bare-flask", "bench_intake:bare_app()"))
        for worker_class in args.classes.split(","):
            for target in targets:
                print(f"  {target.label} ({worker_class}):", flush=True)
                with gunicorn(target, args.workers, worker_class, args.threads,
                              workdir / "gunicorn.log") as served:
                    result = {"worker_class": worker_class, **measure(target, served, args, ids)}
                figures["results"].append(result)
    print_summary(figures["results"])
    figures["machine_after"] = machine()
    print(f"after: {figures['machine_after']['uptime']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
