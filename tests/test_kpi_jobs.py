"""KPI jobs on both backends: compute and write-back, the nightly run, the weekly digest, the
Excel export. The compute is a stub here (its own tests are test_kpi_compute.py), except one
smoke test over a tiny mirror."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from b24app import kpi_jobs
from b24app.config import Settings
from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.gateway.errors import AuthRevoked
from b24app.lifecycle import setup_portal
from b24app.models import (
    KpiValue,
    MirrorCompany,
    MirrorDepartment,
    MirrorUser,
    Notification,
    Portal,
)
from kpi import compute
from kpi.periods import Period
from kpi.results import CompanyMetrics, RepKpi
from tests.appfixtures import FakeGatewayProvider, register_portal
from tests.fakes import FakeClock

NSK = ZoneInfo("Asia/Novosibirsk")
NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant given in Novosibirsk time."""
    return datetime(year, month, day, hour, minute, tzinfo=NSK)


@dataclass
class StubCompute:
    """``compute_period`` that answers fixed rows for any period and records the calls."""

    rows: list[RepKpi]
    companies: list[CompanyMetrics]
    calls: list[str] = field(default_factory=list)
    error: Exception | None = None

    def __call__(self, session: Session, portal_id: int, period: Period, *, now: datetime,
                 settings: Any, calendar: Any, **_: Any
                 ) -> tuple[list[RepKpi], list[CompanyMetrics]]:
        self.calls.append(period.label)
        if self.error is not None:
            raise self.error
        return ([dataclasses.replace(r, period=period.label) for r in self.rows],
                list(self.companies))


def rep_rows(rep: int, visits: int = 12) -> list[RepKpi]:
    return [RepKpi(rep, "2026-11", "sales_volume", Decimal(900_000), Decimal(1_000_000),
                   "below"),
            RepKpi(rep, "2026-11", "visits", Decimal(visits), Decimal(30),
                   "ok" if visits >= 30 else "below"),
            RepKpi(rep, "2026-11", "crm_freshness", Decimal("80"), Decimal(95), "below",
                   "Сделка «Поставка»: нет запланированного дела\nЗадача «Счёт»: просрочена")]


def company(cid: int) -> CompanyMetrics:
    return CompanyMetrics(cid, Decimal("1000.5"), Decimal(500), date(2026, 11, 2), "returning",
                          True, 10, date(2026, 10, 1), date(2026, 9, 1), Decimal("0.25"))


@pytest.fixture
def portal_id(session_factory: sessionmaker[Session], secret_box: SecretBox) -> int:
    return register_portal(session_factory, secret_box)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch, portal_id: int,
         session_factory: sessionmaker[Session]) -> StubCompute:
    """Two reps with names in the mirror, two companies."""
    with session_factory.begin() as session:
        session.add_all([MirrorUser(portal_id=portal_id, id=7, name="Иван", last_name="Петров"),
                         MirrorUser(portal_id=portal_id, id=8, name="Ольга",
                                    last_name="Сидорова")])
    fake = StubCompute(rep_rows(7) + rep_rows(8, visits=31), [company(11), company(12)])
    monkeypatch.setattr(compute, "compute_period", fake)
    return fake


@pytest.fixture
def ctx(app_ctx: AppContext, gateway_provider: FakeGatewayProvider) -> AppContext:
    """The app context over the FakeGateway, the portal set up as by the install."""
    setup_portal(gateway_provider.gateway, app_ctx.settings, "https://nois.example", "1")
    return app_ctx


def notifications(sessions: sessionmaker[Session]) -> list[Notification]:
    with sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


