"""The OAuth token store: each portal's token pair in the database, refreshed once per expiry.

Bitrix24 refresh tokens are single-use: a refresh returns a new pair and kills the old one, so
two workers refreshing the same pair means one of them fails with ``invalid_grant`` (and, had
it saved nothing, a re-install). The store therefore serialises refreshes of a portal:

1. a per-portal ``threading.Lock`` (process-wide registry) queues the threads of one process,
   so only one of them goes to the database at a time;
2. a database lock on the portal's row queues processes, and is held from the re-read until
   the new pair is committed:
   - PostgreSQL: ``SELECT ... FOR UPDATE`` on the ``portals`` row (other portals and other
     tables are not blocked);
   - SQLite has no row locks: the transaction starts with ``BEGIN IMMEDIATE``, i.e. it takes
     the database write lock before reading, so every other writer waits (up to the busy
     timeout, 15 s). That is why ``OAuthClient`` gives up within its 12 s deadline, and why
     SQLite suits single-host installs;
3. under both locks the row is re-read: a stored access token other than the rejected one
   means another thread or process has refreshed already, so it is returned with no HTTP;
   otherwise the refresh runs and both new tokens are saved with a compare-and-swap on
   ``token_version`` before the new access token is handed out.

The compare-and-swap is the last line of defence should a writer ever bypass the lock (an
install saving fresh tokens, an older deployment): the loser re-reads and uses the winner's
pair, and an ``invalid_grant`` after someone else saved is not mistaken for a dead grant.

Refreshes happen only when Bitrix24 rejects a token (``rejected``), never on a timer and not
when ``expires_at`` passes: the docs warn that apps refreshing proactively get blocked, and our
clock need not agree with Bitrix24's. A lapsed token costs one 401 per client, no more.

Do not call Bitrix24 while your own transaction holds the SQLite write lock or has written
the portal's row: a refresh in that call would wait for your transaction.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import CursorResult, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from b24app.gateway.errors import AuthRevoked
from b24app.models.portal import Portal, PortalStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from b24app.crypto import SecretBox
    from b24app.oauth import TokenGrant

log = logging.getLogger(__name__)

_ACTIVE = PortalStatus.ACTIVE.value
_NEEDS_REINSTALL = PortalStatus.NEEDS_REINSTALL.value


class Refresher(Protocol):
    """What the store needs of ``b24app.oauth.OAuthClient``."""

    def refresh(self, refresh_token: str, *, member_id: str = "") -> TokenGrant:
        """Trade a single-use refresh token for a new pair."""


class PortalLocks:
    """Per-portal ``threading.Lock``s, created on first use and kept for the process."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, database: str, portal_id: int) -> threading.Lock:
        """The lock of ``portal_id`` in ``database``."""
        with self._guard:
            return self._locks.setdefault((database, portal_id), threading.Lock())


# One registry per process: every store on the same database shares a portal's lock.
PROCESS_LOCKS = PortalLocks()


@dataclass(frozen=True)
class _Row:
    """The token columns of a portal as read (ciphertexts only)."""

    portal_id: int
    member_id: str
    status: str
    access_enc: str | None
    refresh_enc: str | None
    version: int


_COLUMNS = (Portal.id, Portal.member_id, Portal.status, Portal.access_token_enc,
            Portal.refresh_token_enc, Portal.token_version)


class PortalTokens:
    """The ``TokenProvider`` of one portal, for ``BitrixClient(token_provider=...)``."""

    def __init__(self, store: TokenStore, portal_id: int) -> None:
        self._store = store
        self.portal_id = portal_id

    def current(self) -> str:
        """The stored access token."""
        return self._store.current(self.portal_id)

    def rejected(self, token: str) -> str:
        """A newer stored token, or a refreshed one; ``AuthRevoked`` if the grant is dead."""
        return self._store.rejected(self.portal_id, token)

    def __repr__(self) -> str:
        return f"PortalTokens(portal_id={self.portal_id})"


