"""Fixtures: a real redis-server for the session, and a ``backend`` run against every store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from .backends import Backend, MemoryBackend, RedisBackend, SQLiteBackend
from .redis_server import start_redis_server_or_skip


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a throw-away redis-server (skipped if not installed; failed if CI=true)."""
    server = start_redis_server_or_skip()
    yield server.url
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each store kind in turn, on fresh storage (a new file / a new Redis key prefix)."""
    harness: Backend
    if request.param == "memory":
        harness = MemoryBackend()
    elif request.param == "sqlite":
        harness = SQLiteBackend(tmp_path / "sessions.db")
    else:
        harness = RedisBackend(request.getfixturevalue("redis_url"), f"test{uuid.uuid4().hex[:8]}:")
    yield harness
    await harness.aclose()
