"""Tables with Bitrix24 list semantics: filter prefixes, order, select, pages of 50."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from b24emu.store import (
    PAGE,
    FieldDef,
    FilterError,
    Table,
    parse_filter,
    parse_order,
    pick_start,
    select_names,
)

TZ = ZoneInfo("Asia/Novosibirsk")
FIELDS = {d.name: d for d in (
    FieldDef("ID", "integer"),
    FieldDef("TITLE", "string"),
    FieldDef("STAGE_ID", "crm_status"),
    FieldDef("OPPORTUNITY", "double"),
    FieldDef("ASSIGNED_BY_ID", "user"),
    FieldDef("DATE_CREATE", "datetime"),
    FieldDef("CLOSED", "char"),
    FieldDef("CONTACT_IDS", "crm_contact", multiple=True),
    FieldDef("UF_CRM_KPI", "double", dynamic=True),
)}
BASE = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def _table(rows: int = 10) -> Table:
    table = Table("deal", FIELDS)
    for i in range(1, rows + 1):
        table.insert({
            "TITLE": f"Deal {i}" if i % 2 else f"Сделка {i}",
            "STAGE_ID": "WON" if i % 3 == 0 else "NEW",
            "OPPORTUNITY": float(i * 100),
            "ASSIGNED_BY_ID": 1 + i % 2,
            "DATE_CREATE": BASE + timedelta(days=i),
            "CLOSED": "Y" if i % 3 == 0 else "N",
            "CONTACT_IDS": [i, i + 100],
            "UF_CRM_KPI": None if i == 1 else i / 2,
        })
    return table


def _ids(table: Table, flt: dict[str, Any], **kw: Any) -> list[int]:
    conditions = parse_filter(flt, FIELDS, TZ, **kw)
    return [row["ID"] for row in table.query(conditions, [], 0).rows]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"ID": 3}, [3]),
        ({"=ID": "3"}, [3]),
        ({">ID": 8}, [9, 10]),
        ({">=ID": 8}, [8, 9, 10]),
        ({"<ID": 3}, [1, 2]),
        ({"<=ID": 2}, [1, 2]),
        ({"!ID": 1, "<ID": 4}, [2, 3]),
        ({"!=STAGE_ID": "NEW"}, [3, 6, 9]),
        ({"@ID": [2, 4, 99]}, [2, 4]),
        ({"!@ID": ["1", "2", "3", "4", "5", "6", "7", "8"]}, [9, 10]),
        ({"ID": [5, 6]}, [5, 6]),  # a list without prefix means IN
        ({"><OPPORTUNITY": [200, 400]}, [2, 3, 4]),
        ({">OPPORTUNITY": "850.5"}, [9, 10]),
        ({"%TITLE": "сделка"}, [2, 4, 6, 8, 10]),  # substring, case-insensitive
        ({"!%TITLE": "Deal"}, [2, 4, 6, 8, 10]),
        ({"=%TITLE": "Deal 1%"}, [1]),  # explicit wildcard: starts with
        ({"%=TITLE": "%9"}, [9]),
        ({"!=%TITLE": "Deal%"}, [2, 4, 6, 8, 10]),
        ({"STAGE_ID": "won"}, [3, 6, 9]),  # equality ignores case, like MySQL collations
        ({"CLOSED": True}, [3, 6, 9]),  # booleans mean Y/N for char flags
        ({">=DATE_CREATE": "2024-03-10"}, [9, 10]),
        ({">DATE_CREATE": "2024-03-10T16:00:00+07:00"}, [10]),
        ({"CONTACT_IDS": 105}, [5]),  # a multiple field matches any of its values
        ({"UF_CRM_KPI": ""}, [1]),  # empty value = field not set
        ({"!UF_CRM_KPI": ""}, [2, 3, 4, 5, 6, 7, 8, 9, 10]),
        ({"NO_SUCH_FIELD": 1, "ID": 2}, [2]),  # legacy CRM ignores unknown fields
        ({"LOGIC": "OR", "ID": 2}, [2]),
    ],
)
def test_filter_prefixes(flt: dict[str, Any], expected: list[int]) -> None:
    """Every documented prefix: ``= ! != > >= < <= >< @ !@ % !% =% %= !=%`` (5.1)."""
    assert _ids(_table(), flt) == expected


def test_strict_filter_rejects_unknown_fields_and_bad_keys() -> None:
    """``strict`` (crm.item style) refuses what the legacy CRM silently ignores."""
    with pytest.raises(FilterError):
        parse_filter({"NOPE": 1}, FIELDS, TZ, strict=True)
    with pytest.raises(FilterError):
        parse_filter({">=ID; DROP": 1}, FIELDS, TZ)
    with pytest.raises(FilterError):
        parse_filter({"><ID": [1, 2, 3]}, FIELDS, TZ)


def test_filter_rename_maps_camel_case() -> None:
    """``rename`` lets camelCase filters (crm.item, tasks) reach UPPER_CASE columns."""
    ids = _ids(_table(), {">=opportunity": 900}, rename=lambda n: n.upper())
    assert ids == [9, 10]


def test_pages_of_fifty_with_total_and_next() -> None:
    """Lists answer 50 rows, ``total``, and ``next`` only while rows remain (4.2)."""
    table = _table(120)
    first = table.query([], [], 0)
    assert (len(first.rows), first.total, first.next) == (PAGE, 120, 50)
    last = table.query([], [], 100)
    assert (len(last.rows), last.total, last.next) == (20, 120, None)
    assert [r["ID"] for r in last.rows][:2] == [101, 102]


def test_start_minus_one_skips_the_count() -> None:
    """``start=-1``: ``total`` 0 and no ``next``; page with ``>ID`` (huge-data.md)."""
    table = _table(120)
    seen: list[int] = []
    last_id = 0
    while True:
        page = table.query(parse_filter({">ID": last_id}, FIELDS, TZ), [("ID", False)], -1)
        assert (page.total, page.next) == (0, None)
        seen += [r["ID"] for r in page.rows]
        if len(page.rows) < PAGE:
            break
        last_id = page.rows[-1]["ID"]
    assert seen == list(range(1, 121))


def test_start_minus_one_with_other_conditions() -> None:
    """The fast export also works when the filter has non-ID conditions."""
    table = _table(120)
    page = table.query(parse_filter({"STAGE_ID": "WON"}, FIELDS, TZ), [], -1)
    assert (len(page.rows), page.total, page.next) == (40, 0, None)


def test_filtered_count_and_next() -> None:
    """``total`` counts the filtered rows, not the table."""
    table = _table(120)
    page = table.query(parse_filter({"CLOSED": "N"}, FIELDS, TZ), [], 50)
    assert (page.total, page.next, len(page.rows)) == (80, None, 30)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, 0), ("", 0), ("0", 0), ("50", 50), (75, 50), ("149", 100), ("-1", -1), (-5, -1),
     ("junk", 0)],
)
def test_pick_start_rounds_to_page(raw: Any, expected: int) -> None:
    """``start`` is a page number in disguise: Bitrix24 floors it to a multiple of 50."""
    assert pick_start(raw) == expected


def test_order_by_fields_and_directions() -> None:
    """``order`` sorts by several fields; unknown fields are ignored."""
    table = _table()
    order = parse_order({"STAGE_ID": "desc", "OPPORTUNITY": "ASC", "NOPE": "ASC"}, FIELDS)
    assert order == [("STAGE_ID", True), ("OPPORTUNITY", False)]
    ids = [r["ID"] for r in table.query([], order, 0).rows]
    assert ids == [3, 6, 9, 1, 2, 4, 5, 7, 8, 10]


def test_order_puts_empty_values_first_ascending() -> None:
    """Nulls sort before values ascending (MySQL) and last descending."""
    table = _table(4)
    asc = [r["ID"] for r in table.query([], [("UF_CRM_KPI", False)], 0).rows]
    desc = [r["ID"] for r in table.query([], [("UF_CRM_KPI", True)], 0).rows]
    assert asc == [1, 2, 3, 4]
    assert desc == [4, 3, 2, 1]


def test_order_desc_pages() -> None:
    """Paging follows the requested order."""
    table = _table(60)
    page = table.query([], [("ID", True)], 50)
    assert [r["ID"] for r in page.rows] == list(range(10, 0, -1))
    assert (page.total, page.next) == (60, None)


def test_select_expansion() -> None:
    """``*`` = single standard fields, ``UF_*`` = user fields, ID always first (5.1)."""
    assert select_names(None, FIELDS) == ["ID", "TITLE", "STAGE_ID", "OPPORTUNITY",
                                          "ASSIGNED_BY_ID", "DATE_CREATE", "CLOSED"]
    assert select_names(["UF_*"], FIELDS) == ["ID", "UF_CRM_KPI"]
    assert select_names(["TITLE", "CONTACT_IDS", "NOPE"], FIELDS) == ["ID", "TITLE",
                                                                        "CONTACT_IDS"]
    assert select_names({"0": "*", "1": "UF_*"}, FIELDS)[-1] == "UF_CRM_KPI"


def test_insert_delete_keep_id_order() -> None:
    """IDs auto-increment, explicit IDs are kept sorted, deleted IDs are never reused."""
    table = Table("t", FIELDS)
    assert [table.insert({"TITLE": "a"}), table.insert({"TITLE": "b"})] == [1, 2]
    assert table.insert({"TITLE": "x"}, row_id=10) == 10
    assert table.insert({"TITLE": "y"}, row_id=5) == 5
    assert [r["ID"] for r in table] == [1, 2, 5, 10]
    assert table.delete(2) is True
    assert table.delete(2) is False
    assert table.insert({"TITLE": "c"}) == 11
    assert 2 not in table
    assert len(table) == 4
    assert table.get(5) == {"TITLE": "y", "ID": 5}
    assert [r["ID"] for r in table.query(parse_filter({">=ID": 3}, FIELDS, TZ), [], 0).rows] == [
        5, 10, 11]


def test_date_filters_read_offsetless_input_in_portal_zone() -> None:
    """A bare date means midnight in the portal's zone (emulator assumption, platform 6)."""
    table = Table("t", FIELDS)
    table.insert({"DATE_CREATE": datetime(2024, 3, 9, 17, 30, tzinfo=UTC)})  # 00:30 +07
    table.insert({"DATE_CREATE": datetime(2024, 3, 9, 16, 30, tzinfo=UTC)})  # 23:30 +07
    assert _ids(table, {">=DATE_CREATE": "2024-03-10"}) == [1]
    assert _ids(table, {">=DATE_CREATE": "10.03.2024"}) == [1]
