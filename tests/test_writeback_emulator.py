"""KPI write-back against the emulator, the app installed by the real flow: idempotence over
REST, values read back, the 429 window, a company deleted between compute and write."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, select

from b24app.gateway.bitrix import BitrixGateway
from b24app.gateway.client import BitrixClient
from b24app.lifecycle import KPI_TYPE_CODE, kpi_field_name, kpi_item_fields
from b24app.models import KpiItem, Portal, WrittenValue
from b24emu import EmulatorServer
from b24emu.dispatch import act
from kpi.definitions import DEFINITIONS, KpiId
from kpi.results import CompanyMetrics, RepKpi
from sync.writeback import WritebackReport, company_fields, item_fields, wire, write_back
from tests.appfixtures import AppServer

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
TZ = "Asia/Novosibirsk"
PERIOD = "2026-11"
WRITES = ("crm.company.update", "crm.item.add", "crm.item.update", "userfieldconfig.add")
REPS = {"Иван": "Петров", "Ольга": "Сидорова", "Пётр": "Кузнецов"}


@dataclass
class Installed:
    """The app installed on the emulator: its portal row, gateway and the demo-like data."""

    emulator: EmulatorServer
    server: AppServer
    portal_id: int
    gateway: BitrixGateway
    companies: list[int]
    reps: dict[int, str]
    type_id: int
    entity_type_id: int
    baseline: dict[str, int]

    def write(self, metrics: Sequence[CompanyMetrics], rows: Sequence[RepKpi], *,
              gateway: BitrixGateway | None = None) -> WritebackReport:
        """One write-back through the app's own gateway (or ``gateway``)."""
        return write_back(self.server.ctx.sessions, gateway or self.gateway, self.portal_id,
                          rows, metrics, now=NOW, tz=TZ, rep_names=self.reps)

    def writes_sent(self) -> dict[str, int]:
        """Write commands the app's client has sent since the install, by method."""
        return {m: n - self.baseline[m] for m, n in sent_by(self.gateway).items()}


def sent_by(gateway: BitrixGateway) -> dict[str, int]:
    """Write commands a gateway's client has sent so far, by method."""
    by_method = gateway.client.stats.by_method
    return {m: by_method.get(m, 0) for m in WRITES}


