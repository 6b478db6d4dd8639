"""Transcript tests of the engine on the demo flow."""

from __future__ import annotations

import json

import pytest

from bot.engine import Back, Choose, Engine, Text
from bot.flow import load_text

from .conftest import Chat


def test_start_shows_disclaimer_then_first_question(chat: Chat) -> None:
    r = chat.start()
    assert r.welcome is not None and r.welcome.startswith("This is a demo.")
    assert r.question is not None and r.question.step == "red_flags"
    assert chat.buttons == ["Trouble peeing or pooing", "Numb between the legs",
                            "A leg getting weaker", "None of these", "Done"]
    assert not r.can_go_back


def test_emergency_in_two_taps(chat: Chat) -> None:
    chat.start()
    chat.tap("Trouble peeing or pooing")
    r = chat.tap("Done")
    assert r.outcome is not None
    assert (r.outcome.disposition, r.outcome.rule) == ("emergency", "E1")
    assert r.outcome.headline.startswith("Based on your answers, please go to the nearest")
    assert r.answered == ("red_flags", "Trouble peeing or pooing")


def test_checklist_ticks_toggle_and_show(chat: Chat) -> None:
    chat.start()
    r = chat.tap("Numb between the legs")
    assert r.question is not None
    assert [o.ticked for o in r.question.options][:3] == [False, True, False]
    r = chat.tap("Numb between the legs")
    assert r.question is not None and not any(o.ticked for o in r.question.options)
    r = chat.tap("Done")
    assert r.notices == ("Tap each one that applies, then Done. If none apply, tap "
                         "'None of these'.",)
    assert chat.step == "red_flags" and not r.changed


