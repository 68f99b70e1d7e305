"""What the admin commands report: installations as data, event re-binding, the doctor's checks.

Functions here return plain data (dataclasses, dicts); ``b24app.cli`` formats them. Nothing
returned carries a token: only expiry times and versions of the stored credentials.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, text

from b24app.config import Settings
from b24app.context import AppContext
from b24app.crypto import CryptoError, SecretBox
from b24app.db import current_revision, head_revision, make_engine
from b24app.gateway.errors import AuthRevoked, B24Error
from b24app.gateway.protocol import EventBinding, Gateway
from b24app.inbox import queue
from b24app.lifecycle import (
    COMPANY_FIELDS,
    KPI_TYPE_CODE,
    OFFLINE_EVENTS,
    ONLINE_EVENTS,
    SetupReport,
    events_url,
    setup_portal,
)
from b24app.models import InboxStatus, Portal, PortalMode, PortalStatus, SyncCursor

# Scopes the service calls methods of (bitrix24-platform.md, "Scope codes needed"); a
# portal may grant ``user`` as one of its narrower variants.
REQUIRED_SCOPES = ("crm", "task", "im", "user", "department", "sonet_group", "calendar")
SCOPE_VARIANTS = {"user": ("user", "user_brief", "user_basic")}
MAX_SKEW = timedelta(seconds=60)
LAG_WARN = timedelta(minutes=5)
LAG_FAIL = timedelta(hours=1)
# A refresh token lives 180 days from the save of its pair (platform doc 1.3).
REFRESH_LIFETIME = timedelta(days=180)
REFRESH_WARN = timedelta(days=30)
PROBE_TIMEOUT = 3.0


# -- portal facts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenHealth:
    """Expiry and age of a portal's stored OAuth pair (never the tokens themselves)."""

    has_tokens: bool
    access_expires_at: datetime | None
    access_expired: bool
    last_saved_at: datetime | None  # install or refresh: every save bumps ``token_version``
    refresh_expires_at: datetime | None  # estimated: last save + 180 days
    version: int


@dataclass
class RemoteState:
    """What the portal itself answers; ``error`` set when it could not be asked."""

    error: str = ""
    installed: bool | None = None
    app_version: str = ""
    events_bound: int = 0
    events_missing: list[str] = field(default_factory=list)
    events_extra: list[str] = field(default_factory=list)
    fields_present: list[str] = field(default_factory=list)
    fields_missing: list[str] = field(default_factory=list)
    kpi_type: bool | None = None
    skew_seconds: float | None = None


@dataclass
class PortalState:
    """One installation as stored, with its inbox and (for active portals) the portal's view."""

    id: int
    member_id: str
    domain: str
    mode: str
    status: str
    app_version: str
    installed_at: datetime | None
    scopes: list[str]
    tokens: TokenHealth | None
    inbox: dict[str, int]
    lag_seconds: float | None
    last_sync: datetime | None
    remote: RemoteState | None = None

    def problems(self) -> list[str]:
        """What an admin must act on (empty when the installation is healthy)."""
        found: list[str] = []
        if self.status == PortalStatus.NEEDS_REINSTALL.value:
            found.append("the portal rejects our credentials: re-install the app")
        if self.mode == PortalMode.LOCAL_APP.value and self.status == PortalStatus.ACTIVE.value \
                and not (self.tokens and self.tokens.has_tokens):
            found.append("no OAuth tokens stored")
        remote = self.remote
        if remote is None:
            return found
        if remote.error:
            return [*found, f"portal not reachable: {remote.error}"]
        if remote.installed is False:
            found.append("app.info says the app is not installed")
        if remote.events_missing:
            found.append(f"{len(remote.events_missing)} event binding(s) missing")
        if remote.fields_missing:
            found.append(f"{len(remote.fields_missing)} company field(s) missing")
        if remote.kpi_type is False:
            found.append(f"smart process {KPI_TYPE_CODE} missing")
        return found

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO 8601)."""
        return {**_jsonable(asdict(self)), "problems": self.problems()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def token_health(portal: Portal, now: datetime) -> TokenHealth:
    """The stored pair's expiry and age, read from the row (nothing is decrypted)."""
    has = portal.access_token_enc is not None and portal.refresh_token_enc is not None
    saved = portal.updated_at if has else None
    return TokenHealth(
        has_tokens=has, access_expires_at=portal.expires_at,
        access_expired=portal.expires_at is not None and portal.expires_at <= now,
        last_saved_at=saved, refresh_expires_at=saved + REFRESH_LIFETIME if saved else None,
        version=portal.token_version)


