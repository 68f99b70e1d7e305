"""Invariants of the seeded ``demo`` dataset and the ``scale`` generator."""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
import requests

from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.datasets import build_dataset
from b24emu.datasets.demo import ANCHOR, TZ, build_demo
from b24emu.datasets.demo_clients import NPS_WAVES
from b24emu.datasets.demo_org import (
    GROUP_LOGISTICS,
    GROUP_MARKETING,
    GROUP_PROCUREMENT,
    REP_POSITION,
    SALES_DEPT,
)
from b24emu.datasets.demo_tasks import BAD_TITLES
from b24emu.datasets.scale import add_scale
from b24emu.limits import LimitSettings
from b24emu.schema.crm import stage_semantic

TABLES = ("users", "departments", "groups", "companies", "contacts", "deals", "stage_history",
          "activities", "tasks", "task_comments", "task_history", "userfields")


@pytest.fixture(scope="module")
def demo() -> Portal:
    """The demo portal with the default seed, built once for the module (read-only)."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False)))
    build_demo(portal, seed=1)
    return portal


def _rows(portal: Portal, table: str) -> list[dict[str, Any]]:
    return list(getattr(portal, table))


def _sales_dept(portal: Portal) -> dict[str, Any]:
    return next(d for d in portal.departments if d["NAME"] == SALES_DEPT)


def _reps(portal: Portal) -> list[int]:
    return [u["ID"] for u in portal.users if u.get("WORK_POSITION") == REP_POSITION]


def _local(moment: datetime) -> datetime:
    return moment.astimezone(TZ)


def _won(portal: Portal) -> list[dict[str, Any]]:
    return [d for d in portal.deals if d["STAGE_SEMANTIC_ID"] == "S"]


# -- determinism ------------------------------------------------------------------------------
def test_same_seed_same_rows(demo: Portal) -> None:
    """Two builds with one seed are identical, table by table."""
    again = Portal()
    build_demo(again, seed=1)
    for table in TABLES:
        assert _rows(again, table) == _rows(demo, table), table
    assert again.group_members == demo.group_members
    assert again.anchor == demo.anchor == ANCHOR.isoformat()


def test_other_seed_other_rows(demo: Portal) -> None:
    """Another seed gives another portal (the organisation stays the same)."""
    other = Portal()
    build_demo(other, seed=2)
    assert _rows(other, "users") == _rows(demo, "users")
    for table in ("companies", "deals", "activities", "tasks"):
        assert _rows(other, table) != _rows(demo, table), table


def test_clock_starts_at_anchor(demo: Portal) -> None:
    """The portal clock starts at the anchor (a Monday, 09:00 in Novosibirsk)."""
    assert ANCHOR.weekday() == 0 and (ANCHOR.hour, ANCHOR.minute) == (9, 0)
    assert abs(demo.clock.timestamp() - ANCHOR.timestamp()) < 600


# -- sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("table", "low", "high"), [
    ("users", 14, 16), ("departments", 5, 5), ("groups", 3, 3), ("userfields", 7, 7),
    ("companies", 380, 420), ("contacts", 400, 1200), ("deals", 2500, 8000),
    ("stage_history", 8000, 40000), ("activities", 15000, 30000), ("tasks", 800, 4000),
    ("task_comments", 300, 6000), ("task_history", 2000, 20000),
])
def test_table_sizes(demo: Portal, table: str, low: int, high: int) -> None:
    """Each table holds a plausible number of rows."""
    assert low <= len(getattr(demo, table)) <= high


def test_deals_span_two_years(demo: Portal) -> None:
    """Won deals from 2024-09 up to the anchor, every month in between."""
    months = {(_local(d["CLOSEDATE"]).year, _local(d["CLOSEDATE"]).month) for d in _won(demo)}
    assert min(months) == (2024, 9)
    assert max(months) == (2026, 11)
    assert len(months) == 27


# -- organisation -----------------------------------------------------------------------------
def test_departments_and_heads(demo: Portal) -> None:
    """Root «НОИС» is department 1 headed by the admin; the РОП heads the sales department."""
    root = demo.departments.get(1)
    assert root is not None and root["NAME"] == "НОИС" and root["PARENT"] is None
    admin = demo.users.get(root["UF_HEAD"])
    assert admin is not None and admin["ID"] == 1 and admin["IS_ADMIN"] is True
    sales = _sales_dept(demo)
    rop = demo.users.get(sales["UF_HEAD"])
    assert rop is not None and rop["WORK_POSITION"] == "Руководитель отдела продаж"
    assert {d["NAME"] for d in demo.departments} == {"НОИС", SALES_DEPT, "Закупки", "Логистика",
                                                     "Маркетинг"}
    assert all(d["UF_HEAD"] for d in demo.departments)


def test_users(demo: Portal) -> None:
    """Six active reps in the sales department; only the admin is an admin."""
    sales = _sales_dept(demo)["ID"]
    reps = [u for u in demo.users if u.get("WORK_POSITION") == REP_POSITION]
    assert len(reps) == 6
    for user in demo.users:
        assert user["ACTIVE"] is True and user["USER_TYPE"] == "employee"
        assert user["TIME_ZONE"] == "Asia/Novosibirsk" and "@" in user["EMAIL"]
        assert isinstance(user["DATE_REGISTER"], datetime)
        assert ("IS_ADMIN" in user) == (user["ID"] == 1)
    assert all(u["UF_DEPARTMENT"] == [sales] for u in reps)
    for dept in ("Закупки", "Логистика", "Маркетинг"):
        did = next(d["ID"] for d in demo.departments if d["NAME"] == dept)
        assert 1 <= sum(did in u["UF_DEPARTMENT"] for u in demo.users) <= 2


def test_workgroups(demo: Portal) -> None:
    """Three request workgroups with members; reps are members of each."""
    reps = set(_reps(demo))
    names = {g["NAME"]: g for g in demo.groups}
    assert set(names) == {GROUP_PROCUREMENT, GROUP_LOGISTICS, GROUP_MARKETING}
    for group in names.values():
        members = demo.group_members[group["ID"]]
        assert group["ACTIVE"] == "Y" and group["PROJECT"] == "N"
        assert group["OWNER_ID"] in members and group["NUMBER_OF_MEMBERS"] == len(members)
        assert reps <= members


@pytest.mark.parametrize(("entity", "name", "kind"), [
    ("CRM_COMPANY", "UF_CRM_CARD_NEEDS", "string"),
    ("CRM_COMPANY", "UF_CRM_CARD_COMPETITORS", "string"),
    ("CRM_COMPANY", "UF_CRM_CARD_POTENTIAL", "double"),
    ("CRM_COMPANY", "UF_CRM_CARD_BUDGET", "double"),
    ("CRM_COMPANY", "UF_CRM_CARD_UPDATED", "date"),
    ("CRM_CONTACT", "UF_CRM_NPS_SCORE", "integer"),
    ("CRM_CONTACT", "UF_CRM_NPS_DATE", "date"),
])
def test_user_fields(demo: Portal, entity: str, name: str, kind: str) -> None:
    """The client-card and NPS fields exist and extend the entity's schema."""
    row = next(r for r in demo.userfields if r["FIELD_NAME"] == name)
    assert row["ENTITY_ID"] == entity and row["USER_TYPE_ID"] == kind
    table = demo.companies if entity == "CRM_COMPANY" else demo.contacts
    assert table.fields[name].dynamic


