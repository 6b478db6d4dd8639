"""Two ``python bot.py`` instances on a Redis that speaks TLS only (``BOT_STORE=rediss://...``),
as a managed Redis service requires: a patient whose answers alternate between them reaches
the disposition their answers imply, with their flow version shared over TLS too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bot.engine import Engine
from bot.flow import load_flow
from bot.storage import open_store
from tests.fakebotapi import FakeBotAPI
from tests.storage.redis_server import start_redis_server_or_skip

from .conftest import cluster
from .harness import DEMO, Action, expect, history_of
from .patient import Mischief, Patient

# red_flags: none; bladder_check: no; age 45; duration < 2 weeks; trend: same; fever: yes
URGENT_FEVER: list[Action] = [("start",), ("tap", "n", 0), ("tap", "a", 0), ("text", "45"),
                              ("tap", "a", 0), ("tap", "a", 1), ("tap", "a", 1),
                              ("tap", "n", 0)]


@pytest.fixture
def tls_url() -> Iterator[str]:
    server = start_redis_server_or_skip(tls=True)
    yield server.url
    server.stop()


async def test_two_instances_share_sessions_over_tls(api: FakeBotAPI, tls_url: str,
                                                     tmp_path: Path) -> None:
    flow, problems = load_flow(DEMO)
    assert flow is not None, problems
    expected = expect(Engine(flow), URGENT_FEVER)
    assert expected.disposition == "urgent"
    async with cluster(api, tls_url, tmp_path) as run:
        user = api.user(901, "Tia")
        patient = Patient(api, run.telegram, flow, user, URGENT_FEVER, expected,
                          Mischief(duplicate_every=0, double_tap_every=0), "tls",
                          reply_timeout=30)
        await patient.run()  # each update to the next instance (round-robin)
        assert not patient.problems, patient.problems
        await api.wait_idle(quiet=0.5, timeout=30)
        for inst in run.instances:
            assert not inst.log_problems(), inst.tail()
    assert run.exit_codes == {"A": 0, "B": 0}
    store = open_store(tls_url)
    try:
        data, _ = await store.load("tg:901")
    finally:
        await store.close()
    assert data is not None and history_of(data) == expected.history
    assert data["step"] == expected.session["step"]
    with redis.Redis.from_url(tls_url) as raw:  # the flow version served, kept over TLS too
        assert raw.exists(f"triage:flow:{flow.hash}") == 1
