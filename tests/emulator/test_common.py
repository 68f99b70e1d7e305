"""Common methods: server.time, profile, users, departments, groups, calendar, im, b24emu.*."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from b24emu import EmulatorServer
from tests.emulator.helpers import add_user, example, hook, oauth, quick_install


def _result(emulator: EmulatorServer, method: str, params: dict[str, Any] | None = None) -> Any:
    resp = hook(emulator, method, params)
    assert resp.status_code == 200, resp.text
    return resp.json()["result"]


def test_server_time(emulator: EmulatorServer) -> None:
    """``server.time`` → ISO 8601 with the portal's offset (server-time.md)."""
    emulator.portal.clock.set(datetime(2024, 8, 5, 9, 2, 13, tzinfo=UTC), frozen=True)
    assert _result(emulator, "server.time") == "2024-08-05T16:02:13+07:00"


def test_profile(emulator: EmulatorServer) -> None:
    """``profile`` → the caller's basic data with ``ADMIN``."""
    me = _result(emulator, "profile")
    assert (me["ID"], me["ADMIN"], me["NAME"]) == ("1", True, "Алексей")


def test_user_get_types(emulator: EmulatorServer) -> None:
    """``ID`` a string, ``ACTIVE`` a bool, ``UF_DEPARTMENT`` ints, empty fields "" (user-get.md)."""
    add_user(emulator.portal, "Second", departments=[1, 3])
    users = _result(emulator, "user.get")
    second = users[1]
    assert second["ID"] == "2"
    assert second["ACTIVE"] is True
    assert second["UF_DEPARTMENT"] == [1, 3]
    assert second["PERSONAL_BIRTHDAY"] == "" and second["LAST_LOGIN"] == ""
    assert second["USER_TYPE"] == "employee"
    assert None not in second.values()
    assert "IS_ADMIN" not in second


def test_user_get_shape_matches_the_batch_sample(emulator: EmulatorServer) -> None:
    """Every key of the documented ``user.current`` sample is present."""
    me = _result(emulator, "user.current")
    assert set(example("resp-batch.json")["result"]["result"]["get_user"]) <= set(me)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"FILTER": {"ACTIVE": True}}, ["1", "2", "3"]),
        ({"FILTER": {"ACTIVE": False}}, ["4"]),
        ({"FILTER": {"ACTIVE": "Y"}}, ["1", "2", "3"]),
        ({"FILTER": {"UF_DEPARTMENT": 2}}, ["3"]),
        ({"FILTER": {"NAME": "Second"}}, ["2"]),
        ({"ID": 3}, ["3"]),  # flat filter keys, as user.get?ID=3
        ({"FILTER": {"USER_TYPE": "extranet"}}, ["6"]),
        ({"sort": "ID", "order": "DESC"}, ["4", "3", "2", "1"]),
    ],
)
def test_user_get_filters(emulator: EmulatorServer, params: dict[str, Any],
                          expected: list[str]) -> None:
    """``FILTER`` on any field, flat keys, ``sort``/``order``; bots/extranet excluded by default."""
    portal = emulator.portal
    add_user(portal, "Second")
    add_user(portal, "Third", departments=[2])
    add_user(portal, "Fired", active=False)
    add_user(portal, "Bot", user_type="bot")
    add_user(portal, "Partner", user_type="extranet")
    assert [u["ID"] for u in _result(emulator, "user.get", params)] == expected


def test_user_get_paging(emulator: EmulatorServer) -> None:
    """Pages of 50 with ``start``; ``start=-1`` skips the count (user-get.md)."""
    for i in range(120):
        add_user(emulator.portal, f"U{i}")
    page = hook(emulator, "user.get", {"start": 100}).json()
    assert (len(page["result"]), page["total"], page["result"][0]["ID"]) == (21, 121, "101")
    fast = hook(emulator, "user.get", {"start": -1, "FILTER": {">ID": 100}}).json()
    assert (len(fast["result"]), fast["total"], "next" in fast) == (21, 0, False)


def test_user_current_and_admin(emulator: EmulatorServer) -> None:
    """``user.current`` is the token's user; ``user.admin`` says whether they are admin."""
    manager = add_user(emulator.portal, "Manager")
    quick_install(emulator)
    access, _ = emulator.portal.auth.issue(emulator.portal.app.client_id, manager)
    assert oauth(emulator, access.token, "user.current").json()["result"]["NAME"] == "Manager"
    assert oauth(emulator, access.token, "user.admin").json()["result"] is False
    assert _result(emulator, "user.admin") is True


