"""Fixtures for the staff tools: the CLI as a person runs it, edited flows, and patients who
talk to the real engine with their sessions and audit records in a real store."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.engine import Back, Choose, Engine, Reply, Start, Text
from bot.flow import Flow, load_flow
from bot.staff.audit import audit_record
from bot.storage import SessionStore

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "demo.yaml"
T0 = datetime(2025, 3, 3, 9, 0).timestamp()  # local time: the report prints local dates


ENV = ("TELEGRAM_BOT_TOKEN", "BOT_STORE", "BOT_FLOW")


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """python bot.py ARGS, in a fresh process, as staff run it."""
    full = {k: v for k, v in os.environ.items() if k not in ENV}
    full.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "bot.py"), *args], capture_output=True,
                          text=True, env=full, cwd=cwd, timeout=120)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., Ran]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The same command in this process (quicker): cli("diff", old, new, env={...})."""

    def run(*args: str, env: dict[str, str] | None = None) -> Ran:
        for name in ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def edit_demo(tmp_path: Path, name: str, *changes: tuple[str, str]) -> Path:
    """A copy of the demo flow with each (old, new) text replaced exactly once."""
    text = DEMO.read_text(encoding="utf-8")
    for old, new in changes:
        assert text.count(old) == 1, f"{old!r} is not in the demo flow exactly once"
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def demo() -> Flow:
    flow, problems = load_flow(DEMO)
    assert flow is not None, problems
    return flow


class Clock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Patient:
    """One conversation with the real engine; every step is saved to the store, and the
    audit record is added when an outcome is reached (as the channel does)."""

    def __init__(self, engine: Engine, store: SessionStore, key: str, clock: Clock,
                 step_seconds: float = 10.0):
        self.engine, self.store, self.key, self.clock = engine, store, key, clock
        self.step_seconds = step_seconds
        self.data: dict[str, Any] | None = None
        self.version = 0
        self.reply: Reply | None = None

    async def send(self, inp: Any) -> Reply:
        before = self.data.get("step") if self.data else None
        self.data, self.reply = self.engine.handle(self.data, inp)
        saved = await self.store.save(self.key, self.data, self.version)
        assert saved is not None
        self.version = saved
        if self.reply.outcome is not None and before != self.data["step"]:
            await self.store.add_audit(audit_record(self.data, self.engine.flow,
                                                    f"p_{self.key}", self.reply.outcome))
        self.clock.now += self.step_seconds
        return self.reply

    async def start(self) -> Reply:
        return await self.send(Start())

    async def tap(self, label: str) -> Reply:
        assert self.reply is not None and self.reply.question is not None, "no question shown"
        q = self.reply.question
        for o in q.options:
            if o.label == label:
                return await self.send(Choose(q.step, o.index, o.action, q.flow_hash))
        raise AssertionError(f"no button {label!r}: {[o.label for o in q.options]}")

    async def type(self, text: str) -> Reply:
        return await self.send(Text(text))

    async def back(self) -> Reply:
        return await self.send(Back())

    async def answers(self, *steps: str) -> Reply:
        """Tap each label; '#42' types a number; '<' goes back."""
        reply = self.reply
        for s in steps:
            if s == "<":
                reply = await self.back()
            elif s.startswith("#"):
                reply = await self.type(s[1:])
            else:
                reply = await self.tap(s)
        assert reply is not None
        return reply
