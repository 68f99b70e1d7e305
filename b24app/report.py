"""The KPI report as an Excel workbook the РОП can forward: «KPI», «Висяки», «Клиенты»."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openpyxl import Workbook
from openpyxl.formatting.rule import CellIsRule
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.models import MirrorCompany
from kpi.definitions import KpiId, percent
from kpi.digest import ORDER, STATUS_TITLES, kpi_title, kpi_unit, stale_items
from kpi.formulas import ReturnStatus
from kpi.periods import DEFAULT_TZ, Period
from kpi.results import CompanyMetrics, RepKpi

XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
# Status colours as spreadsheet programs show "good", "bad" and "neutral".
STATUS_STYLE = {"ok": ("C6EFCE", "006100"), "below": ("FFC7CE", "9C0006"),
                "no_data": ("EDEDED", "595959")}
THIN = Side(style="thin", color="BFBFBF")
BORDER = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
DATE_FORMAT = "DD.MM.YYYY"
MONEY_FORMAT = "#,##0.00"
COUNT_FORMAT = "#,##0"
SHARE_FORMAT = "0.00"
# «Сделка «Поставка»: нет дела» → kind, name, reasons (the detail lines of CRM freshness).
STALE_LINE = re.compile(r"^(?P<kind>[^«]*?)\s*«(?P<name>.*)»:\s*(?P<why>.*)$")


@dataclass(frozen=True)
class CompanyInfo:
    """What the report shows of a company besides its metrics."""

    title: str
    rep_id: int


def load_company_info(session: Session, portal_id: int,
                      ids: Iterable[int]) -> dict[int, CompanyInfo]:
    """Titles and responsible reps of companies, from the mirror."""
    wanted = sorted(set(ids))
    out: dict[int, CompanyInfo] = {}
    for start in range(0, len(wanted), 1000):
        rows = session.execute(select(MirrorCompany.id, MirrorCompany.title,
                                      MirrorCompany.assigned_by_id).where(
            MirrorCompany.portal_id == portal_id, MirrorCompany.id.in_(wanted[start:start + 1000])))
        out.update((cid, CompanyInfo(title or "", rep or 0)) for cid, title, rep in rows)
    return out


def number_format(unit: str) -> str:
    """The cell format of a KPI's unit: money with kopecks, shares with 2 places, counts."""
    if unit == "₽":
        return MONEY_FORMAT
    if unit.startswith("%") or unit == "п.":
        return SHARE_FORMAT
    return COUNT_FORMAT


def _header(cell: Any, text: str | None) -> None:
    cell.value = text
    cell.font = Font(bold=True)
    cell.fill = HEADER_FILL
    cell.border = BORDER
    cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)


def _widths(sheet: Worksheet, widths: Sequence[float]) -> None:
    for n, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(n)].width = width


def _status_rules(sheet: Worksheet, cells: str) -> None:
    """Conditional fills by status word, so an edited status recolours itself."""
    for status, (fill, font) in STATUS_STYLE.items():
        sheet.conditional_formatting.add(cells, CellIsRule(
            operator="equal", formula=[f'"{STATUS_TITLES[status]}"'],
            fill=PatternFill("solid", fgColor=fill, bgColor=fill), font=Font(color=font)))


def _name(names: Mapping[int, str], rep_id: int) -> str:
    return names.get(rep_id) or f"сотрудник #{rep_id}"


# ---------------------------------------------------------------- sheets


def kpi_sheet(sheet: Worksheet, rows: Sequence[RepKpi], names: Mapping[int, str],
              period: Period) -> None:
    """Reps down, KPIs across (fact, target, status each); title row, two header rows."""
    sheet.title = "KPI"
    kpis = sorted({r.kpi for r in rows}, key=lambda k: ORDER.get(k, len(ORDER)))
    by_rep: dict[int, dict[str, RepKpi]] = defaultdict(dict)
    for row in rows:
        by_rep[row.rep_id][row.kpi] = row
    sheet["A1"] = f"KPI менеджеров отдела продаж — {period.title}"
    sheet["A1"].font = Font(bold=True, size=14)
    # Cells are styled first and merged after: openpyxl's merged cells are read-only.
    for col, text in ((1, "Менеджер"), (2, "Выполнено")):
        _header(sheet.cell(2, col), text)
        _header(sheet.cell(3, col), None)
        sheet.merge_cells(start_row=2, start_column=col, end_row=3, end_column=col)
    for n, kpi in enumerate(kpis):
        col, unit = 3 + 3 * n, kpi_unit(kpi)
        for offset in range(3):
            _header(sheet.cell(2, col + offset), kpi_title(kpi) if offset == 0 else None)
        suffix = f", {unit}" if unit else ""
        for offset, text in enumerate((f"Факт{suffix}", f"Цель{suffix}", "Статус")):
            _header(sheet.cell(3, col + offset), text)
        sheet.merge_cells(start_row=2, start_column=col, end_row=2, end_column=col + 2)
    reps = sorted(by_rep, key=lambda r: (_name(names, r).casefold(), r))
    for line, rep in enumerate(reps, start=4):
        got = by_rep[rep]
        sheet.cell(line, 1, _name(names, rep)).border = BORDER
        met = sum(r.status == "ok" for r in got.values())
        sheet.cell(line, 2, f"{met} из {len(got)}").border = BORDER
        for n, kpi in enumerate(kpis):
            col, item = 3 + 3 * n, got.get(kpi)
            values = (None, None, "") if item is None else (
                item.value, item.target, STATUS_TITLES.get(item.status, item.status))
            for offset, value in enumerate(values):
                cell = sheet.cell(line, col + offset, value)
                cell.border = BORDER
                if offset < 2:
                    cell.number_format = number_format(kpi_unit(kpi))
                else:
                    cell.alignment = Alignment(horizontal="center")
    last = 3 + len(reps)
    for n in range(len(kpis)):
        letter = get_column_letter(5 + 3 * n)
        if reps:
            _status_rules(sheet, f"{letter}4:{letter}{last}")
    sheet.row_dimensions[2].height = 48
    sheet.freeze_panes = "C4"
    _widths(sheet, [28, 12] + [14, 14, 13] * len(kpis))


