"""NPS answers from a CSV or XLSX file: validated per row, the wave taken from the date."""

from __future__ import annotations

import codecs
import csv
import io
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.models import MirrorContact
from b24app.nps import NpsSettings, nps_settings
from b24app.nps.crm_field import parse_field_date, parse_score
from b24app.nps.ledger import Answer, record_many, wave_of

CHUNK = 500
MAX_BYTES = 20 * 1024 * 1024
REQUIRED = ("contact", "score", "date")
# Header spellings, compared lower-cased with «ё» as «е» and spaces collapsed.
HEADERS: dict[str, frozenset[str]] = {
    "contact": frozenset({"контакт", "contact_id", "contact", "id контакта", "ид контакта",
                          "контакт id", "contact id"}),
    "company": frozenset({"компания", "company_id", "company", "id компании", "ид компании",
                          "company id"}),
    "score": frozenset({"оценка", "score", "nps", "балл"}),
    "date": frozenset({"дата", "date", "дата ответа", "answered_at"}),
    "comment": frozenset({"комментарий", "comment", "комментарии"}),
}
COLUMN_RU = {"contact": "контакт", "company": "компания", "score": "оценка", "date": "дата",
             "comment": "комментарий"}


class ImportFileError(ValueError):
    """The whole file cannot be used (format, encoding, header); the message is Russian."""


@dataclass(frozen=True)
class RowIssue:
    """A row that was not imported: its number in the file (header = 1) and why, in Russian."""

    row: int
    reason: str


@dataclass
class ImportReport:
    """What an import did: rows read, answers recorded, duplicates and errors by row."""

    filename: str
    rows: int = 0
    imported: int = 0
    duplicates: list[RowIssue] = field(default_factory=list)
    errors: list[RowIssue] = field(default_factory=list)

    def summary_ru(self) -> str:
        """A Russian summary for the command line, one issue per line."""
        lines = [f"Файл {self.filename}: строк с данными {self.rows}, загружено {self.imported}, "
                 f"повторов {len(self.duplicates)}, ошибок {len(self.errors)}."]
        issues = sorted(self.errors + self.duplicates, key=lambda issue: issue.row)
        lines += [f"  строка {issue.row}: {issue.reason}" for issue in issues]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Row:
    number: int
    contact_id: int
    company_id: int | None
    score: int
    answered_at: datetime
    comment: str


class _RowError(ValueError):
    """One row's problem, in Russian."""


def import_file(session: Session, portal_id: int, path_or_bytes: str | Path | bytes,
                filename: str, *, nps: NpsSettings | None = None, tz: tzinfo,
                now: datetime | None = None) -> ImportReport:
    """Import answers (source ``import``) from a CSV or XLSX file; the first answer of a wave wins.

    Rows are checked one by one and a bad row never stops the others; ``now``, when given,
    refuses dates in the future. The caller commits the session.
    """
    nps = nps or NpsSettings()
    columns, rows = read_table(_read_bytes(path_or_bytes), filename)
    report = ImportReport(filename)
    seen: set[tuple[int, str]] = set()
    chunk: list[_Row] = []
    for number, cells in rows:
        if all(_blank(cell) for cell in cells):
            continue
        report.rows += 1
        try:
            chunk.append(_parse_row(number, cells, columns, tz, now))
        except _RowError as exc:
            report.errors.append(RowIssue(number, str(exc)))
        if len(chunk) >= CHUNK:
            _store(session, portal_id, chunk, nps=nps, tz=tz, seen=seen, report=report)
            chunk = []
    _store(session, portal_id, chunk, nps=nps, tz=tz, seen=seen, report=report)
    report.errors.sort(key=lambda issue: issue.row)
    report.duplicates.sort(key=lambda issue: issue.row)
    return report


def import_path(ctx: AppContext, portal_id: int, path: str | Path) -> ImportReport:
    """``b24app nps import FILE``: import one file in one transaction with the configured waves."""
    with session_scope(ctx.sessions) as session:
        return import_file(session, portal_id, path, Path(path).name,
                           nps=nps_settings(ctx.settings), tz=ctx.settings.calendar.tzinfo,
                           now=ctx.clock())


