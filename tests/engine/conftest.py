"""A transcript driver: send inputs to the real engine, read the reply like a patient would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.engine import Back, Choose, Engine, Reply, Restart, SetLanguage, Start, Text
from bot.flow import load_flow

ROOT = Path(__file__).resolve().parents[2]


class Chat:
    """One patient's conversation; the session round-trips through JSON like a store."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.data: dict[str, Any] | None = None
        self.reply: Reply | None = None

    def send(self, inp: Any) -> Reply:
        stored = json.loads(json.dumps(self.data)) if self.data is not None else None
        self.data, self.reply = self.engine.handle(stored, inp)
        return self.reply

    def start(self, lang: str | None = None) -> Reply:
        return self.send(Start(lang))

    def type(self, text: str) -> Reply:
        return self.send(Text(text))

    def tap(self, label: str) -> Reply:
        """Tap the button with this label on the current question."""
        assert self.reply is not None and self.reply.question is not None, "no question shown"
        q = self.reply.question
        for o in q.options:
            if o.label == label:
                return self.send(Choose(q.step, o.index, o.action, q.flow_hash))
        raise AssertionError(f"no button {label!r}; buttons: {[o.label for o in q.options]}")

    def back(self) -> Reply:
        return self.send(Back())

    def restart(self) -> Reply:
        return self.send(Restart())

    def language(self, lang: str) -> Reply:
        return self.send(SetLanguage(lang))

    @property
    def step(self) -> str | None:
        return None if self.data is None else self.data["step"]

    @property
    def buttons(self) -> list[str]:
        assert self.reply is not None and self.reply.question is not None
        return [o.label for o in self.reply.question.options]


@pytest.fixture(scope="session")
def demo_flow() -> Any:
    flow, problems = load_flow(ROOT / "flows" / "demo.yaml")
    assert flow is not None, problems
    return flow


@pytest.fixture
def engine(demo_flow: Any) -> Engine:
    return Engine(demo_flow, placeholders={"clinic_phone": "(817) 555-0100"})


@pytest.fixture
def chat(engine: Engine) -> Chat:
    return Chat(engine)
