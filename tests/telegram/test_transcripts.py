"""Transcripts: a patient on Telegram, through the real PTB Application over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakebotapi import FakeBotAPI, _CallbackQueryState

from .conftest import last_text, running_bot


@pytest.mark.parametrize("webhook", [False, True], ids=["polling", "webhook"])
async def test_tap_through_to_emergency(api: FakeBotAPI, tmp_path: Path, webhook: bool) -> None:
    async with running_bot(api, tmp_path / "s.db", webhook=webhook):
        ann = api.user(1001, "Ann")
        await ann.send_command("/start")
        await api.wait_idle()
        first = ann.chat.last_bot_message
        assert first is not None
        assert str(first.text).startswith("This is a demo.")
        assert "Since the pain started, have you had any of these?" in str(first.text)
        assert first.button_texts[:5] == ["⬜ Trouble peeing or pooing", "⬜ Numb between the legs",
                                          "⬜ A leg getting weaker", "None of these", "Done"]
        await ann.tap(first, "⬜ Trouble peeing or pooing")
        await api.wait_idle()
        assert ann.chat.message(first.message_id).button_texts[0] == "✅ Trouble peeing or pooing"
        await ann.tap(first, "Done")
        await api.wait_idle()
        # the question became a record of the answer, without buttons
        record = ann.chat.message(first.message_id)
        assert str(record.text).endswith("✔️ Trouble peeing or pooing")
        assert record.buttons == []
        last = ann.chat.last_bot_message
        assert last is not None
        assert str(last.text).startswith("🚨 Based on your answers, please go to the nearest "
                                    "emergency department now.")
        assert any(e["type"] == "bold" for e in last.entities)
        assert last.button_texts == ["◀ Change my last answer", "↺ Start again"]


async def test_back_restart_and_typed_answers(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db"):
        bob = api.user(1002, "Bob")
        await bob.send_command("/start")
        await api.wait_idle()
        await bob.tap(bob.chat.last_bot_message, "None of these")
        await api.wait_idle()
        await bob.send_text("no")
        await api.wait_idle()
        assert "How old are you?" in last_text(bob)
        await bob.send_command("/back")
        await api.wait_idle()
        last = bob.chat.last_bot_message
        assert last is not None and "OK, let's change that answer." in str(last.text)
        assert "Just to be sure" in str(last.text)
        await bob.tap(last, "◀ Back")
        await api.wait_idle()
        assert "have you had any of these?" in last_text(bob)
        await bob.send_command("/restart")
        await api.wait_idle()
        assert last_text(bob).startswith("This is a demo.")


def forged_tap(api: FakeBotAPI, user: Any, message: Any, data: str, update_id: int) -> None:
    """A callback query with data of our choosing (as a modified client could send)."""
    qid = f"forged-{update_id}"
    api._callback_queries[qid] = _CallbackQueryState(
        query_id=qid, user_id=user.id, chat_id=user.id, message_id=message.message_id,
        data=data, created=time.monotonic())
    api.enqueue_raw({"update_id": update_id, "callback_query": {
        "id": qid, "from": user.to_dict(), "chat_instance": "1",
        "message": message.to_dict(), "data": data}})


async def test_double_tap_and_stale_button_change_nothing(api: FakeBotAPI,
                                                          tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db") as run:
        cy = api.user(1003, "Cy")
        await cy.send_command("/start")
        await api.wait_idle()
        first = cy.chat.last_bot_message
        await cy.tap(first, "None of these")
        await cy.tap(first, "None of these")  # a double tap: both before the bot answers
        await api.wait_idle()
        assert [a.text for a in api.callback_answers][-2:] == [
            None, "That button is from an earlier question."]
        data, _ = await run.store.load("tg:1003")
        assert data is not None and data["step"] == "bladder_check"
        assert len(data["history"]) == 1
        last = cy.chat.last_bot_message
        assert last is not None and "Just to be sure" in str(last.text) and last.buttons
        # the earlier copy of the current question lost its buttons: one live screen
        live = [m for m in cy.chat.bot_messages if m.buttons]
        assert live == [last]
        forged_tap(api, cy, first, "a|ddadd9e9|red_flags|0", 9000)  # an old question
        await api.wait_idle()
        assert api.callback_answers[-1].text == "That button is from an earlier question."
        assert (await run.store.load("tg:1003"))[0]["history"] == data["history"]


async def test_forged_callback_data(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db") as run:
        cy = api.user(1013, "Cy")
        await cy.send_command("/start")
        await api.wait_idle()
        first = cy.chat.last_bot_message
        for i, data in enumerate(["zz|evil|../../etc", "a|ddadd9e9|red_flags|99",
                                  "t|ddadd9e9|red_flags|-1", "a|00000000|red_flags|0", "",
                                  "x|" + "9" * 60, "f|maybe", "l|fr"]):
            forged_tap(api, cy, first, data, 9100 + i)
            await api.wait_idle()
            assert api.callback_answers[-1].text in (
                "That button is no longer active.",
                "That button is from an earlier question."), data
        stored, _ = await run.store.load("tg:1013")
        assert stored is not None and stored["step"] == "red_flags" and stored["history"] == []
        assert "have you had any of these?" in last_text(cy)


async def test_sticker_and_group_and_unknown_command(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db"):
        di = api.user(1004, "Di", language_code="es")
        await di.send_sticker()
        await api.wait_idle()
        last = di.chat.last_bot_message
        assert last is not None and str(last.text).startswith("Perdone, aquí solo puedo leer texto")
        assert "Desde que empezó el dolor" in str(last.text)
        await di.send_command("/nonsense")
        await api.wait_idle()
        assert last_text(di).startswith(
            "Perdone, no conozco esa orden.")
        group = api.group(-500, "Family")
        await api.group_message(-500, di, "/start")
        await api.wait_idle()
        assert group.last_bot_message is not None
        assert str(group.last_bot_message.text).startswith("¡Hola! Por su privacidad")


async def test_429_in_the_middle_is_waited_out(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db"):
        ed = api.user(1005, "Ed")
        await ed.send_command("/start")
        await api.wait_idle()
        api.fail_next("sendMessage", error_code=429, retry_after=1)
        await ed.tap(ed.chat.last_bot_message, "None of these")
        await api.wait_for(lambda: "Just to be sure" in last_text(ed), timeout=10)
        assert any(c.injected for c in api.calls("sendMessage"))


async def test_restart_of_the_process_resumes(api: FakeBotAPI, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with running_bot(api, db):
        fi = api.user(1006, "Fi")
        await fi.send_command("/start")
        await api.wait_idle()
        await fi.tap(fi.chat.last_bot_message, "None of these")
        await api.wait_idle()
    async with running_bot(api, db):
        await fi.send_text("no")
        await api.wait_idle()
        assert "How old are you?" in last_text(fi)


async def test_forget_deletes_the_conversation(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db") as run:
        gus = api.user(1007, "Gus")
        await gus.send_command("/start")
        await api.wait_idle()
        await gus.send_command("/forget")
        await api.wait_idle()
        await gus.tap(gus.chat.last_bot_message, "Yes, delete everything")
        await api.wait_idle()
        assert last_text(gus).startswith("Done. Your answers")
        assert (await run.store.load("tg:1007"))[0] is None


async def test_redelivered_updates_outside_the_conversation_send_nothing_twice(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """/help, a sticker, /forget and its buttons are not steps of the conversation (the
    session does not keep their ids): Telegram delivering one again must not send its
    answer again, nor forget twice."""
    async with running_bot(api, tmp_path / "s.db") as run:
        ivy = api.user(1010, "Ivy")
        await ivy.send_command("/start")
        await api.wait_idle()
        again = [await ivy.send_command("/help"), await ivy.send_sticker()]
        await api.wait_idle()
        ask = await ivy.send_command("/forget")
        await api.wait_idle()
        yes = await ivy.tap(ivy.chat.last_bot_message, "Yes, delete everything")
        await api.wait_idle()
        assert last_text(ivy).startswith("Done. Your answers")
        sent = len(ivy.chat.bot_messages)
        await ivy.send_command("/start")  # a new conversation after the forget
        await api.wait_idle()
        assert len(ivy.chat.bot_messages) > sent
        sent = len(ivy.chat.bot_messages)
        stored = await run.store.load("tg:1010")
        for update in [*again, ask, yes]:
            api.enqueue_raw(update)  # Telegram delivers each again
        await api.wait_idle()
        assert len(ivy.chat.bot_messages) == sent
        assert await run.store.load("tg:1010") == stored  # the new conversation is kept
        await ivy.send_command("/help")  # a new /help is answered as ever
        await api.wait_idle()
        assert len(ivy.chat.bot_messages) == sent + 1


async def test_an_update_id_used_again_for_another_message_is_answered(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Only a true redelivery is ignored: a Bot API double that numbers its updates from 1
    again (or another chat's update under the same id) is a new message."""
    async with running_bot(api, tmp_path / "s.db"):
        jo, kim = api.user(1011, "Jo"), api.user(1012, "Kim")
        first = await jo.send_command("/help")
        await api.wait_idle()
        replies = len(jo.chat.bot_messages)
        assert replies == 1
        other = json.loads(json.dumps(first))
        other["message"]["chat"]["id"] = other["message"]["from"]["id"] = 1012
        api.enqueue_raw(other)  # kim's /help under jo's update id
        again = json.loads(json.dumps(first))
        again["message"]["message_id"] += 100
        api.enqueue_raw(again)  # jo's next /help under the same id
        await api.wait_idle()
        assert len(kim.chat.bot_messages) == 1
        assert len(jo.chat.bot_messages) == replies + 1


