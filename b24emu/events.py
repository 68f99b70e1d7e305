"""Event bindings, online delivery (form-encoded POSTs, no retries) and the offline queue."""

from __future__ import annotations

import hashlib
import heapq
import itertools
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from b24emu.phpquery import flatten
from b24emu.timefmt import render_dt

if TYPE_CHECKING:
    from b24emu.portal import Portal

KNOWN_EVENTS = frozenset(
    f"ONCRM{entity}{verb}"
    for entity in ("DEAL", "CONTACT", "COMPANY", "LEAD", "ACTIVITY", "DYNAMICITEM",
                   "TIMELINECOMMENT")
    for verb in ("ADD", "UPDATE", "DELETE")
) | frozenset({
    "ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD", "ONTASKCOMMENTUPDATE",
    "ONTASKCOMMENTDELETE", "ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONAPPTEST",
    "ONOFFLINEEVENT", "ONUSERADD", "ONCRMDEALUSERFIELDADD",
})

# The REST request ("hit") being served: ONOFFLINEEVENT with minTimeout 0 fires once per hit.
CURRENT_HIT: ContextVar[object | None] = ContextVar("b24emu_hit", default=None)

# Events whose auth block carries a refresh token (long-lived handlers).
LONG_LIVED = frozenset({"ONAPPINSTALL", "ONOFFLINEEVENT"})


@dataclass
class Actor:
    """Who made a change: a user, through an app or a webhook, or automation (no tokens)."""

    user_id: int
    automation: bool = False
    client_id: str | None = None
    auth_connector: str | None = None


@dataclass
class Binding:
    """A handler bound with ``event.bind`` (or an outgoing webhook's event)."""

    id: int
    event: str
    handler: str
    owner: str
    auth_type: int = 0
    offline: bool = False
    auth_connector: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def as_api(self) -> dict[str, Any]:
        """The row ``event.get`` returns."""
        return {"event": self.event, "handler": self.handler, "auth_type": str(self.auth_type),
                "offline": 1 if self.offline else 0}


@dataclass
class OutgoingWebhook:
    """An outgoing webhook: a handler URL, events and the token Bitrix24 shows in its form."""

    id: int
    handler: str
    events: frozenset[str]
    application_token: str


@dataclass(order=True)
class Delivery:
    """A queued POST to a handler."""

    due: float
    seq: int
    url: str = field(compare=False)
    body: str = field(compare=False)
    event: str = field(compare=False)


@dataclass
class DeliveryResult:
    """What happened to one delivery (for tests)."""

    event: str
    url: str
    status: int | None
    error: str
    ts: float
    body: str

    def as_api(self) -> dict[str, Any]:
        """Row for ``b24emu.events.log``."""
        return {"event": self.event, "url": self.url, "status": self.status,
                "error": self.error, "ts": self.ts, "body": self.body}


