"""The registry of installations: find, verify, register and uninstall portals."""

from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from b24app.db import insert_ignoring_conflict
from b24app.models import Base, Cipher, Portal, PortalMode, PortalStatus, utcnow

# Compared against when a portal has no stored token, so that a miss costs the same time.
_NO_TOKEN = b"\x00" * 32


def find_by_member(session: Session, member_id: str) -> Portal | None:
    """The portal row of ``member_id`` (any status), if there is one."""
    return session.scalars(select(Portal).where(Portal.member_id == member_id)).one_or_none()


def verify_application_token(portal: Portal | None, token: str, secrets: Cipher) -> bool:
    """Whether ``token`` is the portal's stored ``application_token`` (constant time)."""
    stored = None if portal is None else portal.get_secret(secrets, "application_token")
    # Bytes, not str: compare_digest refuses non-ASCII str, and the token comes from strangers.
    given = token.encode("utf-8", "surrogatepass")
    if not stored:
        hmac.compare_digest(given, _NO_TOKEN)
        return False
    return hmac.compare_digest(given, stored.encode("utf-8"))


def _upsert(session: Session, member_id: str, domain: str) -> tuple[Portal, bool]:
    """The row of ``member_id``, created if missing; ``True`` when created now."""
    portal = find_by_member(session, member_id)
    if portal is not None:
        return portal, False
    # ON CONFLICT, not a savepoint: two first deliveries for one member_id may race, and
    # pysqlite's transaction handling turns RELEASE SAVEPOINT into an early commit.
    statement = insert_ignoring_conflict(session, Portal, {"member_id": member_id,
                                                           "domain": domain}, ["member_id"])
    created = session.execute(statement.returning(Portal.id)).scalar_one_or_none() is not None
    portal = find_by_member(session, member_id)
    assert portal is not None  # inserted now or by the winner of the race
    return portal, created


def register_install(session: Session, secrets: Cipher, *, member_id: str, domain: str,
                     client_endpoint: str, access: str, refresh: str, expires_at: datetime,
                     application_token: str, scope: str, version: str,
                     now: datetime | None = None) -> Portal:
    """Create or refresh the portal of a verified install; tokens are stored encrypted.

    ``now`` is the service's clock: rules judge nothing that happened before the install.
    """
    portal, created = _upsert(session, member_id, domain)
    if not created:
        # Lock the row and read the current version, as TokenStore.save_grant does: a refresh
        # that read the old version must then fail its compare-and-swap, not clobber us.
        session.refresh(portal, attribute_names=["token_version"], with_for_update=True)
    now = now or utcnow()
    if created or portal.status == PortalStatus.UNINSTALLED.value:
        portal.installed_at = now
    portal.domain = domain
    portal.client_endpoint = client_endpoint
    portal.mode = PortalMode.LOCAL_APP.value
    portal.status = PortalStatus.ACTIVE.value
    portal.set_secret(secrets, "access_token", access)
    portal.set_secret(secrets, "refresh_token", refresh)
    portal.set_secret(secrets, "application_token", application_token)
    portal.expires_at = expires_at
    portal.scope = scope
    portal.app_version = version
    portal.token_version = (portal.token_version or 0) + 1
    portal.updated_at = now
    session.flush()
    return portal


def register_webhook_portal(session: Session, secrets: Cipher, *, member_id: str, domain: str,
                            client_endpoint: str, application_token: str,
                            now: datetime | None = None) -> Portal:
    """Pin the portal of an outgoing webhook on its first verified event (trust on first use)."""
    portal, created = _upsert(session, member_id, domain)
    if created:
        portal.installed_at = now or utcnow()
    portal.mode = PortalMode.WEBHOOK.value
    portal.status = PortalStatus.ACTIVE.value
    portal.client_endpoint = client_endpoint
    portal.set_secret(secrets, "application_token", application_token)
    session.flush()
    return portal


def active_webhook_portals(session: Session) -> list[Portal]:
    """Webhook-mode portals that are not uninstalled."""
    return list(session.scalars(select(Portal).where(
        Portal.mode == PortalMode.WEBHOOK.value,
        Portal.status != PortalStatus.UNINSTALLED.value)))


def uninstall(session: Session, portal: Portal, clean: bool, now: datetime | None = None) -> None:
    """Mark the portal uninstalled and drop its tokens; with ``clean`` purge its data rows."""
    portal.status = PortalStatus.UNINSTALLED.value
    portal.access_token_enc = None
    portal.refresh_token_enc = None
    # Without a stored application_token a replayed ONAPPUNINSTALL or event is refused too.
    portal.application_token_enc = None
    portal.expires_at = None
    portal.token_version = (portal.token_version or 0) + 1
    portal.updated_at = now or utcnow()
    session.flush()
    if clean:
        purge_portal_data(session, portal.id)


def purge_portal_data(session: Session, portal_id: int) -> None:
    """Delete every row keyed by ``portal_id`` except the portal row itself (a tombstone)."""
    # Every table with a portal_id column, children before parents; tables added later
    # (KPI snapshots, NPS answers...) are purged too as long as they carry portal_id.
    for table in reversed(Base.metadata.sorted_tables):
        if table.name != Portal.__tablename__ and "portal_id" in table.c:
            session.execute(delete(table).where(table.c.portal_id == portal_id))
    session.flush()
