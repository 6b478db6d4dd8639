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
    await a.step("tg:1", Start("en"), update_id=1)  # a remembers version 1
    r = await b.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)  # b writes 2
    assert r.session["step"] == "bladder_check"
    # a's remembered copy is behind: its write fails and the answer is applied to version 2
    r = await a.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert r.version == 3 and r.session["step"] == "age"
    assert [e["step"] for e in r.session["history"]] == ["red_flags", "bladder_check"]
    # and b, behind now, sees a duplicate of update 3 for what it is (from the store)
    again = await b.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert again.duplicate and again.version == 3


async def test_a_stale_button_is_judged_on_what_the_store_holds() -> None:
    flow = demo()
    h = flow.hash[:8]
    a, b = two_instances(flow)
    await a.step("tg:1", Start("en"), update_id=1)
    await b.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
    # a remembers the first question; the store has moved on to bladder_check. A tap on
    # bladder_check is current, not stale, and a tap on the first question is stale.
    r = await a.step("tg:1", Choose("red_flags", 0, "n", h), update_id=3)
    assert not r.reply.changed and r.session["step"] == "bladder_check" and r.version == 2


async def test_an_expired_or_forgotten_session_is_not_brought_back() -> None:
    flow = demo()
    h = flow.hash[:8]
    now = [1000.0]
    store = MemoryStore(ttl_seconds=60, clock=lambda: now[0])
    service = ConversationService(Engine(flow, clock=lambda: now[0]), store)
    await service.step("tg:1", Start("en"), update_id=1)
    await service.step("tg:1", Choose("red_flags", 0, "n", h), update_id=2)
    now[0] += 61  # the session expired; the service still remembers it
    r = await service.step("tg:1", Choose("bladder_check", 0, "a", h), update_id=3)
    assert r.session["history"] == [] and r.version == 1  # started over, nothing carried
    await service.step("tg:2", Start("en"), update_id=4)
    other = ConversationService(Engine(flow, clock=lambda: now[0]),
                                MemoryStore(shared_with=store))
    await other.forget("tg:2")  # /forget on the other instance
    r = await service.step("tg:2", Choose("red_flags", 0, "n", h), update_id=5)
    assert r.session["history"] == [] and r.version == 1
