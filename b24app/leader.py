"""One leader runs the scheduled jobs; standbys poll ``try_acquire`` and take over.

PostgreSQL: a session-level ``pg_try_advisory_lock`` on a connection held for the leader's
life; when the leader's process dies its connection closes and the server drops the lock.
SQLite: an exclusive ``flock`` on a file next to the database; the kernel drops it when the
process dies. That works on one machine only, which is what SQLite supports anyway.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from b24app.db import make_engine, normalize_url

log = logging.getLogger(__name__)

DEFAULT_NAME = "b24app-scheduler"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_file_path(database: str, name: str) -> Path:
    """The flock file of ``name`` beside a SQLite database file."""
    path = Path(database).expanduser().resolve()
    return path.with_name(f"{path.name}.{name}.lock")


class LeaderLock:
    """A named, process-wide leadership lock on the service's database."""

    def __init__(self, engine_or_url: Engine | str | URL, name: str = DEFAULT_NAME) -> None:
        url = engine_or_url.url if isinstance(engine_or_url, Engine) else normalize_url(
            engine_or_url)
        self.name = name
        self.backend = url.get_backend_name()
        self._own_engine: Engine | None = None
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._file: IO[bytes] | None = None
        self._mutex = threading.Lock()
        if self.backend == "postgresql":
            if isinstance(engine_or_url, Engine):
                self._engine = engine_or_url
            else:
                # No pool: the lock's connection must really close when it is released.
                self._own_engine = self._engine = make_engine(url, poolclass=NullPool)
        elif self.backend == "sqlite":
            database = url.database or ""
            if database in {"", ":memory:"} or "mode=memory" in database:
                raise ValueError("a leader lock needs a SQLite database file, not :memory:")
            self._path = lock_file_path(database, name)
        else:
            raise ValueError(f"no leader lock for the {self.backend} backend")

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (as far as it knows: see :meth:`verify`)."""
        return self._connection is not None or self._file is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks. ``True`` if held after the call."""
        with self._mutex:
            if self.held:
                return True
            if self.backend == "postgresql":
                return self._acquire_pg()
            return self._acquire_file()

    def wait_acquire(self, stop: threading.Event, poll_seconds: float = 5.0) -> bool:
        """Standby: poll until the lock is ours (``True``) or ``stop`` is set (``False``)."""
        while not stop.is_set():
            if self.try_acquire():
                return True
            stop.wait(poll_seconds)
        return False

    def verify(self) -> bool:
        """Whether the lock is still ours (a PostgreSQL connection can drop under us)."""
        with self._mutex:
            if self._connection is None:
                return self._file is not None
            try:
                # pg_locks shows a bigint key as two oids: its high and low 32 bits.
                key = advisory_key(self.name) & 0xFFFF_FFFF_FFFF_FFFF
                held = self._connection.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                    "AND classid::bigint = :high AND objid::bigint = :low"),
                    {"high": key >> 32, "low": key & 0xFFFF_FFFF}).scalar_one()
            except Exception:
                log.exception("leader lock %s: connection lost", self.name)
                self._drop_connection()
                return False
            return bool(held)

    def release(self) -> None:
        """Give up the lock (idempotent)."""
        with self._mutex:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                             {"key": advisory_key(self.name)})
                finally:
                    self._drop_connection()
            if self._file is not None:
                try:
                    fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
                finally:
                    self._file.close()
                    self._file = None

    def close(self) -> None:
        """Release and dispose of the lock's own engine."""
        self.release()
        if self._own_engine is not None:
            self._own_engine.dispose()

    def __enter__(self) -> LeaderLock:
        self.try_acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _acquire_pg(self) -> bool:
        assert self._engine is not None
        # Autocommit: the lock is session-level, and no transaction should idle open for hours.
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                     {"key": advisory_key(self.name)}).scalar_one()
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        log.info("leader lock %s acquired (PostgreSQL advisory lock)", self.name)
        return True

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Never back into a pool: a pooled session could still hold the advisory lock.
            connection.invalidate()
            connection.close()

    def _acquire_file(self) -> bool:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        self._file = handle
        log.info("leader lock %s acquired (flock %s, pid %s)", self.name, self._path,
                 os.getpid())
        return True
