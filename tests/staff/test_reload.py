"""FlowWatcher: a valid edit goes live within 2 s; a broken or half-written one never does."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bot.flow import Flow, Problem
from bot.staff.reload import FlowWatcher, reload_message

from .conftest import DEMO, ROOT

FEVER_TEXT = "{en: Do you have a fever or chills?, es: ¿Tiene fiebre o escalofríos?}"


class Seen:
    """What the callbacks were told, with when."""

    def __init__(self) -> None:
        self.valid: list[tuple[float, Flow]] = []
        self.invalid: list[tuple[float, list[Problem]]] = []
        self.changed = asyncio.Event()

    def on_valid(self, flow: Flow) -> None:
        self.valid.append((time.monotonic(), flow))
        self.changed.set()

    async def on_invalid(self, problems: list[Problem]) -> None:  # a coroutine is awaited
        self.invalid.append((time.monotonic(), problems))
        self.changed.set()

    async def wait(self, timeout: float = 3.0) -> None:
        await asyncio.wait_for(self.changed.wait(), timeout)
        self.changed.clear()


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(DEMO.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def edited(text: str) -> str:
    return DEMO.read_text(encoding="utf-8").replace(FEVER_TEXT, text)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    st = path.stat()  # a new mtime even on a coarse clock
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


async def test_a_valid_edit_goes_live_within_2_seconds(flow_file: Path) -> None:
    seen = Seen()
    watcher = FlowWatcher(flow_file, seen.on_valid, seen.on_invalid)
    watcher.start()
    try:
        await asyncio.sleep(0.3)
        saved = time.monotonic()
        write(flow_file, edited("{en: Any fever?, es: ¿Fiebre?}"))
        await seen.wait()
        [(at, flow)] = seen.valid
        assert at - saved < 2.0
        assert flow.text(flow.steps["fever"].text, "en") == "Any fever?"
        assert watcher.flow is flow and seen.invalid == []
    finally:
        await watcher.stop()
    assert not watcher.running


async def test_a_broken_edit_is_refused_and_the_last_good_flow_stays(flow_file: Path) -> None:
    seen = Seen()
    watcher = FlowWatcher(flow_file, seen.on_valid, seen.on_invalid, interval=0.1)
    watcher.start()
    try:
        write(flow_file, edited("{en: Any fever?, es: ¿Fiebre?}"))
        await seen.wait()
        good = watcher.flow
        assert good is not None
        write(flow_file, edited("{en: Any fever?, es: ¿Fiebre?}").replace(
            "next: trend", "next: trnd"))
        await seen.wait()
        [(_, problems)] = seen.invalid
        assert [p.message for p in problems if p.level == "error"] == [
            "question 'duration': next step 'trnd' does not exist (did you mean 'trend'?)"]
        assert problems[0].file == str(flow_file)
        assert watcher.flow is good and len(seen.valid) == 1
        await asyncio.sleep(0.35)  # the same broken file is not reported again
        assert len(seen.invalid) == 1
        write(flow_file, edited("{en: Fever now?, es: ¿Fiebre ahora?}"))
        await seen.wait()
        assert len(seen.valid) == 2 and watcher.flow is seen.valid[-1][1]
    finally:
        await watcher.stop()


async def test_a_half_written_file_is_never_loaded(flow_file: Path) -> None:
    seen = Seen()
    watcher = FlowWatcher(flow_file, seen.on_valid, seen.on_invalid)
    full = edited("{en: Any fever?, es: ¿Fiebre?}")
    await watcher.poll()  # the first look: the file as it is serving
    write(flow_file, full[: len(full) // 2])  # the editor has written half
    await watcher.poll()
    write(flow_file, full)  # ... and the rest, before the next look
    await watcher.poll()
    assert seen.valid == [] and seen.invalid == []  # changed since the last look: wait
    await watcher.poll()  # unchanged for one whole poll: act
    [(_, flow)] = seen.valid
    assert flow.text(flow.steps["fever"].text, "en") == "Any fever?"
    assert seen.invalid == []


async def test_a_half_written_file_while_polling_for_real(flow_file: Path) -> None:
    seen = Seen()
    watcher = FlowWatcher(flow_file, seen.on_valid, seen.on_invalid)
    watcher.start()
    try:
        full = edited("{en: Any fever?, es: ¿Fiebre?}")
        for cut in (0.25, 0.5, 0.75):  # a slow save, 0.1 s between writes
            write(flow_file, full[: int(len(full) * cut)])
            await asyncio.sleep(0.1)
        write(flow_file, full)
        await seen.wait()
        assert seen.invalid == [] and len(seen.valid) == 1
    finally:
        await watcher.stop()


async def test_a_deleted_file_is_reported_once_and_the_flow_stays(flow_file: Path) -> None:
    seen = Seen()
    watcher = FlowWatcher(flow_file, seen.on_valid, seen.on_invalid, interval=0.1)
    watcher.start()
    try:
        flow_file.unlink()
        await seen.wait()
        await asyncio.sleep(0.3)
        [(_, problems)] = seen.invalid
        assert [str(p) for p in problems] == [
            f"{flow_file}:1:1: error: the flow file is missing or cannot be read; put it back "
            "(the last good flow keeps serving)"]
        write(flow_file, DEMO.read_text(encoding="utf-8"))
        await seen.wait()
        assert len(seen.valid) == 1
    finally:
        await watcher.stop()


async def test_reload_now_for_the_reload_command(flow_file: Path) -> None:
    seen = Seen()
    watcher = FlowWatcher(flow_file, seen.on_valid, seen.on_invalid)
    flow, problems = await watcher.reload_now()
    assert flow is not None and problems == [] and seen.valid[0][1] is flow
    assert reload_message(flow, problems) == (
        f"Flow 'demo' version 0.3 ({flow.hash}) is live: new conversations use it; "
        "conversations under way finish on the version they started on.")
    write(flow_file, edited("{en: Any fever?, es: ¿Fiebre?}").replace("next: trend",
                                                                     "next: trnd"))
    bad, problems = await watcher.reload_now()
    assert bad is None and watcher.flow is flow
    assert reload_message(bad, problems).splitlines() == [
        "The edit was NOT put live (1 error(s)); the last good flow keeps serving. Fix these and "
        "save again:",
        f"{flow_file}:115:11: error: question 'duration': next step 'trnd' does not exist "
        "(did you mean 'trend'?)",
    ]


async def test_a_callback_that_fails_does_not_stop_the_watcher(flow_file: Path) -> None:
    told: list[Flow] = []

    def broken(flow: Flow) -> None:
        told.append(flow)
        raise RuntimeError("the engine said no")

    watcher = FlowWatcher(flow_file, broken, lambda problems: None, interval=0.1)
    watcher.start()
    try:
        write(flow_file, edited("{en: One?, es: ¿Uno?}"))
        for _ in range(30):
            await asyncio.sleep(0.1)
            if told:
                break
        write(flow_file, edited("{en: Two?, es: ¿Dos?}"))
        for _ in range(30):
            await asyncio.sleep(0.1)
            if len(told) == 2:
                break
        assert [f.text(f.steps["fever"].text, "en") for f in told] == ["One?", "Two?"]
        assert watcher.running
    finally:
        await watcher.stop()


async def test_back_spasm_words_then_routing_a_broken_check_never_goes_live(
        tmp_path: Path) -> None:
    """The proof of the serving flow is reused for an edit of its words only: a routing edit
    right after is proved again, and refused when a safety check fails."""
    text = (ROOT / "flows" / "back_spasm.yaml").read_text(encoding="utf-8")
    worded = text.replace("have you had any of these?", "have you had any of this?")
    x1 = "{if: other_emergency_symptoms, go: emergency, rule: X1}"
    exits = ("      - {if: bladder_bowel_changes, go: emergency, rule: E1}\n"
             "      - {if: saddle_numbness, go: emergency, rule: E2}\n")
    assert worded != text and worded.count(x1) == 1 and worded.count(exits) == 1
    path = tmp_path / "back_spasm.yaml"
    path.write_text(text, encoding="utf-8")
    seen = Seen()
    watcher = FlowWatcher(path, seen.on_valid, seen.on_invalid, interval=0.1)
    watcher.start()
    try:
        write(path, worded)
        await seen.wait(timeout=20)
        [(_, flow)] = seen.valid
        assert "any of this?" in flow.text(flow.steps["flags"].text, "en")
        write(path, worded.replace(x1, "{if: other_emergency_symptoms, go: urgent, rule: U1}"))
        await seen.wait(timeout=20)
        [(_, problems)] = seen.invalid
        assert problems[0].message.startswith(
            "check 'x1_emergency' fails (Chest pain, fainting, severe belly pain or "
            "breathlessness always ends in emergency.): counterexample flags=Chest pain, "
            "fainting, bad belly pain, or hard to breathe ⇒ urgent (urgent, rule U1)")
        assert watcher.flow is flow and len(seen.valid) == 1
        swapped = "".join(reversed(exits.splitlines(keepends=True)))
        write(path, worded.replace(exits, swapped))
        await seen.wait(timeout=20)
        assert len(seen.valid) == 2 and watcher.flow is seen.valid[-1][1]
        assert watcher.flow.steps["flags"] != flow.steps["flags"]
    finally:
        await watcher.stop()
