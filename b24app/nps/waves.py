"""Survey waves: who is surveyed in the current wave, and the job that sends reps their links."""

from __future__ import annotations

import logging
from calendar import monthrange
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from b24app import outbox
from b24app.context import AppContext
from b24app.db import session_scope
from b24app.models import (
    MirrorCompany,
    MirrorContact,
    MirrorDeal,
    MirrorUser,
    NpsAnswer,
    Portal,
    PortalStatus,
    SurveyInvitation,
)
from b24app.nps import NpsSettings, nps_settings
from b24app.nps.ledger import wave_of, wave_start
from b24app.nps.survey import LinkSigner, claims_of, ensure_invitation

log = logging.getLogger(__name__)
KIND = "nps_wave"
WON = "S"


@dataclass(frozen=True)
class Target:
    """A contact of an active client to survey, and the rep who sends the link."""

    contact_id: int
    company_id: int | None  # None: the contact is the client itself (no company)
    rep_id: int


@dataclass(frozen=True)
class WaveReport:
    """What one run of the wave job did."""

    wave: str
    window_open: bool
    invited: int = 0
    notified_reps: tuple[int, ...] = ()


def window_open(now: datetime, settings: NpsSettings, tz: tzinfo) -> bool:
    """Whether invitations for the current wave may still go out (early in the wave)."""
    start = wave_start(wave_of(now, settings, tz), settings, tz)
    return now < start + timedelta(days=settings.invite_within_days)


