"""Tests of the fake Bot API server, driven by a real python-telegram-bot Application."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from telegram import (
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import (
    BadRequest,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakebotapi import (
    FakeBotAPI,
    FakeBotAPIError,
    format_text,
    free_port,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
)

TOKEN = "123:ABC"


# --------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    yield
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leftovers = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leftovers, f"tasks left running: {leftovers}"


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=TOKEN, webhook_retry_delays=(0.02, 0.02)) as server:
        yield server


def build_app(
    api: FakeBotAPI, *handlers: BaseHandler[Any, Any, Any], token: str = TOKEN
) -> Application[Any, Any, Any, Any, Any, Any]:
    app = (
        ApplicationBuilder()
        .token(token)
        .base_url(api.base_url)
        .base_file_url(api.base_file_url)
        .build()
    )
    for handler in handlers:
        app.add_handler(handler)
    return app


@asynccontextmanager
async def polling_app(
    api: FakeBotAPI, *handlers: BaseHandler[Any, Any, Any], **polling: Any
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    app = build_app(api, *handlers)
    async with app:
        await app.start()
        await app.updater.start_polling(**{"timeout": 1, **polling})  # type: ignore[union-attr]
        try:
            yield app
        finally:
            await app.updater.stop()  # type: ignore[union-attr]
            await app.stop()


@asynccontextmanager
async def webhook_app(
    api: FakeBotAPI, *handlers: BaseHandler[Any, Any, Any], secret: str = "s3cr3t-Token_1"
) -> AsyncIterator[tuple[Application[Any, Any, Any, Any, Any, Any], str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    app = build_app(api, *handlers)
    async with app:
        await app.start()
        await app.updater.start_webhook(  # type: ignore[union-attr]
            listen="127.0.0.1", port=port, url_path="hook", webhook_url=url, secret_token=secret
        )
        try:
            yield app, url
        finally:
            await app.updater.stop()  # type: ignore[union-attr]
            await app.stop()


@asynccontextmanager
async def bot_only(api: FakeBotAPI) -> AsyncIterator[Any]:
    """An initialised Bot (no polling) for direct method calls."""
    app = build_app(api)
    async with app:
        yield app.bot


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(t, callback_data=d)] for t, d in pairs])


async def start_handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None and update.effective_user is not None
    await update.effective_message.reply_html(
        f"Hello, <b>{update.effective_user.first_name}</b>! Pain today?",
        reply_markup=keyboard(("Yes", "pain:yes"), ("No", "pain:no")),
    )


async def tap_handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer(f"got {query.data}")
    await query.edit_message_text(f"You chose: {query.data}")


# --------------------------------------------------------------------------------------------
# markup parsing (no HTTP)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "text", "entities"),
    [
        (
            "<b>bold</b> &amp; <i>it</i>",
            "bold & it",
            [
                {"type": "bold", "offset": 0, "length": 4},
                {"type": "italic", "offset": 7, "length": 2},
            ],
        ),
        ("🏟 <b>x&lt;y</b>", "🏟 x<y", [{"type": "bold", "offset": 3, "length": 3}]),
        (
            '<pre><code class="language-python">x = 1</code></pre>',
            "x = 1",
            [{"type": "pre", "offset": 0, "length": 5, "language": "python"}],
        ),
        (
            '<a href="https://example.com/?a=1&amp;b=2">site</a>',
            "site",
            [
                {
                    "type": "text_link",
                    "offset": 0,
                    "length": 4,
                    "url": "https://example.com/?a=1&b=2",
                }
            ],
        ),
        (
            '<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>',
            "st",
            [
                {"type": "spoiler", "offset": 0, "length": 1},
                {"type": "spoiler", "offset": 1, "length": 1},
            ],
        ),
        (
            "<blockquote expandable>q</blockquote><s>x</s><u>y</u>",
            "qxy",
            [
                {"type": "expandable_blockquote", "offset": 0, "length": 1},
                {"type": "strikethrough", "offset": 1, "length": 1},
                {"type": "underline", "offset": 2, "length": 1},
            ],
        ),
        ("&#128512; &#x41;&quot;", '😀 A"', []),
    ],
)
def test_parse_html_ok(markup: str, text: str, entities: list[dict[str, Any]]) -> None:
    assert parse_html(markup) == (text, entities)


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("<p>x</p>", 'Unsupported start tag "p" at byte offset 0'),
        ("🏟 <abc>", 'Unsupported start tag "abc" at byte offset 5'),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<br/>", 'Unsupported start tag "br/" at byte offset 0'),
        ("fish & chips", 'Character "&" at byte offset 5'),
        ("1 > 0", 'Character ">" at byte offset 2'),
    ],
)
def test_parse_html_errors(markup: str, error: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_html(markup)
    assert str(info.value).startswith(error)


def test_parse_html_lenient_mode_matches_real_server() -> None:
    assert parse_html("fish & chips &ge; 1 > 0", strict=False) == ("fish & chips &ge; 1 > 0", [])


@pytest.mark.parametrize(
    ("markup", "text", "entities"),
    [
        (
            "*b* _i_ __u__ ~s~ ||p|| `c`",
            "b i u s p c",
            [
                {"type": "bold", "offset": 0, "length": 1},
                {"type": "italic", "offset": 2, "length": 1},
                {"type": "underline", "offset": 4, "length": 1},
                {"type": "strikethrough", "offset": 6, "length": 1},
                {"type": "spoiler", "offset": 8, "length": 1},
                {"type": "code", "offset": 10, "length": 1},
            ],
        ),
        ("Total: 5\\. Done\\!", "Total: 5. Done!", []),
        (
            "[link](https://e.com/a\\)b)",
            "link",
            [{"type": "text_link", "offset": 0, "length": 4, "url": "https://e.com/a)b"}],
        ),
        (
            "```python\nprint(1)\n```",
            "print(1)\n",
            [{"type": "pre", "offset": 0, "length": 9, "language": "python"}],
        ),
        (">quote\nnext", "quote\nnext", [{"type": "blockquote", "offset": 0, "length": 6}]),
        (
            "_a __b___",
            "a b",
            [
                {"type": "italic", "offset": 0, "length": 3},
                {"type": "underline", "offset": 2, "length": 1},
            ],
        ),
    ],
)
def test_parse_markdown_v2_ok(markup: str, text: str, entities: list[dict[str, Any]]) -> None:
    assert parse_markdown_v2(markup) == (text, entities)


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("Total: 5.", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("*bold", "Can't find end of Bold entity at byte offset 0"),
        ("🏟 🏟_abacaba", "Can't find end of Italic entity at byte offset 9"),
        ("[x](https://e.com", "Can't find end of a URL at byte offset 4"),
        ("a > b", "Character '>' is reserved and must be escaped with the preceding '\\'"),
    ],
)
def test_parse_markdown_v2_errors(markup: str, error: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        parse_markdown_v2(markup)
    assert str(info.value) == error


def test_parse_legacy_markdown() -> None:
    assert parse_markdown("*b* _i_ `c` [l](https://e.com)") == (
        "b i c l",
        [
            {"type": "bold", "offset": 0, "length": 1},
            {"type": "italic", "offset": 2, "length": 1},
            {"type": "code", "offset": 4, "length": 1},
            {"type": "text_link", "offset": 6, "length": 1, "url": "https://e.com"},
        ],
    )
    with pytest.raises(ValueError, match="Can't find end of the entity starting at byte offset 2"):
        parse_markdown("a *b")


def test_format_text_trims_and_detects_entities() -> None:
    text, entities = format_text("  <b>hi</b> /start @someone https://e.com/x #tag  ", "HTML")
    assert text == "hi /start @someone https://e.com/x #tag"
    assert [(e["type"], text[e["offset"] : e["offset"] + e["length"]]) for e in entities] == [
        ("bold", "hi"),
        ("bot_command", "/start"),
        ("mention", "@someone"),
        ("url", "https://e.com/x"),
        ("hashtag", "#tag"),
    ]


# --------------------------------------------------------------------------------------------
# polling with a real Application
# --------------------------------------------------------------------------------------------


async def test_start_gets_a_reply_over_polling(api: FakeBotAPI) -> None:
    ann = api.user(1001, first_name="Ann")
    async with polling_app(api, CommandHandler("start", start_handler)):
        update = await ann.send_command("/start")
        reply = await ann.wait_reply()

    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert reply.text == "Hello, Ann! Pain today?"
    assert reply.raw_text == "Hello, <b>Ann</b>! Pain today?"
    assert reply.entities == [{"type": "bold", "offset": 7, "length": 3}]
    assert reply.button_texts == ["Yes", "No"]
    assert [m.content for m in ann.chat.messages] == ["/start", "Hello, Ann! Pain today?"]
    # PTB's wire format: form-encoded, str values raw, everything else JSON-encoded
    call = api.last_call("sendMessage")
    assert call.content_type == "application/x-www-form-urlencoded"
    assert call.raw_params["chat_id"] == "1001"
    assert call.raw_params["parse_mode"] == "HTML"
    assert call.raw_params["reply_markup"].startswith('{"inline_keyboard": [[{')
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "pain:yes"
    assert [c.method for c in api.requests[:3]] == ["getMe", "deleteWebhook", "getUpdates"]
    assert not api.error_calls


async def test_button_tap_round_trip(api: FakeBotAPI) -> None:
    ann = api.user(1001)
    async with polling_app(
        api, CommandHandler("start", start_handler), CallbackQueryHandler(tap_handler)
    ) as app:
        await ann.send_command("/start")
        question = await ann.wait_reply()
        with pytest.raises(FakeBotAPIError, match="no inline button 'Maybe'"):
            await ann.tap(question, "Maybe")
        tap = await ann.tap(question, "Yes")
        await api.wait_for_call("editMessageText")
        await api.wait_idle()

        assert api.callback_answers[0].text == "got pain:yes"
        assert api.callback_answers[0].query_id == tap["callback_query"]["id"]
        assert question.text == "You chose: pain:yes"
        assert question.reply_markup is None  # editMessageText without markup drops the keyboard
        assert question.versions[0]["text"] == "Hello, Ann! Pain today?"
        with pytest.raises(FakeBotAPIError, match="no inline button"):
            await ann.tap(question, "No")
        # a query can be answered once
        with pytest.raises(BadRequest, match="Query is too old"):
            await app.bot.answer_callback_query(tap["callback_query"]["id"])


async def test_telegram_limits_raise_bad_request(api: FakeBotAPI) -> None:
    ann = api.user(1001)
    async with bot_only(api) as bot:
        with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
            await bot.send_message(1001, "x", reply_markup=keyboard(("b", "d" * 65)))
        await bot.send_message(1001, "x", reply_markup=keyboard(("b", "é" * 32)))  # 64 bytes
        with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
            await bot.send_message(1001, "x", reply_markup=keyboard(("b", "é" * 33)))

        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(1001, "a" * 4097)
        await bot.send_message(1001, "<b>" + "a" * 4096 + "</b>", parse_mode="HTML")
        await bot.send_message(1001, "🏟" * 4096)
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(1001, "<b> </b>", parse_mode="HTML")
        with pytest.raises(BadRequest, match='Can\'t parse entities: unsupported start tag "p"'):
            await bot.send_message(1001, "<p>x</p>", parse_mode="HTML")
        with pytest.raises(BadRequest, match="Can't parse entities: character '.' is reserved"):
            await bot.send_message(1001, "v1.2", parse_mode="MarkdownV2")
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(999, "who?")
        with pytest.raises(BadRequest, match="Message to be replied not found"):
            await bot.send_message(1001, "re", reply_to_message_id=424242)
        with pytest.raises(BadRequest, match="(?i)text buttons are unallowed"):
            await bot.send_message(
                1001, "x", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("plain")]])
            )

        question = await bot.send_message(1001, "q?", reply_markup=keyboard(("Yes", "y")))
        tap = await ann.tap(question, "y")  # a PTB Message works too; match by callback_data
        query_id = tap["callback_query"]["id"]
        with pytest.raises(BadRequest, match="(?i)message_too_long"):
            await bot.answer_callback_query(query_id, "x" * 201)
        assert await bot.answer_callback_query(query_id, "x" * 200)
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query("no-such-query")
    assert len(ann.chat.bot_messages) == 4
    assert ann.chat.bot_messages[2].text == "🏟" * 4096


async def test_edit_and_delete_errors(api: FakeBotAPI) -> None:
    api.user(1001)
    async with bot_only(api) as bot:
        msg = await bot.send_message(
            1001, "<i>v1</i>", parse_mode="HTML", reply_markup=keyboard(("A", "a"))
        )
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text(
                "<i>v1</i>",
                1001,
                msg.message_id,
                parse_mode="HTML",
                reply_markup=keyboard(("A", "a")),
            )
        # same text, but no markup -> keyboard removed, counts as a modification
        edited = await bot.edit_message_text("<i>v1</i>", 1001, msg.message_id, parse_mode="HTML")
        assert edited.reply_markup is None and edited.edit_date is not None
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_reply_markup(1001, msg.message_id)
        await bot.edit_message_reply_markup(1001, msg.message_id, reply_markup=keyboard(("B", "b")))
        assert api.chat(1001).message(msg.message_id).button_texts == ["B"]
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", 1001, 9999)
        assert await bot.delete_message(1001, msg.message_id)
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(1001, msg.message_id)
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("x", 1001, msg.message_id)
    assert api.chat(1001).messages == []
    assert len(api.chat(1001).history) == 1


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_fault_injection(api: FakeBotAPI) -> None:
    api.user(1001)
    async with bot_only(api) as bot:
        api.fail_next("sendMessage", error_code=429, retry_after=3)
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(1001, "hi")
        assert info.value.retry_after in (3, __import__("datetime").timedelta(seconds=3))
        assert api.last_call("sendMessage").response == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        }
        await bot.send_message(1001, "hi")  # only the next call failed

        api.fail_next("sendMessage", error_code=500, times=2)
        for _ in range(2):
            with pytest.raises(NetworkError, match="Internal Server Error"):
                await bot.send_message(1001, "hi")
        await bot.send_message(1001, "hi")

        api.delay("sendChatAction", 0.3)
        started = time.monotonic()
        await bot.send_chat_action(1001, "typing")
        assert time.monotonic() - started >= 0.3
        with pytest.raises(TimedOut):  # PTB gives up, the server still completes the call
            await bot.send_chat_action(1001, "typing", read_timeout=0.05)
        api.delay("sendChatAction", 0)
        await api.wait_for(lambda: len(api.chat(1001).actions) == 2)
        with pytest.raises(BadRequest, match="Wrong parameter action"):
            await bot.send_chat_action(1001, "dancing")

        api.block_user(1001)
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(1001, "hi")
        api.unblock_user(1001)
        await bot.send_message(1001, "hi again")
        blocked = await api.user(1001).block_bot()
        member_update = Update.de_json(blocked, bot).my_chat_member
        assert member_update is not None and member_update.new_chat_member.status == "kicked"
        with pytest.raises(Forbidden):
            await bot.send_chat_action(1001, "typing")
        await api.user(1001).unblock_bot()
    assert [a.action for a in api.chat(1001).actions] == ["typing", "typing"]
    assert [m.text for m in api.chat(1001).messages] == ["hi", "hi", "hi again"]


async def test_unknown_method_and_wrong_token(api: FakeBotAPI) -> None:
    async with bot_only(api) as bot:
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("frobnicate", api_kwargs={"x": 1})
    assert api.unknown_calls[0].method == "frobnicate"
    assert api.unknown_calls[0].response == {
        "ok": False,
        "error_code": 404,
        "description": "Not Found",
    }
    app = build_app(api, token="123:WRONG")
    try:
        with pytest.raises(InvalidToken):
            await app.initialize()
    finally:
        # PTB's Application.shutdown() is a no-op after a failed initialize() and would leak
        # the bot's httpx clients, so shut the bot down directly.
        await app.bot.shutdown()
    assert api.requests[-1].status == 401


async def test_commands_per_scope_and_language(api: FakeBotAPI) -> None:
    async with bot_only(api) as bot:
        await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("help", "Help")])
        await bot.set_my_commands([BotCommand("start", "Начать")], language_code="ru")
        await bot.set_my_commands([BotCommand("admin", "Staff")], scope=BotCommandScopeChat(-100))
        assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
        russian = await bot.get_my_commands(language_code="ru")
        assert [c.description for c in russian] == ["Начать"]
        with pytest.raises(BadRequest, match="(?i)bot_command_invalid"):
            await bot.set_my_commands([BotCommand("Start", "Capital letters are invalid")])
        await bot.delete_my_commands(language_code="ru")
        assert await bot.get_my_commands(language_code="ru") == ()
    assert api.get_commands() == [
        {"command": "start", "description": "Start"},
        {"command": "help", "description": "Help"},
    ]
    assert api.commands[("chat:-100", "")] == [{"command": "admin", "description": "Staff"}]


async def test_media_files_groups_channels_and_edits(api: FakeBotAPI) -> None:
    seen: list[str] = []

    async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        file = await update.message.photo[-1].get_file()
        data = await file.download_as_bytearray()
        await update.message.reply_document(bytes(data), filename="echo.bin", caption="echo")

    async def on_contact_or_edit(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        msg = update.effective_message
        assert msg is not None
        kind = "edited" if update.edited_message else ("contact" if msg.contact else "other")
        seen.append(kind)
        await msg.reply_text(kind, reply_markup=ReplyKeyboardRemove())

    async def ask_phone(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(
            "Share your phone",
            reply_markup=ReplyKeyboardMarkup(
                [[KeyboardButton("Send phone", request_contact=True)]], one_time_keyboard=True
            ),
        )

    async def on_channel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.channel_post is not None
        seen.append(f"channel:{update.channel_post.text}")

    ann = api.user(1001, first_name="Ann")
    handlers = [
        CommandHandler("phone", ask_phone),
        CommandHandler("start", start_handler),
        MessageHandler(filters.PHOTO, on_photo),
        MessageHandler(filters.CONTACT | filters.UpdateType.EDITED_MESSAGE, on_contact_or_edit),
        MessageHandler(filters.UpdateType.CHANNEL_POST, on_channel),
    ]
    async with polling_app(api, *handlers):
        await ann.send_photo(data=b"\x89PNG fake image")
        echo = await ann.wait_reply()
        assert echo.kind == "document" and echo.caption == "echo"
        assert echo.media["document"]["file_name"] == "echo.bin"
        assert api.last_call("sendDocument").files["document"].data == b"\x89PNG fake image"

        await ann.send_command("/phone")
        assert (await ann.wait_reply()).text == "Share your phone"
        assert ann.chat.reply_keyboard is not None
        await ann.press("Send phone")
        assert (await ann.wait_reply()).text == "contact"
        assert ann.chat.reply_keyboard is None

        first = ann.chat.user_messages[0]
        sent = await ann.send_text("my back hurts")  # no handler for plain text
        await ann.edit_text(sent["message"]["message_id"], "my neck hurts")
        assert (await ann.wait_reply()).text == "edited"
        assert first.kind == "photo"

        await api.group_message(-100200, ann, "/start@test_bot")
        group_reply = (await api.wait_for_messages(-100200, 1))[0]
        assert group_reply.text == "Hello, Ann! Pain today?"
        assert group_reply.to_dict()["chat"] == {
            "id": -100200,
            "type": "group",
            "title": "Test group",
        }

        await api.channel_post(-100300, "news")
        await api.wait_for(lambda: "channel:news" in seen)
    assert seen == ["contact", "edited", "channel:news"]


async def test_duplicate_update_is_delivered_again_in_polling(api: FakeBotAPI) -> None:
    counted: list[int] = []

    async def count(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        counted.append(update.update_id)

    ann = api.user(1001)
    async with polling_app(api, MessageHandler(filters.ALL, count)):
        first = await ann.send_text("hello")
        await api.wait_for(lambda: len(counted) == 1)
        api.enqueue_raw(first)  # same update_id again
        await ann.send_text("next")
        await api.wait_for(lambda: len(counted) == 3)
        await api.wait_idle()
    assert counted == [first["update_id"], first["update_id"], first["update_id"] + 1]
    assert api.pending_updates == []


# --------------------------------------------------------------------------------------------
# raw long polling semantics (aiohttp client, as Telegram documents them)
# --------------------------------------------------------------------------------------------


async def _get_updates(
    session: aiohttp.ClientSession, api: FakeBotAPI, **params: Any
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{api.base_url}{api.token}/getUpdates", json=params) as resp:
        return resp.status, await resp.json()


async def test_long_polling_offset_limit_and_allowed_updates(api: FakeBotAPI) -> None:
    ann = api.user(1001)
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        status, body = await _get_updates(session, api, timeout=0.3)
        assert (status, body["result"]) == (200, [])
        assert time.monotonic() - started >= 0.3

        async def later() -> None:
            await asyncio.sleep(0.1)
            await ann.send_text("wake up")

        started = time.monotonic()
        status, body = (await asyncio.gather(_get_updates(session, api, timeout=5), later()))[0]
        assert time.monotonic() - started < 1.0
        first_id = body["result"][0]["update_id"]

        await ann.send_text("second")
        _, body = await _get_updates(session, api, limit=1)
        assert [u["update_id"] for u in body["result"]] == [first_id]  # not confirmed yet
        _, body = await _get_updates(session, api, offset=first_id + 1)
        assert [u["message"]["text"] for u in body["result"]] == ["second"]

        # allowed_updates persists and filters
        await ann.send_text("filtered out")
        _, body = await _get_updates(
            session, api, offset=first_id + 2, allowed_updates=["callback_query"]
        )
        assert body["result"] == []
        assert api.dropped_updates[-1]["message"]["text"] == "filtered out"


async def test_second_get_updates_terminates_the_first(api: FakeBotAPI) -> None:
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(_get_updates(session, api, timeout=5))
        await api.wait_for(lambda: len(api.calls("getUpdates")) == 1)
        status, body = await _get_updates(session, api, timeout=0)
        assert status == 200
        status, body = await first
    assert status == 409
    assert body["description"].startswith("Conflict: terminated by other getUpdates request")


# --------------------------------------------------------------------------------------------
# webhooks
# --------------------------------------------------------------------------------------------


async def test_webhook_mode_with_ptb_and_secret_token(api: FakeBotAPI) -> None:
    ann = api.user(1001)
    async with webhook_app(api, CommandHandler("start", start_handler)) as (app, url):
        assert api.webhook_url == url
        await ann.send_command("/start")
        reply = await ann.wait_reply()
        assert reply.text == "Hello, Ann! Pain today?"

        delivery = api.webhook_deliveries[0]
        assert delivery.status == 200
        assert delivery.headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cr3t-Token_1"
        assert delivery.headers["Content-Type"] == "application/json"
        with pytest.raises(Conflict, match="webhook is active"):
            await app.bot.get_updates()
        info = await app.bot.get_webhook_info()
        assert info.url == url and info.pending_update_count == 0

        body = json.dumps(
            {
                "update_id": 999,
                "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}},
            }
        ).encode()
        async with aiohttp.ClientSession() as session:
            for secret, expected in (("wrong", 403), (None, 403), ("s3cr3t-Token_1", 200)):
                headers = {"Content-Type": "application/json"}
                if secret:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = secret
                async with session.post(url, data=body, headers=headers) as resp:
                    assert resp.status == expected, secret
    assert api.last_call("setWebhook").params["secret_token"] == "s3cr3t-Token_1"


async def test_webhook_retries_then_gives_up(api: FakeBotAPI) -> None:
    statuses = [500, 502, 200]
    seen: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(await request.json())
        status = statuses.pop(0) if statuses else 200
        if status == 200 and len(seen) == 3:
            return web.json_response(
                {"method": "sendMessage", "chat_id": 1001, "text": "via reply"}
            )
        return web.Response(status=status)

    server = web.Application()
    server.router.add_post("/hook", hook)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        ann = api.user(1001)
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{api.base_url}{api.token}/setWebhook",
                data={"url": f"http://127.0.0.1:{port}/hook"},
            ) as resp:
                assert (await resp.json())["description"] == "Webhook was set"
            update = await ann.send_text("hello")
            await api.wait_for(lambda: api.chat(1001).bot_messages)
            assert [d.status for d in api.webhook_deliveries] == [500, 502, 200]
            assert all(s == update for s in seen)
            assert api.chat(1001).last_bot_message.text == "via reply"  # type: ignore[union-attr]
            assert api.calls("sendMessage")[0].via_webhook_reply
            async with session.post(f"{api.base_url}{api.token}/getWebhookInfo") as resp:
                info = (await resp.json())["result"]
            assert info["last_error_message"] == "Wrong response from the webhook: 502 Bad Gateway"
    finally:
        await runner.cleanup()

    # the receiver is gone now: bounded retries, then the update is dropped
    lost = await ann.send_text("nobody listens")
    await api.wait_for(lambda: lost in api.dropped_updates)
    attempts = [d for d in api.webhook_deliveries if d.update_id == lost["update_id"]]
    assert len(attempts) == 3 and all(d.error for d in attempts)


async def test_wait_helpers_time_out_with_context(api: FakeBotAPI) -> None:
    api.user(1001)
    with pytest.raises(TimeoutError, match="1 bot message"):
        await api.wait_for_messages(1001, 1, timeout=0.1)
    never: Callable[[], bool] = lambda: False  # noqa: E731
    with pytest.raises(TimeoutError, match="timed out after 0.05s"):
        await api.wait_for(never, timeout=0.05)
