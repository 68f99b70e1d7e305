"""Read the whole portal back through fast-bitrix24 and summarise it honestly (in Russian)."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from b24app.gateway.client import BitrixClient
from b24app.gateway.types import Activity, Company, Contact, Deal, Department, Group, Task, User

TZ = ZoneInfo("Asia/Novosibirsk")
ACTIVITY_KINDS = {1: "встречи", 2: "звонки", 3: "задачи", 4: "письма", 6: "дела"}


@dataclass
class PortalRead:
    """Everything read back from the portal, with what it cost."""

    users: list[User] = field(default_factory=list)
    departments: list[Department] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    seconds: float = 0.0
    requests: int = 0
    commands: int = 0


def read_portal(client: BitrixClient) -> PortalRead:
    """Read every table the service cares about through fast-bitrix24 (chained exports)."""
    started = time.perf_counter()
    read = PortalRead()
    read.users = [User.from_wire(r) for p in client.iter_offset("user.get") for r in p]
    read.departments = [Department.from_wire(r) for p in client.iter_offset("department.get")
                        for r in p]
    read.groups = [Group.from_wire(r) for p in client.iter_offset("sonet_group.get") for r in p]
    read.companies = [Company.from_wire(r) for p in client.iter_pages(
        "crm.company.list", {"select": ["*", "UF_*"]}) for r in p]
    read.contacts = [Contact.from_wire(r) for p in client.iter_pages(
        "crm.contact.list", {"select": ["*", "UF_*"]}) for r in p]
    read.deals = [Deal.from_wire(r) for p in client.iter_pages(
        "crm.deal.list", {"select": ["*", "UF_*"]}) for r in p]
    read.activities = [Activity.from_wire(r) for p in client.iter_pages(
        "crm.activity.list", {"select": ["*"]}) for r in p]
    read.tasks = [Task.from_wire(r) for p in client.iter_pages(
        "tasks.task.list", {"select": ["ID", "TITLE", "STATUS", "CREATED_BY", "RESPONSIBLE_ID",
                                       "CREATED_DATE", "DEADLINE", "GROUP_ID", "CLOSED_DATE"]})
                  for r in p]
    read.seconds = time.perf_counter() - started
    read.requests = client.stats.requests
    read.commands = client.stats.commands
    return read


def _num(value: Decimal | int) -> str:
    return f"{value:,.0f}".replace(",", " ")


def _money(value: Decimal) -> str:
    return _num(value) + " ₽"


def summary_lines(read: PortalRead, now: datetime) -> list[str]:
    """An honest summary (in Russian, for the admin) of what the portal holds."""
    rows = sum(len(t) for t in (read.users, read.departments, read.groups, read.companies,
                                read.contacts, read.deals, read.activities, read.tasks))
    lines = [
        f"Прочитано через fast-bitrix24: {_num(rows)} записей за {read.seconds:.1f} с, "
        f"{read.requests} HTTP-запросов ({read.commands} команд в batch).",
    ]
    by_id = {u.id: u for u in read.users}
    heads = {d.name: by_id.get(d.head_id or 0) for d in read.departments}
    sales = next((d for d in read.departments if "продаж" in d.name.lower()), None)
    reps = [u for u in read.users if sales and sales.id in u.departments and u.id != sales.head_id]
    head = by_id.get(sales.head_id or 0) if sales else None
    lines.append(f"Сотрудники: {len(read.users)}; подразделения: {len(read.departments)} "
                 f"({', '.join(heads)}); рабочие группы: {', '.join(g.name for g in read.groups)}.")
    if sales:
        lines.append(f"Отдел продаж: РОП — {head.full_name if head else '—'}, "
                     f"менеджеров: {len(reps)}.")
    won = [d for d in read.deals if d.semantic == "S"]
    lost = [d for d in read.deals if d.semantic == "F"]
    open_ = [d for d in read.deals if d.semantic == "P"]
    lines.append(f"Клиенты: {len(read.companies)} компаний, {len(read.contacts)} контактов.")
    lines.append(f"Сделки: {len(read.deals)} — выиграно {len(won)} на "
                 f"{_money(sum((d.amount for d in won), Decimal(0)))}, проиграно {len(lost)}, "
                 f"в работе {len(open_)}.")
    kinds = Counter(a.type_id for a in read.activities)
    lines.append("Дела: " + ", ".join(f"{ACTIVITY_KINDS.get(k, k)} {n}"
                                      for k, n in sorted(kinds.items())) + ".")
    open_tasks = [t for t in read.tasks if t.status not in (4, 5)]
    lines.append(f"Задачи: {len(read.tasks)}, открыто {len(open_tasks)}.")
    lines.append("")
    lines.append(f"Продажи по менеджерам за 12 месяцев до {now.astimezone(TZ):%d.%m.%Y}:")
    year_ago = now.replace(year=now.year - 1)
    per_rep: dict[int, Decimal] = defaultdict(Decimal)
    clients: dict[int, set[int]] = defaultdict(set)
    for d in won:
        if d.close_date and d.close_date >= year_ago.astimezone(TZ).date():
            per_rep[d.assigned_by_id] += d.amount
            clients[d.assigned_by_id].add(d.company_id or 0)
    for rep in reps:
        lines.append(f"  {rep.full_name:<28} {_money(per_rep[rep.id]):>16}  "
                     f"клиентов с покупками: {len(clients[rep.id])}")
    return lines