# -- rows in general --------------------------------------------------------------------------
@pytest.mark.parametrize("table", TABLES)
def test_datetimes_are_aware(demo: Portal, table: str) -> None:
    """Every stored datetime carries a time zone."""
    for row in getattr(demo, table):
        for key, value in row.items():
            if isinstance(value, datetime):
                assert value.tzinfo is not None, (table, key)
            assert not (isinstance(value, date) and not isinstance(value, datetime)), key


@pytest.mark.parametrize(("table", "field"), [
    ("companies", "DATE_CREATE"), ("contacts", "DATE_CREATE"), ("deals", "DATE_CREATE"),
    ("stage_history", "CREATED_TIME"), ("activities", "CREATED"), ("tasks", "CREATED_DATE"),
    ("task_comments", "POST_DATE"), ("task_history", "CREATED_DATE"),
])
def test_created_before_anchor_in_id_order(demo: Portal, table: str, field: str) -> None:
    """Nothing was created after the anchor, and IDs grow with creation time."""
    stamps = [row[field] for row in getattr(demo, table)]
    assert max(stamps) < ANCHOR
    assert stamps == sorted(stamps)


# -- CRM --------------------------------------------------------------------------------------
def test_companies(demo: Portal) -> None:
    """Client companies: typed multifields, a rep as owner, mostly filled client cards."""
    reps = set(_reps(demo))
    stale = 0
    for c in demo.companies:
        assert c["COMPANY_TYPE"] == "CUSTOMER" and c["INDUSTRY"] == "MANUFACTURING"
        assert c["ASSIGNED_BY_ID"] in reps
        assert c["DATE_CREATE"] <= c["DATE_MODIFY"] < ANCHOR
        for kind in ("PHONE", "EMAIL"):
            (entry,) = c[kind]
            assert entry["TYPE_ID"] == kind and entry["VALUE_TYPE"] == "WORK"
            assert isinstance(entry["ID"], int) and entry["VALUE"]
        updated = c["UF_CRM_CARD_UPDATED"]
        if updated is not None:
            assert isinstance(c["UF_CRM_CARD_BUDGET"], float) and c["UF_CRM_CARD_NEEDS"]
            stale += (ANCHOR - updated).days > 92
    filled = sum(c["UF_CRM_CARD_UPDATED"] is not None for c in demo.companies)
    assert filled > 0.85 * len(demo.companies)
    assert 0.1 * filled < stale < 0.5 * filled
    titles = [c["TITLE"] for c in demo.companies]
    assert len(set(titles)) == len(titles)
    assert any(t.startswith("ИП ") for t in titles)
    assert any(t.startswith("Мебельная фабрика «") for t in titles)


