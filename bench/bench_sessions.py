"""Answers per second through engine + session store, against the engine alone, in one run.

Usage: .venv/bin/python bench/bench_sessions.py [--patients N] [--rounds R] [--redis-url URL]
                                                [--flow FLOW] [--loop auto|uvloop|asyncio]

It runs as the bot runs (``bot.eventloop.run``): on the bot's event loop (``BOT_EVENT_LOOP``,
default ``auto``: uvloop where it is installed; ``--loop`` overrides it), which it names, and
with the bot's thresholds for the garbage collector.

One answer through a store = ``ConversationService.step``: the session (remembered from the
last write, or loaded), ``Engine.handle`` the input, compare-and-set save (with the update id
kept for dedup), as the Telegram channel does for every update (the channel then also writes
its message ids with ``update_meta``: the "+ meta" rows show that cost too). The engine alone
applies the same inputs to the same sessions, dict in / dict out, no store and no JSON.

Patients go through whole conversations: by default of the clinic's flow, one per case of
flows/tests/ (every disposition), else the demo flow's four. Two ways:
  one at a time   answer 1 of every patient, then answer 2, ...: each answer waits for the
                  last (the latency of one answer)
  N at once       every patient at once, each answering after their reply, as patients do:
                  the throughput of one process (the reads and writes made at the same time
                  go to Redis in one write)

Rows: answers/s (the median round, and the best), µs per answer (1 / answers/s), the store's
cost per answer (that minus the engine alone), the p99 latency of one answer, and the bytes
one finished session takes in the store (SQLite: the row, key + JSON + version + timestamp;
Redis: ``MEMORY USAGE`` of the key). Two rows without a store show the floor under every
store: the service's own work and the session's JSON ("no store"), and one wait for an answer
per save ("no store, awaited").

The baseline every store row is compared with is "engine alone, one at a time": the engine
driven through the same harness as the stores (a coroutine per answer), in the order patients
answering at once give their answers (answer 1 of every patient, then answer 2, ...; with a
store, patients answering at once move through their conversations together). It is not
measured with a task per patient: the engine never waits, so each task would run its whole
conversation in one go, and that order costs the engine 4-7 µs more per answer here (each
step's data is fetched for one patient at a time instead of for many in a row), which would
be charged to the engine instead of the store and make the store look cheaper than it is. The
bare loop row is the engine with no harness at all: against
it the store is also charged the harness's coroutine per answer (the "stricter" line). The
targets: on Redis the store costs less than the engine's own work per answer, and SQLite
sustains at least 1,000 answers/s. The load average is printed: the numbers mean little on a
busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_store import load_redis_helper  # noqa: E402

from bot import eventloop  # noqa: E402
from bot.channels.service import ConversationService, StepResult  # noqa: E402
from bot.engine import Back, Choose, Engine, Input, Start, Text  # noqa: E402
from bot.flow import load_flow  # noqa: E402
from bot.flow.model import Flow  # noqa: E402
from bot.storage import SessionStore  # noqa: E402
from bot.storage.base import encode_session_bytes, save_then_via  # noqa: E402
from bot.storage.memory import MemoryStore  # noqa: E402
from bot.storage.sqlite import SQLiteStore  # noqa: E402

Step = Callable[[str, Input, int], Awaitable[Any]]


def conversations(flow: Flow) -> list[list[Input]]:
    """Whole conversations through the flow, as engine inputs: for the demo flow, the four
    below; for another flow, one per case file case of that flow (flows/tests/), the taps a
    patient with those facts makes."""
    if flow.id != "demo":
        return case_conversations(flow)
    h = flow.hash[:8]

    def a(step: str, option: int) -> Choose:
        return Choose(step, option, "a", h)

    def t(step: str, option: int) -> Choose:
        return Choose(step, option, "t", h)

    def n(step: str) -> Choose:
        return Choose(step, 0, "n", h)

    def d(step: str) -> Choose:
        return Choose(step, 0, "d", h)

    return [
        # self care
        [Start("en"), n("red_flags"), a("bladder_check", 0), Text("30"), a("duration", 0),
         a("trend", 0), a("fever", 0), n("worries")],
        # routine, worried, with a back
        [Start("en"), n("red_flags"), a("bladder_check", 0), Text("50"), a("duration", 1),
         Back(), a("duration", 0), a("trend", 2), a("fever", 0), t("worries", 0),
         t("worries", 1), d("worries")],
        # urgent
        [Start("en"), n("red_flags"), a("bladder_check", 2), a("bladder_examples", 0),
         Text("45"), a("duration", 0), a("trend", 1), a("fever", 1), n("worries")],
        # emergency
        [Start("en"), t("red_flags", 2), d("red_flags")],
    ]


def case_conversations(flow: Flow) -> list[list[Input]]:
    from bot.casefiles import CaseResult, _coerce, _inputs_for, read_cases

    cases, problems = read_cases(sorted((ROOT / "flows" / "tests").glob("*.yaml")))
    engine = Engine(flow)
    out: list[list[Input]] = []
    for case in cases:
        if case.flow != flow.id:
            continue
        facts = {k: _coerce(flow.facts[k].type, v) if k in flow.facts else v
                 for k, v in case.facts.items()}
        inputs: list[Input] = [Start("en")]
        data, reply = engine.handle(None, Start("en"))
        while reply.outcome is None:
            q = flow.steps[data["step"]]
            step_inputs, _ = _inputs_for(flow, q, facts,  # type: ignore[arg-type]
                                         CaseResult(case, False))
            for inp in step_inputs:
                data, reply = engine.handle(data, inp)
            inputs += step_inputs
        out.append(inputs)
    if not out:
        raise SystemExit(f"no case files for flow {flow.id!r} in flows/tests/")
    return out


def workload(flow: Flow, patients: int) -> list[tuple[int, Input]]:
    """(patient, input) in the order answered: answer k of every patient, then k + 1."""
    convs = conversations(flow)
    scripts = [convs[p % len(convs)] for p in range(patients)]
    order: list[tuple[int, Input]] = []
    for k in range(max(len(s) for s in scripts)):
        order += [(p, s[k]) for p, s in enumerate(scripts) if k < len(s)]
    return order


def engine_alone(engine: Engine, order: list[tuple[int, Input]]) -> list[float]:
    """Seconds per answer: the engine alone, each session a dict carried from answer to
    answer (``handle`` takes the dict over and returns the next one)."""
    sessions: dict[int, dict[str, Any] | None] = {}
    out = []
    clock = time.perf_counter
    for patient, inp in order:
        started = clock()
        new, reply = engine.handle(sessions.get(patient), inp, lang="en")
        out.append(clock() - started)
        assert reply.changed
        sessions[patient] = new
    return out


async def through_store(service: ConversationService, prefix: str,
                        order: list[tuple[int, Input]], meta: bool,
                        update_ids: itertools.count[int]) -> list[float]:
    """Seconds per answer: ``ConversationService.step`` (plus ``update_meta`` if ``meta``)."""
    out: list[float] = []
    for patient, inp in order:
        await one_answer(service, f"{prefix}{patient}", inp, meta, next(update_ids), out)
    return out


async def one_answer(service: ConversationService, key: str, inp: Input, meta: bool, uid: int,
                     out: list[float]) -> None:
    """One answer as the channel gives it; its seconds are appended to ``out``."""
    started = time.perf_counter()
    res = await service.step(key, inp, update_id=uid, lang="en")
    if meta:
        await service.update_meta(key, res.version, {"qmsg": {"id": uid, "step": "x"}},
                                  replied=uid)
    out.append(time.perf_counter() - started)
    assert res.reply.changed and not res.duplicate


async def through_store_at_once(service: ConversationService, prefix: str,
                                order: list[tuple[int, Input]], meta: bool,
                                update_ids: itertools.count[int]) -> tuple[float, list[float]]:
    """Every patient at once, each answering in turn as a patient does (the next answer after
    the reply): (wall seconds for all answers, seconds per answer)."""
    scripts: dict[int, list[Input]] = {}
    for who, inp in order:
        scripts.setdefault(who, []).append(inp)
    out: list[float] = []
    clock = time.perf_counter

    async def patient(p: int, inputs: list[Input]) -> None:
        for inp in inputs:
            await one_answer(service, f"{prefix}{p}", inp, meta, next(update_ids), out)

    started = clock()
    await asyncio.gather(*(patient(p, inputs) for p, inputs in scripts.items()))
    return clock() - started, out


class EngineOnly:
    """The engine alone, driven the way the stores are (a coroutine per answer), so that the
    harness's own cost is in the baseline and not charged to a store:
    ``step`` applies the input to the patient's dict and returns the reply. No JSON, no
    update ids, nothing kept but the dict."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions: dict[str, dict[str, Any]] = {}

    async def step(self, key: str, inp: Input, *, update_id: int | None = None,
                   lang: str | None = None) -> StepResult:
        new, reply = self.engine.handle(self.sessions.get(key), inp, lang=lang)
        self.sessions[key] = new
        return StepResult(reply, new, 0)


