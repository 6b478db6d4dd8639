"""The aiohttp request class under a real PTB Bot, against the fake Bot API: the same requests,
answers and errors as PTB's own httpx class."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from bot.channels.telegram.request import AiohttpRequest
from tests.fakebotapi import FakeBotAPI, free_port

from .conftest import TOKEN


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api.base_url, base_file_url=api.base_file_url,
                   request=AiohttpRequest(4, read_timeout=0.5)) as b:
        yield b


async def test_messages_buttons_and_uploads_arrive_as_sent(api: FakeBotAPI, bot: Bot) -> None:
    ann = api.user(4001, "Ann")
    me = await bot.get_me()
    assert me.username == "test_bot"
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Yes ✅", callback_data="a|1|q|0")]])
    msg = await bot.send_message(ann.id, "<b>Hi</b> &amp; welcome", parse_mode="HTML",
                                 reply_markup=markup)
    assert msg.text == "Hi & welcome" and msg.reply_markup == markup
    shown = ann.chat.last_bot_message
    assert shown is not None and shown.button_texts == ["Yes ✅"]
    assert api.last_call("sendMessage").content_type == "application/x-www-form-urlencoded"
    doc = await bot.send_document(ann.id, b"%PDF-1.4 x", filename="a.pdf", caption="café")
    assert doc.document is not None and doc.document.file_name == "a.pdf"
    upload = api.last_call("sendDocument")
    assert upload.content_type == "multipart/form-data"
    assert upload.files["document"].data == b"%PDF-1.4 x"
    assert upload.params["caption"] == "café"
    assert await bot.delete_message(ann.id, msg.message_id) is True


async def test_errors_map_to_ptb_exceptions(api: FakeBotAPI, bot: Bot) -> None:
    ann = api.user(4002, "Ann")
    api.fail_next("sendMessage", error_code=429, retry_after=3)
    with pytest.raises(RetryAfter):
        await bot.send_message(ann.id, "x")
    api.fail_next("sendMessage", error_code=500)
    with pytest.raises(NetworkError):
        await bot.send_message(ann.id, "x")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(999, "x")
    api.block_user(ann.id)
    with pytest.raises(Forbidden):
        await bot.send_message(ann.id, "x")


async def test_a_slow_answer_times_out_and_a_dead_server_is_a_network_error(
        api: FakeBotAPI, bot: Bot) -> None:
    ann = api.user(4003, "Ann")
    api.delay("sendMessage", 1.0)
    with pytest.raises(TimedOut):
        await bot.send_message(ann.id, "x")  # read timeout 0.5 s
    api.delay("sendMessage", 0)
    assert (await bot.send_message(ann.id, "y", read_timeout=2)).text == "y"
    dead = Bot(TOKEN, base_url=f"http://127.0.0.1:{free_port()}/bot",
               request=AiohttpRequest(connect_timeout=1))
    with pytest.raises(NetworkError) as caught:
        async with dead:  # initialize() asks getMe
            pass
    assert not isinstance(caught.value, TimedOut)


async def test_initialize_and_shutdown_can_repeat() -> None:
    request = AiohttpRequest()
    with pytest.raises(RuntimeError, match="not initialized"):
        await request.do_request("http://127.0.0.1:9/", "GET")
    await request.initialize()
    await request.initialize()
    await request.shutdown()
    await request.shutdown()
    assert request.read_timeout == 5.0