def split_scopes(scope: str) -> list[str]:
    """The stored scope text (comma or space separated) as a sorted list."""
    return sorted({part for part in scope.replace(",", " ").split() if part})


def missing_scopes(granted: list[str]) -> list[str]:
    """Required scopes that ``granted`` does not cover."""
    have = set(granted)
    return [need for need in REQUIRED_SCOPES
            if not have.intersection(SCOPE_VARIANTS.get(need, (need,)))]


# -- what the portal should have ----------------------------------------------------------------
def expected_bindings(settings: Settings) -> set[str]:
    """``EVENT online``/``EVENT offline`` labels that ``setup_portal`` binds."""
    if settings.portal.mode != PortalMode.LOCAL_APP.value:
        return set()  # outgoing webhooks are set up in the portal's UI, not by event.bind
    return ({f"{event} online" for event in ONLINE_EVENTS}
            | {f"{event} offline" for event in OFFLINE_EVENTS})


def binding_labels(bindings: list[EventBinding], handler: str) -> tuple[set[str], list[str]]:
    """Labels of the bindings at ``handler`` (and offline), and the others as ``EVENT → URL``."""
    labels: set[str] = set()
    foreign: list[str] = []
    for b in bindings:
        if b.offline:
            labels.add(f"{b.event.upper()} offline")
        elif b.handler == handler:
            labels.add(f"{b.event.upper()} online")
        else:
            foreign.append(f"{b.event.upper()} online → {b.handler}")
    return labels, foreign


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> str:
    """``""`` if the URL's host accepts a TCP connection, else why not (fails in seconds,
    where the REST client's retries take ~20 s)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not parts.hostname:
        return f"no host in {url!r}"
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port} ({exc.strerror or exc})"
    return ""


def inspect_remote(gateway: Gateway, settings: Settings, clock: Callable[[], datetime]
                   ) -> RemoteState:
    """app.info, bindings, fields, the KPI type and clock skew, as one read-only pass."""
    state = RemoteState()
    try:
        info = gateway.app_info()  # first: a lapsed access token is refreshed here
        state.installed = _truthy(info.get("INSTALLED"))
        state.app_version = str(info.get("VERSION") or "")
        before = clock()
        server = gateway.server_time()
        after = clock()
        # server.time drops the fraction (+0.5 s unbiases it); the round trip's midpoint
        # is our best guess of when the portal read its clock.
        midpoint = before + (after - before) / 2
        state.skew_seconds = round((server - midpoint).total_seconds() + 0.5, 1)
        expected = expected_bindings(settings)
        if expected:
            present, foreign = binding_labels(gateway.bound_events(),
                                              events_url(settings.app.public_url))
            state.events_bound = len(present & expected)
            state.events_missing = sorted(expected - present)
            state.events_extra = sorted(present - expected) + sorted(foreign)
        names = {name.upper() for name in gateway.userfields("company")}
        state.fields_present = [s.name for s in COMPANY_FIELDS if s.name in names]
        state.fields_missing = [s.name for s in COMPANY_FIELDS if s.name not in names]
        state.kpi_type = any(t.code.lower() == KPI_TYPE_CODE for t in gateway.crm_types())
    except AuthRevoked as exc:
        state.error = f"credentials rejected ({exc.code}): re-install the app"
    except (B24Error, LookupError) as exc:
        state.error = f"{type(exc).__name__}: {exc}"
    return state


def _truthy(value: Any) -> bool:
    return value is True or str(value).upper() in {"Y", "TRUE", "1"}


# -- the commands' logic -------------------------------------------------------------------------
def _portals(ctx: AppContext, member_id: str | None = None) -> list[Portal]:
    statement = select(Portal).order_by(Portal.id)
    if member_id is not None:
        statement = statement.where(Portal.member_id == member_id)
    with ctx.sessions() as session:
        return list(session.scalars(statement))


def _local_state(ctx: AppContext, portal: Portal) -> PortalState:
    now = ctx.clock()
    with ctx.sessions() as session:
        counts = queue.stats(session, portal.id)
        lag = queue.lag(session, now, portal.id)
        last_sync = session.scalar(select(func.max(SyncCursor.updated_at))
                                   .where(SyncCursor.portal_id == portal.id))
    local = portal.mode == PortalMode.LOCAL_APP.value
    return PortalState(
        id=portal.id, member_id=portal.member_id, domain=portal.domain, mode=portal.mode,
        status=portal.status, app_version=portal.app_version, installed_at=portal.installed_at,
        scopes=split_scopes(portal.scope), tokens=token_health(portal, now) if local else None,
        inbox=counts, lag_seconds=None if lag is None else lag.total_seconds(),
        last_sync=last_sync)


def install_status(ctx: AppContext, member_id: str | None = None) -> list[PortalState]:
    """Every installation (or one), with the portal's own answers for the active ones."""
    states = []
    for portal in _portals(ctx, member_id):
        state = _local_state(ctx, portal)
        if portal.status == PortalStatus.ACTIVE.value:
            unreachable = probe(portal.client_endpoint or ctx.settings.portal.webhook_url.reveal())
            state.remote = (RemoteState(error=unreachable) if unreachable else inspect_remote(
                ctx.gateways.for_portal(portal.id), ctx.settings, ctx.clock))
        states.append(state)
    return states


