"""Benchmark of the Bitrix24 emulator: dataset builds, loopback requests per second, full reads.

Run from the project root (a few minutes; ``--quick`` shortens each load test from 5 s to 1 s):

    .venv/bin/python scripts/bench_emulator.py [--quick] [--deals 100000] [--json PATH]

Limits are off everywhere. Each dataset build, each served portal and each full read runs in
its own fresh (spawned) process, so ``ru_maxrss`` belongs to one measurement: memory is the
growth of the peak RSS over the process's RSS just before the measured step (not tracemalloc).
Load tests: the server runs in a child process, the client threads (one ``requests.Session``
with keep-alive each) in this one; every list call selects the seven fields of ``SELECT``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from b24app.gateway import encode
from b24app.gateway.client import BitrixClient
from b24emu.cli import build_server
from b24emu.datasets import build_dataset
from b24emu.limits import LimitSettings
from b24emu.portal import Portal, PortalConfig

SELECT = ["ID", "TITLE", "OPPORTUNITY", "STAGE_ID", "CLOSEDATE", "COMPANY_ID", "ASSIGNED_BY_ID"]
GET_ALL_LIMIT = 120.0
FALLBACK_DEALS = 20_000
CTX = mp.get_context("spawn")
Figures = dict[str, Any]
Request = Callable[[requests.Session, int], int]


def _rss_mib() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_main(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    conn.send(func(*args))


def _in_child(func: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
    """``func(*args)`` in a fresh process; ``None`` when it outlives ``timeout`` seconds."""
    receiver, sender = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_child_main, args=(sender, func, args))
    proc.start()
    sender.close()
    try:
        result = receiver.recv() if receiver.poll(timeout) else None
    except EOFError as exc:
        raise RuntimeError(f"{func.__name__}{args} failed in its process") from exc
    if result is None:
        proc.terminate()
    proc.join()
    return result


def _build(dataset: str, scale: int) -> Figures:
    """Build one portal; seconds and peak-RSS growth."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False)))
    before, start = _rss_mib(), time.perf_counter()
    build_dataset(portal, dataset, scale=scale)
    return {"seconds": time.perf_counter() - start, "rss_mib": _rss_mib() - before,
            "deals": len(portal.deals)}


def _serve(conn: Connection, dataset: str, scale: int) -> None:
    """The server process: build, serve until told to stop, report the peak RSS."""
    server = build_server(dataset=dataset, scale=scale, limits=False)
    server.start()
    conn.send((server.portal.webhook_url, len(server.portal.deals)))
    conn.recv()
    server.stop()
    conn.send(_rss_mib())


class Served:
    """A portal served by a child process."""

    def __init__(self, dataset: str, scale: int) -> None:
        self._conn, child = CTX.Pipe()
        self._proc = CTX.Process(target=_serve, args=(child, dataset, scale), daemon=True)
        self._proc.start()
        child.close()
        self.url, self.deals = self._conn.recv()

    def stop(self) -> float:
        """Stop serving; the server process's peak RSS in MiB."""
        self._conn.send("stop")
        rss = float(self._conn.recv())
        self._proc.join()
        return rss


def _load(request: Request, threads: int, seconds: float) -> Figures:
    """``threads`` clients in a closed loop for ``seconds``: req/s, rows/s, p50/p99."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    rows = [0] * threads
    barrier = threading.Barrier(threads + 1)
    deadline = 0.0  # set just before the barrier releases the workers

    def worker(k: int) -> None:
        with requests.Session() as session:
            request(session, k)  # opens the keep-alive connection before the clock starts
            barrier.wait()
            i = k
            while (t0 := time.perf_counter()) < deadline:
                rows[k] += request(session, i)
                latencies[k].append(time.perf_counter() - t0)
                i += threads

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    barrier.wait()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - began
    lat = sorted(x for part in latencies for x in part)
    n = len(lat)
    return {"threads": threads, "requests": n, "req_s": n / elapsed,
            "rows_s": sum(rows) / elapsed, "p50_ms": lat[n // 2] * 1000,
            "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000}


def _result(response: requests.Response) -> Any:
    """The envelope's ``result`` of a successful answer."""
    response.raise_for_status()
    return response.json()["result"]


