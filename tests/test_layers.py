"""The architecture's import rules, checked by walking the source (ARCHITECTURE: packages)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
# kpi's services may use storage (ARCHITECTURE: "the services also the models"); the rest of
# kpi is the pure core.
KPI_SERVICES = {"compute", "compute_sql", "compute_facts"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("kpi"), ids=lambda p: p.stem)
def test_the_pure_core_imports_only_stdlib_holidays_and_itself(path: Path) -> None:
    """kpi/ (but its compute services) never reaches storage, HTTP or the app."""
    if path.stem in KPI_SERVICES:
        return
    foreign = {m for m in _imports(path) if _top(m) not in STDLIB | {"kpi", "holidays"}}
    assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


@pytest.mark.parametrize("path", _modules("b24emu"), ids=lambda p: p.stem)
def test_the_emulator_never_imports_the_app(path: Path) -> None:
    """b24emu/ is a Bitrix24 portal: stdlib, Flask and Werkzeug only."""
    foreign = {m for m in _imports(path)
               if _top(m) not in STDLIB | {"b24emu", "flask", "werkzeug"}}
    assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


def test_only_the_gateway_client_imports_fast_bitrix24() -> None:
    """One gateway owns Bitrix24 (ARCHITECTURE habit 2)."""
    users = sorted(str(p.relative_to(ROOT)) for package in ("b24app", "handlers", "sync", "kpi")
                   for p in _modules(package) if any(_top(m) == "fast_bitrix24"
                                                     for m in _imports(p)))
    assert users == ["b24app/gateway/client.py"]


@pytest.mark.parametrize("package", ["handlers", "sync", "kpi"])
def test_domain_packages_never_reach_the_web_edge(package: str) -> None:
    """Handlers, sync and kpi work from the inbox and the gateway, never from Flask."""
    offenders = sorted(str(p.relative_to(ROOT)) for p in _modules(package)
                       if any(_top(m) == "flask" or m.startswith("b24app.web")
                              for m in _imports(p)))
    assert not offenders
