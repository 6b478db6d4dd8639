"""Flow versions shared through Redis: a conversation started on a version one instance
serves finishes on it on another instance that never had it on disk (a real redis-server)."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from bot.engine import Choose, Engine, Start
from bot.flow import load_flow, load_text
from bot.flow.archive import FlowArchive
from bot.flow.model import Flow
from bot.storage import open_flow_archive
from bot.storage.flow_versions import SharedFlowArchive

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "flows" / "demo.yaml"


def demo() -> Flow:
    flow, problems = load_flow(DEMO)
    assert flow is not None, problems
    return flow


def edited() -> Flow:
    """The demo with its bladder question renamed: a session there cannot move to the demo."""
    flow, problems = load_text(DEMO.read_text().replace("bladder_check", "bladder_q"))
    assert flow is not None, problems
    return flow


@pytest.fixture
def prefix() -> str:
    return f"fv{uuid.uuid4().hex[:8]}:"


def shared(folder: Path, url: str, prefix: str) -> SharedFlowArchive:
    archive = open_flow_archive(url, folder, redis_prefix=prefix)
    assert isinstance(archive, SharedFlowArchive)
    return archive


def test_a_conversation_moves_to_an_instance_without_its_version_and_stays_on_it(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    old, new = demo(), edited()
    one = shared(tmp_path / "one", redis_url, prefix)
    one.publish()
    first = Engine(old, archive=one)
    first.set_current(new)  # an edit went live on instance one only
    other = shared(tmp_path / "two", redis_url, prefix)
    other.publish()
    second = Engine(old, archive=other)  # still serving the old version, nothing on disk

    data, _ = first.handle(None, Start("en"))
    data, reply = first.handle(data, Choose("red_flags", 0, "n", new.hash[:8]))
    assert data["step"] == "bladder_q" and data["hash"] == new.hash
    # the next answer reaches the other instance: it fetches the version and goes on there
    data, reply = second.handle(data, Choose("bladder_q", 0, "a", new.hash[:8]))
    assert reply.changed and data["hash"] == new.hash and data["step"] == "age"
    assert "restarted" not in data["meta"] and not reply.notices
    assert [h["step"] for h in data["history"]] == ["red_flags", "bladder_q"]
    assert (tmp_path / "two" / f"{new.hash}.yaml").exists()  # kept on disk from now on
    one.close()
    other.close()


def test_versions_reach_redis_only_once_the_store_answered(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    archive = shared(tmp_path, redis_url, prefix)
    flow = demo()
    Engine(flow, archive=archive)
    raw = redis.Redis.from_url(redis_url)
    key = f"{prefix}flow:{flow.hash}"
    try:
        assert raw.get(key) is None  # not before publish (start-up checks the store first)
        assert (tmp_path / f"{flow.hash}.yaml").exists()
        archive.publish()
        assert raw.get(key) == flow.source.encode()
        assert raw.ttl(key) == -1  # kept like the files: as long as a session may need it
        new = edited()
        archive.save(new)  # after publish: at once
        assert raw.get(f"{prefix}flow:{new.hash}") == new.source.encode()
    finally:
        raw.close()
        archive.close()


def test_a_version_in_redis_that_does_not_check_out_is_refused(
        tmp_path: Path, redis_url: str, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    archive = shared(tmp_path, redis_url, prefix)
    flow = demo()
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.set(f"{prefix}flow:{flow.hash}", DEMO.read_text().replace("demo", "other"))
        raw.set(f"{prefix}flow:abc123", b"\xff not yaml")
        with caplog.at_level(logging.WARNING):
            assert archive.load(flow.hash) is None  # another flow under this hash
            assert archive.load("abc123") is None
            assert archive.load("nothere") is None
            assert archive.load("../../etc") is None
        assert [r.getMessage() for r in caplog.records] == [
            f"flow version {flow.hash} kept in Redis cannot be loaded",
            "flow version abc123 kept in Redis cannot be loaded"]
        assert not list(tmp_path.glob("*.yaml"))
    finally:
        raw.close()
        archive.close()


def test_redis_out_of_reach_is_a_missing_version_and_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive = shared(tmp_path, "redis://127.0.0.1:1", "x:")
    archive.publish()
    flow = demo()
    with caplog.at_level(logging.WARNING):
        archive.save(flow)  # served all the same, and on disk
        assert archive.load("abc123") is None
    assert (tmp_path / f"{flow.hash}.yaml").exists()
    assert archive.load(flow.hash) is not None  # from disk, no Redis needed
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith(f"could not keep flow version {flow.hash} in Redis: ")
    assert messages[1].startswith("could not read flow version abc123 from Redis: ")
    assert "connection refused" in messages[1].lower()


def test_only_a_redis_store_shares_its_versions(tmp_path: Path) -> None:
    for setting in (None, "", "data/s.db", "sqlite:///x.db", "mysql://x"):
        assert type(open_flow_archive(setting, tmp_path)) is FlowArchive
    archive = open_flow_archive(" rediss://h:6380/2 ", tmp_path, redis_prefix="p:")
    assert isinstance(archive, SharedFlowArchive)
    assert archive.url == "rediss://h:6380/2" and archive.key("ab12") == "p:flow:ab12"
    code = ("from bot.storage import open_flow_archive; open_flow_archive('x.db', 'd')\n"
            "import sys; print('redis' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "False"
