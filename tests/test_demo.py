"""The main job (``b24app demo``) tells the truth about the demo portal."""

from __future__ import annotations

import io
import re

from b24app.demo import run_demo
from b24emu import Portal
from b24emu.datasets import build_dataset


def test_demo_summary_matches_the_portal() -> None:
    """Every count the demo prints equals what the seeded portal holds."""
    out = io.StringIO()
    assert run_demo(seed=2, out=out) == 0
    text = out.getvalue()
    portal = Portal()
    build_dataset(portal, "demo", seed=2)
    won = sum(1 for d in portal.deals if d["STAGE_SEMANTIC_ID"] == "S")
    assert f"Сделки: {len(portal.deals)} — выиграно {won} " in text
    assert f"Клиенты: {len(portal.companies)} компаний, {len(portal.contacts)} контактов." in text
    assert f"Задачи: {len(portal.tasks)}," in text
    assert "менеджеров: 6." in text
    match = re.search(r"(\d+) HTTP-запросов \((\d+) команд в batch\)", text)
    assert match is not None
    # A full read costs about one request per 2,500 rows, not one per page of 50.
    assert int(match.group(1)) < int(match.group(2)) / 10
