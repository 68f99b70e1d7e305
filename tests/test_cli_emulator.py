"""``b24app emulator`` prints its JSON line and serves a portal until stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import requests


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "b24app.cli", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=15)  # Drains and closes the pipes.


def test_emulator_command_prints_connection_line_and_serves() -> None:
    """The JSON line names a working webhook and OAuth endpoint of a demo portal."""
    proc, info = _start("--dataset", "demo", "--seed", "3")
    try:
        assert set(info) >= {"portal_url", "webhook_url", "client_id", "client_secret",
                             "oauth_url"}
        assert info["webhook_url"].startswith(info["portal_url"] + "/rest/1/")
        assert info["client_id"].startswith("local.")
        deals = requests.get(info["webhook_url"] + "crm.deal.list", timeout=10).json()
        assert deals["total"] > 1000 and len(deals["result"]) == 50
        oauth = requests.get(info["oauth_url"], params={"grant_type": "refresh_token"},
                             timeout=10)
        assert oauth.status_code == 400 and oauth.json()["error"] == "invalid_client"
    finally:
        _stop(proc)


def test_emulator_state_file_survives_a_restart(tmp_path: Path) -> None:
    """With ``--state`` a change made before a restart is still there after it."""
    state = tmp_path / "portal.state"
    proc, info = _start("--dataset", "empty", "--state", str(state))
    try:
        added = requests.post(info["webhook_url"] + "crm.company.add",
                              json={"fields": {"TITLE": "ООО Ромашка"}}, timeout=10).json()
        company_id = added["result"]
    finally:
        _stop(proc)
    assert state.exists()
    proc, info = _start("--dataset", "empty", "--state", str(state))
    try:
        got = requests.get(info["webhook_url"] + "crm.company.get", params={"id": company_id},
                           timeout=10).json()
        assert got["result"]["TITLE"] == "ООО Ромашка"
    finally:
        _stop(proc)
