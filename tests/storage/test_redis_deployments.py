"""The Redis store as clinics deploy Redis: over TLS (``rediss://``, as managed Redis services
require; a real redis-server serving TLS only), and with a user, password and database in the
URL. The store's pipe takes the connection's transport over, so these run on both event loops
the bot may use (asyncio's, uvloop's): a TLS transport is each loop's own code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bot.engine import Engine, Start
from bot.flow import load_flow, load_text
from bot.storage import StoreConfigError, open_flow_archive, open_store
from bot.storage.flow_versions import SharedFlowArchive
from bot.storage.redis_store import RedisStore

from .redis_server import start_redis_server_or_skip

DEMO = Path(__file__).resolve().parents[2] / "flows" / "demo.yaml"


@pytest.fixture(scope="module")
def tls_url() -> Iterator[str]:
    """A redis-server that speaks TLS only (skipped without a TLS-capable redis-server;
    failed when CI=true)."""
    server = start_redis_server_or_skip(tls=True)
    yield server.url
    server.stop()


@pytest.fixture
async def store(tls_url: str) -> AsyncIterator[RedisStore]:
    opened = open_store(tls_url, redis_prefix=f"tls{uuid.uuid4().hex[:8]}:")
    assert isinstance(opened, RedisStore)
    await opened.check()
    yield opened
    await opened.close()


async def test_sessions_are_saved_and_read_over_tls(store: RedisStore) -> None:
    first = await store.save("tg:1", {"step": "red_flags"}, 0)
    assert first is not None
    assert await store.load("tg:1") == ({"step": "red_flags"}, first)
    # a session far bigger than one TLS record (16 KB)
    big = {"step": "age", "notes": "x" * 300_000}
    assert await store.save("tg:1", big, first) == first + 1
    assert await store.load("tg:1") == (big, first + 1)
    # a stale write loses, and its reply brings what is stored
    assert await store.save_or_current("tg:1", {"step": "late"}, first) == (big, first + 1)
    assert await store.mark_update(7) is True and await store.mark_update(7) is False
    await store.delete("tg:1")
    assert await store.load("tg:1") == (None, 0)


async def test_many_patients_at_once_over_tls(store: RedisStore) -> None:
    """Saves and loads made together go out in shared writes, each with its own result."""
    versions = await asyncio.gather(*(store.save(f"tg:{i}", {"n": i}, 0)
                                      for i in range(2000)))
    assert all(isinstance(v, int) for v in versions)
    loaded = await asyncio.gather(*(store.load(f"tg:{i}") for i in range(2000)))
    assert loaded == [({"n": i}, v) for i, v in enumerate(versions)]
    assert max(store._pipe.writes) > 1  # pipelined, not one command per write


async def test_a_dropped_tls_connection_and_a_script_flush_are_survived(
        store: RedisStore, tls_url: str) -> None:
    version = await store.save("tg:1", {"n": 1}, 0)
    assert version is not None
    raw = aioredis.Redis.from_url(tls_url, client_name="raw")
    try:
        await raw.script_flush()  # the save script is gone: NOSCRIPT, then loaded again
        for client in await raw.client_list():  # and every other connection is dropped
            if client["name"] != "raw":
                await raw.client_kill_filter(_id=client["id"], skipme=True)
    finally:
        await raw.aclose()
    assert await store.save("tg:1", {"n": 2}, version) == version + 1
    assert await store.load("tg:1") == ({"n": 2}, version + 1)


def test_flow_versions_are_shared_over_tls(tmp_path: Path, tls_url: str) -> None:
    demo, problems = load_flow(DEMO)
    assert demo is not None, problems
    edited, problems = load_text(DEMO.read_text().replace("bladder_check", "bladder_q"))
    assert edited is not None, problems
    prefix = f"fv{uuid.uuid4().hex[:8]}:"
    one = open_flow_archive(tls_url, tmp_path / "one", redis_prefix=prefix)
    two = open_flow_archive(tls_url, tmp_path / "two", redis_prefix=prefix)
    assert isinstance(one, SharedFlowArchive) and isinstance(two, SharedFlowArchive)
    one.publish()
    two.publish()
    Engine(demo, archive=one).set_current(edited)  # kept on one's disk and in Redis
    assert two.load(edited.hash) is not None  # read over TLS, checked, kept on disk
    assert (tmp_path / "two" / f"{edited.hash}.yaml").exists()
    data, reply = Engine(demo, archive=two).handle(None, Start("en"))
    assert reply.changed and data["hash"] == demo.hash


async def test_a_password_and_a_database_in_the_url_are_used_on_every_connection(
        tmp_path: Path) -> None:
    """``redis://user:password@host:port/db``: the store's pipelined connection, the ones made
    again after a drop, and the flow archive's all log in and select the database; a wrong
    password stops start-up with one line that does not show it."""
    server = start_redis_server_or_skip()
    try:
        admin = aioredis.Redis(port=server.port)
        await admin.execute_command("ACL", "SETUSER", "clinic", "on", ">s3cret-pw", "~*",
                                    "+@all")
        await admin.config_set("requirepass", "admin-pw")  # and no more anonymous use
        await admin.aclose()
        url = f"redis://clinic:s3cret-pw@127.0.0.1:{server.port}/3"
        store = open_store(url)
        try:
            await store.check()
            version = await store.save("tg:1", {"n": 1}, 0)
            assert version is not None
            raw = aioredis.Redis(port=server.port, password="admin-pw", db=3)
            assert await raw.exists("triage:s:tg:1") == 1  # in database 3
            for client in await raw.client_list():  # drop the store's connections
                if client["user"] == "clinic":
                    await raw.client_kill_filter(_id=client["id"])
            await raw.aclose()
            assert await store.save("tg:1", {"n": 2}, version) == version + 1  # logged in again
            archive = open_flow_archive(url, tmp_path / "flows")
            assert isinstance(archive, SharedFlowArchive)
            demo, problems = load_flow(DEMO)
            assert demo is not None, problems
            archive.publish()
            archive.save(demo)
            assert open_flow_archive(url, tmp_path / "other").load(demo.hash) is not None
        finally:
            await store.close()
        wrong = open_store(f"redis://clinic:not-it@127.0.0.1:{server.port}/3")
        with pytest.raises(StoreConfigError) as refused:
            await wrong.check()
        await wrong.close()
        assert "authentication failed (check the password in the URL)" in str(refused.value)
        assert "not-it" not in str(refused.value)
    finally:
        server.stop()