def test_contacts(demo: Portal) -> None:
    """1-3 contacts per company, owned by the company's rep; NPS answers in the two waves."""
    per_company = Counter(c["COMPANY_ID"] for c in demo.contacts)
    assert set(per_company) == set(demo.companies.rows)
    assert set(per_company.values()) <= {1, 2, 3}
    scores = []
    for c in demo.contacts:
        company = demo.companies.rows[c["COMPANY_ID"]]
        assert c["COMPANY_IDS"] == [c["COMPANY_ID"]]
        assert c["ASSIGNED_BY_ID"] == company["ASSIGNED_BY_ID"]
        assert c["NAME"] and c["LAST_NAME"] and c["SECOND_NAME"] and c["POST"]
        if c["UF_CRM_NPS_SCORE"] is not None:
            scores.append(c["UF_CRM_NPS_SCORE"])
            day = _local(c["UF_CRM_NPS_DATE"]).date()
            assert any(lo <= day <= hi for lo, hi in NPS_WAVES), day
    assert len(scores) > 100 and set(scores) <= set(range(11))
    promoters = sum(s >= 9 for s in scores)
    detractors = sum(s <= 6 for s in scores)
    assert promoters > 2 * detractors > 0


def test_deals_reference_companies_and_reps(demo: Portal) -> None:
    """Every deal's company exists and its rep is a sales-department user."""
    sales = _sales_dept(demo)["ID"]
    for deal in demo.deals:
        assert deal["COMPANY_ID"] in demo.companies
        rep = demo.users.get(deal["ASSIGNED_BY_ID"])
        assert rep is not None and sales in rep["UF_DEPARTMENT"]
        if deal["CONTACT_ID"] is not None:
            assert demo.contacts.rows[deal["CONTACT_ID"]]["COMPANY_ID"] == deal["COMPANY_ID"]