@dataclass(frozen=True)
class BindOutcome:
    """``setup_portal``'s report for one portal, or why it could not run."""

    member_id: str
    domain: str
    report: SetupReport | None = None
    error: str = ""


def bind_events(ctx: AppContext, member_id: str | None = None) -> list[BindOutcome]:
    """Run the install's setup again (idempotent) on every active portal, or on one."""
    outcomes = []
    for portal in _portals(ctx, member_id):
        if portal.status != PortalStatus.ACTIVE.value:
            outcomes.append(BindOutcome(portal.member_id, portal.domain,
                                        error=f"portal is {portal.status}"))
            continue
        try:
            report = setup_portal(ctx.gateways.for_portal(portal.id), ctx.settings,
                                  ctx.settings.app.public_url, portal.app_version)
        except (B24Error, LookupError) as exc:
            outcomes.append(BindOutcome(portal.member_id, portal.domain,
                                        error=f"{type(exc).__name__}: {exc}"))
        else:
            outcomes.append(BindOutcome(portal.member_id, portal.domain, report))
    return outcomes


# -- the doctor ----------------------------------------------------------------------------------
class Level(StrEnum):
    """How a check came out; only ``FAIL`` makes the doctor exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    level: Level
    detail: str


ContextBuilder = Callable[[Settings], AppContext]


def doctor(settings: Settings, build: ContextBuilder) -> Iterator[Check]:
    """The checks, in order; later ones are skipped when what they stand on failed."""
    engine = make_engine(settings.database.url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        revision, head = current_revision(engine), head_revision()
    except Exception as exc:  # any driver error: the admin needs the message, not a trace
        yield Check("database", Level.FAIL, f"not reachable: {type(exc).__name__}: {exc}")
        return
    finally:
        engine.dispose()
    yield Check("database", Level.OK, f"reachable ({engine.url.get_backend_name()})")
    if revision != head:
        yield Check("migrations", Level.FAIL,
                    f"database at {revision or 'no revision'}, code at {head}: "
                    "run `b24app migrate`")
        return
    yield Check("migrations", Level.OK, f"at head revision {head}")
    try:
        SecretBox.from_settings(settings)
    except CryptoError as exc:
        yield Check("encryption key", Level.FAIL, str(exc))
        return
    ctx = build(settings)
    try:
        yield from _key_checks(ctx)
        portals = [p for p in _portals(ctx) if p.status != PortalStatus.UNINSTALLED.value]
        if not portals:
            yield Check("portals", Level.WARN, "no portal has installed the app yet")
        for portal in portals:
            yield from _portal_checks(ctx, portal)
    finally:
        ctx.close()


def _key_checks(ctx: AppContext) -> Iterator[Check]:
    stored = [p for p in _portals(ctx) if p.application_token_enc is not None]
    for portal in stored:
        try:
            portal.get_secret(ctx.secrets, "application_token")
        except CryptoError as exc:
            yield Check("encryption key", Level.FAIL, f"portal {portal.member_id}: {exc}")
            return
    detail = (f"decrypts the stored application token of {len(stored)} portal(s)" if stored
              else "a valid key (no stored secret to try it on yet)")
    yield Check("encryption key", Level.OK, detail)


def _portal_checks(ctx: AppContext, portal: Portal) -> Iterator[Check]:
    name = f"portal {portal.domain} ({portal.member_id})"
    state = _local_state(ctx, portal)
    if portal.status != PortalStatus.ACTIVE.value:
        yield Check(name, Level.FAIL, f"status {portal.status}: re-install the app")
    else:
        yield from _remote_checks(ctx, portal, name)
    yield from _scope_check(name, state)
    yield from _inbox_checks(ctx, name, state)


def _remote_checks(ctx: AppContext, portal: Portal, name: str) -> Iterator[Check]:
    unreachable = probe(portal.client_endpoint or ctx.settings.portal.webhook_url.reveal())
    remote = RemoteState(error=unreachable) if unreachable else inspect_remote(
        ctx.gateways.for_portal(portal.id), ctx.settings, ctx.clock)
    if remote.error:
        yield Check(name, Level.FAIL, f"not reachable: {remote.error}")
        return
    installed = Level.OK if remote.installed else Level.FAIL
    yield Check(f"{name} app.info", installed,
                f"INSTALLED={remote.installed}, version {remote.app_version or '?'}")
    assert remote.skew_seconds is not None  # set whenever there is no error
    skew = abs(remote.skew_seconds)
    yield Check(f"{name} clock", Level.FAIL if skew > MAX_SKEW.total_seconds() else Level.OK,
                f"server.time differs from ours by {remote.skew_seconds:+.0f} s "
                f"(limit ±{MAX_SKEW.total_seconds():.0f} s)")
    yield from _calendar_check(ctx, portal, name)
    if expected_bindings(ctx.settings):
        bound = Level.FAIL if remote.events_missing else Level.OK
        detail = f"{remote.events_bound} of {len(expected_bindings(ctx.settings))} bound"
        if remote.events_missing:
            detail += f"; missing: {', '.join(remote.events_missing)} (run `b24app bind-events`)"
        yield Check(f"{name} events", bound, detail)


def _calendar_check(ctx: AppContext, portal: Portal, name: str) -> Iterator[Check]:
    """The portal's own calendar (``calendar.settings.get``) against the production calendar.

    Conflicts are reported for the admin to settle, never guessed away: the SLA follows the
    configured calendar.
    """
    from b24app.calendar_rules import rules_from_settings
    from kpi.calendar import compare_portal_settings

    try:
        settings = ctx.gateways.for_portal(portal.id).calendar_settings()
    except B24Error as exc:
        yield Check(f"{name} calendar", Level.WARN, f"calendar.settings.get failed: {exc.code}")
        return
    year = ctx.clock().astimezone(ctx.settings.calendar.tzinfo).year
    conflicts = compare_portal_settings(rules_from_settings(ctx.settings.calendar), settings,
                                        year)
    if not conflicts:
        yield Check(f"{name} calendar", Level.OK, f"the portal's calendar agrees for {year}")
        return
    shown = "; ".join(conflicts[:3]) + (f"; and {len(conflicts) - 3} more"
                                        if len(conflicts) > 3 else "")
    yield Check(f"{name} calendar", Level.WARN,
                f"{len(conflicts)} difference(s) from the production calendar in {year}: "
                f"{shown}")


def _scope_check(name: str, state: PortalState) -> Iterator[Check]:
    if state.mode != PortalMode.LOCAL_APP.value:
        return  # an incoming webhook's scopes are set on the webhook, not stored here
    missing = missing_scopes(state.scopes)
    yield Check(f"{name} scopes", Level.FAIL if missing else Level.OK,
                f"missing: {', '.join(missing)}" if missing
                else f"granted: {', '.join(state.scopes) or '-'}")


def _inbox_checks(ctx: AppContext, name: str, state: PortalState) -> Iterator[Check]:
    waiting = state.inbox[InboxStatus.PENDING.value] + state.inbox[InboxStatus.PROCESSING.value]
    if state.lag_seconds is None:
        yield Check(f"{name} inbox", Level.OK, "drained")
    else:
        lag = timedelta(seconds=state.lag_seconds)
        level = Level.OK if lag <= LAG_WARN else Level.WARN if lag <= LAG_FAIL else Level.FAIL
        hint = "" if level is Level.OK else " (is a worker running?)"
        yield Check(f"{name} inbox", level,
                    f"{waiting} waiting, the oldest for {state.lag_seconds:.0f} s{hint}")
    dead = state.inbox[InboxStatus.DEAD.value]
    yield Check(f"{name} dead letters", Level.WARN if dead else Level.OK,
                f"{dead} event(s) failed every attempt" if dead else "none")
    if state.last_sync is None:
        yield Check(f"{name} sync", Level.WARN, "no incremental sync has run yet")
        return
    age = ctx.clock() - state.last_sync
    stale = age > timedelta(minutes=3 * ctx.settings.scheduler.sync_minutes)
    yield Check(f"{name} sync", Level.WARN if stale else Level.OK,
                f"last cursor update {state.last_sync:%Y-%m-%d %H:%M:%S} UTC "
                f"({age.total_seconds() / 60:.0f} min ago)")
