"""``sessions()``: every live session, on every backend; expired and corrupt ones skipped."""

from __future__ import annotations

from bot.storage import SessionStore

from .backends import Backend, FakeClock

DAY = 24 * 3600.0


def _s(step: str) -> dict[str, object]:
    return {"step": step, "facts": {"age": 54}, "history": [{"step": "q1", "answer": 0}]}


async def test_lists_every_live_session(backend: Backend) -> None:
    store: SessionStore = backend.make()
    assert await store.sessions() == []
    await store.save("tg:1", _s("q1"), 0)
    v = await store.save("tg:2", _s("q2"), 0)
    assert v and await store.save("tg:2", _s("q3"), v)
    assert sorted(await store.sessions()) == [("tg:1", _s("q1")), ("tg:2", _s("q3"))]


async def test_another_handle_sees_the_same_sessions(backend: Backend) -> None:
    await backend.make().save("tg:1", _s("q1"), 0)
    assert await backend.make().sessions() == [("tg:1", _s("q1"))]


async def test_keys_with_glob_characters_are_listed_as_they_are(backend: Backend) -> None:
    store = backend.make()
    for key in ("tg:[1]", "tg:*", "tg:a?b", "ключ ✓"):
        await store.save(key, _s("q1"), 0)
    assert sorted(k for k, _ in await store.sessions()) == ["tg:*", "tg:[1]", "tg:a?b", "ключ ✓"]


async def test_expired_sessions_are_not_listed(backend: Backend) -> None:
    clock = FakeClock()
    store = backend.make(clock=clock, ttl_seconds=DAY)
    await store.save("tg:old", _s("q1"), 0)
    clock.advance(DAY / 2)
    await store.save("tg:new", _s("q2"), 0)
    clock.advance(DAY / 2 + 1)
    assert await store.sessions() == [("tg:new", _s("q2"))]


async def test_corrupt_sessions_are_skipped(backend: Backend) -> None:
    store = backend.make()
    await store.save("tg:bad", _s("q1"), 0)
    await store.save("tg:good", _s("q2"), 0)
    await backend.corrupt("tg:bad", b"\xff not json")
    assert await store.sessions() == [("tg:good", _s("q2"))]


async def test_deleted_sessions_are_not_listed(backend: Backend) -> None:
    store = backend.make()
    await store.save("tg:1", _s("q1"), 0)
    await store.delete("tg:1")
    assert await store.sessions() == []
