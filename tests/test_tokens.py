"""The token store on SQLite and PostgreSQL: one refresh per expiry, across threads and processes.

The auth server is mocked with ``responses`` in the unit tests; the scenarios run the real
chain (``BitrixClient`` → fast-bitrix24 → the emulator's REST and ``/oauth/token/``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import registries
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from b24app.config import Secret
from b24app.context import system_clock
from b24app.crypto import SecretBox
from b24app.db import make_engine, make_session_factory
from b24app.gateway.client import BitrixClient
from b24app.gateway.errors import AuthRevoked, Transport
from b24app.models import Portal, PortalStatus
from b24app.oauth import OAuthClient, TokenGrant
from b24app.tokens import PortalLocks, TokenStore
from b24emu import EmulatorServer
from tests.emulator.helpers import Receiver, example, install
from tests.emulator.helpers import refresh as refresh_elsewhere

URL = "https://oauth.bitrix.info/oauth/token/"
CLIENT_ID = "local.6537665f598492.98090704"
SECRET = "Xq9-client-secret-7d1e0c55aa0b4b7f9e2d"
SAMPLE = example("resp-oauth-token-refresh.json")
HOUR = timedelta(hours=1)


# ---------------------------------------------------------------- helpers and fixtures


class CountingSession(requests.Session):
    """Records every request it sends (into a shared list) and adds the auth server's latency.

    The latency (oauth.bitrix.info takes a few hundred ms) keeps the race window of a
    refresh open long enough for every racer to reach it: without locks they all would.
    """

    def __init__(self, calls: list[str], latency: float = 0.2) -> None:
        super().__init__()
        self.calls = calls
        self.latency = latency

    def request(self, method: str | bytes, url: str | bytes,
                *args: Any, **kwargs: Any) -> requests.Response:
        self.calls.append(str(method))
        time.sleep(self.latency)
        return super().request(method, url, *args, **kwargs)


def add_portal(store: TokenStore, sessions: sessionmaker[Session], access: str = "access-1",
               refresh: str = "refresh-1", *, member_id: str = "member-1",
               expires_at: datetime | None = None, endpoint: str = "") -> int:
    """A portal row holding ``access``/``refresh`` (saved the way install saves them)."""
    with sessions() as session:
        portal = Portal(member_id=member_id, domain=f"{member_id}.bitrix24.ru",
                        client_endpoint=endpoint)
        store.save_grant(session, portal, access, refresh,
                         expires_at or system_clock() + HOUR, scope="crm")
        session.commit()
        return portal.id


def load(sessions: sessionmaker[Session], portal_id: int) -> Portal:
    """A fresh copy of the portal row."""
    with sessions() as session:
        return session.get_one(Portal, portal_id)


def tokens(sessions: sessionmaker[Session], box: SecretBox, portal_id: int) -> tuple[str, str]:
    """The stored (access, refresh) pair, decrypted."""
    portal = load(sessions, portal_id)
    return (portal.get_secret(box, "access_token") or "",
            portal.get_secret(box, "refresh_token") or "")


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    """The auth server, mocked; answers are consumed in the order they are registered."""
    with responses.RequestsMock(registry=registries.OrderedRegistry) as rsps:
        yield rsps


@pytest.fixture
def oauth() -> Iterator[OAuthClient]:
    """A client of the mocked auth server that does not really sleep between retries."""
    client = OAuthClient(URL, CLIENT_ID, Secret(SECRET), sleep=lambda _: None)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def store(session_factory: sessionmaker[Session], secret_box: SecretBox,
          oauth: OAuthClient) -> TokenStore:
    """A store on this test's database and the mocked auth server."""
    return TokenStore(session_factory, secret_box, oauth, system_clock)


@pytest.fixture
def portal_id(store: TokenStore, session_factory: sessionmaker[Session]) -> int:
    """An active portal holding ``access-1``/``refresh-1``."""
    return add_portal(store, session_factory)


class FakeOAuth:
    """An auth server in-process: numbered grants, an optional hook run inside each refresh."""

    def __init__(self, hook: Callable[[], object] | None = None,
                 error: Exception | None = None) -> None:
        self.hook = hook
        self.error = error
        self.used: list[str] = []
        self._lock = threading.Lock()

    def refresh(self, refresh_token: str, *, member_id: str = "") -> TokenGrant:
        """Record the refresh token, run the hook, answer a new pair (or the error)."""
        with self._lock:
            self.used.append(refresh_token)
            n = len(self.used) + 1
        if self.hook is not None:
            self.hook()
        if self.error is not None:
            raise self.error
        return TokenGrant(f"access-{n}", f"refresh-{n}", system_clock() + HOUR, "crm")


