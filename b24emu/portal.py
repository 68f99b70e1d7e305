"""The state of one emulated Bitrix24 portal and its install lifecycle."""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from b24emu.auth import ALL_SCOPES, App, AuthServer, Webhook
from b24emu.clock import Clock
from b24emu.events import DeliveryResult, EventBus
from b24emu.faults import Faults
from b24emu.limits import LeakyBucket, LimitSettings, OperatingBudget
from b24emu.schema.crm import ACTIVITY, COMPANY, CONTACT, DEAL
from b24emu.schema.org import DEPARTMENT, GROUP, USER
from b24emu.schema.tasks import TASK
from b24emu.store import Table


@dataclass
class PortalConfig:
    """Everything that shapes a portal; all of it has a test-friendly default."""

    seed: int = 1
    timezone: str = "Asia/Novosibirsk"
    limits: LimitSettings = field(default_factory=LimitSettings)
    access_ttl: int = 3600
    refresh_ttl: int = 180 * 86400
    revoke_old_access_on_refresh: bool = True
    delivery_timeout: float = 5.0
    app_scopes: frozenset[str] = ALL_SCOPES
    new_task_card: bool = False


class Portal:
    """One portal: tables, apps and tokens, limits, faults and the event bus."""

    def __init__(self, config: PortalConfig | None = None) -> None:
        self.config = config or PortalConfig()
        cfg = self.config
        rng = random.Random(cfg.seed)  # noqa: S311 - seeded ids for reproducible portals
        self.tz = ZoneInfo(cfg.timezone)
        self.clock = Clock()
        self.lock = threading.RLock()
        self.limits = cfg.limits
        self.bucket = LeakyBucket(self.limits)
        self.budget = OperatingBudget(self.limits)
        self.faults = Faults()
        self.auth = AuthServer(self.clock, cfg.access_ttl, cfg.refresh_ttl,
                               cfg.revoke_old_access_on_refresh)
        self.events = EventBus(self, cfg.delivery_timeout)
        self.base_url = "http://127.0.0.1"
        self.member_id = hashlib.md5(f"nois-{cfg.seed}".encode()).hexdigest()  # noqa: S324
        client_id = f"local.{rng.getrandbits(52):013x}.{rng.randrange(10**7, 10**8)}"
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        secret = "".join(rng.choice(alphabet) for _ in range(50))
        self.app: App = self.auth.add_app(client_id, secret, cfg.app_scopes)
        self.webhook: Webhook = self.auth.add_webhook(1, f"{rng.getrandbits(64):016x}")
        # Organisation.
        self.users = Table("user", USER)
        self.departments = Table("department", DEPARTMENT)
        self.groups = Table("sonet_group", GROUP)
        self.group_members: dict[int, set[int]] = {}
        # CRM.
        self.deals = Table("deal", DEAL)
        self.companies = Table("company", COMPANY)
        self.contacts = Table("contact", CONTACT)
        self.activities = Table("activity", ACTIVITY)
        self.timeline_comments = Table("timeline_comment")
        self.userfields = Table("userfield")
        self.crm_types = Table("crm_type")
        self.items: dict[int, Table] = {}
        self.stage_history = Table("stage_history")
        # Tasks.
        self.tasks = Table("task", TASK)
        self.task_comments = Table("task_comment")
        self.task_history = Table("task_history")
        self.task_chat = Table("task_chat_message")
        # Messenger and app-level state.
        self.notifications = Table("notification")
        self.placements: list[dict[str, Any]] = []
        self.calendar_settings: dict[str, Any] = default_calendar_settings()
        self.anchor: str = ""

    # -- endpoints -------------------------------------------------------------------------
    @property
    def domain(self) -> str:
        """The portal's host as events and install payloads name it."""
        return self.base_url.split("://", 1)[-1]

    @property
    def client_endpoint(self) -> str:
        """REST root for OAuth calls."""
        return f"{self.base_url}/rest/"

    @property
    def server_endpoint(self) -> str:
        """The OAuth server's REST root (``oauth.bitrix.info/rest/`` on the real cloud)."""
        return f"{self.base_url}/oauth/rest/"

    @property
    def webhook_url(self) -> str:
        """The incoming-webhook URL of the portal's admin."""
        return f"{self.base_url}/rest/{self.webhook.user_id}/{self.webhook.secret}/"

    def base_auth(self, application_token: str) -> dict[str, Any]:
        """The token-less ``auth`` block (outgoing webhooks, automation, uninstall)."""
        return {"domain": self.domain, "client_endpoint": self.client_endpoint,
                "server_endpoint": self.server_endpoint, "member_id": self.member_id,
                "application_token": application_token}

    def describe(self) -> dict[str, Any]:
        """The JSON line ``b24app emulator`` prints."""
        return {"portal_url": self.base_url, "webhook_url": self.webhook_url,
                "client_id": self.app.client_id, "client_secret": self.app.client_secret,
                "oauth_url": f"{self.base_url}/oauth/token/", "member_id": self.member_id,
                "anchor": self.anchor}

    # -- install lifecycle -----------------------------------------------------------------
    def install_app(self, install_url: str, *, user_id: int = 1, ui: bool = False,
                    version: int = 1) -> DeliveryResult:
        """Install the local app as an admin would; POSTs what Bitrix24 POSTs."""
        app = self.app
        with self.lock:
            if not app.application_token or not (app.installed or app.install_pending):
                app.application_token = secrets.token_hex(16)
            if version != app.version:
                self.events.drop_owner(app.client_id)  # Handlers are dropped per version.
            app.version = version
            app.install_url = install_url
            if ui:
                app.install_pending = True
            else:
                app.installed = True
            access, refresh = self.auth.issue(app.client_id, user_id)
        if ui:
            return self.open_app(install_url, user_id=user_id, access=access.token,
                                 refresh=refresh.token)
        payload = {
            "event": "ONAPPINSTALL",
            "data": {"VERSION": str(version), "ACTIVE": "Y", "INSTALLED": "Y",
                     "LANGUAGE_ID": "ru"},
            "ts": str(int(self.clock.timestamp())),
            # Exactly the keys of the documented sample (event-ONAPPINSTALL.json): no
            # ``expires``/``user_id``, so the app cannot come to rely on undocumented keys.
            "auth": {"domain": self.domain, "scope": ",".join(sorted(app.scopes)),
                     "access_token": access.token, "refresh_token": refresh.token,
                     "expires_in": str(self.auth.access_ttl),
                     "server_endpoint": self.server_endpoint, "status": "L",
                     "client_endpoint": self.client_endpoint, "member_id": self.member_id,
                     "application_token": app.application_token},
        }
        return self.events.post(install_url, payload)

    def finish_install(self) -> None:
        """What ``BX24.installFinish()`` does in the admin's browser."""
        with self.lock:
            self.app.installed = True
            self.app.install_pending = False

    def open_app(self, url: str, *, user_id: int = 1, placement: str = "DEFAULT",
                 options: dict[str, Any] | None = None, access: str = "",
                 refresh: str = "") -> DeliveryResult:
        """POST what the app frame (handler, install page or widget) receives when opened."""
        app = self.app
        if not access:
            issued, refreshed = self.auth.issue(app.client_id, user_id)
            access, refresh = issued.token, refreshed.token
        query = (f"DOMAIN={self.domain}&PROTOCOL=0&LANG=ru&APP_SID={secrets.token_hex(16)}")
        sep = "&" if "?" in url else "?"
        form: dict[str, Any] = {
            "AUTH_ID": access, "AUTH_EXPIRES": str(self.auth.access_ttl), "REFRESH_ID": refresh,
            "SERVER_ENDPOINT": self.server_endpoint, "APPLICATION_TOKEN": app.application_token,
            "APPLICATION_SCOPE": ",".join(sorted(app.scopes)), "member_id": self.member_id,
            "status": "L", "PLACEMENT": placement,
        }
        if options is not None:
            form["PLACEMENT_OPTIONS"] = json.dumps(options)
        return self.events.post(f"{url}{sep}{query}", form)

    def uninstall_app(self, *, clean: bool = False) -> list[DeliveryResult]:
        """Delete the app: tell its ONAPPUNINSTALL handlers, then forget everything of it."""
        app = self.app
        results: list[DeliveryResult] = []
        handlers = [b for b in self.events.bindings
                    if b.owner == app.client_id and b.event == "ONAPPUNINSTALL"]
        payload = {"event": "ONAPPUNINSTALL",
                   "data": {"LANGUAGE_ID": "ru", "CLEAN": "1" if clean else "0"},
                   "ts": str(int(self.clock.timestamp())),
                   "auth": self.base_auth(app.application_token)}
        with self.lock:
            app.installed = False
            app.install_pending = False
            app.options.clear()
            self.placements = [p for p in self.placements if p.get("_owner") != app.client_id]
            self.events.drop_owner(app.client_id)
            self.auth.revoke_app(app.client_id)
        for b in handlers:
            results.append(self.events.post(b.handler, {**payload, "event_handler_id": str(b.id)}))
        return results

    # -- helpers for methods ---------------------------------------------------------------
    def user_is_admin(self, user_id: int) -> bool:
        """Whether a user administers the portal."""
        row = self.users.get(user_id)
        return bool(row and row.get("IS_ADMIN"))

    def item_table(self, entity_type_id: int) -> Table | None:
        """The table behind ``crm.item.*`` for an entity type id, if it exists."""
        return {2: self.deals, 3: self.contacts, 4: self.companies}.get(
            entity_type_id, self.items.get(entity_type_id))


