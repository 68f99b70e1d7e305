"""The weekly digest text and the Excel report the РОП forwards (both pure)."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

from b24app.report import CompanyInfo, build_workbook, file_name, number_format
from kpi.digest import (
    NBSP,
    build_digest,
    format_number,
    format_value,
    kpi_line,
    plural,
    rep_block,
    stale_items,
)
from kpi.periods import Period
from kpi.results import CompanyMetrics, RepKpi

PERIOD = Period.parse("2026-11")
NAMES = {7: "Иван Петров", 8: "Ольга Сидорова"}
STALE = "\n".join(f"Сделка «Поставка {n}»: нет запланированного дела; стадия 12 дн." for n in
                  range(1, 8))


def rows_of(rep: int, *, stale: str = "", period: str = "2026-11") -> list[RepKpi]:
    return [
        RepKpi(rep, period, "sales_volume", Decimal("1250000"), Decimal("1000000"), "ok"),
        RepKpi(rep, period, "visits", Decimal("12"), Decimal("30"), "below"),
        RepKpi(rep, period, "crm_freshness", Decimal("90.5"), Decimal("95"), "below", stale),
        RepKpi(rep, period, "nps", None, Decimal("70"), "no_data"),
        RepKpi(rep, period, "ltv", Decimal("85000.25"), None, "no_data"),
    ]


# -- digest ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "word"), [
    (1, "менеджер"), (2, "менеджера"), (4, "менеджера"), (5, "менеджеров"), (11, "менеджеров"),
    (12, "менеджеров"), (21, "менеджер"), (22, "менеджера"), (111, "менеджеров"),
])
def test_plural(count: int, word: str) -> None:
    assert plural(count, ("менеджер", "менеджера", "менеджеров")) == word


@pytest.mark.parametrize(("value", "text"), [
    ("1250000", f"1{NBSP}250{NBSP}000"), ("71.43", "71,43"), ("30.0000", "30"),
    ("0.005", "0,01"), ("-1234.5", f"-1{NBSP}234,50"), ("0", "0"),
])
def test_numbers_in_russian(value: str, text: str) -> None:
    assert format_number(Decimal(value)) == text


@pytest.mark.parametrize(("row", "line"), [
    (RepKpi(7, "2026-11", "sales_volume", Decimal("1250000"), Decimal("1000000"), "ok"),
     f"✓ Объём продаж: 1{NBSP}250{NBSP}000 ₽ (цель 1{NBSP}000{NBSP}000 ₽)"),
    (RepKpi(7, "2026-11", "visits", Decimal("12"), Decimal("30"), "below"),
     "✗ Личные визиты к клиентам: 12 визитов (цель 30 визитов)"),
    (RepKpi(7, "2026-11", "return_rate", Decimal("71.43"), Decimal("70"), "ok"),
     "✓ Возвратность клиентов (ER): 71,43 % (цель 70 %)"),
    (RepKpi(7, "2026-11", "nps", None, Decimal("70"), "no_data"),
     "— Индекс удовлетворённости клиентов (NPS): нет данных (цель 70 п.)"),
    (RepKpi(7, "2026-11", "ltv", Decimal("85000.25"), None, "no_data"),
     f"— Пожизненная ценность клиента (LTV): 85{NBSP}000,25 ₽ (цели нет)"),
])
def test_kpi_lines(row: RepKpi, line: str) -> None:
    assert kpi_line(row) == line


@pytest.mark.parametrize(("kpi", "value", "target", "line"), [
    ("trainings", "1", "1", "✓ Обучения клиентов: 1 обучение (цель 1 обучение)"),
    ("new_products_mailing", "0", "1", "✗ Рассылка новинок: 0 рассылок (цель 1 рассылка)"),
    ("marketing_ideas", "3", "2", "✓ Идеи для маркетинга: 3 идеи (цель 2 идеи)"),
    ("visits", "21", "30", "✗ Личные визиты к клиентам: 21 визит (цель 30 визитов)"),
    ("visits", "22", "90.0", "✗ Личные визиты к клиентам: 22 визита (цель 90 визитов)"),
    ("visits", "11", "2.5", "✓ Личные визиты к клиентам: 11 визитов (цель 2,50 визита)"),
    ("new_active_clients", "4", "15", "✗ Новые активные клиенты: 4 клиента (цель 15 клиентов)"),
])
def test_count_units_agree_with_their_numbers(kpi: str, value: str, target: str,
                                              line: str) -> None:
    # Regression: «1 обучений», «2 идей», «4 клиентов» were printed for every count.
    status = "ok" if Decimal(value) >= Decimal(target) else "below"
    assert kpi_line(RepKpi(7, "2026-11", kpi, Decimal(value), Decimal(target), status)) == line


def test_a_rep_block_lists_the_top_stale_items_and_counts_the_rest() -> None:
    lines = rep_block("Иван Петров", rows_of(7, stale=STALE), stale_top=5)
    assert lines[0] == "Иван Петров — выполнено 1 из 5"
    # In the order of the KPI table, whatever the order of the rows.
    assert [x[:4] for x in lines[1:6]] == ["✓ Об", "— Ин", "— По", "✗ Ли", "✗ Ак"]
    at = lines.index("Висяки (7):")
    assert lines[at + 1] == "• Сделка «Поставка 1»: нет запланированного дела; стадия 12 дн."
    assert len([x for x in lines if x.startswith("• ")]) == 5
    assert lines[-1] == "…и ещё 2 висяка"
    assert "Висяки" not in "\n".join(rep_block("Ольга", rows_of(8)))


def test_the_digest_starts_with_a_one_line_summary() -> None:
    rows = rows_of(8) + rows_of(7, stale=STALE) + rows_of(7, period="2026-10")
    text = build_digest(rows, NAMES, "2026-11")
    first, *rest = text.split("\n")
    assert first == ("KPI отдела продаж за ноябрь 2026: 2 менеджера, выполнено 2 из 10 "
                     "показателей, висяков: 7")
    blocks = "\n".join(rest).split("\n\n")
    assert [b.strip().splitlines()[0] for b in blocks] == [
        "Иван Петров — выполнено 1 из 5", "Ольга Сидорова — выполнено 1 из 5"]
    assert build_digest(rows, {}, PERIOD).count("сотрудник #7") == 1


def test_an_empty_digest_says_so() -> None:
    assert build_digest([], NAMES, PERIOD) == (
        "KPI отдела продаж за ноябрь 2026: показатели ещё не рассчитаны")


def test_stale_items_are_lines() -> None:
    assert stale_items(" a \n\n b") == ["a", "b"]
    assert format_value(None, "₽") == "нет данных" and format_value(Decimal(3), "") == "3"


# -- the Excel report --------------------------------------------------------------------------
def company(cid: int, **kw: object) -> CompanyMetrics:
    base: dict[str, object] = {
        "company_id": cid, "ltv": Decimal("150000.5"), "ltv_12m": Decimal("90000"),
        "last_purchase": date(2026, 11, 5), "return_status": "at_risk", "regular": True,
        "nps_last": 9, "nps_date": date(2026, 10, 12), "card_updated": date(2026, 9, 1),
        "nois_share": Decimal("0.7143")}
    base.update(kw)
    return CompanyMetrics(**base)  # type: ignore[arg-type]


@pytest.fixture
def book() -> dict[str, Worksheet]:
    data = build_workbook(
        rows_of(8) + rows_of(7, stale=STALE), [company(11), company(12, return_status=None,
                                                                    regular=False,
                                                                    nois_share=None)],
        PERIOD, rep_names=NAMES,
        companies={11: CompanyInfo("ООО Ромашка", 7), 12: CompanyInfo("АО Вектор", 8)})
    loaded = load_workbook(io.BytesIO(data))
    assert loaded.properties.title == "KPI менеджеров — ноябрь 2026"
    return {ws.title: ws for ws in loaded.worksheets}


def test_the_workbook_has_three_sheets(book: dict[str, Worksheet]) -> None:
    assert list(book) == ["KPI", "Висяки", "Клиенты"]


def test_kpi_sheet(book: dict[str, Worksheet]) -> None:
    sheet = book["KPI"]
    assert sheet["A1"].value == "KPI менеджеров отдела продаж — ноябрь 2026"
    assert [sheet.cell(2, c).value for c in (1, 2, 3, 6)] == [
        "Менеджер", "Выполнено", "Объём продаж", "Индекс удовлетворённости клиентов (NPS)"]
    assert [sheet.cell(3, c).value for c in range(3, 6)] == ["Факт, ₽", "Цель, ₽", "Статус"]
    assert sheet.freeze_panes == "C4"
    assert [sheet.cell(r, 1).value for r in (4, 5)] == ["Иван Петров", "Ольга Сидорова"]
    assert sheet["B4"].value == "1 из 5"
    assert (sheet["C4"].value, sheet["D4"].value, sheet["E4"].value) == (
        1250000, 1000000, "выполнен")
    assert sheet["C4"].number_format == "#,##0.00"
    visits = next(c for c in range(3, 20) if sheet.cell(2, c).value == "Личные визиты к клиентам")
    assert (sheet.cell(4, visits).value, sheet.cell(4, visits + 2).value) == (12, "не выполнен")
    assert sheet.cell(4, visits).number_format == "#,##0"
    assert sheet.cell(3, visits).value == "Факт, визитов"
    ranges = {str(r.sqref) for r in sheet.conditional_formatting}
    assert "E4:E5" in ranges and len(ranges) == 5
    rules = [rule.formula[0] for r in sheet.conditional_formatting for rule in r.rules]
    assert {'"выполнен"', '"не выполнен"', '"нет данных"'} <= set(rules)
    assert sheet.column_dimensions["A"].width == 28


def test_stale_sheet(book: dict[str, Worksheet]) -> None:
    sheet = book["Висяки"]
    assert [c.value for c in sheet[1]] == ["Менеджер", "Тип", "Запись", "Что не так"]
    assert [c.value for c in sheet[2]] == ["Иван Петров", "Сделка", "Поставка 1",
                                           "нет запланированного дела; стадия 12 дн."]
    assert sheet.max_row == 8 and sheet.auto_filter.ref == "A1:D8"
    assert sheet.freeze_panes == "A2"


def test_clients_sheet(book: dict[str, Worksheet]) -> None:
    sheet = book["Клиенты"]
    assert [c.value for c in sheet[1]][:6] == ["ID", "Компания", "Менеджер", "LTV, ₽",
                                               "Покупки за 12 мес., ₽", "Последняя покупка"]
    first = [c.value for c in sheet[2]]
    assert first[:5] == [11, "ООО Ромашка", "Иван Петров", 150000.5, 90000]
    assert first[5].date() == date(2026, 11, 5) and sheet["F2"].number_format == "DD.MM.YYYY"
    assert first[6:9] == ["под угрозой", "да", 9] and first[11] == pytest.approx(71.43)
    second = [c.value for c in sheet[3]]
    assert (second[6], second[7], second[11]) == ("нет покупок", "нет", None)
    assert sheet.freeze_panes == "C2" and sheet.auto_filter.ref == "A1:L3"
    assert sheet["L1"].value == "Доля НОИС, %"  # the company's Russian name, as in the KPIs


def test_an_empty_report_still_opens() -> None:
    data = build_workbook([], [], "2026-11")
    sheets = {ws.title: ws for ws in load_workbook(io.BytesIO(data)).worksheets}
    assert sheets["Висяки"]["A2"].value == "Висяков нет"
    assert file_name(PERIOD) == "KPI_2026-11.xlsx"


@pytest.mark.parametrize(("unit", "fmt"), [("₽", "#,##0.00"), ("%", "0.00"),
                                           ("% недель", "0.00"), ("п.", "0.00"),
                                           ("визитов", "#,##0")])
def test_number_formats(unit: str, fmt: str) -> None:
    assert number_format(unit) == fmt


# -- the demo's KPI table ----------------------------------------------------------------------
def test_the_table_shows_the_targets_the_reps_were_judged_by() -> None:
    """Regression: the header showed the default target (30 visits) whatever the config."""
    from b24app.kpi_table import kpi_table

    rows = [RepKpi(rep, "2026-11", "visits", Decimal(v), Decimal(25), s)
            for rep, v, s in ((7, "26", "ok"), (8, "12", "below"))]
    rows += [RepKpi(7, "2026-11", "sales_volume", Decimal(900_000), Decimal(1_000_000), "below"),
             RepKpi(8, "2026-11", "sales_volume", Decimal(900_000), Decimal(800_000), "ok")]
    lines = kpi_table(rows, NAMES)
    visits = next(x for x in lines if x.startswith("Личные визиты"))
    assert "(25)" in visits and "(30)" not in visits
    assert visits.split()[-4:] == ["26", "✓", "12", "✗"]
    assert "(" not in next(x for x in lines if x.startswith("Объём продаж"))  # plans differ
    assert "(95)" in next(x for x in lines if x.startswith("Актуальность CRM"))  # no row: default