class UnlockedStore(TokenStore):
    """A writer that bypasses the row lock (an older deployment): only the CAS protects it."""

    def _lock_row(self, session: Session, portal_id: int) -> Any:
        return self._read(session, portal_id)


def run_threads(count: int, target: Callable[[int], Any], timeout: float = 60) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads; their results in order; re-raise any error."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------- saving


def test_save_grant_encrypts_bumps_the_version_and_reactivates(
    store: TokenStore, session_factory: sessionmaker[Session], secret_box: SecretBox,
    portal_id: int,
) -> None:
    portal = load(session_factory, portal_id)
    assert (portal.token_version, portal.scope, portal.status) == (1, "crm", "active")
    assert "access-1" not in (portal.access_token_enc or "")
    assert "refresh-1" not in (portal.refresh_token_enc or "")
    # Meanwhile: marked dead, and the version moved on (refreshes elsewhere).
    store.mark_needs_reinstall(portal_id, "test")
    with session_factory() as session:
        session.execute(update(Portal).where(Portal.id == portal_id).values(token_version=7))
        session.commit()
    expires = datetime(2027, 1, 1, tzinfo=UTC)
    with session_factory() as session:
        stale = session.merge(portal)  # holds version 1: a re-install with an old object
        store.save_grant(session, stale, "access-x", "refresh-x", expires)
        session.commit()
    saved = load(session_factory, portal_id)
    assert (saved.token_version, saved.status, saved.expires_at) == (8, "active", expires)
    assert saved.scope == "crm"  # no scope given: kept
    assert tokens(session_factory, secret_box, portal_id) == ("access-x", "refresh-x")


def test_mark_needs_reinstall(store: TokenStore, session_factory: sessionmaker[Session],
                              portal_id: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "b24app.tokens")
    assert store.mark_needs_reinstall(portal_id, "TOKEN_REJECTED") is True
    assert store.mark_needs_reinstall(portal_id, "TOKEN_REJECTED") is False
    assert load(session_factory, portal_id).status == PortalStatus.NEEDS_REINSTALL.value
    assert f"portal {portal_id} needs re-install: TOKEN_REJECTED" in caplog.text
    with pytest.raises(AuthRevoked) as caught:
        store.provider(portal_id).current()
    assert caught.value.code == "NEEDS_REINSTALL"


def test_portal_locks_are_per_database_and_portal() -> None:
    locks = PortalLocks()
    assert locks.get("sqlite:///a", 1) is locks.get("sqlite:///a", 1)
    assert locks.get("sqlite:///a", 1) is not locks.get("sqlite:///a", 2)
    assert locks.get("sqlite:///a", 1) is not locks.get("sqlite:///b", 1)


# ---------------------------------------------------------------- reading


def test_current_returns_the_stored_token_even_after_expires_at(
    store: TokenStore, session_factory: sessionmaker[Session], mocked: responses.RequestsMock,
) -> None:
    """No refresh before Bitrix24 rejects the token (docs: proactive refreshes get blocked)."""
    past = system_clock() - timedelta(days=1)
    lapsed = add_portal(store, session_factory, "old-access", member_id="m2", expires_at=past)
    assert store.provider(lapsed).current() == "old-access"
    assert len(mocked.calls) == 0


@pytest.mark.parametrize("case", [
    (PortalStatus.NEEDS_REINSTALL, "NEEDS_REINSTALL"), (PortalStatus.UNINSTALLED, "UNINSTALLED")])
def test_an_unusable_portal_fails_at_once(
    store: TokenStore, session_factory: sessionmaker[Session], mocked: responses.RequestsMock,
    portal_id: int, case: tuple[PortalStatus, str],
) -> None:
    status, code = case
    with session_factory() as session:
        session.execute(update(Portal).where(Portal.id == portal_id).values(status=status.value))
        session.commit()
    provider = store.provider(portal_id)
    for call in (provider.current, lambda: provider.rejected("access-1")):
        with pytest.raises(AuthRevoked) as caught:
            call()
        assert caught.value.code == code
    with pytest.raises(AuthRevoked) as caught:
        store.provider(portal_id + 1000).current()
    assert caught.value.code == "PORTAL_NOT_FOUND"
    assert len(mocked.calls) == 0


def test_a_stale_rejected_token_gets_the_stored_one_without_http(
    store: TokenStore, mocked: responses.RequestsMock, portal_id: int
) -> None:
    """Another thread or process refreshed already: no HTTP, no lock."""
    assert store.provider(portal_id).rejected("access-0") == "access-1"
    assert len(mocked.calls) == 0


