"""Races between two webhook instances sharing one Redis, each pinned down deterministically.

The fake Bot API holds some answers back (``api.delay``) so that both instances are inside
the same update at once; the test is Telegram (see ``harness.Telegram``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.channels.service import ConversationService
from bot.engine import Choose, Engine, Start
from bot.flow import load_flow
from bot.flow.model import Flow
from bot.storage import open_store
from bot.storage.memory import MemoryStore
from tests.fakebotapi import FakeBotAPI, FakeUser

from .conftest import Cluster, cluster
from .harness import (
    DEMO,
    Action,
    Screen,
    expect,
    find_screen,
    history_of,
    last_message_id,
    tap_data,
    tap_update,
    text_update,
    wait_for_screen,
)
from .patient import Mischief, Patient

START: Action = ("start",)
NONE: Action = ("tap", "n", 0)


@pytest.fixture
def flow() -> Flow:
    loaded, problems = load_flow(DEMO)
    assert loaded is not None, problems
    return loaded


async def walk(api: FakeBotAPI, run: Cluster, flow: Flow, user: FakeUser,
               script: list[Action]) -> Patient:
    """Play ``script`` without mischief, each update to one instance (round-robin)."""
    patient = Patient(api, run.telegram, flow, user, script, expect(Engine(flow), script),
                      Mischief(duplicate_every=0, double_tap_every=0), "walk",
                      reply_timeout=30)
    await patient.run()
    assert not patient.problems, patient.problems
    await api.wait_idle(quiet=0.5, timeout=30)
    return patient


async def stored(redis_url: str, chat_id: int) -> dict:
    store = open_store(redis_url)
    try:
        data, _ = await store.load(f"tg:{chat_id}")
    finally:
        await store.close()
    assert data is not None
    return data


async def test_redelivered_tick_sends_no_new_message(api: FakeBotAPI, redis_url: str,
                                                     tmp_path: Path, flow: Flow) -> None:
    async with cluster(api, redis_url, tmp_path, names="A") as run:
        ann = api.user(801, "Ann")
        patient = await walk(api, run, flow, ann, [START, ("tap", "t", 0)])
        tick = run.telegram.updates[patient.log[-1].update_ids[0]]
        before = [m.message_id for m in ann.chat.bot_messages]
        await run.telegram.deliver(tick)  # Telegram redelivers it (our 200 got lost)
        await api.wait_idle(quiet=1.0, timeout=30)
        data = await stored(redis_url, 801)
        assert data["step"] == "red_flags" and data["ticks"] == [0]  # the tick stayed ticked
        assert [m.message_id for m in ann.chat.bot_messages] == before
        assert find_screen(ann, flow, Screen("red_flags", ticks=frozenset({0}))) is not None


async def test_update_delivered_to_both_instances_is_answered_once(
        api: FakeBotAPI, redis_url: str, tmp_path: Path, flow: Flow) -> None:
    async with cluster(api, redis_url, tmp_path) as run:
        bo = api.user(802, "Bo")
        await walk(api, run, flow, bo, [START])
        question = find_screen(bo, flow, Screen("red_flags"))
        assert question is not None
        after = last_message_id(bo)
        api.delay("editMessageText", 0.5)
        api.delay("sendMessage", 0.5)
        update, _ = tap_update(api, bo, run.telegram.new_update_id(), question,
                               tap_data(flow, Screen("red_flags"), "n", 0))
        await run.telegram.deliver_to_all(update)
        await wait_for_screen(api, bo, flow, Screen("bladder_check"), after)
        await api.wait_idle(quiet=1.0, timeout=30)
        data = await stored(redis_url, 802)
        assert history_of(data) == [("red_flags", [])]  # the step itself is not doubled
        shown = [m for m in bo.chat.bot_messages if m.message_id > after]
        assert len(shown) == 1, [m.text for m in shown]


async def test_help_and_forget_delivered_to_both_instances_are_answered_once(
        api: FakeBotAPI, redis_url: str, tmp_path: Path, flow: Flow) -> None:
    """Updates outside the conversation are marked as seen in Redis (SET NX): of two
    instances given the same one at once, one answers it."""
    async with cluster(api, redis_url, tmp_path) as run:
        eve = api.user(805, "Eve")
        await walk(api, run, flow, eve, [START])
        sent = len(eve.chat.bot_messages)
        await run.telegram.deliver_to_all(text_update(eve, run.telegram.new_update_id(),
                                                      "/help"))
        await run.telegram.deliver_to_all(text_update(eve, run.telegram.new_update_id(),
                                                      "/forget"))
        await api.wait_idle(quiet=1.0, timeout=30)
        assert len(eve.chat.bot_messages) == sent + 2  # the help, and the question


async def test_double_tap_on_back_button_on_two_instances_goes_back_once(
        api: FakeBotAPI, redis_url: str, tmp_path: Path, flow: Flow) -> None:
    async with cluster(api, redis_url, tmp_path) as run:
        cy = api.user(803, "Cy")
        await walk(api, run, flow, cy, [START, NONE, ("tap", "a", 0), ("text", "45")])
        question = find_screen(cy, flow, Screen("duration"))
        assert question is not None
        api.delay("answerCallbackQuery", 0.5)
        data = tap_data(flow, Screen("duration"), "b", 0)
        taps = [tap_update(api, cy, run.telegram.new_update_id(), question, data)[0]
                for _ in range(2)]
        await asyncio.gather(run.telegram.deliver(taps[0], start=0),
                             run.telegram.deliver(taps[1], start=1))
        await api.wait_idle(quiet=1.0, timeout=30)
        session = await stored(redis_url, 803)
        assert (session["step"], history_of(session), session["backs"]) == (
            "age", [("red_flags", []), ("bladder_check", 0)], 1)


async def test_late_channel_data_of_an_older_update_does_not_overwrite_newer(
        flow: Flow) -> None:
    service = ConversationService(Engine(flow), MemoryStore())
    h = flow.hash[:8]
    await service.step("tg:1", Start("en"), update_id=1)
    older = await service.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)  # on A
    newer = await service.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)  # on B
    await service.update_meta("tg:1", newer.version, {"qmsg": {"id": 4, "step": "age"}},
                              replied=3)  # B is done first
    await service.update_meta("tg:1", older.version,
                              {"qmsg": {"id": 3, "step": "bladder_check"}}, replied=2)  # A late
    data, _ = await service.load("tg:1")
    assert data is not None and data["meta"]["qmsg"] == {"id": 4, "step": "age"}


async def test_called_back_by_two_nurses_on_two_instances_at_once_is_marked_once(
        redis_url: str) -> None:
    """Both instances read the request as not yet called back (their reads go out together);
    the compare-and-set lets one mark it, and the other learns it was already."""
    from types import SimpleNamespace

    from bot.channels.telegram.handoff import Handoff
    from bot.engine import Engine, Start

    loaded, problems = load_flow(DEMO)
    assert loaded is not None, problems
    stores = [open_store(redis_url), open_store(redis_url)]
    services = [ConversationService(Engine(loaded), s) for s in stores]
    try:
        res = await services[0].step("tg:1", Start("en"), update_id=1)
        await services[0].update_meta("tg:1", res.version, {"handoff": {
            "state": "sent", "phone": "8175550100", "card": 77}})
        handoff = Handoff(-100, "(817) 555-0100")
        outcomes = await asyncio.gather(*(
            handoff._mark_called_back(SimpleNamespace(service=s), "tg:1", 77)  # type: ignore
            for s in services))
        assert sorted(outcomes) == [("already", ""), ("marked", "en")]
        data, _ = await stores[0].load("tg:1")
        assert data is not None and data["meta"]["handoff"]["state"] == "called_back"
        # a tap on an older card (the patient asked again since) marks nothing
        assert await handoff._mark_called_back(
            SimpleNamespace(service=services[1]), "tg:1", 76) == ("gone", "")  # type: ignore
    finally:
        for s in stores:
            await s.close()
