"""The flood limiter spends Telegram's budget on new messages only, and retries every 429."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from telegram.error import RetryAfter

from bot.channels.telegram.limits import MessageRateLimiter, sends_a_message


def test_which_calls_are_messages() -> None:
    for endpoint in ("sendMessage", "sendPhoto", "copyMessage", "forwardMessage"):
        assert sends_a_message(endpoint)
    for endpoint in ("editMessageText", "editMessageReplyMarkup", "deleteMessage",
                     "answerCallbackQuery", "sendChatAction", "setMyCommands"):
        assert not sends_a_message(endpoint)


async def test_edits_pass_while_messages_wait_for_the_budget() -> None:
    limiter = MessageRateLimiter(overall_max_rate=2, overall_time_period=1, max_retries=0)
    await limiter.initialize()
    done: list[str] = []

    async def call(endpoint: str) -> bool:
        done.append(endpoint)
        return True

    def request(endpoint: str) -> Any:
        data = {"chat_id": 42, "text": "x"}
        return limiter.process_request(call, (endpoint,), {}, endpoint, data, None)

    tasks = [asyncio.create_task(request("sendMessage")) for _ in range(3)]
    tasks += [asyncio.create_task(request("editMessageText")) for _ in range(5)]
    await asyncio.sleep(0.1)
    assert done.count("editMessageText") == 5  # none waited
    assert done.count("sendMessage") == 2  # the third waits for the budget (~0.5 s)
    await asyncio.gather(*tasks)
    assert done.count("sendMessage") == 3
    await limiter.shutdown()


async def test_an_edit_answered_429_waits_and_is_retried() -> None:
    limiter = MessageRateLimiter(max_retries=2)
    await limiter.initialize()
    calls = 0

    async def flaky(**_: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryAfter(dt.timedelta(0))
        return True

    result = await limiter.process_request(flaky, (), {}, "editMessageText",
                                           {"chat_id": 42, "message_id": 7}, None)
    assert result is True and calls == 2
    await limiter.shutdown()