# -- compute and write --------------------------------------------------------------------------
def test_compute_and_write_stores_and_writes_once(ctx: AppContext, stub: StubCompute,
                                                  gateway_provider: FakeGatewayProvider,
                                                  portal_id: int) -> None:
    gateway = gateway_provider.gateway
    report = kpi_jobs.compute_and_write(ctx, portal_id, "2026-11", NOW)
    assert report.stored == 6 and report.rep_names == {7: "Иван Петров", 8: "Ольга Сидорова"}
    assert report.writeback is not None and report.writeback.ok
    assert gateway.writes == [("crm.company.update", 2), ("crm.item.add", 1),
                              ("crm.item.add", 1)]
    with ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(KpiValue)) == 6
    summary = report.as_dict()
    assert (summary["period"], summary["reps"], summary["companies"]) == ("2026-11", 2, 2)
    assert summary["writeback"]["companies_written"] == 2
    for _ in range(2):
        again = kpi_jobs.compute_and_write(ctx, portal_id, Period.parse("2026-11"), NOW)
        assert again.stored == 0 and again.writeback is not None
        assert again.writeback.companies_changed == 0
    assert len(gateway.writes) == 3  # the second and third runs sent nothing


def test_compute_only_never_asks_for_a_gateway(ctx: AppContext, stub: StubCompute,
                                               gateway_provider: FakeGatewayProvider,
                                               portal_id: int) -> None:
    report = kpi_jobs.compute_and_write(ctx, portal_id, "2026-11", NOW, write=False)
    assert report.writeback is None and gateway_provider.asked == []
    assert report.as_dict()["writeback"] is None


def test_a_past_month_writes_its_items_but_not_the_company_cards(
        ctx: AppContext, stub: StubCompute, gateway_provider: FakeGatewayProvider,
        portal_id: int) -> None:
    """Regression: ``kpi --period 2026-10 --write`` put October's values into the cards."""
    report = kpi_jobs.compute_and_write(ctx, portal_id, "2026-10", NOW)
    assert report.writeback is not None and report.writeback.ok
    assert report.writeback.companies_changed == 0
    assert gateway_provider.gateway.writes == [("crm.item.add", 1), ("crm.item.add", 1)]


def test_items_are_monthly(ctx: AppContext, stub: StubCompute,
                           gateway_provider: FakeGatewayProvider, portal_id: int) -> None:
    """Regression: a quarter made a second «KPI менеджера» item per rep, labelled "2026-Q4"."""
    report = kpi_jobs.compute_and_write(ctx, portal_id, "2026-Q4", NOW)
    assert report.writeback is not None and not report.writeback.ok
    assert report.writeback.problems == [
        "карточки «KPI менеджера» ведутся по месяцам: период «IV квартал 2026» не записан, "
        "укажите месяц (ГГГГ-ММ)"]
    assert report.writeback.items_created == 0 and report.stored == 6
    # The cards are the client today: a quarter that runs now still writes them.
    assert gateway_provider.gateway.writes == [("crm.company.update", 2)]


def test_nightly_closes_last_month_in_the_first_days(ctx: AppContext, stub: StubCompute,
                                                     gateway_provider: FakeGatewayProvider,
                                                     portal_id: int) -> None:
    """On 2 December: November's items once more (no company cards), then December's."""
    assert isinstance(ctx.clock, FakeClock)
    ctx.clock.now = local(2026, 12, 2, 2, 0)
    kpi_jobs.nightly(ctx)
    assert stub.calls == ["2026-11", "2026-12"]
    methods = [m for m, _ in gateway_provider.gateway.writes]
    assert methods.count("crm.company.update") == 1 and methods.count("crm.item.add") == 4
    ctx.clock.now = local(2026, 12, 10, 2, 0)
    kpi_jobs.nightly(ctx)
    assert stub.calls[2:] == ["2026-12"]


def test_nightly_marks_a_revoked_portal_and_survives_errors(
        ctx: AppContext, stub: StubCompute, session_factory: sessionmaker[Session],
        secret_box: SecretBox, portal_id: int) -> None:
    other = register_portal(session_factory, secret_box, member_id="other", token="t2",
                            domain="other.bitrix24.ru")
    stub.error = AuthRevoked("invalid_token", "")
    kpi_jobs.nightly(ctx)
    with session_factory() as session:
        assert {p.id: p.status for p in session.scalars(select(Portal))} == {
            portal_id: "needs_reinstall", other: "needs_reinstall"}
    assert kpi_jobs.active_portal_ids(ctx) == []


