"""Test harness: one ``Backend`` per store kind, to open handles and tamper behind their back."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from bot.storage import DEFAULT_SEEN_TTL_SECONDS, DEFAULT_TTL_SECONDS, Clock, SessionStore
from bot.storage.memory import MemoryStore, _Row
from bot.storage.redis_store import RedisStore
from bot.storage.sqlite import SQLiteStore


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """Opens stores on one shared piece of storage and can corrupt it directly."""

    name = "?"
    #: the BOT_STORE setting for other processes, or None for in-process-only backends
    setting: str | None = None
    #: True if TTLs of update markers follow the server's real clock, not the injected one
    real_time_markers = False

    def __init__(self) -> None:
        self.stores: list[SessionStore] = []

    def make(
        self,
        *,
        clock: Clock = time.time,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        seen_ttl_seconds: float = DEFAULT_SEEN_TTL_SECONDS,
    ) -> SessionStore:
        store = self._make(clock, ttl_seconds, seen_ttl_seconds)
        self.stores.append(store)
        return store

    def _make(self, clock: Clock, ttl_seconds: float, seen_ttl_seconds: float) -> SessionStore:
        raise NotImplementedError

    async def corrupt(self, key: str, raw: bytes) -> None:
        """Overwrite the stored value of an existing session ``key`` with ``raw``."""
        raise NotImplementedError

    async def aclose(self) -> None:
        for store in self.stores:
            await store.close()


class MemoryBackend(Backend):
    name = "memory"

    def _make(self, clock: Clock, ttl_seconds: float, seen_ttl_seconds: float) -> SessionStore:
        first = self.stores[0] if self.stores else None
        assert first is None or isinstance(first, MemoryStore)
        return MemoryStore(
            clock=clock,
            ttl_seconds=ttl_seconds,
            seen_ttl_seconds=seen_ttl_seconds,
            shared_with=first,
        )

    async def corrupt(self, key: str, raw: bytes) -> None:
        store = self.stores[0]
        assert isinstance(store, MemoryStore)
        row = store._data.sessions[key]
        store._data.sessions[key] = _Row(row.version, row.touched_at, raw.decode("utf-8", "replace"))


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.setting = f"sqlite:///{path}"  # absolute path: four slashes

    def _make(self, clock: Clock, ttl_seconds: float, seen_ttl_seconds: float) -> SessionStore:
        return SQLiteStore(
            self.path, clock=clock, ttl_seconds=ttl_seconds, seen_ttl_seconds=seen_ttl_seconds
        )

    async def corrupt(self, key: str, raw: bytes) -> None:
        with sqlite3.connect(self.path) as conn:
            value: bytes | str = raw  # store text when it is text, else a BLOB
            with contextlib.suppress(UnicodeDecodeError):
                value = raw.decode("utf-8")
            changed = conn.execute("UPDATE sessions SET data = ? WHERE key = ?", (value, key))
            assert changed.rowcount == 1
        conn.close()


class RedisBackend(Backend):
    name = "redis"
    real_time_markers = True

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.setting = url

    def _make(self, clock: Clock, ttl_seconds: float, seen_ttl_seconds: float) -> SessionStore:
        return RedisStore(
            self.url,
            prefix=self.prefix,
            clock=clock,
            ttl_seconds=ttl_seconds,
            seen_ttl_seconds=seen_ttl_seconds,
        )

    async def corrupt(self, key: str, raw: bytes) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url)
        try:
            assert await client.set(f"{self.prefix}s:{key}", raw, xx=True, keepttl=True)
        finally:
            await client.aclose()