def months_back(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier (clamped to that month's end)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month0 + 1, min(day.day, monthrange(year, month0 + 1)[1]))


def survey_targets(session: Session, portal_id: int, wave: str, *, now: datetime,
                   settings: NpsSettings, tz: tzinfo) -> list[Target]:
    """Contacts of active clients not yet invited nor answered in ``wave``, with their rep."""
    since = months_back(now.astimezone(tz).date(), settings.active_months)
    # An active client is one with a purchase in the last active_months, as the KPIs count
    # them (a won deal with an amount): a company, or a contact without a company. The rep
    # who sends the link is the company's owner, or the contact's for a contact client.
    purchase = (MirrorDeal.portal_id == portal_id, MirrorDeal.semantic == WON,
                MirrorDeal.close_date >= since, MirrorDeal.amount > 0,
                MirrorDeal.deleted_at.is_(None))
    active = select(MirrorDeal.company_id).where(*purchase, MirrorDeal.company_id > 0)
    bought_alone = exists().where(*purchase, MirrorDeal.contact_id == MirrorContact.id,
                                  or_(MirrorDeal.company_id.is_(None),
                                      MirrorDeal.company_id == 0))
    invited = exists().where(SurveyInvitation.portal_id == portal_id,
                             SurveyInvitation.contact_id == MirrorContact.id,
                             SurveyInvitation.wave == wave)
    answered = exists().where(NpsAnswer.portal_id == portal_id,
                              NpsAnswer.contact_id == MirrorContact.id, NpsAnswer.wave == wave)

    def dismissed(rep: Any) -> Any:
        # A dismissed rep cannot pass links on; a rep the mirror does not know yet still can.
        return exists().where(MirrorUser.portal_id == portal_id, MirrorUser.id == rep,
                              MirrorUser.active.is_(False))

    of_companies = session.execute(
        select(MirrorContact.id, MirrorCompany.id, MirrorCompany.assigned_by_id)
        .join(MirrorCompany, (MirrorCompany.portal_id == MirrorContact.portal_id)
              & (MirrorCompany.id == MirrorContact.company_id))
        .where(MirrorContact.portal_id == portal_id, MirrorContact.deleted_at.is_(None),
               MirrorCompany.deleted_at.is_(None), MirrorCompany.assigned_by_id > 0,
               MirrorCompany.id.in_(active), ~invited, ~answered,
               ~dismissed(MirrorCompany.assigned_by_id)))
    alone = session.execute(
        select(MirrorContact.id, MirrorContact.assigned_by_id)
        .where(MirrorContact.portal_id == portal_id, MirrorContact.deleted_at.is_(None),
               MirrorContact.assigned_by_id > 0, bought_alone, ~invited, ~answered,
               ~dismissed(MirrorContact.assigned_by_id)))
    targets = {contact_id: Target(contact_id, company_id, rep_id)
               for contact_id, company_id, rep_id in of_companies}
    for contact_id, rep_id in alone:
        targets.setdefault(contact_id, Target(contact_id, None, rep_id))
    return [targets[contact_id] for contact_id in sorted(targets)]


def run_wave(ctx: AppContext, portal_id: int, now: datetime, *,
             not_before: datetime | None = None) -> WaveReport:
    """Invite the current wave's contacts and queue one list of links per rep; idempotent.

    ``not_before`` is the next working instant (the caller knows the calendar): the reps'
    notifications wait in the outbox until then.
    """
    settings = nps_settings(ctx.settings)
    tz = ctx.settings.calendar.tzinfo
    wave = wave_of(now, settings, tz)
    if not window_open(now, settings, tz):
        return WaveReport(wave, window_open=False)
    signer = LinkSigner.from_settings(ctx.settings)
    with session_scope(ctx.sessions) as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status != PortalStatus.ACTIVE.value:
            return WaveReport(wave, window_open=True)
        targets = survey_targets(session, portal_id, wave, now=now, settings=settings, tz=tz)
        for target in targets:
            ensure_invitation(session, portal_id, target.contact_id, wave, target.rep_id,
                              now=now)
        notified = _notify_reps(session, portal_id, wave, signer=signer, settings=settings,
                                tz=tz, now=now, not_before=not_before or now)
    if targets or notified:
        log.info("nps wave %s portal %s: %s invitations, %s reps notified", wave, portal_id,
                 len(targets), len(notified))
    return WaveReport(wave, True, len(targets), notified)


@dataclass(frozen=True)
class _Line:
    invitation_id: int
    company: str
    contact: str
    url: str


def _unsent(session: Session, portal_id: int, wave: str, signer: LinkSigner
            ) -> dict[int, list[_Line]]:
    """Invitations of the wave not yet handed to their rep (and still unanswered), by rep."""
    answered = exists().where(NpsAnswer.portal_id == portal_id,
                              NpsAnswer.contact_id == SurveyInvitation.contact_id,
                              NpsAnswer.wave == wave)
    rows = session.execute(
        select(SurveyInvitation, MirrorContact.name, MirrorContact.last_name,
               MirrorCompany.title, MirrorCompany.id)
        .outerjoin(MirrorContact, (MirrorContact.portal_id == SurveyInvitation.portal_id)
                   & (MirrorContact.id == SurveyInvitation.contact_id))
        .outerjoin(MirrorCompany, (MirrorCompany.portal_id == SurveyInvitation.portal_id)
                   & (MirrorCompany.id == MirrorContact.company_id))
        .where(SurveyInvitation.portal_id == portal_id, SurveyInvitation.wave == wave,
               SurveyInvitation.sent_at.is_(None), SurveyInvitation.used_at.is_(None),
               SurveyInvitation.rep_id.is_not(None), ~answered)
        .order_by(SurveyInvitation.id)).all()
    by_rep: dict[int, list[_Line]] = defaultdict(list)
    for invitation, name, last_name, title, company_id in rows:
        person = " ".join(part for part in (name, last_name) if part) or (
            f"контакт {invitation.contact_id}")
        company = title or (f"компания {company_id}" if company_id else "без компании")
        assert invitation.rep_id is not None  # filtered in SQL
        by_rep[invitation.rep_id].append(
            _Line(invitation.id, company, person, signer.url(claims_of(invitation))))
    return by_rep


def _notify_reps(session: Session, portal_id: int, wave: str, *, signer: LinkSigner,
                 settings: NpsSettings, tz: tzinfo, now: datetime,
                 not_before: datetime) -> tuple[int, ...]:
    """One outbox notification per rep with the new links; marks those invitations sent."""
    valid_until = (now + timedelta(days=settings.link_ttl_days, seconds=-1)).astimezone(tz)
    notified = []
    for rep_id, lines in sorted(_unsent(session, portal_id, wave, signer).items()):
        text = rep_message(wave, lines_text(lines), len(lines), valid_until.date())
        if not _enqueue_list(session, portal_id, wave, rep_id, first_id=lines[0].invitation_id,
                             text=text, now=now, not_before=not_before):
            log.warning("nps wave %s: list for rep %s not queued (tags taken)", wave, rep_id)
            continue
        session.execute(update(SurveyInvitation).where(
            SurveyInvitation.id.in_([line.invitation_id for line in lines])).values(sent_at=now))
        notified.append(rep_id)
    return tuple(notified)


def _enqueue_list(session: Session, portal_id: int, wave: str, rep_id: int, *,
                  first_id: int, text: str, now: datetime, not_before: datetime) -> bool:
    """Queue a rep's list: the wave's first under the plain tag, later ones under their own."""
    # Clients who become active later in the window come in an extra list, tagged by its
    # first invitation: the plain tag is taken, and reusing it would drop the new links.
    for tag in (f"nps-wave-{wave}-{rep_id}", f"nps-wave-{wave}-{rep_id}-{first_id}"):
        if outbox.enqueue(session, portal_id=portal_id, user_id=rep_id, kind=KIND, tag=tag,
                          message=text, not_before=not_before, now=now):
            return True
    return False


def lines_text(lines: list[_Line]) -> list[str]:
    """One bullet per contact: company — person: link, sorted by company."""
    ordered = sorted(lines, key=lambda line: (line.company.lower(), line.contact.lower()))
    return [f"• {line.company} — {line.contact}: {line.url}" for line in ordered]


def rep_message(wave: str, bullets: list[str], count: int, valid_until: date) -> str:
    """The rep's notification; the first line is its one-line summary."""
    return "\n".join([
        f"Опрос NPS, волна {wave}: отправьте клиентам личные ссылки на опрос ({count}).",
        "Клиент ставит оценку от 0 до 10 и может оставить комментарий; каждая ссылка "
        f"действует до {valid_until:%d.%m.%Y} и принимает один ответ.",
        *bullets,
    ])
