"""Tasks (``tasks.task.*``, REST v2): UPPER_CASE in, camelCase strings out, history, events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from b24emu.core import Call, Listed, method
from b24emu.errors import ApiError, task_core
from b24emu.events import Actor
from b24emu.phpquery import as_list
from b24emu.portal import Portal
from b24emu.schema.tasks import (
    META_ALMOST_OVERDUE,
    META_OVERDUE,
    META_UNVIEWED,
    STATUS_COMPLETED,
    STATUS_DEFERRED,
    STATUS_IN_PROGRESS,
    STATUS_NEW,
    STATUS_PENDING,
    STATUS_SUPPOSEDLY_COMPLETED,
    TASK,
)
from b24emu.serialize import camel, task_scalar
from b24emu.store import Condition, FieldDef, FilterError, parse_filter, parse_order, pick_start
from b24emu.timefmt import parse_dt, render_dt

CLOSED = (STATUS_SUPPOSEDLY_COMPLETED, STATUS_COMPLETED)
NOT_ALLOWED = "Action on the task is not allowed"
AVATAR = "/bitrix/images/tasks/default_avatar.png"

# What a row lacks (a generated dataset may store only a few keys) renders as a new task would.
DEFAULTS: dict[str, Any] = {
    "DESCRIPTION": "", "PRIORITY": 1, "MULTITASK": "N", "NOT_VIEWED": "N", "REPLICATE": "N",
    "STAGE_ID": 0, "ALLOW_CHANGE_DEADLINE": "N", "ALLOW_TIME_TRACKING": "N",
    "TASK_CONTROL": "N", "ADD_IN_REPORT": "N", "TIME_ESTIMATE": 0, "MATCH_WORK_TIME": "N",
    "SITE_ID": "s1", "SUBORDINATE": "N", "OUTLOOK_VERSION": 1, "IS_MUTED": "N",
    "IS_PINNED": "N", "IS_PINNED_IN_GROUP": "N", "DESCRIPTION_IN_BBCODE": "Y",
    "STATUS": STATUS_PENDING, "REAL_STATUS": STATUS_PENDING, "DURATION_TYPE": "days",
    "FAVORITE": "N", "GROUP_ID": 0, "ACCOMPLICES": [], "AUDITORS": [], "UF_CRM_TASK": [],
    "TAGS": [],
}
# Enums that hold numbers: compared as integers in filters.
INT_ENUMS = frozenset({"PRIORITY", "STATUS", "REAL_STATUS"})
FILTER_FIELDS: dict[str, FieldDef] = {
    n: replace(d, type="integer") if n in INT_ENUMS else d for n, d in TASK.items()}
FILTER_ALIASES = {"ACCOMPLICE": "ACCOMPLICES", "AUDITOR": "AUDITORS", "TAG": "TAGS"}
# What a client may write: every field not read-only, plus CREATED_DATE (imports) and STATUS.
WRITABLE = frozenset(n for n, d in TASK.items() if not d.read_only) | {"CREATED_DATE", "STATUS"}
TRACKED = ("TITLE", "DESCRIPTION", "PRIORITY", "MARK", "PARENT_ID", "GROUP_ID", "STAGE_ID",
           "CREATED_BY", "RESPONSIBLE_ID", "ACCOMPLICES", "AUDITORS", "DEADLINE",
           "START_DATE_PLAN", "END_DATE_PLAN", "DURATION_PLAN", "TIME_ESTIMATE", "TAGS",
           "ADD_IN_REPORT", "TASK_CONTROL", "ALLOW_TIME_TRACKING", "ALLOW_CHANGE_DEADLINE",
           "FLOW_ID")
# Rendered as "0" rather than null when empty (closedBy "0" while open, groupId "0").
ZERO_WHEN_EMPTY = frozenset({"CLOSED_BY", "GROUP_ID", "STAGE_ID", "TIME_ESTIMATE"})
SCALARS = [n for n, d in TASK.items()
           if not d.dynamic and n not in ("REAL_STATUS", "NEW_COMMENTS_COUNT", "TAGS")]


# -- who may do what ----------------------------------------------------------------------
@dataclass
class Viewer:
    """The caller's rights on tasks: admins see all, others their own, groups and staff."""

    user_id: int
    admin: bool
    groups: frozenset[int]
    staff: frozenset[int]

    @classmethod
    def of(cls, call: Call) -> Viewer:
        """Rights of the calling user."""
        portal, uid = call.portal, call.user_id
        if portal.user_is_admin(uid):
            return cls(uid, True, frozenset(), frozenset())
        groups = frozenset(g for g, users in portal.group_members.items() if uid in users)
        return cls(uid, False, groups, frozenset(_staff(portal, uid)))

    def can_read(self, row: Mapping[str, Any]) -> bool:
        """Admins, members, group members and the members' managers read a task."""
        if self.admin:
            return True
        people = members(row)
        return (self.user_id in people or int(row.get("GROUP_ID") or 0) in self.groups
                or bool(people & self.staff))

    def can_edit(self, row: Mapping[str, Any]) -> bool:
        """Admins, the creator and the responsible person change a task."""
        return self.admin or self.user_id in (row.get("CREATED_BY"), row.get("RESPONSIBLE_ID"))

    def role(self, row: Mapping[str, Any]) -> set[str]:
        """The caller's roles in a task."""
        roles = {"admin"} if self.admin else set()
        if self.user_id == row.get("CREATED_BY"):
            roles.add("creator")
        if self.user_id == row.get("RESPONSIBLE_ID"):
            roles.add("responsible")
        if self.user_id in (row.get("ACCOMPLICES") or []):
            roles.add("accomplice")
        return roles


