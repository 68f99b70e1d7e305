"""The independent check: KPIs from the emulator's REST rows by a second, deliberately plain
implementation agree with what the service computes from its mirror (both backends).

The service path: the demo portal → ``sync.reference`` + ``sync.bulk`` + ``sync.stage_history``
(+ the NPS ledger from the contacts' score field) → ``kpi.compute.compute_period``. The check
path: ``requests`` against the webhook, then the definitions of docs/domain.md written out
again below over plain rows, local dates and Decimals; it shares no code with ``kpi/``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import KpiSettings
from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient
from b24emu import EmulatorServer, Portal, PortalConfig
from b24emu.datasets import build_dataset
from b24emu.datasets.demo import ANCHOR
from b24emu.limits import LimitSettings
from kpi.calendar import WorkingCalendar
from kpi.compute import compute_period
from kpi.periods import Period
from kpi.results import CompanyMetrics
from sync import bulk, mirror
from sync.reference import refresh_reference
from sync.stage_history import sync_stage_history
from tests.workerproc import seed_portal

TZ = ZoneInfo("Asia/Novosibirsk")
NOW = ANCHOR  # Monday 2026-11-16 09:00 in Novosibirsk: the demo portal's clock
PERIODS = ("2026-10", "2026-11")  # a closed month and the running one
CHECKED = ("sales_volume", "return_rate", "ltv", "new_active_clients", "visits", "nois_share")
Row = dict[str, Any]


@pytest.fixture(scope="module")
def demo() -> Iterator[EmulatorServer]:
    """The NOIS demo portal, limits off."""
    portal = Portal(PortalConfig(limits=LimitSettings(enabled=False)))
    build_dataset(portal, "demo")
    server = EmulatorServer(portal).start()
    yield server
    server.stop()


# ---------------------------------------------------------------- the REST side


def listing(url: str, method: str, select: list[str], key: str | None = None) -> list[Row]:
    """Every row of a list method, 50 at a time by ascending ID (``start=-1``, ``>ID``)."""
    rows: list[Row] = []
    while True:
        body = {"select": select, "order": {"ID": "ASC"}, "start": -1,
                "filter": {">ID": int(rows[-1]["ID"]) if rows else 0}}
        result = requests.post(url + method, json=body, timeout=30).json()["result"]
        page = result[key] if key else result
        rows += page
        if len(page) < 50:
            return rows


def pages(url: str, method: str) -> list[Row]:
    """Every row of an offset-paged method (users, departments)."""
    rows: list[Row] = []
    while True:
        page = requests.post(url + method, json={"start": len(rows)}, timeout=30).json()
        rows += page["result"]
        if "next" not in page:
            return rows


@pytest.fixture(scope="module")
def rest(demo: EmulatorServer) -> dict[str, list[Row]]:
    """The raw rows the check needs, read straight from the portal."""
    return read_rest(demo.portal.webhook_url)


def read_rest(url: str) -> dict[str, list[Row]]:
    """Deals, companies, contacts, activities, users and departments over plain REST."""
    return {
        "deals": listing(url, "crm.deal.list", ["ID", "STAGE_SEMANTIC_ID", "OPPORTUNITY",
                                                "CLOSEDATE", "COMPANY_ID", "CONTACT_ID",
                                                "ASSIGNED_BY_ID"]),
        "companies": listing(url, "crm.company.list", ["ID", "UF_CRM_CARD_BUDGET",
                                                       "UF_CRM_CARD_UPDATED"]),
        "contacts": listing(url, "crm.contact.list", ["ID", "COMPANY_ID", "UF_CRM_NPS_SCORE",
                                                      "UF_CRM_NPS_DATE"]),
        "activities": listing(url, "crm.activity.list", [
            "ID", "TYPE_ID", "PROVIDER_ID", "SUBJECT", "COMPLETED", "RESPONSIBLE_ID",
            "START_TIME", "END_TIME", "CREATED", "OWNER_TYPE_ID", "OWNER_ID", "BINDINGS"]),
        "users": pages(url, "user.get"),
        "departments": pages(url, "department.get"),
    }


# ---------------------------------------------------------------- the second implementation


def day_of(text: Any) -> date | None:
    """The local date of a date field (``2026-11-30T00:00:00+07:00``)."""
    return date.fromisoformat(text[:10]) if text else None


def num(text: Any) -> int:
    return int(text) if text not in (None, "") else 0


def first_of_quarter(day: date, back: int = 0) -> date:
    index = day.year * 4 + (day.month - 1) // 3 - back
    return date(index // 4, index % 4 * 3 + 1, 1)


def pct(part: Decimal, whole: Decimal) -> Decimal | None:
    """part ÷ whole as percent, the fraction rounded to 4 places first (as the KPIs show)."""
    if not whole:
        return None
    return (part / whole).quantize(Decimal("0.0001"), ROUND_HALF_UP) * 100


@dataclass(frozen=True)
class Sale:
    client: str | None
    rep: int
    amount: Decimal
    day: date


def independent(data: dict[str, list[Row]], label: str,
                now: datetime) -> tuple[dict[tuple[int, str], Any], dict[int, CompanyMetrics]]:
    """The six KPIs of every rep and every company's metrics, from the REST rows."""
    first = date.fromisoformat(label + "-01")
    after = (first + timedelta(days=32)).replace(day=1)
    local_now = now.astimezone(TZ)
    # Measured up to the month's end or now; a purchase "closes" at the local midnight of its
    # CLOSEDATE, so it counts when its day is before `end`.
    end = min(after, local_now.date() + timedelta(days=0 if local_now.time() == time() else 1))
    year_ago = end.replace(year=end.year - 1)
    sales = []
    for d in data["deals"]:
        if d["STAGE_SEMANTIC_ID"] == "S" and Decimal(d["OPPORTUNITY"]) > 0 and d["CLOSEDATE"]:
            company, contact = num(d["COMPANY_ID"]), num(d["CONTACT_ID"])
            client = f"company:{company}" if company else f"contact:{contact}" if contact else None
            sales.append(Sale(client, num(d["ASSIGNED_BY_ID"]), Decimal(d["OPPORTUNITY"]),
                              date.fromisoformat(d["CLOSEDATE"][:10])))
    sales = [s for s in sales if s.day < end]
    sales_dept = next(x for x in data["departments"] if x["NAME"] == "Отдел продаж")
    reps = [num(u["ID"]) for u in data["users"] if u["ACTIVE"] in (True, "Y", "1")
            and num(sales_dept["ID"]) in [num(x) for x in u["UF_DEPARTMENT"]]
            and num(u["ID"]) != num(sales_dept["UF_HEAD"])]
    budgets = {f"company:{c['ID']}": Decimal(c["UF_CRM_CARD_BUDGET"])
               for c in data["companies"] if c["UF_CRM_CARD_BUDGET"]
               and Decimal(c["UF_CRM_CARD_BUDGET"]) > 0}
    q_start, q_before = first_of_quarter(first), first_of_quarter(first, 1)
    out: dict[tuple[int, str], Any] = {}
    for rep in reps:
        mine = [s for s in sales if s.rep == rep]
        out[rep, "sales_volume"] = sum((s.amount for s in mine if s.day >= first), Decimal(0))
        before = {s.client for s in mine if s.client and q_before <= s.day < q_start}
        again = {s.client for s in mine if s.client and s.day >= q_start}
        out[rep, "return_rate"] = pct(Decimal(len(before & again)), Decimal(len(before)))
        active = {s.client for s in mine if s.client and s.day >= year_ago}
        total = sum((s.amount for s in mine if s.client in active), Decimal(0))
        out[rep, "ltv"] = (total / len(active)).quantize(Decimal("0.01"), ROUND_HALF_UP) \
            if active else None
        bought = sum((s.amount for s in mine if s.client in active and s.client in budgets
                      and s.day >= year_ago), Decimal(0))
        out[rep, "nois_share"] = pct(bought, sum((budgets[c] for c in active if c in budgets),
                                                 Decimal(0)))
        out[rep, "new_active_clients"] = 0
    by_client: dict[str, list[Sale]] = defaultdict(list)
    for s in sales:
        if s.client:
            by_client[s.client].append(s)
    for items in by_client.values():
        day1 = min(s.day for s in items)
        if day1 >= first.replace(month=1) and len({(s.day.year, s.day.month) for s in items}) >= 3:
            for rep in {s.rep for s in items if s.day == day1} & set(reps):
                out[rep, "new_active_clients"] += 1
    deal_clients = {num(d["ID"]) for d in data["deals"] if num(d["COMPANY_ID"])
                    or num(d["CONTACT_ID"])}
    for rep in reps:
        out[rep, "visits"] = 0
    for a in data["activities"]:
        links = [(num(a["OWNER_TYPE_ID"]), num(a["OWNER_ID"]))] + [
            (num(b["OWNER_TYPE_ID"]), num(b["OWNER_ID"])) for b in a["BINDINGS"] or []]
        bound = any(i > 0 and (t in (3, 4) or (t == 2 and i in deal_clients)) for t, i in links)
        subject = " ".join(a["SUBJECT"].casefold().replace("ё", "е").split())
        meeting = a["TYPE_ID"] == "1" or a["PROVIDER_ID"] == "CRM_MEETING" \
            or (a["TYPE_ID"] in ("3", "5", "6") and subject.startswith("визит"))
        when = datetime.fromisoformat(a["START_TIME"] or a["END_TIME"] or a["CREATED"])
        if a["COMPLETED"] == "Y" and bound and meeting \
                and first <= when.astimezone(TZ).date() < after \
                and (num(a["RESPONSIBLE_ID"]), "visits") in out:
            out[num(a["RESPONSIBLE_ID"]), "visits"] += 1
    return out, companies(data, by_client, end, year_ago)


