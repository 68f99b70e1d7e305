"""Task comments: ``task.commentitem.*`` (classic card) and the task chat of the new card."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from b24emu.core import Call, method
from b24emu.errors import ApiError, method_not_found, task_core
from b24emu.methods.tasks import Viewer, emit, ensure_chat, log, sort_rows, user_name
from b24emu.store import FieldDef, FilterError, parse_filter, parse_order
from b24emu.timefmt import parse_dt, render_dt

WRONG = "TASKS_ERROR_EXCEPTION_#256; {}; 256/TE/WRONG_ARGUMENTS"
ACTION_FAILED = "TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED"
NOT_FOUND = ("TASKS_ERROR_EXCEPTION_#512; Check listitem not found or not accessible; "
             "512/TE/ITEM_NOT_FOUND_OR_NOT_ACCESSIBLE")
NOT_ALLOWED = "TASKS_ERROR_EXCEPTION_#4; Action is not allowed; 4/TE/ACTION_NOT_ALLOWED"
ADD_KEYS = frozenset({"POST_MESSAGE", "AUTHOR_ID", "POST_DATE", "UF_FORUM_MESSAGE_DOC"})
COMMENT_FIELDS = {"ID": FieldDef("ID", "integer"), "AUTHOR_ID": FieldDef("AUTHOR_ID", "integer"),
                  "AUTHOR_NAME": FieldDef("AUTHOR_NAME"), "AUTHOR_EMAIL": FieldDef("AUTHOR_EMAIL"),
                  "POST_DATE": FieldDef("POST_DATE", "datetime")}
FILTERABLE = frozenset({"ID", "AUTHOR_ID", "AUTHOR_NAME", "POST_DATE"})


# -- positional parameters ----------------------------------------------------------------
def positional(call: Call) -> list[Any]:
    """Parameters of a legacy method by position: ``0=5&1[POST_MESSAGE]=...``."""
    # Named keys (TASKID, FIELDS) count in the order sent: on Bitrix24 a wrong order fails
    # (api-reference/tasks/comment-item/task-comment-item-get-list.md).
    raw = call.params.raw()
    keys = list(raw)
    if keys and all(str(k).isdigit() for k in keys):
        keys.sort(key=int)
    return [raw[k] for k in keys]


def _arg_int(args: list[Any], index: int, name: str, fn: str) -> int:
    if len(args) <= index or args[index] in (None, ""):
        raise task_core(WRONG.format(f"Param #{index} ({name}) expected by method "
                                     f"ctaskcommentitem::{fn}(), but not given."))
    try:
        return int(str(args[index]).strip())
    except ValueError:
        raise task_core(WRONG.format(f'Param #{index} ({name}) for method ctaskcommentitem::'
                                     f'{fn}() expected to be of type "integer", but given '
                                     "something else.")) from None


def _arg_map(args: list[Any], index: int, name: str, fn: str, allowed: frozenset[str],
             *, required: bool = False, prefixes: bool = False) -> dict[str, Any]:
    value = args[index] if len(args) > index else None
    if value in (None, "", []) and not required:
        return {}
    if not isinstance(value, Mapping):
        raise task_core(WRONG.format(f'Param #{index} ({name}) for method ctaskcommentitem::'
                                     f'{fn}() expected to be of type "array", but given '
                                     "something else."))
    for key in value:
        bare = str(key).upper().lstrip("!<>=") if prefixes else str(key).upper()
        if bare not in allowed:
            raise task_core(WRONG.format(f"Param #{index} ({name}) for method ctaskcommentitem::"
                                         f'{fn}() must not contain key "{key}".'))
    return {str(k).upper(): v for k, v in value.items()}


def _task(call: Call, task_id: int, error: str) -> dict[str, Any]:
    row = call.portal.tasks.get(task_id)
    if row is None or not Viewer.of(call).can_read(row):
        raise task_core(error)
    return row


def _comment_out(call: Call, row: Mapping[str, Any]) -> dict[str, Any]:
    author = int(row["AUTHOR_ID"])
    return {"POST_MESSAGE_HTML": None, "ID": str(row["ID"]), "AUTHOR_ID": str(author),
            "AUTHOR_NAME": user_name(call.portal, author), "AUTHOR_EMAIL": "",
            "POST_DATE": render_dt(row["POST_DATE"], call.portal.tz),
            "POST_MESSAGE": row["POST_MESSAGE"], "ATTACHED_OBJECTS": {}}


# -- task.commentitem.* -------------------------------------------------------------------
@method("task.commentitem.add", "task")
def comment_add(call: Call) -> Any:
    """``0=<taskId>&1[POST_MESSAGE]=...`` → the new comment's ID (the chat's in the new card)."""
    args = positional(call)
    tid = _arg_int(args, 0, "taskId", "add")
    fields = _arg_map(args, 1, "arFields", "add", ADD_KEYS, required=True)
    text = str(fields.get("POST_MESSAGE") or "").strip()
    if not text:
        raise task_core("Comment text is not specified")
    task = _task(call, tid, "Insufficient permissions to add a comment.")
    author = _arg_int([fields.get("AUTHOR_ID") or call.user_id], 0, "AUTHOR_ID", "add")
    try:
        posted = parse_dt(fields.get("POST_DATE"), call.portal.tz) or call.now
    except ValueError:
        posted = call.now
    if call.portal.config.new_task_card:
        # Deprecated but working: the comment becomes a message of the task chat.
        return post_to_chat(call, task, author, text)
    cid = call.portal.task_comments.insert(
        {"TASK_ID": tid, "AUTHOR_ID": author, "POST_DATE": posted, "POST_MESSAGE": text})
    task["COMMENTS_COUNT"] = int(task.get("COMMENTS_COUNT") or 0) + 1
    _seen(call, task, author)
    log(call, tid, "COMMENT", (None, str(cid)), author)
    # A comment fires ONTASKCOMMENTADD only: ONTASKUPDATE lists no comments among its
    # triggers (api-reference/tasks/events-tasks/index.md).
    emit(call, "ONTASKCOMMENTADD", ("undefined", {"ID": cid, "TASK_ID": tid}),
         f"task:{tid}:comment:{cid}")
    return cid


def _seen(call: Call, task: dict[str, Any], author: int) -> None:
    """A comment is task activity; the responsible person commenting has seen the task."""
    task["ACTIVITY_DATE"] = call.now
    if author == task.get("RESPONSIBLE_ID") and task.get("VIEWED_DATE") is None:
        task["VIEWED_DATE"] = call.now


def post_to_chat(call: Call, task: dict[str, Any], author: int, text: str) -> int:
    """Add a message to the task chat and announce it (``ID`` 0 + ``MESSAGE_ID``)."""
    chat = ensure_chat(call.portal, task)
    mid = call.portal.task_chat.insert({"TASK_ID": task["ID"], "CHAT_ID": chat,
                                        "AUTHOR_ID": author, "DATE": call.now, "MESSAGE": text})
    _seen(call, task, author)
    after = {"ID": 0, "TASK_ID": task["ID"], "MESSAGE_ID": mid}
    emit(call, "ONTASKCOMMENTADD", ("undefined", after), f"task:{task['ID']}:message:{mid}")
    return mid


@method("task.commentitem.getlist", "task")
def comment_list(call: Call) -> Any:
    """``0=<taskId>[&1[ORDER]...&2[FILTER]...]``: comments, newest first by default."""
    args = positional(call)
    tid = _arg_int(args, 0, "taskId", "getlist")
    order_raw = _arg_map(args, 1, "arOrder", "getlist", frozenset(COMMENT_FIELDS))
    filter_raw = _arg_map(args, 2, "arFilter", "getlist", FILTERABLE, prefixes=True)
    _task(call, tid, ACTION_FAILED)
    if call.portal.config.new_task_card:
        raise task_core(ACTION_FAILED)  # Comments live in the chat (tasks-new.md).
    try:
        conditions = parse_filter(filter_raw, COMMENT_FIELDS, call.portal.tz)
    except FilterError:
        raise task_core(ACTION_FAILED) from None
    rows = []
    for row in call.portal.task_comments:
        if row["TASK_ID"] != tid:
            continue
        probe = {**row, "AUTHOR_NAME": user_name(call.portal, int(row["AUTHOR_ID"])),
                 "AUTHOR_EMAIL": ""}
        if all(c.test(probe) for c in conditions):
            rows.append(probe)
    sort_rows(rows, parse_order(order_raw or {"ID": "desc"}, COMMENT_FIELDS))
    return [_comment_out(call, r) for r in rows]


def _comment(call: Call, fn: str, error: str) -> tuple[dict[str, Any], list[Any]]:
    """The comment named by ``0=<taskId>&1=<itemId>`` (classic card only)."""
    args = positional(call)
    tid = _arg_int(args, 0, "taskId", fn)
    cid = _arg_int(args, 1, "itemId", fn)
    _task(call, tid, error)
    row = call.portal.task_comments.get(cid)
    if call.portal.config.new_task_card or row is None or row["TASK_ID"] != tid:
        raise task_core(error)
    return row, args


@method("task.commentitem.get", "task")
def comment_get(call: Call) -> Any:
    """One comment by task and comment ID."""
    row, _ = _comment(call, "get", NOT_FOUND)
    return _comment_out(call, row)


def _own(call: Call, row: Mapping[str, Any]) -> None:
    if row["AUTHOR_ID"] != call.user_id and not call.portal.user_is_admin(call.user_id):
        raise task_core(NOT_ALLOWED)


@method("task.commentitem.update", "task")
def comment_update(call: Call) -> Any:
    """Change a comment's text (its author or an admin); ``true``."""
    row, args = _comment(call, "update", NOT_ALLOWED)
    fields = _arg_map(args, 2, "arFields", "update", ADD_KEYS, required=True)
    text = str(fields.get("POST_MESSAGE") or "").strip()
    if not text:
        raise task_core("Comment text not specified.")
    _own(call, row)
    row["POST_MESSAGE"] = text
    ids = {"ID": row["ID"], "TASK_ID": row["TASK_ID"]}
    emit(call, "ONTASKCOMMENTUPDATE", (ids, {**ids, "ACTION": "EDIT"}),
         f"task:{row['TASK_ID']}:comment:{row['ID']}")
    return True


