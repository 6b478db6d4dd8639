"""When things break: a handler crash still answers the patient, a blocked user is logged once,
network errors and slow answers are retried."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.fakebotapi import FakeBotAPI

from .conftest import FlakyStore, last_text, running_bot

SORRY = "Sorry, something went wrong on our side. Please try again."
FIRST_QUESTION = "Since the pain started, have you had any of these?"


async def test_a_crash_in_a_handler_still_answers_with_the_current_question(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    flaky: list[FlakyStore] = []

    def wrap(store: Any) -> FlakyStore:
        flaky.append(FlakyStore(store))
        return flaky[0]

    async with running_bot(api, tmp_path / "s.db", wrap_store=wrap) as run:
        ann = api.user(3001, "Ann")
        await ann.send_command("/start")
        await api.wait_idle()
        question = ann.chat.last_bot_message
        flaky[0].arm("save", "save_or_current", "save_then")  # the next write fails
        await ann.tap(question, "None of these")
        await api.wait_idle()
        assert api.callback_answers[-1].text is None  # the tap was answered
        sorry = ann.chat.last_bot_message
        assert sorry is not None and sorry is not question
        assert str(sorry.text) == (f"{SORRY}\n\n{FIRST_QUESTION} Tap all that apply, "
                                   "then Done.")
        assert sorry.button_texts[-2:] == ["None of these", "Done"]
        assert run.bot.metrics.errors["handler"] == 1
        failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert [r.getMessage().split(" for chat ")[0] for r in failed] == [
            f"update {api.updates[-1]['update_id']}"]
        assert "the disk is on fire" not in failed[0].getMessage()  # the trace says it
        # the patient tries again, and it works
        await ann.tap(sorry, "None of these")
        await api.wait_idle()
        assert "Just to be sure" in last_text(ann)
        data, _ = await run.store.load("tg:3001")
        assert data is not None and data["step"] == "bladder_check"


async def test_a_store_that_is_down_still_gets_the_patient_an_apology(
        api: FakeBotAPI, tmp_path: Path) -> None:
    flaky: list[FlakyStore] = []

    def wrap(store: Any) -> FlakyStore:
        flaky.append(FlakyStore(store))
        return flaky[0]

    async with running_bot(api, tmp_path / "s.db", wrap_store=wrap):
        bea = api.user(3002, "Bea", language_code="es")
        await bea.send_command("/start")
        await api.wait_idle()
        flaky[0].arm("load", "save", "save_or_current", "save_then", times=10)  # down: reads and writes fail
        await bea.send_text("no")
        await api.wait_idle()
        assert last_text(bea) == "Perdone, algo falló de nuestro lado. Inténtelo de nuevo."


async def test_a_user_who_blocked_the_bot_is_logged_once(
        api: FakeBotAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot")
    async with running_bot(api, tmp_path / "s.db") as run:
        cal = api.user(3003, "Cal")
        await cal.send_command("/start")
        await api.wait_idle()
        sent = len(api.calls("sendMessage"))
        api.block_user(cal.id)
        for text in ("no", "hello", "/help"):
            await cal.send_text(text)
        await api.wait_idle()
        blocked = [r for r in caplog.records if "blocked the bot" in r.getMessage()]
        assert len(blocked) == 1 and blocked[0].levelno == logging.INFO
        assert "3003" not in blocked[0].getMessage()  # a pseudonym, not the chat id
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                    and r.name.startswith("bot")]
        assert len(api.calls("sendMessage")) - sent == 3  # one try per update: no retries
        assert run.bot.metrics.errors.get("handler", 0) == 0
        # they unblock, and are answered again; blocking again is logged again
        api.unblock_user(cal.id)
        await cal.send_command("/help")
        await api.wait_idle()
        assert last_text(cal).startswith("I ask a few short questions")
        api.block_user(cal.id)
        await cal.send_text("no")
        await api.wait_idle()
        assert len([r for r in caplog.records if "blocked the bot" in r.getMessage()]) == 2


@pytest.mark.parametrize("method", ["sendMessage", "answerCallbackQuery",
                                    "editMessageText"])
async def test_server_errors_are_retried(api: FakeBotAPI, tmp_path: Path, method: str) -> None:
    async with running_bot(api, tmp_path / "s.db") as run:
        dan = api.user(3004, "Dan")
        await dan.send_command("/start")
        await api.wait_idle()
        first = dan.chat.last_bot_message
        assert first is not None
        await dan.tap(first, "⬜ Trouble peeing or pooing")
        await api.wait_idle()
        api.fail_next(method, error_code=500)
        api.fail_next(method, error_code=502)
        await dan.tap(first, "Done")
        await api.wait_for(lambda: "emergency" in last_text(dan), timeout=10)
        await api.wait_idle()
        calls = api.calls(method)
        assert [c.status for c in calls[-3:]] == [500, 502, 200]
        assert api.callback_answers[-1].text is None
        assert str(dan.chat.message(first.message_id).text).endswith(
            "✔️ Trouble peeing or pooing")
        assert run.bot.metrics.errors["network_retry"] == 2
        assert run.bot.metrics.errors.get("handler", 0) == 0


async def test_a_timed_out_request_is_retried(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db") as run:
        eve = api.user(3005, "Eve")
        api.delay("sendMessage", 6.0)  # longer than PTB's 5 s read timeout
        await eve.send_command("/start")
        await api.wait_for(lambda: api.calls("sendMessage"), timeout=5)  # the first try
        api.delay("sendMessage", 0)
        await api.wait_for(lambda: run.bot.metrics.errors["network_retry"] == 1, timeout=10)
        await api.wait_idle(timeout=10)
        # Telegram may have sent the first try too: the patient can see the question twice
        assert 1 <= len(eve.chat.bot_messages) <= 2
        assert last_text(eve).startswith("This is a demo.")
        assert run.bot.metrics.errors.get("handler", 0) == 0


async def cut_answer(store: Any, key: str, updated: float) -> None:
    """As a crash leaves a session: its last step saved (at ``updated``), the answer to
    that update never sent."""
    data, version = await store.load(key)
    assert data is not None
    data["meta"]["replied"].remove(data["updates"][-1])
    data["updated"] = updated
    assert await store.save(key, data, version) == version + 1


async def test_an_update_a_crash_left_unanswered_is_answered_once_after_a_restart(
        api: FakeBotAPI, tmp_path: Path) -> None:
    import time

    db = tmp_path / "s.db"
    async with running_bot(api, db) as run:
        cy, dee, eve = (api.user(3100 + i, name) for i, name in enumerate(("Cy", "Dee", "Eve")))
        for user in (cy, dee, eve):
            await user.send_command("/start")
        await api.wait_idle()
        started = time.time()
        # as a crash leaves them: the step saved, its answer never sent
        for user, updated in ((cy, started - 60), (dee, started + 1), (eve, started - 7200)):
            await cut_answer(run.store, f"tg:{user.id}", updated)
        before = {u.id: len(u.chat.bot_messages) for u in (cy, dee, eve)}
        assert await run.bot.answer_unanswered(started) == 1
        await api.wait_idle()
        # Cy: cut a minute before this process started; Dee: written after it started (another
        # instance is answering it); Eve: two hours ago, too late to pick up
        assert last_text(cy).startswith("Sorry, your last answer took us longer than it should.")
        assert FIRST_QUESTION in last_text(cy)
        assert len(dee.chat.bot_messages) == before[dee.id]
        assert len(eve.chat.bot_messages) == before[eve.id]
        assert await run.bot.answer_unanswered(started) == 0  # once only


async def test_two_instances_restarted_together_give_the_late_answer_once(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Both instances list the same cut answer at start-up and answer together: one sends."""
    import time

    async with running_bot(api, tmp_path / "s.db") as run:
        gil = api.user(3120, "Gil")
        await gil.send_command("/start")
        await api.wait_idle()
        started = time.time()
        await cut_answer(run.store, "tg:3120", started - 1)
        n = len(gil.chat.bot_messages)
        found = await run.bot.unanswered(started)
        assert sorted(await asyncio.gather(run.bot.answer_unanswered(started, found),
                                           run.bot.answer_unanswered(started, found))) == [0, 1]
        await api.wait_idle()
        assert len(gil.chat.bot_messages) == n + 1


async def test_an_unanswered_update_that_moves_on_in_the_grace_is_left_to_the_live_instance(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Listed at start-up as unanswered, but the patient's session moves on before the grace
    ends (another instance was answering it): no late screen replaces the live one."""
    import time

    async with running_bot(api, tmp_path / "s.db") as run:
        fay = api.user(3110, "Fay")
        await fay.send_command("/start")
        await api.wait_idle()
        started = time.time()
        await cut_answer(run.store, "tg:3110", started - 1)  # its answer still on the way
        found = await run.bot.unanswered(started)
        assert list(found) == ["tg:3110"]
        await fay.tap(fay.chat.last_bot_message, "None of these")  # the patient goes on
        await api.wait_idle()
        n = len(fay.chat.bot_messages)
        assert await run.bot.answer_unanswered(started, found) == 0
        await api.wait_idle()
        assert len(fay.chat.bot_messages) == n
        assert "Just to be sure" in last_text(fay)
