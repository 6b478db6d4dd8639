"""The session a service remembers from its last write is never trusted over the store: two
services (two instances) on one store, expiry, /forget and stale buttons all read fresh."""

from __future__ import annotations

from bot.channels.service import ConversationService
from bot.engine import Choose, Engine, Start
from bot.flow import load_flow
from bot.flow.model import Flow
from bot.storage.memory import MemoryStore

from .harness import DEMO


def demo() -> Flow:
    loaded, problems = load_flow(DEMO)
    assert loaded is not None, problems
    return loaded


def two_instances(flow: Flow) -> tuple[ConversationService, ConversationService]:
    """Two services, as two bot processes, sharing one store."""
    shared = MemoryStore()
    return (ConversationService(Engine(flow), shared),
            ConversationService(Engine(flow), MemoryStore(shared_with=shared)))


async def test_two_instances_taking_turns_never_lose_a_step() -> None:
    flow = demo()
    h = flow.hash[:8]
    a, b = two_instances(flow)
    v = (await a.step("tg:1", Start("en"), update_id=1)).version  # a remembers version v
    r = await b.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)  # b writes v + 1
    assert r.session["step"] == "bladder_check" and r.version == v + 1
    # a's remembered copy is behind: its write fails and the answer is applied to v + 1
    r = await a.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert r.version == v + 2 and r.session["step"] == "age"
    assert [e["step"] for e in r.session["history"]] == ["red_flags", "bladder_check"]
    # and b, behind now, sees a duplicate of update 3 for what it is (from the store)
    again = await b.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert again.duplicate and again.version == v + 2


async def test_a_stale_button_is_judged_on_what_the_store_holds() -> None:
    flow = demo()
    h = flow.hash[:8]
    a, b = two_instances(flow)
    await a.step("tg:1", Start("en"), update_id=1)
    moved = await b.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
    # a remembers the first question; the store has moved on to bladder_check. A tap on
    # bladder_check is current, not stale, and a tap on the first question is stale.
    r = await a.step("tg:1", Choose("red_flags", 0, "n", h), update_id=3)
    assert not r.reply.changed and r.session["step"] == "bladder_check"
    assert r.version == moved.version


async def test_an_expired_or_forgotten_session_is_not_brought_back() -> None:
    flow = demo()
    h = flow.hash[:8]
    now = [1000.0]
    store = MemoryStore(ttl_seconds=60, clock=lambda: now[0])
    service = ConversationService(Engine(flow, clock=lambda: now[0]), store)
    await service.step("tg:1", Start("en"), update_id=1)
    old = await service.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
    now[0] += 61  # the session expired; the service still remembers it
    r = await service.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert r.session["history"] == [] and r.version  # started over, nothing carried
    assert await store.save_or_current("tg:1", old.session, old.version) == (r.session,
                                                                             r.version)
    await service.step("tg:2", Start("en"), update_id=4)
    other = ConversationService(Engine(flow, clock=lambda: now[0]),
                                MemoryStore(shared_with=store))
    await other.forget("tg:2")  # /forget on the other instance
    r = await service.step("tg:2", Choose("red_flags", 0, "n", h), update_id=5)
    assert r.session["history"] == [] and r.version


async def test_a_forgotten_conversation_never_comes_back_from_a_remembered_copy() -> None:
    """Instance a remembers the chat at some version; /forget on b, and b's new conversation
    reaches as many writes. a's next answer must go to the new conversation: before first
    versions were random, a's write at its old version succeeded and brought the forgotten
    answers back."""
    flow = demo()
    h = flow.hash[:8]
    a, b = two_instances(flow)
    await a.step("tg:1", Start("en"), update_id=1)
    old = await a.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
    assert [e["step"] for e in old.session["history"]] == ["red_flags"]
    await b.forget("tg:1")
    await b.step("tg:1", Start("en"), update_id=3)
    new = await b.step("tg:1", Start("en"), update_id=4)  # as many writes as a's
    assert new.session["history"] == [] and new.session["step"] == "red_flags"
    r = await a.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=5)
    assert not r.reply.changed  # a tap from the forgotten conversation: stale now
    stored, version = await b.load("tg:1")
    assert stored is not None and stored["history"] == [] and version == new.version


