"""The real `python bot.py` as a process, against the fake Bot API: polling and webhook mode,
killed and restarted mid-conversation, the webhook's secret check, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.storage import open_store
from tests.fakebotapi import FakeBotAPI, FakeUser, free_port

from .conftest import DEMO, ROOT, TOKEN

SECRET = "s3cret-Token_1"
OUR_VARS = ("TELEGRAM_", "WEBHOOK_", "BOT_", "HEALTH_", "STAFF_", "ADMIN_", "SESSION_",
            "AUDIT_", "HANDOFF_", "PSEUDONYM_", "LOG_LEVEL", "CLINIC_")


class BotProcess:
    """`python bot.py` with our settings, its output in a file."""

    def __init__(self, api: FakeBotAPI, db: Path, log: Path, webhook_port: int | None = None):
        self.api = api
        self.log = log
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARS)}
        self.env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_BASE_URL=api.base_url,
                        BOT_STORE=str(db), BOT_FLOW=str(DEMO), PYTHONUNBUFFERED="1",
                        PSEUDONYM_KEY="test")
        self.port = webhook_port
        if webhook_port is not None:
            self.env.update(WEBHOOK_URL=f"http://127.0.0.1:{webhook_port}/hook",
                            WEBHOOK_LISTEN="127.0.0.1", WEBHOOK_PORT=str(webhook_port),
                            WEBHOOK_SECRET=SECRET)
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the process; return once it takes updates."""
        assert self.proc is None
        self.starts += 1
        ready_method = "setWebhook" if self.port else "getUpdates"
        seen = len(self.api.calls(ready_method))
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts} ---\n".encode())
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "bot.py"), cwd=ROOT, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            await self.api.wait_for(lambda: len(self.api.calls(ready_method)) > seen or
                                    self.proc is None or self.proc.returncode is not None,
                                    timeout=30, description=f"the bot to call {ready_method}")
            assert self.proc.returncode is None, f"the bot exited:\n{self.output()}"
            if self.port:
                await self.wait_health()
        except BaseException:
            await self.kill(signal.SIGKILL)
            raise

    async def wait_health(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/health") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"the webhook server never answered /health:\n{self.output()}")

    async def kill(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit; return the exit code."""
        proc, self.proc = self.proc, None
        assert proc is not None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            return await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"the bot did not stop on {sig!r}:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.asynccontextmanager
async def bot_process(api: FakeBotAPI, tmp_path: Path, webhook: bool
                      ) -> AsyncIterator[BotProcess]:
    bp = BotProcess(api, tmp_path / "s.db", tmp_path / "bot.log",
                    free_port() if webhook else None)
    await bp.start()
    try:
        yield bp
    finally:
        if bp.proc is not None:
            await bp.kill(signal.SIGKILL)


@pytest.fixture
async def patient_api() -> AsyncIterator[FakeBotAPI]:
    # Telegram keeps retrying a webhook that is down; so does this fake, for about 20 s
    async with FakeBotAPI(token=TOKEN, webhook_retry_delays=(0.25,) * 80) as server:
        yield server


def count_questions(user: FakeUser, words: str) -> int:
    """How many times the bot asked a question containing `words` (edits included)."""
    return sum(words in (m.versions[0]["text"] if m.versions else m.text or "")
               for m in user.chat.history if m.from_bot)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["sigterm", "sigint", "sigkill"])
@pytest.mark.parametrize("webhook", [False, True], ids=["polling", "webhook"])
async def test_killed_between_answers_resumes_where_the_patient_was(
        patient_api: FakeBotAPI, tmp_path: Path, webhook: bool, sig: int) -> None:
    api = patient_api
    ann = api.user(2001, "Ann")
    async with bot_process(api, tmp_path, webhook) as bp:
        await ann.send_command("/start")
        first = await ann.wait_reply(timeout=10)
        assert "have you had any of these?" in str(first.text)
        await ann.tap(first, "None of these")  # answer 1
        second = await ann.wait_reply(timeout=10)
        assert "Just to be sure" in str(second.text)
        await api.wait_idle(quiet=0.3, timeout=10)
        code = await bp.kill(sig)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), bp.output()

        await ann.tap(second, "No")  # answer 2, while the bot is down: Telegram keeps it
        await asyncio.sleep(0.3)
        assert ann.chat.last_bot_message is second
        await bp.start()
        third = await ann.wait_reply(timeout=15)
        assert "How old are you?" in str(third.text)
        await ann.send_text("45")  # answer 3
        fourth = await ann.wait_reply(timeout=10)
        assert "How long have you had this pain?" in str(fourth.text)
        await api.wait_idle(quiet=0.3, timeout=10)
        assert await bp.kill(signal.SIGTERM) == 0, bp.output()

    # every question asked once, every answered one turned into a record of its answer
    for words in ("have you had any of these?", "Just to be sure", "How old are you?",
                  "How long have you had this pain?"):
        assert count_questions(ann, words) == 1, (words, [m.text for m in ann.chat.history])
    assert str(ann.chat.message(second.message_id).text).endswith("✔️ No")
    assert ann.chat.message(second.message_id).buttons == []
    store = open_store(str(tmp_path / "s.db"))
    try:
        data, _ = await store.load("tg:2001")
    finally:
        await store.close()
    assert data is not None and data["step"] == "duration"
    assert [h["step"] for h in data["history"]] == ["red_flags", "bladder_check", "age"]
    log = bp.output()
    assert "Traceback" not in log and " ERROR " not in log, log
    assert log.count("--- start") == 2
    # BOT_EVENT_LOOP's default: uvloop where it is installed (Linux and macOS)
    assert log.count(f"running on the {default_loop()} event loop (BOT_EVENT_LOOP=auto)") == 2


def default_loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
async def test_the_bot_runs_on_the_event_loop_chosen(patient_api: FakeBotAPI, tmp_path: Path,
                                                     choice: str) -> None:
    if choice == "uvloop" and not importlib.util.find_spec("uvloop"):
        pytest.skip("uvloop is not installed on this platform")
    api = patient_api
    ann = api.user(2002, "Ann")
    bp = BotProcess(api, tmp_path / "s.db", tmp_path / "bot.log", free_port())
    bp.env["BOT_EVENT_LOOP"] = choice
    await bp.start()
    try:
        await ann.send_command("/start")
        first = await ann.wait_reply(timeout=10)
        await ann.tap(first, "None of these")
        second = await ann.wait_reply(timeout=10)
        assert "Just to be sure" in str(second.text)
        await api.wait_idle(quiet=0.3, timeout=10)
    finally:
        code = await bp.kill(signal.SIGTERM)
    assert code == 0, bp.output()
    log = bp.output()
    assert f"running on the {choice} event loop (BOT_EVENT_LOOP={choice})" in log, log
    assert "Traceback" not in log and " ERROR " not in log, log


async def refused_start(**settings: str) -> list[str]:
    """`python bot.py` with a token and these settings, expected to refuse to start: exit
    code 2, nothing on stdout; the lines it wrote on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OUR_VARS)}
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, BOT_FLOW=str(DEMO), **settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bot.py"), cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert out == b""
    return err.decode().splitlines()