def stale_sheet(sheet: Worksheet, rows: Sequence[RepKpi], names: Mapping[int, str]) -> None:
    """One line per stale item of every rep (CRM freshness detail), filterable."""
    sheet.title = "Висяки"
    for col, text in enumerate(("Менеджер", "Тип", "Запись", "Что не так"), start=1):
        _header(sheet.cell(1, col), text)
    lines: list[tuple[str, str, str, str]] = []
    for row in rows:
        if row.kpi != KpiId.CRM_FRESHNESS.value:
            continue
        for item in stale_items(row.detail):
            match = STALE_LINE.match(item)
            parts = (match["kind"], match["name"], match["why"]) if match else ("", item, "")
            lines.append((_name(names, row.rep_id), *parts))
    lines.sort(key=lambda x: (x[0].casefold(), x[1], x[2]))
    for line, values in enumerate(lines, start=2):
        for col, value in enumerate(values, start=1):
            cell = sheet.cell(line, col, value)
            cell.border = BORDER
            cell.alignment = Alignment(vertical="top", wrap_text=col == 4)
    if not lines:
        sheet.cell(2, 1, "Висяков нет")
    else:
        sheet.auto_filter.ref = f"A1:D{1 + len(lines)}"
    sheet.freeze_panes = "A2"
    _widths(sheet, [28, 14, 40, 60])


CLIENT_HEADERS = ("ID", "Компания", "Менеджер", "LTV, ₽", "Покупки за 12 мес., ₽",
                  "Последняя покупка", "Статус возврата", "Постоянный клиент", "NPS",
                  "Дата NPS", "Карта обновлена", "Доля НОИС, %")
CLIENT_FORMATS = (COUNT_FORMAT, None, None, MONEY_FORMAT, MONEY_FORMAT, DATE_FORMAT, None, None,
                  COUNT_FORMAT, DATE_FORMAT, DATE_FORMAT, SHARE_FORMAT)


def _return_status(status: str | None) -> str:
    if status is None:
        return "нет покупок"
    try:
        return ReturnStatus(status).title_ru
    except ValueError:
        return status


def clients_sheet(sheet: Worksheet, metrics: Sequence[CompanyMetrics],
                  companies: Mapping[int, CompanyInfo], names: Mapping[int, str]) -> None:
    """A line per company with the metrics of its card fields, filterable."""
    sheet.title = "Клиенты"
    for col, text in enumerate(CLIENT_HEADERS, start=1):
        _header(sheet.cell(1, col), text)

    def line_of(m: CompanyMetrics) -> tuple[Any, ...]:
        info = companies.get(m.company_id, CompanyInfo(f"Компания #{m.company_id}", 0))
        rep = _name(names, info.rep_id) if info.rep_id else ""
        return (m.company_id, info.title, rep, m.ltv, m.ltv_12m, m.last_purchase,
                _return_status(m.return_status), "да" if m.regular else "нет", m.nps_last,
                m.nps_date, m.card_updated, percent(m.nois_share))

    lines = sorted((line_of(m) for m in metrics), key=lambda x: (x[2].casefold(), x[1], x[0]))
    for line, values in enumerate(lines, start=2):
        for col, value in enumerate(values, start=1):
            cell = sheet.cell(line, col, value)
            cell.border = BORDER
            if CLIENT_FORMATS[col - 1]:
                cell.number_format = CLIENT_FORMATS[col - 1]
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(CLIENT_HEADERS))}{max(1 + len(lines), 2)}"
    sheet.freeze_panes = "C2"
    _widths(sheet, [9, 36, 24, 15, 15, 13, 17, 12, 7, 12, 13, 11])


def build_workbook(rows: Sequence[RepKpi], company_rows: Sequence[CompanyMetrics],
                   period: Period | str, *, rep_names: Mapping[int, str] | None = None,
                   companies: Mapping[int, CompanyInfo] | None = None,
                   tz: str = DEFAULT_TZ) -> bytes:
    """The .xlsx file of one period's report."""
    period = Period.parse(period, tz) if isinstance(period, str) else period
    names = rep_names or {}
    mine = [r for r in rows if r.period == period.label]
    book = Workbook()
    book.properties.title = f"KPI менеджеров — {period.title}"
    book.properties.creator = "NOIS KPI"
    sheet = book.active
    assert sheet is not None
    kpi_sheet(sheet, mine, names, period)
    stale_sheet(book.create_sheet(), mine, names)
    clients_sheet(book.create_sheet(), company_rows, companies or {}, names)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def file_name(period: Period) -> str:
    """«KPI_2026-11.xlsx»."""
    return f"KPI_{period.label}.xlsx"
