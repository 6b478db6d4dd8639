"""Fixtures: a throw-away redis-server, the fake Bot API, and a cluster of ``python bot.py``
webhook instances sharing one Redis store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.fakebotapi import FakeBotAPI, free_port
from tests.storage.redis_server import start_redis_server_or_skip

from .harness import TOKEN, BotProcess, Telegram, bot_settings


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A fresh redis-server (skipped without redis-server locally; failed when CI=true)."""
    server = start_redis_server_or_skip()
    yield server.url
    server.stop()


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN) as server:
        yield server


@dataclass
class Cluster:
    instances: list[BotProcess]
    telegram: Telegram
    exit_codes: dict[str, int | None] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def cluster(api: FakeBotAPI, store: str, log_dir: Path, names: str = "AB",
                  **settings: str) -> AsyncIterator[Cluster]:
    """Webhook instances (one port each, same secret, token, store and flow), the test
    acting as Telegram in front of them. On exit each is stopped with SIGTERM and its exit
    code recorded in ``exit_codes``."""
    instances = [BotProcess(name, bot_settings(api, store, **settings), log_dir,
                            port=free_port()) for name in names]
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    running = Cluster(instances, Telegram(instances, http))
    try:
        for inst in instances:
            inst.spawn()
        await asyncio.gather(*(inst.wait_ready() for inst in instances))
        yield running
    finally:
        codes = await asyncio.gather(*(inst.stop() for inst in instances))
        running.exit_codes.update({inst.name: code for inst, code in zip(instances, codes,
                                                                          strict=True)})
        await http.close()