def _staff(portal: Portal, user_id: int) -> set[int]:
    """Users of the departments (and their sub-departments) that ``user_id`` heads."""
    heads = {d["ID"] for d in portal.departments if d.get("UF_HEAD") == user_id}
    grew = bool(heads)
    while grew:
        more = {d["ID"] for d in portal.departments if d.get("PARENT") in heads} - heads
        heads |= more
        grew = bool(more)
    return {u["ID"] for u in portal.users if heads & set(u.get("UF_DEPARTMENT") or [])}


def members(row: Mapping[str, Any]) -> set[int]:
    """Creator, responsible, accomplices and auditors of a task."""
    return {row.get("CREATED_BY"), row.get("RESPONSIBLE_ID"), *(row.get("ACCOMPLICES") or []),
            *(row.get("AUDITORS") or [])} - {None}


def status_of(row: Mapping[str, Any]) -> int:
    """The real status of a stored task."""
    return int(row.get("REAL_STATUS") or row.get("STATUS") or STATUS_PENDING)


def sub_status(row: Mapping[str, Any], user_id: int, now: datetime) -> int:
    """``subStatus``: the real status or a meta status (almost overdue, overdue, unviewed)."""
    real = status_of(row)
    deadline = row.get("DEADLINE")
    if deadline is not None and real not in CLOSED:
        if now <= deadline < now + timedelta(days=1):
            return META_ALMOST_OVERDUE
        if deadline < now:
            return META_OVERDUE
    # Views are not kept per user: VIEWED_DATE stands for "the responsible person saw it".
    if (real in (STATUS_NEW, STATUS_PENDING) and row.get("VIEWED_DATE") is None
            and row.get("CREATED_BY") != user_id):
        return META_UNVIEWED
    return real


# -- errors and parameters ----------------------------------------------------------------
def task_id(call: Call, *names: str) -> int:
    """``taskId``: "100" when absent, "0" when not a number (tasks-task-get.md)."""
    value = call.params.first(*(names or ("taskId",)))
    if value is None or value == "":
        raise ApiError(400, "100", "CTaskItem All parameters in the constructor must have "
                                   "real class type (internal error)")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ApiError(400, "0", "wrong task id") from None


def fields_param(call: Call) -> dict[str, Any]:
    """``fields`` with UPPER_CASE keys; "100" when absent or empty."""
    raw = call.params.mapping("fields")
    if not raw:
        raise ApiError(400, "100", "Could not find value for parameter {fields} (internal error)")
    return {str(k).upper(): v for k, v in raw.items()}


