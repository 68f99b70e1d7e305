"""``b24app kpi``, ``report --xlsx`` and ``nps import`` against an installed demo portal."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from b24app.cli import main
from b24app.demo.stack import DemoStack
from sync.initial import initial_import


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoStack, Path]]:
    """The demo portal with the app installed and the mirror loaded, plus a config file."""
    with DemoStack(seed=3) as stack:
        portal_id = stack.install()
        initial_import(stack.ctx, portal_id, stack.ctx.clock())
        settings = stack.ctx.settings
        config = tmp_path_factory.mktemp("cfg") / "b24app.toml"
        config.write_text(
            f'[app]\npublic_url = "{settings.app.public_url}"\n'
            f'secret_key = "{settings.app.secret_key.reveal()}"\n'
            f'encryption_key = "{settings.app.encryption_key.reveal()}"\n'
            f'[database]\nurl = "{settings.database.url}"\n'
            f'[portal]\nclient_id = "{settings.portal.client_id}"\n'
            f'client_secret = "{settings.portal.client_secret.reveal()}"\n'
            f'oauth_url = "{settings.portal.oauth_url}"\nallow_insecure_endpoints = true\n'
            f'requests_per_second = 5.0\nburst = 250\n', encoding="utf-8")
        yield stack, config


def test_kpi_prints_the_table_and_writes_once(installed: tuple[DemoStack, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``kpi --write`` writes the cards; a second run writes nothing."""
    _stack, config = installed
    assert main(["kpi", "--period", "2026-10", "--write", "--config", str(config)]) == 0
    first = capsys.readouterr().out
    assert "KPI за октябрь 2026: менеджеров 6" in first
    assert "Личные визиты к клиентам" in first
    assert "новых карточек 6." in first
    assert main(["kpi", "--period", "2026-10", "--write", "--config", str(config)]) == 0
    assert ("полей компаний 0, полей карточек KPI 0, новых карточек 0."
            in capsys.readouterr().out)


def test_report_writes_an_excel_file(installed: tuple[DemoStack, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The workbook has the KPI, stale items and clients sheets."""
    _stack, config = installed
    target = tmp_path / "kpi.xlsx"
    assert main(["report", "--xlsx", str(target), "--period", "2026-10",
                 "--config", str(config)]) == 0
    assert f"report written: {target}" in capsys.readouterr().out
    workbook = openpyxl.load_workbook(io.BytesIO(target.read_bytes()))
    assert {"KPI", "Висяки", "Клиенты"} <= set(workbook.sheetnames)


def test_nps_import_reports_bad_rows(installed: tuple[DemoStack, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Valid rows are imported; a bad score is reported and the exit code says so."""
    stack, config = installed
    contact = next(iter(stack.portal.contacts))
    source = tmp_path / "nps.csv"
    source.write_text(f"контакт;оценка;дата\n{contact['ID']};9;2026-10-20\n{contact['ID']};11;"
                      "2026-04-20\n", encoding="utf-8")
    assert main(["nps", "import", str(source), "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "1" in out and "оценк" in out.lower()


def test_an_unknown_portal_is_a_usage_error(installed: tuple[DemoStack, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``--portal`` naming no portal exits 2 with a clear line."""
    _stack, config = installed
    assert main(["kpi", "--portal", "nope", "--config", str(config)]) == 2
    assert "no active portal with that member_id" in capsys.readouterr().err