def test_department_get_with_uf_head(emulator: EmulatorServer) -> None:
    """``department.get`` → ``ID, NAME, SORT, PARENT, UF_HEAD``; filters by them (5.7)."""
    deps = emulator.portal.departments
    deps.insert({"NAME": "НОИС", "SORT": 500, "PARENT": None, "UF_HEAD": 1})
    deps.insert({"NAME": "Продажи", "SORT": 100, "PARENT": 1, "UF_HEAD": 2})
    deps.insert({"NAME": "Склад", "SORT": 200, "PARENT": 1, "UF_HEAD": 3})
    rows = _result(emulator, "department.get")
    assert rows[0] == {"ID": "1", "NAME": "НОИС", "SORT": 500, "UF_HEAD": "1"}
    assert rows[1] == {"ID": "2", "NAME": "Продажи", "SORT": 100, "PARENT": "1", "UF_HEAD": "2"}
    assert [r["ID"] for r in _result(emulator, "department.get", {"UF_HEAD": 3})] == ["3"]
    assert [r["ID"] for r in _result(emulator, "department.get", {"PARENT": 1})] == ["2", "3"]
    by_sort = _result(emulator, "department.get", {"sort": "SORT", "order": "ASC"})
    assert [r["ID"] for r in by_sort] == ["2", "3", "1"]
    # ``sort`` with a number is the SORT filter (keys are case-insensitive).
    assert [r["ID"] for r in _result(emulator, "department.get", {"SORT": 200})] == ["3"]
    assert hook(emulator, "department.get", {"ID": 2}).json()["total"] == 1


def test_sonet_group_get(emulator: EmulatorServer) -> None:
    """``sonet_group.get`` with ``FILTER`` and ``ORDER``; values are strings (5.7)."""
    groups = emulator.portal.groups
    groups.insert({"NAME": "Проект А", "ACTIVE": "Y", "OWNER_ID": 1, "NUMBER_OF_MEMBERS": 3,
                   "PROJECT": "Y", "CLOSED": "N"})
    groups.insert({"NAME": "Архив", "ACTIVE": "N", "OWNER_ID": 2, "NUMBER_OF_MEMBERS": 1,
                   "PROJECT": "N", "CLOSED": "Y"})
    rows = _result(emulator, "sonet_group.get", {"FILTER": {"ACTIVE": "Y"}})
    assert [(r["ID"], r["NAME"], r["OWNER_ID"], r["NUMBER_OF_MEMBERS"]) for r in rows] == [
        ("1", "Проект А", "1", "3")]
    ordered = _result(emulator, "sonet_group.get", {"ORDER": {"NAME": "ASC"}})
    assert [r["NAME"] for r in ordered] == ["Архив", "Проект А"]


def test_calendar_settings_keys(emulator: EmulatorServer) -> None:
    """``calendar.settings.get`` answers the keys and value types of the sample (5.8)."""
    result = _result(emulator, "calendar.settings.get")
    sample = example("resp-calendar.settings.get.json")["result"]
    assert list(result) == list(sample)
    assert {k: type(v) for k, v in result.items()} == {k: type(v) for k, v in sample.items()}
    assert result["week_holidays"] == ["SA", "SU"]


# -- im.notify -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"MESSAGE": "x"}, "USER_ID_EMPTY"),
        ({"USER_ID": 1, "MESSAGE": "   "}, "MESSAGE_EMPTY"),
        ({"USER_ID": 1, "MESSAGE": "x", "ATTACH": "a" * 60_001}, "ATTACH_OVERSIZE"),
    ],
)
def test_notify_errors(emulator: EmulatorServer, params: dict[str, Any], code: str) -> None:
    """Recipient, text and attachment size are checked (im-notify-system-add.md)."""
    resp = hook(emulator, "im.notify.system.add", params)
    assert (resp.status_code, resp.json()["error"]) == (400, code)