def test_deal_rows_are_typed_and_consistent(demo: Portal) -> None:
    """STAGE_SEMANTIC_ID and CLOSED agree with STAGE_ID; amounts are RUB floats in range."""
    for deal in demo.deals:
        semantic = stage_semantic(deal["STAGE_ID"])
        assert deal["STAGE_SEMANTIC_ID"] == semantic
        assert deal["CLOSED"] == ("N" if semantic == "P" else "Y")
        assert isinstance(deal["OPPORTUNITY"], float)
        assert 10_000 <= deal["OPPORTUNITY"] <= 1_500_000
        assert deal["CURRENCY_ID"] == "RUB" and deal["CATEGORY_ID"] == 0
        assert deal["TYPE_ID"] == "SALE" and deal["OPENED"] == "Y"
        assert deal["TITLE"].startswith("Заказ фурнитуры Blum — ")
        assert deal["DATE_CREATE"] <= deal["MOVED_TIME"] <= deal["DATE_MODIFY"] < ANCHOR
        if semantic != "P":
            assert _local(deal["CLOSEDATE"]).date() <= ANCHOR.date()


def test_stage_history_matches_deals(demo: Portal) -> None:
    """A creation row at DATE_CREATE, then moves in time order ending at the current stage."""
    history: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in demo.stage_history:
        assert row["OWNER_TYPE_ID"] == 2 and row["CATEGORY_ID"] == 0
        assert row["STAGE_SEMANTIC_ID"] == stage_semantic(row["STAGE_ID"])
        history[row["OWNER_ID"]].append(row)
    assert set(history) == set(demo.deals.rows)
    for deal_id, rows in history.items():
        deal = demo.deals.rows[deal_id]
        assert [r["TYPE_ID"] for r in rows] == [1] + [2] * (len(rows) - 1)
        assert rows[0]["CREATED_TIME"] == deal["DATE_CREATE"]
        assert rows[-1]["STAGE_ID"] == deal["STAGE_ID"]
        assert rows[-1]["CREATED_TIME"] == deal["MOVED_TIME"]
        times = [r["CREATED_TIME"] for r in rows]
        assert times == sorted(times)


def test_seasonality(demo: Portal) -> None:
    """Spring and autumn months sell more than January, on average over the years."""
    by_month: dict[tuple[int, int], int] = Counter()
    for deal in _won(demo):
        close = _local(deal["CLOSEDATE"])
        by_month[(close.year, close.month)] += 1
    del by_month[(ANCHOR.year, ANCHOR.month)]  # The anchor month is not over yet.

    def mean(months: set[int]) -> float:
        values = [n for (_, m), n in by_month.items() if m in months]
        return sum(values) / len(values)

    assert mean({3, 4, 5}) > 2 * mean({1})
    assert mean({9, 10, 11}) > 2 * mean({1})
    assert mean({3, 4, 5, 9, 10, 11}) > mean({6, 7, 8})


def test_repeat_and_churned_buyers(demo: Portal) -> None:
    """Regular clients buy most months; some clients stopped buying a while ago."""
    months: dict[int, set[tuple[int, int]]] = defaultdict(set)
    for deal in _won(demo):
        close = _local(deal["CLOSEDATE"])
        months[deal["COMPANY_ID"]].add((close.year, close.month))
    regular = [c for c, ms in months.items() if len(ms) >= 15]
    occasional = [c for c, ms in months.items() if 2 <= len(ms) <= 8]
    churned = [c for c, ms in months.items() if max(ms) < (2026, 3) and len(ms) >= 3]
    assert len(regular) >= 50 and len(occasional) >= 50 and len(churned) >= 10
    never = set(demo.companies.rows) - set(months)
    assert never  # Prospects: visited, maybe lost a deal, never bought.


