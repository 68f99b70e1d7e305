"""The ``empty`` dataset: one administrator in the company's root department."""

from __future__ import annotations

from b24emu.portal import Portal


def build_empty(portal: Portal) -> None:
    """An administrator (user 1, the webhook's owner) and the root department."""
    now = portal.clock.now()
    portal.departments.insert({"NAME": "НОИС", "SORT": 500, "PARENT": None, "UF_HEAD": 1})
    portal.users.insert({
        "NAME": "Алексей", "LAST_NAME": "Админов", "ACTIVE": True, "IS_ADMIN": True,
        "EMAIL": "admin@nois.example", "UF_DEPARTMENT": [1], "USER_TYPE": "employee",
        "WORK_POSITION": "Администратор Битрикс24", "DATE_REGISTER": now,
        "TIME_ZONE": "Asia/Novosibirsk",
    })