class NoStore:
    """The floor under every store: the service's own work and the session's JSON (encoded
    as every store encodes it), with nothing kept and nothing to wait for."""

    async def load(self, key: str) -> tuple[dict[str, Any] | None, int]:
        return None, 0

    async def save(self, key: str, data: dict[str, Any], expected_version: int,
                   audit: Any = None) -> int:
        encode_session_bytes(key, data)
        return expected_version + 1

    def save_or_current(self, key: str, data: dict[str, Any], expected_version: int,
                        audit: Any = None) -> Awaitable[int]:
        return self.save(key, data, expected_version, audit)  # (never a conflict here)

    def save_then(self, key: str, data: dict[str, Any], expected_version: int, audit: Any,
                  then: Callable[[Any, Any], Any], arg: Any) -> Awaitable[Any]:
        return save_then_via(self, key, data, expected_version, audit, then, arg)

    async def check(self) -> None:
        pass

    async def close(self) -> None:
        pass


class NoStoreAwaited(NoStore):
    """The same, with one wait for an answer per save (any store with a server has one),
    answered the way the Redis pipe answers: the saves made in one pass of the event loop
    are answered together by one callback in the next (as replies arriving in one chunk),
    which hands each outcome to the service's ``then`` (``SessionStore.save_then``)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[asyncio.Future[Any], int, Callable[[Any, Any], Any],
                                 Any]] = []

    def save_then(self, key: str, data: dict[str, Any], expected_version: int, audit: Any,
                  then: Callable[[Any, Any], Any], arg: Any) -> Awaitable[Any]:
        encode_session_bytes(key, data)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if not self.waiting:
            loop.call_soon(self.answer_all)
        self.waiting.append((answer, expected_version + 1, then, arg))
        return answer

    def answer_all(self) -> None:
        waiting, self.waiting = self.waiting, []
        for answer, version, then, arg in waiting:
            answer.set_result(then(version, arg))  # (never a conflict here: never a Later)


async def session_bytes(store: SessionStore, keys: list[str]) -> int | None:
    """The median bytes a session takes in ``store``."""
    sizes: list[int] = []
    for key in keys:
        if isinstance(store, MemoryStore):
            sizes.append(len(store._data.sessions[key].text.encode()))
            continue
        if isinstance(store, SQLiteStore):
            size = store.stored_bytes(key)
        else:
            sizer = getattr(store, "stored_bytes", None)
            if sizer is None:
                return None
            size = await sizer(key)
        if size is not None:
            sizes.append(size)
    return int(statistics.median(sizes)) if sizes else None


BASELINE = "engine alone, one at a time"  # the row every store row is compared with


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def run(patients: int, rounds: int, redis_url: str | None, flow_path: str) -> int:
    flow, problems = load_flow(flow_path)
    if flow is None:
        for p in problems:
            print(p)
        return 1
    engine = Engine(flow)
    order = workload(flow, patients)
    load_before = os.getloadavg()
    print(f"{flow_path}: {patients} patients, {len(order)} answers per round, {rounds} rounds, "
          f"on the {eventloop.name(asyncio.get_running_loop())} event loop; load average "
          f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} on {os.cpu_count()} "
          f"CPUs")

    server = None
    if redis_url is None:
        helper = load_redis_helper()
        if helper.redis_server_available():
            server = helper.start_redis_server()
            redis_url = server.url
    tmp = tempfile.TemporaryDirectory(prefix="bench-sessions-")
    stores: dict[str, Any] = {
        "no store": NoStore(),
        "no store, awaited": NoStoreAwaited(),
        "sqlite": SQLiteStore(Path(tmp.name) / "sessions.db"),
    }
    if redis_url is not None:
        from bot.storage.redis_store import RedisStore

        stores["redis"] = RedisStore(redis_url, prefix="bench:")
    modes = [("one at a time", False), (f"{patients} at once", True)]
    rows: list[tuple[str, str, bool, bool]] = []  # (row, store, meta, at once)
    rows.append((BASELINE, "engine", False, False))
    for name in stores:
        for meta in (False, True):
            if meta and name.startswith("no store"):
                continue
            for label, at_once in modes:
                if name == "no store" and at_once or name == "no store, awaited" and not at_once:
                    continue  # (without a wait, "at once" would be one patient after another)
                rows.append((f"{name}{' + meta' if meta else ''}, {label}", name, meta, at_once))
    names = ["engine alone (bare loop)", *(r[0] for r in rows)]
    latencies: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    sizes: dict[str, int | None] = {}
    update_ids = itertools.count(1)
    try:
        for store in stores.values():
            await store.check()
        for rnd in range(-1, rounds):  # round -1 warms up
            gc.collect()
            values = engine_alone(engine, order)
            results = {"engine alone (bare loop)": (sum(values), values)}
            for i, (row, name, meta, at_once) in enumerate(rows):
                store = stores.get(name)
                service: Any = (EngineOnly(engine) if store is None
                                else ConversationService(engine, store))
                prefix = f"r{rnd}x{i}:"
                if at_once:
                    results[row] = await through_store_at_once(service, prefix, order, meta,
                                                               update_ids)
                else:
                    values = await through_store(service, prefix, order, meta, update_ids)
                    results[row] = (sum(values), values)
                if rnd == rounds - 1 and not at_once and store is not None:
                    keys = [f"{prefix}{p}" for p in range(patients)]
                    sizes[row] = await session_bytes(store, keys)
            if rnd < 0:
                continue
            for row, (wall, values) in results.items():
                latencies[row] += values
                rates[row].append(len(values) / wall)
    finally:
        for store in stores.values():
            await store.close()
        tmp.cleanup()
        if server is not None:
            server.stop()

    cost = {row: 1e6 / statistics.median(rates[row]) for row in names}  # µs per answer

    header = ("", "answers/s", "best round", "µs/answer", "store µs/answer", "p99 latency µs",
              "bytes/session")
    table = []
    for row in names:
        us = cost[row]
        store_cell = "-" if row.startswith("engine") else f"{us - cost[BASELINE]:.1f}"
        size = sizes.get(row)
        table.append((row, f"{statistics.median(rates[row]):,.0f}", f"{max(rates[row]):,.0f}",
                      f"{us:.1f}", store_cell, f"{p99(latencies[row]) * 1e6:,.0f}",
                      "-" if size is None else f"{size:,}"))
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for line in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))))
    load_after = os.getloadavg()
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")

    ok = True
    together = modes[1][0]
    engine_us = cost[BASELINE]
    service_us = cost["no store, one at a time"] - engine_us
    waited_us = cost[f"no store, awaited, {together}"] - cost["no store, one at a time"]
    print(f"the engine alone: {engine_us:.1f} µs per answer through the harness (in a bare "
          f"loop, {cost['engine alone (bare loop)']:.1f} µs)")
    print(f"under every store: the service's own work and the session's JSON {service_us:.1f} "
          f"µs per answer; one wait for an answer, {together}, {waited_us:.1f} µs")
    if "redis" in stores:
        for label, _ in modes:
            store_us = cost[f"redis, {label}"] - engine_us
            print(f"Redis, {label}: the store costs {store_us:.1f} µs per answer, the engine "
                  f"{engine_us:.1f} µs ({store_us / engine_us:.2f}x)")
        redis_us = cost[f"redis, {together}"] - cost[f"no store, awaited, {together}"]
        print(f"  of which Redis itself (the round trip, packing and parsing): {redis_us:.1f} µs")
        bare_us = cost["engine alone (bare loop)"]
        strict_us = cost[f"redis, {together}"] - bare_us
        print(f"  stricter: against the engine in a bare loop (the harness's coroutine per "
              f"answer charged to the store) the store costs {strict_us:.1f} µs, the engine "
              f"{bare_us:.1f} µs ({strict_us / bare_us:.2f}x)")
        store_us = cost[f"redis, {together}"] - engine_us
        met = store_us < engine_us
        ok &= met
        print(f"target: on Redis the store costs less than the engine per answer, patients "
              f"answering at once as they do: {'met' if met else 'NOT met'}")
    else:
        print("target: on Redis the store costs less than the engine per answer: not measured "
              "(no redis-server; pass --redis-url)")
    sqlite_rate = min(statistics.median(rates[f"sqlite, {label}"]) for label, _ in modes)
    met = sqlite_rate >= 1000
    ok &= met
    print(f"target: SQLite sustains >= 1,000 answers/s (median round, slower mode): "
          f"{sqlite_rate:,.0f}: {'met' if met else 'NOT met'}")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--patients", type=int, default=200, help="sessions per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    parser.add_argument("--flow", default=str(ROOT / "flows" / "back_spasm.yaml"),
                        help="the flow (default: the clinic's; flows/demo.yaml is smaller)")
    parser.add_argument("--loop", choices=eventloop.CHOICES,
                        default=os.environ.get("BOT_EVENT_LOOP") or "auto",
                        help="the event loop, as BOT_EVENT_LOOP (default: the bot's)")
    args = parser.parse_args()
    sys.exit(eventloop.run(run(args.patients, args.rounds, args.redis_url, args.flow),
                           args.loop))


if __name__ == "__main__":
    main()
