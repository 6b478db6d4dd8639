"""Live reload in the running bot: valid edits go live within 2 s, broken ones never do."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakebotapi import FakeBotAPI

from .conftest import DEMO, FlakyStore, last_text, running_bot

STAFF = -100555


async def test_valid_edit_live_broken_edit_refused(api: FakeBotAPI, tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    shutil.copy(DEMO, flow)
    staff = api.group(STAFF, "Clinic staff")
    async with running_bot(api, tmp_path / "s.db", flow=flow, STAFF_CHAT_ID=STAFF,
                           ADMIN_IDS="77") as run:
        old = run.bot.engine.flow.hash
        ann = api.user(3001, "Ann")
        await ann.send_command("/start")
        await api.wait_idle()
        text = flow.read_text()
        flow.write_text(text.replace("Since the pain started, have you had any of these?",
                                     "Since your pain began, have you had any of these?"))
        t0 = time.monotonic()
        while run.bot.engine.flow.hash == old and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.05)
        assert time.monotonic() - t0 < 2.0, "a valid edit must go live within 2 s"
        await api.wait_for(lambda: staff.last_bot_message is not None, timeout=10)
        assert "is live for new conversations" in str(staff.last_bot_message.text)  # type: ignore
        bob = api.user(3002, "Bob")
        await bob.send_command("/start")
        await api.wait_idle()
        assert "Since your pain began" in last_text(bob)
        # Ann's conversation finishes on the version she started with
        await ann.tap(ann.chat.last_bot_message, "None of these")
        await api.wait_idle()
        assert "Just to be sure" in last_text(ann)
        live = run.bot.engine.flow.hash
        flow.write_text(text.replace("next: trend", "next: trnd"))
        await api.wait_for(lambda: "refused" in str(staff.last_bot_message.text),  # type: ignore
                           timeout=10)
        assert run.bot.engine.flow.hash == live  # the broken edit never went live
        card = str(staff.last_bot_message.text)  # type: ignore[union-attr]
        assert card.startswith("❌ The edit of")
        assert "next step 'trnd' does not exist (did you mean 'trend'?)" in card
        # /reload: admins only
        await bob.send_command("/reload")
        await api.wait_idle()
        assert last_text(bob).startswith("Sorry, I don't know that command.")
        admin = api.user(77, "Ada")
        await admin.send_command("/reload")
        await api.wait_idle()
        assert last_text(admin).startswith("Refused: 1 error(s)")


async def test_a_flow_notice_goes_out_when_the_store_cannot_be_asked(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The claim that keeps several instances from announcing one edit each is best effort:
    with the store down the edit is still announced (and still goes live), and /reload
    always answers the staff chat, even for a version already announced."""
    flow = tmp_path / "flow.yaml"
    shutil.copy(DEMO, flow)
    staff = api.group(STAFF, "Clinic staff")
    flaky: list[FlakyStore] = []

    def wrap(store: Any) -> FlakyStore:
        flaky.append(FlakyStore(store))
        return flaky[0]

    async with running_bot(api, tmp_path / "s.db", flow=flow, wrap_store=wrap,
                           STAFF_CHAT_ID=STAFF, ADMIN_IDS="77") as run:
        flaky[0].arm("mark_update", times=100)
        old = run.bot.engine.flow.hash
        flow.write_text(flow.read_text().replace("Since the pain started", "Since it started"))
        await api.wait_for(lambda: staff.last_bot_message is not None, timeout=10)
        assert "is live for new conversations" in str(staff.last_bot_message.text)  # type: ignore
        assert run.bot.engine.flow.hash != old
        assert any("could not check whether another instance announced" in r.getMessage()
                   for r in caplog.records)
        flaky[0].arm()
        admin = api.user(77, "Ada")
        await admin.send_command("/reload")
        await api.wait_idle()
        assert last_text(admin).startswith("Reloaded: version")
        await api.wait_for(lambda: len(staff.bot_messages) == 2, timeout=10)
        assert "is live for new conversations" in str(staff.bot_messages[-1].text)
