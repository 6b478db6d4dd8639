"""Fixtures: a real redis-server for the session, and a ``backend`` run against every store."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
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


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The Redis store's own tests run on both loops the bot may run on (bot/eventloop.py):
    its pipe takes over the connection's transport, which is the loop's own code."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop}
    if getattr(item, "module", None) is not None and \
            item.module.__name__.endswith(("test_redis_store",  # type: ignore[attr-defined]
                                           "test_redis_deployments")):
        # (no uvloop on this platform: the bot runs on asyncio's loop here)
        with contextlib.suppress(ImportError):
            factories["uvloop"] = importlib.import_module("uvloop").new_event_loop
    return factories
