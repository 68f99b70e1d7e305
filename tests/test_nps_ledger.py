"""The NPS ledger (one answer per contact and wave), the wave calendar, and the wave job."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import ConfigError, Settings
from b24app.context import AppContext
from b24app.crypto import SecretBox
from b24app.db import session_scope
from b24app.models import (
    MirrorCompany,
    MirrorContact,
    MirrorDeal,
    MirrorUser,
    Notification,
    NpsAnswer,
    SurveyInvitation,
)
from b24app.nps import NpsSettings, nps_settings
from b24app.nps.ledger import Answer, next_wave, record_answer, record_many, wave_of, wave_start
from b24app.nps.survey import LinkSigner
from b24app.nps.waves import months_back, run_wave, survey_targets, window_open
from tests.appfixtures import register_portal

NSK = ZoneInfo("Asia/Novosibirsk")
NPS = NpsSettings()
ANSWERED = datetime(2026, 10, 15, 5, 0, tzinfo=UTC)


# -- seeding helpers (shared by the other NPS test modules) -------------------------------------
def seed_portal(sessions: sessionmaker[Session], secrets: SecretBox,
                member_id: str = "a223c6b3710f85df22e9377d6c4f7553") -> int:
    """An installed portal; returns its id."""
    return register_portal(sessions, secrets, member_id=member_id)


def seed_client(session: Session, portal_id: int, company_id: int, rep_id: int,
                contacts: Sequence[int], *, won: date | None = date(2026, 9, 10),
                title: str = "", deleted_contacts: Sequence[int] = ()) -> None:
    """A company of ``rep_id`` with contacts and, when ``won`` is set, one purchase then."""
    session.add(MirrorCompany(portal_id=portal_id, id=company_id, assigned_by_id=rep_id,
                              title=title or f"ООО «Мебель-{company_id}»", raw={}))
    for contact_id in contacts:
        session.add(MirrorContact(
            portal_id=portal_id, id=contact_id, company_id=company_id, name="Иван",
            last_name=f"Петров-{contact_id}", raw={},
            deleted_at=ANSWERED if contact_id in deleted_contacts else None))
    if won is not None:
        session.add(MirrorDeal(portal_id=portal_id, id=company_id * 100, company_id=company_id,
                               semantic="S", stage_id="WON", close_date=won, closed=True,
                               amount=Decimal("150000.00"), assigned_by_id=rep_id, raw={}))
    session.flush()


def answers(sessions: sessionmaker[Session], portal_id: int) -> list[NpsAnswer]:
    """Every ledger row of a portal, by contact and wave."""
    with sessions() as session:
        return list(session.scalars(select(NpsAnswer).where(NpsAnswer.portal_id == portal_id)
                                    .order_by(NpsAnswer.contact_id, NpsAnswer.wave)))


# -- the ledger ---------------------------------------------------------------------------------
def test_first_answer_of_a_wave_wins(session_factory: sessionmaker[Session],
                                     secret_box: SecretBox) -> None:
    """A repeat for the same contact and wave returns False and changes nothing."""
    portal_id = seed_portal(session_factory, secret_box)
    with session_scope(session_factory) as session:
        assert record_answer(session, portal_id, 11, 1, 9, "2026-H2", ANSWERED, "survey", "ок")
        assert not record_answer(session, portal_id, 11, 1, 3, "2026-H2", ANSWERED, "import")
        assert record_answer(session, portal_id, 11, 1, 6, "2026-H1", ANSWERED, "crm_field")
        assert record_answer(session, portal_id, 12, 1, 10, "2026-H2", ANSWERED, "import")
    rows = answers(session_factory, portal_id)
    assert [(r.contact_id, r.wave, r.score, r.source) for r in rows] == [
        (11, "2026-H1", 6, "crm_field"), (11, "2026-H2", 9, "survey"),
        (12, "2026-H2", 10, "import")]
    assert rows[1].comment == "ок"
    assert rows[1].answered_at == ANSWERED


def test_record_many_reports_what_it_inserted(session_factory: sessionmaker[Session],
                                              secret_box: SecretBox) -> None:
    """Bulk insert: keys already present and repeats within the batch are skipped."""
    portal_id = seed_portal(session_factory, secret_box)
    with session_scope(session_factory) as session:
        record_answer(session, portal_id, 11, None, 9, "2026-H2", ANSWERED, "survey")
        inserted = record_many(session, portal_id, [
            Answer(11, None, 1, "2026-H2", ANSWERED, "import"),
            Answer(12, None, 7, "2026-H2", ANSWERED, "import"),
            Answer(12, None, 2, "2026-H2", ANSWERED, "import"),
        ])
        assert record_many(session, portal_id, []) == set()
    assert inserted == {(12, "2026-H2")}
    assert [(r.contact_id, r.score) for r in answers(session_factory, portal_id)] == [
        (11, 9), (12, 7)]


def test_ledger_is_per_portal(session_factory: sessionmaker[Session],
                              secret_box: SecretBox) -> None:
    """The same contact ID on two portals is two contacts."""
    first = seed_portal(session_factory, secret_box)
    second = seed_portal(session_factory, secret_box, member_id="b" * 32)
    with session_scope(session_factory) as session:
        assert record_answer(session, first, 11, None, 9, "2026-H2", ANSWERED, "survey")
        assert record_answer(session, second, 11, None, 9, "2026-H2", ANSWERED, "survey")


def test_bad_answers_are_refused_before_the_insert(session_factory: sessionmaker[Session],
                                                  secret_box: SecretBox) -> None:
    """Scores outside 0..10, unknown sources, odd wave labels and naive timestamps."""
    portal_id = seed_portal(session_factory, secret_box)
    good: dict[str, Any] = {"score": 9, "wave": "2026-H2", "answered_at": ANSWERED,
                            "source": "survey"}
    naive = datetime(2026, 10, 15)  # naive on purpose
    cases: list[tuple[str, Any, str]] = [
        *[("score", score, r"0\.\.10") for score in (-1, 11, True, 9.5, "9", None)],
        ("source", "email", "source"), ("wave", "2026-Q4", "wave"),
        ("answered_at", naive, "aware")]
    with session_scope(session_factory) as session:
        for field, value, message in cases:
            values = {**good, field: value}
            with pytest.raises(ValueError, match=message):
                record_answer(session, portal_id, 11, None, values["score"], values["wave"],
                              values["answered_at"], values["source"])
    assert answers(session_factory, portal_id) == []


# -- waves (pure) -------------------------------------------------------------------------------
@pytest.mark.parametrize(("instant", "wave"), [
    # Novosibirsk is UTC+7: the wave turns at local midnight, 17:00 UTC the day before.
    (datetime(2026, 3, 31, 16, 59, tzinfo=UTC), "2025-H2"),
    (datetime(2026, 3, 31, 17, 0, tzinfo=UTC), "2026-H1"),
    (datetime(2026, 9, 30, 16, 59, tzinfo=UTC), "2026-H1"),
    (datetime(2026, 9, 30, 17, 0, tzinfo=UTC), "2026-H2"),
    (datetime(2026, 12, 31, 18, 0, tzinfo=UTC), "2026-H2"),  # already 2027-01-01 locally
    (datetime(2027, 2, 1, 0, 0, tzinfo=UTC), "2026-H2"),
])
def test_wave_of_uses_the_portal_date(instant: datetime, wave: str) -> None:
    """A wave runs from its start date to the next wave's start, in local time."""
    assert wave_of(instant, NPS, NSK) == wave


