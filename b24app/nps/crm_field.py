"""Answers kept in contact fields of the CRM (score and date), read from the local mirror."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.context import AppContext
from b24app.db import session_scope
from b24app.models import MirrorContact
from b24app.nps import NpsSettings, nps_settings
from b24app.nps.ledger import Answer, record_many, score_from_text, valid_score, wave_of

log = logging.getLogger(__name__)
PAGE = 500
LOCAL_FORMATS = ("%d.%m.%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M")


def ingest_crm_field(session: Session, portal_id: int, settings: NpsSettings, *,
                     tz: tzinfo) -> int:
    """Record the answers the contacts' score/date fields hold; returns how many were new."""
    inserted = 0
    skipped = 0
    after_id = 0
    while True:
        # Keyset pages: bounded memory on any mirror size, and the same SQL on both backends.
        rows = session.execute(
            select(MirrorContact.id, MirrorContact.company_id, MirrorContact.raw)
            .where(MirrorContact.portal_id == portal_id, MirrorContact.id > after_id,
                   MirrorContact.deleted_at.is_(None))
            .order_by(MirrorContact.id).limit(PAGE)).all()
        if not rows:
            break
        after_id = rows[-1].id
        answers = []
        for contact_id, company_id, raw in rows:
            answer = _answer(contact_id, company_id, raw or {}, settings, tz)
            if answer is None:
                skipped += _has_score(raw or {}, settings)
            else:
                answers.append(answer)
        inserted += len(record_many(session, portal_id, answers))
    if skipped:
        log.info("nps crm field: %s contacts with an unusable score or date skipped", skipped)
    return inserted


def run_crm_field(ctx: AppContext, portal_id: int) -> int:
    """The scheduled job: ingest the configured fields of one portal in one transaction."""
    with session_scope(ctx.sessions) as session:
        return ingest_crm_field(session, portal_id, nps_settings(ctx.settings),
                                tz=ctx.settings.calendar.tzinfo)


def _has_score(raw: dict[str, Any], settings: NpsSettings) -> int:
    return int(raw.get(settings.score_field) not in (None, ""))


def _answer(contact_id: int, company_id: int | None, raw: dict[str, Any],
            settings: NpsSettings, tz: tzinfo) -> Answer | None:
    score = parse_score(raw.get(settings.score_field))
    answered_at = parse_field_date(raw.get(settings.date_field), tz)
    if score is None or answered_at is None:
        return None
    return Answer(contact_id, company_id, score, wave_of(answered_at, settings, tz),
                  answered_at, "crm_field")


def parse_score(value: Any) -> int | None:
    """A score from a field value (``9``, ``"9"``, ``9.0``); ``None`` if it is not 0–10."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        return score_from_text(value)
    return value if valid_score(value) else None


def parse_field_date(value: Any, tz: tzinfo) -> datetime | None:
    """A date or datetime field as Bitrix24 sends it (ISO, with or without offset) → aware."""
    parsed: datetime | None
    if value is None or isinstance(value, bool):
        parsed = None
    elif isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    else:
        parsed = _parse_text(str(value).strip())
    if parsed is None or parsed.tzinfo is not None:
        return parsed
    # A bare date is the portal's local day, as Bitrix24 shows it.
    return parsed.replace(tzinfo=tz)


def _parse_text(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    # The portal's display formats, which exports and hand-typed cells also use.
    for fmt in LOCAL_FORMATS:
        try:
            return datetime.strptime(text, fmt)  # naive: the caller applies the zone
        except ValueError:
            continue
    return None
