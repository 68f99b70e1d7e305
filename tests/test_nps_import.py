"""NPS answers from CSV/XLSX files and from the contacts' CRM fields."""

from __future__ import annotations

import codecs
import io
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import Workbook
from sqlalchemy.orm import Session, sessionmaker

from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.db import session_scope
from b24app.models import MirrorContact
from b24app.nps import NpsSettings
from b24app.nps.crm_field import (
    ingest_crm_field,
    parse_field_date,
    parse_score,
    run_crm_field,
)
from b24app.nps.importer import (
    ImportFileError,
    ImportReport,
    decode_csv,
    guess_delimiter,
    import_file,
    import_path,
    read_table,
)
from tests.test_nps_ledger import answers, seed_client, seed_portal

NSK = ZoneInfo("Asia/Novosibirsk")
NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


@pytest.fixture
def portal_id(session_factory: sessionmaker[Session], secret_box: SecretBox) -> int:
    """A portal whose mirror knows contacts 11, 12 (company 1) and 21 (company 2)."""
    portal = seed_portal(session_factory, secret_box)
    with session_scope(session_factory) as session:
        seed_client(session, portal, 1, 7, [11, 12])
        seed_client(session, portal, 2, 8, [21, 22], deleted_contacts=[22])
    return portal


def _import(sessions: sessionmaker[Session], portal_id: int, data: bytes | Path,
            filename: str) -> ImportReport:
    with session_scope(sessions) as session:
        return import_file(session, portal_id, data, filename, tz=NSK, now=NOW)


def _rows(sessions: sessionmaker[Session], portal_id: int) -> list[tuple[Any, ...]]:
    return [(r.contact_id, r.company_id, r.score, r.wave, r.answered_at.date(), r.source,
             r.comment) for r in answers(sessions, portal_id)]


def test_csv_in_cp1251_with_semicolons(session_factory: sessionmaker[Session],
                                       portal_id: int) -> None:
    """Excel's Russian «CSV (разделители — точка с запятой)»: cp1251, dd.mm.yyyy dates."""
    text = ("Контакт;Компания;Оценка;Дата;Комментарий\r\n"
            "11;1;9;15.10.2026;Всё отлично, «спасибо»\r\n"
            "12;;6;20.04.2026;Долго везли фасады\r\n"
            "21;2;10;2026-03-15;\r\n")
    report = _import(session_factory, portal_id, text.encode("cp1251"), "nps.csv")
    assert (report.rows, report.imported, report.errors, report.duplicates) == (3, 3, [], [])
    assert _rows(session_factory, portal_id) == [
        (11, 1, 9, "2026-H2", date(2026, 10, 14), "import", "Всё отлично, «спасибо»"),
        (12, 1, 6, "2026-H1", date(2026, 4, 19), "import", "Долго везли фасады"),
        (21, 2, 10, "2025-H2", date(2026, 3, 14), "import", ""),
    ]
    # The date is the Novosibirsk day: midnight there is 17:00 UTC the day before.
    first = answers(session_factory, portal_id)[0]
    assert first.answered_at == datetime(2026, 10, 14, 17, 0, tzinfo=UTC)


def test_csv_in_utf8_with_bom_and_commas(session_factory: sessionmaker[Session],
                                         portal_id: int, tmp_path: Path) -> None:
    """English headers, any column order, quoted commas, a file path as input."""
    text = ('date,score,contact_id,comment\n'
            '2026-10-15,8,11,"Хорошо, но дорого"\n'
            '2026-10-16T10:30:00+07:00,3,21,\n')
    path = tmp_path / "answers.csv"
    path.write_bytes(codecs.BOM_UTF8 + text.encode("utf-8"))
    report = _import(session_factory, portal_id, path, path.name)
    assert (report.imported, report.errors) == (2, [])
    assert _rows(session_factory, portal_id) == [
        (11, 1, 8, "2026-H2", date(2026, 10, 14), "import", "Хорошо, но дорого"),
        (21, 2, 3, "2026-H2", date(2026, 10, 16), "import", ""),
    ]


