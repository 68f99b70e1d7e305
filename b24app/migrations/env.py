"""Alembic environment: runs on the connection ``b24app.db.migrate`` hands over, else on a URL."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from b24app.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def _run_on(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from b24app.config import load_settings

    return load_settings().database.url


def run_offline() -> None:
    """Emit SQL for the configured URL instead of running it (``alembic upgrade --sql``)."""
    from b24app.db import normalize_url

    url = normalize_url(_url())
    _configure(url=url, literal_binds=True, render_as_batch=url.get_backend_name() == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run on the handed-over connection, or connect to the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    from b24app.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as own:
            _run_on(own)
    finally:
        engine.dispose()


# The alembic command line reads logging from alembic.ini; programmatic runs keep the app's.
if config.config_file_name and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