class TokenStore:
    """Access and refresh tokens of every portal: read, refresh once, save, mark dead."""

    def __init__(self, sessions: sessionmaker[Session], secrets: SecretBox, oauth: Refresher,
                 clock: Callable[[], datetime], *, locks: PortalLocks | None = None) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._oauth = oauth
        self._clock = clock
        self._locks = locks or PROCESS_LOCKS
        self._database = _database_key(sessions)

    def __repr__(self) -> str:
        return f"TokenStore(oauth={self._oauth!r})"

    # -- saving ------------------------------------------------------------------------------
    def save_grant(self, session: Session, portal: Portal, access: str, refresh: str,
                   expires_at: datetime, *, scope: str = "") -> None:
        """Store a new pair on ``portal`` (install); the portal is active again. Caller commits.

        Commit before calling Bitrix24 with these tokens: on PostgreSQL the row stays locked
        until then, and a refresh would wait for it.
        """
        session.add(portal)
        if inspect(portal).persistent:
            # The version the object holds may be hours old: bump the one in the database.
            session.refresh(portal, attribute_names=["token_version"], with_for_update=True)
        portal.set_secret(self._secrets, "access_token", access)
        portal.set_secret(self._secrets, "refresh_token", refresh)
        portal.expires_at = expires_at
        if scope:
            portal.scope = scope
        portal.status = _ACTIVE
        portal.token_version = (portal.token_version or 0) + 1
        portal.updated_at = self._clock()

    def mark_needs_reinstall(self, portal_id: int, reason: str) -> bool:
        """Stop using an active portal's tokens (e.g. after ``TOKEN_REJECTED``); ``True`` if so."""
        with self._sessions() as session:
            result = session.execute(
                update(Portal).where(Portal.id == portal_id, Portal.status == _ACTIVE)
                .values(status=_NEEDS_REINSTALL, updated_at=self._clock())
                .execution_options(synchronize_session=False))
            session.commit()
        changed = _rowcount(result) == 1
        if changed:
            log.warning("portal %d needs re-install: %s", portal_id, reason)
        return changed

    # -- the provider ------------------------------------------------------------------------
    def provider(self, portal_id: int) -> PortalTokens:
        """The token provider of ``portal_id`` for a ``BitrixClient``."""
        return PortalTokens(self, portal_id)

    def current(self, portal_id: int) -> str:
        """The stored access token, even if ``expires_at`` has passed (see the module doc)."""
        with self._sessions() as session:
            row = self._read(session, portal_id)
        return self._usable_access(row, portal_id)

    def rejected(self, portal_id: int, token: str) -> str:
        """``token`` got a 401: the newer stored token, else a refresh (once per expiry)."""
        # Cheap check first: a dead portal fails at once, a stale token needs no lock.
        stored = self.current(portal_id)
        if stored != token:
            return stored
        with self._locks.get(self._database, portal_id):
            won = self._refresh_locked(portal_id, token)
        if won is not None:
            return won
        log.info("portal %d: another worker saved a newer token pair; using it", portal_id)
        return self.current(portal_id)

    # -- the refresh dance -------------------------------------------------------------------
    def _refresh_locked(self, portal_id: int, token: str) -> str | None:
        """Refresh under the row lock; ``None`` if another writer's pair must be used."""
        with self._sessions() as session:
            row = self._lock_row(session, portal_id)
            stored = self._usable_access(row, portal_id)
            if stored != token:
                return stored  # refreshed while we waited for a lock: no HTTP
            assert row is not None and row.refresh_enc is not None  # checked by _usable_access
            try:
                grant = self._oauth.refresh(self._secrets.decrypt(row.refresh_enc),
                                            member_id=row.member_id)
            except AuthRevoked as exc:
                if self._mark_dead(session, row, exc.code):
                    raise
                return None
            if not self._swap(session, row, grant):
                session.rollback()
                return None
            session.commit()
        log.info("portal %d (member_id=%s): token refreshed, version %d",
                 portal_id, row.member_id, row.version + 1)
        return grant.access_token

    def _lock_row(self, session: Session, portal_id: int) -> _Row | None:
        """Read the row under a lock that queues every other refresher until we commit."""
        if session.get_bind().dialect.name == "sqlite":
            # No row locks on SQLite: take the database write lock before reading.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        found = session.execute(
            select(*_COLUMNS).where(Portal.id == portal_id).with_for_update()).one_or_none()
        return None if found is None else _Row(*found)

    def _swap(self, session: Session, row: _Row, grant: TokenGrant) -> bool:
        """Save both new tokens iff the version is still the one read (compare-and-swap)."""
        values: dict[str, Any] = {
            "access_token_enc": self._secrets.encrypt(grant.access_token),
            "refresh_token_enc": self._secrets.encrypt(grant.refresh_token),
            "expires_at": grant.expires_at,
            "token_version": row.version + 1,
            "updated_at": self._clock(),
        }
        if grant.scope:
            values["scope"] = grant.scope
        if grant.client_endpoint:
            values["client_endpoint"] = grant.client_endpoint
        result = session.execute(
            update(Portal).where(Portal.id == row.portal_id, Portal.token_version == row.version)
            .values(**values).execution_options(synchronize_session=False))
        return _rowcount(result) == 1

    def _mark_dead(self, session: Session, row: _Row, code: str) -> bool:
        """The auth server refused our refresh token: mark the portal, unless a newer pair exists.

        Under the lock nobody else can have saved; without it, a refresh that lost the race
        to another worker also gets ``invalid_grant``, and that grant is not dead.
        """
        result = session.execute(
            update(Portal).where(Portal.id == row.portal_id, Portal.token_version == row.version)
            .values(status=_NEEDS_REINSTALL, updated_at=self._clock())
            .execution_options(synchronize_session=False))
        session.commit()
        if _rowcount(result) != 1:
            return False
        log.warning("portal %d (member_id=%s) needs re-install: the auth server answered %s",
                    row.portal_id, row.member_id, code)
        return True

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def _read(session: Session, portal_id: int) -> _Row | None:
        found = session.execute(select(*_COLUMNS).where(Portal.id == portal_id)).one_or_none()
        return None if found is None else _Row(*found)

    def _usable_access(self, row: _Row | None, portal_id: int) -> str:
        """The decrypted access token of an active portal; ``AuthRevoked`` at once otherwise."""
        if row is None:
            raise AuthRevoked("PORTAL_NOT_FOUND", f"no portal {portal_id}")
        if row.status == _NEEDS_REINSTALL:
            raise AuthRevoked("NEEDS_REINSTALL", f"portal {portal_id} must re-install the app")
        if row.status != _ACTIVE:
            raise AuthRevoked(row.status.upper(), f"portal {portal_id} is {row.status}")
        if row.access_enc is None or row.refresh_enc is None:
            raise AuthRevoked("NO_TOKENS", f"portal {portal_id} has no OAuth tokens")
        return self._secrets.decrypt(row.access_enc)


def _database_key(sessions: sessionmaker[Session]) -> str:
    """The database a session factory is bound to (password hidden), as a lock-registry key."""
    bind = sessions.kw.get("bind")
    url = getattr(bind, "url", None)
    return "" if url is None else url.render_as_string(hide_password=True)


def _rowcount(result: Any) -> int:
    return cast("CursorResult[Any]", result).rowcount