def parse_value(name: str, value: Any, call: Call) -> Any:
    """A client value of field ``name`` in its stored type."""
    fdef = TASK[name]
    if fdef.multiple:
        items = [v for v in as_list(value) if str(v).strip() != ""]
        if fdef.kind() == "int":
            return list(dict.fromkeys(_int(name, v) for v in items))
        return [str(v) for v in items]
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    if fdef.kind() == "date":
        try:
            return parse_dt(value, call.portal.tz)
        except ValueError:
            raise task_core(f"Invalid value of field {name}") from None
    return _int(name, value) if fdef.kind() == "int" or name in INT_ENUMS else str(value)


def _int(name: str, value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise task_core(f"Invalid value of field {name}") from None


def parse_fields(call: Call, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Known writable fields of a ``fields`` object, in stored types."""
    out = {n: parse_value(n, v, call) for n, v in raw.items() if n in WRITABLE}
    if "REAL_STATUS" in out:
        out.setdefault("STATUS", out["REAL_STATUS"])
        del out["REAL_STATUS"]
    if "STATUS" in out:
        status = out["STATUS"]
        if status not in range(STATUS_NEW, STATUS_DEFERRED + 1):
            raise task_core("Incorrect status")
        out["STATUS"] = max(status, STATUS_PENDING)  # "new" is stored as pending nowadays.
    return out


def check_people(call: Call, values: Mapping[str, Any], own_id: int = 0) -> None:
    """Validate the responsible person and the parent task as Bitrix24 does."""
    resp = values.get("RESPONSIBLE_ID")
    if resp is not None and call.portal.users.get(resp) is None:
        raise task_core('User specified in the "Responsible" field not found')
    parent = values.get("PARENT_ID")
    if not parent:
        return
    if parent == own_id:
        raise task_core("Cannot bind the node to itself")
    if call.portal.tasks.get(parent) is None:
        raise task_core('Task specified in the "Parent Task" field not found')
    seen = {parent}
    while parent:
        parent = (call.portal.tasks.get(parent) or {}).get("PARENT_ID")
        if parent == own_id:
            raise task_core("Creating cyclic links in tasks is prohibited")
        if parent in seen:
            break
        seen.add(parent)


# -- changes: history, touch, events ------------------------------------------------------
def history_value(value: Any) -> str:
    """A value as the task log keeps it: dates as unix seconds, lists comma-joined."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return str(int(value.timestamp()))
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def log(call: Call, task: int, field: str, change: tuple[str | None, str | None],
        user_id: int | None = None) -> None:
    """Write one ``task_history`` row."""
    call.portal.task_history.insert({
        "TASK_ID": task, "CREATED_DATE": call.now, "FIELD": field, "FROM_VALUE": change[0],
        "TO_VALUE": change[1], "USER_ID": call.user_id if user_id is None else user_id})


def touch(call: Call, row: dict[str, Any]) -> None:
    """Stamp a change by the caller; the responsible person acting has seen the task."""
    row.update(CHANGED_BY=call.user_id, CHANGED_DATE=call.now, ACTIVITY_DATE=call.now)
    if call.user_id == row.get("RESPONSIBLE_ID") and row.get("VIEWED_DATE") is None:
        row["VIEWED_DATE"] = call.now


def set_status(call: Call, row: dict[str, Any], new: int) -> None:
    """Move a task to status ``new`` with its dates, closing fields and history."""
    old = status_of(row)
    row.update(STATUS=new, REAL_STATUS=new, STATUS_CHANGED_BY=call.user_id,
               STATUS_CHANGED_DATE=call.now)
    if new == STATUS_IN_PROGRESS and row.get("DATE_START") is None:
        row["DATE_START"] = call.now
    if new in CLOSED:
        row.update(CLOSED_BY=call.user_id, CLOSED_DATE=call.now)
    elif old in CLOSED:
        row.update(CLOSED_BY=None, CLOSED_DATE=None)
    if new != old:
        log(call, row["ID"], "STATUS", (str(old), str(new)))


def actor(call: Call) -> Actor:
    """The author of a change as events see it."""
    connector = str(call.params.first("auth_connector", default="") or "") or None
    return Actor(call.user_id, automation=call.automation, client_id=call.client_id,
                 auth_connector=connector)


def emit(call: Call, event: str, sides: tuple[Any, Any], key: str,
         accessible: tuple[str, str] = ("undefined", "undefined")) -> None:
    """Announce a task change with the documented ``data`` (IDs only, "undefined" sides)."""
    data = {"FIELDS_BEFORE": sides[0], "FIELDS_AFTER": sides[1],
            "IS_ACCESSIBLE_BEFORE": accessible[0], "IS_ACCESSIBLE_AFTER": accessible[1]}
    call.portal.events.emit(event, data, actor(call), key)


def ensure_chat(portal: Portal, row: dict[str, Any]) -> int:
    """The task's chat in the new card, created on first use."""
    ensure_chats(portal, [row])
    return int(row["CHAT_ID"])


def ensure_chats(portal: Portal, rows: list[dict[str, Any]]) -> None:
    """Give each task without a chat one: in the new card every task has its chat."""
    missing = [r for r in rows if not r.get("CHAT_ID")]
    if not missing:
        return
    top = max([0, *(int(t.get("CHAT_ID") or 0) for t in portal.tasks),
               *(int(m.get("CHAT_ID") or 0) for m in portal.task_chat)])
    for number, row in enumerate(missing, top + 1):
        row["CHAT_ID"] = number


def sort_rows(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> None:
    """Sort in place by ``(name, descending)`` pairs; a stable sort, the last key first."""
    for name, desc in reversed(order):
        def key(row: Mapping[str, Any], field: str = name) -> Any:
            value = row.get(field)
            return value.timestamp() if isinstance(value, datetime) else value
        rows.sort(key=key, reverse=desc)


# -- rendering ----------------------------------------------------------------------------
def user_name(portal: Portal, user_id: int) -> str:
    """"First Last" as the portal's name template shows it."""
    user = portal.users.get(user_id) or {}
    return " ".join(p for p in (user.get("NAME"), user.get("LAST_NAME")) if p)


def user_brief(portal: Portal, user_id: int) -> dict[str, Any]:
    """The ``{id, name, link, icon, workPosition}`` object of task responses."""
    user = portal.users.get(user_id) or {}
    return {"id": str(user_id), "name": user_name(portal, user_id),
            "link": f"/company/personal/user/{user_id}/", "icon": AVATAR,
            "workPosition": user.get("WORK_POSITION") or ""}


def _people(portal: Portal, ids: list[int]) -> Any:
    # An empty PHP array is a JSON list; a filled one is keyed by user ID.
    return {str(i): user_brief(portal, i) for i in ids} if ids else []


def _group(portal: Portal, group_id: int) -> Any:
    group = portal.groups.get(group_id) if group_id else None
    if group is None:
        return []
    count = len(portal.group_members.get(group_id, ())) or int(group.get("NUMBER_OF_MEMBERS") or 0)
    return {"id": str(group_id), "name": group.get("NAME") or "",
            "opened": group.get("OPENED") == "Y", "membersCount": count,
            "image": "/bitrix/images/socialnetwork/workgroup/folder.png", "additionalData": []}


def _scalar(call: Call, row: Mapping[str, Any], name: str) -> Any:
    value = status_of(row) if name == "STATUS" else row.get(name, DEFAULTS.get(name))
    if name == "CHAT_ID":
        return int(value) if value else None  # chatId is a number (tasks-new.md).
    if name in ZERO_WHEN_EMPTY and not value:
        return "0"
    return task_scalar(value, call.portal.tz)


def render(call: Call, row: Mapping[str, Any], select: list[str] | None = None, *,
           single: bool = True, listing: bool = False) -> dict[str, Any]:
    """A task as ``tasks.task.*`` answers: the full object, or the ``select``ed fields."""
    portal = call.portal
    chosen = set(select or ())
    names = SCALARS if select is None else [n for n in SCALARS if n in chosen]
    out = {camel(n): _scalar(call, row, n) for n in names}
    if listing and out.get("mark") is None and "mark" in out:
        out["mark"] = ""  # tasks.task.list sends an empty mark as "" (resp-tasks.task.list.json).
    wanted = set(select or SCALARS)
    if select is None and single:
        out["checklist"] = []
    if single:
        out.setdefault("favorite", task_scalar(row.get("FAVORITE") or "N", portal.tz))
    out["group"] = _group(portal, int(row.get("GROUP_ID") or 0))
    if "CREATED_BY" in wanted:
        out["creator"] = user_brief(portal, int(row.get("CREATED_BY") or 0))
    if "RESPONSIBLE_ID" in wanted:
        out["responsible"] = user_brief(portal, int(row.get("RESPONSIBLE_ID") or 0))
    if "ACCOMPLICES" in wanted:
        out["accomplicesData"] = _people(portal, list(row.get("ACCOMPLICES") or []))
    if "AUDITORS" in wanted:
        out["auditorsData"] = _people(portal, list(row.get("AUDITORS") or []))
    if select is not None and "TAGS" in select:
        tags = list(row.get("TAGS") or [])
        out["tags"] = {str(i): {"id": i, "title": t} for i, t in enumerate(tags, 1)} or []
    if select is not None and "UF_CRM_TASK" in select:
        # Selecting one system UF returns all three; an empty one is false (tasks-task-get.md).
        out.update(ufCrmTask=list(row.get("UF_CRM_TASK") or []) or False,
                   ufTaskWebdavFiles=False, ufMailMessage=None)
    if select is None or "NEW_COMMENTS_COUNT" in select:
        out["newCommentsCount"] = int(row.get("NEW_COMMENTS_COUNT") or 0)
    if "STATUS" in wanted and select is not None:
        out["subStatus"] = str(sub_status(row, call.user_id, call.now))
    if single:
        out["action"] = actions(Viewer.of(call), row)
    return out


def actions(viewer: Viewer, row: Mapping[str, Any]) -> dict[str, bool]:
    """The ``action`` object: what the caller may do with the task now."""
    status, roles = status_of(row), viewer.role(row)
    edit = viewer.can_edit(row)
    act = {name: status in TRANSITIONS[name][0] and bool(roles & TRANSITIONS[name][1])
           for name in ("complete", "approve", "disapprove", "start", "pause", "defer", "renew")}
    return {"accept": False, "decline": False, **act, "delegate": edit and status not in CLOSED,
            "remove": bool(roles & {"admin", "creator"}), "edit": edit, "create": True,
            "changeDeadline": edit, "checklistAddItems": True, "addFavorite": True,
            "deleteFavorite": False, "rate": True, "take": False, "edit.originator": False,
            "checklist.reorder": True, "elapsedtime.add": True, "dayplan.timer.toggle": False,
            "edit.plan": edit, "checklist.add": True, "favorite.add": True,
            "favorite.delete": False}


def select_param(call: Call) -> list[str] | None:
    """``select`` in UPPER_CASE (``*`` and ``UF_*`` expanded); ``None`` = the default set."""
    raw = call.params.first("select")
    if raw is None or raw in ("", []):
        return None
    if not isinstance(raw, list | Mapping):
        raise ApiError(400, "100", f"Invalid value {raw} to match with parameter {{select}}. "
                                   "Should be value of type array. (internal error)")
    names = ["ID"]
    for item in as_list(raw):
        name = str(item).upper()
        if name == "*":
            names += [n for n, d in TASK.items() if not d.dynamic]
        elif name == "UF_*":
            names += [n for n, d in TASK.items() if d.dynamic]
        else:
            names.append("STATUS" if name == "REAL_STATUS" else name)
    return list(dict.fromkeys(names))


# -- tasks.task.* -------------------------------------------------------------------------
def load(call: Call, tid: int, code: str = "0", text: str = NOT_ALLOWED,
         need: Callable[[Viewer, dict[str, Any]], bool] = Viewer.can_read) -> dict[str, Any]:
    """The task the caller may act on, or the method's "not allowed" error."""
    row = call.portal.tasks.get(tid)
    if row is None or not need(Viewer.of(call), row):
        raise ApiError(400, code, text)
    if call.portal.config.new_task_card:
        ensure_chat(call.portal, row)
    return row


@method("tasks.task.add", "task")
def task_add(call: Call) -> Any:
    """Create a task; ``{"task": {...}}``."""
    values = parse_fields(call, fields_param(call))
    if not str(values.get("TITLE") or "").strip():
        raise task_core("Task title is not specified")
    if not values.get("RESPONSIBLE_ID"):
        raise task_core("Responsible person not specified")
    check_people(call, values)
    now, status = call.now, values.pop("STATUS", STATUS_PENDING)
    fresh = {k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()}
    row: dict[str, Any] = {
        "PARENT_ID": None, "MARK": None, **fresh, **values,
        "CREATED_BY": values.get("CREATED_BY") or call.user_id,
        "CREATED_DATE": values.get("CREATED_DATE") or now, "CHANGED_BY": call.user_id,
        "CHANGED_DATE": now, "STATUS": status, "REAL_STATUS": status,
        "STATUS_CHANGED_BY": call.user_id, "STATUS_CHANGED_DATE": now, "ACTIVITY_DATE": now,
        "CLOSED_BY": call.user_id if status in CLOSED else None,
        "CLOSED_DATE": now if status in CLOSED else None,
        "DATE_START": now if status == STATUS_IN_PROGRESS else None,
    }
    tid = call.portal.tasks.insert(row)
    row["GUID"] = f"{{{uuid.uuid5(uuid.NAMESPACE_URL, f'{call.portal.member_id}/task/{tid}')}}}"
    if call.portal.config.new_task_card:
        ensure_chat(call.portal, row)
    log(call, tid, "NEW", (None, None))
    emit(call, "ONTASKADD", ("undefined", {"ID": tid}), f"task:{tid}", ("N", "undefined"))
    return {"task": render(call, row)}


@method("tasks.task.get", "task")
def task_get(call: Call) -> Any:
    """One task; ``[]`` when it does not exist or is not accessible (tasks-task-get.md)."""
    tid = task_id(call)
    select = select_param(call)
    row = call.portal.tasks.get(tid)
    if row is None or not Viewer.of(call).can_read(row):
        return []
    if call.portal.config.new_task_card:
        ensure_chat(call.portal, row)
    return {"task": render(call, row, select)}


@method("tasks.task.update", "task")
def task_update(call: Call) -> Any:
    """Change fields (STATUS included); ``{"task": {...}}``."""
    tid = task_id(call)
    raw = fields_param(call)
    row = load(call, tid, text=f"{NOT_ALLOWED} (internal error)", need=Viewer.can_edit)
    values = parse_fields(call, raw)
    values.pop("CREATED_DATE", None)
    if "TITLE" in values and not str(values["TITLE"] or "").strip():
        raise task_core("Task title is not specified")
    if "RESPONSIBLE_ID" in values and not values["RESPONSIBLE_ID"]:
        raise task_core("Responsible person not specified")
    check_people(call, values, tid)
    status = values.pop("STATUS", None)
    for name, new in values.items():
        old = row.get(name, DEFAULTS.get(name))
        if new == old:
            continue
        if name in TRACKED:
            log(call, tid, name, (history_value(old), history_value(new)))
        row[name] = new
    if status is not None and status != status_of(row):
        set_status(call, row, status)
    touch(call, row)
    emit(call, "ONTASKUPDATE", ({"ID": tid}, {"ID": tid}), f"task:{tid}")
    return {"task": render(call, row)}


@method("tasks.task.delete", "task")
def task_delete(call: Call) -> Any:
    """Delete a task (creator or admin); ``{"task": true}``."""
    tid = task_id(call)
    load(call, tid, "1048582", "No access to delete the task",
         lambda v, r: bool(v.role(r) & {"admin", "creator"}))
    portal = call.portal
    portal.tasks.delete(tid)
    for table in (portal.task_comments, portal.task_chat):
        for gone in [r["ID"] for r in table if r.get("TASK_ID") == tid]:
            table.delete(gone)
    emit(call, "ONTASKDELETE", ({"ID": tid}, "undefined"), f"task:{tid}", ("undefined", "N"))
    return {"task": True}


# Status methods: allowed "from" statuses, roles that may act, error code, target status.
EVERYONE = frozenset({"admin", "creator", "responsible", "accomplice"})
BOSS = frozenset({"admin", "creator"})
TRANSITIONS: dict[str, tuple[frozenset[int], frozenset[str], str, int]] = {
    "start": (frozenset({1, 2, 6}), EVERYONE, "0", STATUS_IN_PROGRESS),
    "pause": (frozenset({3}), EVERYONE, "1048582", STATUS_PENDING),
    "complete": (frozenset({1, 2, 3, 6}), EVERYONE, "0", STATUS_COMPLETED),
    "defer": (frozenset({1, 2, 3}), EVERYONE, "1048582", STATUS_DEFERRED),
    "renew": (frozenset({4, 5, 6}), EVERYONE, "1048582", STATUS_PENDING),
    "approve": (frozenset({4}), BOSS, "1048582", STATUS_COMPLETED),
    "disapprove": (frozenset({4}), BOSS, "1048582", STATUS_PENDING),
}


def _transition(action: str) -> Callable[[Call], Any]:
    allowed, roles, code, target = TRANSITIONS[action]

    def handler(call: Call) -> Any:
        tid = task_id(call)
        row = load(call, tid, code, NOT_ALLOWED,
                   lambda v, r: status_of(r) in allowed and bool(v.role(r) & roles))
        new = target
        if action == "complete" and row.get("TASK_CONTROL") == "Y" \
                and call.user_id != row.get("CREATED_BY"):
            new = STATUS_SUPPOSEDLY_COMPLETED  # The creator still has to approve the result.
        set_status(call, row, new)
        touch(call, row)
        emit(call, "ONTASKUPDATE", ({"ID": tid}, {"ID": tid}), f"task:{tid}")
        return {"task": render(call, row)}

    handler.__doc__ = f"``tasks.task.{action}``: status {sorted(allowed)} → {target}."
    return handler


for _action in TRANSITIONS:
    method(f"tasks.task.{_action}", "task")(_transition(_action))


# -- tasks.task.list ----------------------------------------------------------------------
@dataclass
class Where(Condition):
    """A filter condition computed by a function (meta statuses, access, roles)."""

    fn: Callable[[Mapping[str, Any]], bool] = lambda _row: True

    def test(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` passes."""
        return self.fn(record)


def _where(fn: Callable[[Mapping[str, Any]], bool]) -> Where:
    return Where("", "", None, "", fn)


def _status_where(cond: Condition, call: Call) -> Where:
    # STATUS compares with subStatus, so a pending overdue task is -1, not 2.
    def test(row: Mapping[str, Any]) -> bool:
        return cond.test({"STATUS": sub_status(row, call.user_id, call.now)})
    return _where(test)


def _has_member(user_id: int, row: Mapping[str, Any]) -> bool:
    return user_id in members(row)


def list_conditions(call: Call) -> list[Condition]:
    """The ``filter`` of tasks.task.list plus the caller's access."""
    raw: dict[str, Any] = {}
    special: list[Condition] = []
    for given, value in call.params.mapping("filter").items():
        key = str(given).upper()
        name = key.lstrip("!<>=%@")
        if key.startswith("::"):
            continue  # Sub-filters (favorites...) are not emulated.
        if name == "MEMBER":
            special.append(_where(partial(_has_member, int(value or 0))))
        elif name == "ONLY_ROOT_TASKS" and str(value).upper() == "Y":
            special.append(_where(lambda r: not r.get("PARENT_ID")))
        else:
            raw[key[: len(key) - len(name)] + FILTER_ALIASES.get(name, name)] = value
    try:
        conditions = parse_filter(raw, FILTER_FIELDS, call.portal.tz)
    except FilterError as exc:
        raise ApiError(400, "0", f"{exc} (internal error)") from None
    out: list[Condition] = []
    for cond in conditions:
        if cond.field == "TITLE" and cond.op in ("", "="):
            cond.op = "=%"  # TITLE is matched with LIKE: "%" and "_" patterns, any case.
        if cond.kind == "int" and cond.wanted == 0 and cond.op in ("", "=", "!", "!="):
            cond.wanted = None  # 0 stands for "not set" (PARENT_ID=0: root tasks).
        out.append(_status_where(cond, call) if cond.field == "STATUS" else cond)
    viewer = Viewer.of(call)
    if not viewer.admin:
        out.append(_where(viewer.can_read))
    return out + special


ORDERABLE = frozenset(TASK) | {"STATUS_COMPLETE", "CREATED_BY_LAST_NAME",
                               "RESPONSIBLE_LAST_NAME"}


@method("tasks.task.list", "task")
def task_list(call: Call) -> Any:
    """Tasks by ``filter``/``order`` (default ID desc), ``select``, pages of 50."""
    raw_order = call.params.mapping("order") or {"ID": "desc"}
    for key in raw_order:
        if str(key).upper() not in ORDERABLE:
            raise ApiError(400, "0", "Invalid sorting key (internal error)")
    order = parse_order(raw_order, TASK, rename=str.upper)
    select = select_param(call)
    page = call.portal.tasks.query(list_conditions(call), order,
                                   pick_start(call.params.first("start")))
    if call.portal.config.new_task_card:
        ensure_chats(call.portal, page.rows)
    tasks = [render(call, r, select or SCALARS, single=False, listing=True) for r in page.rows]
    return Listed({"tasks": tasks}, page.total, page.next)


# -- tasks.task.history.list --------------------------------------------------------------
HISTORY_FIELDS = {"ID": FieldDef("ID", "integer"), "FIELD": FieldDef("FIELD"),
                  "CREATED_DATE": FieldDef("CREATED_DATE", "datetime"),
                  "USER_ID": FieldDef("USER_ID", "integer")}


@method("tasks.task.history.list", "task")
def history_list(call: Call) -> Any:
    """The change log of a task: ``{"list": [{id, createdDate, field, value, user}]}``."""
    try:
        tid = task_id(call)
    except ApiError as err:
        raise ApiError(400, err.code, err.description.removesuffix(" (internal error)")
                       + " (internal error)") from None
    row = call.portal.tasks.get(tid)
    if row is None:
        return {"list": []}
    if not Viewer.of(call).can_read(row):
        raise ApiError(400, "0", "Access denied. (internal error)")
    raw = {str(k).upper(): v for k, v in call.params.mapping("filter").items()}
    try:
        conditions = parse_filter(raw, HISTORY_FIELDS, call.portal.tz)
    except FilterError as exc:
        raise ApiError(400, "0", f"{exc} (internal error)") from None
    rows = [r for r in call.portal.task_history
            if r["TASK_ID"] == tid and all(c.test(r) for c in conditions)]
    order = parse_order(call.params.mapping("order") or {"CREATED_DATE": "desc", "ID": "desc"},
                        HISTORY_FIELDS, rename=lambda k: {"CREATEDDATE": "CREATED_DATE"}.get(
                            k.upper(), k.upper()))
    sort_rows(rows, order)
    return {"list": [_history_row(call, r) for r in rows]}


def _history_row(call: Call, r: Mapping[str, Any]) -> dict[str, Any]:
    user = call.portal.users.get(r["USER_ID"]) or {}
    return {
        "id": r["ID"], "createdDate": render_dt(r["CREATED_DATE"], call.portal.tz),
        "field": r["FIELD"], "value": {"from": r.get("FROM_VALUE"), "to": r.get("TO_VALUE")},
        "user": {"id": r["USER_ID"], "name": user.get("NAME") or "",
                 "lastName": user.get("LAST_NAME") or "",
                 "secondName": user.get("SECOND_NAME") or "",
                 "login": user.get("LOGIN") or user.get("EMAIL") or ""},
    }