def test_wave_start_and_next() -> None:
    """Starts are local midnights of the configured dates."""
    assert wave_start("2026-H2", NPS, NSK) == datetime(2026, 10, 1, tzinfo=NSK)
    assert wave_start("2027-H1", NPS, NSK) == datetime(2027, 4, 1, tzinfo=NSK)
    assert next_wave("2026-H1") == "2026-H2"
    assert next_wave("2026-H2") == "2027-H1"
    with pytest.raises(ValueError, match="malformed"):
        wave_start("2026-12", NPS, NSK)
    with pytest.raises(ValueError, match="aware"):
        wave_of(datetime(2026, 1, 1), NPS, NSK)  # naive on purpose


def test_custom_wave_dates() -> None:
    """Waves on other dates: March and September."""
    settings = NpsSettings(waves=("03-01", "09-01"))
    assert wave_of(datetime(2026, 8, 31, 12, tzinfo=UTC), settings, NSK) == "2026-H1"
    assert wave_of(datetime(2026, 2, 27, 12, tzinfo=UTC), settings, NSK) == "2025-H2"


@pytest.mark.parametrize("waves", [("04-01",), ("10-01", "04-01"), ("04-01", "02-29"),
                                   ("4-1", "10-01"), ("04-01", "04-01", "10-01")])
