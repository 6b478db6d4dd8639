"""Telegram's flood limits, applied to what they are about: messages sent.

Telegram asks bots not to send more than about 30 messages a second overall, and 20 a minute
to one group (Bots FAQ, "My bot is hitting limits"). python-telegram-bot's `AIORateLimiter`
counts every call that names a chat against the 30 a second, so editing the question a
patient just answered (to show their answer and take its buttons away) costs as much as a
new message: a button tap, which edits one message and sends the next question, spends two,
and 30 taps a second queue behind a budget of 30 (p99 latency past a second).

`MessageRateLimiter` spends the budget only on calls that put a new message in a chat
(send*, copy*, forward*; not sendChatAction). Edits, deletions and callback answers go
straight out. Every call, limited or not, still waits and retries when Telegram answers 429
(Retry-After), so if Telegram does count edits, the bot slows down as asked instead of
failing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from telegram.ext import AIORateLimiter

MESSAGE_PREFIXES = ("send", "copy", "forward")
NOT_MESSAGES = frozenset({"sendChatAction"})


def sends_a_message(endpoint: str) -> bool:
    """Does this Bot API method put a new message in a chat?"""
    return endpoint.startswith(MESSAGE_PREFIXES) and endpoint not in NOT_MESSAGES


class MessageRateLimiter(AIORateLimiter):
    """AIORateLimiter whose overall and per-group budgets are spent by new messages only."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        if not sends_a_message(endpoint) and "chat_id" in data:
            # the limiter reads the chat from `data` only to pick its budgets; the request
            # itself is in `args`, untouched
            data = {k: v for k, v in data.items() if k != "chat_id"}
        return await super().process_request(callback, args, kwargs, endpoint, data,
                                             rate_limit_args)
