"""What an install (and every re-install) sets up on the portal: event bindings, fields, types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from b24app.config import Settings
from b24app.gateway.protocol import CrmType, Gateway, UserFieldSpec
from kpi.definitions import DEFINITIONS, KpiId

EVENTS_PATH = "/b24/events"

CRM_EVENTS = tuple(f"ONCRM{entity}{verb}" for entity in ("DEAL", "CONTACT", "COMPANY", "ACTIVITY")
                   for verb in ("ADD", "UPDATE", "DELETE"))
TASK_EVENTS = ("ONTASKADD", "ONTASKUPDATE", "ONTASKDELETE", "ONTASKCOMMENTADD")
# The offline queue is the loss-recovery twin of the online handlers; an uninstall has no
# offline meaning (the app and its queue are gone by then).
OFFLINE_EVENTS = CRM_EVENTS + TASK_EVENTS
ONLINE_EVENTS = (*OFFLINE_EVENTS, "ONAPPUNINSTALL")

# Two decimals: without PRECISION a double may be rounded to an integer when saved.
MONEY = {"PRECISION": 2}
COMPANY_FIELDS = (
    UserFieldSpec("UF_CRM_NOIS_LTV", "double", "LTV клиента", settings=dict(MONEY)),
    UserFieldSpec("UF_CRM_NOIS_LTV_12M", "double", "Покупки за 12 месяцев",
                  settings=dict(MONEY)),
    UserFieldSpec("UF_CRM_NOIS_LAST_PURCHASE", "date", "Дата последней покупки"),
    # Plain text, the Russian status («под угрозой»): enumeration item IDs differ per portal.
    UserFieldSpec("UF_CRM_NOIS_RETURN_STATUS", "string", "Статус возврата клиента"),
    UserFieldSpec("UF_CRM_NOIS_REGULAR", "boolean", "Постоянный клиент"),
    UserFieldSpec("UF_CRM_NOIS_NPS_LAST", "integer", "Последняя оценка NPS"),
    UserFieldSpec("UF_CRM_NOIS_NPS_DATE", "date", "Дата последней оценки NPS"),
    UserFieldSpec("UF_CRM_NOIS_CARD_UPDATED", "date", "Клиентская карта обновлена"),
    # Percent (71.43), as KPI shares are shown everywhere else.
    UserFieldSpec("UF_CRM_NOIS_SHARE", "double", "Доля NOIS в бюджете клиента, %",
                  settings=dict(MONEY)),
)
KPI_TYPE_CODE = "nois_kpi"
KPI_TYPE_TITLE = "KPI менеджера"
# Per KPI on the «KPI менеджера» item: postfix, user type, settings, label suffix.
KPI_PARTS: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    ("VALUE", "double", MONEY, "значение"),
    ("TARGET", "double", MONEY, "цель"),
    ("STATUS", "string", {}, "статус"),
)
KPI_PERIOD = "PERIOD"  # the month label, "2026-11": with the assignee, the item's identity


def kpi_field_name(type_settings_id: int, postfix: str) -> str:
    """A user field of «KPI менеджера»: ``UF_CRM_<type id>_<POSTFIX>`` (userfieldconfig rule)."""
    return f"UF_CRM_{type_settings_id}_{postfix}"


def kpi_part_name(type_settings_id: int, kpi: KpiId | str, part: str) -> str:
    """The value, target or status field of one KPI (``UF_CRM_7_VISITS_VALUE``)."""
    return kpi_field_name(type_settings_id, f"{KpiId(kpi).value.upper()}_{part}")


def kpi_item_fields(type_settings_id: int) -> tuple[UserFieldSpec, ...]:
    """Every user field of «KPI менеджера»: the period, then value/target/status per KPI."""
    specs = [UserFieldSpec(kpi_field_name(type_settings_id, KPI_PERIOD), "string", "Период")]
    specs += [UserFieldSpec(kpi_part_name(type_settings_id, kpi, part), user_type,
                            f"{DEFINITIONS[kpi].title}: {suffix}", settings=dict(settings))
              for kpi in KpiId for part, user_type, settings, suffix in KPI_PARTS]
    return tuple(specs)


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
    # The KPI item's fields are many (49): the present ones are counted, not listed.
    kpi_fields_created: list[str] = field(default_factory=list)
    kpi_fields_present: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything on the portal was changed."""
        return bool(self.bound or self.unbound or self.fields_created or self.types_created
                    or self.kpi_fields_created)

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
    create_kpi_fields(gateway, report, create_kpi_type(gateway, report))
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


def find_kpi_type(gateway: Gateway) -> CrmType | None:
    """The smart process «KPI менеджера» (by its code), if the portal has it."""
    return next((t for t in gateway.crm_types() if t.code.lower() == KPI_TYPE_CODE), None)


def create_kpi_type(gateway: Gateway, report: SetupReport) -> CrmType:
    """The smart process «KPI менеджера» that holds one KPI record per rep per month."""
    found = find_kpi_type(gateway)
    if found is not None:
        report.skipped.append(f"type {KPI_TYPE_CODE}")
        return found
    created = gateway.add_crm_type(KPI_TYPE_TITLE, KPI_TYPE_CODE)
    report.types_created.append(KPI_TYPE_CODE)
    return created


def create_kpi_fields(gateway: Gateway, report: SetupReport, kind: CrmType) -> None:
    """The period and the value/target/status fields of every KPI on «KPI менеджера»."""
    created = ensure_kpi_fields(gateway, kind)
    report.kpi_fields_created += created
    report.kpi_fields_present += len(kpi_item_fields(kind.id)) - len(created)


def ensure_kpi_fields(gateway: Gateway, kind: CrmType) -> list[str]:
    """Create the missing fields of «KPI менеджера»; returns the names created."""
    existing = {name.upper() for name in gateway.item_fields(kind.entity_type_id)}
    missing = [spec for spec in kpi_item_fields(kind.id) if spec.name not in existing]
    if not missing:
        return []
    outcome = gateway.add_item_userfields(kind.id, missing)
    failed = [error for error in outcome.values() if error is not None]
    if failed:
        raise failed[0]
    return [spec.name for spec in missing]
