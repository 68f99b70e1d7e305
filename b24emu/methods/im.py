"""Notifications (``im.notify.*``), kept in a log that tests read back."""

from __future__ import annotations

from typing import Any

from b24emu.core import Call, method
from b24emu.errors import ApiError

MAX_ATTACH = 60_000


def _notify(call: Call, kind: str) -> Any:
    p = call.params
    user_id = p.int("USER_ID", "to")
    message = str(p.first("MESSAGE", "message", default="") or "").strip()
    if user_id <= 0:
        raise ApiError(400, "USER_ID_EMPTY", "Recipient is not specified")
    if not message:
        raise ApiError(400, "MESSAGE_EMPTY", "Message text is empty")
    attach = p.first("ATTACH")
    if attach is not None and len(str(attach)) > MAX_ATTACH:
        raise ApiError(400, "ATTACH_OVERSIZE", "Attachment exceeds the size limit")
    if call.portal.users.get(user_id) is None:
        return False
    tag = str(p.first("TAG", default="") or "")
    # Tags are per app; a webhook names its "app" with CLIENT_ID (im-notify-system-add.md).
    source = call.client_id or (f"hook:{p.first('CLIENT_ID')}" if p.first("CLIENT_ID") else "")
    notes = call.portal.notifications
    if tag:
        # A notification with the same tag from the same app replaces the older one.
        for row in list(notes):
            if (row["TAG"], row["APP"], row["USER_ID"]) == (tag, source, user_id):
                row["REPLACED"] = True
    row = {
        "USER_ID": user_id, "MESSAGE": message, "MESSAGE_OUT": p.first("MESSAGE_OUT"),
        "TAG": tag, "SUB_TAG": str(p.first("SUB_TAG", default="") or ""), "ATTACH": attach,
        "TYPE": kind, "FROM_USER_ID": call.user_id if kind == "personal" else 0,
        "APP": source, "DATE": call.now, "REPLACED": False,
    }
    return notes.insert(row)


@method("im.notify.system.add", "im")
def notify_system(call: Call) -> Any:
    """A system notification to ``USER_ID``."""
    return _notify(call, "system")


@method("im.notify.personal.add", "im")
def notify_personal(call: Call) -> Any:
    """A notification from the calling user to ``USER_ID``."""
    return _notify(call, "personal")


@method("im.notify", "im")
def notify(call: Call) -> Any:
    """``im.notify`` with ``TYPE`` USER (default) or SYSTEM."""
    system = str(call.params.first("TYPE", default="USER")).upper() == "SYSTEM"
    return _notify(call, "system" if system else "personal")