def companies(data: dict[str, list[Row]], by_client: dict[str, list[Sale]], end: date,
              year_ago: date) -> dict[int, CompanyMetrics]:
    """Each company's card metrics (as of the day before ``end``)."""
    answers: dict[int, tuple[date, int, int]] = {}
    for c in data["contacts"]:
        day, company = day_of(c["UF_CRM_NPS_DATE"]), num(c["COMPANY_ID"])
        if c["UF_CRM_NPS_SCORE"] not in (None, "") and day and day < end and company:
            mine = (day, num(c["ID"]), int(c["UF_CRM_NPS_SCORE"]))
            answers[company] = max(answers.get(company, mine), mine)
    quarter = first_of_quarter(end - timedelta(days=1))
    out = {}
    for c in data["companies"]:
        cid = num(c["ID"])
        items = by_client.get(f"company:{cid}", [])
        recent = [s for s in items if s.day >= year_ago]
        days = [s.day for s in items]
        status = None
        if days:
            status = ("returning" if min(days) < quarter else "new") if max(days) >= quarter \
                else "at_risk" if max(days) >= first_of_quarter(quarter, 2) else "lost"
        budget = Decimal(c["UF_CRM_CARD_BUDGET"] or 0)
        trailing = sum((s.amount for s in recent), Decimal(0))
        nps = answers.get(cid)
        out[cid] = CompanyMetrics(
            cid, sum((s.amount for s in items), Decimal(0)), trailing, max(days, default=None),
            status, len({(s.day.year, s.day.month) for s in recent}) >= 3,
            nps[2] if nps else None, nps[0] if nps else None, day_of(c["UF_CRM_CARD_UPDATED"]),
            (trailing / budget).quantize(Decimal("0.0001"), ROUND_HALF_UP) if budget > 0
            else None)
    return out


