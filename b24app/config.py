"""Typed settings: defaults, then a TOML file, then ``B24APP_<SECTION>_<KEY>`` variables."""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_PREFIX = "B24APP_"
CONFIG_ENV = "B24APP_CONFIG"

# How an environment string becomes a value: kept as text, read as a TOML value, a boolean
# word, or a list (a TOML array, or comma-separated items each read as TOML when possible).
EnvKind = Literal["raw", "toml", "bool", "list"]
Parser = Callable[[Any], Any]


class ConfigError(ValueError):
    """A configuration file or environment value is unknown, missing or malformed."""


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings; ``reveal()`` it."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret text itself: pass it to the library that needs it, never to a log."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


# ---------------------------------------------------------------- value parsers


def _type_name(value: Any) -> str:
    return type(value).__name__


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {_type_name(value)} {value!r}")
    return value


def _secret(value: Any) -> Secret:
    # The value is never echoed: a mistyped secret is still a secret.
    if not isinstance(value, str):
        raise ConfigError(f"expected a string, got {_type_name(value)}")
    return Secret(value)


def _int(minimum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {_type_name(value)} {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _float(gt: float | None = None, lt: float | None = None, ge: float | None = None) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"expected a number, got {_type_name(value)} {value!r}")
        if gt is not None and not value > gt:
            raise ConfigError(f"must be > {gt}, got {value}")
        if ge is not None and not value >= ge:
            raise ConfigError(f"must be >= {ge}, got {value}")
        if lt is not None and not value < lt:
            raise ConfigError(f"must be < {lt}, got {value}")
        return float(value)

    return parse


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {_type_name(value)} {value!r}")
    return value


def _choice(*options: str, upper: bool = False) -> Parser:
    def parse(value: Any) -> str:
        text = _str(value)
        text = text.upper() if upper else text
        if text not in options:
            raise ConfigError(f"expected one of {', '.join(options)}; got {value!r}")
        return text

    return parse


def _http_url(value: Any) -> str:
    text = _str(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ConfigError(f"expected an http(s):// URL, got {value!r}")
    return text


def _webhook_url(value: Any) -> Secret:
    secret = _secret(value)
    # Shape only: https://<portal>/rest/<user id>/<secret>/; the secret part is not echoed.
    if secret and not re.match(r"^https?://[^/\s]+/rest/\d+/[^/\s]+/?$", secret.reveal()):
        raise ConfigError("expected https://<portal>/rest/<user id>/<secret>/")
    return secret


def _database_url(value: Any) -> str:
    text = _str(value)
    if not re.match(r"^(sqlite|postgres|postgresql)(\+\w+)?://", text):
        raise ConfigError("expected a sqlite:// or postgresql:// URL")
    return text


def _time(value: Any) -> time:
    if isinstance(value, time):
        return value
    text = _str(value)
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if not match:
        raise ConfigError(f"expected a time HH:MM, got {value!r}")
    return time(int(match[1]), int(match[2]))


def _date(value: Any) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(_str(value))
    except ValueError:
        raise ConfigError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def _list(item: Parser) -> Parser:
    def parse(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"expected a list, got {_type_name(value)} {value!r}")
        result = []
        for index, element in enumerate(value):
            try:
                result.append(item(element))
            except ConfigError as exc:
                raise ConfigError(f"item {index}: {exc}") from None
        return tuple(result)

    return parse


def _timezone(value: Any) -> str:
    text = _str(value)
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {value!r}") from None
    return text


def _workdays(value: Any) -> tuple[int, ...]:
    # ISO weekdays (1 = Monday): "1-5", "1,2,3,4,5,6" or a TOML list of integers.
    if isinstance(value, list):
        days = set(_list(_int(1))(value))
    else:
        days = set()
        for part in _str(value).replace(" ", "").split(","):
            match = re.fullmatch(r"([1-7])(?:-([1-7]))?", part)
            if not match:
                raise ConfigError(f"expected ISO weekdays like '1-5' or '1,2,3', got {value!r}")
            first, last = int(match[1]), int(match[2] or match[1])
            days.update(range(first, last + 1))
    if not days or not days <= set(range(1, 8)):
        raise ConfigError(f"weekdays must be within 1..7 (1 = Monday), got {value!r}")
    return tuple(sorted(days))


def _break(value: Any) -> tuple[time, time]:
    text = _str(value)
    start, sep, end = text.partition("-")
    if not sep:
        raise ConfigError(f"expected a break HH:MM-HH:MM, got {value!r}")
    first, last = _time(start), _time(end)
    if first >= last:
        raise ConfigError(f"a break must end after it starts, got {value!r}")
    return first, last


def _regex(value: Any) -> str:
    text = _str(value)
    try:
        re.compile(text)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression {value!r}: {exc}") from None
    return text


_CRON_FIELD = re.compile(r"^[\w*/,\-?#]+$")


def _cron(value: Any) -> str:
    text = _str(value)
    parts = text.split()
    if len(parts) != 5 or not all(_CRON_FIELD.match(part) for part in parts):
        raise ConfigError(f"expected a 5-field crontab 'min hour day month weekday', got {value!r}")
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as exc:
        raise ConfigError(f"invalid crontab {value!r}: {exc}") from None
    return text


# ---------------------------------------------------------------- defaults and field helper

@lru_cache(maxsize=1)
def shipped_shortened_days() -> tuple[date, ...]:
    """The shortened pre-holiday days shipped in ``kpi/data/shortened_days.json``."""
    # Read as data, not through kpi.production: that would import ``holidays`` (~0.1 s).
    text = resources.files("kpi").joinpath("data/shortened_days.json").read_text("utf-8")
    return tuple(sorted(date.fromisoformat(day) for day in json.loads(text)["days"]))


DEFAULT_STOP_WORDS: tuple[str, ...] = ("Задача", "Вопрос", "Срочно", "Сделать", "!!!")

# Numeric KPI targets of the domain brief (its KPI table); shares are percent. Plan- and
# growth-type KPIs (sales volume, LTV, NOIS share, response SLA) have no fixed number.
DEFAULT_KPI_TARGETS: Mapping[str, float] = MappingProxyType({
    "return_rate": 70.0,
    "nps": 70.0,
    "nps_coverage": 100.0,
    "new_active_clients": 15.0,
    "visits": 30.0,
    "crm_freshness": 95.0,
    "client_card": 100.0,
    "trainings": 1.0,
    "new_products_mailing": 1.0,
    "marketing_ideas": 2.0,
    "procurement_needs": 100.0,
    "task_format": 100.0,
})


def _kpi_targets(value: Any) -> Mapping[str, float]:
    # A partial table overrides only the KPIs it names; the rest keep their defaults.
    if not isinstance(value, dict):
        raise ConfigError(f"expected a table of KPI = number, got {_type_name(value)}")
    merged = dict(DEFAULT_KPI_TARGETS)
    for name, target in value.items():
        if name not in DEFAULT_KPI_TARGETS:
            known = ", ".join(DEFAULT_KPI_TARGETS)
            raise ConfigError(f"unknown KPI {name!r}; known: {known}")
        try:
            merged[name] = _float(ge=0)(target)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    return MappingProxyType(merged)


def _recognition_rules(value: Any) -> Mapping[str, Any]:
    # Validated here, with the KPI module's own parser, so a typo stops the service at start.
    from kpi.definitions import RecognitionRules

    if not isinstance(value, dict):
        raise ConfigError(f"expected a table of rule = value, got {_type_name(value)}")
    try:
        RecognitionRules.from_mapping(value)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return MappingProxyType(dict(value))


def _sales_plans(value: Any) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"expected a table of user ID = monthly plan, got {_type_name(value)}")
    plans: dict[str, float] = {}
    for user, plan in value.items():
        if not str(user).isdigit():
            raise ConfigError(f"plan key {user!r}: expected a Bitrix24 user ID")
        try:
            plans[str(user)] = _float(ge=0)(plan)
        except ConfigError as exc:
            raise ConfigError(f"plan of user {user}: {exc}") from None
    return MappingProxyType(plans)


NO_SECRET = Secret()
DAY_START = time(9, 0)
DAY_END = time(17, 30)


def meta(parse: Parser = _str, env: EnvKind = "raw") -> dict[str, Any]:
    """Field metadata: how the loader parses a file value and converts an environment string."""
    return {"parse": parse, "env": env}


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class AppSettings:
    """[app]: the service itself."""

    public_url: str = field(default="http://127.0.0.1:8000", metadata=meta(_http_url))
    secret_key: Secret = field(default=NO_SECRET, metadata=meta(_secret))
    encryption_key: Secret = field(default=NO_SECRET, metadata=meta(_secret))
    log_level: str = field(
        default="INFO", metadata=meta(_choice("DEBUG", "INFO", "WARNING", "ERROR", upper=True))
    )


@dataclass(frozen=True, repr=False)
class DatabaseSettings:
    """[database]: where the service keeps its state."""

    url: str = field(default="sqlite:///var/b24app.sqlite3", metadata=meta(_database_url))
    echo: bool = field(default=False, metadata=meta(_bool, "bool"))

    def __repr__(self) -> str:
        # A PostgreSQL URL may carry a password.
        masked = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", self.url)
        return f"DatabaseSettings(url={masked!r}, echo={self.echo!r})"


@dataclass(frozen=True)
class PortalSettings:
    """[portal]: how the service reaches Bitrix24."""

    mode: str = field(default="local_app", metadata=meta(_choice("local_app", "webhook")))
    client_id: str = field(default="", metadata=meta())
    client_secret: Secret = field(default=NO_SECRET, metadata=meta(_secret))
    oauth_url: str = field(
        default="https://oauth.bitrix.info/oauth/token/", metadata=meta(_http_url)
    )
    webhook_url: Secret = field(default=NO_SECRET, metadata=meta(_webhook_url))
    outgoing_webhook_token: Secret = field(default=NO_SECRET, metadata=meta(_secret))
    requests_per_second: float = field(default=2.0, metadata=meta(_float(gt=0), "toml"))
    burst: int = field(default=50, metadata=meta(_int(1), "toml"))
    allow_insecure_endpoints: bool = field(default=False, metadata=meta(_bool, "bool"))


@dataclass(frozen=True)
class EventsSettings:
    """[events]: event intake and the inbox worker."""

    max_body_bytes: int = field(default=65536, metadata=meta(_int(1024), "toml"))
    batch_size: int = field(default=50, metadata=meta(_int(1), "toml"))
    max_attempts: int = field(default=8, metadata=meta(_int(1), "toml"))
    backoff_base_seconds: float = field(default=5.0, metadata=meta(_float(gt=0), "toml"))
    backoff_max_seconds: float = field(default=3600.0, metadata=meta(_float(gt=0), "toml"))


@dataclass(frozen=True)
class CalendarSettings:
    """[calendar]: working time for SLA clocks and notifications."""

    timezone: str = field(default="Asia/Novosibirsk", metadata=meta(_timezone))
    workdays: tuple[int, ...] = field(default=(1, 2, 3, 4, 5), metadata=meta(_workdays))
    day_start: time = field(default=DAY_START, metadata=meta(_time))
    day_end: time = field(default=DAY_END, metadata=meta(_time))
    breaks: tuple[tuple[time, time], ...] = field(
        default=(), metadata=meta(_list(_break), "list")
    )
    # Unset = the shipped table, which new releases extend; a list replaces it entirely.
    shortened_days: tuple[date, ...] = field(
        default_factory=shipped_shortened_days, metadata=meta(_list(_date), "list")
    )
    shortened_by_minutes: int = field(default=60, metadata=meta(_int(0), "toml"))
    extra_days_off: tuple[date, ...] = field(default=(), metadata=meta(_list(_date), "list"))
    extra_working_days: tuple[date, ...] = field(
        default=(), metadata=meta(_list(_date), "list")
    )

    def __post_init__(self) -> None:
        if self.day_start >= self.day_end:
            raise ConfigError("[calendar] day_start must be before day_end")
        for start, end in self.breaks:
            if start < self.day_start or end > self.day_end:
                raise ConfigError("[calendar] every break must lie within day_start..day_end")

    @property
    def tzinfo(self) -> ZoneInfo:
        """The portal's time zone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class SlaSettings:
    """[sla]: the response clock."""

    target_minutes: int = field(default=120, metadata=meta(_int(1), "toml"))
    warn_ratio: float = field(default=0.75, metadata=meta(_float(gt=0, lt=1), "toml"))
    head_of_sales_user_id: int = field(default=0, metadata=meta(_int(0), "toml"))
    request_group_ids: tuple[int, ...] = field(
        default=(), metadata=meta(_list(_int(1)), "list")
    )
    department_ids: tuple[int, ...] = field(
        default=(), metadata=meta(_list(_int(1)), "list")
    )


@dataclass(frozen=True)
class TaskFormatSettings:
    """[task_format]: what a properly set task title looks like."""

    min_words: int = field(default=3, metadata=meta(_int(0), "toml"))
    min_chars: int = field(default=15, metadata=meta(_int(0), "toml"))
    stop_words: tuple[str, ...] = field(
        default=DEFAULT_STOP_WORDS, metadata=meta(_list(_str), "list")
    )
    title_regex: str = field(default="", metadata=meta(_regex))
    strict_mode: bool = field(default=False, metadata=meta(_bool, "bool"))


@dataclass(frozen=True)
class KpiSettings:
    """[kpi]: where purchases come from and the targets."""

    purchase_source: str = field(
        default="deals", metadata=meta(_choice("deals", "smart_invoices"))
    )
    targets: Mapping[str, float] = field(
        default_factory=lambda: DEFAULT_KPI_TARGETS,
        hash=False,  # a mapping is unhashable; Settings should stay usable as a cache key
        metadata=meta(_kpi_targets, "toml"),
    )
    sales_department_ids: tuple[int, ...] = field(
        default=(), metadata=meta(_list(_int(1)), "list")
    )
    include_head: bool = field(default=False, metadata=meta(_bool, "bool"))
    plans: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType({}), hash=False,
        metadata=meta(_sales_plans, "toml"),
    )
    rules: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType({}), hash=False,
        metadata=meta(_recognition_rules, "toml"),
    )


@dataclass(frozen=True)
class SchedulerSettings:
    """[scheduler]: periodic jobs of the worker."""

    sync_minutes: int = field(default=5, metadata=meta(_int(1), "toml"))
    kpi_cron: str = field(default="0 2 * * *", metadata=meta(_cron))
    digest_cron: str = field(default="0 9 * * MON", metadata=meta(_cron))


def _month_day(value: Any) -> str:
    text = _str(value).strip()
    match = re.fullmatch(r"(\d{2})-(\d{2})", text)
    try:
        if match is None:
            raise ValueError(text)
        date(2025, int(match[1]), int(match[2]))  # 2025 has no 02-29: a start every year
    except ValueError:
        raise ConfigError(f"expected a month and day MM-DD, got {value!r}") from None
    return text


@dataclass(frozen=True)
class NpsSettings:
    """[nps]: where NPS answers come from, when the two yearly waves start, how links live."""

    score_field: str = field(default="UF_CRM_NPS_SCORE", metadata=meta())
    date_field: str = field(default="UF_CRM_NPS_DATE", metadata=meta())
    waves: tuple[str, ...] = field(default=("04-01", "10-01"),
                                   metadata=meta(_list(_month_day), "list"))
    link_ttl_days: int = field(default=60, metadata=meta(_int(1), "toml"))
    invite_within_days: int = field(default=60, metadata=meta(_int(1), "toml"))
    active_months: int = field(default=12, metadata=meta(_int(1), "toml"))

    def __post_init__(self) -> None:
        if len(self.waves) != 2 or self.waves[0] >= self.waves[1]:
            raise ConfigError('[nps] waves: expected two MM-DD start dates in order, '
                              'e.g. ["04-01", "10-01"]')


@dataclass(frozen=True)
class Settings:
    """Every setting of the service, one frozen dataclass per TOML section."""

    app: AppSettings = field(default_factory=AppSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    calendar: CalendarSettings = field(default_factory=CalendarSettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    task_format: TaskFormatSettings = field(default_factory=TaskFormatSettings)
    kpi: KpiSettings = field(default_factory=KpiSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    nps: NpsSettings = field(default_factory=NpsSettings)


SECTIONS: Mapping[str, type[Any]] = MappingProxyType({
    "app": AppSettings,
    "database": DatabaseSettings,
    "portal": PortalSettings,
    "events": EventsSettings,
    "calendar": CalendarSettings,
    "sla": SlaSettings,
    "task_format": TaskFormatSettings,
    "kpi": KpiSettings,
    "scheduler": SchedulerSettings,
    "nps": NpsSettings,
})


# ---------------------------------------------------------------- loading


def _fields(section: str) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(SECTIONS[section])}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _file_values(path: Path) -> dict[tuple[str, str], tuple[Any, str]]:
    values: dict[tuple[str, str], tuple[Any, str]] = {}
    for section, table in _read_file(path).items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}]; known: {', '.join(SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        known = _fields(section)
        for key, value in table.items():
            if key not in known:
                raise ConfigError(
                    f"{path}: unknown key {key!r} in [{section}]; known: {', '.join(known)}"
                )
            values[section, key] = (value, f"{path}: [{section}] {key}")
    return values


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _env_value(text: str, kind: EnvKind) -> Any:
    if kind == "raw":
        return text
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        return text
    if kind == "list" and not text.strip().startswith("["):
        return [_toml_value(item.strip()) for item in text.split(",") if item.strip()]
    return _toml_value(text.strip())


def _env_values(env: Mapping[str, str]) -> dict[tuple[str, str], tuple[Any, str]]:
    # Longest prefix first, so that B24APP_TASK_FORMAT_X is never read as a section "task".
    prefixes = sorted(SECTIONS, key=len, reverse=True)
    values: dict[tuple[str, str], tuple[Any, str]] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in prefixes if rest.startswith(f"{s}_")), None)
        if section is None:
            continue  # B24APP_VENV, B24APP_TEST_PG_URL...: not settings of the service
        key = rest[len(section) + 1:]
        known = _fields(section)
        if key not in known:
            raise ConfigError(
                f"environment variable {name}: unknown key {key!r} in [{section}]; "
                f"known: {', '.join(known)}"
            )
        where = f"environment variable {name}"
        values[section, key] = (_env_value(text, known[key].metadata["env"]), where)
    return values


def _build(raw: Mapping[tuple[str, str], tuple[Any, str]]) -> Settings:
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        kwargs: dict[str, Any] = {}
        for key, spec in _fields(section).items():
            if (section, key) not in raw:
                continue
            value, where = raw[section, key]
            try:
                kwargs[key] = spec.metadata["parse"](value)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        sections[section] = cls(**kwargs)
    return Settings(**sections)


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults, overlaid by the TOML file (``path`` or ``$B24APP_CONFIG``), then by env."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_ENV) or None
    raw = _file_values(Path(path)) if path is not None else {}
    raw.update(_env_values(env))
    return _build(raw)


def with_generated_secrets(settings: Settings) -> Settings:
    """Fill an empty secret_key/encryption_key with fresh random ones (demo and tests only)."""
    import secrets

    from b24app.crypto import generate_key

    app = settings.app
    app = dataclasses.replace(
        app,
        secret_key=app.secret_key or Secret(secrets.token_urlsafe(32)),
        encryption_key=app.encryption_key or Secret(generate_key()),
    )
    return dataclasses.replace(settings, app=app)