def _xlsx(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_xlsx(session_factory: sessionmaker[Session], portal_id: int) -> None:
    """Dates as date cells, numbers as floats or text; extra columns are ignored."""
    data = _xlsx([
        ["ФИО", "Контакт", "Оценка", "Дата", "Комментарий"],
        ["Иван Петров", 11, 10, datetime(2026, 10, 20, 0, 0), "Лучший поставщик"],
        ["Анна", 12.0, "7", date(2026, 10, 21), None],
        [None, None, None, None, None],
        ["Борис", "21", 4.0, "22.10.2026", 123],
    ])
    report = _import(session_factory, portal_id, data, "Опрос.xlsx")
    assert (report.rows, report.imported, report.errors) == (3, 3, [])
    assert [(r[0], r[2], r[3], r[6]) for r in _rows(session_factory, portal_id)] == [
        (11, 10, "2026-H2", "Лучший поставщик"), (12, 7, "2026-H2", ""), (21, 4, "2026-H2", "123")]


def test_bad_rows_are_reported_and_the_rest_imported(session_factory: sessionmaker[Session],
                                                     portal_id: int) -> None:
    """Each bad row: its number in the file and the reason in Russian."""
    text = ("контакт;оценка;дата\n"
            "11;11;15.10.2026\n"
            "12;девять;15.10.2026\n"
            ";9;15.10.2026\n"
            "abc;9;15.10.2026\n"
            "21;9;31.02.2026\n"
            "21;9;\n"
            "21;9;15.10.2027\n"
            "999;9;15.10.2026\n"
            "22;9;15.10.2026\n"
            "\n"
            "21;;15.10.2026\n"
            "21;5;15.10.2026\n")
    report = _import(session_factory, portal_id, text.encode("utf-8"), "nps.csv")
    assert report.imported == 1
    assert [(issue.row, issue.reason) for issue in report.errors] == [
        (2, "оценка должна быть целым числом от 0 до 10, а не «11»"),
        (3, "оценка должна быть целым числом от 0 до 10, а не «девять»"),
        (4, "не указан контакт"),
        (5, "контакт должен быть числом (ID в Битрикс24), а не «abc»"),
        (6, "не удалось прочитать дату «31.02.2026» (ожидается ДД.ММ.ГГГГ или ГГГГ-ММ-ДД)"),
        (7, "не указана дата"),
        (8, "дата «15.10.2027» ещё не наступила"),
        (9, "контакт 999 не найден в CRM (или удалён)"),
        (10, "контакт 22 не найден в CRM (или удалён)"),
        (12, "не указана оценка"),
    ]
    assert report.rows == 11
    assert _rows(session_factory, portal_id)[0][:3] == (21, 2, 5)
    summary = report.summary_ru()
    assert summary.startswith("Файл nps.csv: строк с данными 11, загружено 1, повторов 0, "
                              "ошибок 10.")
    assert "  строка 9: контакт 999 не найден в CRM (или удалён)" in summary


def test_duplicates_per_wave_are_skipped(session_factory: sessionmaker[Session],
                                         portal_id: int) -> None:
    """The first answer of a contact in a wave wins: within the file and against the ledger."""
    text = ("contact_id;score;date\n"
            "11;9;01.10.2026\n"
            "11;2;30.11.2026\n"  # would be in the future: an error, not a duplicate
            "11;3;10.11.2026\n"
            "11;8;10.05.2026\n")
    report = _import(session_factory, portal_id, text.encode("utf-8"), "a.csv")
    assert report.imported == 2
    assert [(d.row, d.reason) for d in report.duplicates] == [
        (4, "повтор: ответ контакта 11 за волну 2026-H2 уже есть выше в файле")]
    again = _import(session_factory, portal_id, text.encode("utf-8"), "a.csv")
    assert again.imported == 0
    assert [(d.row, d.reason) for d in again.duplicates] == [
        (2, "повтор: ответ контакта 11 за волну 2026-H2 уже есть в базе"),
        (4, "повтор: ответ контакта 11 за волну 2026-H2 уже есть выше в файле"),
        (5, "повтор: ответ контакта 11 за волну 2026-H1 уже есть в базе"),
    ]
    assert [(r[2], r[3]) for r in _rows(session_factory, portal_id)] == [
        (8, "2026-H1"), (9, "2026-H2")]


@pytest.mark.parametrize(("data", "filename", "message"), [
    (b"", "a.csv", "Файл пуст"),
    (b"\n;;\n", "a.csv", "Файл пуст"),
    ("Контакт;Дата\n11;01.10.2026\n".encode(), "a.csv", "нет столбцов: «оценка»"),
    ("Оценка,Score,contact,date\n".encode(), "a.csv", "«оценка» встречается дважды"),
    (b"\xd0\xcf\x11\xe0 old excel", "a.xls", "Формат .xls не поддерживается"),
    (b"PK\x03\x04 not really a zip", "a.xlsx", "Не удалось прочитать файл XLSX"),
    (b"\x98\x98\x98", "a.csv", "Не удалось определить кодировку"),
])
def test_unusable_files_are_refused_as_a_whole(data: bytes, filename: str, message: str) -> None:
    """File-level problems raise ImportFileError with a Russian message, before any row."""
    with pytest.raises(ImportFileError, match=message):
        read_table(data, filename)


def test_an_unusable_file_stores_nothing(session_factory: sessionmaker[Session],
                                         portal_id: int) -> None:
    """import_file refuses the file as a whole."""
    with pytest.raises(ImportFileError, match="нет столбцов"):
        _import(session_factory, portal_id, b"contact;date\n11;01.10.2026\n", "a.csv")
    assert answers(session_factory, portal_id) == []


def test_header_after_blank_lines_and_an_unclosed_quote() -> None:
    """Leading blank rows are skipped; an unclosed quote swallows the rest as one row."""
    columns, rows = read_table(b"\n\ncontact;score;date\n\"11;9;01.10.2026", "a.csv")
    assert columns == {"contact": 0, "score": 1, "date": 2}
    assert list(rows) == [(4, ["11;9;01.10.2026"])]


def test_xlsx_is_recognised_by_content_too(session_factory: sessionmaker[Session],
                                           portal_id: int) -> None:
    """A spreadsheet saved without its extension still reads as XLSX."""
    data = _xlsx([["contact", "score", "date"], [11, 9, date(2026, 10, 5)]])
    assert _import(session_factory, portal_id, data, "export").imported == 1


def test_encoding_and_delimiter_guesses() -> None:
    """UTF-8 first (with or without BOM), cp1251 otherwise; the delimiter that finds columns."""
    assert decode_csv(codecs.BOM_UTF8 + "Оценка".encode()) == "Оценка"
    assert decode_csv("Оценка".encode("cp1251")) == "Оценка"
    assert guess_delimiter("Контакт;Оценка;Дата") == ";"
    assert guess_delimiter("contact,score,date") == ","
    assert guess_delimiter("contact\tscore\tdate") == "\t"
    # A comma inside a header cell does not fool it.
    assert guess_delimiter("Контакт;Оценка;Дата;Комментарий, если есть") == ";"


# -- the CRM field ------------------------------------------------------------------------------
def _contact(session: Session, portal_id: int, contact_id: int, raw: dict[str, Any], *,
             deleted: bool = False) -> None:
    session.add(MirrorContact(portal_id=portal_id, id=contact_id, company_id=3, raw=raw,
                              deleted_at=NOW if deleted else None))


def test_crm_field_ingest_is_idempotent(session_factory: sessionmaker[Session],
                                        secret_box: SecretBox) -> None:
    """Contacts with a score and a date become answers once; others are left alone."""
    portal_id = seed_portal(session_factory, secret_box)
    with session_scope(session_factory) as session:
        _contact(session, portal_id, 1, {"UF_CRM_NPS_SCORE": 9,
                                         "UF_CRM_NPS_DATE": "2026-10-15T00:00:00+07:00"})
        _contact(session, portal_id, 2, {"UF_CRM_NPS_SCORE": "7", "UF_CRM_NPS_DATE": "2026-04-10"})
        _contact(session, portal_id, 3, {"UF_CRM_NPS_SCORE": 0,
                                         "UF_CRM_NPS_DATE": "31.03.2026"})
        _contact(session, portal_id, 4, {"UF_CRM_NPS_SCORE": 8, "UF_CRM_NPS_DATE": ""})
        _contact(session, portal_id, 5, {"UF_CRM_NPS_SCORE": 15,
                                         "UF_CRM_NPS_DATE": "2026-10-15"})
        _contact(session, portal_id, 6, {"UF_CRM_NPS_SCORE": None, "UF_CRM_NPS_DATE": None})
        _contact(session, portal_id, 7, {})
        _contact(session, portal_id, 8, {"UF_CRM_NPS_SCORE": 10, "UF_CRM_NPS_DATE": "2026-10-15"},
                 deleted=True)
    for expected in (3, 0, 0):
        with session_scope(session_factory) as session:
            assert ingest_crm_field(session, portal_id, NpsSettings(), tz=NSK) == expected
    assert [(r.contact_id, r.company_id, r.score, r.wave, r.source)
            for r in answers(session_factory, portal_id)] == [
        (1, 3, 9, "2026-H2", "crm_field"), (2, 3, 7, "2026-H1", "crm_field"),
        (3, 3, 0, "2025-H2", "crm_field")]


def test_crm_field_keeps_earlier_answers_and_adds_new_waves(
        session_factory: sessionmaker[Session], secret_box: SecretBox) -> None:
    """The field holds the latest answer: a new wave adds a row, an edit in a wave does not."""
    portal_id = seed_portal(session_factory, secret_box)
    settings = NpsSettings(score_field="UF_CRM_SCORE_X", date_field="UF_CRM_DATE_X")
    with session_scope(session_factory) as session:
        _contact(session, portal_id, 1, {"UF_CRM_SCORE_X": 5, "UF_CRM_DATE_X": "2026-04-10"})
    with session_scope(session_factory) as session:
        assert ingest_crm_field(session, portal_id, settings, tz=NSK) == 1
        contact = session.get(MirrorContact, (portal_id, 1))
        assert contact is not None
        contact.raw = {"UF_CRM_SCORE_X": 9, "UF_CRM_DATE_X": "2026-10-12"}
    with session_scope(session_factory) as session:
        assert ingest_crm_field(session, portal_id, settings, tz=NSK) == 1
        contact = session.get(MirrorContact, (portal_id, 1))
        assert contact is not None
        contact.raw = {"UF_CRM_SCORE_X": 2, "UF_CRM_DATE_X": "2026-10-20"}
    with session_scope(session_factory) as session:
        assert ingest_crm_field(session, portal_id, settings, tz=NSK) == 0
    assert [(r.score, r.wave) for r in answers(session_factory, portal_id)] == [
        (5, "2026-H1"), (9, "2026-H2")]


def test_crm_field_pages_through_many_contacts(session_factory: sessionmaker[Session],
                                               secret_box: SecretBox) -> None:
    """More contacts than one page (500): every one is read."""
    portal_id = seed_portal(session_factory, secret_box)
    with session_scope(session_factory) as session:
        for contact_id in range(1, 1203):
            _contact(session, portal_id, contact_id,
                     {"UF_CRM_NPS_SCORE": contact_id % 11, "UF_CRM_NPS_DATE": "2026-10-15"})
    with session_scope(session_factory) as session:
        assert ingest_crm_field(session, portal_id, NpsSettings(), tz=NSK) == 1202


@pytest.mark.parametrize(("value", "score"), [
    (9, 9), ("10", 10), (" 3 ", 3), (7.0, 7), (7.5, None), ("11", None), (True, None),
    ("", None), (None, None), ("٣", None), (-1, None)])
def test_parse_score(value: Any, score: int | None) -> None:
    """Integers 0..10 in the shapes Bitrix24 and spreadsheets use."""
    assert parse_score(value) == score


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-10-15T00:00:00+07:00", datetime(2026, 10, 14, 17, 0, tzinfo=UTC)),
    ("2026-10-15", datetime(2026, 10, 15, tzinfo=NSK)),
    ("15.10.2026", datetime(2026, 10, 15, tzinfo=NSK)),
    ("15.10.2026 10:30:00", datetime(2026, 10, 15, 10, 30, tzinfo=NSK)),
    (date(2026, 10, 15), datetime(2026, 10, 15, tzinfo=NSK)),
    ("", None), ("вчера", None), (None, None), (False, None)])
