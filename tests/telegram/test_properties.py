"""Property: odd but well-formed updates never make a handler raise, and every private-chat
update gets an answer.

One bot (the real PTB Application, SQLite store, fake Bot API over HTTP) serves every example:
hypothesis drives a plain function that runs each example on one long-lived event loop (an
async fixture per example would start a bot per example and take minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update
from telegram.ext import ContextTypes

from bot.channels.telegram.app import TelegramBot
from tests.fakebotapi import ApiCall, ChatMessage, FakeBotAPI, FakeUser, _CallbackQueryState

from .conftest import TOKEN, running_bot
from .test_transcripts import forged_tap

EXAMPLES = int(os.environ.get("TELEGRAM_PROPERTY_EXAMPLES", "60"))
ANSWERS = frozenset({"sendmessage", "editmessagetext"})


class ObservedBot(TelegramBot):
    """Our bot, noting which Bot API requests each update's handler made (a span of the fake's
    request log: updates of one chat run strictly in order, so a chat's requests inside the
    span belong to that update)."""

    api: FakeBotAPI
    spans: dict[int, tuple[int, int]]  # update id -> (first, end) index in api.requests
    turns: dict[int, tuple[int, int]]  # update id -> (start, end) in handling order
    clock: Iterator[int]

    async def on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        start, began = len(self.api.requests), next(self.clock)
        try:
            await super().on_update(update, context)
        finally:
            self.spans[update.update_id] = (start, len(self.api.requests))
            self.turns[update.update_id] = (began, next(self.clock))


class ErrorLog(logging.Handler):
    """Collects ERROR records from our code and from PTB."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("bot", "telegram")):
            self.records.append(record)


@contextlib.contextmanager
def error_log() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# -- what a patient (or Telegram) can send ----------------------------------------------------

emoji = st.sampled_from(["🙂", "👍🏽", "🇪🇸", "👨‍👩‍👧", "❤️", "🚑", "\u200d", "🤷‍♀️"])
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\n\t ", "no", "Yes", "  nope  ", "1", "42", "-3", "999999999999",
                     "None of these", "done", "/", "<b>", "&amp;", "<script>x</script>", "1e9"]),
    st.lists(emoji, min_size=1, max_size=6).map("".join),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["a", "é", "😀", "<", "&", " ", "\n"]),
              st.sampled_from([4096, 4097, 10_000])),
)
commands = st.sampled_from(["/start", "/back", "/restart", "/help", "/language", "/privacy",
                            "/forget", "/reload", "/nonsense", "/start@test_bot", "/START",
                            "/start extra words", "/help@other_bot", "/x"])
forged_data = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "|", "a", "a|", "a||", "a|ddadd9e9|red_flags|0", "a|00000000|age|0",
                     "t|ddadd9e9|red_flags|999", "n|ddadd9e9|nope|0", "b|x|y|z", "r|||",
                     "x|restart", "x|continue", "x|", "l|es", "l|en", "l|zz", "f|yes", "f|no",
                     "f|", "h|1", "🙂|🙂", "a|ddadd9e9|red_flags|-1"]),
)
Op = tuple[Any, ...]
ops = st.one_of(
    st.tuples(st.just("text"), texts),
    st.tuples(st.just("command"), commands),
    st.tuples(st.just("tap"), st.integers(0, 9)),
    st.tuples(st.just("tap_old"), st.integers(0, 30), st.integers(0, 9)),
    st.tuples(st.just("forged"), forged_data, st.booleans()),
    st.tuples(st.just("edit"), texts),
    st.tuples(st.just("reply_old"), st.integers(0, 30), texts),
    st.tuples(st.just("media"), st.sampled_from(["sticker", "photo", "location", "document",
                                                  "contact", "voice", "photo_caption"])),
    st.tuples(st.just("old_callback"), st.integers(0, 30)),
    st.tuples(st.just("inline_callback"), forged_data),
    st.tuples(st.just("forwarded"), texts),
    st.tuples(st.just("member"), st.sampled_from(["member", "kicked"])),
    st.tuples(st.just("channel"), texts),
    st.tuples(st.just("edited_channel"), texts),
    st.tuples(st.just("group"), texts),
)
steps = st.lists(st.tuples(st.integers(0, 2), ops, st.booleans()), min_size=1, max_size=10)


