"""The demo's working day: a badly set task, an unanswered request, a timely answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from b24app.demo.stack import DemoStack
from b24app.jobs import sla_minute
from b24emu.dispatch import act

SALES = "Отдел продаж"
PROCUREMENT = "Закупки"


@dataclass
class Cast:
    """Who plays in the scenario, found in the portal's org chart."""

    head: int  # РОП
    reps: list[int]
    buyer: int  # a procurement employee
    names: dict[int, str] = field(default_factory=dict)


def cast_of(stack: DemoStack) -> Cast:
    """The РОП, the reps and a buyer of the demo portal."""
    portal = stack.portal
    depts = {row["NAME"]: row for row in portal.departments}
    names = {row["ID"]: f"{row['NAME']} {row['LAST_NAME']}" for row in portal.users}
    sales, buyers = depts[SALES], depts[PROCUREMENT]
    reps = [row["ID"] for row in portal.users
            if sales["ID"] in row.get("UF_DEPARTMENT", []) and row["ID"] != sales["UF_HEAD"]]
    buyer = next(row["ID"] for row in portal.users if buyers["ID"] in row.get("UF_DEPARTMENT", []))
    return Cast(sales["UF_HEAD"], reps, buyer, names)


def _at(stack: DemoStack, minutes: float) -> None:
    stack.portal.clock.advance(timedelta(minutes=minutes).total_seconds())


def _task(stack: DemoStack, creator: int, fields: dict[str, Any]) -> int:
    result = act(stack.portal, "tasks.task.add", {"fields": fields}, user_id=creator)
    return int(result["task"]["id"])


@dataclass
class Story:
    """What the scenario did, for the printout."""

    bad_task: int = 0
    request_task: int = 0
    answered_task: int = 0
    events: int = 0
    lines: list[str] = field(default_factory=list)


def working_day(stack: DemoStack, cast: Cast) -> Story:
    """Monday morning: three tasks; the clock runs to the warning and the breach."""
    story = Story()
    rep1, rep2, rep3, rep4 = cast.reps[:4]
    now = stack.portal.clock.now
    _at(stack, 5)  # 09:05
    story.bad_task = _task(stack, rep1, {"TITLE": "Срочно", "RESPONSIBLE_ID": rep2})
    _at(stack, 5)  # 09:10: a request to procurement that nobody answers
    deadline = (now() + timedelta(days=2)).isoformat()
    story.request_task = _task(stack, rep3, {
        "TITLE": "Проверить наличие петель Blum CLIP top для ООО «Кухни Сибири»",
        "RESPONSIBLE_ID": cast.buyer, "DEADLINE": deadline})
    story.answered_task = _task(stack, rep4, {
        "TITLE": "Подготовить КП на подъёмники AVENTOS для мебельной фабрики",
        "RESPONSIBLE_ID": rep2, "DEADLINE": deadline})
    story.events += stack.drain()
    sla_minute(stack.ctx)
    _at(stack, 30)  # 09:40: the colleague answers the second task in time
    act(stack.portal, "task.commentitem.add",
        {"0": story.answered_task, "1": {"POST_MESSAGE": "Взял в работу, КП будет к обеду."}},
        user_id=rep2)
    story.events += stack.drain()
    _at(stack, 60)  # 10:40: 90 working minutes of the request have passed
    sla_minute(stack.ctx)
    _at(stack, 30)  # 11:10: 120 working minutes: a breach
    story.events += stack.drain()
    sla_minute(stack.ctx)
    _at(stack, 5)  # 11:15: the rep fixes the badly set task
    act(stack.portal, "tasks.task.update", {"taskId": story.bad_task, "fields": {
        "TITLE": "Согласовать с клиентом замену направляющих TANDEM", "DEADLINE": deadline}},
        user_id=rep1)
    story.events += stack.drain()
    sla_minute(stack.ctx)
    return story
