"""Two ``python bot.py`` instances on one Redis serving different flow versions (an edit that
reached one of them first): a patient who started on the edited version finishes on it when
their next answer reaches the other instance, which never had that version on disk."""

from __future__ import annotations

from pathlib import Path

from bot.flow import load_flow
from bot.storage import open_store
from tests.fakebotapi import FakeBotAPI

from .conftest import cluster
from .harness import DEMO, Screen, tap_data, tap_update, text_update, wait_for_screen


async def test_a_patient_finishes_on_their_version_on_an_instance_that_never_had_it(
        api: FakeBotAPI, redis_url: str, tmp_path: Path) -> None:
    edited_path = tmp_path / "edited.yaml"
    edited_path.write_text(DEMO.read_text().replace("bladder_check", "bladder_q"))
    edited, problems = load_flow(edited_path)
    assert edited is not None, problems
    async with cluster(api, redis_url, tmp_path, names="A", BOT_FLOW=str(edited_path),
                       FLOW_ARCHIVE=str(tmp_path / "a")) as one, \
            cluster(api, redis_url, tmp_path, names="B",
                    FLOW_ARCHIVE=str(tmp_path / "b")) as two:
        dee = api.user(811, "Dee")
        ids = one.telegram
        await ids.deliver(text_update(dee, ids.new_update_id(), "/start"))  # to A
        first = await wait_for_screen(api, dee, edited, Screen("red_flags"))
        update, _ = tap_update(api, dee, ids.new_update_id(), first,
                               tap_data(edited, Screen("red_flags"), "n", 0))
        await ids.deliver(update)  # to A: the edited version's bladder question
        question = await wait_for_screen(api, dee, edited, Screen("bladder_q"),
                                         first.message_id)
        update, _ = tap_update(api, dee, ids.new_update_id(), question,
                               tap_data(edited, Screen("bladder_q"), "a", 0))
        await two.telegram.deliver(update)  # to B, which serves the demo as it was
        await wait_for_screen(api, dee, edited, Screen("age"), question.message_id)
        await api.wait_idle(quiet=0.5, timeout=30)
        texts = " ".join(str(m.text) for m in dee.chat.bot_messages)
        assert "start your check again" not in texts
    assert one.exit_codes == {"A": 0} and two.exit_codes == {"B": 0}
    store = open_store(redis_url)
    try:
        data, _ = await store.load("tg:811")
    finally:
        await store.close()
    assert data is not None and data["hash"] == edited.hash and data["step"] == "age"
    assert (tmp_path / "b" / f"{edited.hash}.yaml").exists()  # fetched, and kept on disk