async def test_duplicate_update_changes_nothing(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db") as run:
        hal = api.user(1008, "Hal")
        await hal.send_command("/start")
        await api.wait_idle()
        upd = await hal.tap(hal.chat.last_bot_message, "None of these")
        await api.wait_idle()
        before, version = await run.store.load("tg:1008")
        n = len(hal.chat.bot_messages)
        api.enqueue_raw(upd)  # Telegram redelivers the same update
        await api.wait_idle()
        after, version2 = await run.store.load("tg:1008")
        assert version2 == version and after == before
        assert len(hal.chat.bot_messages) == n


async def test_redelivered_start_after_an_answer_changes_nothing(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Telegram redelivers a /start the bot already took: it is not the patient asking to
    start over (no "Start over?" question, nothing changed)."""
    async with running_bot(api, tmp_path / "s.db") as run:
        ida = api.user(1012, "Ida")
        start = await ida.send_command("/start")
        await api.wait_idle()
        await ida.tap(ida.chat.last_bot_message, "None of these")
        await api.wait_idle()
        before = await run.store.load("tg:1012")
        n = len(ida.chat.bot_messages)
        api.enqueue_raw(start)
        await api.wait_idle()
        assert await run.store.load("tg:1012") == before
        assert len(ida.chat.bot_messages) == n, ida.chat.texts
        assert not any("Start over?" in str(m.text) for m in ida.chat.bot_messages)
        await ida.send_command("/start")  # a new /start mid-way still asks
        await api.wait_idle()
        asked = ida.chat.last_bot_message
        assert asked is not None and "Start over?" in str(asked.text)


async def test_a_stale_tap_keeps_the_live_screen_until_its_new_copy_is_out(
        api: FakeBotAPI, tmp_path: Path) -> None:
    """Showing the same screen again (here for a stale button) sends the new copy first and
    only then takes the buttons off the old one: a send can wait its turn under the flood
    limit, and the patient must never be left with no buttons meanwhile."""
    async with running_bot(api, tmp_path / "s.db"):
        jo = api.user(1013, "Jo")
        await jo.send_command("/start")
        await api.wait_idle()
        first = jo.chat.last_bot_message
        assert first is not None
        none = next(d for d in first.callback_data if d.startswith("n|"))
        await jo.tap(first, "None of these")
        await api.wait_idle()
        live = jo.chat.last_bot_message
        assert live is not None and live.buttons
        api.delay("sendMessage", 0.5)
        forged_tap(api, jo, first, none, 9100)  # a stale tap: the question was answered
        await api.wait_idle()
        api.delay("sendMessage", 0)
        sends = [c for c in api.requests if c.method == "sendMessage"]
        unbuttoned = [c for c in api.requests if c.method == "editMessageReplyMarkup"
                      and c.params.get("message_id") == live.message_id]
        assert len(unbuttoned) == 1 and sends[-1].finished is not None
        assert unbuttoned[0].started >= sends[-1].finished
        newest = jo.chat.last_bot_message
        assert newest is not None and newest is not live and newest.buttons


async def test_command_menu_set_per_language(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db"):
        await api.wait_idle()
        en = api.get_commands("default", "")
        es = api.get_commands("default", "es")
        assert [c["command"] for c in en][:3] == ["start", "back", "restart"]
        assert es[0]["description"] == "Empezar la revisión del dolor de espalda"
