"""``b24app sla deadline``: an admin checks the calendar by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from b24app.cli import main


@pytest.mark.parametrize(("start", "due"), [
    # The worked examples of domain.md (target 120 working minutes).
    ("2026-11-27T16:45+07:00", "2026-11-30T10:15:00+07:00"),
    ("2026-11-03T15:30+07:00", "2026-11-05T10:00:00+07:00"),
    ("2026-11-28T12:00+07:00", "2026-11-30T11:00:00+07:00"),
    # A bare local time is Novosibirsk time; another zone is converted first.
    ("2026-11-28T12:00", "2026-11-30T11:00:00+07:00"),
    ("2026-11-27T09:45:00Z", "2026-11-30T10:15:00+07:00"),
])
def test_deadline_prints_the_due_instant(start: str, due: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The printed instant is ISO 8601 in the portal's zone."""
    assert main(["sla", "deadline", start]) == 0
    assert capsys.readouterr().out.strip() == due


def test_deadline_follows_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An admin's extra day off and --minutes are honoured."""
    config = tmp_path / "config.toml"
    config.write_text('[calendar]\nextra_days_off = ["2026-11-30"]\n', encoding="utf-8")
    assert main(["sla", "deadline", "2026-11-27T16:45+07:00", "--minutes", "60",
                 "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == "2026-12-01T09:15:00+07:00"


def test_deadline_rejects_garbage(capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong instant is a clear error, exit code 2."""
    assert main(["sla", "deadline", "вчера"]) == 2
    assert "not an ISO 8601 instant" in capsys.readouterr().err
