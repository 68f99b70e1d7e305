"""Admin commands against an emulator portal installed through the real install flow."""

from __future__ import annotations

import json
import select as posix_select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from b24app.cli import main
from b24app.config import CONFIG_ENV
from b24app.crypto import SecretBox, generate_key
from b24app.db import current_revision, head_revision
from b24app.gateway.client import BitrixClient
from b24app.lifecycle import COMPANY_FIELDS, OFFLINE_EVENTS, ONLINE_EVENTS
from b24app.models import InboxEvent, Portal, SecretName
from b24emu import EmulatorServer
from tests.appfixtures import AppServer

BINDINGS = len(ONLINE_EVENTS) + len(OFFLINE_EVENTS)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def encryption_key() -> str:
    """The key of the config file, shared by the test's app server and the CLI."""
    return generate_key()


@pytest.fixture
def secret_box(encryption_key: str) -> SecretBox:
    """Overrides ``tests.dbfixtures.secret_box``: the app server encrypts with our key."""
    return SecretBox(encryption_key)


def write_config(path: Path, *, db_url: str, key: str = "", emulator: EmulatorServer | None = None,
                 public_url: str = "http://127.0.0.1:8000", extra: str = "") -> Path:
    """A TOML config as an admin would write it (strings quoted as JSON, valid TOML)."""
    lines = ["[app]", f"public_url = {json.dumps(public_url)}"]
    if key:
        lines.append(f"encryption_key = {json.dumps(key)}")
    lines += ["[database]", f"url = {json.dumps(db_url)}", "[portal]",
              "allow_insecure_endpoints = true"]
    if emulator is not None:
        app = emulator.portal.app
        lines += [f"client_id = {json.dumps(app.client_id)}",
                  f"client_secret = {json.dumps(app.client_secret)}",
                  f"oauth_url = {json.dumps(emulator.url + '/oauth/token/')}"]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture
def installed(emulator: EmulatorServer, app_server: AppServer) -> AppServer:
    """The app installed on the emulator portal (ONAPPINSTALL through the app server)."""
    result = emulator.portal.install_app(f"{app_server.url}/b24/install")
    assert result.status == 200, result.error
    return app_server


