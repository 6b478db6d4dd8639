"""BOT_EVENT_LOOP: which loop the bot runs on (bot/eventloop.py)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from typing import Any

import pytest

from bot import eventloop
from bot.settings import Settings, SettingsError

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def whose_loop() -> str:
    await asyncio.sleep(0)
    return eventloop.name(asyncio.get_running_loop())


def test_auto_is_uvloop_where_it_is_installed_else_asyncio() -> None:
    assert eventloop.run(whose_loop()) == ("uvloop" if HAS_UVLOOP else "asyncio")
    assert eventloop.loop_factory("auto")[0] == ("uvloop" if HAS_UVLOOP else "asyncio")


def test_asyncio_is_always_there() -> None:
    assert eventloop.run(whose_loop(), "asyncio") == "asyncio"


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed on this platform")
def test_uvloop_when_asked_for() -> None:
    assert eventloop.run(whose_loop(), "uvloop") == "uvloop"


def test_without_uvloop_auto_falls_back_and_uvloop_says_what_to_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_uvloop(name: str, *args: Any) -> Any:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_uvloop)
    assert eventloop.run(whose_loop(), "auto") == "asyncio"
    coro = whose_loop()
    with pytest.raises(eventloop.EventLoopError, match=r"^BOT_EVENT_LOOP=uvloop but uvloop is "
                       r"not installed .*set BOT_EVENT_LOOP=asyncio$"):
        eventloop.run(coro, "uvloop")
    assert coro.cr_frame is None  # type: ignore[attr-defined]  # closed: never "never awaited"


def test_the_setting_is_read_and_checked() -> None:
    assert Settings.from_env({}).event_loop == "auto"
    assert Settings.from_env({"BOT_EVENT_LOOP": " AsyncIO "}).event_loop == "asyncio"
    with pytest.raises(SettingsError, match=r"^BOT_EVENT_LOOP='trio' should be auto, uvloop "
                       r"or asyncio$"):
        Settings.from_env({"BOT_EVENT_LOOP": "trio"})


def test_the_collector_runs_less_often_while_the_bot_runs_and_as_before_after() -> None:
    import gc

    async def threshold() -> tuple[int, ...]:
        return gc.get_threshold()

    before = gc.get_threshold()
    assert before != eventloop.GC_THRESHOLD
    assert eventloop.run(threshold()) == eventloop.GC_THRESHOLD
    assert gc.get_threshold() == before
