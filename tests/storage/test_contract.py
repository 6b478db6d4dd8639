"""The SessionStore contract, run against every backend (memory, SQLite file, real Redis)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage import CorruptSession, SessionStore, StoreClosed

from .backends import Backend, FakeClock
from .workers import increment_worker

KEY = "tg:12345"
DAY = 24 * 3600.0

SESSION: dict[str, Any] = {
    "flow": "back-pain@3",
    "state": "q_red_flags",
    "facts": {"age": 54, "pain_score": 7.5, "numbness": True, "onset": None, "name": "Zoë ✓"},
    "history": [{"node": "q_age", "answer": "54"}, {"node": "q_pain", "answer": [1, 2]}],
    "empty": {},
}


async def test_store_satisfies_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.make(), SessionStore)


async def test_missing_session_loads_as_none_and_version_zero(backend: Backend) -> None:
    assert await backend.make().load(KEY) == (None, 0)


async def test_round_trip_and_versions_count_up(backend: Backend) -> None:
    store = backend.make()
    first = await store.save(KEY, SESSION, 0)
    assert isinstance(first, int) and first > 0
    assert await store.load(KEY) == (SESSION, first)
    changed = {**SESSION, "state": "q_bladder"}
    assert await store.save(KEY, changed, first) == first + 1
    assert await store.load(KEY) == (changed, first + 1)
    assert await store.load("tg:other") == (None, 0)


async def test_a_session_made_again_never_takes_an_old_version(backend: Backend) -> None:
    """After /forget (delete) or expiry, the chat's new session must not reach a version the
    old one had: whoever still holds that version (another instance's remembered copy)
    would overwrite the new session with the old one's answers."""
    clock = FakeClock()
    store = backend.make(clock=clock, ttl_seconds=1000)

    async def two_writes(data: dict[str, int]) -> list[int]:
        first = await store.save(KEY, data, 0)
        assert first
        assert await store.save(KEY, data, first) == first + 1
        return [first, first + 1]

    old = await two_writes({"life": 1})
    await store.delete(KEY)
    new = await two_writes({"life": 2})
    assert not set(old) & set(new)
    for version in old:  # the old session's holder: a conflict, never a write
        assert await store.save_or_current(KEY, {"life": 1}, version) == ({"life": 2}, new[-1])
    clock.advance(1001)  # expired: made again, and again no old version
    again = await store.save(KEY, {"life": 3}, 0)
    assert again not in old + new
    assert await store.save(KEY, {"life": 2}, new[-1]) is None
    assert await store.load(KEY) == ({"life": 3}, again)


async def test_loaded_session_is_a_copy(backend: Backend) -> None:
    store = backend.make()
    await store.save(KEY, {"facts": {"age": 54}}, 0)
    data, _ = await store.load(KEY)
    assert data is not None
    data["facts"]["age"] = 99
    assert (await store.load(KEY))[0] == {"facts": {"age": 54}}


async def test_save_with_a_stale_or_wrong_version_is_a_conflict(backend: Backend) -> None:
    store = backend.make()
    assert await store.save(KEY, {"n": 1}, 5) is None  # absent: only 0 matches
    first = await store.save(KEY, {"n": 1}, 0)
    assert first
    assert await store.save(KEY, {"n": 2}, 0) is None  # exists: 0 no longer matches
    assert await store.save(KEY, {"n": 2}, first + 1) is None
    assert await store.load(KEY) == ({"n": 1}, first)


async def test_two_writers_with_the_same_expected_version_exactly_one_wins(
    backend: Backend,
) -> None:
    first, second = backend.make(), backend.make()
    expected = 0
    for _ in range(2):
        results = await asyncio.gather(
            first.save(KEY, {"writer": "first"}, expected),
            second.save(KEY, {"writer": "second"}, expected),
        )
        assert results.count(None) == 1  # exactly one wins
        version = results[0] or results[1]
        assert version and (expected == 0 or version == expected + 1)
        winner = "first" if results[0] is not None else "second"
        assert await first.load(KEY) == ({"writer": winner}, version)
        assert await second.load(KEY) == ({"writer": winner}, version)
        expected = version


async def test_a_conflict_can_say_what_is_stored(backend: Backend) -> None:
    store = backend.make()
    assert await store.save_or_current(KEY, {"n": 1}, 5) == (None, 0)  # absent
    first = await store.save_or_current(KEY, {"n": 1}, 0)
    assert isinstance(first, int) and first > 0
    assert await store.save_or_current(KEY, {"n": 2}, 0) == ({"n": 1}, first)  # exists
    assert await store.save_or_current(KEY, {"n": 2}, first + 7) == ({"n": 1}, first)
    assert await store.save_or_current(KEY, {"n": 2}, first) == first + 1
    assert await store.load(KEY) == ({"n": 2}, first + 1)


async def test_the_loser_of_a_race_gets_the_winners_session(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    v = await first.save(KEY, {"writer": None}, 0)
    assert v
    results = await asyncio.gather(first.save_or_current(KEY, {"writer": "first"}, v),
                                   second.save_or_current(KEY, {"writer": "second"}, v))
    assert results.count(v + 1) == 1  # exactly one wins
    winner, lost = ("first", results[1]) if results[0] == v + 1 else ("second", results[0])
    assert lost == ({"writer": winner}, v + 1)


async def test_a_conflict_over_an_expired_or_corrupt_session(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.make(clock=clock, ttl_seconds=1000)
    old = await store.save(KEY, {"old": True}, 0)
    assert old
    clock.advance(1001)
    assert await store.save_or_current(KEY, {"new": True}, old) == (None, 0)  # gone
    assert isinstance(await store.save_or_current(KEY, {"new": True}, 0), int)
    await backend.corrupt(KEY, b'{"not json')
    with pytest.raises(CorruptSession):
        await store.save_or_current(KEY, {"n": 1}, 9)


async def test_save_then_hands_each_outcome_to_its_callback(backend: Backend) -> None:
    from bot.storage.base import Later

    store = backend.make()
    seen: list[Any] = []

    def then(outcome: Any, arg: str) -> Any:
        seen.append((arg, outcome))
        if arg == "later":  # the answer needs more waiting: the awaitable's result counts
            return Later(store.save_or_current(KEY, {"n": 3}, outcome[1]))
        return arg

    assert await store.save_then(KEY, {"n": 1}, 0, None, then, "saved") == "saved"
    first = seen[0][1]
    assert isinstance(first, int) and first > 0
    assert await store.save_then(KEY, {"n": 2}, 0, None, then, "conflict") == "conflict"
    assert await store.save_then(KEY, {"n": 2}, 0, None, then, "later") == first + 1
    assert await store.load(KEY) == ({"n": 3}, first + 1)
    await backend.corrupt(KEY, b'{"not json')
    assert await store.save_then(KEY, {"n": 4}, 9, None, then, "corrupt") == "corrupt"
    assert seen[1:3] == [("conflict", ({"n": 1}, first)), ("later", ({"n": 1}, first))]
    assert isinstance(seen[3][1], CorruptSession)


async def _increment(store: SessionStore, times: int) -> int:
    """Add 1 ``times`` times with re-read-and-retry; return how many conflicts it hit."""
    done = conflicts = 0
    while done < times:
        data, version = await store.load(KEY)
        count = data["count"] if data else 0
        await asyncio.sleep(0)  # let the other tasks read the same version
        if await store.save(KEY, {"count": count + 1}, version) is None:
            conflicts += 1
        else:
            done += 1
    return conflicts


async def test_concurrent_increments_from_many_tasks_lose_nothing(backend: Backend) -> None:
    stores = [backend.make(), backend.make()]
    start = await stores[0].save(KEY, {"count": 0}, 0)
    assert start
    conflicts = await asyncio.gather(*(_increment(stores[i % 2], 10) for i in range(10)))
    assert await stores[0].load(KEY) == ({"count": 100}, start + 100)  # one version each
    assert sum(conflicts) > 0  # the tasks really did race


async def test_concurrent_increments_from_two_processes_lose_nothing(backend: Backend) -> None:
    if backend.setting is None:
        pytest.skip(f"the {backend.name} store lives in one process")
    prefix = getattr(backend, "prefix", "")
    start = await backend.make().save(KEY, {"count": 0}, 0)
    assert start
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    times = 100
    workers = [
        context.Process(
            target=increment_worker, args=(backend.setting, prefix, KEY, times, barrier, results)
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    try:
        outcomes = [await asyncio.to_thread(results.get, True, 60) for _ in workers]
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.join, 10)
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert [done for done, _ in outcomes] == [times, times]
    assert await backend.make().load(KEY) == ({"count": 2 * times}, start + 2 * times)


async def test_mark_update_is_true_only_the_first_time(backend: Backend) -> None:
    store = backend.make()
    assert await store.mark_update(1001) is True
    assert await store.mark_update(1001) is False
    assert await store.mark_update(1002) is True
    assert await backend.make().mark_update(1001) is False


async def test_mark_update_is_atomic_under_concurrency(backend: Backend) -> None:
    stores = [backend.make(), backend.make()]
    marks = await asyncio.gather(*(stores[i % 2].mark_update(777) for i in range(30)))
    assert marks.count(True) == 1


async def test_mark_update_forgets_after_its_ttl(backend: Backend) -> None:
    clock = FakeClock()
    if backend.real_time_markers:  # Redis expires markers by its own clock
        store = backend.make(clock=clock, seen_ttl_seconds=0.05)
        assert await store.mark_update(42) is True
        await asyncio.sleep(0.12)
    else:
        store = backend.make(clock=clock)
        assert await store.mark_update(42) is True
        clock.advance(DAY - 1)
        assert await store.mark_update(42) is False
        clock.advance(2)
    assert await store.mark_update(42) is True
    assert await store.mark_update(42) is False


async def test_delete_removes_the_session_and_its_audit_only(backend: Backend) -> None:
    store = backend.make()
    await store.save(KEY, SESSION, 0)
    other = await store.save("tg:other", {"keep": True}, 0)
    await store.add_audit({"key": KEY, "started_at": 10.0, "ended_at": 20.0, "outcome": "gp"})
    await store.add_audit({"key": "tg:other", "started_at": 11.0, "ended_at": 21.0})
    await store.add_audit({"key": KEY, "started_at": 30.0, "ended_at": 40.0, "outcome": "er"})
    await store.mark_update(5)

    await store.delete(KEY)

    assert await store.load(KEY) == (None, 0)
    assert await store.load("tg:other") == ({"keep": True}, other)
    assert await store.audit() == [{"key": "tg:other", "started_at": 11.0, "ended_at": 21.0}]
    await store.delete(KEY)  # deleting what is not there is fine
    await store.delete("tg:never")
    assert await store.save(KEY, {"fresh": 1}, 0)


async def test_audit_returns_records_since_a_time_oldest_first(backend: Backend) -> None:
    store = backend.make()
    late = {"key": "tg:1", "started_at": 100.0, "ended_at": 300.0, "outcome": "routine"}
    early = {"key": "tg:2", "started_at": 50.0, "ended_at": 150.0, "outcome": "urgent"}
    open_ = {"key": "tg:3", "started_at": 200.0}
    for record in (late, early, open_):
        await store.add_audit(record)
    assert await store.audit() == [early, open_, late]
    assert await store.audit(since=150.0) == [early, open_, late]
    assert await store.audit(since=150.5) == [open_, late]
    assert await store.audit(since=300.5) == []


async def test_identical_audit_records_are_all_kept(backend: Backend) -> None:
    store = backend.make()
    record = {"key": KEY, "started_at": 1.0, "ended_at": 2.0}
    await store.add_audit(record)
    await store.add_audit(record)
    assert await store.audit() == [record, record]


async def test_audit_record_needs_a_key(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(ValueError, match=r"^audit record needs a non-empty str 'key'"):
        await store.add_audit({"started_at": 1.0})


async def test_ttl_hides_an_inactive_session_and_expire_deletes_it(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.make(clock=clock, ttl_seconds=1000)
    v = await store.save(KEY, {"n": 1}, 0)
    recent = await store.save("tg:recent", {"n": 1}, 0)
    assert v and recent
    clock.advance(999)
    assert await store.load(KEY) == ({"n": 1}, v)  # still there; loading refreshes nothing
    assert await store.save("tg:recent", {"n": 2}, recent) == recent + 1  # saving does
    recent += 1
    clock.advance(2)
    assert await store.load(KEY) == (None, 0)  # hidden before expire() runs
    assert await store.load("tg:recent") == ({"n": 2}, recent)

    removed = await store.expire()
    assert removed == (0 if backend.name == "redis" else 1)  # Redis expires keys itself
    assert await store.load(KEY) == (None, 0)
    assert await store.load("tg:recent") == ({"n": 2}, recent)
    assert await store.expire() == 0


async def test_expired_session_counts_as_absent_for_save(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.make(clock=clock, ttl_seconds=1000)
    old = await store.save(KEY, {"old": True}, 0)
    assert old
    clock.advance(1001)
    assert await store.save(KEY, {"old": True}, old) is None  # the old version is gone
    new = await store.save(KEY, {"new": True}, 0)
    assert new
    assert await store.load(KEY) == ({"new": True}, new)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"not json', "invalid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
    ],
)
async def test_corrupt_stored_data_raises_corrupt_session(
    backend: Backend, raw: bytes, reason: str
) -> None:
    store = backend.make()
    await store.save(KEY, SESSION, 0)
    await backend.corrupt(KEY, raw)
    with pytest.raises(CorruptSession) as caught:
        await store.load(KEY)
    message = str(caught.value)
    assert message.startswith(f"stored session '{KEY}' in the ")
    assert message.endswith("; delete it to start the conversation over")
    if not (backend.name == "memory" and reason == "not UTF-8"):  # memory holds text
        assert reason in message
    assert caught.value.key == KEY
    assert "garbage" not in message and "not json" not in message  # no contents

    await store.delete(KEY)
    assert await store.load(KEY) == (None, 0)
    assert await store.save(KEY, SESSION, 0)


async def test_save_refuses_data_that_is_not_json(backend: Backend) -> None:
    store = backend.make()
    v = await store.save(KEY, {"ok": 1}, 0)
    assert v
    with pytest.raises(TypeError, match=r"^session 'tg:12345' is not JSON-serialisable: "):
        await store.save(KEY, {"when": {1, 2}}, v)
    with pytest.raises(TypeError, match=r"^session 'tg:12345' is not JSON-serialisable: "):
        await store.save(KEY, {"facts": {1: True}}, v)  # a number key would come back a str
    with pytest.raises(TypeError, match=r"^session 'tg:12345' is not JSON-serialisable: "
                                        r"Integer exceeds 64-bit range"):
        await store.save(KEY, {"n": 2**64}, v)
    if backend.name == "memory":  # the tests' double refuses what a real store would change
        with pytest.raises(TypeError, match=r"^session 'tg:12345' does not survive a JSON "
                                            r"round trip: at score a float came back"):
            await store.save(KEY, {"score": float("nan")}, v)
    with pytest.raises(TypeError, match=r"^session 'tg:12345' must be a dict, not list$"):
        await store.save(KEY, [1], v)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^expected_version must be >= 0, got -1$"):
        await store.save(KEY, {}, -1)
    assert await store.load(KEY) == ({"ok": 1}, v)


async def test_check_passes_on_a_usable_store(backend: Backend) -> None:
    await backend.make().check()


async def test_store_cannot_be_used_after_close(backend: Backend) -> None:
    store = backend.make()
    v = await store.save(KEY, {"n": 1}, 0)
    await store.close()
    with pytest.raises(StoreClosed, match=r"session store.* is closed$"):
        await store.load(KEY)
    await store.close()  # closing twice is fine
    assert await backend.make().load(KEY) == ({"n": 1}, v)  # the data outlives the handle


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)  # orjson's range
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=8), key=st.text(min_size=1))
async def test_any_json_object_round_trips_exactly(
    backend: Backend, data: dict[str, Any], key: str
) -> None:
    store = backend.stores[0] if backend.stores else backend.make()
    await store.delete(key)
    saved = await store.save(key, data, 0)
    loaded, version = await store.load(key)
    assert saved and version == saved
    assert json.dumps(loaded) == json.dumps(data)  # same types, values and key order


async def test_audit_records_filed_at_the_same_time_keep_their_order(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.make(clock=clock)
    records = [{"key": f"tg:{i}", "ended_at": 7.0, "n": i} for i in range(5)]
    for record in records:
        clock.advance(0.001)
        await store.add_audit(record)
    assert await store.audit() == records


async def test_a_save_with_an_audit_record_writes_both_or_neither(backend: Backend) -> None:
    store = backend.make()
    record = {"key": KEY, "ended_at": 100.0, "disposition": "urgent", "rule": "U1"}
    v = await store.save(KEY, {"n": 1}, 0, audit=record)
    assert v
    # a lost compare-and-set writes no record either
    assert await store.save(KEY, {"n": 2}, 0, audit={"key": KEY, "ended_at": 101.0}) is None
    assert await store.save(KEY, {"n": 2}, v) == v + 1  # and a save without one adds none
    assert await store.audit() == [record]
    assert await store.load(KEY) == ({"n": 2}, v + 1)
    await store.delete(KEY)  # /forget: the record goes with the session
    assert await store.audit() == []
    await store.close()
