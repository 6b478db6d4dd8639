"""Handoff to the clinic: consent, phone number, a card in the staff chat, called back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.channels.telegram.handoff import valid_phone
from tests.fakebotapi import FakeBotAPI

from .conftest import last_text, running_bot

STAFF = -100777


async def to_routine(api: FakeBotAPI, user: object) -> None:
    u = user
    await u.send_command("/start")  # type: ignore[attr-defined]
    await api.wait_idle()
    for step in ("None of these", "No"):
        await u.tap(u.chat.last_bot_message, step)  # type: ignore[attr-defined]
        await api.wait_idle()
    await u.send_text("44")  # type: ignore[attr-defined]
    await api.wait_idle()
    for step in ("More than 6 weeks", "About the same", "No", "None of these"):
        await u.tap(u.chat.last_bot_message, step)  # type: ignore[attr-defined]
        await api.wait_idle()


async def request_appointment(api: FakeBotAPI, user: object, phone: str) -> list[Any]:
    """From the routine outcome: request, consent, the number typed; their updates."""
    u: Any = user
    updates = [await u.tap(u.chat.last_bot_message, "📅 Request an appointment")]
    await api.wait_idle()
    updates.append(await u.tap(u.chat.last_bot_message, "Yes, share my answers"))
    await api.wait_idle()
    updates.append(await u.send_text(phone))
    await api.wait_idle()
    return updates


def test_phone_numbers() -> None:
    assert valid_phone("817 555 0100") == "8175550100"
    assert valid_phone("+1 (817) 555-0100") == "+18175550100"
    assert valid_phone("call me") is None
    assert valid_phone("12") is None


async def test_request_appointment_to_called_back(api: FakeBotAPI, tmp_path: Path) -> None:
    staff = api.group(STAFF, "Clinic staff")
    nurse = api.user(5, "Nora")
    async with running_bot(api, tmp_path / "s.db", STAFF_CHAT_ID=STAFF):
        pat = api.user(2001, "Pat")
        await to_routine(api, pat)
        out = pat.chat.last_bot_message
        assert out is not None and "Please book an appointment" in str(out.text)
        assert out.button_texts[0] == "📅 Request an appointment"
        await pat.tap(out, "📅 Request an appointment")
        await api.wait_idle()
        await pat.tap(pat.chat.last_bot_message, "Yes, share my answers")
        await api.wait_idle()
        assert last_text(pat).startswith("What phone number can the clinic call?")
        await pat.send_text("my number is secret")
        await api.wait_idle()
        assert last_text(pat).startswith("That doesn't look like a phone number.")
        await pat.send_contact("+1 817 555 0100")
        await api.wait_idle()
        assert last_text(pat).startswith("Thank you. The clinic has your request and will "
                                         "call you at +18175550100.")
        card = staff.last_bot_message
        assert card is not None
        text = str(card.text)
        assert text.startswith("📅 Appointment request")
        assert "Disposition: routine (rule R1)" in text
        assert "Phone: +18175550100" in text
        assert "Red flags: none" in text
        assert "• duration days: 43" in text
        assert card.button_texts == ["✅ Called back"]
        await nurse.tap(card, "✅ Called back")
        await api.wait_idle()
        assert "✅ Called back by Nora" in str(staff.message(card.message_id).text)
        assert last_text(pat).startswith("The clinic has marked your appointment request as "
                                         "handled.")


async def test_emergency_never_offers_booking_but_tells_staff(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    staff = api.group(STAFF, "Clinic staff")
    async with running_bot(api, tmp_path / "s.db", STAFF_CHAT_ID=STAFF):
        pat = api.user(2002, "Em")
        await pat.send_command("/start")
        await api.wait_idle()
        await pat.tap(pat.chat.last_bot_message, "⬜ Numb between the legs")
        await api.wait_idle()
        await pat.tap(pat.chat.last_bot_message, "Done")
        await api.wait_idle()
        out = pat.chat.last_bot_message
        assert out is not None and "📅 Request an appointment" not in out.button_texts
        card = staff.last_bot_message
        assert card is not None and str(card.text).startswith("🚨 EMERGENCY advice given")
        assert "Phone:" not in str(card.text)


async def test_no_staff_chat_no_button(api: FakeBotAPI, tmp_path: Path) -> None:
    async with running_bot(api, tmp_path / "s.db"):
        pat = api.user(2003, "Ro")
        await to_routine(api, pat)
        out = pat.chat.last_bot_message
        assert out is not None
        assert out.button_texts == ["◀ Change my last answer", "↺ Start again"]


async def test_forget_removes_the_phone_number(api: FakeBotAPI, tmp_path: Path) -> None:
    api.group(STAFF, "Clinic staff")
    async with running_bot(api, tmp_path / "s.db", STAFF_CHAT_ID=STAFF) as run:
        pat = api.user(2004, "Fo")
        await to_routine(api, pat)
        await request_appointment(api, pat, "817 555 0199")
        data, _ = await run.store.load("tg:2004")
        assert data is not None and data["meta"]["handoff"]["phone"] == "8175550199"
        await pat.send_command("/forget")
        await api.wait_idle()
        await pat.tap(pat.chat.last_bot_message, "Yes, delete everything")
        await api.wait_idle()
        assert (await run.store.load("tg:2004"))[0] is None


async def test_logs_hold_no_health_data(api: FakeBotAPI, tmp_path: Path,
                                        caplog: object) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="bot")  # type: ignore[attr-defined]
    api.group(STAFF, "Clinic staff")
    async with running_bot(api, tmp_path / "s.db", STAFF_CHAT_ID=STAFF):
        pat = api.user(987654321, "Lu")
        await pat.send_command("/start")
        await api.wait_idle()
        await pat.send_text("my secret back story")
        await api.wait_idle()
        await to_routine(api, pat)
        await pat.tap(pat.chat.last_bot_message, "📅 Request an appointment")
        await api.wait_idle()
        await pat.tap(pat.chat.last_bot_message, "Yes, share my answers")
        await api.wait_idle()
        await pat.send_text("817 555 0142")
        await api.wait_idle()
    text = "\n".join(r.getMessage() + " " + str(r.exc_text or "")
                     for r in caplog.records)  # type: ignore[attr-defined]
    for secret in ("my secret back story", "5550142", "555 0142", "987654321",
                   "duration_days", "routine"):
        assert secret not in text, secret


async def test_a_phone_number_delivered_again_is_one_request(api: FakeBotAPI,
                                                              tmp_path: Path) -> None:
    """Telegram delivers the typed number (or the consent tap) again: the staff get one card
    and the patient one thank-you; the conversation is not given the number as an answer."""
    staff = api.group(STAFF, "Clinic staff")
    async with running_bot(api, tmp_path / "s.db", STAFF_CHAT_ID=STAFF) as run:
        pat = api.user(2005, "Lu")
        await to_routine(api, pat)
        request, consent, number = await request_appointment(api, pat, "817 555 0100")
        assert last_text(pat).startswith("Thank you. The clinic has your request")
        cards, sent = len(staff.bot_messages), len(pat.chat.bot_messages)
        stored = await run.store.load("tg:2005")
        for update in (number, consent, request):
            api.enqueue_raw(update)
        await api.wait_idle()
        assert (len(staff.bot_messages), len(pat.chat.bot_messages)) == (cards, sent)
        assert await run.store.load("tg:2005") == stored


async def test_called_back_tapped_twice_or_delivered_again_tells_the_patient_once(
        api: FakeBotAPI, tmp_path: Path) -> None:
    staff = api.group(STAFF, "Clinic staff")
    nurse = api.user(6, "Nia")
    async with running_bot(api, tmp_path / "s.db", STAFF_CHAT_ID=STAFF):
        pat = api.user(2006, "Mo")
        await to_routine(api, pat)
        await request_appointment(api, pat, "817 555 0100")
        card = staff.last_bot_message
        assert card is not None
        taps = [await nurse.tap(card, "✅ Called back"), await nurse.tap(card, "✅ Called back")]
        await api.wait_idle()
        api.enqueue_raw(taps[0])  # and Telegram delivers the first again
        await api.wait_idle()
        handled = [m for m in pat.chat.bot_messages
                   if str(m.text).startswith("The clinic has marked your appointment")]
        assert len(handled) == 1
        assert str(staff.message(card.message_id).text).count("✅ Called back by Nia") == 1
        answers = [c.params.get("text") for c in api.calls("answerCallbackQuery")]
        assert "Already marked as called back" in answers