def test_open_deals_fresh_and_stale(demo: Portal) -> None:
    """Open deals exist; some have had no activity or stage move for weeks (висяки)."""
    open_deals = [d for d in demo.deals if d["CLOSED"] == "N"]
    assert 20 <= len(open_deals) <= 60
    stale = [d for d in open_deals if (ANCHOR - d["MOVED_TIME"]).days > 21
             and (d["LAST_ACTIVITY_TIME"] is None or (ANCHOR - d["LAST_ACTIVITY_TIME"]).days > 21)]
    assert len(stale) >= 5
    planned = {a["OWNER_ID"] for a in demo.activities
               if a["OWNER_TYPE_ID"] == 2 and a["COMPLETED"] == "N"}
    assert not planned & {d["ID"] for d in stale}
    assert len(planned & {d["ID"] for d in open_deals}) >= 15


def test_refund_and_shared_client(demo: Portal) -> None:
    """One won deal was reversed (WON then LOSE); one client is served by two reps."""
    stages: dict[int, list[str]] = defaultdict(list)
    for row in demo.stage_history:
        stages[row["OWNER_ID"]].append(row["STAGE_ID"])
    refunded = [d for d, s in stages.items() if "WON" in s and s[-1] == "LOSE"]
    assert len(refunded) == 1
    assert demo.deals.rows[refunded[0]]["COMMENTS"].startswith("Возврат")
    reps_by_company: dict[int, set[int]] = defaultdict(set)
    for deal in demo.deals:
        reps_by_company[deal["COMPANY_ID"]].add(deal["ASSIGNED_BY_ID"])
    assert sum(len(r) >= 2 for r in reps_by_company.values()) == 1


# -- activities -------------------------------------------------------------------------------
def test_activity_rows(demo: Portal) -> None:
    """Typed rows bound to an existing company (and deal); status agrees with COMPLETED."""
    for a in demo.activities:
        assert a["TYPE_ID"] in (1, 2, 4)
        assert a["STATUS"] == (2 if a["COMPLETED"] == "Y" else 1)
        assert a["OWNER_TYPE_ID"] in (2, 4)
        table = demo.deals if a["OWNER_TYPE_ID"] == 2 else demo.companies
        assert a["OWNER_ID"] in table
        assert {"OWNER_TYPE_ID": a["OWNER_TYPE_ID"], "OWNER_ID": a["OWNER_ID"]} in a["BINDINGS"]
        assert all(b["OWNER_ID"] in demo.companies for b in a["BINDINGS"]
                   if b["OWNER_TYPE_ID"] == 4)
        assert a["START_TIME"] <= a["END_TIME"]
        if a["COMPLETED"] == "Y":
            assert a["END_TIME"] < ANCHOR


def test_activity_mix(demo: Portal) -> None:
    """Meetings, calls both ways, e-mails both ways, mailings, trainings, planned to-dos."""
    kinds = Counter((a["TYPE_ID"], a["DIRECTION"]) for a in demo.activities)
    assert kinds[(1, 0)] > 3000 and kinds[(2, 1)] > 1000 and kinds[(2, 2)] > 1000
    assert kinds[(4, 1)] > 500 and kinds[(4, 2)] > 500
    assert all(a["PROVIDER_ID"] == "CRM_MEETING" for a in demo.activities if a["TYPE_ID"] == 1)
    mailings = Counter(a["RESPONSIBLE_ID"] for a in demo.activities
                       if a["SUBJECT"].startswith("Рассылка новинок") and a["DIRECTION"] == 2)
    trainings = Counter(a["RESPONSIBLE_ID"] for a in demo.activities
                        if a["SUBJECT"].startswith("Обучение:") and a["TYPE_ID"] == 1)
    for rep in _reps(demo):
        assert 5 <= mailings[rep] <= 27 and 5 <= trainings[rep] <= 27
    assert min(trainings.values()) < 27  # Some months have no training.
    pending = [a for a in demo.activities if a["COMPLETED"] == "N"]
    assert any(a["START_TIME"] > ANCHOR for a in pending)


