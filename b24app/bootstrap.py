"""The composition root: build an ``AppContext`` from settings (no module-level state)."""

from __future__ import annotations

from b24app.config import Settings, load_settings
from b24app.context import AppContext, Clock, system_clock
from b24app.crypto import SecretBox
from b24app.db import make_engine, make_session_factory, migrate
from b24app.gateway.factory import GatewayFactory
from b24app.oauth import OAuthClient
from b24app.tokens import TokenStore


def build_context(settings: Settings | None = None, *, clock: Clock = system_clock,
                  migrate_db: bool = True) -> AppContext:
    """Storage (migrated), secrets, the token store and the gateway factory, wired together."""
    settings = settings or load_settings()
    engine = make_engine(settings.database.url, echo=settings.database.echo)
    if migrate_db:
        migrate(engine)
    sessions = make_session_factory(engine)
    secrets = SecretBox.from_settings(settings)
    portal = settings.portal
    oauth = OAuthClient(portal.oauth_url, portal.client_id, portal.client_secret)
    tokens = TokenStore(sessions, secrets, oauth, clock)
    gateways = GatewayFactory(settings, sessions, secrets, clock, token_store=tokens)
    return AppContext(settings=settings, engine=engine, sessions=sessions, secrets=secrets,
                      gateways=gateways, clock=clock, tokens=tokens, closers=[oauth.close])
