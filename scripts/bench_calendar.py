"""Benchmark of the working calendar against a naive minute-by-minute loop.

Run from the project root:

    .venv/bin/python scripts/bench_calendar.py [--calls 1000000] [--naive-calls 1000] [--seed 1]

Inputs are drawn before timing: starts are random whole minutes of 2025-2027 in
Asia/Novosibirsk; additions add 1-600 working minutes; measurements span 0-7 calendar days.
The naive loop (the same rules, one minute at a time) runs on a smaller sample, is checked
against the table on that sample and scaled to the full call count. ``businesstime`` is used
only if it is already installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kpi.calendar import WorkingCalendar
from kpi.production import CalendarRules, is_working_day, working_periods

MINUTE = timedelta(minutes=1)


class NaiveCalendar:
    """The baseline: walk wall-clock minutes (the zone has no DST) and test each one."""

    def __init__(self, rules: CalendarRules) -> None:
        self.rules = rules
        self._days: dict[date, tuple[tuple[int, int], ...]] = {}

    def _working(self, moment: datetime) -> bool:
        day = moment.date()
        periods = self._days.get(day)
        if periods is None:
            periods = working_periods(self.rules, day) if is_working_day(self.rules, day) else ()
            self._days[day] = periods
        second = moment.hour * 3600 + moment.minute * 60
        return any(a <= second < b for a, b in periods)

    def add_working_minutes(self, moment: datetime, minutes: int) -> datetime:
        """Step minute by minute until ``minutes`` working minutes have passed."""
        done = 0
        while done < minutes:
            done += self._working(moment)
            moment += MINUTE
        return moment

    def working_minutes(self, start: datetime, end: datetime) -> float:
        """Count the working minutes in [start, end), one at a time."""
        count = 0
        while start < end:
            count += self._working(start)
            start += MINUTE
        return float(count)


def _timed(func: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds; CPU time is the steadier figure on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def _inputs(rng: random.Random, tz: tzinfo,
            count: int) -> tuple[list[datetime], list[int], list[datetime]]:
    origin = datetime(2025, 1, 1, tzinfo=tz)
    span = (datetime(2028, 1, 1, tzinfo=tz) - origin) // MINUTE
    starts = [origin + timedelta(minutes=rng.randrange(span - 8 * 1440)) for _ in range(count)]
    minutes = [rng.randint(1, 600) for _ in range(count)]
    ends = [s + timedelta(minutes=rng.randrange(7 * 1440 + 1)) for s in starts]
    return starts, minutes, ends


def _table_memory(rules: CalendarRules) -> tuple[int, int]:
    """Bytes allocated by building the 2025-2027 table, and its interval count."""
    calendar = WorkingCalendar(rules)
    calendar.is_working(datetime(2025, 6, 1, tzinfo=calendar.tz))  # warm the holiday caches
    calendar = WorkingCalendar(rules)
    tracemalloc.start()
    calendar.working_minutes(datetime(2025, 1, 1, tzinfo=calendar.tz),
                             datetime(2027, 12, 31, tzinfo=calendar.tz))
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size, calendar.table_size()[1]


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--naive-calls", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    rules = CalendarRules()
    calendar, naive = WorkingCalendar(rules), NaiveCalendar(rules)
    rng = random.Random(args.seed)
    starts, minutes, ends = _inputs(rng, calendar.tz, args.calls)

    build = _timed(lambda: WorkingCalendar(rules).is_working(starts[0]))
    calendar.working_minutes(starts[0], datetime(2027, 12, 31, tzinfo=calendar.tz))  # 3 years

    add, measure = calendar.add_working_minutes, calendar.working_minutes
    rows: list[tuple[str, int, tuple[float, float]]] = [
        ("table add_working_minutes", args.calls,
         _timed(lambda: [add(s, m) for s, m in zip(starts, minutes, strict=True)])),
        ("table working_minutes", args.calls,
         _timed(lambda: [measure(s, e) for s, e in zip(starts, ends, strict=True)])),
    ]

    n = min(args.naive_calls, args.calls)
    sample = list(zip(starts[:n], minutes[:n], ends[:n], strict=True))
    mismatches = sum(naive.add_working_minutes(s, m) != add(s, m)
                     or naive.working_minutes(s, e) != measure(s, e) for s, m, e in sample)
    naive_add = _timed(lambda: [naive.add_working_minutes(s, m) for s, m, _ in sample])
    naive_measure = _timed(lambda: [naive.working_minutes(s, e) for s, _, e in sample])
    rows += [("naive add (minute loop)", n, naive_add),
             ("naive working_minutes (minute loop)", n, naive_measure)]

    print(f"Python {sys.version.split()[0]}; inputs: {args.calls:,} random starts in 2025-2027, "
          f"+1..600 working minutes, spans of 0..7 days; seed {args.seed}")
    print(f"{'operation':36} {'calls':>9} {'wall s':>8} {'CPU s':>8} {'ops/s (CPU)':>12} "
          f"{'CPU s per 1M':>13}")
    for name, calls, (wall, cpu) in rows:
        print(f"{name:36} {calls:>9,} {wall:>8.3f} {cpu:>8.3f} {calls / cpu:>12,.0f} "
              f"{cpu / calls * 1e6:>13,.1f}")
    speedups = (naive_add[1] / n) / (rows[0][2][1] / args.calls), \
        (naive_measure[1] / n) / (rows[1][2][1] / args.calls)
    print(f"speed-up over the naive loop: add x{speedups[0]:,.0f}, working_minutes "
          f"x{speedups[1]:,.0f}; naive and table disagree on {mismatches} of {n} samples")
    size, intervals = _table_memory(rules)
    print(f"day table 2025-2027: {intervals:,} intervals, {size / 1024:,.0f} KiB allocated; "
          f"first-year build (cold, with holidays) {build[0] * 1000:.1f} ms")
    if importlib.util.find_spec("businesstime") is None:
        print("businesstime: not installed, skipped (the naive loop is the baseline)")
    else:
        print("businesstime: installed but not benchmarked (different holiday model)")


if __name__ == "__main__":
    main()