async def redis_calls(url: str) -> dict[str, int]:
    """Commands Redis has run since its last CONFIG RESETSTAT, by name (those the save
    script calls included: its GET and SET), without our CONFIG and INFO."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()
            if not name.startswith(("cmdstat_config", "cmdstat_info"))}


async def reset_stats(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.config_resetstat()
    finally:
        await client.aclose()


async def test_on_redis_every_answer_is_one_round_trip_even_a_new_or_moved_chat(
        redis_url: str) -> None:
    """A new patient's first answer reads nothing (the chat is taken to be new), and an
    instance that is behind learns what is stored from its failed write: no GET anywhere."""
    from bot.storage.redis_store import RedisStore

    flow = demo()
    h = flow.hash[:8]
    stores = [RedisStore(redis_url, prefix="t:"), RedisStore(redis_url, prefix="t:")]
    a, b = (ConversationService(Engine(flow), s) for s in stores)
    try:
        await a.step("tg:0", Start("en"), update_id=100)  # the save script is loaded
        await reset_stats(redis_url)
        r = await a.step("tg:1", Start("en"), update_id=1)
        v = r.version
        r = await a.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
        assert r.version == v + 1 and r.session["step"] == "bladder_check"
        # two saves, each one script: its own GET and SET, and no GET of ours
        assert await redis_calls(redis_url) == {"evalsha": 2, "get": 2, "set": 2}
        # b has never seen tg:1: its guess (a new chat) fails and says what is stored
        r = await b.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
        assert r.version == v + 2 and r.session["step"] == "age"
        assert [e["step"] for e in r.session["history"]] == ["red_flags", "bladder_check"]
        # a is behind now: the same, one failed write and one that lands
        r = await a.step("tg:1", Start("en"), update_id=4)
        assert r.version == v + 3
        assert await redis_calls(redis_url) == {"evalsha": 6, "get": 6, "set": 4}
    finally:
        for s in stores:
            await s.close()


async def test_a_restarted_instance_continues_a_conversation_it_does_not_know() -> None:
    flow = demo()
    h = flow.hash[:8]
    store = MemoryStore()
    before = ConversationService(Engine(flow), store)
    await before.step("tg:1", Start("en"), update_id=1)
    v = (await before.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)).version
    after = ConversationService(Engine(flow), MemoryStore(shared_with=store))  # restarted
    r = await after.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert r.version == v + 1 and r.session["step"] == "age"
    assert [e["step"] for e in r.session["history"]] == ["red_flags", "bladder_check"]
    again = await after.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert again.duplicate and again.version == v + 1  # redelivered: nothing changes


async def test_on_redis_a_save_that_finds_the_session_unreadable_starts_it_over(
        redis_url: str) -> None:
    """The save's reply says the stored session cannot be read (here: overwritten behind
    the service's back): the patient gets the apology and the first question, and the
    session is written anew, in the same step."""
    import redis.asyncio as aioredis

    from bot.storage.redis_store import RedisStore

    flow = demo()
    h = flow.hash[:8]
    store = RedisStore(redis_url, prefix="c:")
    service = ConversationService(Engine(flow), store)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await service.step("tg:1", Start("en"), update_id=1)
        await service.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
        await raw.set("c:s:tg:1", b"garbage")
        r = await service.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
        assert r.reply.notices == ("Sorry, we had to start your check again from the "
                                   "beginning.",)
        assert r.session["step"] == "red_flags" and r.version
        assert await store.load("tg:1") == (r.session, r.version)
        again = await service.step("tg:1", Choose("red_flags", 0, "n", h), update_id=4)
        assert again.version == r.version + 1 and again.session["step"] == "bladder_check"
    finally:
        await raw.aclose()
        await store.close()
