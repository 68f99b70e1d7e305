"""Importing this package registers every REST method of the emulator."""

from b24emu.methods import (
    common,
    crm,
    crm_activity,
    crm_item,
    debug,
    events_api,
    im,
    org,
    task_comments,
    tasks,
    userfieldconfig,
)

__all__ = [
    "common",
    "crm",
    "crm_activity",
    "crm_item",
    "debug",
    "events_api",
    "im",
    "org",
    "task_comments",
    "tasks",
    "userfieldconfig",
]