@dataclass
class Tally:
    examples: int = 0
    private: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


async def play(api: FakeBotAPI, bot: ObservedBot, users: list[FakeUser],
               seq: list[tuple[int, Op, bool]], tally: Tally) -> None:
    """Send one example's updates (waiting for quiet where the example says so), then check
    that every private update was answered."""
    private: list[tuple[int, FakeUser, str, str | None]] = []  # (update id, user, kind, query)
    for who, op, settle in seq:
        user = users[who]
        kind = op[0]
        update: dict[str, Any] | None = None
        query: str | None = None
        bot_msgs = user.chat.bot_messages
        with_buttons = [m for m in bot_msgs if m.buttons]
        if kind == "text":
            update = await user.send_text(op[1])
        elif kind == "command":
            update = await user.send_command(op[1])
        elif kind == "tap" and with_buttons:
            msg = with_buttons[-1]
            label = msg.button_texts[op[1] % len(msg.button_texts)]
            update = await user.tap(msg, label)
        elif kind == "tap_old" and with_buttons:
            msg = with_buttons[op[1] % len(with_buttons)]
            label = msg.button_texts[op[2] % len(msg.button_texts)]
            update = await user.tap(msg, label)
        elif kind in ("forged", "old_callback") and bot_msgs:
            uid = api._next_update_id  # forged updates take the next id, as Telegram would
            if kind == "forged":
                msg = bot_msgs[-1] if op[2] else bot_msgs[0]
                forged_tap(api, user, msg, op[1], uid)
            else:  # a button on a message too old for Telegram to show: an inaccessible one
                msg = bot_msgs[op[1] % len(bot_msgs)]
                data = (msg.callback_data or ["a|ddadd9e9|red_flags|0"])[0]
                forged_tap(api, user, msg, data, uid)
                api.updates[-1]["callback_query"]["message"] = {
                    "chat": user.chat.to_dict(), "message_id": msg.message_id, "date": 0}
            update = {"update_id": uid}
            query = f"forged-{uid}"
        elif kind == "edit":
            own = [m for m in user.chat.user_messages if m.text is not None]
            update = await (user.edit_text(own[-1], op[1] or ".") if own
                            else user.send_text(op[1]))
        elif kind == "reply_old":
            everything: list[ChatMessage] = user.chat.messages
            target = everything[op[1] % len(everything)] if everything else None
            update = await user.send_text(op[2], reply_to=target)
        elif kind == "media":
            m = op[1]
            update = await (user.send_sticker() if m == "sticker" else
                            user.send_photo() if m == "photo" else
                            user.send_photo(caption="my back 🙂") if m == "photo_caption" else
                            user.send_location() if m == "location" else
                            user.send_document() if m == "document" else
                            user.send_voice() if m == "voice" else
                            user.send_contact("+15555550100"))
        elif kind == "inline_callback":  # a button under an inline-mode message: no chat
            uid = api._next_update_id
            query = f"inline-{uid}"
            api._callback_queries[query] = _CallbackQueryState(
                query_id=query, user_id=user.id, chat_id=None, message_id=None, data=op[1],
                created=time.monotonic())
            api.enqueue_raw({"update_id": uid, "callback_query": {
                "id": query, "from": user.to_dict(), "chat_instance": "7",
                "inline_message_id": "AAAAAQ", "data": op[1]}})
            update = {"update_id": uid}
        elif kind == "forwarded":
            update = api.enqueue_raw({"message": {
                "message_id": user.chat._add(from_bot=False, sender=user.to_dict(),
                                             text=op[1] or ".").message_id,
                "date": int(time.time()), "chat": user.chat.to_dict(), "from": user.to_dict(),
                "text": op[1] or ".", "forward_origin": {
                    "type": "hidden_user", "date": 1_700_000_000, "sender_user_name": "Zed"}}})
        elif kind == "member":  # the patient blocks or unblocks the bot: nothing to answer
            await api._member_update(user, "kicked" if op[1] == "member" else "member", op[1])
        elif kind == "channel":
            await api.channel_post(-1_000_000_000_000 - users[0].id, op[1] or ".")
        elif kind == "edited_channel":
            channel = -1_000_000_000_000 - users[0].id
            post = await api.channel_post(channel, ".")
            api.enqueue_raw({"edited_channel_post": {
                **post["channel_post"], "text": op[1] or "..", "edit_date": int(time.time())}})
        elif kind == "group":
            # a group per example: the rate limiter allows a group 20 messages a minute
            await api.group_message(-users[0].id, user, op[1] or ".")
        else:  # a tap with nothing to tap yet: the patient starts instead
            update = await user.send_command("/start")
            kind = "command"
        if update is not None:
            if kind in ("tap", "tap_old"):
                query = update["callback_query"]["id"]
            private.append((update["update_id"], user, kind, query))
        if settle:
            await api.wait_idle(quiet=0.02, timeout=30)
    await api.wait_idle(quiet=0.05, timeout=30)

    requests = api.requests
    for user in users:  # one chat's updates were handled one at a time, in order
        of_chat = [uid for uid, u, kind, _ in private
                   if u is user and kind != "inline_callback"]
        turns = sorted(bot.turns[uid] for uid in of_chat)
        assert [bot.turns[uid] for uid in of_chat] == turns, "handled out of order"
        assert all(a[1] < b[0] for a, b in itertools.pairwise(turns)), "overlapping updates"
    for uid, user, kind, query in private:
        assert uid in bot.spans, f"update {uid} ({kind}) was never handled"
        start, end = bot.spans[uid]
        mine = requests[start:end]
        if query is not None:
            ok = any(_answers_query(c, query) for c in mine)
        else:
            ok = any(_answers_chat(c, user.id) for c in mine)
        assert ok, (f"update {uid} ({kind}) of chat {user.id} got no answer; its requests: "
                    f"{[(c.method, c.status, c.error) for c in mine]}")
        tally.kinds[kind] = tally.kinds.get(kind, 0) + 1
    tally.private += len(private)
    tally.examples += 1