# ---------------------------------------------------------------- refreshing (mocked server)


def test_a_rejected_token_is_refreshed_and_both_new_tokens_are_saved(
    store: TokenStore, session_factory: sessionmaker[Session], secret_box: SecretBox,
    mocked: responses.RequestsMock, portal_id: int,
) -> None:
    mocked.get(URL, json=SAMPLE)
    assert store.provider(portal_id).rejected("access-1") == SAMPLE["access_token"]
    query = parse_qs(urlsplit(mocked.calls[0].request.url or "").query)
    assert (query["refresh_token"], query["client_secret"]) == (["refresh-1"], [SECRET])
    assert tokens(session_factory, secret_box, portal_id) == (
        SAMPLE["access_token"], SAMPLE["refresh_token"])
    saved = load(session_factory, portal_id)
    assert saved.expires_at == datetime.fromtimestamp(SAMPLE["expires"], tz=UTC)
    assert (saved.token_version, saved.scope) == (2, "crm,entity,im,task")
    assert saved.client_endpoint == SAMPLE["client_endpoint"]


def test_invalid_grant_marks_the_portal_and_later_calls_fail_fast(
    store: TokenStore, session_factory: sessionmaker[Session], secret_box: SecretBox,
    mocked: responses.RequestsMock, portal_id: int,
) -> None:
    mocked.get(URL, json={"error": "invalid_grant", "error_description": "x"}, status=400)
    provider = store.provider(portal_id)
    with pytest.raises(AuthRevoked) as caught:
        provider.rejected("access-1")
    assert caught.value.code == "invalid_grant"
    saved = load(session_factory, portal_id)
    assert (saved.status, saved.token_version) == ("needs_reinstall", 1)
    # The dead pair is kept: it is evidence, and nothing can use it any more.
    assert tokens(session_factory, secret_box, portal_id) == ("access-1", "refresh-1")
    for call in (provider.current, lambda: provider.rejected("access-1")):
        with pytest.raises(AuthRevoked, match="NEEDS_REINSTALL"):
            call()
    assert len(mocked.calls) == 1


def test_5xx_then_success_refreshes_once(
    store: TokenStore, mocked: responses.RequestsMock, portal_id: int
) -> None:
    mocked.get(URL, body="Service Unavailable", status=503)
    mocked.get(URL, json=SAMPLE)
    assert store.provider(portal_id).rejected("access-1") == SAMPLE["access_token"]
    assert len(mocked.calls) == 2


def test_a_timeout_raises_transport_and_changes_nothing(
    store: TokenStore, session_factory: sessionmaker[Session], secret_box: SecretBox,
    mocked: responses.RequestsMock, portal_id: int,
) -> None:
    """The portal stays active with its pair, and the locks are released for the next try."""
    for _ in range(3):
        mocked.get(URL, body=requests.ReadTimeout("read timed out"))
    mocked.get(URL, json=SAMPLE)
    provider = store.provider(portal_id)
    with pytest.raises(Transport):
        provider.rejected("access-1")
    saved = load(session_factory, portal_id)
    assert (saved.status, saved.token_version) == ("active", 1)
    assert tokens(session_factory, secret_box, portal_id) == ("access-1", "refresh-1")
    started = time.monotonic()  # a leaked SQLite write lock would stall writers 15 s
    assert store.mark_needs_reinstall(portal_id + 1000, "another writer is not blocked") is False
    assert provider.rejected("access-1") == SAMPLE["access_token"]
    assert time.monotonic() - started < 5
    assert len(mocked.calls) == 4