def test_bad_wave_settings_are_refused(waves: tuple[str, ...]) -> None:
    """Two distinct MM-DD dates in calendar order, existing every year."""
    with pytest.raises(ConfigError, match="waves"):
        NpsSettings(waves=waves)


def test_nps_settings_come_from_the_config_section_when_there_is_one() -> None:
    """Defaults without a [nps] section; its values when the configuration has one."""
    assert nps_settings(Settings()) == NpsSettings()
    configured: Any = SimpleNamespace(nps=SimpleNamespace(waves=("03-01", "09-01"),
                                                          link_ttl_days=30))
    assert nps_settings(configured) == NpsSettings(waves=("03-01", "09-01"), link_ttl_days=30)
    with pytest.raises(ConfigError, match="link_ttl_days"):
        NpsSettings(link_ttl_days=0)


def test_months_back_clamps_to_the_month_end() -> None:
    """12 months before 29 Feb is 28 Feb; 3 months before 31 May is 28 Feb."""
    assert months_back(date(2028, 2, 29), 12) == date(2027, 2, 28)
    assert months_back(date(2026, 5, 31), 3) == date(2026, 2, 28)
    assert months_back(date(2026, 1, 15), 1) == date(2025, 12, 15)


def test_invitation_window() -> None:
    """Invitations go out only in the first invite_within_days of a wave."""
    assert window_open(datetime(2026, 10, 1, 2, tzinfo=UTC), NPS, NSK)
    assert window_open(datetime(2026, 11, 29, 16, tzinfo=UTC), NPS, NSK)
    assert not window_open(datetime(2026, 11, 30, 17, tzinfo=UTC), NPS, NSK)
    assert not window_open(datetime(2027, 3, 20, 5, tzinfo=UTC), NPS, NSK)


# -- the wave job -------------------------------------------------------------------------------
NOW = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # Monday 09:00 in Novosibirsk
LATER = datetime(2026, 11, 16, 3, 0, tzinfo=UTC)


def _world(ctx: AppContext) -> int:
    """Two reps' clients: who is to be surveyed in 2026-H2 and who is not."""
    portal_id = seed_portal(ctx.sessions, ctx.secrets)
    with session_scope(ctx.sessions) as session:
        session.add_all([MirrorUser(portal_id=portal_id, id=7, name="Ольга", active=True),
                         MirrorUser(portal_id=portal_id, id=9, name="Пётр", active=False)])
        seed_client(session, portal_id, 1, 7, [11, 12, 13], title="ООО «Альфа»",
                    deleted_contacts=[13])
        seed_client(session, portal_id, 2, 7, [21], title="ИП Борисов")
        seed_client(session, portal_id, 3, 8, [31])
        seed_client(session, portal_id, 4, 8, [41], won=date(2025, 10, 1))  # lapsed client
        seed_client(session, portal_id, 5, 8, [51], won=None)  # a prospect
        seed_client(session, portal_id, 6, 9, [61])  # the rep was dismissed
        session.add(MirrorContact(portal_id=portal_id, id=71, company_id=None, raw={}))
        # Contact 12 answered this wave already (CRM field): no link for them.
        record_answer(session, portal_id, 12, 1, 8, "2026-H2", ANSWERED, "crm_field")
    return portal_id


def _notifications(ctx: AppContext) -> list[Notification]:
    with ctx.sessions() as session:
        return list(session.scalars(select(Notification).order_by(Notification.id)))


def _invitations(ctx: AppContext) -> list[SurveyInvitation]:
    with ctx.sessions() as session:
        return list(session.scalars(select(SurveyInvitation).order_by(SurveyInvitation.id)))


