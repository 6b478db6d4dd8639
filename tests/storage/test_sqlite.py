"""SQLite specifics: file layout, pragmas, versioned rows, several connections on one file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.storage import StoreConfigError
from bot.storage.sqlite import SCHEMA_VERSION, SQLiteStore


async def test_creates_the_file_and_its_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "sessions.db"
    store = SQLiteStore(path)
    await store.check()
    assert path.is_file()
    db = store._db()
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert db.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    await store.close()


async def test_rows_hold_the_version_beside_the_json(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", clock=lambda: 1000.0)
    v = await store.save("tg:1", {"state": "q1"}, 0)
    assert v and await store.save("tg:1", {"state": "q2"}, v)
    with sqlite3.connect(tmp_path / "s.db") as raw:
        row = raw.execute("SELECT key, version, touched_at, data FROM sessions").fetchall()
    raw.close()
    assert row == [("tg:1", v + 1, 1000.0, '{"state":"q2"}')]
    assert store.stored_bytes("tg:1") == len("tg:1") + len('{"state":"q2"}') + 16
    assert store.stored_bytes("tg:none") is None
    await store.close()


async def test_reopening_keeps_data_and_schema(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "s.db")
    v = await first.save("tg:1", {"n": 1}, 0)
    await first.add_audit({"key": "tg:1", "ended_at": 5.0})
    await first.close()
    second = SQLiteStore(tmp_path / "s.db")
    assert v and await second.load("tg:1") == ({"n": 1}, v)
    assert await second.audit() == [{"key": "tg:1", "ended_at": 5.0}]
    await second.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    store = SQLiteStore(path)
    with pytest.raises(StoreConfigError) as caught:
        await store.check()
    assert str(caught.value) == (
        f"cannot open the SQLite session store at {path}: its schema version "
        f"{SCHEMA_VERSION + 1} is newer than this bot's ({SCHEMA_VERSION}); "
        f"upgrade the bot or use another file"
    )


def test_two_processes_opening_a_new_file_at_once_both_open_it(tmp_path: Path) -> None:
    """Switching a new file to WAL and making its schema is refused at once ("database is
    locked") to the second of two processes doing it at the same moment, whatever the busy
    timeout: it tries again (before, 59 times out of 60 one of the two failed)."""
    import multiprocessing

    from .workers import open_worker

    context = multiprocessing.get_context("fork")
    for attempt in range(8):
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=open_worker, args=(
            str(tmp_path / f"s{attempt}.db"), barrier, results)) for _ in range(2)]
        for worker in workers:
            worker.start()
        outcomes = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(10)
        assert outcomes == ["opened", "opened"]
