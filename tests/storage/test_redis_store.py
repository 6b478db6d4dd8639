"""Redis specifics: key namespacing, native TTLs, and Lua compare-and-set on odd values."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.storage import CorruptSession
from bot.storage.redis_store import RedisStore, redacted_url

DAY_MS = 24 * 3600 * 1000


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


async def test_everything_lives_under_the_prefix(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    await store.save("tg:1", {"n": 1}, 0)
    await store.mark_update(9)
    await store.add_audit({"key": "tg:1", "ended_at": 1.0})
    keys = sorted(k.decode() for k in await raw.keys("*") if k.decode().startswith(prefix))
    assert keys == [f"{prefix}audit", f"{prefix}audit:k:tg:1", f"{prefix}s:tg:1", f"{prefix}seen:9"]
    other = RedisStore(redis_url, prefix=f"other{prefix}")
    assert await other.load("tg:1") == (None, 0)
    await store.delete("tg:1")
    keys = sorted(k.decode() for k in await raw.keys("*") if k.decode().startswith(prefix))
    assert keys == [f"{prefix}seen:9"]  # markers hold no data and may stay
    await store.close()
    await other.close()


async def test_every_save_resets_the_native_ttl(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix, ttl_seconds=3600)
    await store.save("tg:1", {"n": 1}, 0)
    await raw.pexpire(f"{prefix}s:tg:1", 1000)
    await store.load("tg:1")
    assert await raw.pttl(f"{prefix}s:tg:1") <= 1000  # loading refreshes nothing
    await store.save("tg:1", {"n": 2}, 1)
    assert 3_500_000 < await raw.pttl(f"{prefix}s:tg:1") <= 3_600_000
    await store.mark_update(3)
    assert DAY_MS - 60_000 < await raw.pttl(f"{prefix}seen:3") <= DAY_MS
    await store.close()


async def test_stored_value_is_versioned_json(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix, clock=lambda: 1234.5678)
    await store.save("tg:1", {"state": "q1"}, 0)
    assert await raw.get(f"{prefix}s:tg:1") == b'{"v":1,"t":1234567,"data":{"state":"q1"}}'
    assert await store.stored_bytes("tg:1") is not None
    assert await store.stored_bytes("tg:none") is None
    await store.close()


async def test_save_over_an_unreadable_value_raises_corrupt_session(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    await raw.set(f"{prefix}s:tg:1", b"garbage")
    with pytest.raises(CorruptSession, match=r"\(stored value has no readable version\)"):
        await store.save("tg:1", {"n": 1}, 0)
    await store.delete("tg:1")
    assert await store.save("tg:1", {"n": 1}, 0) == 1
    await store.close()


def test_redacted_url_drops_credentials_and_options() -> None:
    assert redacted_url("redis://u:p@h:1/2?x=y") == "redis://h:1"
    assert redacted_url("rediss://h") == "rediss://h:6379"
    assert redacted_url("redis://[::1]:7000") == "redis://[::1]:7000"


async def test_a_key_of_the_wrong_type_is_a_corrupt_session(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    await raw.execute_command("RPUSH", f"{prefix}s:tg:1", b"x")
    with pytest.raises(CorruptSession, match=r"\(the Redis key holds a non-string value\)"):
        await store.load("tg:1")
    with pytest.raises(CorruptSession, match=r"\(the Redis key holds a non-string value\)"):
        await store.save("tg:1", {}, 0)
    await store.delete("tg:1")
    assert await store.load("tg:1") == (None, 0)
    await store.close()


async def test_loads_and_saves_made_at_once_travel_together_each_with_its_own_result(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    import asyncio

    store = RedisStore(redis_url, prefix=prefix)
    await asyncio.gather(*(store.save(f"tg:{i}", {"n": i}, 0) for i in range(50)))
    trips: list[int] = []
    real_round_trip = store._round_trip

    async def counted(packed: bytes, count: int) -> list[object]:
        trips.append(count)
        return await real_round_trip(packed, count)

    store._round_trip = counted  # type: ignore[method-assign]
    # 50 patients answer at once; two of them race on the same session in the same batch
    results = await asyncio.gather(
        *(store.save(f"tg:{i}", {"n": i + 100}, 1) for i in range(50)),
        store.save("tg:0", {"n": "loser"}, 1),
        *(store.load(f"tg:{i}") for i in range(50)),
        store.load("tg:none"),
    )
    assert results[:50] == [2] * 50
    assert results[50] is None  # one compare-and-set per save: the second on tg:0 lost
    assert results[51:101] == [({"n": i + 100}, 2) for i in range(50)]
    assert results[101] == (None, 0)
    assert trips == [102]  # one round trip carried them all
    await store.close()


async def test_saves_survive_a_script_flush_and_a_dropped_connection(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    assert await store.save("tg:1", {"n": 1}, 0) == 1
    await raw.script_flush()  # as after a Redis restart: the save script is gone
    assert await store.save("tg:1", {"n": 2}, 1) == 2
    for client in await raw.client_list():  # drop every connection but this one
        if client["name"] != "raw":
            await raw.client_kill_filter(_id=client["id"], skipme=True)
    assert await store.save("tg:1", {"n": 3}, 2) == 3
    assert await store.load("tg:1") == ({"n": 3}, 3)
    await store.close()
