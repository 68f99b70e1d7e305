"""Engines, sessions and migrations for SQLite (WAL) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Insert, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 15_000
# The pg_advisory_xact_lock key that serialises migrations across hosts.
MIGRATION_LOCK_KEY = 0x62_32_34_6D_69_67  # "b24mig"


def normalize_url(url: str | URL) -> URL:
    """The URL with PostgreSQL pinned to psycopg 3 (``postgresql://`` → ``postgresql+psycopg``)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def url_to_string(url: URL) -> str:
    """The URL as text with its password (``str(url)`` masks it)."""
    return url.render_as_string(hide_password=False)


def make_engine(url: str | URL, *, echo: bool = False, **kwargs: Any) -> Engine:
    """An engine for a SQLite file (WAL, foreign keys, busy timeout) or PostgreSQL."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, echo=echo, **kwargs)
    if backend == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, echo=echo, **kwargs)


def _sqlite_engine(url: URL, *, echo: bool, **kwargs: Any) -> Engine:
    database = url.database or ""
    in_memory = database in {"", ":memory:"} or "mode=memory" in database
    if not in_memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
    engine = create_engine(url, echo=echo, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's default transaction handling is kept on purpose: it issues BEGIN just
        # before the first write, so a writer waits busy_timeout for the lock instead of
        # failing at once with SQLITE_BUSY_SNAPSHOT after a read (see test_db CAS tests).
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit (no reload on access)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations, optionally bound to a connection."""
    config = Config()
    # ConfigParser interpolation: a literal % in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _connected(engine_or_url: Engine | str | URL) -> Iterator[Engine]:
    if isinstance(engine_or_url, Engine):
        yield engine_or_url
        return
    engine = make_engine(engine_or_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _lock_for_migration(connection: Connection) -> None:
    # Two processes starting at once (serve and worker) must not both run the migrations.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # The write lock up front; the whole upgrade then commits or rolls back as one.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (Alembic ``upgrade head`` by default)."""
    with _connected(engine_or_url) as engine, engine.begin() as connection:
        _lock_for_migration(connection)
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine_or_url: Engine | str | URL, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``base`` drops every table)."""
    with _connected(engine_or_url) as engine, engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine_or_url: Engine | str | URL) -> str | None:
    """The revision the database is at, or ``None`` before the first migration."""
    with _connected(engine_or_url) as engine, engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision the packaged migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def insert_ignoring_conflict(session: Session, model: type[DeclarativeBase],
                             values: dict[str, Any],
                             unique: list[str]) -> Insert:
    """``INSERT ... ON CONFLICT (<unique>) DO NOTHING`` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).values(values).on_conflict_do_nothing(
            index_elements=unique)
    if dialect == "sqlite":
        return sqlite.insert(model).values(values).on_conflict_do_nothing(index_elements=unique)
    raise NotImplementedError(f"insert ... on conflict on {dialect} is not supported")