def default_calendar_settings() -> dict[str, Any]:
    """``calendar.settings.get`` of a Russian portal as the admin set it up."""
    return {
        "work_time_start": "9",
        "work_time_end": "17.30",
        "year_holidays": "1.01,2.01,3.01,4.01,5.01,6.01,7.01,8.01,23.02,8.03,1.05,9.05,12.06,4.11",
        "year_workdays": "",
        "week_holidays": ["SA", "SU"],
        "week_start": "MO",
        "user_name_template": "#NAME# #LAST_NAME#",
        "sync_by_push": False,
        "user_show_login": True,
        "path_to_user": "/company/personal/user/#user_id#/",
        "path_to_user_calendar": "/company/personal/user/#user_id#/calendar/",
        "path_to_group": "/workgroups/group/#group_id#/",
        "path_to_group_calendar": "/workgroups/group/#group_id#/calendar/",
        "path_to_vr": "",
        "path_to_rm": "",
        "rm_iblock_type": "",
        "rm_iblock_id": "",
        "dep_manager_sub": True,
        "denied_superpose_types": [],
        "pathes_for_sites": "",
        "forum_id": "8",
        "rm_for_sites": True,
        "path_to_type_company_calendar": "",
        "path_to_type_location": "",
        "path_to_type_open_event": "",
    }
