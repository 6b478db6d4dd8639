"""The in-memory double: state a real backend would mangle fails here, with its path."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from bot.storage.memory import MemoryStore

KEY = "tg:1"
HINT = "; store only dicts with str keys, lists, str, int, float, bool and None"


class Urgency(enum.IntEnum):
    ROUTINE = 1


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"history": ("q1", "q2")}, "at history a tuple came back as list"),
        ({"h": [{"ok": 1}, {"at": (1, 2)}]}, "at h[1].at a tuple came back as list"),
        ({"urgency": Urgency.ROUTINE}, "at urgency a Urgency came back as int"),
    ],
)
async def test_state_that_does_not_survive_json_is_refused(
    data: dict[str, Any], problem: str
) -> None:
    store = MemoryStore()
    with pytest.raises(TypeError) as caught:
        await store.save(KEY, data, 0)
    assert str(caught.value) == (
        f"session 'tg:1' does not survive a JSON round trip: {problem}{HINT}"
    )
    assert await store.load(KEY) == (None, 0)


async def test_shared_handles_see_the_same_data() -> None:
    first = MemoryStore()
    second = MemoryStore(shared_with=first)
    v = await first.save(KEY, {"n": 1}, 0)
    assert v and await second.load(KEY) == ({"n": 1}, v)
    assert await MemoryStore().load(KEY) == (None, 0)
