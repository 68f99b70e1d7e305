"""The main job (``b24app demo``) runs end to end and tells the truth about the portal."""

from __future__ import annotations

import io
import re

import pytest

from b24app.demo import run_demo
from b24emu import Portal
from b24emu.datasets import build_dataset


@pytest.fixture(scope="module")
def demo_output() -> str:
    """One run of the demo (about ten seconds)."""
    out = io.StringIO()
    assert run_demo(seed=2, out=out) == 0
    return out.getvalue()


def test_the_summary_matches_the_portal(demo_output: str) -> None:
    """Every count the demo prints equals what the seeded portal holds."""
    portal = Portal()
    build_dataset(portal, "demo", seed=2)
    won = sum(1 for d in portal.deals if d["STAGE_SEMANTIC_ID"] == "S")
    assert f"Сделки: {len(portal.deals)} — выиграно {won} " in demo_output
    assert (f"Клиенты: {len(portal.companies)} компаний, {len(portal.contacts)} контактов."
            in demo_output)
    match = re.search(r"(\d+) HTTP-запросов \((\d+) команд в batch\)", demo_output)
    assert match is not None
    # A full read costs about one request per 2,500 rows, not one per page of 50.
    assert int(match.group(1)) < int(match.group(2)) / 10


def test_the_rules_worked_and_the_portal_shows_it(demo_output: str) -> None:
    """A violation comment and its fix, a warning, a breach to the РОП: read from the portal."""
    assert "поставлена не по регламенту" in demo_output
    assert "Спасибо, задача поставлена по регламенту." in demo_output
    assert re.search(r"→ [^\n]+: Задача #\d+ [^\n]+ нет ответа 1,5 рабочего часа", demo_output)
    assert re.search(r"→ [^\n]+ \(РОП\): Задача #\d+ [^\n]+ нет ответа 2 рабочих часа",
                     demo_output)


def test_kpis_are_written_once_and_visible_in_the_portal(demo_output: str) -> None:
    """Six reps' KPI table; company cards and KPI items hold values; a rerun writes nothing."""
    assert "повторный запуск записал полей: 0." in demo_output
    header = next(line for line in demo_output.splitlines() if "Показатель (цель)" in line)
    assert len(header.split()) == 2 + 6  # the title column and six reps
    assert re.search(r"Карточка компании «[^\n]+»: LTV: \d+\.\d{2};", demo_output)
    assert re.search(r"«KPI: [^\n]+» \(ответственный — [^\n]+\): [^\n]*VISITS_VALUE: \d+",
                     demo_output)