# ---------------------------------------------------------------- the service side


def load_mirror(sessions: sessionmaker[Session], portal_id: int, demo: EmulatorServer) -> None:
    """What an initial import does: reference tables, CRM entities, stage history, NPS."""
    from b24app.nps import NpsSettings
    from b24app.nps.crm_field import ingest_crm_field

    client = BitrixClient(demo.portal.webhook_url, requests_per_second=1000.0, burst=1000)
    try:
        gateway = BitrixGateway(client)
        now = datetime.now(UTC)
        with sessions.begin() as session:
            refresh_reference(session, portal_id, gateway, now=now)
        bulk.bulk_load(sessions, portal_id, gateway, now=now)
        sync_stage_history(sessions, portal_id, client, now=now)
    finally:
        client.close()
    with sessions.begin() as session:
        ingest_crm_field(session, portal_id, NpsSettings(), tz=TZ)


def test_service_agrees_with_the_rest_data(session_factory: sessionmaker[Session],
                                           demo: EmulatorServer,
                                           rest: dict[str, list[Row]]) -> None:
    portal_id = seed_portal(session_factory)
    load_mirror(session_factory, portal_id, demo)
    for label in PERIODS:
        expected, metrics = independent(rest, label, NOW)
        with session_factory() as session:
            rows, computed = compute_period(session, portal_id, Period.parse(label), now=NOW,
                                            settings=KpiSettings(), calendar=WorkingCalendar())
        got = {(r.rep_id, r.kpi): r.value for r in rows if r.kpi in CHECKED}
        assert got == expected, label
        assert {m.company_id: m for m in computed} == metrics, label
    # The data exercise the edges: a refund, a client of two reps, six reps, NPS answers.
    assert {rep for rep, _ in expected} and len({rep for rep, _ in expected}) == 6
    assert any(m.nps_last is not None for m in metrics.values())
    assert {m.return_status for m in metrics.values()} >= {"new", "returning", "at_risk", "lost"}


