"""Shared helpers for the emulator contract tests: REST calls, a handler receiver, samples."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from b24emu import EmulatorServer, Portal
from b24emu.phpquery import parse_pairs

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "reference" / "b24-examples"
TIMEOUT = 10


def example(name: str) -> Any:
    """A verbatim Bitrix24 sample from ``shared/reference/b24-examples`` (JSON decoded)."""
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def iframe_keys(name: str) -> list[str]:
    """The keys of a PHP ``print_r`` sample of what an app frame receives."""
    keys = []
    for raw in (EXAMPLES / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("[") and "] =>" in line:
            keys.append(line[1 : line.index("]")])
    return keys


# -- REST -----------------------------------------------------------------------------------
def hook(server: EmulatorServer, method: str, params: dict[str, Any] | None = None,
         *, url: str | None = None) -> requests.Response:
    """POST a JSON body to the incoming-webhook URL, as fast-bitrix24 does."""
    base = url or server.portal.webhook_url
    return requests.post(base + method, json=params or {}, timeout=TIMEOUT)


def oauth(server: EmulatorServer, token: str, method: str,
          params: dict[str, Any] | None = None) -> requests.Response:
    """POST a JSON body with ``auth`` to ``/rest/<method>`` (OAuth mode)."""
    body = {**(params or {}), "auth": token}
    return requests.post(server.portal.client_endpoint + method, json=body, timeout=TIMEOUT)


def refresh(server: EmulatorServer, refresh_token: str, *, post: bool = False,
            client_secret: str | None = None) -> requests.Response:
    """Ask the OAuth server for a new pair (GET query, or POST form as CRest does)."""
    app = server.portal.app
    args = {"grant_type": "refresh_token", "client_id": app.client_id,
            "client_secret": app.client_secret if client_secret is None else client_secret,
            "refresh_token": refresh_token}
    url = f"{server.url}/oauth/token/"
    if post:
        return requests.post(url, data=args, timeout=TIMEOUT)
    return requests.get(url, params=args, timeout=TIMEOUT)


def admin_token(portal: Portal, user_id: int = 1) -> str:
    """A fresh access token of ``user_id`` for the portal's app."""
    access, _ = portal.auth.issue(portal.app.client_id, user_id)
    return access.token


def add_user(portal: Portal, name: str, *, admin: bool = False, active: bool = True,
             departments: list[int] | None = None, user_type: str = "employee") -> int:
    """Insert an employee and return the ID."""
    return portal.users.insert({"NAME": name, "LAST_NAME": "Тестов", "ACTIVE": active,
                                "IS_ADMIN": admin, "UF_DEPARTMENT": departments or [1],
                                "USER_TYPE": user_type})


# -- handler receiver -----------------------------------------------------------------------
@dataclass
class Hit:
    """One POST a handler received."""

    path: str
    query: dict[str, str]
    pairs: list[tuple[str, str]]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def form(self) -> dict[str, str]:
        """Flat bracketed keys to values, exactly as on the wire."""
        return dict(self.pairs)

    @property
    def nested(self) -> dict[str, Any]:
        """The body parsed the PHP way (``auth[domain]`` → ``{'auth': {'domain': ...}}``)."""
        return parse_pairs(self.pairs)


class Receiver:
    """A tiny HTTP server on 127.0.0.1:<free port> that records every POST it gets."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hits: list[Hit] = []
        self._cv = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                parts = urlsplit(self.path)
                hit = Hit(parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                          parse_qsl(body, keep_blank_values=True), dict(self.headers.items()))
                # Record before answering: the sender may look right after the response.
                with receiver._cv:
                    receiver.hits.append(hit)
                    receiver._cv.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output clean."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/handler") -> str:
        """The URL of ``path`` on this receiver."""
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def wait(self, count: int, timeout: float = 5.0) -> list[Hit]:
        """Block until ``count`` hits arrived (or time out) and return all hits."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.hits) < count and time.monotonic() < deadline:
                self._cv.wait(timeout=0.05)
            return list(self.hits)

    def on(self, path: str) -> list[Hit]:
        """Hits that arrived at ``path``."""
        with self._cv:
            return [h for h in self.hits if h.path == path]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def dead_url(path: str = "/handler") -> str:
    """A loopback URL on which nothing listens (a handler that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# -- install --------------------------------------------------------------------------------
@dataclass
class Installed:
    """What the app learned from its install: tokens and the application token."""

    access: str
    refresh: str
    application_token: str
    hit: Hit


def install(server: EmulatorServer, receiver: Receiver, path: str = "/install") -> Installed:
    """Install the app "API only": the portal POSTs ONAPPINSTALL to ``path``."""
    result = server.portal.install_app(receiver.url(path))
    assert result.status is not None, result.error
    hit = receiver.on(path)[-1]
    form = hit.form
    return Installed(form["auth[access_token]"], form["auth[refresh_token]"],
                     form["auth[application_token]"], hit)


def bind(server: EmulatorServer, token: str, event: str, handler: str,
         **extra: Any) -> requests.Response:
    """``event.bind`` through OAuth; asserts success."""
    resp = oauth(server, token, "event.bind", {"event": event, "handler": handler, **extra})
    assert resp.status_code == 200, resp.text
    return resp


def emit(server: EmulatorServer, token: str, event: str, key: str, object_id: int,
         **extra: Any) -> requests.Response:
    """Announce a CRM-style change ``data[FIELDS][ID]`` through ``b24emu.events.emit``."""
    resp = oauth(server, token, "b24emu.events.emit",
                 {"event": event, "key": key, "data": {"FIELDS": {"ID": object_id}}, **extra})
    assert resp.status_code == 200, resp.text
    return resp


def quick_install(server: EmulatorServer, user_id: int = 1) -> tuple[str, str]:
    """Install the app (nobody listens on the install URL); a token pair of ``user_id``."""
    server.portal.install_app(dead_url("/install"))
    access, refresh_ = server.portal.auth.issue(server.portal.app.client_id, user_id)
    return access.token, refresh_.token
