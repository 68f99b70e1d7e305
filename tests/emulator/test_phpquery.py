"""PHP-style bracketed query strings: what Bitrix24 reads from forms and batch commands."""

from __future__ import annotations

from typing import Any

import pytest

from b24emu.phpquery import as_list, build, flatten, parse, parse_pairs, scalar


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1", {"a": "1"}),
        ("fields[TITLE]=Deal", {"fields": {"TITLE": "Deal"}}),
        ("select[]=ID&select[]=TITLE", {"select": ["ID", "TITLE"]}),
        # fast-bitrix24 numbers list items explicitly: select[0]=ID (bitrix24-clients.md 1.4).
        ("select[0]=ID&select[1]=TITLE", {"select": {"0": "ID", "1": "TITLE"}}),
        # fast-bitrix24 quotes keys, so ">=" arrives as %3E%3D.
        ("filter[%3E%3DDATE_CREATE]=2024-01-01", {"filter": {">=DATE_CREATE": "2024-01-01"}}),
        ("order[ID]=ASC&start=50&", {"order": {"ID": "ASC"}, "start": "50"}),
        ("a[b][c][]=1&a[b][c][]=2", {"a": {"b": {"c": ["1", "2"]}}}),
        ("fields[UF_CRM_LIST][]=", {"fields": {"UF_CRM_LIST": [""]}}),
        ("empty=", {"empty": ""}),
        ("text=a%26b%3Dc", {"text": "a&b=c"}),
        ("plus=a+b", {"plus": "a b"}),
        ("cyr=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82", {"cyr": "привет"}),
        # A malformed tail is kept verbatim instead of guessing.
        ("a[b=1", {"a[b": "1"}),
    ],
)
def test_parse(query: str, expected: dict[str, Any]) -> None:
    """Every value stays a string; ``[]`` appends, ``[k]`` nests."""
    assert parse(query) == expected


def test_numbered_key_after_append_turns_the_list_into_a_map() -> None:
    """``a[]=x&a[5]=y`` is a PHP array with keys 0 and 5, so it cannot stay a list."""
    assert parse("a[]=x&a[5]=y") == {"a": {"0": "x", "5": "y"}}


def test_parse_pairs_matches_parse_for_a_form_body() -> None:
    """A decoded form body parses exactly like the same query string."""
    pairs = [("auth[domain]", "portal"), ("data[FIELDS][ID]", "7"), ("event", "ONCRMDEALADD")]
    assert parse_pairs(pairs) == {"auth": {"domain": "portal"}, "data": {"FIELDS": {"ID": "7"}},
                                  "event": "ONCRMDEALADD"}


@pytest.mark.parametrize(
    ("value", "wire"),
    [(None, ""), (True, "1"), (False, "0"), (7, "7"), (1.5, "1.5"), ("x", "x")],
)
def test_scalar_is_php_http_build_query(value: Any, wire: str) -> None:
    """Scalars render as PHP's http_build_query renders them (true → 1, null → empty)."""
    assert scalar(value) == wire


def test_flatten_event_payload_is_all_strings_with_bracketed_keys() -> None:
    """Event bodies are form-encoded with bracketed keys, every value a string (3.2)."""
    payload = {"event": "ONTASKADD", "event_handler_id": 3,
               "data": {"FIELDS_BEFORE": "undefined", "FIELDS_AFTER": {"ID": 123}},
               "ts": 1466439714, "auth": {"expires_in": 3600, "domain": "p"}}
    pairs = flatten(payload)
    assert pairs == [
        ("event", "ONTASKADD"), ("event_handler_id", "3"),
        ("data[FIELDS_BEFORE]", "undefined"), ("data[FIELDS_AFTER][ID]", "123"),
        ("ts", "1466439714"), ("auth[expires_in]", "3600"), ("auth[domain]", "p"),
    ]
    assert all(isinstance(v, str) for _, v in pairs)


def test_flatten_empty_arrays() -> None:
    """An empty list is ``key[]=`` (to clear a value) unless dropped like http_build_query."""
    assert flatten({"a": [], "b": {}}) == [("a[]", ""), ("b", "")]
    assert flatten({"a": [], "b": {}, "c": 1}, skip_empty=True) == [("c", "1")]


def test_flatten_lists_are_numbered() -> None:
    """List items get explicit indexes, as PHP writes them."""
    assert flatten({"select": ["ID", "TITLE"]}) == [("select[0]", "ID"), ("select[1]", "TITLE")]


@pytest.mark.parametrize(
    "data",
    [
        {"fields": {"TITLE": "Сделка & co", "OPPORTUNITY": "10.5"}, "id": "7"},
        {"filter": {">=ID": "5", "@STAGE_ID": {"0": "NEW", "1": "WON"}}, "start": "-1"},
        {"cmd": {"a": "user.get?ID=1&x=%", "b": "department.get?ID=$result[a][0][ID]"}},
    ],
)
def test_build_then_parse_round_trips(data: dict[str, Any]) -> None:
    """``build`` output parses back to the same data (strings), special characters included."""
    assert parse(build(data)) == data


def test_build_keeps_brackets_readable() -> None:
    """Brackets stay unescaped in keys, values are percent-encoded."""
    assert build({"fields": {"TITLE": "a b"}}) == "fields[TITLE]=a%20b"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, []), ("", []), (["a"], ["a"]), ({"0": "a", "1": "b"}, ["a", "b"]), ("x", ["x"]),
     (5, [5])],
)
def test_as_list(value: Any, expected: list[Any]) -> None:
    """A PHP array may arrive as a list, a numbered map or a single scalar."""
    assert as_list(value) == expected