def test_parse_field_date(value: Any, expected: datetime | None) -> None:
    """ISO with or without offset, or the portal's dd.mm.yyyy; bare values are local."""
    assert parse_field_date(value, NSK) == expected


# -- entry points for the CLI and the scheduler ---------------------------------------------
def test_import_path_commits_with_the_configured_calendar(app_ctx: AppContext,
                                                          tmp_path: Path) -> None:
    """``b24app nps import FILE``: the app's clock refuses future dates; the rows are committed."""
    portal_id = seed_portal(app_ctx.sessions, app_ctx.secrets)
    with session_scope(app_ctx.sessions) as session:
        seed_client(session, portal_id, 1, 7, [11, 12])
    path = tmp_path / "опрос.csv"
    path.write_text("контакт;оценка;дата\n11;9;01.10.2026\n12;9;01.12.2026\n", "utf-8")
    report = import_path(app_ctx, portal_id, path)
    assert (report.filename, report.imported) == ("опрос.csv", 1)
    assert [issue.row for issue in report.errors] == [3]
    assert [(r.contact_id, r.wave) for r in answers(app_ctx.sessions, portal_id)] == [
        (11, "2026-H2")]


def test_run_crm_field_commits(app_ctx: AppContext) -> None:
    """The scheduled ingest of one portal, idempotent."""
    portal_id = seed_portal(app_ctx.sessions, app_ctx.secrets)
    with session_scope(app_ctx.sessions) as session:
        _contact(session, portal_id, 1, {"UF_CRM_NPS_SCORE": "10",
                                         "UF_CRM_NPS_DATE": "2026-10-15T00:00:00+07:00"})
    assert [run_crm_field(app_ctx, portal_id) for _ in range(2)] == [1, 0]
    assert [r.score for r in answers(app_ctx.sessions, portal_id)] == [10]