def walk_to_self_care(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    chat.tap("No")
    chat.type("34")
    chat.tap("Less than 2 weeks")
    chat.tap("Getting better")
    chat.tap("No")
    chat.tap("None of these")


def test_full_path_to_self_care_records_facts_and_rule(chat: Chat) -> None:
    walk_to_self_care(chat)
    r = chat.reply
    assert r is not None and r.outcome is not None
    assert (r.outcome.disposition, r.outcome.rule) == ("self_care", "S")
    assert r.outcome.safety_net.startswith("Go to the emergency department now")
    assert chat.data is not None
    assert chat.data["facts"] == {
        "bladder_bowel_changes": False, "saddle_numbness": False, "age": 34,
        "duration_days": 0, "trend": "improving", "fever": False,
        "startback_5": False, "startback_6": False, "startback_7": False,
    }
    assert [h["step"] for h in chat.data["history"]] == [
        "red_flags", "bladder_check", "age", "duration", "trend", "fever", "worries"]


def test_back_from_outcome_unsets_the_answer(chat: Chat) -> None:
    walk_to_self_care(chat)
    r = chat.back()
    assert r.question is not None and r.question.step == "worries"
    assert r.notices == ("OK, let's change that answer.",)
    assert chat.data is not None and "startback_5" not in chat.data["facts"]
    r = chat.back()
    assert chat.step == "fever" and "fever" not in chat.data["facts"]
    r = chat.tap("Yes")
    r = chat.tap("None of these")
    assert r.outcome is not None and (r.outcome.disposition, r.outcome.rule) == ("urgent", "U1")
    assert chat.data["backs"] == 2
    assert chat.data["meta"]["backs_at"] == {"worries": 1, "fever": 1}


def test_back_to_checklist_shows_previous_ticks(chat: Chat) -> None:
    chat.start()
    chat.tap("A leg getting weaker")
    r = chat.tap("Done")
    assert r.outcome is not None and r.outcome.rule == "E4"
    r = chat.back()
    assert r.question is not None and r.question.step == "red_flags"
    assert [o.ticked for o in r.question.options][:3] == [False, False, True]
    assert chat.data is not None and chat.data["facts"] == {}


def test_back_at_start_changes_nothing(chat: Chat) -> None:
    chat.start()
    r = chat.back()
    assert r.notices == ("There is no earlier answer to change.",)
    assert not r.changed and chat.step == "red_flags"


def test_back_follows_real_history_through_not_sure(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    chat.tap("Not sure")
    assert chat.step == "bladder_examples"
    chat.tap("No")
    assert chat.step == "age"
    chat.back()
    assert chat.step == "bladder_examples"
    chat.back()
    assert chat.step == "bladder_check"
    assert chat.data is not None and "bladder_unsure" not in chat.data["facts"]


def test_not_sure_twice_counts_as_yes(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    chat.tap("Not sure")
    r = chat.tap("Still not sure")
    assert r.outcome is not None and (r.outcome.disposition, r.outcome.rule) == ("emergency",
                                                                                "E1")


def test_restart_forgets_answers(chat: Chat) -> None:
    walk_to_self_care(chat)
    r = chat.restart()
    assert r.welcome is not None and r.question is not None
    assert chat.step == "red_flags" and chat.data is not None
    assert chat.data["facts"] == {} and chat.data["history"] == []


def test_stale_button_changes_nothing(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    before = dict(chat.data or {})
    r = chat.send(Choose("red_flags", 0, "t", (chat.data or {})["hash"][:8]))
    assert r.notices == ("That button is from an earlier question. Here is where you are now.",)
    assert not r.changed
    assert r.question is not None and r.question.step == "bladder_check"
    after = dict(chat.data or {})
    before.pop("updated"), after.pop("updated")  # only the activity time moves
    assert after == before


def test_forged_buttons_change_nothing(chat: Chat) -> None:
    chat.start()
    for forged in [Choose("red_flags", 99, "t"), Choose("red_flags", 0, "a"),
                   Choose("nowhere", 0, "a"), Choose("red_flags", 0, "t", "deadbeef"),
                   Choose("red_flags", -1, "t")]:
        r = chat.send(forged)
        assert not r.changed, forged
        assert chat.step == "red_flags"
        assert chat.data is not None and chat.data["ticks"] == []


def test_typed_answers_number_label_misspelling_yes_no(chat: Chat) -> None:
    chat.start()
    chat.type("4")  # None of these
    assert chat.step == "bladder_check"
    chat.type("nope")
    assert chat.step == "age"
    r = chat.type("I'm 42 years old")
    assert chat.step == "duration" and r.answered == ("age", "42")
    r = chat.type("3 weeks")
    assert r.answered == ("duration", "2 to 6 weeks")
    r = chat.type("geting worse")
    assert r.answered == ("trend", "Getting worse")
    r = chat.type("Yes")
    assert r.answered == ("fever", "Yes")


def test_typed_checklist_numbers(chat: Chat) -> None:
    chat.start()
    r = chat.type("1, 3")
    assert r.answered == ("red_flags", "Trouble peeing or pooing, A leg getting weaker")
    assert r.outcome is not None and r.outcome.rule == "E1"


def test_unclear_text_asks_again_with_hint(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    r = chat.type("what do you mean")
    assert r.notices == ("Sorry, I didn't catch that. Please tap a button, or type its number.",)
    assert r.question is not None and r.question.step == "bladder_check"
    assert chat.data is not None and chat.data["misses"] == 1


def test_number_out_of_range_and_not_a_number(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    chat.tap("No")
    r = chat.type("200")
    assert r.notices == ("Please type your age in years, from 1 to 120.",)
    assert chat.step == "age"
    r = chat.type("forty")
    assert r.notices == ("Please type a number, like 42.",)
    r = chat.type("12")
    assert r.outcome is not None and r.outcome.disposition == "out_of_scope"


def test_interrupt_at_any_point_goes_to_emergency(chat: Chat) -> None:
    chat.start()
    chat.tap("None of these")
    chat.tap("No")
    r = chat.type("I CAN'T PEE since this morning")
    assert r.outcome is not None and (r.outcome.disposition, r.outcome.rule) == ("emergency",
                                                                                "E1")
    assert chat.data is not None and chat.data["facts"]["bladder_bowel_changes"] is True
    r = chat.back()
    assert chat.step == "age" and chat.data["facts"]["bladder_bowel_changes"] is False


def test_interrupt_in_spanish_without_accents(chat: Chat) -> None:
    chat.start("es")
    r = chat.type("no puedo orinar")
    assert r.outcome is not None and r.outcome.disposition == "emergency"
    assert r.outcome.headline.startswith("Por lo que nos cuenta")


def test_spanish_and_language_switch_mid_way(chat: Chat) -> None:
    r = chat.start("es")
    assert r.question is not None and r.question.text.startswith("Desde que empezó el dolor")
    chat.tap("Nada de esto")
    r = chat.type("si")
    assert r.outcome is not None and r.outcome.rule == "E1"
    chat.back()
    r = chat.language("en")
    assert r.question is not None and r.question.text.startswith("Just to be sure")


def test_long_text_and_emoji_are_handled(chat: Chat) -> None:
    chat.start()
    r = chat.type("x" * 10_000)
    assert r.question is not None and r.notices
    r = chat.type("🙂🙂")
    assert r.question is not None and chat.step == "red_flags"
    r = chat.type("")
    assert r.question is not None


def test_text_after_outcome_repeats_outcome(chat: Chat) -> None:
    walk_to_self_care(chat)
    r = chat.type("thanks")
    assert r.outcome is not None and not r.changed
    assert r.notices == ("This check is finished. You can go back to change an answer, "
                         "or start again.",)


def test_unreadable_session_restarts_with_apology(engine: Engine) -> None:
    data, r = engine.handle({"schema": 1, "flow": "demo"}, Text("hello"))
    assert r.notices == ("Sorry, we had to start your check again from the beginning.",)
    assert r.question is not None and data["step"] == "red_flags"
    data, r = engine.handle({"garbage": True}, Back())
    assert data["step"] == "red_flags"


def test_session_is_plain_json(chat: Chat) -> None:
    walk_to_self_care(chat)
    assert json.loads(json.dumps(chat.data)) == chat.data


def test_gone_flow_version_moves_session_when_steps_exist(demo_flow: object, engine: Engine,
                                                          tmp_path: object) -> None:
    chat = Chat(engine)
    chat.start()
    chat.tap("None of these")
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "flows" / "demo.yaml").read_text()
    new_flow, problems = load_text(text.replace('version: "0.3"', 'version: "0.4"'))
    assert new_flow is not None, problems
    engine.set_current(new_flow)
    engine.drop_version(demo_flow.hash)  # type: ignore[attr-defined]
    r = chat.tap("No")  # a button of the old version: shown the question again, new buttons
    assert chat.data is not None and chat.data["hash"] == new_flow.hash
    assert r.question is not None and r.question.step == "bladder_check" and not r.changed
    assert r.question.flow_hash == new_flow.hash[:8]
    r = chat.tap("No")
    assert r.question is not None and r.question.step == "age"


def test_one_machine_per_flow_version(demo_flow: object) -> None:
    e = Engine(demo_flow)  # type: ignore[arg-type]
    machine = e.current.machine
    c = Chat(e)
    walk_to_self_care(c)
    assert e.current.machine is machine
    assert machine.models == []  # conversations never attach to the machine
    assert not machine.auto_transitions


def test_session_pinned_to_its_version_across_restarts(demo_flow: object,
                                                       tmp_path: object) -> None:
    from pathlib import Path

    from bot.flow.archive import FlowArchive

    archive = FlowArchive(Path(str(tmp_path)) / "versions")
    first = Engine(demo_flow, archive=archive)  # type: ignore[arg-type]
    chat = Chat(first)
    chat.start()
    chat.tap("None of these")
    # the flow is edited (the bladder question is renamed) and the bot restarted
    text = (Path(__file__).resolve().parents[2] / "flows" / "demo.yaml").read_text()
    edited = text.replace("bladder_check", "bladder_q")
    new_flow, problems = load_text(edited)
    assert new_flow is not None, problems
    restarted = Engine(new_flow, archive=archive)
    chat.engine = restarted
    r = chat.tap("No")  # the old version is loaded from the archive; the answer counts
    assert r.question is not None and r.question.step == "age"
    assert chat.data is not None and chat.data["hash"] == demo_flow.hash  # type: ignore
    fresh = Chat(restarted)
    fresh.start()
    fresh.tap("None of these")
    assert fresh.step == "bladder_q"  # new conversations start on the new version


@pytest.mark.parametrize("name", ["demo.yaml", "back_spasm.yaml"])
def test_direct_trigger_agrees_with_transitions_on_every_edge(name: str) -> None:
    """The machine's direct trigger (no callbacks to run) moves exactly as transitions' own
    Event.trigger does, along every edge of the flow, and refuses a move the flow lacks."""
    from pathlib import Path

    from transitions import Event, MachineError

    from bot.engine.engine import FlowMachine, _Cursor

    text = (Path(__file__).resolve().parents[2] / "flows" / name).read_text()
    flow, problems = load_text(text)
    assert flow is not None, problems
    fm = FlowMachine(flow)
    assert fm.machine.plain
    steps = list(flow.steps)
    edges = 0
    for target, event in fm.triggers.items():
        for source in steps:
            ours, theirs = _Cursor(source), _Cursor(source)
            if source in event.transitions:
                assert event.trigger(ours) and Event.trigger(event, theirs)
                assert ours.state == theirs.state == target
                edges += 1
            else:
                with pytest.raises(MachineError):
                    event.trigger(ours)
                with pytest.raises(MachineError):
                    Event.trigger(event, theirs)
                assert ours.state == source
    assert edges == sum(len({t for t, _, _ in q.successors()})
                        for q in flow.steps.values() if hasattr(q, "successors"))


def test_a_machine_with_callbacks_takes_transitions_own_path(demo_flow: object) -> None:
    from bot.engine.engine import FlowMachine, _Cursor

    fm = FlowMachine(demo_flow)  # type: ignore[arg-type]
    seen: list[str] = []
    fm.machine.after_state_change = [lambda *a, **k: seen.append("after")]
    fm.machine.check_plain()
    assert not fm.machine.plain
    target, event = next(iter(fm.triggers.items()))
    cursor = _Cursor(next(iter(event.transitions)))
    assert event.trigger(cursor) and cursor.state == target and seen == ["after"]