def test_nightly_goes_on_after_a_failing_portal(ctx: AppContext, stub: StubCompute,
                                                session_factory: sessionmaker[Session],
                                                secret_box: SecretBox, portal_id: int) -> None:
    register_portal(session_factory, secret_box, member_id="other", token="t2",
                    domain="other.bitrix24.ru")
    stub.error = RuntimeError("boom")
    kpi_jobs.nightly(ctx)
    assert len(stub.calls) == 2  # one per portal, the first failure did not stop the job


def test_the_real_compute_over_a_tiny_mirror(ctx: AppContext, portal_id: int,
                                             gateway_provider: FakeGatewayProvider) -> None:
    """Smoke: kpi.compute over a sales department with one rep and a client, written back."""
    with ctx.sessions.begin() as session:
        session.add_all([
            MirrorDepartment(portal_id=portal_id, id=1, name="Отдел продаж", head_id=5),
            MirrorUser(portal_id=portal_id, id=5, name="Анна", last_name="Главная",
                       departments=[1]),
            MirrorUser(portal_id=portal_id, id=7, name="Иван", last_name="Петров",
                       departments=[1]),
            MirrorCompany(portal_id=portal_id, id=11, title="ООО Ромашка", assigned_by_id=7,
                          raw={"ID": "11", "TITLE": "ООО Ромашка"})])
    report = kpi_jobs.compute_and_write(ctx, portal_id, "2026-11", NOW)
    assert {r.rep_id for r in report.rows} == {7}
    assert [m.company_id for m in report.companies] == [11]
    assert report.writeback is not None and report.writeback.items_created == 1
    (item,) = next(iter(gateway_provider.gateway.items.values())).values()
    assert item["title"] == "KPI: Иван Петров — ноябрь 2026" and item["assignedById"] == "7"


# -- the weekly digest --------------------------------------------------------------------------
@pytest.fixture
def sales(ctx: AppContext, portal_id: int) -> None:
    """«Отдел продаж» headed by user 5, with a regional team headed by user 9."""
    with ctx.sessions.begin() as session:
        session.add_all([
            MirrorDepartment(portal_id=portal_id, id=1, name="Компания"),
            MirrorDepartment(portal_id=portal_id, id=3, name="Отдел продаж", parent_id=1,
                             head_id=5),
            MirrorDepartment(portal_id=portal_id, id=4, name="Продажи: Сибирь", parent_id=3,
                             head_id=9)])


def test_the_head_of_sales(ctx: AppContext, portal_id: int, sales: None) -> None:
    with ctx.sessions() as session:
        assert kpi_jobs.head_of_sales(session, portal_id) == 5
        assert kpi_jobs.head_of_sales(session, portal_id, configured=42) == 42
        assert kpi_jobs.head_of_sales(session, portal_id + 1) is None


@pytest.mark.parametrize(("now", "due"), [
    (local(2026, 11, 29, 23, 0), local(2026, 11, 30, 9, 0)),  # Sunday night → Monday 9:00
    (local(2026, 11, 30, 7, 30), local(2026, 11, 30, 9, 0)),  # Monday early → 9:00
    (local(2026, 11, 30, 9, 0), local(2026, 11, 30, 9, 0)),  # the cron time itself
    (local(2026, 11, 30, 11, 15), local(2026, 11, 30, 11, 15)),  # within working hours
])
@pytest.mark.usefixtures("sales")
def test_the_digest_goes_out_in_monday_working_hours(ctx: AppContext, stub: StubCompute,
                                                     portal_id: int, now: datetime,
                                                     due: datetime) -> None:
    assert kpi_jobs.weekly_digest(ctx, portal_id, now) is True
    (row,) = notifications(ctx.sessions)
    assert (row.user_id, row.kind, row.tag) == (5, "kpi_digest", "kpi-digest-2026-W49")
    assert row.not_before == due
    first = row.message.splitlines()[0]
    assert first == ("KPI отдела продаж за ноябрь 2026: 2 менеджера, выполнено 1 из 6 "
                     "показателей, висяков: 4")
    assert "Иван Петров — выполнено 0 из 3" in row.message
    assert "• Задача «Счёт»: просрочена" in row.message


