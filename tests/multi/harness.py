"""Real ``python bot.py`` processes against the fake Bot API, with the test playing Telegram.

- ``BotProcess``: one bot child process (webhook mode on its own port, or long polling),
  started, health-checked, SIGKILLed and restarted on the same port.
- ``Telegram``: Telegram's side of webhook delivery plus a load balancer in front of the
  instances. It POSTs update JSON with the secret header, round-robin; when a POST fails
  (connection refused after a SIGKILL, a reset, a non-200) it tries the other instance, as
  Telegram redelivers. It records which instance (and which run of it) acknowledged each
  update, so a test can tell "acknowledged, then the instance died" from a real loss.
- Update builders that make the fake know the messages (``text_update``, ``tap_update``).
- ``Screen``: what a bot message asks (question step and ticked boxes, or an outcome), read
  from its inline keyboard; and ``expect()``: the screens and final session a script of
  answers implies, computed by running the same inputs through ``bot.engine.Engine``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.engine import Back, Choose, Engine, Input, Reply, Start, Text
from bot.flow.limits import button_data, parse_button_data
from bot.flow.model import Flow
from tests.fakebotapi import ChatMessage, FakeBotAPI, FakeUser, _CallbackQueryState

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "demo.yaml"
TOKEN = "424242:MULTI-instance-token"
SECRET = "multi-Secret_42"
HOOK = "tg-hook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

# settings a developer's shell might carry into the children; the harness sets its own
_OWN_ENV_PREFIXES = ("TELEGRAM_", "BOT_", "WEBHOOK_", "HEALTH_", "STAFF_", "ADMIN_", "SESSION_",
                     "AUDIT_", "HANDOFF_", "PSEUDONYM_", "LOG_LEVEL", "CLINIC_")


# --------------------------------------------------------------------------------------------
# Bot processes
# --------------------------------------------------------------------------------------------


class BotProcess:
    """One ``python bot.py`` child: webhook mode on ``port`` when given, else long polling
    (then ``health_port`` serves /health)."""

    def __init__(self, name: str, settings: dict[str, str], log_dir: Path, *,
                 port: int | None = None, health_port: int | None = None) -> None:
        self.name = name
        self.port = port
        self.health_port = port if port is not None else health_port
        self.settings = dict(settings)
        self.log_path = log_dir / f"bot-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0  # one per start
        self.killed: dict[int, float] = {}  # generation -> monotonic time of its SIGKILL

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{HOOK}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_ENV_PREFIXES)}
        env.update(self.settings)
        env.setdefault("LOG_LEVEL", "WARNING")
        env["PYTHONUNBUFFERED"] = "1"
        if self.port is not None:
            env.update(WEBHOOK_URL=self.url, WEBHOOK_LISTEN="127.0.0.1",
                       WEBHOOK_PORT=str(self.port), WEBHOOK_SECRET=SECRET)
        else:
            env["WEBHOOK_LISTEN"] = "127.0.0.1"
            if self.health_port is not None:
                env["HEALTH_PORT"] = str(self.health_port)
        return env

    def spawn(self) -> None:
        """Start the process (``python bot.py`` in the project root)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.generation + 1} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "bot.py"], cwd=ROOT, env=self.env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.generation += 1

    async def wait_ready(self, timeout: float = 40.0) -> None:
        """Wait until /health answers 200 (the webhook is listening, the store reachable)."""
        assert self.proc is not None and self.health_port is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.health_port}/health"
        async with aiohttp.ClientSession() as http:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(f"bot {self.name} exited with code {code} before it was "
                                       f"ready; its log ends:\n{self.tail()}")
                with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bot {self.name} not ready after {timeout}s; its log "
                                       f"ends:\n{self.tail()}")
                await asyncio.sleep(0.1)

    async def flow_served(self) -> str:
        """The hash of the flow version this instance serves to new conversations (/health)."""
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{self.health_port}/health") as resp:
            return str((await resp.json())["flow_version"])

    async def start(self, timeout: float = 40.0) -> None:
        self.spawn()
        await self.wait_ready(timeout)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in memory is gone."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.killed[self.generation] = time.monotonic()

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code, None if killed."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc is not None else None
        proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
            return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the running process used so far (Linux), else None."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def log_problems(self) -> list[str]:
        """Lines of the log that report an error or a traceback."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines()
                if "Traceback" in line or " ERROR " in line or "CRITICAL" in line
                or line.startswith("ERROR:") or line.startswith("CRITICAL:")]


def bot_settings(api: FakeBotAPI, store: str, **extra: str) -> dict[str, str]:
    """The environment of a bot child talking to ``api`` and keeping sessions in ``store``."""
    return {"TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_BASE_URL": api.base_url,
            "BOT_STORE": store, "BOT_FLOW": str(DEMO), "PSEUDONYM_KEY": "multi-test",
            "CLINIC_PHONE": "(817) 555-0100", **extra}


# --------------------------------------------------------------------------------------------
# Telegram's side of webhook delivery
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """An instance answered 200 to the POST of an update."""

    instance: BotProcess
    generation: int
    at: float

    @property
    def lost(self) -> bool:
        """The run of the instance that acknowledged it has since been killed."""
        return self.generation in self.instance.killed


class Telegram:
    """POSTs updates to the instances like Telegram does, behind a round-robin balancer."""

    def __init__(self, instances: list[BotProcess], http: aiohttp.ClientSession,
                 first_update_id: int = 5_000_000) -> None:
        self.instances = instances
        self.http = http
        self._ids = itertools.count(first_update_id)
        self._rr = itertools.count()
        self.acks: dict[int, list[Ack]] = {}
        self.updates: dict[int, dict[str, Any]] = {}  # every update delivered, by id
        self.sent = 0  # updates handed to deliver()
        self.posts = 0  # HTTP POSTs made
        self.failed_posts = 0

    def new_update_id(self) -> int:
        return next(self._ids)

    def next_instance(self) -> int:
        return next(self._rr) % len(self.instances)

    async def _post(self, inst: BotProcess, body: bytes) -> bool:
        self.posts += 1
        try:
            async with self.http.post(
                inst.url, data=body,
                headers={"Content-Type": "application/json", SECRET_HEADER: SECRET},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                await response.read()
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def deliver(self, update: dict[str, Any], start: int | None = None,
                      give_up_after: float = 120.0) -> Ack:
        """POST until an instance answers 200, starting at ``start`` (else round-robin) and
        going on to the next instance after each failure (backing off once all failed)."""
        self.sent += 1
        self.updates[update["update_id"]] = update
        body = json.dumps(update, ensure_ascii=False).encode()
        first = self.next_instance() if start is None else start
        deadline = time.monotonic() + give_up_after
        pause = 0.05
        n = len(self.instances)
        for attempt in itertools.count():
            inst = self.instances[(first + attempt) % n]
            generation = inst.generation
            if await self._post(inst, body):
                ack = Ack(inst, generation, time.monotonic())
                self.acks.setdefault(update["update_id"], []).append(ack)
                return ack
            self.failed_posts += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"no instance took update {update['update_id']}")
            if attempt % n == n - 1:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def deliver_to_all(self, update: dict[str, Any]) -> list[Ack]:
        """The same update to every instance at once (a duplicate delivery)."""
        return list(await asyncio.gather(*(self.deliver(update, start=i)
                                           for i in range(len(self.instances)))))


# --------------------------------------------------------------------------------------------
# Updates the fake knows about
# --------------------------------------------------------------------------------------------


def text_update(user: FakeUser, update_id: int, text: str) -> dict[str, Any]:
    """The user types ``text`` (a ``/command`` gets its bot_command entity)."""
    entities = []
    if text.startswith("/"):
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    message = user.chat._add(from_bot=False, sender=user.to_dict(), kind="text", text=text,
                             entities=entities)
    return {"update_id": update_id, "message": message.to_dict()}


def tap_update(api: FakeBotAPI, user: FakeUser, update_id: int, message: ChatMessage,
               data: str) -> tuple[dict[str, Any], str]:
    """The user taps the button with callback ``data`` on ``message``: (update, query id).
    The query is registered with the fake, so answerCallbackQuery works once."""
    assert data in message.callback_data, (data, message.callback_data)
    query_id = f"q{update_id}"
    api._callback_queries[query_id] = _CallbackQueryState(
        query_id=query_id, user_id=user.id, chat_id=message.chat_id,
        message_id=message.message_id, data=data, created=time.monotonic())
    body = {"id": query_id, "from": user.to_dict(), "message": message.to_dict(),
            "chat_instance": str(-(abs(message.chat_id) * 7919 + 17)), "data": data}
    return {"update_id": update_id, "callback_query": body}, query_id


# --------------------------------------------------------------------------------------------
# Screens and expected conversations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screen:
    """What the patient is being asked: a question step (with its ticked boxes), or an
    outcome step."""

    step: str
    outcome: bool = False
    ticks: frozenset[int] = frozenset()

    def __str__(self) -> str:
        if self.outcome:
            return f"outcome {self.step}"
        return f"{self.step}{sorted(self.ticks) if self.ticks else ''}"


def screen_of_reply(reply: Reply) -> Screen | None:
    if reply.outcome is not None:
        return Screen(reply.outcome.step, outcome=True)
    if reply.question is not None:
        ticks = frozenset(o.index for o in reply.question.options
                          if o.action == "t" and o.ticked)
        return Screen(reply.question.step, ticks=ticks)
    return None


def screen_of_message(message: ChatMessage | None, flow: Flow) -> Screen | None:
    """The screen a bot message with live buttons shows, or None."""
    if message is None or message.deleted or not message.from_bot:
        return None
    step: str | None = None
    ticks: set[int] = set()
    for row in message.buttons:
        for button in row:
            parsed = parse_button_data(str(button.get("callback_data", "")))
            if parsed is None:
                continue
            action, _, step, option = parsed
            if action == "t" and str(button.get("text", "")).startswith("✅"):
                ticks.add(option)
    if step is None or step not in flow.steps:
        return None
    if flow.steps[step].is_outcome:
        return Screen(step, outcome=True)
    return Screen(step, ticks=frozenset(ticks))


Action = tuple[Any, ...]
"""("start",) | ("text", words) | ("back",) (the /back command) | ("help",) |
("tap", action, option) with action a/t/n/d on the current question, or "b" (the back
button of a question or an outcome)."""


def engine_input(action: Action, session: dict[str, Any] | None, flow_hash: str) -> Input:
    kind = action[0]
    if kind == "start":
        return Start("en")
    if kind == "text":
        return Text(action[1])
    if kind == "back":
        return Back()
    if kind == "tap":
        if action[1] == "b":
            return Back()
        assert session is not None and session.get("step")
        return Choose(session["step"], action[2], action[1], flow_hash[:8])
    raise ValueError(f"no engine input for {action!r}")


def history_of(session: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The answers a session holds, without timestamps: (step, answer or interrupt id)."""
    return [(h.get("step"), h.get("answer", h.get("interrupt"))) for h in session["history"]]


