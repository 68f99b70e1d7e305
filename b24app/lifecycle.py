"""What an install (and every re-install) sets up on the portal: event bindings, fields, types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from b24app.config import Settings
from b24app.gateway.protocol import Gateway, UserFieldSpec

EVENTS_PATH = "/b24/events"

CRM_EVENTS = tuple(f"ONCRM{entity}{verb}" for entity in ("DEAL", "CONTACT", "COMPANY", "ACTIVITY")
                   for verb in ("ADD", "UPDATE", "DELETE"))
TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD")
# The offline queue is the loss-recovery twin of the online handlers; an uninstall has no
# offline meaning (the app and its queue are gone by then).
OFFLINE_EVENTS = CRM_EVENTS + TASK_EVENTS
ONLINE_EVENTS = (*OFFLINE_EVENTS, "ONAPPUNINSTALL")

COMPANY_FIELDS = (
    UserFieldSpec("UF_CRM_NOIS_LTV", "double", "LTV клиента"),
    UserFieldSpec("UF_CRM_NOIS_LTV_12M", "double", "Покупки за 12 месяцев"),
    UserFieldSpec("UF_CRM_NOIS_LAST_PURCHASE", "date", "Дата последней покупки"),
    # Plain text (returning / at_risk / lost): an enumeration's item IDs differ per portal.
    UserFieldSpec("UF_CRM_NOIS_RETURN_STATUS", "string", "Статус возврата клиента"),
    UserFieldSpec("UF_CRM_NOIS_REGULAR", "boolean", "Постоянный клиент"),
    UserFieldSpec("UF_CRM_NOIS_NPS_LAST", "integer", "Последняя оценка NPS"),
    UserFieldSpec("UF_CRM_NOIS_NPS_DATE", "date", "Дата последней оценки NPS"),
    UserFieldSpec("UF_CRM_NOIS_CARD_UPDATED", "date", "Клиентская карта обновлена"),
    UserFieldSpec("UF_CRM_NOIS_SHARE", "double", "Доля NOIS в бюджете клиента"),
)
KPI_TYPE_CODE = "nois_kpi"
KPI_TYPE_TITLE = "KPI менеджера"


@dataclass
class SetupReport:
    """What ``setup_portal`` did: every item is created, bound, unbound or skipped."""

    version: str
    handler: str
    bound: list[str] = field(default_factory=list)
    unbound: list[str] = field(default_factory=list)
    fields_created: list[str] = field(default_factory=list)
    types_created: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything on the portal was changed."""
        return bool(self.bound or self.unbound or self.fields_created or self.types_created)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the install endpoint's answer, the CLI's output)."""
        return asdict(self)


def events_url(public_url: str) -> str:
    """The handler URL Bitrix24 POSTs events to."""
    return public_url.rstrip("/") + EVENTS_PATH


def setup_portal(gateway: Gateway, settings: Settings, public_url: str,
                 version: str) -> SetupReport:
    """Bind events, create the company fields and the KPI smart process; skip what exists."""
    report = SetupReport(version=version, handler=events_url(public_url))
    # Incoming webhooks cannot call event.bind (WRONG_AUTH_TYPE): outgoing webhooks are
    # configured by the admin in the portal's UI instead.
    if settings.portal.mode == "local_app":
        bind_events(gateway, report)
    create_company_fields(gateway, report)
    create_kpi_type(gateway, report)
    return report


def bind_events(gateway: Gateway, report: SetupReport) -> None:
    """Online handlers at ``report.handler`` and offline queues; stale handlers of ours go."""
    handler = report.handler
    bound = gateway.bound_events()
    online = {b.event.upper() for b in bound if not b.offline and b.handler == handler}
    offline = {b.event.upper() for b in bound if b.offline}
    for b in bound:
        # event.get lists only this app's handlers: an old public URL or a dropped event.
        ours = b.event.upper() in ONLINE_EVENTS or b.handler.rstrip("/").endswith(EVENTS_PATH)
        if not b.offline and b.handler != handler and ours:
            gateway.unbind_event(b.event, b.handler)
            report.unbound.append(f"{b.event.upper()} {b.handler}")
    for event in ONLINE_EVENTS:
        _bind(gateway, report, event, handler, offline=False, present=event in online)
    for event in OFFLINE_EVENTS:
        _bind(gateway, report, event, "", offline=True, present=event in offline)


def _bind(gateway: Gateway, report: SetupReport, event: str, handler: str, *, offline: bool,
          present: bool) -> None:
    label = f"{event} {'offline' if offline else 'online'}"
    if present or not gateway.bind_event(event, handler, offline=offline):
        report.skipped.append(f"event {label}")
    else:
        report.bound.append(label)


def create_company_fields(gateway: Gateway, report: SetupReport) -> None:
    """The ``UF_CRM_NOIS_*`` company fields the KPI write-back fills."""
    existing = {name.upper() for name in gateway.userfields("company")}
    for spec in COMPANY_FIELDS:
        if spec.name in existing:
            report.skipped.append(f"field {spec.name}")
        else:
            gateway.add_userfield("company", spec)
            report.fields_created.append(spec.name)


def create_kpi_type(gateway: Gateway, report: SetupReport) -> None:
    """The smart process «KPI менеджера» that holds one KPI record per rep per month."""
    if any(t.code.lower() == KPI_TYPE_CODE for t in gateway.crm_types()):
        report.skipped.append(f"type {KPI_TYPE_CODE}")
        return
    gateway.add_crm_type(KPI_TYPE_TITLE, KPI_TYPE_CODE)
    report.types_created.append(KPI_TYPE_CODE)
