"""Measure load+save round trips of a realistic session on each session store backend.

Usage: .venv/bin/python bench/bench_store.py [--rounds N] [--redis-url URL]

One round trip = ``load(key)`` then ``save(key, changed, version)``, as the bot does for
every update. Prints, per backend: round trips per second, microseconds per round trip
(median and p99), and the bytes one session takes in the store (memory: the JSON text;
SQLite: the stored row - key + JSON + version + timestamp; Redis: ``MEMORY USAGE`` of the
key). Without ``--redis-url`` a throw-away redis-server is started (skipped if missing).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.storage import SessionStore  # noqa: E402
from bot.storage.memory import MemoryStore  # noqa: E402
from bot.storage.sqlite import SQLiteStore  # noqa: E402

KEY = "tg:123456789"


def realistic_session() -> dict[str, Any]:
    """A mid-conversation session: ~30 facts and a history of 15 answered questions."""
    facts: dict[str, Any] = {
        "age": 54,
        "sex": "female",
        "pain_score": 7,
        "pain_duration_weeks": 6,
        "pain_location": "lower_back",
        "radiating_leg_pain": True,
        "leg_pain_side": "left",
        "numbness": True,
        "numbness_area": "left_foot",
        "weakness": False,
        "saddle_anaesthesia": False,
        "bladder_dysfunction": False,
        "bowel_dysfunction": False,
        "fever": False,
        "weight_loss": False,
        "cancer_history": False,
        "trauma": False,
        "night_pain": True,
        "steroid_use": False,
        "iv_drug_use": False,
        "previous_spine_surgery": False,
        "walking_distance_m": 500,
        "gp_seen": True,
        "imaging_done": "none",
        "painkillers": ["ibuprofen", "paracetamol"],
        "work_status": "sick_leave",
        "sleep_affected": True,
        "preferred_language": "en",
        "consent_given": True,
        "contact_window": "mornings",
    }
    history = [
        {
            "node": f"q_{name}",
            "answer": str(value),
            "at": 1_700_000_000.0 + 30 * i,
        }
        for i, (name, value) in enumerate(list(facts.items())[:15])
    ]
    return {
        "flow": "low-back-pain",
        "flow_version": "2024-05-01.3",
        "state": "q_walking_distance",
        "started_at": 1_700_000_000.0,
        "facts": facts,
        "history": history,
        "lang": "en",
    }


async def measure(store: SessionStore, rounds: int, warmup: int) -> list[float]:
    """Return the duration of each load+save round trip, in microseconds."""
    await store.delete(KEY)
    if await store.save(KEY, realistic_session(), 0) is None:
        raise RuntimeError("could not create the benchmark session")
    timings: list[float] = []
    clock = time.perf_counter_ns
    for i in range(warmup + rounds):
        started = clock()
        data, version = await store.load(KEY)
        assert data is not None
        data["facts"]["pain_score"] = i % 10
        if await store.save(KEY, data, version) is None:
            raise RuntimeError("unexpected conflict in a single-writer benchmark")
        if i >= warmup:
            timings.append((clock() - started) / 1000)
    return timings


async def stored_bytes(store: SessionStore) -> int | None:
    if isinstance(store, MemoryStore):
        return len(store._data.sessions[KEY].text.encode())
    if isinstance(store, SQLiteStore):
        return store.stored_bytes(KEY)
    sizer = getattr(store, "stored_bytes", None)
    if sizer is None:
        return None
    size: int | None = await sizer(KEY)
    return size


def load_redis_helper() -> ModuleType:
    """Import tests/storage/redis_server.py by path (site-packages may own ``tests``)."""
    path = ROOT / "tests" / "storage" / "redis_server.py"
    spec = importlib.util.spec_from_file_location("_bench_redis_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def run(rounds: int, warmup: int, redis_url: str | None) -> None:
    session_json = json.dumps(realistic_session(), separators=(",", ":"), ensure_ascii=False)
    print(
        f"session: {len(session_json.encode())} bytes of JSON, "
        f"{len(realistic_session()['facts'])} facts, "
        f"{len(realistic_session()['history'])} history entries; "
        f"{rounds} load+save round trips after {warmup} warm-up"
    )
    rows: list[tuple[str, str, str, str, str]] = []
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        backends: list[tuple[str, Any]] = [
            ("memory", lambda: MemoryStore()),
            ("sqlite", lambda: SQLiteStore(Path(tmp) / "sessions.db")),
        ]
        if redis_url is None:
            helper = load_redis_helper()
            if helper.redis_server_available():
                server = helper.start_redis_server()
                redis_url = server.url
        if redis_url is not None:
            from bot.storage.redis_store import RedisStore

            url = redis_url
            backends.append(("redis", lambda: RedisStore(url, prefix="bench:")))
        else:
            rows.append(("redis", "skipped", "-", "-", "redis-server not on PATH"))
        try:
            for name, make in backends:
                store: SessionStore = make()
                try:
                    await store.check()
                    timings = await measure(store, rounds, warmup)
                    size = await stored_bytes(store)
                    await store.delete(KEY)
                finally:
                    await store.close()
                total_s = sum(timings) / 1e6
                p99 = statistics.quantiles(timings, n=100)[98]
                rows.insert(
                    len([r for r in rows if r[1] != "skipped"]),
                    (
                        name,
                        f"{len(timings) / total_s:,.0f}",
                        f"{statistics.median(timings):.1f}",
                        f"{p99:.1f}",
                        "-" if size is None else f"{size:,}",
                    ),
                )
        finally:
            if server is not None:
                server.stop()
    header = ("backend", "round trips/s", "median us", "p99 us", "bytes/session")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5000, help="measured round trips")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured round trips first")
    parser.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.warmup, args.redis_url))


if __name__ == "__main__":
    main()