def test_bulk_row_values_match_the_mirror(demo: EmulatorServer) -> None:
    """``sync.bulk.row_values`` skips a JSON round trip but stores what ``sync.mirror`` would."""
    client = BitrixClient(demo.portal.webhook_url, requests_per_second=1000.0, burst=1000)
    try:
        gateway = BitrixGateway(client)
        for entity in bulk.ENTITIES:
            page = next(gateway.iter_records(entity, after_id=100))
            assert [bulk.row_values(entity, r) for r in page] == [
                mirror.row_values(entity, r) for r in page], entity
    finally:
        client.close()


def test_what_the_service_wrote_into_the_portal_agrees() -> None:
    """Install the app, let it compute and write back, then read the portal's company cards
    and KPI items over REST and hold them against the second implementation."""
    from b24app.demo.stack import DemoStack
    from b24app.kpi_jobs import compute_and_write
    from b24app.nps.crm_field import run_crm_field
    from sync.initial import initial_import

    with DemoStack(seed=1) as stack:
        portal_id = stack.install()
        now = stack.ctx.clock()
        assert now == NOW
        initial_import(stack.ctx, portal_id, now)
        run_crm_field(stack.ctx, portal_id)
        report = compute_and_write(stack.ctx, portal_id, "2026-11", now)
        assert report.writeback is not None and report.writeback.ok
        url = stack.portal.webhook_url
        stack.portal.limits.enabled = False  # the plain reader below pages 50 rows a request
        expected, metrics = independent(read_rest(url), "2026-11", NOW)
        cards = listing(url, "crm.company.list", ["ID", "UF_CRM_NOIS_LTV",
                                                  "UF_CRM_NOIS_LTV_12M",
                                                  "UF_CRM_NOIS_NPS_LAST", "UF_CRM_NOIS_SHARE"])
        types = requests.post(url + "crm.type.list", json={}, timeout=30).json()["result"]
        kind = next(t for t in types["types"] if t["code"] == "nois_kpi")
        items = requests.post(url + "crm.item.list", json={
            "entityTypeId": kind["entityTypeId"], "useOriginalUfNames": "Y",
            "select": ["*", "UF_*"]}, timeout=30).json()["result"]["items"]
    for card in cards:
        want = metrics[int(card["ID"])]
        assert Decimal(card["UF_CRM_NOIS_LTV"]) == want.ltv, card["ID"]
        assert Decimal(card["UF_CRM_NOIS_LTV_12M"]) == want.ltv_12m, card["ID"]
        nps = card["UF_CRM_NOIS_NPS_LAST"]
        assert (None if nps in (None, "") else int(nps)) == want.nps_last, card["ID"]
        share = card["UF_CRM_NOIS_SHARE"]
        assert (None if share in (None, "") else Decimal(share)) == (
            None if want.nois_share is None else
            (want.nois_share * 100).quantize(Decimal("0.01"), ROUND_HALF_UP)), card["ID"]
    prefix = f"UF_CRM_{kind['id']}_"
    assert len(items) == 6
    for item in items:
        rep = int(item["assignedById"])
        for kpi in ("sales_volume", "visits", "new_active_clients", "return_rate", "ltv"):
            written = item[f"{prefix}{kpi.upper()}_VALUE"]
            want_value = expected[rep, kpi]
            got = None if written in (None, "") else Decimal(str(written))
            assert got == (None if want_value is None else Decimal(want_value)), (rep, kpi)
