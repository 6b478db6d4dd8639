"""The event loop the bot runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv, in C) runs the same asyncio code with less of the process's time per callback,
per wake-up of a waiting task and per socket read or write: most of what a session store
with a server costs per answer beyond the session's JSON. With Redis, measured by
``bench/bench_sessions.py`` on 2 cores: one answer at a time takes 133-138 µs of store time
instead of 152-160, and waiting for replies with 200 patients at once 13 µs per answer
instead of 15.

``BOT_EVENT_LOOP`` chooses: ``auto`` (the default: uvloop if it can be imported, as it is on
Linux and macOS where the project installs it, else asyncio), ``uvloop`` (start-up stops with
one line if it is missing) or ``asyncio`` (asyncio's own loop, always there: the way back if
uvloop ever misbehaves).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHOICES = ("auto", "uvloop", "asyncio")

GC_THRESHOLD = (10_000, 20, 20)
"""The collector's thresholds while the bot runs, instead of Python's (700, 10, 10).

Every answer allocates a few hundred objects (the engine's, the session's, the store's) and
frees almost all of them at once, and while many patients' answers wait on the store the
young objects of each stay alive a little longer: at 700 the collector runs every few
answers and goes through all of those each time. ``bench/bench_sessions.py`` (Redis, 200
patients at once): 0.3-0.7 µs less per answer, most of it inside the engine's own step.
Unreachable cycles (rare here: sessions are plain dicts and lists) are still collected,
after 10,000 allocations instead of 700."""


class EventLoopError(RuntimeError):
    """``BOT_EVENT_LOOP`` asks for a loop this machine cannot give (one line)."""


def loop_factory(choice: str = "auto") -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop ``choice`` gives here: (its name, a function making a new one)."""
    if choice not in CHOICES:
        raise EventLoopError(f"BOT_EVENT_LOOP={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise EventLoopError("BOT_EVENT_LOOP=uvloop but uvloop is not installed "
                                     "(pip install uvloop; it exists for Linux and macOS), or "
                                     "set BOT_EVENT_LOOP=asyncio") from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return "uvloop", factory
    return "asyncio", asyncio.new_event_loop


def name(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop"`` or ``"asyncio"``: whose loop ``loop`` is (for the log and the benchmarks)."""
    return type(loop).__module__.split(".")[0]


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` gives (see the module's doc), with the
    collector's thresholds at ``GC_THRESHOLD`` meanwhile."""
    try:
        _, factory = loop_factory(choice)
    except EventLoopError:
        main.close()  # never awaited: say nothing more of it
        raise
    threshold = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*threshold)
