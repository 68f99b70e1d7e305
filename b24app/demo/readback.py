"""Read the results back from the portal over REST: notifications, comments, cards, KPI items."""

from __future__ import annotations

from typing import Any

from b24app.demo.scenario import Cast, Story
from b24app.demo.stack import BURST, RATE, DemoStack
from b24app.gateway.client import BitrixClient
from b24app.kpi_jobs import Report

NOIS_FIELDS = {
    "UF_CRM_NOIS_LTV": "LTV", "UF_CRM_NOIS_LTV_12M": "покупки за 12 мес.",
    "UF_CRM_NOIS_LAST_PURCHASE": "последняя покупка", "UF_CRM_NOIS_RETURN_STATUS": "статус",
    "UF_CRM_NOIS_REGULAR": "постоянный", "UF_CRM_NOIS_NPS_LAST": "NPS",
    "UF_CRM_NOIS_SHARE": "доля НОИС, %",
}


def _first(text: str) -> str:
    return (text.splitlines() or [""])[0]


def readback_lines(stack: DemoStack, cast: Cast, story: Story, report: Report) -> list[str]:
    """What the portal now holds, read through its incoming webhook."""
    client = BitrixClient(stack.portal.webhook_url, requests_per_second=RATE, burst=BURST)
    try:
        return [*_notifications(client, cast), *_comments(client, story),
                *_card(client, report), *_kpi_item(client, cast, report)]
    finally:
        client.close()


def _notifications(client: BitrixClient, cast: Cast) -> list[str]:
    rows: list[dict[str, Any]] = client.call("b24emu.notifications.list").value
    lines = ["5. Уведомления в портале (im.notify, прочитаны из Битрикс24):"]
    for row in rows:
        user = int(row["USER_ID"])
        who = cast.names.get(user, f"#{user}") + (" (РОП)" if user == cast.head else "")
        lines.append(f"   → {who}: {_first(str(row['MESSAGE']))}")
    return lines


def _comments(client: BitrixClient, story: Story) -> list[str]:
    rows = client.call("task.commentitem.getlist", {"0": story.bad_task}).value
    lines = [f"6. Комментарии сервиса в задаче #{story.bad_task}:"]
    for row in sorted(rows, key=lambda r: int(r["ID"])):
        text = [t for t in str(row["POST_MESSAGE"]).splitlines() if t.strip()]
        lines.append(f"   [{str(row['POST_DATE'])[11:16]}] {text[0] if text else ''}")
        lines += [f"           {t}" for t in text[1:]]
    return lines


def _card(client: BitrixClient, report: Report) -> list[str]:
    best = max(report.companies, key=lambda c: c.ltv, default=None)
    if best is None:
        return []
    card = client.call("crm.company.get", {"id": best.company_id}).value
    values = "; ".join(f"{label}: {card.get(name) or '—'}" for name, label in NOIS_FIELDS.items())
    return [f"7. Карточка компании «{card['TITLE']}»: {values}."]


def _kpi_item(client: BitrixClient, cast: Cast, report: Report) -> list[str]:
    types = client.call("crm.type.list").value.get("types", [])
    kpi_type = next((t for t in types if t.get("code") == "nois_kpi"), None)
    if kpi_type is None:
        return ["8. Смарт-процесс «KPI менеджера» не найден."]
    rep = cast.reps[0]
    items = client.call("crm.item.list", {
        "entityTypeId": kpi_type["entityTypeId"], "useOriginalUfNames": "Y",
        "filter": {"assignedById": rep}}).value.get("items", [])
    item = next((i for i in items if report.period.label in str(i.get("title", ""))
                 or report.period.title in str(i.get("title", ""))), items[0] if items else None)
    if item is None:
        return [f"8. Карточка KPI менеджера {cast.names.get(rep)} не найдена."]
    prefix = f"UF_CRM_{kpi_type['id']}_"
    shown = [(k[len(prefix):], v) for k, v in item.items() if k.startswith(prefix)
             and k.endswith(("SALES_VOLUME_VALUE", "VISITS_VALUE", "VISITS_STATUS",
                             "RETURN_RATE_VALUE"))]
    values = "; ".join(f"{k}: {v}" for k, v in sorted(shown))
    return [f"8. Смарт-процесс «KPI менеджера»: «{item.get('title')}» (ответственный — "
            f"{cast.names.get(rep)}): {values}."]