def test_no_secret_in_logs_or_reprs(
    store: TokenStore, session_factory: sessionmaker[Session], mocked: responses.RequestsMock,
    portal_id: int, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    other = add_portal(store, session_factory, "access-9", "refresh-9", member_id="m9")
    mocked.get(URL, json=SAMPLE)
    mocked.get(URL, json={"error": "invalid_grant"}, status=400)
    store.provider(portal_id).rejected("access-1")
    with pytest.raises(AuthRevoked):
        store.provider(other).rejected("access-9")
    text = caplog.text + repr(store) + repr(store.provider(portal_id))
    for secret in (SECRET, "access-1", "refresh-1", "access-9", "refresh-9",
                   SAMPLE["access_token"], SAMPLE["refresh_token"]):
        assert secret not in text
    assert "refresh for member_id=member-1" in caplog.text
    assert "needs re-install: the auth server answered invalid_grant" in caplog.text


# ---------------------------------------------------------------- compare-and-swap


def test_cas_conflict_the_loser_returns_the_winners_token(
    session_factory: sessionmaker[Session], secret_box: SecretBox
) -> None:
    """Two stores (two processes) bypassing the row lock both refresh: one save wins."""
    barrier = threading.Barrier(2, timeout=30)
    oauth = FakeOAuth(hook=barrier.wait)  # both have read version 1 before either saves
    first, second = (UnlockedStore(session_factory, secret_box, oauth, system_clock,
                                   locks=PortalLocks()) for _ in range(2))
    portal_id = add_portal(first, session_factory)
    stores = (first, second)
    results = run_threads(2, lambda i: stores[i].provider(portal_id).rejected("access-1"))
    assert len(oauth.used) == 2  # both refreshed; only the CAS kept them apart
    stored = tokens(session_factory, secret_box, portal_id)
    assert results == [stored[0], stored[0]]
    assert stored in {("access-2", "refresh-2"), ("access-3", "refresh-3")}
    assert load(session_factory, portal_id).token_version == 2


def test_invalid_grant_after_another_worker_saved_is_not_a_dead_grant(
    session_factory: sessionmaker[Session], secret_box: SecretBox
) -> None:
    """Our refresh token was spent by a worker that saved a newer pair: use that pair."""
    winner = TokenStore(session_factory, secret_box, FakeOAuth(), system_clock,
                        locks=PortalLocks())
    portal_id = add_portal(winner, session_factory)

    def other_worker_wins() -> None:
        assert winner.provider(portal_id).rejected("access-1") == "access-2"

    loser = UnlockedStore(session_factory, secret_box,
                          FakeOAuth(other_worker_wins, AuthRevoked("invalid_grant")),
                          system_clock, locks=PortalLocks())
    assert loser.provider(portal_id).rejected("access-1") == "access-2"
    saved = load(session_factory, portal_id)
    assert (saved.status, saved.token_version) == ("active", 2)


# ---------------------------------------------------------------- against the emulator


@dataclass
class Live:
    """An installed app: the emulator, the database, a store on the emulator's auth server."""

    server: EmulatorServer
    db_url: str
    sessions: sessionmaker[Session]
    secrets: SecretBox
    portal_id: int
    stack: ExitStack
    oauth_calls: list[str] = field(default_factory=list)

    def oauth(self) -> OAuthClient:
        """A client of the emulator's ``/oauth/token/`` counting into ``oauth_calls``."""
        app = self.server.portal.app
        client = OAuthClient(f"{self.server.url}/oauth/token/", app.client_id,
                             Secret(app.client_secret), session=CountingSession(self.oauth_calls))
        self.stack.callback(client.close)
        return client

    def store(self, *, own_process: bool = False) -> TokenStore:
        """A store; ``own_process``: its own engine and thread locks, as another process."""
        sessions = self.sessions
        if own_process:
            engine = make_engine(self.db_url)
            self.stack.callback(engine.dispose)
            sessions = make_session_factory(engine)
        return TokenStore(sessions, self.secrets, self.oauth(), system_clock,
                          locks=PortalLocks() if own_process else None)

    def client(self, store: TokenStore) -> BitrixClient:
        """A REST client of the portal whose tokens come from ``store``."""
        client = BitrixClient(self.server.portal.client_endpoint,
                              token_provider=store.provider(self.portal_id),
                              requests_per_second=50.0)
        self.stack.callback(client.close)
        return client

    @property
    def refreshes(self) -> int:
        """Successful refreshes the emulator's auth server has made."""
        return self.server.portal.auth.refresh_count

    def stored(self) -> tuple[str, str]:
        """The stored (access, refresh) pair."""
        return tokens(self.sessions, self.secrets, self.portal_id)

    def valid_on_server(self, pair: tuple[str, str]) -> bool:
        """Whether the emulator still honours both tokens of ``pair``."""
        auth = self.server.portal.auth
        return pair[0] in auth.access and pair[1] in auth.refresh


@pytest.fixture
def live(emulator: EmulatorServer, db_url: str, session_factory: sessionmaker[Session],
         secret_box: SecretBox) -> Iterator[Live]:
    """The app installed through ONAPPINSTALL; its tokens saved the way install saves them."""
    with Receiver() as receiver:
        installed = install(emulator, receiver)
    form = installed.hit.form
    with ExitStack() as stack:
        setup = TokenStore(session_factory, secret_box, FakeOAuth(), system_clock)
        with session_factory() as session:
            portal = Portal(member_id=form["auth[member_id]"], domain=form["auth[domain]"],
                            client_endpoint=form["auth[client_endpoint]"])
            portal.set_secret(secret_box, "application_token", installed.application_token)
            expires = system_clock() + timedelta(seconds=int(form["auth[expires_in]"]))
            setup.save_grant(session, portal, installed.access, installed.refresh, expires,
                             scope=form["auth[scope]"])
            session.commit()
            portal_id = portal.id
        yield Live(emulator, db_url, session_factory, secret_box, portal_id, stack)


def test_an_expired_token_is_refreshed_once_and_the_call_succeeds(live: Live) -> None:
    client = live.client(live.store())
    assert client.call("user.current").value["ID"] == "1"
    before, old = live.refreshes, live.stored()
    live.server.portal.auth.expire_all()
    assert client.call("user.current").value["ID"] == "1"
    assert live.refreshes - before == 1 and len(live.oauth_calls) == 1
    new = live.stored()
    assert new != old and live.valid_on_server(new) and not live.valid_on_server(old)
    assert client.stats.requests == 3  # 200, then 401 expired_token, then the retry


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_six_clients_on_an_expired_token_make_one_refresh(live: Live, processes: bool) -> None:
    """Six clients (six threads; or six "processes": own engine, own thread locks) at once."""
    shared = live.store()
    clients = [live.client(live.store(own_process=True) if processes else shared)
               for _ in range(6)]
    before = live.refreshes
    live.server.portal.auth.expire_all()
    barrier = threading.Barrier(6, timeout=30)

    def call(i: int) -> Any:
        barrier.wait()
        return clients[i].call("user.current").value["ID"]

    assert run_threads(6, call) == ["1"] * 6
    assert live.refreshes - before == 1
    assert len(live.oauth_calls) == 1  # nobody spent the single-use refresh token twice
    assert live.valid_on_server(live.stored())


def test_token_expiry_during_a_bulk_read(live: Live) -> None:
    """5,000 deals through ``iter_pages``; the portal clock passes the hour mid-read."""
    portal = live.server.portal
    for i in range(5000):
        portal.deals.insert({"TITLE": f"D{i}", "STAGE_ID": "NEW", "CATEGORY_ID": 0})
    client = live.client(live.store())
    before = live.refreshes
    ids: list[int] = []
    for number, page in enumerate(client.iter_pages("crm.deal.list", {"select": ["ID"]}), 1):
        ids.extend(int(row["ID"]) for row in page)
        if number == 51:  # between two batch requests: the next one meets an expired token
            portal.clock.advance(3601)
    assert ids == list(range(1, 5001))
    assert live.refreshes - before == 1
    assert client.stats.requests == 4  # first page, batch, batch refused (401), batch again


@pytest.mark.parametrize("cause", ["spent_elsewhere", "app_deleted"])
def test_a_dead_grant_marks_the_portal_and_calls_fail_fast(live: Live, cause: str) -> None:
    """Our refresh token was spent by someone else, or the app was deleted: no loop."""
    client = live.client(live.store())
    if cause == "spent_elsewhere":
        assert refresh_elsewhere(live.server, live.stored()[1]).status_code == 200
    else:
        live.server.portal.uninstall_app()
    started = time.monotonic()
    with pytest.raises(AuthRevoked) as caught:
        client.call("user.current")
    assert caught.value.code == ("invalid_grant" if cause == "spent_elsewhere"
                                 else "invalid_client")
    assert load(live.sessions, live.portal_id).status == "needs_reinstall"
    assert (client.stats.requests, len(live.oauth_calls)) == (1, 1)
    with pytest.raises(AuthRevoked, match="NEEDS_REINSTALL"):
        client.call("user.current")  # the old token once more: one 401, then stop
    fresh = live.client(live.store())
    with pytest.raises(AuthRevoked, match="NEEDS_REINSTALL"):
        fresh.call("user.current")  # no token at all: no request
    assert (client.stats.requests, fresh.stats.requests, len(live.oauth_calls)) == (2, 0, 1)
    assert time.monotonic() - started < 5


def test_two_processes_racing_on_one_row_refresh_once(live: Live) -> None:
    """The row lock alone (no shared thread lock): the second store waits, then reuses."""
    stores = [live.store(own_process=True) for _ in range(2)]
    old = live.stored()
    live.server.portal.auth.expire_all()
    barrier = threading.Barrier(2, timeout=30)

    def race(i: int) -> str:
        barrier.wait()
        return stores[i].provider(live.portal_id).rejected(old[0])

    results = run_threads(2, race)
    assert results[0] == results[1] == live.stored()[0] != old[0]
    assert len(live.oauth_calls) == 1 and live.refreshes == 1
    assert load(live.sessions, live.portal_id).token_version == 2
