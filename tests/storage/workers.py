"""Code run in child processes by the multi-process tests (kept importable and light)."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.storage import open_store


def increment_worker(
    setting: str, prefix: str, key: str, times: int, barrier: Any, results: Any
) -> None:
    """Add 1 to the session's counter ``times`` times, re-reading on every conflict."""
    results.put(asyncio.run(_increment(setting, prefix, key, times, barrier)))


async def _increment(setting: str, prefix: str, key: str, times: int, barrier: Any) -> tuple[int, int]:
    store = open_store(setting, redis_prefix=prefix)
    await store.check()
    barrier.wait(timeout=30)
    done = conflicts = 0
    try:
        while done < times:
            data, version = await store.load(key)
            count = data["count"] if data else 0
            if await store.save(key, {"count": count + 1}, version) is None:
                conflicts += 1
            else:
                done += 1
    finally:
        await store.close()
    return done, conflicts


def open_worker(path: str, barrier: Any, results: Any) -> None:
    """Open the SQLite store at ``path`` when the other worker does; put what happened."""
    from bot.storage.sqlite import SQLiteStore

    store = SQLiteStore(path)
    barrier.wait(timeout=30)
    try:
        store._db()
        results.put("opened")
    except Exception as exc:
        results.put(str(exc))