def test_visits_last_full_month(demo: Portal) -> None:
    """Reps make ~25-40 visits a month; some stay below the target of 30 in October 2026."""
    visits = Counter(a["RESPONSIBLE_ID"] for a in demo.activities
                     if a["TYPE_ID"] == 1 and a["COMPLETED"] == "Y"
                     and (_local(a["START_TIME"]).year, _local(a["START_TIME"]).month)
                     == (2026, 10))
    counts = [visits[r] for r in _reps(demo)]
    assert all(20 <= n <= 45 for n in counts), counts
    assert any(n < 30 for n in counts) and any(n >= 30 for n in counts), counts


# -- tasks ------------------------------------------------------------------------------------
def test_task_kinds(demo: Portal) -> None:
    """Needs reports weekly (some weeks missed), ideas, requests, the РОП's tasks."""
    groups = {g["NAME"]: g["ID"] for g in demo.groups}
    reps = _reps(demo)
    weeks: dict[int, set[int]] = defaultdict(set)
    ideas: Counter[int] = Counter()
    for t in demo.tasks:
        week = _local(t["CREATED_DATE"]).isocalendar()
        if t["GROUP_ID"] == groups[GROUP_PROCUREMENT] and t["TITLE"].startswith("Потребности"):
            weeks[t["CREATED_BY"]].add(week.year * 100 + week.week)
        if t["GROUP_ID"] == groups[GROUP_MARKETING] and t["TITLE"].startswith("Идея:"):
            ideas[t["CREATED_BY"]] += 1
    total_weeks = max(len(w) for w in weeks.values())
    assert set(weeks) == set(reps) and total_weeks > 60
    assert min(len(w) for w in weeks.values()) < total_weeks
    assert set(ideas) == set(reps) and max(ideas.values()) > 2 * min(ideas.values())
    rop = _sales_dept(demo)["UF_HEAD"]
    assert sum(t["CREATED_BY"] == rop and t["RESPONSIBLE_ID"] in reps for t in demo.tasks) > 200
    assert any(t["GROUP_ID"] == groups[GROUP_LOGISTICS] for t in demo.tasks)


def test_badly_set_tasks(demo: Portal) -> None:
    """Some tasks break the format: a stop-word title, no deadline, a deadline in the past."""
    tasks = list(demo.tasks)
    assert sum(t["TITLE"] in BAD_TITLES for t in tasks) >= 5
    assert sum(t["DEADLINE"] is None for t in tasks) >= 5
    assert sum(t["DEADLINE"] is not None and t["DEADLINE"] < t["CREATED_DATE"]
               for t in tasks) >= 5


def test_task_rows_history_and_comments(demo: Portal) -> None:
    """A NEW row per task; STATUS rows lead to the task's status; comments are counted."""
    history: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in demo.task_history:
        history[row["TASK_ID"]].append(row)
    comments = Counter(c["TASK_ID"] for c in demo.task_comments)
    for task in demo.tasks:
        rows = history[task["ID"]]
        assert rows[0]["FIELD"] == "NEW" and rows[0]["CREATED_DATE"] == task["CREATED_DATE"]
        assert isinstance(task["STATUS"], int) and task["STATUS"] == task["REAL_STATUS"]
        statuses = [r for r in rows if r["FIELD"] == "STATUS"]
        assert task["REAL_STATUS"] == (int(statuses[-1]["TO_VALUE"]) if statuses else 2)
        assert task["COMMENTS_COUNT"] == comments[task["ID"]]
        assert sum(r["FIELD"] == "COMMENT" for r in rows) == comments[task["ID"]]
        for ref in task["UF_CRM_TASK"]:
            kind, _, ident = ref.partition("_")
            assert int(ident) in (demo.companies if kind == "CO" else demo.deals)
    for row in demo.task_history:
        assert all(v is None or isinstance(v, str) for v in (row["FROM_VALUE"], row["TO_VALUE"]))
    for comment in demo.task_comments:
        assert comment["TASK_ID"] in demo.tasks and comment["POST_MESSAGE"]


def test_open_overdue_tasks(demo: Portal) -> None:
    """Some open tasks are long overdue (the «висяки» of CRM freshness)."""
    overdue = [t for t in demo.tasks if t["REAL_STATUS"] in (2, 3) and t["DEADLINE"] is not None
               and (ANCHOR - t["DEADLINE"]).days > 14]
    assert len(overdue) >= 10