@dataclass
class Expected:
    """What a script of answers implies, computed by the engine in this process."""

    screens: list[Screen]
    session: dict[str, Any]
    outcomes_reached: int
    disposition: str  # "" when the script does not end at an outcome
    headline: str

    @property
    def history(self) -> list[tuple[Any, ...]]:
        return history_of(self.session)


def expect(engine: Engine, script: list[Action]) -> Expected:
    """Run ``script`` through the engine: the screen after each action, the final session."""
    flow = engine.flow
    data: dict[str, Any] | None = None
    screens: list[Screen] = []
    arrivals = 0
    reply: Reply | None = None
    for action in script:
        before = data.get("step") if data else None
        data, reply = engine.handle(data, engine_input(action, data, flow.hash), lang="en")
        assert reply.changed, f"{action!r} changes nothing: fix the script"
        screen = screen_of_reply(reply)
        assert screen is not None, f"{action!r} shows nothing: fix the script"
        screens.append(screen)
        if reply.outcome is not None and before != data["step"]:
            arrivals += 1
    assert data is not None and reply is not None, "an empty script"
    outcome = reply.outcome
    if outcome is None:
        return Expected(screens, data, arrivals, "", "")
    return Expected(screens, data, arrivals, outcome.disposition,
                    outcome.headline or outcome.text)