@pytest.fixture
def config(tmp_path: Path, db_url: str, encryption_key: str, emulator: EmulatorServer,
           installed: AppServer) -> Path:
    """The config of the installed service: same database, key, public URL and OAuth app."""
    return write_config(tmp_path / "b24app.toml", db_url=db_url, key=encryption_key,
                        emulator=emulator, public_url=installed.url)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` → exit code, stdout, stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _secrets(sessions: sessionmaker[Session], box: SecretBox) -> list[str]:
    names: tuple[SecretName, ...] = ("access_token", "refresh_token", "application_token")
    with sessions() as session:
        portal = session.scalars(select(Portal)).one()
        return [value for name in names if (value := portal.get_secret(box, name))]


# -- install-status and bind-events -------------------------------------------------------------
def test_install_status_reports_a_healthy_install(
        config: Path, installed: AppServer, emulator: EmulatorServer, secret_box: SecretBox,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Everything bound and created, tokens valid; no token is printed."""
    code, out, _ = run(capsys, "install-status", "--config", str(config))
    assert code == 0, out
    assert f"portal {emulator.portal.domain} (member_id {emulator.portal.member_id})" in out
    assert "status        active, mode local_app, app version 1" in out
    assert "access token valid" in out
    assert f"{BINDINGS} of {BINDINGS} bound" in out and "MISSING" not in out
    assert f"{len(COMPANY_FIELDS)} of {len(COMPANY_FIELDS)} UF_CRM_NOIS_* company fields " \
           "present" in out
    assert "KPI type (code nois_kpi) present" in out
    assert "problems      none" in out
    code, raw, _ = run(capsys, "install-status", "--json", "--config", str(config))
    report = json.loads(raw)
    assert code == 0 and report["ok"] is True
    remote = report["portals"][0]["remote"]
    assert (remote["events_missing"], remote["fields_missing"], remote["kpi_type"]) == (
        [], [], True)
    assert report["portals"][0]["inbox"]["dead"] == 0
    for secret in _secrets(installed.ctx.sessions, secret_box):
        assert secret not in out and secret not in raw


def test_a_missing_binding_is_reported_and_bind_events_restores_it(
        config: Path, installed: AppServer, emulator: EmulatorServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An event unbound on the portal shows as missing; bind-events binds it again, once."""
    handler = f"{installed.url}/b24/events"
    assert emulator.portal.events.unbind("ONCRMDEALUPDATE", handler,
                                         emulator.portal.app.client_id) == 1
    code, out, _ = run(capsys, "install-status", "--config", str(config))
    assert code == 1
    assert f"{BINDINGS - 1} of {BINDINGS} bound; MISSING ONCRMDEALUPDATE online" in out
    assert "1 event binding(s) missing" in out
    code, out, _ = run(capsys, "bind-events", "--config", str(config),
                       "--portal", emulator.portal.member_id)
    assert code == 0, out
    assert f"handler {handler}" in out
    assert "bound           1: ONCRMDEALUPDATE online" in out
    assert f"unchanged       {BINDINGS - 1 + len(COMPANY_FIELDS) + 1} item(s)" in out
    assert run(capsys, "install-status", "--config", str(config))[0] == 0
    code, out, _ = run(capsys, "bind-events", "--config", str(config))
    assert code == 0 and "  bound" not in out  # idempotent


def test_bind_events_for_an_unknown_portal_is_a_usage_error(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A member_id nobody installed with: exit 2, named."""
    code, _, err = run(capsys, "bind-events", "--config", str(config), "--portal", "nobody")
    assert code == 2 and "no portal with member_id nobody" in err


def test_install_status_says_when_the_portal_is_unreachable(
        config: Path, emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The emulator stopped: NOT REACHABLE, exit 1, quickly (no 20 s of client retries)."""
    emulator.stop()
    started = time.monotonic()
    code, out, _ = run(capsys, "install-status", "--config", str(config))
    assert code == 1
    assert "NOT REACHABLE: cannot connect to 127.0.0.1" in out
    assert time.monotonic() - started < 10


# -- doctor ---------------------------------------------------------------------------------------
def test_doctor_passes_on_a_healthy_install(config: Path, emulator: EmulatorServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Every check passes; no sync yet and the portal's calendar lacking the 2026 transfers
    are warnings (reported for the admin, never guessed away)."""
    code, out, _ = run(capsys, "doctor", "--config", str(config))
    assert code == 0, out
    assert "✗" not in out
    name = f"portal {emulator.portal.domain} ({emulator.portal.member_id})"
    for line in ("✓ config: loaded", "✓ database: reachable", "✓ migrations: at head revision",
                 "✓ encryption key: decrypts the stored application token of 1 portal(s)",
                 f"✓ {name} app.info: INSTALLED=True", f"✓ {name} clock: server.time",
                 f"✓ {name} events: {BINDINGS} of {BINDINGS} bound",
                 f"✓ {name} scopes: granted: ", f"✓ {name} inbox: drained",
                 f"✓ {name} dead letters: none",
                 f"! {name} sync: no incremental sync has run yet",
                 f"! {name} calendar: ", "difference(s) from the production calendar in",
                 "2026-01-09", "doctor: 0 failed, 2 warning(s)"):
        assert line in out


def test_doctor_fails_when_the_portal_is_down(config: Path, emulator: EmulatorServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The emulator stopped: one clear ✗ line for the portal."""
    emulator.stop()
    code, out, _ = run(capsys, "doctor", "--config", str(config))
    assert code == 1
    assert f"✗ portal {emulator.portal.domain} ({emulator.portal.member_id}): not reachable: " \
           "cannot connect to 127.0.0.1" in out


def test_doctor_fails_on_clock_skew(config: Path, emulator: EmulatorServer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The portal's clock an hour ahead (which also expires our access token: refreshed)."""
    emulator.portal.clock.advance(3600)
    code, out, _ = run(capsys, "doctor", "--config", str(config))
    assert code == 1
    line = next(line for line in out.splitlines() if " clock: " in line)
    assert line.startswith("✗ portal ")
    assert "server.time differs from ours by +3600 s (limit ±60 s)" in line \
        or "by +3599 s" in line or "by +3601 s" in line
    assert emulator.portal.auth.refresh_count == 1


def test_doctor_fails_when_the_tokens_are_revoked(config: Path, emulator: EmulatorServer,
                                                  installed: AppServer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Every token of the app dropped: credentials rejected; the portal needs a re-install."""
    emulator.portal.auth.revoke_app(emulator.portal.app.client_id)
    code, out, _ = run(capsys, "doctor", "--config", str(config))
    assert code == 1
    assert "not reachable: credentials rejected (invalid_grant): re-install the app" in out
    code, out, _ = run(capsys, "doctor", "--config", str(config))
    assert code == 1 and "status needs_reinstall: re-install the app" in out
    code, out, _ = run(capsys, "install-status", "--config", str(config))
    assert code == 1 and "the portal rejects our credentials: re-install the app" in out


def test_doctor_on_an_unmigrated_database(tmp_path: Path, blank_db_url: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A blank database: reachable, but not at head → run migrate."""
    config = write_config(tmp_path / "c.toml", db_url=blank_db_url, key=generate_key())
    code, out, _ = run(capsys, "doctor", "--config", str(config))
    assert code == 1
    assert "✓ database: reachable" in out
    assert f"✗ migrations: database at no revision, code at {head_revision()}: run " \
           "`b24app migrate`" in out
    code, _, err = run(capsys, "install-status", "--config", str(config))
    assert code == 1 and "run `b24app migrate` first" in err


# -- worker, migrate, gen-key ---------------------------------------------------------------------
def test_worker_once_drains_a_stored_event(config: Path, emulator: EmulatorServer,
                                           installed: AppServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A deal added on the portal reaches the inbox; ``worker --once`` processes it."""
    client = BitrixClient(emulator.portal.webhook_url)
    try:
        deal_id = client.call("crm.deal.add", {"fields": {"TITLE": "Поставка"}}).value
    finally:
        client.close()
    assert emulator.portal.events.wait_idle(10)
    code, out, _ = run(capsys, "worker", "--once", "--config", str(config))
    assert code == 0 and out.strip() == "processed 1 event(s)"
    with installed.ctx.sessions() as session:
        rows = session.scalars(select(InboxEvent)).all()
    assert [(r.event, r.entity_id, r.status) for r in rows] == [
        ("ONCRMDEALADD", str(deal_id), "done")]
    assert run(capsys, "worker", "--once", "--config", str(config))[1].strip() == \
        "processed 0 event(s)"


def test_migrate_a_blank_database(tmp_path: Path, blank_db_url: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Upgrades to head and says so; a second run changes nothing."""
    config = write_config(tmp_path / "c.toml", db_url=blank_db_url)
    code, out, _ = run(capsys, "migrate", "--config", str(config))
    assert code == 0
    assert f"revision {head_revision()} (upgraded from (empty))" in out
    assert current_revision(blank_db_url) == head_revision()
    code, out, _ = run(capsys, "migrate", "--config", str(config))
    assert code == 0 and f"revision {head_revision()} (already at head)" in out


def test_migrate_hides_the_database_password(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable server: exit 1, and the password of the URL is not printed."""
    url = "postgresql://admin:hunter2@127.0.0.1:1/nowhere"
    config = write_config(tmp_path / "c.toml", db_url=url)
    code, out, err = run(capsys, "migrate", "--config", str(config))
    assert code == 1 and "migration of postgresql://admin:***@127.0.0.1:1/nowhere failed" in err
    assert "hunter2" not in out + err


def test_gen_key_prints_a_fernet_key(capsys: pytest.CaptureFixture[str]) -> None:
    """The printed key works as [app] encryption_key."""
    code, out, _ = run(capsys, "gen-key")
    key = out.strip()
    assert code == 0 and len(key) == 44
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"
    assert SecretBox(key).decrypt(SecretBox(key).encrypt("token")) == "token"


# -- configuration errors -------------------------------------------------------------------------
@pytest.mark.parametrize(("command", "text", "named"), [
    ("doctor", '[database]\nurl = "mysql://db/x"\n', "[database] url"),
    ("install-status", '[app]\nlog_levle = "INFO"\n', "unknown key 'log_levle' in [app]"),
    ("migrate", "[portal\n", "not valid TOML"),
    ("worker", '[events]\nbatch_size = 0\n', "[events] batch_size: must be >= 1"),
    ("bind-events", "", "encryption_key"),
])
def test_config_errors_exit_2_and_name_the_key(tmp_path: Path, command: str, text: str,
                                               named: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A bad file, key or value: exit code 2 and the offending key in the message."""
    config = tmp_path / "bad.toml"
    db = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    config.write_text(text if text else f'[database]\nurl = "{db}"\n', encoding="utf-8")
    code, out, err = run(capsys, command, "--config", str(config))
    assert code == 2
    assert named in out + err


def test_config_comes_from_the_environment_by_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without --config, $B24APP_CONFIG names the file."""
    config = write_config(tmp_path / "c.toml", db_url=f"sqlite:///{tmp_path / 'env.sqlite3'}")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    code, out, _ = run(capsys, "migrate")
    assert code == 0 and "env.sqlite3" in out


# -- serve, wsgi and the long-running worker ------------------------------------------------------
def test_serve_help_points_to_gunicorn(capsys: pytest.CaptureFixture[str]) -> None:
    """The development server's help names the production command."""
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "gunicorn -w 4 -b 0.0.0.0:8000 'b24app.wsgi:create()'" in capsys.readouterr().out


def test_wsgi_builds_the_app_only_when_asked(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing b24app.wsgi builds nothing; ``create()`` serves /healthz on the config's DB."""
    database = tmp_path / "wsgi.sqlite3"
    config = write_config(tmp_path / "c.toml", db_url=f"sqlite:///{database}",
                          key=generate_key())
    monkeypatch.setenv(CONFIG_ENV, str(config))
    from b24app import wsgi

    assert not database.exists()
    app = wsgi.create()
    try:
        assert app.test_client().get("/healthz").get_json()["db"] == "ok"
    finally:
        app.extensions["b24app"].ctx.close()
    assert database.exists()


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 30.0) -> None:
    """Read the process's stderr until a line contains ``text``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = posix_select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline()
            seen.append(line)
            if text in line:
                return
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"no {text!r} in the worker's stderr: {''.join(seen)}")


def test_worker_stops_gracefully_on_sigterm(tmp_path: Path, sqlite_db_url: str) -> None:
    """``b24app worker`` runs until SIGTERM, then exits 0."""
    config = write_config(tmp_path / "c.toml", db_url=sqlite_db_url, key=generate_key())
    proc = subprocess.Popen([sys.executable, "-m", "b24app.cli", "worker", "--config",
                             str(config)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_line(proc, "draining the inbox")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
