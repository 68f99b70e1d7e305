"""Settings: defaults, the TOML file, environment overrides and the errors a typo gets."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from datetime import date, time
from functools import reduce
from pathlib import Path
from typing import Any

import pytest

from b24app.config import (
    DEFAULT_KPI_TARGETS,
    SECTIONS,
    ConfigError,
    Secret,
    Settings,
    load_settings,
    with_generated_secrets,
)
from b24app.crypto import SecretBox
from kpi.production import default_shortened_days

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
WEBHOOK = "https://nois.bitrix24.ru/rest/1/s3cr3tw3bh00k/"


def _get(settings: Settings, dotted: str) -> Any:
    return reduce(getattr, dotted.split("."), settings)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("dotted", "expected"), [
    ("app.public_url", "http://127.0.0.1:8000"),
    ("app.encryption_key", Secret("")),
    ("app.log_level", "INFO"),
    ("database.url", "sqlite:///var/b24app.sqlite3"),
    ("database.echo", False),
    ("portal.mode", "local_app"),
    ("portal.oauth_url", "https://oauth.bitrix.info/oauth/token/"),
    ("portal.requests_per_second", 2.0),
    ("portal.burst", 50),
    ("events.max_body_bytes", 65536),
    ("events.max_attempts", 8),
    ("calendar.timezone", "Asia/Novosibirsk"),
    ("calendar.workdays", (1, 2, 3, 4, 5)),
    ("calendar.day_start", time(9, 0)),
    ("calendar.day_end", time(17, 30)),
    ("calendar.breaks", ()),
    ("calendar.extra_days_off", ()),
    ("sla.target_minutes", 120),
    ("sla.warn_ratio", 0.75),
    ("sla.head_of_sales_user_id", 0),
    ("sla.request_group_ids", ()),
    ("task_format.min_words", 3),
    ("task_format.min_chars", 15),
    ("task_format.stop_words", ("Задача", "Вопрос", "Срочно", "Сделать", "!!!")),
    ("task_format.title_regex", ""),
    ("task_format.strict_mode", False),
    ("kpi.purchase_source", "deals"),
    ("scheduler.sync_minutes", 5),
    ("scheduler.kpi_cron", "0 2 * * *"),
    ("scheduler.digest_cron", "0 9 * * MON"),
])
def test_defaults(dotted: str, expected: Any) -> None:
    assert _get(load_settings(env={}), dotted) == expected


def test_default_calendar_and_targets_follow_the_domain() -> None:
    settings = load_settings(env={})
    assert date(2026, 11, 3) in settings.calendar.shortened_days
    assert date(2025, 11, 1) in settings.calendar.shortened_days
    assert set(settings.calendar.shortened_days) == default_shortened_days()
    assert settings.kpi.targets["return_rate"] == 70.0
    assert settings.kpi.targets["visits"] == 30.0
    assert settings.calendar.tzinfo.key == "Asia/Novosibirsk"
    assert load_settings(env={}) == Settings()


@pytest.mark.parametrize(("toml", "dotted", "expected"), [
    ('[app]\npublic_url = "https://b24.nois.ru"', "app.public_url", "https://b24.nois.ru"),
    ('[app]\nlog_level = "debug"', "app.log_level", "DEBUG"),
    ('[database]\nurl = "postgresql://u@db/b24"', "database.url", "postgresql://u@db/b24"),
    ("[database]\necho = true", "database.echo", True),
    ('[portal]\nmode = "webhook"', "portal.mode", "webhook"),
    ("[portal]\nrequests_per_second = 5", "portal.requests_per_second", 5.0),
    (f'[portal]\nwebhook_url = "{WEBHOOK}"', "portal.webhook_url", Secret(WEBHOOK)),
    ("[events]\nbatch_size = 200", "events.batch_size", 200),
    ('[calendar]\nworkdays = "1-6"', "calendar.workdays", (1, 2, 3, 4, 5, 6)),
    ('[calendar]\nworkdays = "1,3, 5"', "calendar.workdays", (1, 3, 5)),
    ("[calendar]\nworkdays = [5, 1]", "calendar.workdays", (1, 5)),
    ('[calendar]\nday_start = "08:30"', "calendar.day_start", time(8, 30)),
    ("[calendar]\nday_end = 18:00:00", "calendar.day_end", time(18, 0)),
    ('[calendar]\nbreaks = ["13:00-14:00"]', "calendar.breaks", ((time(13), time(14)),)),
    ("[calendar]\nshortened_days = [2028-02-22]", "calendar.shortened_days",
     (date(2028, 2, 22),)),
    ('[calendar]\nextra_days_off = ["2026-12-31"]', "calendar.extra_days_off",
     (date(2026, 12, 31),)),
    ("[sla]\nrequest_group_ids = [12, 15]", "sla.request_group_ids", (12, 15)),
    ("[sla]\nwarn_ratio = 0.8", "sla.warn_ratio", 0.8),
    ('[task_format]\nstop_words = ["Тест"]', "task_format.stop_words", ("Тест",)),
    ('[task_format]\ntitle_regex = "^\\\\w+"', "task_format.title_regex", "^\\w+"),
    ('[kpi]\npurchase_source = "smart_invoices"', "kpi.purchase_source", "smart_invoices"),
    ('[scheduler]\ndigest_cron = "30 8 * * FRI"', "scheduler.digest_cron", "30 8 * * FRI"),
])
def test_file_values(tmp_path: Path, toml: str, dotted: str, expected: Any) -> None:
    assert _get(load_settings(_write(tmp_path, toml), env={}), dotted) == expected


def test_a_partial_targets_table_keeps_the_other_defaults(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, "[kpi.targets]\nvisits = 25"), env={})
    assert settings.kpi.targets == {**DEFAULT_KPI_TARGETS, "visits": 25.0}


@pytest.mark.parametrize(("name", "value", "dotted", "expected"), [
    ("B24APP_DATABASE_URL", "postgresql://u@db/x", "database.url", "postgresql://u@db/x"),
    ("B24APP_DATABASE_ECHO", "yes", "database.echo", True),
    ("B24APP_DATABASE_ECHO", "0", "database.echo", False),
    ("B24APP_APP_ENCRYPTION_KEY", "k3y", "app.encryption_key", Secret("k3y")),
    ("B24APP_PORTAL_CLIENT_ID", "local.123", "portal.client_id", "local.123"),
    ("B24APP_PORTAL_BURST", "10", "portal.burst", 10),
    ("B24APP_PORTAL_REQUESTS_PER_SECOND", "2.5", "portal.requests_per_second", 2.5),
    ("B24APP_TASK_FORMAT_MIN_WORDS", "4", "task_format.min_words", 4),
    ("B24APP_TASK_FORMAT_STRICT_MODE", "true", "task_format.strict_mode", True),
    ("B24APP_TASK_FORMAT_STOP_WORDS", "Задача, Срочно", "task_format.stop_words",
     ("Задача", "Срочно")),
    ("B24APP_SLA_REQUEST_GROUP_IDS", "12,15", "sla.request_group_ids", (12, 15)),
    ("B24APP_SLA_REQUEST_GROUP_IDS", "[7]", "sla.request_group_ids", (7,)),
    ("B24APP_CALENDAR_WORKDAYS", "1-6", "calendar.workdays", (1, 2, 3, 4, 5, 6)),
    ("B24APP_CALENDAR_DAY_END", "18:00", "calendar.day_end", time(18, 0)),
    ("B24APP_CALENDAR_EXTRA_WORKING_DAYS", "2026-12-26, 2026-12-27",
     "calendar.extra_working_days", (date(2026, 12, 26), date(2026, 12, 27))),
    ("B24APP_KPI_TARGETS", "{ nps = 60 }", "kpi.targets", {**DEFAULT_KPI_TARGETS, "nps": 60.0}),
    ("B24APP_SCHEDULER_KPI_CRON", "15 3 * * *", "scheduler.kpi_cron", "15 3 * * *"),
])
def test_environment_overrides(name: str, value: str, dotted: str, expected: Any) -> None:
    assert _get(load_settings(env={name: value}), dotted) == expected


def test_environment_beats_the_file_and_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[sla]\ntarget_minutes = 90\nwarn_ratio = 0.5")
    settings = load_settings(env={"B24APP_CONFIG": str(path), "B24APP_SLA_TARGET_MINUTES": "60"})
    assert (settings.sla.target_minutes, settings.sla.warn_ratio) == (60, 0.5)


def test_other_b24app_variables_are_not_settings() -> None:
    env = {"B24APP_VENV": ".venv", "B24APP_TEST_PG_URL": "postgresql://x", "HOME": "/root"}
    assert load_settings(env=env) == Settings()


@pytest.mark.parametrize(("toml", "env", "message"), [
    ("[portal]\nclient_sercet = 'x'", {}, r"unknown key 'client_sercet' in \[portal\]"),
    ("[databse]\nurl = 'sqlite://'", {}, r"unknown section \[databse\]"),
    ("[kpi.targets]\nvisit = 1", {}, r"\[kpi\] targets: unknown KPI 'visit'"),
    ("", {"B24APP_PORTAL_CLIENT_SERCET": "x"},
     r"B24APP_PORTAL_CLIENT_SERCET: unknown key 'client_sercet' in \[portal\]"),
    ("", {"B24APP_TASK_FORMAT_MIN_WORD": "3"}, r"unknown key 'min_word' in \[task_format\]"),
])
def test_unknown_keys_are_errors(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, toml), env=env)


@pytest.mark.parametrize(("toml", "env", "message"), [
    ("[portal]\nburst = '50'", {}, r"\[portal\] burst: expected an integer, got str '50'"),
    ("[portal]\nburst = 0", {}, r"\[portal\] burst: must be >= 1"),
    ("[portal]\nburst = true", {}, r"burst: expected an integer, got bool"),
    ("[database]\necho = 'yes'", {}, r"\[database\] echo: expected true or false"),
    ("[portal]\nmode = 'oauth'", {}, r"mode: expected one of local_app, webhook"),
    ("[app]\npublic_url = 'b24.nois.ru'", {}, r"public_url: expected an http\(s\):// URL"),
    ("[database]\nurl = 'mysql://x'", {}, r"url: expected a sqlite:// or postgresql:// URL"),
    ("[calendar]\ntimezone = 'Mars/Olympus'", {}, r"unknown time zone 'Mars/Olympus'"),
    ("[calendar]\nworkdays = '1-8'", {}, r"workdays: expected ISO weekdays"),
    ("[calendar]\nday_start = '9am'", {}, r"day_start: expected a time HH:MM"),
    ("[calendar]\nday_start = '18:00'", {}, r"day_start must be before day_end"),
    ("[calendar]\nbreaks = ['08:00-09:30']", {}, r"every break must lie within"),
    ("[calendar]\nshortened_days = ['2026-13-01']", {}, r"item 0: expected a date"),
    ("[sla]\nwarn_ratio = 1.5", {}, r"warn_ratio: must be < 1"),
    ("[sla]\nrequest_group_ids = 12", {}, r"request_group_ids: expected a list"),
    ("[task_format]\ntitle_regex = '('", {}, r"title_regex: invalid regular expression"),
    ("[kpi.targets]\nvisits = 'many'", {}, r"visits: expected a number"),
    ("[scheduler]\nkpi_cron = '0 2 * *'", {}, r"kpi_cron: expected a 5-field crontab"),
    ("[scheduler]\nkpi_cron = '0 25 * * *'", {}, r"kpi_cron: invalid crontab"),
    ("[portal]\nwebhook_url = 'https://x.bitrix24.ru/api/'", {}, r"webhook_url: expected"),
    ("", {"B24APP_PORTAL_BURST": "many"},
     r"B24APP_PORTAL_BURST: expected an integer, got str 'many'"),
    ("", {"B24APP_DATABASE_ECHO": "maybe"}, r"B24APP_DATABASE_ECHO: expected true or false"),
    ("[app]\nlog_level = 'INFO'\n[app]\nx = 1", {}, r"not valid TOML"),
    ("app = 1", {}, r"\[app\] must be a table"),
])
def test_wrong_values_are_errors(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_write(tmp_path, toml), env=env)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(env={"B24APP_CONFIG": str(tmp_path / "nope.toml")})


def test_secrets_never_show_in_repr_or_errors(tmp_path: Path) -> None:
    env = {
        "B24APP_APP_SECRET_KEY": "sk-very-secret-1",
        "B24APP_APP_ENCRYPTION_KEY": "ek-very-secret-2",
        "B24APP_PORTAL_CLIENT_SECRET": "cs-very-secret-3",
        "B24APP_PORTAL_WEBHOOK_URL": WEBHOOK,
        "B24APP_PORTAL_OUTGOING_WEBHOOK_TOKEN": "ow-very-secret-4",
        "B24APP_DATABASE_URL": "postgresql://app:pw-very-secret-5@db/b24",
    }
    settings = load_settings(env=env)
    shown = f"{settings!r} {settings!s} {settings.app} {settings.app.secret_key}"
    for secret in ("very-secret", "s3cr3tw3bh00k"):
        assert secret not in shown
    assert settings.portal.client_secret.reveal() == "cs-very-secret-3"
    assert settings.database.url.endswith("pw-very-secret-5@db/b24")
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"B24APP_PORTAL_WEBHOOK_URL": "https://x.ru/rest/s3cr3tw3bh00k"})
    assert "s3cr3tw3bh00k" not in str(caught.value)
    bad = _write(tmp_path, "[portal]\nclient_secret = 12345678")
    with pytest.raises(ConfigError) as caught:
        load_settings(bad, env={})
    assert "12345678" not in str(caught.value)


def test_the_example_file_equals_the_defaults() -> None:
    assert load_settings(EXAMPLE, env={}) == Settings()


# Keys that the example documents commented out, because setting them freezes a default.
COMMENTED_IN_EXAMPLE = {("calendar", "shortened_days")}


def test_the_example_file_lists_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    example = tomllib.loads(text)
    assert set(example) == set(SECTIONS)
    for section, cls in SECTIONS.items():
        names = {f.name for f in fields(cls)}
        commented = {key for sec, key in COMMENTED_IN_EXAMPLE if sec == section}
        assert set(example[section]) == names - commented, section
        for key in commented:
            assert re.search(rf"^# {key} = ", text, re.MULTILINE), key
    assert set(example["kpi"]["targets"]) == set(DEFAULT_KPI_TARGETS)


def test_generated_secrets_fill_only_empty_keys() -> None:
    settings = with_generated_secrets(load_settings(env={"B24APP_APP_SECRET_KEY": "mine"}))
    assert settings.app.secret_key == Secret("mine")
    box = SecretBox.from_settings(settings)
    assert box.decrypt(box.encrypt("токен")) == "токен"
