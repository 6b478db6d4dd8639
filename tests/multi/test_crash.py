"""The single-process bot (SQLite store file), killed with SIGKILL, resumes on restart.

A real ``python bot.py`` child; the fake Bot API delivers the patient's updates itself (long
polling, or webhook with Telegram's patient redelivery while the bot is down).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.channels.service import ConversationService
from bot.engine import Choose, Engine, Start
from bot.flow import load_flow
from bot.flow.model import Flow
from bot.staff.audit import audit_record
from bot.storage import open_store
from bot.storage.memory import MemoryStore
from tests.fakebotapi import FakeBotAPI, FakeUser, free_port

from .harness import (
    DEMO,
    TOKEN,
    Action,
    BotProcess,
    Expected,
    Screen,
    bot_settings,
    expect,
    find_screen,
    history_of,
    last_message_id,
    screen_of_message,
    tap_data,
    wait_for_screen,
)

SCRIPT: list[Action] = [("start",), ("tap", "n", 0), ("tap", "a", 0), ("text", "45"),
                        ("tap", "a", 0), ("tap", "a", 0), ("tap", "a", 0), ("tap", "n", 0)]
KILL_BEFORE = 3  # SIGKILL after the reply to answer 3, send answer 4 while the bot is down


@pytest.fixture
def flow() -> Flow:
    loaded, problems = load_flow(DEMO)
    assert loaded is not None, problems
    return loaded


@pytest.fixture
async def api() -> Any:
    # Telegram retries a webhook for a long time; the fake's default gives up after <1 s
    async with FakeBotAPI(token=TOKEN, webhook_retry_delays=[0.25] * 160) as server:
        yield server


def solo(api: FakeBotAPI, db: Path, mode: str, log_dir: Path) -> BotProcess:
    port = free_port()
    settings = bot_settings(api, str(db))
    if mode == "webhook":
        return BotProcess("solo", settings, log_dir, port=port)
    return BotProcess("solo", settings, log_dir, health_port=port)


async def act(api: FakeBotAPI, user: FakeUser, flow: Flow, action: Action,
              before: Screen | None) -> None:
    """Do one scripted action as the user (the fake delivers it)."""
    kind = action[0]
    if kind == "start":
        await user.send_command("/start")
    elif kind == "text":
        await user.send_text(action[1])
    else:
        assert before is not None
        message = find_screen(user, flow, before)
        assert message is not None, f"nothing shows {before}"
        await user.tap(message, tap_data(flow, before, action[1], action[2]))


async def play(api: FakeBotAPI, user: FakeUser, flow: Flow, exp: Expected,
               steps: range) -> None:
    for i in steps:
        after = last_message_id(user)
        await act(api, user, flow, SCRIPT[i], exp.screens[i - 1] if i else None)
        await wait_for_screen(api, user, flow, exp.screens[i], after, timeout=30)


async def load(db: Path, key: str) -> dict[str, Any] | None:
    store = open_store(str(db))
    try:
        data, _ = await store.load(key)
    finally:
        await store.close()
    return data


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_killed_between_two_answers_resumes_on_restart(
        api: FakeBotAPI, tmp_path: Path, flow: Flow, mode: str) -> None:
    exp = expect(Engine(flow), SCRIPT)
    db = tmp_path / "sessions.db"
    bot = solo(api, db, mode, tmp_path)
    await bot.start()
    ann = api.user(901, "Ann")
    try:
        await play(api, ann, flow, exp, range(KILL_BEFORE))
        await api.wait_idle(quiet=0.5, timeout=30)
        bot.kill()
        after = last_message_id(ann)
        await act(api, ann, flow, SCRIPT[KILL_BEFORE], exp.screens[KILL_BEFORE - 1])
        await asyncio.sleep(0.5)  # the answer arrives while the bot is down
        await bot.start()
        await wait_for_screen(api, ann, flow, exp.screens[KILL_BEFORE], after, timeout=30)
        await play(api, ann, flow, exp, range(KILL_BEFORE + 1, len(SCRIPT)))
        await api.wait_idle(quiet=0.5, timeout=30)
    finally:
        code = await bot.stop()
    assert code == 0, bot.tail()
    data = await load(db, "tg:901")
    assert data is not None
    assert (data["step"], history_of(data)) == (exp.session["step"], exp.history)
    assert exp.disposition == "self_care" and exp.headline in str(ann.chat.last_bot_message)
    # one message per action: the welcome with the first question, then one per answer
    assert len(ann.chat.bot_messages) == len(SCRIPT), ann.chat.texts
    assert bot.log_problems() == []


# An update is acknowledged before it is handled (webhook: PTB's WebhookHandler answers 200
# once the update is queued; polling: the next getUpdates confirms the batch as soon as it is
# queued), so Telegram never sends again an update whose handling SIGKILL cut. The step is
# saved, and the restarted bot answers what the session says was never answered.
@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_killed_while_answering_replies_after_restart(
        api: FakeBotAPI, tmp_path: Path, flow: Flow, mode: str) -> None:
    exp = expect(Engine(flow), SCRIPT)
    db = tmp_path / "sessions.db"
    bot = solo(api, db, mode, tmp_path)
    await bot.start()
    bo = api.user(902, "Bo")
    try:
        await play(api, bo, flow, exp, range(1))
        await api.wait_idle(quiet=0.5, timeout=30)
        held = ("answerCallbackQuery", "sendMessage")
        for method in held:  # hold the bot inside the update, before its reply is marked
            api.delay(method, 10)
        after = last_message_id(bo)
        await act(api, bo, flow, SCRIPT[1], exp.screens[0])
        tap = api.updates[-1]["update_id"]
        await api.wait_for(lambda: all(any(c.method == m and c.response is None
                                           for c in api.requests) for m in held), 30)
        # Telegram has let go of the update (webhook: 200; polling: confirmed by the offset
        # of the next getUpdates) while the bot is still inside it
        await api.wait_for(lambda: all(q.update_id != tap for q in api._queue), 30)
        bot.kill()
        for method in held:
            api.delay(method, 0)
        data = await load(db, "tg:902")
        assert data is not None and data["step"] == "bladder_check"  # the step was saved
        await bot.start()
        # the held question still reaches the chat (Telegram had the request), but the bot
        # never learnt it did: the restarted bot sends it again, with the notice
        await api.wait_for(lambda: late_screen(bo, flow, exp.screens[1], after), 20,
                           description="the late answer")
        for _ in range(50):  # the answer is marked just after it is sent
            data = await load(db, "tg:902")
            if data is not None and tap in data["meta"]["replied"]:
                break  # answered, for good: the next restart leaves it alone
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the late answer was never marked as given")
    finally:
        await bot.stop()


def late_screen(user: FakeUser, flow: Flow, want: Screen, after: int) -> bool:
    """A bot message after ``after`` shows ``want`` with the late-answer notice."""
    return any(
        m.from_bot and m.message_id > after and "took us longer than it should" in str(m.text)
        and screen_of_message(m, flow) == want for m in user.chat._messages.values())


class Killed(BaseException):
    """The process dies (SIGKILL) at this point: nothing after it runs."""


class DiesAfterSave(MemoryStore):
    """The process dies right after a save reached the store."""

    armed = False

    async def save(self, *args: Any, **kwargs: Any) -> int | None:
        saved = await super().save(*args, **kwargs)
        if self.armed:
            raise Killed
        return saved


async def test_outcome_cut_right_after_its_save_is_audited_once(flow: Flow) -> None:
    """The audit record is written with the session, atomically: a crash right after the
    save that finished a triage keeps the record, and the redelivered update adds none."""
    engine = Engine(flow)
    h = flow.hash[:8]
    dying = DiesAfterSave()
    service = ConversationService(engine, dying, audit=audit_record)
    await service.step("tg:1", Start("en"), update_id=1)
    await service.step("tg:1", Choose("red_flags", 0, "t", h), update_id=2)
    dying.armed = True
    with pytest.raises(Killed):  # Done: emergency is saved, then the process dies
        await service.step("tg:1", Choose("red_flags", 0, "d", h), update_id=3)
    store = MemoryStore(shared_with=dying)  # the restarted process, same data
    again = await ConversationService(engine, store, audit=audit_record).step(
        "tg:1", Choose("red_flags", 0, "d", h), update_id=3)  # Telegram redelivers update 3
    assert again.duplicate and again.session["step"] == "emergency"
    [record] = await store.audit()
    assert record["disposition"] == "emergency"
