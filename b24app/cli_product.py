"""Product commands for the РОП and the admin: ``kpi``, ``report --xlsx``, ``nps import``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from b24app.context import AppContext
from b24app.models import Portal, PortalStatus


class PortalChoiceError(Exception):
    """No portal, or several without ``--portal``."""


def choose_portal(ctx: AppContext, member_id: str | None) -> int:
    """The portal named by ``--portal``, or the only active one."""
    with ctx.sessions() as session:
        query = select(Portal.id, Portal.member_id).where(
            Portal.status == PortalStatus.ACTIVE.value)
        rows = session.execute(query).all()
    if member_id:
        rows = [r for r in rows if r.member_id == member_id]
    if len(rows) != 1:
        found = "no active portal" if not rows else f"{len(rows)} active portals"
        raise PortalChoiceError(f"{found}{' with that member_id' if member_id else ''}: "
                                "pass --portal MEMBER_ID")
    return int(rows[0].id)


def _period(ctx: AppContext, label: str | None) -> str:
    from kpi.periods import month_of

    return label or month_of(ctx.clock(), ctx.settings.calendar.timezone).label


def kpi_command(ctx: AppContext, args: argparse.Namespace) -> list[str]:
    """Compute (and with ``--write`` write back) the KPIs of a period; the printable lines."""
    from b24app.kpi_jobs import compute_and_write
    from b24app.kpi_table import kpi_table

    portal_id = choose_portal(ctx, args.portal)
    report = compute_and_write(ctx, portal_id, _period(ctx, args.period), ctx.clock(),
                               write=args.write)
    if args.json:
        return [json.dumps(report.as_dict(), ensure_ascii=False, indent=2)]
    lines = [f"KPI за {report.period.title}: менеджеров {len(report.rep_names)}, "
             f"сохранено значений {report.stored}."]
    lines += kpi_table(report.rows, report.rep_names)
    if report.writeback is not None:
        wb = report.writeback
        lines.append(f"Записано в Битрикс24: полей компаний {wb.company_fields}, "
                     f"полей карточек KPI {wb.item_fields}, новых карточек {wb.items_created}.")
        lines += [f"Ошибка: {line}" for line in (*wb.failures, *wb.problems)]
    return lines


def report_command(ctx: AppContext, args: argparse.Namespace) -> list[str]:
    """Write the РОП's Excel report of a period to a file; the printable lines."""
    from b24app.kpi_jobs import report_xlsx

    portal_id = choose_portal(ctx, args.portal)
    period = _period(ctx, args.period)
    path = Path(args.xlsx or f"kpi-{period}.xlsx")
    path.write_bytes(report_xlsx(ctx, portal_id, period, ctx.clock()))
    return [f"report written: {path}"]


def nps_import_command(ctx: AppContext, args: argparse.Namespace) -> tuple[list[str], bool]:
    """Import NPS answers from CSV/XLSX; the printable lines and whether every row was taken."""
    from b24app.nps.importer import import_path

    report = import_path(ctx, choose_portal(ctx, args.portal), Path(args.file))
    return [report.summary_ru()], not report.errors


def add_product_commands(sub: Any, config: argparse.ArgumentParser,
                         runner: Callable[[argparse.Namespace], int]) -> None:
    """``kpi``, ``report`` and ``nps import`` subcommands, each run by ``runner``."""
    kpi = sub.add_parser("kpi", parents=[config], help="compute the reps' KPIs for a period")
    kpi.add_argument("--period", help="YYYY-MM (default: the current month)")
    kpi.add_argument("--portal", metavar="MEMBER_ID", help="the portal (default: the only one)")
    kpi.add_argument("--write", action="store_true",
                     help="write what changed into Bitrix24 (company cards, KPI items)")
    kpi.add_argument("--json", action="store_true", help="machine-readable output")
    kpi.set_defaults(func=runner, product=kpi_command)

    report = sub.add_parser("report", parents=[config], help="the РОП's Excel report")
    report.add_argument("--xlsx", nargs="?", const="", default="", metavar="PATH",
                        help="file to write (default: kpi-<period>.xlsx)")
    report.add_argument("--period", help="YYYY-MM (default: the current month)")
    report.add_argument("--portal", metavar="MEMBER_ID")
    report.set_defaults(func=runner, product=report_command)

    nps = sub.add_parser("nps", help="NPS tools").add_subparsers(dest="nps_command",
                                                                 required=True)
    importer = nps.add_parser("import", parents=[config],
                              help="import NPS answers from a CSV or XLSX file")
    importer.add_argument("file", help="CSV (UTF-8 or cp1251, ; or ,) or XLSX")
    importer.add_argument("--portal", metavar="MEMBER_ID")
    importer.set_defaults(func=runner, product=nps_import_command)