def test_recent_tasks_unanswered(demo: Portal) -> None:
    """A few tasks set to someone else just before the anchor have no reaction yet."""
    history = Counter(r["TASK_ID"] for r in demo.task_history)
    recent = [t for t in demo.tasks if (ANCHOR - t["CREATED_DATE"]).days < 3
              and t["CREATED_BY"] != t["RESPONSIBLE_ID"] and history[t["ID"]] == 1]
    assert len(recent) >= 3


# -- build time and REST ----------------------------------------------------------------------
def test_demo_builds_fast() -> None:
    """The whole demo builds in a few seconds."""
    started = time.perf_counter()
    build_dataset(Portal(), "demo")
    assert time.perf_counter() - started < 10


def test_rest_reads_the_demo(demo: Portal) -> None:
    """Users, departments and workgroups of the demo over the incoming webhook."""
    server = EmulatorServer(demo).start()
    try:
        url = demo.webhook_url
        users = requests.get(url + "user.get", timeout=10).json()
        assert users["total"] == len(demo.users)
        depts = requests.get(url + "department.get", timeout=10).json()["result"]
        sales = next(d for d in depts if d["NAME"] == SALES_DEPT)
        assert sales["UF_HEAD"] == str(_sales_dept(demo)["UF_HEAD"])
        groups = requests.get(url + "sonet_group.get", timeout=10).json()["result"]
        assert {g["NAME"] for g in groups} == {GROUP_PROCUREMENT, GROUP_LOGISTICS,
                                               GROUP_MARKETING}
        deals = requests.get(url + "crm.deal.list", timeout=10).json()
        assert deals["total"] == len(demo.deals) and len(deals["result"]) == 50
    finally:
        server.stop()


# -- scale ------------------------------------------------------------------------------------
@pytest.fixture
def small_demo() -> Iterator[Portal]:
    """A fresh demo portal that a test may change."""
    portal = Portal()
    build_demo(portal)
    yield portal


@pytest.mark.parametrize("count", [1, 250, 1001])
def test_scale_adds_exactly_n_deals(small_demo: Portal, count: int) -> None:
    """``add_scale`` adds N valid deals and ceil(N/250) companies to the demo."""
    deals, companies = len(small_demo.deals), len(small_demo.companies)
    add_scale(small_demo, deals=count, seed=3)
    assert len(small_demo.deals) == deals + count
    assert len(small_demo.companies) == companies + math.ceil(count / 250)
    reps = set(_reps(small_demo))
    for deal in list(small_demo.deals)[deals:]:
        assert deal["COMPANY_ID"] in small_demo.companies
        assert deal["ASSIGNED_BY_ID"] in reps
        assert deal["STAGE_SEMANTIC_ID"] == stage_semantic(deal["STAGE_ID"]) != "P"
        assert deal["DATE_CREATE"] <= deal["MOVED_TIME"] < ANCHOR
        assert (ANCHOR - deal["DATE_CREATE"]).days <= 3 * 365 + 7


def test_scale_on_empty_portal_is_deterministic() -> None:
    """Scale works without the demo and repeats itself for a seed."""
    first, second = Portal(), Portal()
    for portal in (first, second):
        build_dataset(portal, "empty", scale=2000, seed=5)
    assert len(first.deals) == 2000 and len(first.companies) == 8
    assert list(first.deals) == list(second.deals)
    assert {d["ASSIGNED_BY_ID"] for d in first.deals} == {1}
    won = sum(d["STAGE_ID"] == "WON" for d in first.deals)
    assert 0.8 * 2000 < won < 0.97 * 2000


def test_scale_100k_is_fast() -> None:
    """100k deals in a few seconds."""
    portal = Portal()
    started = time.perf_counter()
    add_scale(portal, deals=100_000)
    assert time.perf_counter() - started < 10
    assert len(portal.deals) == 100_000