def test_notify_returns_id_or_false(emulator: EmulatorServer) -> None:
    """An id for a real recipient, ``false`` for an unknown one; MESSAGE is trimmed."""
    note = _result(emulator, "im.notify.system.add", {"USER_ID": 1, "MESSAGE": "  Hi [B]x[/B] "})
    assert isinstance(note, int)
    assert _result(emulator, "im.notify.system.add", {"USER_ID": 99, "MESSAGE": "x"}) is False
    logged = _result(emulator, "b24emu.notifications.list", {"user_id": 1})
    assert logged[0]["MESSAGE"] == "Hi [B]x[/B]"


def test_notify_tag_replaces_older(emulator: EmulatorServer) -> None:
    """The same ``TAG`` from the same app replaces the older notification (5.6)."""
    for text in ("first", "second"):
        _result(emulator, "im.notify.system.add", {"USER_ID": 1, "MESSAGE": text,
                                                   "TAG": "kpi", "CLIENT_ID": "nois"})
    _result(emulator, "im.notify.system.add", {"USER_ID": 1, "MESSAGE": "other app",
                                               "TAG": "kpi", "CLIENT_ID": "else"})
    rows = _result(emulator, "b24emu.notifications.list", {"tag": "kpi"})
    assert [(r["MESSAGE"], r["REPLACED"]) for r in rows] == [
        ("first", "Y"), ("second", "N"), ("other app", "N")]


def test_notify_personal_and_type(emulator: EmulatorServer) -> None:
    """``personal`` is from the caller; ``im.notify`` TYPE=SYSTEM is a system notification."""
    add_user(emulator.portal, "Second")
    _result(emulator, "im.notify.personal.add", {"USER_ID": 2, "MESSAGE": "from admin"})
    _result(emulator, "im.notify", {"to": 2, "message": "sys", "type": "SYSTEM"})
    rows = _result(emulator, "b24emu.notifications.list", {"user_id": 2})
    assert [(r["TYPE"], r["FROM_USER_ID"]) for r in rows] == [("personal", "1"), ("system", "0")]


# -- b24emu.* --------------------------------------------------------------------------------
def test_debug_clock(emulator: EmulatorServer) -> None:
    """``b24emu.clock.set/get/advance`` drive portal time."""
    set_to = _result(emulator, "b24emu.clock.set",
                     {"now": "2025-01-10T09:00:00+07:00", "frozen": 1})
    assert set_to == "2025-01-10T09:00:00+07:00"
    assert _result(emulator, "b24emu.clock.advance", {"seconds": 90}) == "2025-01-10T09:01:30+07:00"
    assert _result(emulator, "b24emu.clock.get") == "2025-01-10T09:01:30+07:00"
    assert hook(emulator, "b24emu.clock.set", {}).json()["error"] == "ERROR_ARGUMENT"


def test_debug_faults_and_stats(emulator: EmulatorServer) -> None:
    """``b24emu.faults.add`` validates the kind; ``b24emu.stats`` counts tables and events."""
    rule = _result(emulator, "b24emu.faults.add", {"kind": "drop_events", "count": 2})
    assert rule == {"kind": "drop_events", "pattern": "*", "remaining": 2, "value": 0.0,
                    "status": 0}
    assert _result(emulator, "b24emu.faults.clear") is True
    stats = _result(emulator, "b24emu.stats")
    assert stats["tables"]["users"] == 1
    assert {"deliveries", "offline", "pending", "refreshes", "rejected_503"} <= set(stats)


def test_debug_events_helpers(emulator: EmulatorServer) -> None:
    """``b24emu.events.emit`` checks the event; ``wait_idle`` and ``log`` answer."""
    resp = hook(emulator, "b24emu.events.emit", {"event": "ONNOTHING"})
    assert resp.json()["error"] == "ERROR_EVENT_NOT_FOUND"
    assert _result(emulator, "b24emu.events.emit", {"event": "ONCRMDEALADD"}) is True
    assert _result(emulator, "b24emu.events.wait_idle", {"timeout": 1}) is True
    assert _result(emulator, "b24emu.events.log") == []
    missing = hook(emulator, "b24emu.outgoing_webhook.add", {"handler": "http://x/"})
    assert missing.json()["error"] == "ERROR_ARGUMENT"


def test_debug_limits_set(emulator: EmulatorServer) -> None:
    """``b24emu.limits.set`` answers the settings in force."""
    result = _result(emulator, "b24emu.limits.set", {"burst": 7, "rate": 1.5})
    assert result == {"enabled": False, "burst": 7, "rate": 1.5, "operating_limit": 480.0}
