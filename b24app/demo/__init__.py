"""``b24app demo``: the main job end to end on an embedded demo portal (no portal, no network).

It builds the seeded NOIS portal in the emulator, installs the app into it over HTTP, loads
the mirror, lives through a Monday morning (a badly set task, an unanswered request, a
timely answer), computes every rep's KPIs and writes them into the portal, then reads the
results back from the portal and prints them.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TextIO

from b24app.demo.portal_read import read_portal, summary_lines
from b24app.demo.readback import readback_lines
from b24app.demo.scenario import cast_of, working_day
from b24app.demo.stack import BURST, RATE, DemoStack
from b24app.gateway.client import BitrixClient
from b24app.kpi_jobs import compute_and_write
from b24app.kpi_table import kpi_table
from b24app.nps.crm_field import run_crm_field
from kpi.periods import month_of
from sync.initial import initial_import

WEEKDAYS = ("пн", "вт", "ср", "чт", "пт", "сб", "вс")


def clock_text(moment: datetime) -> str:
    """«пн 16.11.2026 09:00»."""
    return f"{WEEKDAYS[moment.weekday()]} {moment:%d.%m.%Y %H:%M}"


def run_demo(*, seed: int = 1, out: TextIO) -> int:
    """Run the whole job and print what happened; 0 when everything checked out."""
    started = time.perf_counter()

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    with DemoStack(seed) as stack:
        portal = stack.portal
        say(f"Демо НОИС: эмулятор Bitrix24 {stack.emulator.url} (набор demo, seed {seed}, "
            f"лимиты тарифа Enterprise: {BURST} запросов сразу, {RATE:g}/с); "
            f"приложение {stack.app_url}.")
        say(f"Время портала: {clock_text(portal.clock.now().astimezone(portal.tz))}.")
        say()
        say("1. Портал глазами администратора (чтение через fast-bitrix24):")
        reader = BitrixClient(portal.webhook_url, requests_per_second=RATE, burst=BURST)
        try:
            for line in summary_lines(read_portal(reader), portal.clock.now()):
                say(f"   {line}" if line else "")
        finally:
            reader.close()
        say()
        portal_id = stack.install()
        loaded = initial_import(stack.ctx, portal_id, stack.ctx.clock())
        say(f"2. Приложение установлено (ONAPPINSTALL), зеркало загружено: {', '.join(loaded)}.")
        cast = cast_of(stack)
        story = working_day(stack, cast)
        say(f"3. Рабочее утро: обработано событий — {story.events}.")
        now = stack.ctx.clock()
        answers = run_crm_field(stack.ctx, portal_id)
        report = compute_and_write(stack.ctx, portal_id, month_of(now, portal.config.timezone),
                                   now)
        again = compute_and_write(stack.ctx, portal_id, report.period, now)
        first, second = report.writeback, again.writeback
        assert first is not None and second is not None
        say(f"4. KPI за {report.period.title} (ответов NPS из карточек контактов: {answers}): "
            f"записано в портал — компаний {first.companies_written}, карточек KPI "
            f"{first.items_created}; повторный запуск записал полей: "
            f"{second.company_fields + second.item_fields}.")
        say()
        for line in kpi_table(report.rows, report.rep_names):
            say(f"   {line}")
        say()
        for line in readback_lines(stack, cast, story, report):
            say(line)
    say()
    say(f"Готово за {time.perf_counter() - started:.1f} с.")
    return 0
