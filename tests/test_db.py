"""Storage on SQLite and PostgreSQL: migrations, models, timestamps, CAS saves, secrets at rest."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CursorResult, Engine, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from b24app.crypto import DecryptionError, EncryptionKeyError, SecretBox, generate_key
from b24app.db import (
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    migrate,
    normalize_url,
    session_scope,
)
from b24app.models import Base, Portal, PortalStatus, utcnow

NOVOSIBIRSK = timezone(timedelta(hours=7))


def _portal(member_id: str = "a1b2c3", **values: object) -> Portal:
    return Portal(member_id=member_id, domain=f"{member_id}.bitrix24.ru", **values)


# ---------------------------------------------------------------- migrations


def test_migrated_database_is_at_head(db_url: str, engine: Engine) -> None:
    assert current_revision(db_url) == head_revision()
    assert {"portals", "inbox_events", "mirror_deals"} <= set(inspect(engine).get_table_names())


def test_migrate_up_down_and_again_on_a_blank_database(blank_db_url: str) -> None:
    assert current_revision(blank_db_url) is None
    migrate(blank_db_url)
    migrate(blank_db_url)  # a second run is a no-op
    assert current_revision(blank_db_url) == head_revision()
    downgrade(blank_db_url, "base")
    assert current_revision(blank_db_url) is None
    engine = make_engine(blank_db_url)
    try:
        assert "portals" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    migrate(blank_db_url)
    assert current_revision(blank_db_url) == head_revision()


def test_concurrent_migrations_serialise(blank_db_url: str) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(blank_db_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert current_revision(blank_db_url) == head_revision()


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        assert compare_metadata(context, Base.metadata) == []


# ---------------------------------------------------------------- the portals table


def test_portal_round_trip_keeps_aware_utc_datetimes(
    session_factory: sessionmaker[Session],
) -> None:
    expires = datetime(2026, 11, 27, 16, 45, 30, 123456, tzinfo=NOVOSIBIRSK)
    with session_scope(session_factory) as session:
        session.add(_portal(expires_at=expires, scope="crm,task", app_version="0.1.0"))
    with session_scope(session_factory) as session:
        portal = session.scalars(select(Portal)).one()
        assert portal.expires_at == expires
        assert portal.expires_at is not None and portal.expires_at.tzinfo is UTC
        assert portal.installed_at.tzinfo is UTC
        assert abs(utcnow() - portal.installed_at) < timedelta(minutes=1)
        assert (portal.status, portal.mode, portal.token_version) == ("active", "local_app", 0)
        first_update = portal.updated_at
        portal.status = PortalStatus.NEEDS_REINSTALL
    with session_scope(session_factory) as session:
        portal = session.scalars(select(Portal)).one()
        assert portal.status == "needs_reinstall"
        assert portal.updated_at >= first_update
        # Comparisons in SQL see the same instant, whatever the zone of the parameter.
        due = select(Portal.id).where(Portal.expires_at <= expires.astimezone(UTC))
        assert session.scalars(due).all() == [portal.id]
        earlier = expires - timedelta(microseconds=1)
        assert session.scalars(select(Portal.id).where(Portal.expires_at <= earlier)).all() == []


def test_naive_datetimes_are_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(StatementError, match="naive datetime"), \
            session_scope(session_factory) as session:
        session.add(_portal(expires_at=datetime(2026, 1, 1, 12, 0)))


def test_member_id_is_unique(session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as session:
        session.add(_portal("same"))
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_portal("same"))
    with session_scope(session_factory) as session:
        assert session.scalars(select(Portal.member_id)).all() == ["same"]


@pytest.mark.parametrize("column", ["mode", "status"])
def test_mode_and_status_are_checked(session_factory: sessionmaker[Session], column: str) -> None:
    with pytest.raises(IntegrityError), session_scope(session_factory) as session:
        session.add(_portal(**{column: "bogus"}))


def test_session_scope_rolls_back_on_error(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(RuntimeError), session_scope(session_factory) as session:
        session.add(_portal())
        session.flush()
        raise RuntimeError("boom")
    with session_scope(session_factory) as session:
        assert session.scalars(select(Portal)).all() == []


# ---------------------------------------------------------------- compare-and-swap


def _cas_save(session: Session, portal_id: int, read_version: int, access: str) -> bool:
    """The token-store pattern: save only if nobody saved since ``read_version`` was read."""
    result = session.execute(
        update(Portal)
        .where(Portal.id == portal_id, Portal.token_version == read_version)
        .values(access_token_enc=access, token_version=read_version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return cast("CursorResult[Any]", result).rowcount == 1


def test_compare_and_swap_lets_exactly_one_concurrent_save_win(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        portal = _portal()
        session.add(portal)
        session.flush()
        portal_id = portal.id
    racers = 6
    barrier = threading.Barrier(racers, timeout=30)
    outcomes: dict[int, bool] = {}
    errors: list[BaseException] = []

    def race(index: int) -> None:
        try:
            with session_factory() as session:
                version = session.scalars(
                    select(Portal.token_version).where(Portal.id == portal_id)
                ).one()
                barrier.wait()  # every racer has read version 0 before anyone writes
                outcomes[index] = _cas_save(session, portal_id, version, f"token-{index}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    winners = [index for index, won in outcomes.items() if won]
    assert len(outcomes) == racers and len(winners) == 1
    with session_scope(session_factory) as session:
        saved = session.get_one(Portal, portal_id)
        assert (saved.token_version, saved.access_token_enc) == (1, f"token-{winners[0]}")


def test_compare_and_swap_loser_waits_for_the_winner_then_fails(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as session:
        portal = _portal()
        session.add(portal)
        session.flush()
        portal_id = portal.id
    started = threading.Event()
    result: list[bool] = []
    with session_factory() as first:
        first.execute(update(Portal).where(Portal.id == portal_id, Portal.token_version == 0)
                      .values(token_version=1, access_token_enc="first"))

        def second() -> None:
            with session_factory() as session:
                started.set()
                result.append(_cas_save(session, portal_id, 0, "second"))

        thread = threading.Thread(target=second)
        thread.start()
        started.wait(10)
        thread.join(0.3)
        assert thread.is_alive(), "the second save must wait for the first one's lock"
        first.commit()
    thread.join(30)
    assert result == [False]
    with session_scope(session_factory) as session:
        assert session.get_one(Portal, portal_id).access_token_enc == "first"


# ---------------------------------------------------------------- secrets at rest


def test_tokens_are_encrypted_at_rest(
    db_url: str, engine: Engine, session_factory: sessionmaker[Session], secret_box: SecretBox
) -> None:
    plain = {
        "application_token": "app-token-5f0c2c1d9e",
        "access_token": "access-token-8c1c4c7e5d0b",
        "refresh_token": "refresh-token-33b1f0a2",
    }
    with session_scope(session_factory) as session:
        portal = _portal()
        for name, value in plain.items():
            portal.set_secret(secret_box, name, value)  # type: ignore[arg-type]
        session.add(portal)
    with engine.connect() as connection:
        raw = connection.execute(text(
            "SELECT application_token_enc, access_token_enc, refresh_token_enc FROM portals"
        )).one()
    for stored, value in zip(raw, plain.values(), strict=True):
        assert value not in stored
        assert secret_box.decrypt(stored) == value
    with session_scope(session_factory) as session:
        portal = session.scalars(select(Portal)).one()
        assert portal.get_secret(secret_box, "refresh_token") == plain["refresh_token"]
        assert "token" not in repr(portal).replace("token_version", "")
    if db_url.startswith("sqlite"):
        engine.dispose()  # checkpoint the WAL into the main file
        files = Path(db_url.removeprefix("sqlite:///")).parent.glob("*.sqlite3*")
        blob = b"".join(path.read_bytes() for path in files)
        assert all(value.encode() not in blob for value in plain.values())


def test_secret_box_round_trip_and_rotation() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox(old).encrypt("секрет")
    both = SecretBox(f"{new},{old}")
    assert both.decrypt(token) == "секрет"
    rotated = both.rotate(token)
    assert SecretBox(new).decrypt(rotated) == "секрет"
    with pytest.raises(DecryptionError):
        SecretBox(new).decrypt(token)
    assert SecretBox(old).encrypt_optional(None) is None
    assert "keys=2" in repr(both) and old not in repr(both)


@pytest.mark.parametrize(("key", "message"), [
    ("", "no encryption key"),
    ("   ", "no encryption key"),
    ("not-a-fernet-key", "not a Fernet key"),
])
def test_secret_box_explains_a_bad_key(key: str, message: str) -> None:
    with pytest.raises(EncryptionKeyError, match=message) as caught:
        SecretBox(key)
    assert "B24APP_APP_ENCRYPTION_KEY" in str(caught.value)


# ---------------------------------------------------------------- engines and URLs


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://u@h:5432/d", "postgresql+psycopg://u@h:5432/d"),
    ("postgres://u@h/d", "postgresql+psycopg://u@h/d"),
    ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ("sqlite:///var/x.sqlite3", "sqlite:///var/x.sqlite3"),
])
def test_normalize_url_pins_psycopg(given: str, expected: str) -> None:
    assert str(normalize_url(given)) == expected


def test_sqlite_engine_creates_its_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "app.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragma = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                      for name in ("journal_mode", "foreign_keys", "busy_timeout")}
        assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 15000}
        assert path.exists()
    finally:
        engine.dispose()
