"""Redis specifics: key namespacing, native TTLs, and Lua compare-and-set on odd values."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

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


@pytest.fixture(autouse=True)
def first_version_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """New sessions start at version 1 here, so these tests of the wire can count versions
    (a new session's first version is random: the contract suite checks that on Redis)."""
    monkeypatch.setattr("bot.storage.redis_store.first_version", lambda: 1)


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


@pytest.mark.parametrize("expected", [0, 9, 10, 99, 123456789012])
@pytest.mark.parametrize("data", [{}, {"t": "ñ\r\n$3\r\n"}, {"x": "y" * 5000}])
def test_the_usual_save_is_packed_exactly_as_hiredis_packs_it(expected: int,
                                                               data: dict[str, Any]) -> None:
    from bot.storage.redis_pipe import pack

    for now in (1795630693.538, 0.005, 0.0):
        store = RedisStore("redis://localhost:1/0", prefix="pré:", ttl_seconds=7,
                           clock=lambda now=now: now)  # type: ignore[misc]
        keys = ["tg:1", "tg:ñ-12345678901234", ""]
        packed = store._pack_saves([(key, data, expected) for key in keys])
        for key, resp in zip(keys, packed, strict=True):
            value = b'{"v":%d,"t":%d,"data":%b}' % (expected + 1, int(now * 1000),
                                                    json.dumps(data, separators=(",", ":"),
                                                               ensure_ascii=False).encode())
            assert resp == pack((b"EVALSHA", store._save_sha, b"1", store.session_key(key),
                                 value, 7000, *([] if expected else [0])))


async def test_a_session_that_is_not_json_fails_its_own_save_alone(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    results = await asyncio.gather(store.save("tg:1", {"n": 1}, 0),
                                   store.save("tg:2", {"n": {1, 2}}, 0),
                                   store.save("tg:3", {"n": 3}, 0), return_exceptions=True)
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], TypeError)
    assert str(results[1]).startswith("session 'tg:2' is not JSON-serialisable: ")
    assert store._pipe.writes[-1] == 2  # packed with the others, and left out of the write
    assert await raw.get(f"{prefix}s:tg:2") is None
    assert await store.load("tg:3") == ({"n": 3}, 1)
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

    store = RedisStore(redis_url, prefix=prefix)

    async def save(*args: Any) -> int | None:  # a save made by a patient's own task
        return await store.save(*args)

    await asyncio.gather(*(store.save(f"tg:{i}", {"n": i}, 0) for i in range(50)))
    writes = len(store._pipe.writes)
    # 50 patients answer at once; two of them race on the same session in the same batch
    results = await asyncio.gather(
        *(save(f"tg:{i}", {"n": i + 100}, 1) for i in range(50)),
        save("tg:0", {"n": "loser"}, 1),
        *(store.load(f"tg:{i}") for i in range(50)),
        store.load("tg:none"),
    )
    assert results[:50] == [2] * 50
    assert results[50] is None  # one compare-and-set per save: the second on tg:0 lost
    assert results[51:101] == [({"n": i + 100}, 2) for i in range(50)]
    assert results[101] == (None, 0)
    assert store._pipe.writes[writes:] == [102]  # one write carried them all
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


