"""The demo's moving parts in one process: emulator, the app over HTTP, storage, worker."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from b24app.bootstrap import build_context
from b24app.config import Secret, Settings, with_generated_secrets
from b24app.context import AppContext
from b24app.jobs import rules_registry
from b24app.models import Portal
from b24app.web import create_app
from b24app.worker import Worker
from b24emu import EmulatorServer, PortalConfig
from b24emu import Portal as EmuPortal
from b24emu.datasets import build_dataset
from b24emu.limits import LimitSettings

# The cloud's Enterprise plan limits (platform doc 4.5), on both sides of the wire.
BURST, RATE = 250, 5.0


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: the demo prints its own story."""


class _Dispatch:
    """WSGI app set after the server exists (the app needs the server's URL first)."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)


class DemoStack:
    """A seeded NOIS portal in the emulator and the service installed into it."""

    def __init__(self, seed: int = 1) -> None:
        emu = EmuPortal(PortalConfig(seed=seed, limits=LimitSettings(burst=BURST, rate=RATE)))
        build_dataset(emu, "demo", seed=seed)
        # Time stands still unless the demo moves it, on the portal and in the service alike.
        emu.clock.set(datetime.fromisoformat(emu.anchor), frozen=True)
        self.emulator = EmulatorServer(emu)
        self._tmp = tempfile.TemporaryDirectory(prefix="b24app-demo-")
        self._dispatch = _Dispatch()
        self._http: BaseWSGIServer = make_server("127.0.0.1", 0, self._dispatch, threaded=True,
                                                 request_handler=_Quiet)
        self.app_url = f"http://127.0.0.1:{self._http.server_port}"
        self.ctx: AppContext = build_context(self._settings(), clock=emu.clock.now)
        self._dispatch.app = create_app(self.ctx)
        self.worker = Worker(self.ctx, registry=rules_registry())
        self._thread: threading.Thread | None = None

    @property
    def portal(self) -> EmuPortal:
        """The emulated portal (its tables and clock)."""
        return self.emulator.portal

    def _settings(self) -> Settings:
        emu = self.emulator.portal
        base = with_generated_secrets(Settings())
        database = Path(self._tmp.name) / "b24app.sqlite3"
        return dataclasses.replace(
            base,
            app=dataclasses.replace(base.app, public_url=self.app_url),
            database=dataclasses.replace(base.database, url=f"sqlite:///{database}"),
            portal=dataclasses.replace(
                base.portal, client_id=emu.app.client_id,
                client_secret=Secret(emu.app.client_secret),
                oauth_url=f"{self.emulator.url}/oauth/token/", requests_per_second=RATE,
                burst=BURST, allow_insecure_endpoints=True))

    def start(self) -> DemoStack:
        """Serve the portal and the app."""
        self.emulator.start()
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05}, name="b24app-demo")
        self._thread.start()
        return self

    def install(self) -> int:
        """Install the app the way Bitrix24 does (ONAPPINSTALL POST); returns the portal id."""
        result = self.portal.install_app(f"{self.app_url}/b24/install")
        if result.status != 200:
            raise RuntimeError(f"install failed: HTTP {result.status} {result.error}")
        with self.ctx.sessions() as session:
            return session.scalars(select(Portal.id)).one()

    def drain(self) -> int:
        """Let the portal deliver its events, then work the inbox until it is empty."""
        self.portal.events.wait_idle()
        done = 0
        while (count := self.worker.run_once()) > 0:
            done += count
        return done

    def stop(self) -> None:
        """Stop serving and release everything."""
        self._http.shutdown()
        self._http.server_close()
        self.emulator.stop()
        self.ctx.close()
        self._tmp.cleanup()

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
