"""Two ``python bot.py`` instances on one Redis watching one shared flow file: each edit is
announced to the staff chat once, not once per instance (both still put a valid edit live)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bot.flow.loader import flow_hash
from tests.fakebotapi import FakeBotAPI

from .conftest import cluster
from .harness import DEMO, BotProcess

STAFF = -100777


async def flow_served(inst: BotProcess) -> str:
    """The flow version an instance serves to new conversations (its /health)."""
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{inst.port}/health") as resp:
        return str((await resp.json())["flow_version"])


async def until(check: Callable[[], Awaitable[bool]], what: str,
                timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def serving(version: str, *instances: BotProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return {await flow_served(inst) for inst in instances} == {version}
    return check


def refused(times: int, *instances: BotProcess) -> Callable[[], Awaitable[bool]]:
    """Every instance has logged the refusal of a broken edit ``times`` times."""
    async def check() -> bool:
        return all(inst.log_path.read_text().count("refused: 1 error(s)") == times
                   for inst in instances)
    return check


async def test_an_edit_of_a_shared_flow_is_announced_once(api: FakeBotAPI, redis_url: str,
                                                          tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    text = DEMO.read_text()
    flow.write_text(text)
    staff = api.group(STAFF, "Clinic staff")

    def notices(word: str) -> list[str]:
        return [str(m.text) for m in staff.bot_messages if word in str(m.text)]

    async with cluster(api, redis_url, tmp_path, BOT_FLOW=str(flow),
                       STAFF_CHAT_ID=str(STAFF), LOG_LEVEL="INFO") as run:
        a, b = run.instances
        original = await flow_served(a)
        edited = text.replace("Since the pain started, have you had any of these?",
                              "Since your pain began, have you had any of these?")
        flow.write_text(edited)
        await until(serving(flow_hash(edited), a, b), "both instances to serve the edit")
        await asyncio.sleep(1.0)  # the second instance's notice, had it sent one, is here
        assert len(notices("is live for new conversations")) == 1, notices("is live")

        broken = text.replace("next: trend", "next: trnd")
        flow.write_text(broken)
        await until(refused(1, a, b), "both instances to refuse the broken edit")
        await asyncio.sleep(1.0)
        assert len(notices("was refused")) == 1, notices("was refused")
        assert "next step 'trnd' does not exist" in notices("was refused")[0]
        assert await serving(flow_hash(edited), a, b)()  # the broken edit never went live

        # the same broken text saved again later is a new edit: announced again, once
        flow.write_text(text)
        await until(serving(original, a, b), "both instances to serve the original again")
        flow.write_text(broken)
        await until(refused(2, a, b), "both instances to refuse the edit again")
        await asyncio.sleep(1.0)
        assert len(notices("was refused")) == 2, notices("was refused")
        assert len(notices("is live for new conversations")) == 2
    assert run.exit_codes == {"A": 0, "B": 0}