def test_targets_are_active_clients_contacts_with_their_rep(app_ctx: AppContext) -> None:
    """Won deal in the last 12 months, contact not deleted nor answered, rep not dismissed."""
    portal_id = _world(app_ctx)
    with app_ctx.sessions() as session:
        targets = survey_targets(session, portal_id, "2026-H2", now=NOW, settings=NPS, tz=NSK)
    assert [(t.contact_id, t.company_id, t.rep_id) for t in targets] == [
        (11, 1, 7), (21, 2, 7), (31, 3, 8)]


def test_targets_are_the_clients_the_coverage_counts(app_ctx: AppContext) -> None:
    """Regression: a contact who buys without a company is an active client of the NPS
    coverage but got no link, and a zero «won» placeholder made a company a target."""
    portal_id = _world(app_ctx)
    with session_scope(app_ctx.sessions) as session:
        session.add_all([
            MirrorContact(portal_id=portal_id, id=81, company_id=None, assigned_by_id=8,
                          name="Анна", last_name="Частная", raw={}),
            MirrorDeal(portal_id=portal_id, id=8100, company_id=0, contact_id=81,
                       semantic="S", stage_id="WON", close_date=date(2026, 10, 2), closed=True,
                       amount=Decimal("42000.00"), assigned_by_id=8, raw={}),
            # A contact of its own, but its purchase was lost (refunded): no client.
            MirrorContact(portal_id=portal_id, id=82, company_id=None, assigned_by_id=8,
                          raw={}),
            MirrorDeal(portal_id=portal_id, id=8200, company_id=None, contact_id=82,
                       semantic="F", stage_id="LOSE", close_date=date(2026, 10, 2),
                       amount=Decimal("9000.00"), assigned_by_id=8, raw={})])
        seed_client(session, portal_id, 9, 7, [91], won=None)
        session.add(MirrorDeal(portal_id=portal_id, id=900, company_id=9, semantic="S",
                               stage_id="WON", close_date=date(2026, 10, 2), closed=True,
                               amount=Decimal(0), assigned_by_id=7, raw={}))
    with app_ctx.sessions() as session:
        targets = survey_targets(session, portal_id, "2026-H2", now=NOW, settings=NPS, tz=NSK)
    assert [(t.contact_id, t.company_id, t.rep_id) for t in targets] == [
        (11, 1, 7), (21, 2, 7), (31, 3, 8), (81, None, 8)]
    report = run_wave(app_ctx, portal_id, NOW)
    assert report.invited == 4
    message = next(n.message for n in _notifications(app_ctx) if n.user_id == 8)
    assert "без компании — Анна Частная: http" in message


def test_wave_job_invites_and_notifies_each_rep_once(app_ctx: AppContext) -> None:
    """One list of links per rep, queued for the working hour the caller names."""
    portal_id = _world(app_ctx)
    not_before = NOW + timedelta(hours=1)
    report = run_wave(app_ctx, portal_id, NOW, not_before=not_before)
    assert (report.wave, report.window_open, report.invited, report.notified_reps) == (
        "2026-H2", True, 3, (7, 8))
    rows = _notifications(app_ctx)
    assert [(n.user_id, n.tag, n.kind) for n in rows] == [
        (7, "nps-wave-2026-H2-7", "nps_wave"), (8, "nps-wave-2026-H2-8", "nps_wave")]
    assert all(n.not_before == not_before and n.sent_at is None for n in rows)
    message = rows[0].message
    assert message.splitlines()[0].startswith("Опрос NPS, волна 2026-H2")
    assert "ООО «Альфа» — Иван Петров-11: http://127.0.0.1:8000/survey/" in message
    assert "ИП Борисов — Иван Петров-21" in message
    assert "Петров-12" not in message and "Петров-31" not in message
    assert "действует до 15.01.2027" in message
    invitations = _invitations(app_ctx)
    assert [(i.contact_id, i.rep_id, i.wave) for i in invitations] == [
        (11, 7, "2026-H2"), (21, 7, "2026-H2"), (31, 8, "2026-H2")]
    assert all(i.sent_at == NOW for i in invitations)
    # Every listed link is genuine and names its invitation.
    signer = LinkSigner.from_settings(app_ctx.settings)
    urls = [line.rsplit(": ", 1)[1] for line in message.splitlines() if line.startswith("•")]
    claims = [signer.verify(url.rsplit("/", 1)[1]) for url in urls]
    assert sorted(c.contact_id for c in claims if c is not None) == [11, 21]


