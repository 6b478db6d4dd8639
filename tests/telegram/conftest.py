"""Run the real python-telegram-bot Application (our bot) against the fake Bot API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.channels.service import ConversationService
from bot.channels.telegram.app import TelegramBot, serve
from bot.engine import Engine
from bot.flow import load_flow
from bot.settings import Settings
from bot.storage import open_store
from tests.fakebotapi import FakeBotAPI, free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "demo.yaml"
TOKEN = "123456:TEST-token"


@dataclass
class Running:
    api: FakeBotAPI
    bot: TelegramBot
    store: Any
    settings: Settings


class FlakyStore:
    """The real store, except that the next `fail` calls of the armed methods raise."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.methods: set[str] = set()
        self.fail = 0

    def arm(self, *methods: str, times: int = 1) -> None:
        self.methods, self.fail = set(methods), times

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.store, name)
        if name not in self.methods:
            return real

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if self.fail > 0:
                self.fail -= 1
                raise RuntimeError("the disk is on fire")
            return await real(*args, **kwargs)

        return flaky


@contextlib.asynccontextmanager
async def running_bot(api: FakeBotAPI, db: Path, *, webhook: bool = False,
                      flow: Path = DEMO, bot_class: type[TelegramBot] = TelegramBot,
                      wrap_store: Callable[[Any], Any] | None = None,
                      **extra: Any) -> AsyncIterator[Running]:
    """Our whole bot (engine, SQLite store, Telegram channel) serving until the block ends.

    `bot_class` swaps in a TelegramBot subclass (to observe it); `wrap_store` wraps the store
    the service sees (to inject failures); `Running.store` stays the real store."""
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_BASE_URL": api.base_url,
           "BOT_FLOW": str(flow), "BOT_STORE": str(db), "CLINIC_PHONE": "(817) 555-0100"}
    if webhook:
        port = free_port()
        env.update(WEBHOOK_URL=f"http://127.0.0.1:{port}/tg-hook", WEBHOOK_LISTEN="127.0.0.1",
                   WEBHOOK_PORT=str(port), WEBHOOK_SECRET="s3cret-Token_1")
    env.update({k: str(v) for k, v in extra.items()})
    settings = Settings.from_env(env)
    loaded, problems = load_flow(settings.flow)
    assert loaded is not None, problems
    engine = Engine(loaded, placeholders=settings.placeholders)
    store = open_store(settings.store)
    service = ConversationService(engine, wrap_store(store) if wrap_store else store,
                                  secret="test")
    handoff = None
    if settings.staff_chat_id:
        from bot.channels.telegram.handoff import Handoff

        handoff = Handoff(settings.staff_chat_id, settings.clinic_phone)
    bot = bot_class(settings, engine, service, handoff=handoff)
    handled: set[int] = set()
    on_update = bot.on_update

    async def counting(update: Any, context: Any) -> None:
        try:
            await on_update(update, context)
        finally:
            handled.add(update.update_id)

    bot.on_update = counting  # type: ignore[method-assign]
    # updates delivered before this bot started were another bot's
    earlier = {u["update_id"] for u in api.updates} - {u["update_id"]
                                                        for u in api.pending_updates}
    api.idle_check = lambda: ({u["update_id"] for u in api.updates} - earlier - {
        u["update_id"] for u in api.pending_updates}) <= handled
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(settings, bot, store, stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield Running(api, bot, store, settings)
    finally:
        api.idle_check = None
        stop.set()
        await asyncio.wait_for(task, 15)
        await store.close()


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN) as server:
        yield server


def last_text(user: Any) -> str:
    """The text of the bot's last message to this user, as they see it."""
    msg = user.chat.last_bot_message
    assert msg is not None, "the bot has not written"
    return str(msg.text or "")