def _read_bytes(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if path.stat().st_size > MAX_BYTES:
            raise ImportFileError(f"Файл больше {MAX_BYTES // 2**20} МБ: разбейте его на части.")
        data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise ImportFileError(f"Файл больше {MAX_BYTES // 2**20} МБ: разбейте его на части.")
    return data


# -- reading the table -------------------------------------------------------------------------
def read_table(data: bytes, filename: str
               ) -> tuple[dict[str, int], Iterator[tuple[int, list[Any]]]]:
    """The column map and the numbered rows after the header; ``ImportFileError`` if unusable."""
    rows = _table(data, filename)
    for _number, cells in rows:
        if not all(_blank(cell) for cell in cells):
            return map_header(cells), rows
    raise ImportFileError("Файл пуст: нет строки заголовков.")


def _table(data: bytes, filename: str) -> Iterator[tuple[int, list[Any]]]:
    """Numbered rows of the file (1 = the header), whatever its format."""
    suffix = Path(filename).suffix.lower()
    if suffix == ".xls":
        raise ImportFileError("Формат .xls не поддерживается: сохраните файл как .xlsx или CSV.")
    if suffix in {".xlsx", ".xlsm"} or (suffix != ".csv" and data.startswith(b"PK\x03\x04")):
        return _xlsx_rows(data)
    return _csv_rows(data)


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles and extensions it does not read; values are intact.
            warnings.simplefilter("ignore", UserWarning)
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                rows = [(number, list(values)) for number, values in
                        enumerate(book.worksheets[0].iter_rows(values_only=True), start=1)]
            finally:
                book.close()
    except (zipfile.BadZipFile, KeyError, IndexError, OSError, ValueError):
        raise ImportFileError("Не удалось прочитать файл XLSX: он повреждён или это не "
                              "таблица Excel.") from None
    return iter(rows)


def decode_csv(data: bytes) -> str:
    """The text of a CSV file: UTF-8 (with or without BOM), else Windows-1251."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        # Excel on a Russian Windows saves «CSV» in cp1251.
        return data.decode("cp1251")
    except UnicodeDecodeError:
        raise ImportFileError("Не удалось определить кодировку файла: сохраните его в UTF-8 "
                              "или Windows-1251.") from None


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[Any]]]:
    text = decode_csv(data)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = guess_delimiter(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = [(number, list(cells)) for number, cells in enumerate(reader, start=1)]
    except csv.Error:
        raise ImportFileError("Файл CSV повреждён (незакрытые кавычки?).") from None
    return iter(rows)


def guess_delimiter(header_line: str) -> str:
    """``;``, ``,`` or tab: whichever splits the header into the most known columns."""
    def score(delimiter: str) -> tuple[int, int]:
        cells = next(csv.reader([header_line], delimiter=delimiter), [])
        known = sum(_column_of(cell) is not None for cell in cells)
        return known, len(cells)

    return max((";", ",", "\t"), key=score)


def _normal(cell: Any) -> str:
    text = "" if cell is None else str(cell)
    return " ".join(text.replace("\ufeff", "").replace("ё", "е").lower().split()).strip(" *:")


def _column_of(cell: Any) -> str | None:
    name = _normal(cell)
    return next((key for key, names in HEADERS.items() if name in names), None)


def map_header(header: Sequence[Any]) -> dict[str, int]:
    """Column positions by field; unknown columns are ignored, missing required ones refused."""
    columns: dict[str, int] = {}
    for index, cell in enumerate(header):
        key = _column_of(cell)
        if key is None:
            continue
        if key in columns:
            raise ImportFileError(f"Столбец «{COLUMN_RU[key]}» встречается дважды.")
        columns[key] = index
    missing = [COLUMN_RU[key] for key in REQUIRED if key not in columns]
    if missing:
        raise ImportFileError(
            "В первой строке нет столбцов: " + ", ".join(f"«{m}»" for m in missing)
            + ". Ожидаются заголовки: контакт, компания, оценка, дата, комментарий "
              "(или contact_id, company_id, score, date, comment).")
    return columns


# -- one row -----------------------------------------------------------------------------------
def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _cell(cells: Sequence[Any], columns: dict[str, int], key: str) -> Any:
    index = columns.get(key)
    if index is None or index >= len(cells):
        return None
    value = cells[index]
    return value.strip() if isinstance(value, str) else value


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _id(value: Any, what: str, *, required: bool) -> int | None:
    if _blank(value):
        if required:
            raise _RowError(f"не указан {what}")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel keeps every number as a float
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise _RowError(f"{what} должен быть числом (ID в Битрикс24), а не «{_shown(value)}»")


def _date(value: Any, tz: tzinfo, now: datetime | None) -> datetime:
    if _blank(value):
        raise _RowError("не указана дата")
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    answered_at = parse_field_date(value, tz)
    if answered_at is None:
        raise _RowError(f"не удалось прочитать дату «{_shown(value)}» "
                        "(ожидается ДД.ММ.ГГГГ или ГГГГ-ММ-ДД)")
    if now is not None and answered_at > now:
        raise _RowError(f"дата «{_shown(value)}» ещё не наступила")
    return answered_at


def _parse_row(number: int, cells: Sequence[Any], columns: dict[str, int], tz: tzinfo,
               now: datetime | None) -> _Row:
    contact_id = _id(_cell(cells, columns, "contact"), "контакт", required=True)
    company_id = _id(_cell(cells, columns, "company"), "ID компании", required=False)
    raw_score = _cell(cells, columns, "score")
    if _blank(raw_score):
        raise _RowError("не указана оценка")
    score = parse_score(raw_score)
    if score is None:
        raise _RowError(f"оценка должна быть целым числом от 0 до 10, а не «{_shown(raw_score)}»")
    answered_at = _date(_cell(cells, columns, "date"), tz, now)
    comment = _cell(cells, columns, "comment")
    assert contact_id is not None  # required=True never returns None
    return _Row(number, contact_id, company_id, score, answered_at,
                "" if comment is None else str(comment))


# -- storing -----------------------------------------------------------------------------------
def _mirror_companies(session: Session, portal_id: int, contact_ids: set[int]
                      ) -> dict[int, int | None]:
    """The company of every known, not deleted contact among ``contact_ids``."""
    rows = session.execute(select(MirrorContact.id, MirrorContact.company_id).where(
        MirrorContact.portal_id == portal_id, MirrorContact.id.in_(sorted(contact_ids)),
        MirrorContact.deleted_at.is_(None)))
    return dict(rows.all())


def _store(session: Session, portal_id: int, chunk: list[_Row], *, nps: NpsSettings,
           tz: tzinfo, seen: set[tuple[int, str]], report: ImportReport) -> None:
    if not chunk:
        return
    companies = _mirror_companies(session, portal_id, {row.contact_id for row in chunk})
    pending: list[tuple[_Row, Answer]] = []
    for row in chunk:
        if row.contact_id not in companies:
            report.errors.append(RowIssue(row.number, f"контакт {row.contact_id} не найден "
                                                      "в CRM (или удалён)"))
            continue
        wave = wave_of(row.answered_at, nps, tz)
        if (row.contact_id, wave) in seen:
            report.duplicates.append(RowIssue(row.number, f"повтор: ответ контакта "
                                              f"{row.contact_id} за волну {wave} уже есть "
                                              "выше в файле"))
            continue
        seen.add((row.contact_id, wave))
        company_id = row.company_id if row.company_id is not None else companies[row.contact_id]
        pending.append((row, Answer(row.contact_id, company_id, row.score, wave,
                                    row.answered_at, "import", row.comment)))
    inserted = record_many(session, portal_id, [answer for _, answer in pending])
    for row, answer in pending:
        if (answer.contact_id, answer.wave) in inserted:
            report.imported += 1
        else:
            report.duplicates.append(RowIssue(row.number, f"повтор: ответ контакта "
                                              f"{row.contact_id} за волну {answer.wave} уже "
                                              "есть в базе"))
