"""``[kpi]`` rules, plans and the sales department reach the KPI computation."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from b24app.config import ConfigError, load_settings
from b24app.kpi_jobs import compute_options


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_rules_plans_and_department_become_compute_options(tmp_path: Path) -> None:
    """A changed marker, a rep's plan and the department ids are used, no code edit."""
    settings = load_settings(None, env={})
    assert compute_options(settings).plans == {}
    path = tmp_path / "config.toml"
    path.write_text('[kpi]\nsales_department_ids = [2]\ninclude_head = true\n'
                    '[kpi.plans]\n"12" = 1500000\n'
                    '[kpi.rules]\ntraining_markers = ["Семинар", "Обучение"]\n'
                    'stage_max_working_days = 5\n', encoding="utf-8")
    options = compute_options(load_settings(path, env={}))
    assert options.plans == {12: Decimal("1500000.0")}
    assert options.department_ids == (2,) and options.include_head is True
    assert options.rules.training_markers == ("Семинар", "Обучение")
    assert options.rules.stage_max_working_days == 5


@pytest.mark.parametrize(("text", "message"), [
    ('[kpi.rules]\nvisit_markerz = ["Визит"]\n', "unknown recognition rule 'visit_markerz'"),
    ('[kpi.rules]\nstage_max_working_days = "десять"\n', "stage_max_working_days"),
    ('[kpi.plans]\nivanov = 100\n', "expected a Bitrix24 user ID"),
    ('[kpi.plans]\n"12" = -5\n', "plan of user 12"),
])
def test_bad_kpi_config_stops_with_the_key_named(tmp_path: Path, text: str,
                                                  message: str) -> None:
    """A typo in a rule or a plan is an error at start, never ignored."""
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)
