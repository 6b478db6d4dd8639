"""A simulated patient who follows a script of answers, one at a time, as a person would:
the next answer only after the bot's reply to the previous one is on screen, tapping the
buttons of the latest question message.

Mischief (shared by all patients): every Nth update is delivered to every instance at once
(a duplicate delivery), every Mth tap of an answer / None / Done button is a double tap (two
updates with different ids, to two instances at once).

When an update was acknowledged only by an instance that was then SIGKILLed and no reply
came, the patient does what a person does: asks for the screen again (``/help``) and, if
the answer did not take, gives it again. Each such nudge is counted: with
acknowledge-after-processing there would be none.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from bot.channels.telegram.texts import t
from bot.flow.model import Flow
from tests.fakebotapi import ChatMessage, FakeBotAPI, FakeUser

from .harness import (
    Action,
    Expected,
    Screen,
    Stats,
    Telegram,
    screen_of_message,
    tap_data,
    tap_update,
    text_update,
)

POLL = 0.15
LOST_GRACE = 3.0  # after the kill, how long a patient waits before nudging
HELP_MARK = t("help", "en").split("\n")[0]  # the answer to /help starts with this


@dataclass
class Mischief:
    """Duplicates and double taps, shared by every patient of a run."""

    duplicate_every: int = 7
    double_tap_every: int = 5
    double_tap_actions: tuple[str, ...] = ("a", "n", "d")
    stats: Stats = field(default_factory=Stats)
    _updates: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _taps: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def duplicate(self) -> bool:
        return self.duplicate_every > 0 and next(self._updates) % self.duplicate_every == 0

    def double_tap(self, action: str) -> bool:
        return (self.double_tap_every > 0 and action in self.double_tap_actions
                and next(self._taps) % self.double_tap_every == 0)


@dataclass
class Sent:
    update_ids: list[int]
    queries: dict[str, int]  # callback query id -> update id
    tapped: int | None = None  # message id of the tapped message
    toggle: bool = False  # a checklist tick (answered by editing the tapped message)


class Patient:
    """One patient and their script; ``run()`` plays it; ``problems`` says what went wrong."""

    def __init__(self, api: FakeBotAPI, telegram: Telegram, flow: Flow, user: FakeUser,
                 script: list[Action], expected: Expected, mischief: Mischief,
                 name: str, reply_timeout: float = 300.0) -> None:
        self.api = api
        self.tg = telegram
        self.flow = flow
        self.user = user
        self.script = script
        self.expected = expected
        self.mischief = mischief
        self.name = name
        self.reply_timeout = reply_timeout
        self.problems: list[str] = []
        self.steps_done = 0
        self.nudges = 0
        self.log: list[Sent] = []  # what was sent, action by action (retries included)
        self.outdated: list[str] = []  # earlier screens shown again, after later ones

    @property
    def chat_id(self) -> int:
        return self.user.id

    def problem(self, text: str) -> None:
        self.problems.append(f"patient {self.chat_id} ({self.name}), step {self.steps_done + 1}"
                             f" {self.script[self.steps_done]!r}: {text}")

    # -- reading the chat --------------------------------------------------------------------
    def _last_id(self) -> int:
        return self.user.chat._next_message_id - 1

    def find(self, want: Screen, after: int = 0) -> ChatMessage | None:
        """The newest bot message after message id ``after`` showing ``want``."""
        chat = self.user.chat
        for mid in range(self._last_id(), after, -1):
            message = chat._messages.get(mid)
            if message is not None and screen_of_message(message, self.flow) == want:
                return message
        return None

    async def wait_find(self, want: Screen) -> ChatMessage | None:
        """The newest message showing ``want`` with its buttons; while the bot replaces
        the screen (buttons taken off one copy, a new copy on its way), wait for it."""
        deadline = time.monotonic() + self.reply_timeout
        while True:
            message = self.find(want)
            if message is not None or time.monotonic() > deadline:
                return message
            await asyncio.sleep(POLL)

    def newest_screen(self, after: int = 0) -> Screen | None:
        chat = self.user.chat
        for mid in range(self._last_id(), after, -1):
            screen = screen_of_message(chat._messages.get(mid), self.flow)
            if screen is not None:
                return screen
        return None

    def strange_screens(self, after: int, upto: int, allowed: set[str]) -> list[Screen]:
        """Screens sent in (``after``, ``upto``] whose step is not in ``allowed``."""
        chat = self.user.chat
        found = []
        for mid in range(after + 1, upto + 1):
            screen = screen_of_message(chat._messages.get(mid), self.flow)
            if screen is not None and screen.step not in allowed:
                found.append(screen)
        return found

    # -- sending -----------------------------------------------------------------------------
    async def _post(self, update: dict[str, object]) -> None:
        if self.mischief.duplicate():
            self.mischief.stats.duplicates += 1
            await self.tg.deliver_to_all(update)
        else:
            await self.tg.deliver(update)

    async def send(self, action: Action, before: Screen | None) -> Sent | None:
        kind = action[0]
        if kind in ("start", "back", "help", "text"):
            words = {"start": "/start", "back": "/back", "help": "/help"}.get(kind) or action[1]
            update = text_update(self.user, self.tg.new_update_id(), str(words))
            await self._post(update)
            return Sent([update["update_id"]], {})
        assert kind == "tap" and before is not None
        message = await self.wait_find(before)
        if message is None:
            self.problem(f"no message shows {before} to tap on")
            return None
        data = tap_data(self.flow, before, action[1], action[2])
        if data not in message.callback_data:
            self.problem(f"message {message.message_id} has no button {data!r} "
                         f"(it has {message.callback_data})")
            return None
        update, query = tap_update(self.api, self.user, self.tg.new_update_id(), message, data)
        sent = Sent([update["update_id"]], {query: update["update_id"]}, message.message_id,
                    toggle=action[1] == "t")
        if self.mischief.double_tap(action[1]):
            self.mischief.stats.double_taps += 1
            twin, query2 = tap_update(self.api, self.user, self.tg.new_update_id(), message,
                                      data)
            sent.update_ids.append(twin["update_id"])
            sent.queries[query2] = twin["update_id"]
            first = self.tg.next_instance()
            await asyncio.gather(self.tg.deliver(update, start=first),
                                 self.tg.deliver(twin, start=first + 1))
        else:
            await self._post(update)
        return sent

    # -- waiting -----------------------------------------------------------------------------
    def _lost_since(self, update_ids: list[int]) -> float | None:
        """When every instance that acknowledged these updates had been killed, else None."""
        latest = 0.0
        for uid in update_ids:
            acks = self.tg.acks.get(uid)
            if not acks or not all(a.lost for a in acks):
                return None
            latest = max(latest, *(a.instance.killed[a.generation] for a in acks))
        return latest

    async def wait(self, want: Screen, before: Screen | None, after: int, sent: Sent) -> str:
        """"ok" when ``want`` is on screen, "lost" when the updates died with an instance,
        "timeout" when no reply came although an instance that is alive took them."""
        allowed = {want.step} | ({before.step} if before else set())
        deadline = time.monotonic() + self.reply_timeout
        # a tick edits the question message in place: look at it too
        look_from = min(after, sent.tapped - 1) if sent.toggle and sent.tapped else after
        judged = after  # messages up to this id were checked for wrong screens
        while True:
            if self.find(want, look_from) is not None:
                return "ok"
            newest = self._last_id()
            if newest > judged:
                if self.judge(self.strange_screens(judged, newest, allowed), want):
                    deadline = min(deadline, time.monotonic() + 20)
                judged = newest
            lost = self._lost_since(sent.update_ids)
            if lost is not None and time.monotonic() - lost > LOST_GRACE:
                return "lost"
            if time.monotonic() > deadline:
                return "timeout"
            await asyncio.sleep(POLL)

    def judge(self, strange: list[Screen], want: Screen) -> bool:
        """A screen of an earlier step of the script shown again is an outdated copy (a
        duplicate answered late, see test_races); anything else is a wrong reply (True)."""
        earlier = set(self.expected.screens[:self.steps_done])
        wrong = False
        for screen in strange:
            if screen in earlier:
                self.outdated.append(f"step {self.steps_done + 1}: {screen} shown again "
                                     f"(expected {want})")
            else:
                wrong = True
                self.problem(f"the bot showed {screen} (expected {want})")
        return wrong

    async def settle(self, sent: Sent) -> None:
        """Wait until every button tap of ``sent`` was answered (the client's spinner), as
        a person waits before the next tap; ``unanswered_taps`` reports the ones never
        answered."""
        deadline = time.monotonic() + self.reply_timeout
        for query, uid in sent.queries.items():
            while not self.api._callback_queries[query].answered:
                if self._lost_since([uid]) is not None or time.monotonic() > deadline:
                    break
                await asyncio.sleep(POLL)

    async def look(self, timeout: float = 60.0) -> Screen | None:
        """Ask for the current screen (/help) and read it from the bot's answer (the help
        text is in the screen's message, or just after it when the screen is an emergency
        outcome, which goes first and alone)."""
        after = self._last_id()
        update = text_update(self.user, self.tg.new_update_id(), "/help")
        await self.tg.deliver(update)
        deadline = time.monotonic() + timeout
        chat = self.user.chat
        while time.monotonic() < deadline:
            for mid in range(after + 1, self._last_id() + 1):
                message = chat._messages.get(mid)
                if message is not None and message.from_bot and HELP_MARK in str(message.text):
                    return self.newest_screen_between(after, mid)
            await asyncio.sleep(POLL)
        return None

    def newest_screen_between(self, after: int, upto: int) -> Screen | None:
        chat = self.user.chat
        for mid in range(upto, after, -1):
            screen = screen_of_message(chat._messages.get(mid), self.flow)
            if screen is not None:
                return screen
        return None

    # -- the script --------------------------------------------------------------------------
    async def perform(self, i: int) -> bool:
        action = self.script[i]
        want = self.expected.screens[i]
        before = self.expected.screens[i - 1] if i else None
        for _attempt in range(4):
            after = self._last_id()
            started = time.monotonic()
            sent = await self.send(action, before)
            if sent is None:
                return False
            self.log.append(sent)
            status = await self.wait(want, before, after, sent)
            if status == "ok":
                self.mischief.stats.latencies.append(time.monotonic() - started)
                await self.settle(sent)
                return True
            if status == "timeout":
                self.problem(f"no reply within {self.reply_timeout:.0f}s (expected {want}; "
                             f"on screen: {self.newest_screen()})")
                return False
            self.nudges += 1
            self.mischief.stats.nudges += 1
            seen = await self.look(self.reply_timeout)
            if seen == want:
                return True
            if seen != before and not (before is None and seen is None):
                self.problem(f"after the update died with an instance the bot shows {seen} "
                             f"(expected {want} or {before})")
                return False
            self.mischief.stats.resends += 1
        self.problem("gave up after 4 tries")
        return False

    def unanswered_taps(self) -> list[str]:
        """Button taps never answered although an instance that stayed up took them."""
        return [f"patient {self.chat_id} ({self.name}): button tap {query} (update {uid}) "
                f"was never answered"
                for sent in self.log for query, uid in sent.queries.items()
                if not self.api._callback_queries[query].answered
                and self._lost_since([uid]) is None]

    async def run(self) -> None:
        for i in range(len(self.script)):
            self.steps_done = i
            if not await self.perform(i):
                return
        self.steps_done = len(self.script)
