"""KPI write-back over the FakeGateway, on both backends: diff, batches, snapshot, failures."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Settings
from b24app.crypto import SecretBox
from b24app.gateway.errors import AccessDenied, AuthRevoked, BadRequest
from b24app.gateway.protocol import UserFieldSpec
from b24app.lifecycle import KPI_TYPE_CODE, kpi_field_name, kpi_item_fields, setup_portal
from b24app.models import KpiItem, MirrorUser, WrittenValue
from kpi.results import CompanyMetrics, RepKpi
from sync import own_writes
from sync.writeback import (
    COMPANY,
    KPI_ITEM,
    company_fields,
    decimal2,
    load_rep_names,
    wire,
    write_back,
)
from tests.appfixtures import register_portal
from tests.fakes import FakeGateway

NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)
TZ = "Asia/Novosibirsk"
PERIOD = "2026-11"
NAMES = {7: "Иван Петров", 8: "Ольга Сидорова"}


def metrics(company_id: int, **changes: Any) -> CompanyMetrics:
    """A company with every metric set; ``changes`` override."""
    base = CompanyMetrics(company_id=company_id, ltv=Decimal("150000.5"),
                          ltv_12m=Decimal("90000"), last_purchase=date(2026, 11, 5),
                          return_status="returning", regular=True, nps_last=9,
                          nps_date=date(2026, 10, 12), card_updated=date(2026, 9, 1),
                          nois_share=Decimal("0.7143"))
    return dataclasses.replace(base, **changes)


def kpis(rep_id: int, visits: str = "12", period: str = PERIOD) -> list[RepKpi]:
    """Four KPI rows of a rep: ok, below, below with stale items, no data."""
    return [
        RepKpi(rep_id, period, "sales_volume", Decimal("1250000"), Decimal("1000000"), "ok"),
        RepKpi(rep_id, period, "visits", Decimal(visits), Decimal("30"),
               "ok" if Decimal(visits) >= 30 else "below"),
        RepKpi(rep_id, period, "crm_freshness", Decimal("90.00"), Decimal("95"), "below",
               "Сделка «Поставка»: нет запланированного дела"),
        RepKpi(rep_id, period, "nps", None, Decimal("70"), "no_data"),
    ]


@pytest.fixture
def portal_id(session_factory: sessionmaker[Session], secret_box: SecretBox) -> int:
    """An installed portal row."""
    return register_portal(session_factory, secret_box)


@pytest.fixture
def gateway() -> FakeGateway:
    """A fake portal set up by the install: company fields, «KPI менеджера» and its fields."""
    fake = FakeGateway()
    setup_portal(fake, Settings(), "https://nois.example", "1")
    return fake


def run(sessions: sessionmaker[Session], gateway: FakeGateway, portal_id: int,
        companies: Sequence[CompanyMetrics], rows: Sequence[RepKpi]) -> Any:
    """One write-back; returns its report and the write requests it sent."""
    before = len(gateway.writes)
    report = write_back(sessions, gateway, portal_id, rows, companies, now=NOW, tz=TZ,
                        rep_names=NAMES)
    return report, gateway.writes[before:]


def snapshot(sessions: sessionmaker[Session], target: str) -> dict[str, dict[str, str]]:
    """The stored snapshot of a target, by record and field."""
    out: dict[str, dict[str, str]] = {}
    with sessions() as session:
        for row in session.scalars(select(WrittenValue).where(WrittenValue.target == target)):
            out.setdefault(row.target_id, {})[row.field] = row.value
    return out


def kpi_type(gateway: FakeGateway) -> tuple[int, int]:
    """(type settings ID, entityTypeId) of «KPI менеджера» on the fake."""
    kind = next(t for t in gateway.types if t.code == KPI_TYPE_CODE)
    return kind.id, kind.entity_type_id


# -- wire form ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("1234.5"), "1234.50"), (Decimal("0.005"), "0.01"), (Decimal("-0.001"), "0.00"),
    (Decimal("71.4299"), "71.43"), (2.5, "2.50"), (30, "30"), (True, "1"), (False, "0"),
    (None, ""), (date(2026, 11, 5), "2026-11-05"), ("под угрозой", "под угрозой"),
])
def test_wire_forms(value: Any, expected: str) -> None:
    assert wire(value) == expected


def test_wire_refuses_instants() -> None:
    with pytest.raises(TypeError):
        wire(NOW)
    assert decimal2(Decimal("1E+3")) == "1000.00"


def test_company_fields_in_wire_form() -> None:
    assert company_fields(metrics(5)) == {
        "UF_CRM_NOIS_LTV": "150000.50", "UF_CRM_NOIS_LTV_12M": "90000.00",
        "UF_CRM_NOIS_LAST_PURCHASE": "2026-11-05", "UF_CRM_NOIS_RETURN_STATUS": "возвращающийся",
        "UF_CRM_NOIS_REGULAR": "1", "UF_CRM_NOIS_NPS_LAST": "9",
        "UF_CRM_NOIS_NPS_DATE": "2026-10-12", "UF_CRM_NOIS_CARD_UPDATED": "2026-09-01",
        "UF_CRM_NOIS_SHARE": "71.43"}
    empty = company_fields(metrics(5, last_purchase=None, return_status=None, regular=False,
                                   nps_last=None, nps_date=None, card_updated=None,
                                   nois_share=None, ltv=Decimal(0)))
    assert empty["UF_CRM_NOIS_LTV"] == "0.00" and empty["UF_CRM_NOIS_REGULAR"] == "0"
    assert {empty[k] for k in ("UF_CRM_NOIS_LAST_PURCHASE", "UF_CRM_NOIS_RETURN_STATUS",
                               "UF_CRM_NOIS_NPS_LAST", "UF_CRM_NOIS_SHARE")} == {""}


# -- the item fields made at install -----------------------------------------------------------
def test_setup_makes_the_kpi_fields_once() -> None:
    fake = FakeGateway()
    first = setup_portal(fake, Settings(), "https://nois.example", "1")
    kind = fake.types[0]
    assert first.kpi_fields_created == [s.name for s in kpi_item_fields(kind.id)]
    assert len(first.kpi_fields_created) == 49 and first.changed
    assert first.kpi_fields_created[:4] == [
        "UF_CRM_1_PERIOD", "UF_CRM_1_SALES_VOLUME_VALUE", "UF_CRM_1_SALES_VOLUME_TARGET",
        "UF_CRM_1_SALES_VOLUME_STATUS"]
    fake.item_userfields[kind.entity_type_id].remove("UF_CRM_1_NPS_TARGET")
    again = setup_portal(fake, Settings(), "https://nois.example", "1")
    assert (again.kpi_fields_created, again.kpi_fields_present) == (["UF_CRM_1_NPS_TARGET"], 48)
    third = setup_portal(fake, Settings(), "https://nois.example", "1")
    assert (third.kpi_fields_created, third.kpi_fields_present, third.changed) == ([], 49, False)


def test_kpi_field_specs() -> None:
    specs = {s.name: s for s in kpi_item_fields(12345)}
    assert max(len(name) for name in specs) <= 50  # Bitrix24's limit for a field name
    value = specs["UF_CRM_12345_NEW_PRODUCTS_MAILING_VALUE"]
    assert (value.type, value.label, value.settings) == (
        "double", "Рассылка новинок: значение", {"PRECISION": 2})
    status = specs["UF_CRM_12345_RESPONSE_SLA_STATUS"]
    assert (status.type, status.label) == ("string", "Ответ за 2 рабочих часа: статус")
    assert specs["UF_CRM_12345_PERIOD"].label == "Период"


# -- idempotence -------------------------------------------------------------------------------
def test_first_run_writes_all_then_nothing(session_factory: sessionmaker[Session],
                                           gateway: FakeGateway, portal_id: int) -> None:
    """120 companies in 3 batches and one item per rep; runs 2 and 3 send no write."""
    companies = [metrics(i) for i in range(1, 121)]
    rows = kpis(7) + kpis(8)
    report, writes = run(session_factory, gateway, portal_id, companies, rows)
    assert writes == [("crm.company.update", 50), ("crm.company.update", 50),
                      ("crm.company.update", 20), ("crm.item.add", 1), ("crm.item.add", 1)]
    assert (report.companies_written, report.company_fields) == (120, 120 * 9)
    assert (report.items_created, report.items_written, report.ok) == (2, 0, True)
    assert len(snapshot(session_factory, COMPANY)) == 120
    for _ in range(2):
        again, writes = run(session_factory, gateway, portal_id, companies, rows)
        assert writes == [] and again.companies_changed == 0 and again.ok


def test_items_carry_title_assignee_period_and_each_kpi(
        session_factory: sessionmaker[Session], gateway: FakeGateway, portal_id: int) -> None:
    run(session_factory, gateway, portal_id, [], kpis(7))
    type_id, etid = kpi_type(gateway)
    (item_id, item), = gateway.items[etid].items()
    assert item["title"] == "KPI: Иван Петров — ноябрь 2026"
    assert item["assignedById"] == "7" and item[kpi_field_name(type_id, "PERIOD")] == PERIOD
    assert item[f"UF_CRM_{type_id}_SALES_VOLUME_VALUE"] == "1250000.00"
    assert item[f"UF_CRM_{type_id}_SALES_VOLUME_TARGET"] == "1000000.00"
    assert item[f"UF_CRM_{type_id}_SALES_VOLUME_STATUS"] == "выполнен"
    assert item[f"UF_CRM_{type_id}_VISITS_STATUS"] == "не выполнен"
    assert (item[f"UF_CRM_{type_id}_NPS_VALUE"], item[f"UF_CRM_{type_id}_NPS_STATUS"]) == (
        "", "нет данных")
    assert f"UF_CRM_{type_id}_TASK_FORMAT_VALUE" not in item  # not computed: left alone
    with session_factory() as session:
        mapping = session.scalars(select(KpiItem)).one()
    assert (mapping.rep_id, mapping.period, mapping.item_id) == (7, PERIOD, item_id)
    assert snapshot(session_factory, KPI_ITEM)[str(item_id)] == {
        k: v for k, v in item.items() if k != "id"}


def test_a_changed_value_writes_only_that_field(session_factory: sessionmaker[Session],
                                                gateway: FakeGateway, portal_id: int) -> None:
    companies = [metrics(1), metrics(2)]
    run(session_factory, gateway, portal_id, companies, kpis(7) + kpis(8))
    gateway.updates.clear()
    companies[1] = metrics(2, ltv=Decimal("151000"))
    report, writes = run(session_factory, gateway, portal_id, companies,
                         kpis(7, visits="31") + kpis(8))
    type_id, etid = kpi_type(gateway)
    assert writes == [("crm.company.update", 1), ("crm.item.update", 1)]
    assert gateway.updates == [("company", 2, {"UF_CRM_NOIS_LTV": "151000.00"})]
    item = next(r for r in gateway.items[etid].values() if r["assignedById"] == "7")
    assert item[f"UF_CRM_{type_id}_VISITS_VALUE"] == "31.00"
    assert item[f"UF_CRM_{type_id}_VISITS_STATUS"] == "выполнен"
    assert (report.company_fields, report.item_fields) == (1, 2)


def test_none_clears_a_field(session_factory: sessionmaker[Session], gateway: FakeGateway,
                             portal_id: int) -> None:
    run(session_factory, gateway, portal_id, [metrics(3)], [])
    gateway.updates.clear()
    run(session_factory, gateway, portal_id, [metrics(3, nps_last=None, nps_date=None)], [])
    assert gateway.updates == [("company", 3, {"UF_CRM_NOIS_NPS_LAST": "",
                                               "UF_CRM_NOIS_NPS_DATE": ""})]
    assert snapshot(session_factory, COMPANY)["3"]["UF_CRM_NOIS_NPS_LAST"] == ""


# -- failures ----------------------------------------------------------------------------------
def test_an_error_on_one_company_keeps_the_others(session_factory: sessionmaker[Session],
                                                  gateway: FakeGateway, portal_id: int) -> None:
    """The failed company gets no snapshot; the next run retries it alone, every field."""
    gateway.failures[COMPANY, 2] = BadRequest("", "Not found", method="crm.company.update")
    companies = [metrics(i) for i in (1, 2, 3)]
    report, _ = run(session_factory, gateway, portal_id, companies, [])
    assert report.companies_written == 2 and not report.ok
    assert report.failures == ["компания 2: BadRequest Not found"]
    assert set(snapshot(session_factory, COMPANY)) == {"1", "3"}
    del gateway.failures[COMPANY, 2]
    gateway.updates.clear()
    report, writes = run(session_factory, gateway, portal_id, companies, [])
    assert writes == [("crm.company.update", 1)] and report.ok
    assert gateway.updates == [("company", 2, company_fields(metrics(2)))]
    assert run(session_factory, gateway, portal_id, companies, [])[1] == []


def test_revoked_credentials_end_the_run_after_saving(session_factory: sessionmaker[Session],
                                                      gateway: FakeGateway,
                                                      portal_id: int) -> None:
    gateway.failures[COMPANY, 2] = AuthRevoked("invalid_token", "", method="crm.company.update")
    with pytest.raises(AuthRevoked):
        run(session_factory, gateway, portal_id, [metrics(1), metrics(2)], kpis(7))
    assert set(snapshot(session_factory, COMPANY)) == {"1"}
    assert not any(t for t in gateway.items.values())  # items were not reached


def test_a_deleted_item_is_made_again(session_factory: sessionmaker[Session],
                                      gateway: FakeGateway, portal_id: int) -> None:
    run(session_factory, gateway, portal_id, [], kpis(7))
    _, etid = kpi_type(gateway)
    gateway.items[etid].clear()  # a user deleted it on the portal
    report, _ = run(session_factory, gateway, portal_id, [], kpis(7, visits="13"))
    assert report.failures and "NOT_FOUND" in report.failures[0]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(KpiItem)) == 0
    report, writes = run(session_factory, gateway, portal_id, [], kpis(7, visits="13"))
    assert writes == [("crm.item.add", 1)] and report.items_created == 1
    assert len(gateway.items[etid]) == 1


def test_a_lost_mapping_never_duplicates_items(session_factory: sessionmaker[Session],
                                               gateway: FakeGateway, portal_id: int) -> None:
    """After a restore without KpiItem and snapshot rows, the items are found, not re-added."""
    rows = kpis(7) + kpis(8)
    run(session_factory, gateway, portal_id, [], rows)
    _, etid = kpi_type(gateway)
    items = dict(gateway.items[etid])
    with session_factory.begin() as session:
        session.execute(delete(KpiItem))
        session.execute(delete(WrittenValue))
    report, writes = run(session_factory, gateway, portal_id, [], rows)
    assert report.items_adopted == 2 and report.items_created == 0
    assert writes == [("crm.item.update", 2)]  # unknown snapshot: written once more
    assert gateway.items[etid] == items
    assert run(session_factory, gateway, portal_id, [], rows)[1] == []


def test_items_are_adopted_by_title_when_reassigned(session_factory: sessionmaker[Session],
                                                    gateway: FakeGateway,
                                                    portal_id: int) -> None:
    run(session_factory, gateway, portal_id, [], kpis(7))
    _, etid = kpi_type(gateway)
    (item_id, item), = gateway.items[etid].items()
    item["assignedById"] = "1"  # someone gave it to the admin
    with session_factory.begin() as session:
        session.execute(delete(KpiItem))
    report, _ = run(session_factory, gateway, portal_id, [], kpis(7))
    assert report.items_adopted == 1 and list(gateway.items[etid]) == [item_id]


def test_without_the_smart_process_companies_still_go(session_factory: sessionmaker[Session],
                                                      portal_id: int) -> None:
    gateway = FakeGateway()
    report, writes = run(session_factory, gateway, portal_id, [metrics(1)], kpis(7))
    assert writes == [("crm.company.update", 1)]
    assert report.problems and "KPI менеджера" in report.problems[0]


def test_missing_item_fields_are_created_before_writing(
        session_factory: sessionmaker[Session], portal_id: int) -> None:
    """A portal installed by an older version has the type but not the fields."""
    gateway = FakeGateway()
    kind = gateway.add_crm_type("KPI менеджера", KPI_TYPE_CODE)
    report, _ = run(session_factory, gateway, portal_id, [], kpis(7))
    assert report.fields_created == [s.name for s in kpi_item_fields(kind.id)]
    assert report.items_created == 1


def test_fields_that_cannot_be_made_stop_the_items(session_factory: sessionmaker[Session],
                                                   portal_id: int) -> None:
    """Bitrix24 drops unknown fields silently: no item is written without its fields."""
    gateway = FakeGateway()
    gateway.add_crm_type("KPI менеджера", KPI_TYPE_CODE)

    def refuse(type_settings_id: int, specs: Sequence[UserFieldSpec]) -> dict[str, Any]:
        return dict.fromkeys((s.name for s in specs), AccessDenied("ACCESS_DENIED", "нет прав"))

    gateway.add_item_userfields = refuse  # type: ignore[method-assign]
    report, writes = run(session_factory, gateway, portal_id, [metrics(1)], kpis(7))
    assert writes == [("crm.company.update", 1)]
    assert report.problems == ["поля «KPI менеджера» не созданы: ACCESS_DENIED нет прав"]


def test_periods_get_their_own_items(session_factory: sessionmaker[Session],
                                     gateway: FakeGateway, portal_id: int) -> None:
    report, _ = run(session_factory, gateway, portal_id, [],
                    kpis(7, period="2026-10") + kpis(7))
    _, etid = kpi_type(gateway)
    titles = sorted(r["title"] for r in gateway.items[etid].values())
    assert titles == ["KPI: Иван Петров — ноябрь 2026", "KPI: Иван Петров — октябрь 2026"]
    assert report.items_created == 2


# -- own writes and names ----------------------------------------------------------------------
def test_own_writes_are_recorded(session_factory: sessionmaker[Session], gateway: FakeGateway,
                                 portal_id: int) -> None:
    """The echo of a write, as the legacy CRM reads it back, is recognised as ours."""
    run(session_factory, gateway, portal_id, [metrics(4), metrics(5, regular=False)], [])
    # A boolean user field reads back as "1"/"0" (crm.company.get), never as "Y"/"N".
    echo = {"UF_CRM_NOIS_LTV": "150000.50", "UF_CRM_NOIS_REGULAR": "1",
            "UF_CRM_NOIS_LAST_PURCHASE": "2026-11-05T00:00:00+07:00"}
    with session_factory() as session:
        assert own_writes.is_own(session, portal_id, COMPANY, 4, echo, now=NOW)
        assert own_writes.is_own(session, portal_id, COMPANY, 5, {"UF_CRM_NOIS_REGULAR": "0"},
                                 now=NOW)
        assert own_writes.is_own(session, portal_id, COMPANY, 4,
                                 {"UF_CRM_NOIS_LAST_PURCHASE": "2026-11-05"}, now=NOW)
        assert not own_writes.is_own(session, portal_id, COMPANY, 4,
                                     {"UF_CRM_NOIS_LTV": "1.00"}, now=NOW)


def test_rep_names_come_from_the_mirror(session_factory: sessionmaker[Session],
                                        portal_id: int) -> None:
    with session_factory.begin() as session:
        session.add_all([MirrorUser(portal_id=portal_id, id=7, name="Иван", last_name="Петров"),
                         MirrorUser(portal_id=portal_id, id=9, name="", last_name="")])
    with session_factory() as session:
        assert load_rep_names(session, portal_id, [7, 8, 9]) == {7: "Иван Петров"}