async def test_many_saves_after_a_script_flush_load_the_script_once(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:

    store = RedisStore(redis_url, prefix=prefix)

    async def save(i: int) -> int | None:  # each patient's save in its own task
        return await store.save(f"tg:{i}", {"n": i}, 0)

    assert await save(0) == 1
    await raw.script_flush()
    await raw.config_resetstat()
    assert await asyncio.gather(*(save(i) for i in range(1, 41))) == [1] * 40
    stats = await raw.info("commandstats")
    loads = stats.get("cmdstat_script|load", stats.get("cmdstat_script", {})).get("calls")
    assert loads == 1  # all 40 were answered NOSCRIPT, and went again behind one load
    assert await store.load("tg:40") == ({"n": 40}, 1)
    await store.close()


async def test_saves_on_the_wire_when_the_connection_is_lost_are_sent_again(
    prefix: str,
) -> None:
    import signal

    from .redis_server import start_redis_server_or_skip

    server = start_redis_server_or_skip()
    store = RedisStore(server.url, prefix=prefix, connect_timeout=0.4)
    try:
        for i in range(10):
            assert await store.save(f"tg:{i}", {"n": i}, 0) == 1
        server.process.send_signal(signal.SIGSTOP)  # nothing is answered...
        try:
            saves = [asyncio.ensure_future(store.save(f"tg:{i}", {"n": i + 100}, 1))
                     for i in range(10)]
            await asyncio.sleep(0.6)  # ...the connection is given up (0.4 s), a new one tried
            assert not any(s.done() for s in saves)
        finally:
            server.process.send_signal(signal.SIGCONT)  # and the server is back
        results = await asyncio.wait_for(asyncio.gather(*saves), 10)
        # each save went again on the new connection: it lands (version 2), or it had landed
        # from the old connection already and its second send loses the compare-and-set
        assert all(r in (2, None) for r in results), results
        for i in range(10):
            assert await store.load(f"tg:{i}") == ({"n": i + 100}, 2)
    finally:
        await store.close()
        server.stop()


async def test_an_error_reply_fails_only_its_own_command(
    redis_url: str, raw: aioredis.Redis, prefix: str
) -> None:

    store = RedisStore(redis_url, prefix=prefix)
    await store.save("tg:1", {"n": 1}, 0)
    # a list where a session should be
    await raw.lpush(store.session_key("tg:2"), b"x")  # type: ignore[misc]
    writes = len(store._pipe.writes)
    async def save(*args: Any) -> int | None:  # made in its own task, like the loads
        return await store.save(*args)

    results = await asyncio.gather(store.load("tg:1"), save("tg:2", {"n": 2}, 0),
                                   store.load("tg:1"), return_exceptions=True)
    assert store._pipe.writes[writes:] == [3]  # in one write, and the replies kept in step
    assert results[0] == results[2] == ({"n": 1}, 1)
    assert isinstance(results[1], CorruptSession)
    await store.close()


async def test_a_caller_that_gives_up_does_not_shift_the_replies_of_others(
    redis_url: str, prefix: str
) -> None:

    store = RedisStore(redis_url, prefix=prefix)
    for i in range(3):
        await store.save(f"tg:{i}", {"n": i}, 0)
    cancelled = asyncio.ensure_future(store.load("tg:0"))
    others = [asyncio.ensure_future(store.load(f"tg:{i}")) for i in (1, 2)]
    await asyncio.sleep(0)  # all three are queued
    cancelled.cancel()
    assert await asyncio.gather(*others) == [({"n": 1}, 1), ({"n": 2}, 1)]
    assert await store.load("tg:0") == ({"n": 0}, 1)
    await store.close()


async def test_a_server_that_stops_answering_times_out_and_the_store_recovers(
    prefix: str,
) -> None:
    import signal
    import time

    from redis.exceptions import TimeoutError as RedisTimeoutError

    from .redis_server import start_redis_server_or_skip

    server = start_redis_server_or_skip()
    store = RedisStore(server.url, prefix=prefix, connect_timeout=0.3)
    try:
        assert await store.save("tg:1", {"n": 1}, 0) == 1
        server.process.send_signal(signal.SIGSTOP)  # frozen: nothing is answered
        try:
            started = time.monotonic()
            with pytest.raises(RedisTimeoutError):
                await store.load("tg:1")
            waited = time.monotonic() - started
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert 0.5 < waited < 5  # three tries of 0.3 s each, then the error
        assert await asyncio.wait_for(store.load("tg:1"), 5) == ({"n": 1}, 1)
    finally:
        await store.close()
        server.stop()


async def test_a_redis_restart_fails_what_it_cuts_off_and_the_store_carries_on(
    prefix: str,
) -> None:
    import contextlib

    from redis.exceptions import ConnectionError as RedisConnectionError

    from .redis_server import start_redis_server, start_redis_server_or_skip

    server = start_redis_server_or_skip()
    store = RedisStore(server.url, prefix=prefix, connect_timeout=0.5)
    restarted = None
    try:
        assert await store.save("tg:1", {"n": 1}, 0) == 1
        cut_off = [asyncio.ensure_future(store.load("tg:1")) for _ in range(20)]
        await asyncio.sleep(0)  # queued,
        await asyncio.sleep(0)  # written, and then the server dies under them
        server.process.kill()
        server.process.wait()
        for future in cut_off:  # an answer from before the kill, or the error after three tries
            with contextlib.suppress(RedisConnectionError):
                assert await asyncio.wait_for(future, 10) == ({"n": 1}, 1)
        with pytest.raises(RedisConnectionError):  # down: three tries, then the error
            await asyncio.wait_for(store.load("tg:1"), 10)
        restarted = start_redis_server(port=server.port)  # back, empty (nothing persisted)
        assert await store.load("tg:1") == (None, 0)
        assert await store.save("tg:1", {"n": 2}, 0) == 1  # the save script loaded again
        assert await store.load("tg:1") == ({"n": 2}, 1)
    finally:
        await store.close()
        server.stop()
        if restarted is not None:
            restarted.stop()


async def test_closing_fails_what_still_waits_and_refuses_more(
    redis_url: str, prefix: str
) -> None:

    from bot.storage.base import StoreClosed

    store = RedisStore(redis_url, prefix=prefix)
    await store.save("tg:1", {"n": 1}, 0)
    waiting = asyncio.ensure_future(store.load("tg:1"))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StoreClosed):
        await waiting
    with pytest.raises(StoreClosed):
        await store.load("tg:1")


async def test_a_batch_that_cannot_be_packed_fails_its_callers_and_the_pipe_carries_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.storage.redis_pipe import Pipe, pack

    client = aioredis.Redis.from_url(redis_url)
    pipe = Pipe(client.connection_pool, 5.0, lambda: RuntimeError("closed"))
    try:  # (no packer: anything but RESP bytes is a caller's bug, found when writing)
        with pytest.raises(TypeError):
            await asyncio.wait_for(pipe.send("PING"), 5)
        assert "could not pack 1 Redis commands" in caplog.text
        assert await asyncio.wait_for(pipe.send(pack((b"PING",))), 5) == b"PONG"
        short = Pipe(client.connection_pool, 5.0, lambda: RuntimeError("closed"),
                     packer=lambda items: [])  # a packer that loses an item
        try:
            with pytest.raises(RuntimeError, match="the packer gave 0 results for 1 commands"):
                await asyncio.wait_for(short.send(("an item",)), 5)
        finally:
            await short.close()
    finally:
        await pipe.close()
        await client.aclose()


async def test_a_batch_written_to_a_transport_closed_under_it_is_sent_again(
    redis_url: str, prefix: str
) -> None:
    store = RedisStore(redis_url, prefix=prefix)
    try:
        await store.save("tg:1", {"n": 1}, 0)
        saving = store.save("tg:1", {"n": 2}, 1)  # written at the end of this pass...
        wire = store._pipe._wire
        assert wire is not None
        wire.transport.close()  # ...to a transport closed before that
        assert await asyncio.wait_for(saving, 5) == 2  # on a new connection
        assert await store.load("tg:1") == ({"n": 2}, 2)
    finally:
        await store.close()