def _scenarios(url: str, deals: int) -> dict[str, Request]:
    """The requests of the load tests, keyed by label; each returns its row count."""
    pages, fast = max(1, deals // 50), {"select": SELECT, "order": {"ID": "ASC"}, "start": -1}
    deal_list, query = url + "crm.deal.list.json", "&".join(f"select[]={f}" for f in SELECT)

    def chain(i: int) -> dict[str, str]:
        """50 pages chained like ``iter_pages``: start=-1 and ``>ID`` of the previous page."""
        first = i * 50 % max(1, deals - 2500)
        return {f"p{k}": encode.command("crm.deal.list", {**fast, "filter": {
            ">ID": first if k == 0 else f"$result[p{k - 1}][49][ID]"}}) for k in range(50)}

    return {
        "server.time GET": lambda s, i: 0 * len(_result(s.get(url + "server.time.json"))),
        "crm.deal.list GET start=N": lambda s, i: len(_result(
            s.get(f"{deal_list}?{query}&start={i % pages * 50}"))),
        "crm.deal.list POST start=N": lambda s, i: len(_result(
            s.post(deal_list, json={"select": SELECT, "start": i % pages * 50}))),
        "crm.deal.list POST start=-1 >ID": lambda s, i: len(_result(
            s.post(deal_list, json={**fast, "filter": {">ID": i % pages * 50}}))),
        "batch 50 x deal.list start=-1": lambda s, i: sum(len(v) for v in _result(
            s.post(url + "batch.json", json={"halt": 0, "cmd": chain(i)}))["result"].values()),
    }


def _full_read(url: str, how: str) -> Figures:
    """Read every deal through ``BitrixClient`` (rows kept in a list, as get_all does)."""
    client = BitrixClient(url, requests_per_second=1000.0, burst=1000)
    params = {"select": SELECT}
    before, start = _rss_mib(), time.perf_counter()
    if how == "iter_pages":
        rows = [row for page in client.iter_pages("crm.deal.list", params) for row in page]
    else:
        rows = client.get_all("crm.deal.list", params)
    seconds = time.perf_counter() - start
    client.close()
    return {"how": how, "rows": len(rows), "seconds": seconds, "rows_s": len(rows) / seconds,
            "requests": client.stats.requests, "rss_mib": _rss_mib(),
            "rss_growth_mib": _rss_mib() - before}


def _reads(deals: int) -> list[Figures]:
    """iter_pages vs get_all on ``deals``; both again on a smaller portal if get_all is slow."""
    served = Served("empty", deals)
    fast = _in_child(_full_read, served.url, "iter_pages")
    slow = _in_child(_full_read, served.url, "get_all", timeout=GET_ALL_LIMIT)
    fast["server_rss_mib"] = rss = served.stop()
    out = [fast]
    if slow is None:
        out.append({"how": "get_all", "rows": deals, "timed_out_s": GET_ALL_LIMIT})
        served = Served("empty", FALLBACK_DEALS)
        out += [_in_child(_full_read, served.url, "iter_pages"),
                _in_child(_full_read, served.url, "get_all")]
        rss = served.stop()
        out[-2]["server_rss_mib"] = rss
    else:
        out.append(slow)
    out[-1]["server_rss_mib"] = rss
    for item in out:
        item["floor"] = math.ceil(item["rows"] / 2500)
    return out


def main() -> None:
    """Run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s per load test instead of 5 s")
    parser.add_argument("--deals", type=int, default=100_000, help="deals of the scale portal")
    parser.add_argument("--json", metavar="PATH", help="also dump the figures as JSON here")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 5.0
    figures: Figures = {"python": sys.version.split()[0], "nproc": os.cpu_count(),
                        "loadavg_before": os.getloadavg(), "deals": args.deals}
    print(f"Python {figures['python']}, {figures['nproc']} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in figures['loadavg_before'])}")

    print("\n1. Dataset builds (fresh process each, median of 3; memory = peak RSS growth)")
    print(f"{'dataset':24} {'deals':>8} {'median s':>9} {'min s':>7} {'max s':>7} {'RSS MiB':>8}")
    builds = figures["builds"] = []
    for label, dataset, scale in [("demo", "demo", 0), (f"empty + {args.deals:,}", "empty",
                                  args.deals), (f"demo + {args.deals:,}", "demo", args.deals)]:
        runs = [_in_child(_build, dataset, scale) for _ in range(3)]
        times = [r["seconds"] for r in runs]
        row = {"dataset": label, "deals": runs[0]["deals"], "median_s": statistics.median(times),
               "min_s": min(times), "max_s": max(times),
               "rss_mib": statistics.median(r["rss_mib"] for r in runs)}
        builds.append(row)
        print(f"{label:24} {row['deals']:>8,} {row['median_s']:>9.2f} {row['min_s']:>7.2f} "
              f"{row['max_s']:>7.2f} {row['rss_mib']:>8.0f}")

    print(f"\n2. Loopback load on the demo portal, limits off, {seconds:.0f} s per line")
    served = Served("demo", 0)
    print(f"{'request':34} {'thr':>3} {'req/s':>7} {'rows/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    loads = figures["load"] = []
    for label, request in _scenarios(served.url, served.deals).items():
        for threads in (1, 4):
            row = {"request": label, **_load(request, threads, seconds)}
            loads.append(row)
            print(f"{label:34} {threads:>3} {row['req_s']:>7.1f} {row['rows_s']:>8,.0f} "
                  f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f}")
    figures["demo_server_rss_mib"] = served.stop()
    print(f"  batch: {loads[-2]['req_s'] * 50:,.0f} / {loads[-1]['req_s'] * 50:,.0f} pages/s "
          f"(1 / 4 threads); server process peak RSS {figures['demo_server_rss_mib']:.0f} MiB")

    print(f"\n3. Full read of crm.deal.list ({len(SELECT)} fields), BitrixClient, limits off")
    print(f"{'method':11} {'rows':>8} {'wall s':>8} {'rows/s':>8} {'HTTP req':>8} {'floor':>6} "
          f"{'client RSS':>10} {'growth':>7} {'server RSS':>10}")
    reads = figures["full_read"] = _reads(args.deals)
    for row in reads:
        if "timed_out_s" in row:
            print(f"{row['how']:11} {row['rows']:>8,}  stopped after {row['timed_out_s']:.0f} s; "
                  f"both reads again on {FALLBACK_DEALS:,} deals:")
            continue
        print(f"{row['how']:11} {row['rows']:>8,} {row['seconds']:>8.2f} {row['rows_s']:>8,.0f} "
              f"{row['requests']:>8,} {row['floor']:>6,} {row['rss_mib']:>10.0f} "
              f"{row['rss_growth_mib']:>7.0f} {row['server_rss_mib']:>10.0f}")
    print("  floor = ceil(rows / 2500) requests; RSS in MiB (peak of the process)")
    figures["loadavg_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