class EventBus:
    """Queues, delivers and logs events; keeps offline records (latest per object)."""

    def __init__(self, portal: Portal, timeout: float = 5.0) -> None:
        self.portal = portal
        self.timeout = timeout
        self.bindings: list[Binding] = []
        self.outgoing: list[OutgoingWebhook] = []
        self.offline: dict[int, dict[str, Any]] = {}
        self.log: list[DeliveryResult] = []
        self.dropped: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._offline_ids = itertools.count(1)
        self._seq = itertools.count()
        self._heap: list[Delivery] = []
        self._cv = threading.Condition()
        self._inflight = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._last_offline_ping: dict[int, float] = {}
        self._last_offline_hit: dict[int, object | None] = {}

    def resume_ids(self) -> None:
        """Continue ID counters after restored state."""
        last_binding = max([b.id for b in self.bindings] + [0])
        self._ids = itertools.count(last_binding + 1)
        self._offline_ids = itertools.count(max([int(k) for k in self.offline] + [0]) + 1)

    # -- bindings ---------------------------------------------------------------------------
    def bind(self, event: str, handler: str, owner: str, *, auth_type: int = 0,
             offline: bool = False, auth_connector: str = "",
             options: Mapping[str, Any] | None = None) -> Binding | None:
        """Add a binding; ``None`` when the same one exists already."""
        event = event.upper()
        for b in self.bindings:
            if (b.event, b.handler, b.owner, b.offline) == (event, handler, owner, offline):
                return None
        binding = Binding(next(self._ids), event, handler, owner, auth_type, offline,
                          auth_connector, dict(options or {}))
        self.bindings.append(binding)
        return binding

    def unbind(self, event: str, handler: str, owner: str, *, auth_type: int | None = None,
               offline: bool | None = None) -> int:
        """Remove matching bindings; returns how many."""
        event = event.upper()
        keep: list[Binding] = []
        removed = 0
        for b in self.bindings:
            hit = (b.event == event and b.owner == owner and handler in ("", b.handler)
                   and (auth_type is None or b.auth_type == auth_type)
                   and (offline is None or b.offline == offline))
            if hit:
                removed += 1
            else:
                keep.append(b)
        self.bindings = keep
        return removed

    def drop_owner(self, owner: str) -> None:
        """Forget every binding and offline record of an app (uninstall, new version)."""
        self.bindings = [b for b in self.bindings if b.owner != owner]
        self.offline = {k: v for k, v in self.offline.items() if v["_owner"] != owner}

    # -- emitting ---------------------------------------------------------------------------
    def emit(self, event: str, data: dict[str, Any], actor: Actor, object_key: str = "") -> None:
        """A change happened: queue online deliveries and upsert offline records."""
        event = event.upper()
        now = self.portal.clock.timestamp()
        for b in list(self.bindings):
            if b.event != event:
                continue
            app = self.portal.auth.apps.get(b.owner)
            if app is None or not app.installed:
                continue  # Bitrix24 delivers nothing before the install is finished.
            if b.offline:
                if actor.auth_connector and actor.auth_connector == b.auth_connector:
                    continue
                self._offline_upsert(b, event, {"data": data, "actor": actor,
                                                "key": object_key}, now)
            else:
                auth = self._auth_block(b, actor, event)
                self._enqueue(b.handler, self._payload(event, b.id, data, auth, now), event)
        for hook in self.outgoing:
            if event in hook.events:
                auth = self.portal.base_auth(hook.application_token)
                self._enqueue(hook.handler, self._payload(event, hook.id, data, auth, now), event)

    def _payload(self, event: str, handler_id: int, data: Any, auth: dict[str, Any],
                 now: float) -> dict[str, Any]:
        return {"event": event, "event_handler_id": str(handler_id), "data": data,
                "ts": str(int(now)), "auth": auth}

    def _auth_block(self, binding: Binding, actor: Actor, event: str) -> dict[str, Any]:
        app = self.portal.auth.apps[binding.owner]
        auth = {**self.portal.base_auth(app.application_token), "status": "L"}
        if actor.automation and not binding.auth_type:
            return auth  # Automation rules, workflows and agents carry no tokens.
        user_id = binding.auth_type or actor.user_id
        access, refresh = self.portal.auth.issue(app.client_id, user_id)
        auth = {"access_token": access.token, "expires_in": str(self.portal.auth.access_ttl),
                "scope": ",".join(sorted(app.scopes)), **auth}
        if event in LONG_LIVED:
            auth["refresh_token"] = refresh.token
        return auth

    def _offline_upsert(self, b: Binding, event: str, record: dict[str, Any],
                        now: float) -> None:
        """Keep one record per object: a pending record of it is updated, not duplicated."""
        actor: Actor = record["actor"]
        message_id = hashlib.md5(  # noqa: S324 - an identifier, not security
            f"{b.owner}|{b.auth_connector}|{event}|{record['key']}".encode()).hexdigest()
        stamp = render_dt(self.portal.clock.now(), self.portal.tz)
        additional = {"user_id": str(actor.user_id)}
        for rec in self.offline.values():
            # Reserved or error-marked records stay as they are; the change gets a new one.
            if rec["MESSAGE_ID"] == message_id and not rec["PROCESS_ID"] and rec["ERROR"] == "0":
                rec.update(TIMESTAMP_X=stamp, EVENT_DATA=record["data"], _ts=now,
                           EVENT_ADDITIONAL=additional)
                break
        else:
            rec_id = next(self._offline_ids)
            self.offline[rec_id] = {
                "ID": str(rec_id), "TIMESTAMP_X": stamp, "EVENT_NAME": event,
                "EVENT_DATA": record["data"], "EVENT_ADDITIONAL": additional,
                "MESSAGE_ID": message_id, "PROCESS_ID": "", "ERROR": "0", "_owner": b.owner,
                "_connector": b.auth_connector, "_ts": now,
            }
        # Every hit on the queue counts for ONOFFLINEEVENT, an update of a pending record too.
        self._ping_offline(b.owner, actor, now)

    def _ping_offline(self, owner: str, actor: Actor, now: float) -> None:
        """Send ONOFFLINEEVENT to online handlers of the app, at most once per ``minTimeout``."""
        hit = CURRENT_HIT.get()
        for b in self.bindings:
            if b.owner != owner or b.event != "ONOFFLINEEVENT" or b.offline:
                continue
            gap = float(b.options.get("minTimeout", 1) or 0)
            if gap <= 0:
                # minTimeout 0: one notification per hit, however many events it queued
                # (on-offline-event.md).
                if hit is not None and self._last_offline_hit.get(b.id) is hit:
                    continue
                self._last_offline_hit[b.id] = hit
            elif now - self._last_offline_ping.get(b.id, -1e18) < gap:
                continue
            self._last_offline_ping[b.id] = now
            auth = self._auth_block(b, Actor(user_id=actor.user_id), "ONOFFLINEEVENT")
            self._enqueue(b.handler, self._payload("ONOFFLINEEVENT", b.id, [], auth, now),
                          "ONOFFLINEEVENT")

    # -- delivery ---------------------------------------------------------------------------
    def _enqueue(self, url: str, payload: dict[str, Any], event: str) -> None:
        faults = self.portal.faults
        if faults.fire("drop_events", event):
            self.dropped.append(payload)
            return
        copies = 2 if faults.fire("duplicate_events", event) else 1
        delay_rule = faults.fire("delay_events", event)
        delay = delay_rule.value if delay_rule else 0.0
        body = urlencode([(k, v) for k, v in flatten(payload, skip_empty=True)])
        with self._cv:
            for _ in range(copies):
                heapq.heappush(self._heap, Delivery(time.monotonic() + delay, next(self._seq),
                                                    url, body, event))
            self._cv.notify_all()

    def post(self, url: str, payload: Mapping[str, Any]) -> DeliveryResult:
        """POST a payload right now (install flows), logging the outcome."""
        body = urlencode([(k, v) for k, v in flatten(payload, skip_empty=True)])
        return self._send(Delivery(0, 0, url, body, str(payload.get("event", ""))))

    def start(self) -> None:
        """Start the delivery thread."""
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="b24emu-events", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop delivering (queued events stay queued)."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and (not self._heap or self._heap[0].due > time.monotonic()):
                    wait = self._heap[0].due - time.monotonic() if self._heap else None
                    self._cv.wait(timeout=wait)
                if self._stop:
                    return
                item = heapq.heappop(self._heap)
                self._inflight += 1
            try:
                self._send(item)
            finally:
                with self._cv:
                    self._inflight -= 1
                    self._cv.notify_all()

    def _send(self, item: Delivery) -> DeliveryResult:
        req = urllib.request.Request(  # noqa: S310 - handler URLs are configured by the test
            item.url, data=item.body.encode(), method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded",
                     "User-Agent": "Bitrix24 Webhook Engine"})
        status: int | None = None
        error = ""
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                status = resp.status
        except urllib.error.HTTPError as exc:
            status, error = exc.code, str(exc.reason)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(exc)  # Handler down: Bitrix24 logs it and never retries.
        result = DeliveryResult(item.event, item.url, status, error, time.time(), item.body)
        self.log.append(result)
        return result

    def pending(self) -> int:
        """Deliveries queued or in flight."""
        with self._cv:
            return len(self._heap) + self._inflight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or in flight; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._heap or self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(timeout=min(left, 0.05))
        return True

    def add_outgoing(self, handler: str, events: list[str]) -> OutgoingWebhook:
        """Create an outgoing webhook; returns it with its application token."""
        hook = OutgoingWebhook(1000 + len(self.outgoing), handler,
                               frozenset(e.upper() for e in events), secrets.token_hex(16))
        self.outgoing.append(hook)
        return hook
