"""Survey links: a signed, single-use token per contact and wave, and its verification.

The token is ``[portal, contact, wave, nonce]`` signed with HMAC-SHA256 under
``app.secret_key`` and a salt of its own (so no other signed value of the service can pass
for a survey link). The nonce is random and stored with the invitation: a link is valid only
while its invitation row exists, is unused and younger than ``link_ttl_days``, and the ledger
keeps one answer per contact and wave. The token itself never reaches a log.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from b24app.config import Secret, Settings
from b24app.db import insert_ignoring_conflict
from b24app.models import MirrorContact, NpsAnswer, Portal, PortalStatus, SurveyInvitation
from b24app.nps.ledger import record_answer, valid_score

log = logging.getLogger(__name__)

SALT = "b24app.nps.survey-link.v1"
SURVEY_PATH = "/survey/"
# A real token is ~110 characters; anything much longer is refused before it is parsed.
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class Claims:
    """What a correctly signed token says."""

    portal_id: int
    contact_id: int
    wave: str
    nonce: str


class LinkSigner:
    """Signs and verifies survey tokens and builds their public URLs."""

    def __init__(self, secret_key: Secret, public_url: str) -> None:
        if not secret_key:
            # An empty key would make every link forgeable.
            raise ValueError("app.secret_key is empty: survey links cannot be signed")
        self._serializer = URLSafeSerializer(
            secret_key.reveal(), salt=SALT, signer_kwargs={"digest_method": hashlib.sha256})
        self._base = public_url.rstrip("/") + SURVEY_PATH

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        """The signer of the configured service."""
        return cls(settings.app.secret_key, settings.app.public_url)

    def token(self, claims: Claims) -> str:
        """The signed token of ``claims``."""
        return str(self._serializer.dumps(
            [claims.portal_id, claims.contact_id, claims.wave, claims.nonce]))

    def url(self, claims: Claims) -> str:
        """The public survey URL of ``claims``."""
        return self._base + self.token(claims)

    def verify(self, token: str) -> Claims | None:
        """The claims of a genuine token; ``None`` for anything forged, tampered or malformed."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            payload: Any = self._serializer.loads(token)
        except BadData:
            return None
        return _claims(payload)


def _claims(payload: Any) -> Claims | None:
    # Signed by us, so well-formed in practice; checked anyway in case the key ever leaks
    # into another signer's hands with another payload shape.
    if not (isinstance(payload, list) and len(payload) == 4):
        return None
    portal_id, contact_id, wave, nonce = payload
    if not (type(portal_id) is int and type(contact_id) is int
            and isinstance(wave, str) and isinstance(nonce, str)):
        return None
    return Claims(portal_id, contact_id, wave, nonce)


def invite(session: Session, portal_id: int, contact_id: int, wave: str, rep_id: int | None,
           *, signer: LinkSigner, now: datetime) -> str:
    """The survey URL of a contact for a wave; creates the invitation once, then reuses it."""
    invitation = ensure_invitation(session, portal_id, contact_id, wave, rep_id, now=now)
    return signer.url(claims_of(invitation))


def ensure_invitation(session: Session, portal_id: int, contact_id: int, wave: str,
                      rep_id: int | None, *, now: datetime) -> SurveyInvitation:
    """The invitation of a contact and wave, inserted with a fresh nonce if there is none."""
    statement = insert_ignoring_conflict(session, SurveyInvitation, {
        "portal_id": portal_id, "contact_id": contact_id, "wave": wave,
        "nonce": secrets.token_urlsafe(24), "rep_id": rep_id, "created_at": now,
    }, ["portal_id", "contact_id", "wave"])
    session.execute(statement)
    return session.execute(select(SurveyInvitation).where(
        SurveyInvitation.portal_id == portal_id, SurveyInvitation.contact_id == contact_id,
        SurveyInvitation.wave == wave)).scalar_one()


def claims_of(invitation: SurveyInvitation) -> Claims:
    """The claims a link to ``invitation`` carries."""
    return Claims(invitation.portal_id, invitation.contact_id, invitation.wave,
                  invitation.nonce)


class LinkState(enum.StrEnum):
    """What a genuine link may still be used for."""

    OPEN = "open"  # the form may be shown and answered
    ANSWERED = "answered"  # used, or the contact already answered in this wave another way
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # no such invitation (or the portal is gone)


@dataclass(frozen=True)
class LinkCheck:
    """The state of a link and, when it exists, its invitation."""

    state: LinkState
    invitation: SurveyInvitation | None = None


def check_link(session: Session, claims: Claims, *, now: datetime, ttl_days: int) -> LinkCheck:
    """Match verified claims with their invitation: open, answered, expired or unknown."""
    invitation = session.execute(select(SurveyInvitation).where(
        SurveyInvitation.nonce == claims.nonce)).scalar_one_or_none()
    if invitation is None or claims_of(invitation) != claims:
        return LinkCheck(LinkState.UNKNOWN)
    portal = session.get(Portal, claims.portal_id)
    if portal is None or portal.status == PortalStatus.UNINSTALLED.value:
        return LinkCheck(LinkState.UNKNOWN)
    if invitation.used_at is not None or _answered(session, claims):
        return LinkCheck(LinkState.ANSWERED, invitation)
    if now >= invitation.created_at + timedelta(days=ttl_days):
        return LinkCheck(LinkState.EXPIRED, invitation)
    return LinkCheck(LinkState.OPEN, invitation)


def _answered(session: Session, claims: Claims) -> bool:
    return session.execute(select(NpsAnswer.id).where(
        NpsAnswer.portal_id == claims.portal_id, NpsAnswer.contact_id == claims.contact_id,
        NpsAnswer.wave == claims.wave)).first() is not None


def submit(session: Session, invitation: SurveyInvitation, score: int, comment: str, *,
           now: datetime) -> bool:
    """Record the answer of an open link and use it up; ``False`` if someone was first."""
    if not valid_score(score):
        raise ValueError(f"NPS score must be an integer 0..10, got {score!r}")
    # The ledger's unique key decides a race between two submits, not the check before it.
    company_id = session.execute(select(MirrorContact.company_id).where(
        MirrorContact.portal_id == invitation.portal_id,
        MirrorContact.id == invitation.contact_id)).scalar_one_or_none()
    recorded = record_answer(session, invitation.portal_id, invitation.contact_id, company_id,
                             score, invitation.wave, now, "survey", comment)
    if recorded:
        session.execute(update(SurveyInvitation).where(
            SurveyInvitation.id == invitation.id, SurveyInvitation.used_at.is_(None),
        ).values(used_at=now))
        log.info("nps survey answer recorded: invitation=%s wave=%s", invitation.id,
                 invitation.wave)
    return recorded