@method("task.commentitem.delete", "task")
def comment_delete(call: Call) -> Any:
    """Delete a comment (its author or an admin); ``true``."""
    row, _ = _comment(call, "delete", NOT_ALLOWED)
    _own(call, row)
    call.portal.task_comments.delete(row["ID"])
    task = call.portal.tasks.get(row["TASK_ID"]) or {}
    task["COMMENTS_COUNT"] = max(int(task.get("COMMENTS_COUNT") or 0) - 1, 0)
    ids = {"ID": row["ID"], "TASK_ID": row["TASK_ID"]}
    emit(call, "ONTASKCOMMENTDELETE", (ids, {**ids, "ACTION": "DEL"}),
         f"task:{row['TASK_ID']}:comment:{row['ID']}")
    return True


# -- the task chat (new card) -------------------------------------------------------------
class RestV3Error(ApiError):
    """A REST 3.0 error: ``{"error": {"code", "message", "validation"?}}``."""

    def body(self) -> dict[str, Any]:
        """The REST 3.0 error envelope (_includes/error-info-v3.md)."""
        error: dict[str, Any] = {"code": self.code, "message": self.description}
        error.update(self.extra)
        return {"error": error}


def _required(field: str) -> RestV3Error:
    return RestV3Error(400, "BITRIX_REST_V3_EXCEPTION_VALIDATION_DTOVALIDATIONEXCEPTION",
                       "Error during object validation",
                       validation=[{"message": f'The required field "{field}" is not filled',
                                    "field": field}])