async def test_an_unknown_event_loop_setting_exits_with_one_clear_line() -> None:
    assert await refused_start(BOT_EVENT_LOOP="trio") == [
        "configuration error: BOT_EVENT_LOOP='trio' should be auto, uvloop or asyncio"]


async def test_webhook_secret_health_and_metrics(patient_api: FakeBotAPI, tmp_path: Path
                                                 ) -> None:
    api = patient_api
    async with bot_process(api, tmp_path, webhook=True) as bp:
        assert api.webhook_url == f"{bp.url}/hook"
        ann = api.user(2002, "Ann")
        await ann.send_command("/start")
        await ann.wait_reply(timeout=10)
        update = json.dumps({"update_id": 99_999, "message": {
            "message_id": 1, "date": 1, "chat": {"id": 2002, "type": "private"},
            "from": ann.to_dict(), "text": "/start"}})
        async with aiohttp.ClientSession() as http:
            for headers in ({"X-Telegram-Bot-Api-Secret-Token": "wrong"}, {},
                            {"X-Telegram-Bot-Api-Secret-Token": SECRET.lower()}):
                async with http.post(f"{bp.url}/hook", data=update, headers={
                        "Content-Type": "application/json", **headers}) as resp:
                    assert resp.status == 403, headers
            async with http.get(f"{bp.url}/health") as resp:
                assert resp.status == 200
                assert resp.content_type == "application/json"
                health = await resp.json()
            assert health["status"] == "ok" and health["flow"] == "demo"
            async with http.get(f"{bp.url}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                metrics = await resp.text()
        assert "# TYPE triage_updates_total counter" in metrics
        assert 'triage_updates_total{kind="command"} 1' in metrics
        assert "triage_update_seconds_count 1" in metrics
        await api.wait_idle(quiet=0.2)
        assert len(ann.chat.bot_messages) == 1  # the forged updates did nothing
        assert await bp.kill(signal.SIGTERM) == 0


async def test_unreachable_redis_exits_with_one_clear_line(tmp_path: Path) -> None:
    assert await refused_start(TELEGRAM_BASE_URL="http://127.0.0.1:9/bot",
                               BOT_STORE="redis://127.0.0.1:1") == [
        "configuration error: cannot reach Redis at redis://127.0.0.1:1: connection refused"]
