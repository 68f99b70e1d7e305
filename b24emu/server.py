"""Serve a portal over loopback: in a thread for tests, or in the foreground for the CLI."""

from __future__ import annotations

import threading
from types import TracebackType

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from b24emu.portal import Portal, PortalConfig
from b24emu.rest import create_app


class _QuietHandler(WSGIRequestHandler):
    """No access log: tests and the demo keep their output readable."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Skip the per-request access log line."""


class EmulatorServer:
    """A portal plus its HTTP server on ``127.0.0.1:<port>`` (port 0 = a free one)."""

    def __init__(self, portal: Portal | None = None, *, port: int = 0,
                 host: str = "127.0.0.1") -> None:
        self.portal = portal or Portal(PortalConfig())
        self._server: BaseWSGIServer = make_server(host, port, create_app(self.portal),
                                                   threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self.portal.base_url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the portal."""
        return self.portal.base_url

    def start(self) -> EmulatorServer:
        """Serve in a daemon thread and start event delivery."""
        self.portal.events.start()
        # A short poll interval: shutdown() waits up to one interval, once per test fixture.
        self._thread = threading.Thread(target=self._server.serve_forever, name="b24emu-http",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self.portal.events.start()
        try:
            self._server.serve_forever()
        finally:
            self.portal.events.stop()

    def stop(self) -> None:
        """Stop serving and delivering."""
        self._server.shutdown()
        self._server.server_close()
        self.portal.events.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