@method("tasks.task.chat.message.send", "task")
def chat_message_send(call: Call) -> Any:
    """REST 3.0 ``fields{taskId, text}`` → ``{"result": true}`` (served at /rest/ here)."""
    if not call.portal.config.new_task_card:
        raise method_not_found(call.method)  # Only portals with the new card have it.
    fields = call.params.mapping("fields")
    if not fields:
        raise _required("fields")
    tid, text = fields.get("taskId"), str(fields.get("text") or "").strip()
    if tid in (None, ""):
        raise _required("taskId")
    if not text:
        raise _required("text")
    task = call.portal.tasks.get(int(str(tid))) if str(tid).strip().isdigit() else None
    if task is None or not Viewer.of(call).can_read(task):
        raise RestV3Error(403, "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION", "Access denied")
    post_to_chat(call, task, call.user_id, text)
    return {"result": True}


@method("im.dialog.messages.get", "im")
def dialog_messages_get(call: Call) -> Any:
    """Messages of a task chat (``DIALOG_ID=chat<CHAT_ID>``), newest first, 20 by default."""
    p = call.params
    dialog = str(p.first("DIALOG_ID", default="") or "")
    if not dialog.startswith("chat") or not dialog[4:].isdigit():
        raise ApiError(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty")
    chat = int(dialog[4:])
    for name, code in (("FIRST_ID", "FIRST_ID_STRING"), ("LAST_ID", "LAST_ID_STRING")):
        value = p.first(name)
        if value not in (None, "") and not str(value).strip().isdigit():
            raise ApiError(400, code, f"{name.title().replace('_', ' ')} can't be string")
    task = next((t for t in call.portal.tasks if t.get("CHAT_ID") == chat), None)
    if task is None or not Viewer.of(call).can_read(task):
        raise ApiError(403, "ACCESS_ERROR", "You do not have access to the specified dialog")
    first, last = p.int("FIRST_ID"), p.int("LAST_ID")
    limit = min(max(p.int("LIMIT") or 20, 1), 50)
    rows = [m for m in call.portal.task_chat if m["CHAT_ID"] == chat
            and (not first or m["ID"] > first) and (not last or m["ID"] < last)]
    rows = rows[:limit] if first else rows[-limit:][::-1]
    authors = list(dict.fromkeys(int(m["AUTHOR_ID"]) for m in rows if m["AUTHOR_ID"]))
    return {"chat_id": chat, "messages": [_message(call, m) for m in rows],
            "users": [_im_user(call, u) for u in authors], "files": []}


def _message(call: Call, m: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": m["ID"], "chat_id": m["CHAT_ID"], "author_id": m["AUTHOR_ID"],
            "date": render_dt(m["DATE"], call.portal.tz), "text": m["MESSAGE"],
            "unread": False, "uuid": None, "replaces": [], "params": [],
            "disappearing_date": None}


def _im_user(call: Call, user_id: int) -> dict[str, Any]:
    user = call.portal.users.get(user_id) or {}
    last = user.get("LAST_ACTIVITY_DATE")
    return {
        "id": user_id, "active": bool(user.get("ACTIVE", True)),
        "name": user_name(call.portal, user_id), "first_name": user.get("NAME") or "",
        "last_name": user.get("LAST_NAME") or "", "work_position": user.get("WORK_POSITION") or "",
        "color": "#4ba984", "avatar": "", "avatar_hr": "",
        "gender": user.get("PERSONAL_GENDER") or "M", "birthday": "", "extranet": False,
        "network": False, "bot": False, "connector": False, "external_auth_id": "default",
        "status": "online", "idle": False,
        "last_activity_date": render_dt(last, call.portal.tz)
        if isinstance(last, datetime) else False,
        "mobile_last_date": False, "desktop_last_date": False, "absent": False,
        "departments": list(user.get("UF_DEPARTMENT") or []), "phones": False,
        "bot_data": None, "type": "user", "website": "", "email": user.get("EMAIL") or "",
    }