def test_the_digest_is_queued_once_a_week(ctx: AppContext, stub: StubCompute, portal_id: int,
                                          sales: None) -> None:
    assert kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 11, 30, 9, 0))
    assert not kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 11, 30, 9, 0))
    assert not kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 12, 2, 15, 0))
    assert kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 12, 7, 9, 0))
    rows = notifications(ctx.sessions)
    assert [r.tag for r in rows] == ["kpi-digest-2026-W49", "kpi-digest-2026-W50"]
    # The week of 7 December reports December (the week that ended on the 6th).
    assert rows[1].message.startswith("KPI отдела продаж за декабрь 2026")


def test_the_digest_reads_stored_values(ctx: AppContext, stub: StubCompute, portal_id: int,
                                        sales: None) -> None:
    kpi_jobs.compute_and_write(ctx, portal_id, "2026-11", NOW, write=False)
    stub.error = AssertionError("the stored values were not used")
    assert kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 11, 30, 9, 0))
    assert stub.calls == ["2026-11"]


def test_the_digest_goes_to_the_configured_user(ctx: AppContext, stub: StubCompute,
                                                portal_id: int) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, sla=dataclasses.replace(
        ctx.settings.sla, head_of_sales_user_id=77))
    assert kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 11, 30, 9, 0))
    assert [r.user_id for r in notifications(ctx.sessions)] == [77]


def test_no_head_no_digest(ctx: AppContext, stub: StubCompute, portal_id: int,
                           caplog: pytest.LogCaptureFixture) -> None:
    assert not kpi_jobs.weekly_digest(ctx, portal_id, local(2026, 11, 30, 9, 0))
    assert notifications(ctx.sessions) == [] and "head_of_sales_user_id" in caplog.text


def test_the_weekly_job_covers_every_portal(ctx: AppContext, stub: StubCompute, portal_id: int,
                                            sales: None) -> None:
    assert isinstance(ctx.clock, FakeClock)
    ctx.clock.now = local(2026, 11, 30, 9, 0)
    kpi_jobs.weekly_digests(ctx)
    kpi_jobs.weekly_digests(ctx)
    assert len(notifications(ctx.sessions)) == 1


# -- the Excel report ---------------------------------------------------------------------------
def test_report_xlsx(ctx: AppContext, stub: StubCompute, portal_id: int,
                     gateway_provider: FakeGatewayProvider) -> None:
    with ctx.sessions.begin() as session:
        session.add(MirrorCompany(portal_id=portal_id, id=11, title="ООО Ромашка",
                                  assigned_by_id=8))
    data = kpi_jobs.report_xlsx(ctx, portal_id, "2026-11", NOW)
    book = load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["KPI", "Висяки", "Клиенты"]
    clients = book["Клиенты"]
    assert [c.value for c in clients[2]][:3] == [12, "Компания #12", None]
    assert [c.value for c in clients[3]][:3] == [11, "ООО Ромашка", "Ольга Сидорова"]
    assert book["Висяки"].max_row == 1 + 4
    assert gateway_provider.asked == []  # an export writes nothing


def test_settings_are_the_defaults() -> None:
    """The jobs read the calendar and SLA sections; defaults are what the tests assume."""
    settings = Settings()
    assert settings.calendar.timezone == "Asia/Novosibirsk"
    assert settings.sla.head_of_sales_user_id == 0
