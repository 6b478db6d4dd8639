"""Flow reload: from saving an edit of the flow file to the edit being live, through a real
FlowWatcher, against loading the same flow without the all-paths proof, measured beside it.

    .venv/bin/python bench/bench_reload.py [--flow flows/back_spasm.yaml] [--repeat 9]

(a) baseline: read + parse + build + validate the flow, the all-paths proof left out.
(b) end to end: a FlowWatcher (asyncio, its default poll) on a temporary copy of the flow; the
    edit is written at a random moment against the polling, and the time until `on_valid` is
    called is taken. A text edit (the first question's wording) and a routing edit (the order
    of the first question's emergency routes: a structure not seen before, so the proof runs in
    full). As in the bot, the flow serving when the watcher starts was checked at start-up.
(c) check_text split: YAML parse; build + validate; the path walk (the proof) alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.flow import check_text, paths  # noqa: E402
from bot.flow.loader import flow_hash  # noqa: E402
from bot.flow.model import Flow  # noqa: E402
from bot.flow.yamlsrc import read_yaml  # noqa: E402
from bot.staff import reload  # noqa: E402

TARGET = 2.0  # seconds from the save to the edit being live

# the first question of flows/back_spasm.yaml: its wording, and its six emergency exits
TEXT = "Since this pain started, have you had any of these?"
EXITS = [
    "      - {if: other_emergency_symptoms, go: emergency, rule: X1}\n",
    "      - {if: bladder_bowel_changes, go: emergency, rule: E1}\n",
    "      - {if: saddle_numbness, go: emergency, rule: E2}\n",
    "      - {if: weakness == severe_or_progressive, go: emergency, rule: E4}\n",
    "      - {if: balance_problems, go: emergency, rule: E5}\n",
    "      - {if: trigger == major_trauma, go: emergency, rule: E7}\n",
]


def forget_proofs() -> None:
    """Forget proofs already made (if this version keeps any), so a walk is timed cold."""
    forget: Callable[[], None] | None = getattr(paths, "forget_proofs", None)
    if forget is not None:
        forget()


def text_edits(text: str) -> Iterator[str]:
    assert text.count(TEXT) == 1, f"the flow has no {TEXT!r}"
    for i in itertools.count(1):
        yield text.replace(TEXT, TEXT.replace("started,", f"started (take {i}),"))


def routing_edits(text: str) -> Iterator[str]:
    block = "".join(EXITS)
    assert text.count(block) == 1, "the flow has not the six emergency exits in this order"
    for order in itertools.islice(itertools.permutations(EXITS), 1, None):
        yield text.replace(block, "".join(order))


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def without_proof(text: str, file: str) -> Any:
    with mock.patch.object(paths, "check_properties", lambda flow, builder: None):
        return check_text(text, file, lint=False)


async def end_to_end(original: str, edits: list[tuple[str, str]], interval: float,
                     seed: int) -> list[tuple[str, float]]:
    """(kind, seconds from the save to on_valid) for each edit, in order."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flow.yaml"
        path.write_text(original, encoding="utf-8")
        start = check_text(original, str(path), lint=False)  # the bot's start-up load
        assert start.flow is not None, [str(p) for p in start.errors]
        got: list[tuple[float, Flow | None]] = []
        told = asyncio.Event()

        def on_valid(flow: Flow) -> None:
            got.append((time.perf_counter(), flow))
            told.set()

        def on_invalid(problems: list[Any]) -> None:
            got.append((time.perf_counter(), None))
            told.set()

        watcher = reload.FlowWatcher(path, on_valid, on_invalid, interval=interval,
                                     current=start.flow)
        watcher.start()
        out = []
        try:
            for kind, text in edits:
                # at a random moment against the polling
                await asyncio.sleep(2 * interval + rng.random() * interval)
                told.clear()
                saved = time.perf_counter()
                path.write_text(text, encoding="utf-8")
                await asyncio.wait_for(told.wait(), 30)
                at, flow = got[-1]
                assert flow is not None and flow.hash == flow_hash(text), f"{kind} was refused"
                out.append((kind, at - saved))
        finally:
            await watcher.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", default="flows/back_spasm.yaml")
    ap.add_argument("--repeat", type=int, default=9, help="edits of each kind, end to end")
    ap.add_argument("--interval", type=float, default=reload.POLL_SECONDS,
                    help="FlowWatcher poll (default: its own)")
    args = ap.parse_args()
    original = Path(args.flow).read_text(encoding="utf-8")
    file = str(args.flow)

    # (a) baseline: the load without the proof
    res = without_proof(original, file)
    assert res.flow is not None, [str(p) for p in res.errors]
    base = statistics.median(timed(lambda: without_proof(original, file), 9))

    # (c) check_text split
    parse = statistics.median(timed(lambda: read_yaml(original, file), 9))
    flow = res.flow
    walks = []
    for _ in range(5):
        forget_proofs()
        walks += timed(lambda: paths.walk_paths(flow), 1)
    walk = statistics.median(walks)
    fulls = []
    for _ in range(5):
        forget_proofs()
        fulls += timed(lambda: check_text(original, file, lint=False), 1)
    full = statistics.median(fulls)
    proved = check_text(original, file, lint=False)
    assert proved.flow is not None
    text = next(text_edits(original))
    check_text(original, file, lint=False)
    text_check = statistics.median(timed(lambda: check_text(text, file, lint=False), 5))
    routing = list(itertools.islice(routing_edits(original), 5))
    routing_check = statistics.median(timed(
        lambda: check_text(routing.pop(), file, lint=False), 5))

    print(f"flow {flow.id} ({len(flow.steps)} steps, {len(flow.checks)} safety checks, "
          f"{proved.paths_checked} paths); FlowWatcher poll {args.interval:.2f} s")
    print(f"(a) baseline: load without the proof   median {base * 1000:7.1f} ms")
    print(f"(c) YAML parse                          median {parse * 1000:7.1f} ms")
    print(f"    build + validate, no proof          median {(base - parse) * 1000:7.1f} ms")
    print(f"    path walk (the proof), cold         median {walk * 1000:7.1f} ms "
          f"({walk / base:.1f}x the baseline)")
    print(f"    check_text, cold                    median {full * 1000:7.1f} ms "
          f"({full / base:.1f}x the baseline)")
    print(f"    check_text of a text edit           median {text_check * 1000:7.1f} ms "
          f"({text_check / base:.1f}x the baseline)")
    print(f"    check_text of a routing edit        median {routing_check * 1000:7.1f} ms "
          f"({routing_check / base:.1f}x the baseline)")

    # (b) end to end, text and routing edits interleaved
    texts, routes = text_edits(original), routing_edits(original)
    for _ in range(5):  # skip those check_text has seen above
        next(texts), next(routes)
    edits = [e for _ in range(args.repeat)
             for e in (("text", next(texts)), ("routing", next(routes)))]
    results = asyncio.run(end_to_end(original, edits, args.interval, seed=6))
    worst = 0.0
    for kind in ("text", "routing"):
        times = [t for k, t in results if k == kind]
        med, top = statistics.median(times), max(times)
        worst = max(worst, top)
        print(f"(b) save → live, {kind + ' edit':13}     median {med:6.2f} s, max {top:.2f} s "
              f"over {len(times)} ({med / base:.0f}x the baseline)")
    print(f"every valid edit live within {worst:.2f} s of the save; target < {TARGET:.0f} s: "
          f"{'met' if worst < TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
