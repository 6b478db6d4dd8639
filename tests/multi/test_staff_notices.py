"""Two ``python bot.py`` instances on one Redis watching one shared flow file: each edit is
announced to the staff chat once, not once per instance (both still put a valid edit live)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.flow.loader import flow_hash
from tests.fakebotapi import FakeBotAPI

from .conftest import cluster
from .harness import DEMO, BotProcess

STAFF = -100777


async def until_serving(version: str, *instances: BotProcess, timeout: float = 20.0) -> None:
    """Wait until every instance serves ``version`` to new conversations."""
    deadline = time.monotonic() + timeout
    while {await inst.flow_served() for inst in instances} != {version}:
        assert time.monotonic() < deadline, f"timed out waiting for version {version}"
        await asyncio.sleep(0.05)


def refusals(*instances: BotProcess) -> list[int]:
    """How many broken edits each instance has logged refusing."""
    return [inst.log_path.read_text().count("refused: 1 error(s)") for inst in instances]


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
        original = await a.flow_served()
        edited = text.replace("Since the pain started, have you had any of these?",
                              "Since your pain began, have you had any of these?")
        flow.write_text(edited)
        await until_serving(flow_hash(edited), a, b)
        await asyncio.sleep(1.0)  # the second instance's notice, had it sent one, is here
        assert len(notices("is live for new conversations")) == 1, notices("is live")

        broken = text.replace("next: trend", "next: trnd")
        flow.write_text(broken)
        await api.wait_for(lambda: refusals(a, b) == [1, 1], timeout=20)
        await asyncio.sleep(1.0)
        assert len(notices("was refused")) == 1, notices("was refused")
        assert "next step 'trnd' does not exist" in notices("was refused")[0]
        # the broken edit never went live
        assert {await a.flow_served(), await b.flow_served()} == {flow_hash(edited)}

        # the same broken text saved again later is a new edit: announced again, once
        flow.write_text(text)
        await until_serving(original, a, b)
        flow.write_text(broken)
        await api.wait_for(lambda: refusals(a, b) == [2, 2], timeout=20)
        await asyncio.sleep(1.0)
        assert len(notices("was refused")) == 2, notices("was refused")
        assert len(notices("is live for new conversations")) == 2
    assert run.exit_codes == {"A": 0, "B": 0}
