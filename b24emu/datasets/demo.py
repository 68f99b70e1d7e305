"""The ``demo`` dataset: the NOIS portal (a Blum fittings distributor in Novosibirsk)."""

# Everything comes from ``random.Random(seed)`` relative to ANCHOR, so two builds with one seed
# are identical. What it holds:
# - the organisation: root «НОИС» (head: the admin, user 1), «Отдел продаж» (head: the РОП),
#   six reps (менеджер по развитию), «Закупки», «Логистика», «Маркетинг» and three workgroups;
# - 400 client companies with 1-3 contacts each, client-card fields and NPS answers;
# - deals since 2024-09 with stage history: won/lost with seasonality and repeat buying, open
#   and stale ones, one refund and one client served by two reps;
# - ~20k activities (visits, trainings, calls, e-mails, the monthly mailing, planned to-dos);
# - ~1.7k tasks since 2025-06 with comments and history.
# The refund is a won deal later moved from WON to LOSE: its stage history shows the success,
# then the failure; its current stage is LOSE (no longer a purchase), CLOSEDATE keeps the day
# it was won and COMMENTS explains the return.

from __future__ import annotations

import random

from b24emu.datasets.demo_activities import build_activities
from b24emu.datasets.demo_clients import add_nps, build_companies
from b24emu.datasets.demo_common import ANCHOR, TZ, World, paused_gc
from b24emu.datasets.demo_deals import build_deals
from b24emu.datasets.demo_org import build_org
from b24emu.datasets.demo_tasks import build_tasks
from b24emu.portal import Portal

__all__ = ["ANCHOR", "TZ", "build_demo"]


def build_demo(portal: Portal, seed: int = 1) -> None:
    """Fill an empty ``portal`` with the NOIS demo and start its clock at :data:`ANCHOR`."""
    world = World(portal, random.Random(seed))
    with paused_gc():
        build_org(world)
        build_companies(world)
        build_deals(world)
        add_nps(world)
        build_activities(world)
        build_tasks(world)
    portal.anchor = ANCHOR.isoformat()
    portal.clock.set(ANCHOR)