def test_wave_job_is_idempotent(app_ctx: AppContext) -> None:
    """A second and third run create no invitation and queue no notification."""
    portal_id = _world(app_ctx)
    run_wave(app_ctx, portal_id, NOW)
    before = ([n.id for n in _notifications(app_ctx)], [i.nonce for i in _invitations(app_ctx)])
    for _ in range(2):
        report = run_wave(app_ctx, portal_id, LATER)
        assert (report.invited, report.notified_reps) == (0, ())
    assert ([n.id for n in _notifications(app_ctx)],
            [i.nonce for i in _invitations(app_ctx)]) == before


def test_a_client_active_later_in_the_window_gets_its_own_list(app_ctx: AppContext) -> None:
    """New links are not lost under the wave's tag: a second list with a tag of its own."""
    portal_id = _world(app_ctx)
    run_wave(app_ctx, portal_id, NOW)
    with session_scope(app_ctx.sessions) as session:
        seed_client(session, portal_id, 50, 7, [501], title="ООО «Новый»")
    report = run_wave(app_ctx, portal_id, LATER)
    assert (report.invited, report.notified_reps) == (1, (7,))
    latest = _notifications(app_ctx)[-1]
    assert latest.tag.startswith("nps-wave-2026-H2-7-")
    assert "ООО «Новый»" in latest.message and "Альфа" not in latest.message
    assert run_wave(app_ctx, portal_id, LATER).invited == 0


def test_wave_job_outside_the_window_does_nothing(app_ctx: AppContext) -> None:
    """Late in a wave no invitation is created (the next wave is near)."""
    portal_id = _world(app_ctx)
    report = run_wave(app_ctx, portal_id, datetime(2027, 3, 1, 3, tzinfo=UTC))
    assert (report.wave, report.window_open, report.invited) == ("2026-H2", False, 0)
    assert _notifications(app_ctx) == [] and _invitations(app_ctx) == []


def test_next_wave_surveys_again(app_ctx: AppContext) -> None:
    """The April wave invites the same contacts anew, under the new wave's tags."""
    portal_id = _world(app_ctx)
    run_wave(app_ctx, portal_id, NOW)
    with session_scope(app_ctx.sessions) as session:
        for company_id in (1, 2, 3):
            session.add(MirrorDeal(portal_id=portal_id, id=company_id * 100 + 1,
                                   company_id=company_id, semantic="S",
                                   close_date=date(2027, 3, 1), raw={}))
    report = run_wave(app_ctx, portal_id, datetime(2027, 4, 2, 3, tzinfo=UTC))
    assert (report.wave, report.invited) == ("2027-H1", 4)  # contact 12 too, this time
    tags = {n.tag for n in _notifications(app_ctx)}
    assert {"nps-wave-2027-H1-7", "nps-wave-2027-H1-8"} <= tags


def test_wave_job_skips_an_uninstalled_portal(app_ctx: AppContext) -> None:
    """No links for a portal the app was removed from."""
    from b24app import portals
    from b24app.models import Portal

    portal_id = _world(app_ctx)
    with session_scope(app_ctx.sessions) as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        portals.uninstall(session, portal, clean=False)
    assert run_wave(app_ctx, portal_id, NOW).invited == 0
    with app_ctx.sessions() as session:
        assert session.scalar(select(func.count()).select_from(SurveyInvitation)) == 0


def test_wave_job_needs_a_secret_key(app_ctx: AppContext) -> None:
    """Without app.secret_key no link is signed (an empty key would make links forgeable)."""
    from b24app.config import Secret

    portal_id = _world(app_ctx)
    app_ctx.settings = dataclasses.replace(
        app_ctx.settings, app=dataclasses.replace(app_ctx.settings.app, secret_key=Secret()))
    with pytest.raises(ValueError, match="secret_key"):
        run_wave(app_ctx, portal_id, NOW)
    assert _invitations(app_ctx) == []
