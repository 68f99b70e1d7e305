"""The leader lock: one holder per database; a standby takes over on release or death."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine

from b24app.leader import LeaderLock, advisory_key, lock_file_path
from tests.workerproc import wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_only_one_lock_holds_and_the_standby_takes_over_on_release(db_url: str,
                                                                   engine: Engine) -> None:
    leader, standby = LeaderLock(db_url, "jobs"), LeaderLock(engine, "jobs")
    try:
        assert leader.try_acquire() and leader.held
        assert leader.try_acquire()  # re-entrant for its holder
        assert not standby.try_acquire() and not standby.held
        assert leader.verify()
        leader.release()
        assert not leader.held and not leader.verify()
        assert standby.try_acquire() and standby.verify()
        assert not leader.try_acquire()
    finally:
        leader.close()
        standby.close()


def test_locks_of_different_names_are_independent(db_url: str) -> None:
    with LeaderLock(db_url, "jobs") as jobs, LeaderLock(db_url, "other") as other:
        assert jobs.held and other.held


def test_the_context_manager_releases(db_url: str) -> None:
    with LeaderLock(db_url, "jobs") as first:
        assert first.held
    with LeaderLock(db_url, "jobs") as second:
        assert second.held


def test_a_standby_waits_and_stops_when_told(db_url: str) -> None:
    stop = threading.Event()
    with LeaderLock(db_url, "jobs"):
        standby = LeaderLock(db_url, "jobs")
        polls: list[bool] = []
        original = standby.try_acquire

        def counting() -> bool:
            got = original()
            polls.append(got)
            if len(polls) == 3:
                stop.set()
            return got

        standby.try_acquire = counting  # type: ignore[method-assign]
        assert not standby.wait_acquire(stop, poll_seconds=0)
        assert polls == [False, False, False]
    assert standby.wait_acquire(threading.Event(), poll_seconds=0)
    standby.close()


@pytest.mark.slow
def test_the_standby_takes_over_when_the_leader_process_is_killed(db_url: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.workerproc", "hold-leader", db_url,
                             "jobs"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    standby = LeaderLock(db_url, "jobs")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "acquired"
        assert not standby.try_acquire()
        proc.send_signal(signal.SIGKILL)  # no release, no cleanup: the OS/server must drop it
        proc.wait(timeout=10)
        assert wait_for(standby.try_acquire, timeout=10), "the lock outlived its holder"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        standby.close()


def test_advisory_keys_are_stable_signed_64_bit() -> None:
    key = advisory_key("b24app-scheduler")
    assert key == advisory_key("b24app-scheduler") != advisory_key("other")
    assert -(2**63) <= key < 2**63


def test_the_sqlite_lock_file_sits_next_to_the_database(tmp_path: Path) -> None:
    assert lock_file_path(str(tmp_path / "app.sqlite3"), "jobs") == (
        tmp_path / "app.sqlite3.jobs.lock")
    with pytest.raises(ValueError, match="SQLite database file"):
        LeaderLock("sqlite:///:memory:")
    with pytest.raises(ValueError, match="no leader lock"):
        LeaderLock("mysql://u@h/db")