def tap_data(flow: Flow, screen: Screen, action: str, option: int) -> str:
    """The callback data of a button of ``screen``."""
    return button_data(action, flow.hash, screen.step, option)


@dataclass
class Stats:
    """Counts a scenario reports."""

    duplicates: int = 0
    double_taps: int = 0
    nudges: int = 0
    resends: int = 0
    latencies: list[float] = field(default_factory=list)


def find_screen(user: FakeUser, flow: Flow, want: Screen, after: int = 0) -> ChatMessage | None:
    """The newest bot message after message id ``after`` that shows ``want``."""
    chat = user.chat
    for mid in range(chat._next_message_id - 1, after, -1):
        message = chat._messages.get(mid)
        if message is not None and screen_of_message(message, flow) == want:
            return message
    return None


async def wait_for_screen(api: FakeBotAPI, user: FakeUser, flow: Flow, want: Screen,
                          after: int = 0, timeout: float = 20.0) -> ChatMessage:
    """Wait until a bot message after message id ``after`` shows ``want``."""
    found: ChatMessage = await api.wait_for(
        lambda: find_screen(user, flow, want, after), timeout,
        description=f"{want} in chat {user.id}")
    return found


def last_message_id(user: FakeUser) -> int:
    return user.chat._next_message_id - 1