@pytest.fixture
def admin(emulator: EmulatorServer) -> Iterator[BitrixClient]:
    """An independent REST client (the admin's webhook) to read the portal back."""
    client = BitrixClient(emulator.portal.webhook_url, requests_per_second=50.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def installed(emulator: EmulatorServer, app_server: AppServer) -> Installed:
    """Install through ONAPPINSTALL; five companies and three sales reps on the portal."""
    portal = emulator.portal
    result = portal.install_app(f"{app_server.url}/b24/install")
    assert result.status == 200, result.error
    with app_server.ctx.sessions() as session:
        portal_id = session.scalars(select(Portal.id)).one()
    reps = {}
    for first, last in REPS.items():
        user_id = int(portal.users.insert({"NAME": first, "LAST_NAME": last, "ACTIVE": True,
                                           "UF_DEPARTMENT": [1], "USER_TYPE": "employee"}))
        reps[user_id] = f"{first} {last}"
    companies = [int(act(portal, "crm.company.add", {"fields": {
        "TITLE": f"ООО Клиент {i}", "ASSIGNED_BY_ID": list(reps)[i % 3]}})) for i in range(5)]
    kind = next(r for r in portal.crm_types if r["CODE"] == KPI_TYPE_CODE)
    gateway = app_server.ctx.gateways.for_portal(portal_id)
    assert isinstance(gateway, BitrixGateway)
    portal.clock.set(datetime.now(UTC), frozen=True)  # DATE_MODIFY moves only when we say
    return Installed(emulator, app_server, portal_id, gateway, companies, reps,
                     int(kind["ID"]), int(kind["ENTITY_TYPE_ID"]), sent_by(gateway))


def metrics_of(ids: Sequence[int], bump: int = 0) -> list[CompanyMetrics]:
    """Varied metrics: some companies never bought, some lost, one regular."""
    out = []
    for n, cid in enumerate(ids):
        bought = n % 2 == 0
        out.append(CompanyMetrics(
            company_id=cid, ltv=Decimal(125_000 * n + bump) + Decimal("0.5"),
            ltv_12m=Decimal(40_000 * n), last_purchase=date(2026, 10, n + 1) if bought else None,
            return_status=("returning", "lost", "at_risk", None, "new")[n],
            regular=n == 0, nps_last=(9, None, 6, 10, None)[n],
            nps_date=date(2026, 10, 20) if n in (0, 2, 3) else None,
            card_updated=date(2026, 9, n + 1), nois_share=Decimal("0.3571") if bought else None))
    return out


def kpi_rows(reps: Sequence[int], visits: int = 12) -> list[RepKpi]:
    """Every KPI of every rep: a value (none for NPS), its target and status."""
    rows = []
    for rep in reps:
        for n, kpi in enumerate(KpiId):
            value = None if kpi is KpiId.NPS else Decimal(visits if kpi is KpiId.VISITS
                                                          else 10 * n + rep % 7)
            target = DEFINITIONS[kpi].default_target or Decimal(100)
            state = "no_data" if value is None else "ok" if value >= target else "below"
            rows.append(RepKpi(rep, PERIOD, kpi.value, value, target, state))
    return rows


def same(expected: str, actual: Any) -> bool:
    """A wire value we sent against what REST answers (typed or legacy strings)."""
    if expected == "":
        return actual in (None, "", [], False)
    if isinstance(actual, bool | int | float) and not isinstance(actual, bool):
        return Decimal(str(actual)) == Decimal(expected)
    text = str(actual)
    if len(expected) == 10 and expected[4] == "-" and "T" in text:
        return text[:10] == expected  # dates read back as local midnight with offset
    try:
        return Decimal(text) == Decimal(expected)
    except ArithmeticError:
        return text == expected


def assert_companies(admin: BitrixClient, metrics: Sequence[CompanyMetrics]) -> None:
    """Every company card holds the desired values (legacy crm.company.get over REST)."""
    for item in metrics:
        card = admin.call("crm.company.get", {"id": item.company_id}).value
        for name, value in company_fields(item).items():
            assert same(value, card.get(name)), (item.company_id, name, value, card.get(name))


def assert_items(installed: Installed, admin: BitrixClient, rows: Sequence[RepKpi]) -> None:
    """One item per rep, assigned to them, every field as desired (crm.item.list)."""
    listed = admin.call("crm.item.list", {"entityTypeId": installed.entity_type_id,
                                          "useOriginalUfNames": "Y", "select": ["*"]}).value
    items = {int(i["assignedById"]): i for i in listed["items"]}
    assert sorted(items) == sorted(installed.reps)
    kind = next(t for t in installed.gateway.crm_types() if t.code == KPI_TYPE_CODE)
    for rep, name in installed.reps.items():
        desired = item_fields(kind, rep, PERIOD, [r for r in rows if r.rep_id == rep],
                              name=name, tz=TZ)
        assert items[rep]["title"] == f"KPI: {name} — ноябрь 2026"
        for field, value in desired.items():
            assert same(value, items[rep][field]), (rep, field, value, items[rep][field])


# -- install ------------------------------------------------------------------------------------
def test_install_creates_the_kpi_fields(installed: Installed, admin: BitrixClient) -> None:
    """The period and value/target/status of every KPI, as typed smart-process fields."""
    fields = admin.call("userfieldconfig.list", {
        "moduleId": "crm", "filter": {"entityId": f"CRM_{installed.type_id}"}}).value["fields"]
    by_name = {f["fieldName"]: f for f in fields}
    specs = kpi_item_fields(installed.type_id)
    assert set(by_name) == {s.name for s in specs} and len(specs) == 1 + 3 * len(KpiId)
    value = by_name[f"UF_CRM_{installed.type_id}_VISITS_VALUE"]
    assert (value["userTypeId"], value["settings"]["PRECISION"]) == ("double", 2)
    status = by_name[f"UF_CRM_{installed.type_id}_VISITS_STATUS"]
    assert status["userTypeId"] == "string"
    label = admin.call("userfieldconfig.get", {"moduleId": "crm", "id": status["id"]}).value
    assert label["field"]["editFormLabel"]["ru"] == "Личные визиты к клиентам: статус"


# -- idempotence --------------------------------------------------------------------------------
def test_three_runs_the_second_and_third_write_nothing(installed: Installed,
                                                       admin: BitrixClient) -> None:
    portal = installed.emulator.portal
    metrics, rows = metrics_of(installed.companies), kpi_rows(list(installed.reps))
    first = installed.write(metrics, rows)
    assert first.ok and first.companies_written == 5 and first.items_created == 3
    assert installed.writes_sent() == {"crm.company.update": 5, "crm.item.add": 3,
                                       "crm.item.update": 0, "userfieldconfig.add": 0}
    assert_companies(admin, metrics)
    assert_items(installed, admin, rows)
    stamps = {cid: portal.companies.rows[cid]["DATE_MODIFY"] for cid in installed.companies}
    items = {i: dict(r) for i, r in portal.items[installed.entity_type_id].rows.items()}
    for _ in range(2):
        portal.clock.advance(600)  # any write now would move DATE_MODIFY
        sent, requests = installed.writes_sent(), installed.gateway.client.stats.requests
        report = installed.write(metrics, rows)
        assert installed.writes_sent() == sent  # zero write commands
        assert installed.gateway.client.stats.requests - requests == 1  # crm.type.list only
        assert report.ok and report.companies_changed == 0 and report.items_written == 0
        assert {c: portal.companies.rows[c]["DATE_MODIFY"] for c in stamps} == stamps
        assert {i: dict(r) for i, r in portal.items[installed.entity_type_id].rows.items()} == (
            items)


def test_changes_go_in_one_batch_and_read_back(installed: Installed,
                                               admin: BitrixClient) -> None:
    reps = list(installed.reps)
    installed.write(metrics_of(installed.companies), kpi_rows(reps))
    metrics, rows = metrics_of(installed.companies, bump=7), kpi_rows(reps, visits=31)
    before, requests = installed.writes_sent(), installed.gateway.client.stats.requests
    report = installed.write(metrics, rows)
    after = installed.writes_sent()
    assert after["crm.company.update"] - before["crm.company.update"] == 5
    assert after["crm.item.update"] - before["crm.item.update"] == 3
    # Reads: crm.type.list, crm.item.fields (fields present?); writes: one batch of company
    # updates, one of item updates.
    assert installed.gateway.client.stats.requests - requests == 2 + 2
    assert (report.company_fields, report.item_fields) == (5, 3 * 2)  # LTV; visits + status
    assert_companies(admin, metrics)
    assert_items(installed, admin, rows)


def test_a_lost_mapping_finds_the_items_over_rest(installed: Installed,
                                                  admin: BitrixClient) -> None:
    rows = kpi_rows(list(installed.reps))
    installed.write([], rows)
    with installed.server.ctx.sessions.begin() as session:
        session.execute(delete(KpiItem))
        session.execute(delete(WrittenValue))
    report = installed.write([], rows)
    assert (report.items_adopted, report.items_created, report.items_written) == (3, 0, 3)
    assert len(installed.emulator.portal.items[installed.entity_type_id].rows) == 3
    assert_items(installed, admin, rows)


# -- failures -----------------------------------------------------------------------------------
def test_a_429_window_is_waited_out(installed: Installed, admin: BitrixClient) -> None:
    """The first update spends the budget: the rest of its batch waits for the reset."""
    portal = installed.emulator.portal
    ids = installed.companies + [int(act(portal, "crm.company.add", {"fields": {
        "TITLE": f"ООО Ещё {i}"}})) for i in range(55)]
    portal.limits.enabled = True
    portal.limits.burst = 10_000
    portal.limits.operating_limit = 10.0
    portal.faults.add("operating_cost", "crm.company.update", count=1, value=11.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        portal.clock.advance(seconds)  # the budget runs on the portal clock

    waiting = BitrixGateway(installed.gateway.client, sleep=sleep, now=portal.clock.timestamp)
    metrics = metrics_of(ids[:5]) + [CompanyMetrics(
        cid, Decimal(cid), Decimal(0), None, None, False, None, None, None, None)
        for cid in ids[5:]]
    before = installed.gateway.client.stats.by_method.get("crm.company.update", 0)
    report = installed.write(metrics, [], gateway=waiting)
    assert report.ok and report.companies_written == 60
    assert len(slept) == 1 and 0 < slept[0] <= 600
    # 60 updates in 2 batches, plus the 49 refused ones sent again after the wait.
    assert installed.gateway.client.stats.by_method["crm.company.update"] - before == 60 + 49
    assert_companies(admin, metrics)


def test_a_company_deleted_before_the_write_loses_nothing_else(installed: Installed,
                                                               admin: BitrixClient) -> None:
    portal = installed.emulator.portal
    metrics = metrics_of(installed.companies)
    gone = installed.companies[2]
    act(portal, "crm.company.delete", {"id": gone})
    report = installed.write(metrics, [])
    assert report.companies_written == 4 and len(report.failures) == 1
    assert report.failures[0].startswith(f"компания {gone}:")
    assert_companies(admin, [m for m in metrics if m.company_id != gone])
    with installed.server.ctx.sessions() as session:
        kept = set(session.scalars(select(WrittenValue.target_id).distinct()))
    assert kept == {str(c) for c in installed.companies if c != gone}
    before = installed.writes_sent()["crm.company.update"]
    again = installed.write(metrics, [])  # only the failed one is tried again
    assert installed.writes_sent()["crm.company.update"] - before == 1
    assert again.companies_written == 0 and len(again.failures) == 1
    rest = [m for m in metrics if m.company_id != gone]
    assert installed.write(rest, []).companies_changed == 0


def test_values_match_the_wire_encoding(installed: Installed) -> None:
    """The stored snapshot is exactly what went over the wire."""
    metrics = metrics_of(installed.companies)
    installed.write(metrics, [])
    with installed.server.ctx.sessions() as session:
        stored: dict[tuple[str, str], str] = {
            (r.target_id, r.field): r.value for r in session.scalars(select(WrittenValue))}
    expected: Mapping[tuple[str, str], str] = {
        (str(m.company_id), name): value for m in metrics
        for name, value in company_fields(m).items()}
    assert stored == expected
    assert wire(metrics[0].ltv) == "0.50"
    assert kpi_field_name(installed.type_id, "PERIOD") == f"UF_CRM_{installed.type_id}_PERIOD"


# -- the gateway's item calls at scale ----------------------------------------------------------
@pytest.fixture
def fast(emulator: EmulatorServer) -> Iterator[BitrixGateway]:
    """A gateway on the admin's webhook without the client's 2 requests/s throttle."""
    client = BitrixClient(emulator.portal.webhook_url, requests_per_second=50.0, burst=50)
    try:
        yield BitrixGateway(client)
    finally:
        client.close()


def test_find_and_update_many_items(installed: Installed, fast: BitrixGateway) -> None:
    """120 items: found in ID order by a user-field filter, updated in 3 batches."""
    portal, etid = installed.emulator.portal, installed.entity_type_id
    period = kpi_field_name(installed.type_id, "PERIOD")
    ids = [int(act(portal, "crm.item.add", {"entityTypeId": etid, "useOriginalUfNames": "Y",
                                            "fields": {"title": f"KPI {i}",
                                                       period: "2026-10" if i % 4 else PERIOD}})
               ["item"]["id"]) for i in range(160)]
    before = fast.client.stats.requests
    found = fast.find_items(etid, {period: "2026-10"}, select=["id", period])
    assert [r["id"] for r in found] == [i for n, i in enumerate(ids) if n % 4]
    assert found[0] == {"id": ids[1], period: "2026-10"}
    assert fast.client.stats.requests - before == 2  # a counted first page, then one batch
    visits = kpi_field_name(installed.type_id, "VISITS_VALUE")
    outcome = fast.update_items(etid, {r["id"]: {visits: "30.50"} for r in found} | {99999: {
        visits: "1"}})
    assert fast.client.stats.requests - before == 2 + 3
    assert [i for i, e in outcome.items() if e is not None] == [99999]
    assert type(outcome[99999]).__name__ == "NotFound"
    assert all(portal.items[etid].rows[r["id"]][visits] == 30.5 for r in found)


def test_item_updates_wait_out_a_429_window(installed: Installed, fast: BitrixGateway) -> None:
    portal, etid = installed.emulator.portal, installed.entity_type_id
    ids = [fast.add_item(etid, {"title": f"KPI {i}"}) for i in range(60)]
    portal.limits.enabled = True
    portal.limits.burst = 10_000
    portal.limits.operating_limit = 10.0
    portal.faults.add("operating_cost", "crm.item.update", count=1, value=11.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        portal.clock.advance(seconds)

    waiting = BitrixGateway(fast.client, sleep=sleep, now=portal.clock.timestamp)
    outcome = waiting.update_items(etid, {i: {"title": f"Новый {i}"} for i in ids})
    assert outcome == dict.fromkeys(ids) and len(slept) == 1
    assert [portal.items[etid].rows[i]["TITLE"] for i in ids] == [f"Новый {i}" for i in ids]