def _answers_chat(call: ApiCall, chat_id: int) -> bool:
    return (call.method.lower() in ANSWERS and call.params.get("chat_id") == chat_id
            and call.ok)


def _answers_query(call: ApiCall, query_id: str) -> bool:
    return (call.method.lower() == "answercallbackquery"
            and call.params.get("callback_query_id") == query_id and call.ok)


def test_odd_updates_never_raise_and_always_get_an_answer(tmp_path: Path) -> None:
    tally = Tally()
    counter = itertools.count(1)
    user_ids = itertools.count(50_000, 10)
    started = time.perf_counter()
    with asyncio.Runner() as runner, error_log() as errors:
        stack = contextlib.AsyncExitStack()
        api = runner.run(stack.enter_async_context(FakeBotAPI(token=TOKEN)))
        run = runner.run(stack.enter_async_context(
            running_bot(api, tmp_path / "s.db", bot_class=ObservedBot)))
        bot = run.bot
        assert isinstance(bot, ObservedBot)
        bot.api, bot.spans, bot.turns, bot.clock = api, {}, {}, itertools.count()
        try:
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                      suppress_health_check=[HealthCheck.too_slow,
                                             HealthCheck.data_too_large])
            @given(seq=steps, lang=st.sampled_from(["en", "es", None, "fr"]))
            def example(seq: list[tuple[int, Op, bool]], lang: str | None) -> None:
                base = next(user_ids)  # fresh patients for every example
                users = [api.user(base + i, f"P{next(counter)}", language_code=lang)
                         for i in range(3)]
                runner.run(play(api, bot, users, seq, tally))
                assert not errors.records, [errors.format(r) for r in errors.records]
                assert bot.metrics.errors.get("handler", 0) == 0

            example()
        finally:
            runner.run(stack.aclose())
    assert tally.examples >= min(EXAMPLES, 20)
    assert tally.private > tally.examples  # the examples did send private updates
    logging.getLogger(__name__).info("%d examples, %d private updates %s in %.1fs",
                                     tally.examples, tally.private, tally.kinds,
                                     time.perf_counter() - started)
