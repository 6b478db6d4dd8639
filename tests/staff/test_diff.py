"""`python bot.py diff OLD NEW`: the clinical impact of an edit, before it goes live."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from bot.casefiles import Case, run_case
from bot.engine import Engine
from bot.flow import Flow, load_flow
from bot.flow.paths import walk_paths
from bot.staff.diff import diff_flows, format_diff, shorten_pair

from .conftest import DEMO, Cli, edit_demo, run_cli

FEVER_TO_SELF_CARE = (
    ("      - if: fever\n        go: urgent\n", "      - if: fever\n        go: self_care\n"),
    # the safety check would refuse the edit: a careless editor removes it too
    ("  - id: fever_not_self_care\n    say: Fever never ends in self-care.\n"
     "    if: fever\n    then: disposition != self_care\n", ""),
)
NIGHT_PAIN = (
    ("      - {value: yes, label: {en: \"Yes\", es: \"Sí\"}}\n    next: worries\n",
     "      - {value: yes, label: {en: \"Yes\", es: \"Sí\"}}\n    next: night\n\n"
     "  - id: night\n    fact: night_pain\n"
     "    text: {en: Does the pain wake you at night?, es: ¿El dolor le despierta de noche?}\n"
     "    options:\n      - {value: no, label: {en: \"No\", es: \"No\"}}\n"
     "      - {value: yes, label: {en: \"Yes\", es: \"Sí\"}}\n"
     "    routes:\n      - if: night_pain and age >= 50\n        go: urgent\n        rule: U2\n"
     "      - go: worries\n"),
)


def load(path: Path) -> Flow:
    flow, problems = load_flow(path)
    assert flow is not None, problems
    return flow


def test_the_same_flow_has_no_differences_and_every_path_is_tried(cli: Cli) -> None:
    p = cli("diff", str(DEMO), str(DEMO))
    assert p.returncode == 0, p.stderr
    paths = walk_paths(load(DEMO)).paths
    assert p.stdout.splitlines() == [
        f"Comparing {DEMO} (old) with {DEMO} (new): {paths} paths of answers tried on both.",
        "",
        "Result: no differences.",
    ]


def test_fever_to_self_care_is_less_urgent_and_exits_1(tmp_path: Path) -> None:
    new = edit_demo(tmp_path, "new.yaml", *FEVER_TO_SELF_CARE)
    p = run_cli("diff", str(DEMO), str(new), "--examples", "2")
    assert p.returncode == 1, p.stderr
    assert p.stdout.splitlines() == [
        f"Comparing {DEMO} (old) with {new} (new): 591 paths of answers tried on both.",
        "",
        "LESS URGENT: 288 paths now get less urgent advice",
        "  288 paths moved from urgent to self_care (rule U1)",
        "    in every one: red_flags: none of these; fever: Yes",
        "    1. red_flags: none of these; bladder_check: No; age: 16 (of 16–120); "
        "duration: Less than 2 weeks; trend: Getting better; fever: Yes; worries: none of these",
        "    2. red_flags: none of these; bladder_check: No; age: 16 (of 16–120); "
        "duration: Less than 2 weeks; trend: Getting better; fever: Yes; "
        "worries: Being active is not safe for me",
        "    … and 286 more like these",
        "",
        "ROUTES AND ANSWERS",
        "  decision 'decide': route removed: if fever → urgent [U1]",
        "  decision 'decide': route added: if fever → self_care [U1]",
        "",
        "SAFETY CHECKS",
        "  safety check 'fever_not_self_care' removed (Fever never ends in self-care.)",
        "",
        "Result: 288 paths would get LESS urgent advice. A clinician must review these before "
        "the new version goes live.",
    ]


def _by_facts(old: Flow, new: Flow) -> Counter[tuple[str, str]]:
    """The slow way: each path of OLD as a case file (facts in), run on NEW by the engine."""
    engine = Engine(new)
    moved: Counter[tuple[str, str]] = Counter()
    for res in walk_paths(old, keep=True).results:
        if isinstance(res.answers[0].answer, str):
            continue  # typed at any time: not a case of facts
        facts = {k: v for k, v in res.facts.items() if k not in old.computed}
        facts.setdefault("weakness", "none")  # an unticked box of a choice fact sets nothing
        got = run_case(new, Case("path", facts, res.disposition, None, "", 0), engine)
        assert got.disposition is not None, got.describe()
        if got.disposition != res.disposition:
            moved[(res.disposition, got.disposition)] += 1
    return moved


def test_the_walk_agrees_with_driving_every_old_path_by_its_facts(tmp_path: Path) -> None:
    old, new = load(DEMO), load(edit_demo(tmp_path, "new.yaml", *FEVER_TO_SELF_CARE))
    for a, b in ((old, new), (new, old)):
        d = diff_flows(a, b)
        assert Counter({(m.old, m.new): m.count for m in d.moved}) == _by_facts(a, b)


def test_a_new_question_that_makes_things_more_urgent_exits_0(tmp_path: Path, cli: Cli) -> None:
    new = edit_demo(tmp_path, "new.yaml", *NIGHT_PAIN)
    p = cli("diff", str(DEMO), str(new), "--examples", "1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "MORE URGENT: 288 paths now get more urgent advice" in lines
    assert "  224 paths moved from routine to urgent (rules R1 → U2, R4 → U2, R2 → U2)" in lines
    assert "  64 paths moved from self_care to urgent (rule S → U2)" in lines
    assert "    in every one: red_flags: none of these; fever: No; night (new question): Yes" \
        in lines
    assert "  288 paths still urgent, decided by another rule (U1 → U2: 288)" in lines
    assert lines[lines.index("QUESTIONS AND OUTCOMES") + 1] == \
        "  added: question 'night': Does the pain wake you at night?"
    assert lines[lines.index("RULE IDS") + 1] == "  added: U2"
    assert lines[-1] == "Result: no path gets less urgent advice; some get more urgent advice."
    assert not any(line.startswith("LESS URGENT") for line in lines)


def test_removing_that_question_again_is_less_urgent(tmp_path: Path, cli: Cli) -> None:
    new = edit_demo(tmp_path, "new.yaml", *NIGHT_PAIN)
    p = cli("diff", str(new), str(DEMO), "--examples", "0")
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert "  224 paths moved from urgent to routine (rules U2 → R1, U2 → R4, U2 → R2)" in lines
    assert "    in every one: red_flags: none of these; fever: No; night (removed question): Yes" \
        in lines
    assert lines[lines.index("QUESTIONS AND OUTCOMES") + 1] == "  removed: question 'night'"
    assert lines[lines.index("RULE IDS") + 1] == "  removed: U2"


def test_a_range_moved_is_found_for_the_numbers_between_the_old_and_new_line(
        tmp_path: Path, cli: Cli) -> None:
    new = edit_demo(
        tmp_path, "new.yaml",
        ("{range: [0, 13], label: {en: Less than 2 weeks, es: Menos de 2 semanas}}",
         "{range: [0, 20], label: {en: Less than 3 weeks, es: Menos de 3 semanas}}"),
        ("{range: [14, 42], label: {en: 2 to 6 weeks, es: De 2 a 6 semanas}}",
         "{range: [21, 42], label: {en: 3 to 6 weeks, es: De 3 a 6 semanas}}"),
        ("when: duration_days < 14 or", "when: duration_days < 21 or"))
    p = cli("diff", str(DEMO), str(new), "--examples", "0")
    assert p.returncode == 1
    lines = p.stdout.splitlines()
    assert lines[2:5] == [
        "LESS URGENT: 32 paths now get less urgent advice",
        "  32 paths moved from routine to self_care (rule R2 → S)",
        "    in every one: red_flags: none of these; duration: 2 to 6 weeks (14–20); fever: No",
    ]
    assert "  question 'duration': option '3 to 6 weeks' now records 21–42 (was 14–42)" in lines
    assert "  computed fact 'new_or_worse' is now when duration_days < 21 or trend == worsening " \
        "(was when duration_days < 14 or trend == worsening)" in lines


def test_text_edits_are_listed_per_language(tmp_path: Path, cli: Cli) -> None:
    new = edit_demo(
        tmp_path, "new.yaml",
        ("{en: Do you have a fever or chills?, es: ¿Tiene fiebre o escalofríos?}",
         "{en: Do you have a fever or the chills?, es: ¿Tiene usted fiebre o escalofríos?}"),
        ("{value: stable, label: {en: About the same, es: Igual}",
         "{value: stable, label: {en: The same, es: Igual}"),
        ("      en: Please book an appointment at the spine clinic.\n",
         "      en: Please book an appointment at the spine clinic within two weeks.\n"),
        ("title:\n  en: Back pain check (demo)\n", "title:\n  en: \"Back pain check <demo>\"\n"),
    )
    p = cli("diff", str(DEMO), str(new))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    texts = lines[lines.index("TEXTS") + 1: -2]
    assert texts == [
        '  the flow title [en]: "Back pain check (demo)" → "Back pain check <demo>"',
        "  question 'trend' option 2 'The same' [en]: \"About the same\" → \"The same\"",
        "  question 'fever' text [en]: \"Do you have a fever or chills?\" → "
        "\"Do you have a fever or the chills?\"",
        "  question 'fever' text [es]: \"¿Tiene fiebre o escalofríos?\" → "
        "\"¿Tiene usted fiebre o escalofríos?\"",
        "  outcome 'routine' headline [en]: \"Please book an appointment at the spine clinic.\" → "
        "\"Please book an appointment at the spine clinic within two weeks.\"",
    ]
    assert lines[-1] == "Result: every path keeps its advice."


def test_added_and_removed_questions_and_outcomes_are_listed(tmp_path: Path) -> None:
    new = edit_demo(
        tmp_path, "new.yaml",
        # bladder_examples goes; "Not sure" now asks again in other words
        ("        sets: {bladder_unsure: yes}\n        next: bladder_examples\n",
         "        sets: {bladder_unsure: yes}\n        next: bladder_again\n"),
        ("  - id: bladder_examples\n", "  - id: bladder_again\n"),
        ("  - id: under_16\n    disposition: out_of_scope\n",
         "  - id: too_young\n    disposition: out_of_scope\n"),
        ("        go: under_16\n", "        go: too_young\n"),
    )
    d = diff_flows(load(DEMO), load(new))
    assert d.added == ["question 'bladder_again': For example, a weak stream, having to strain, "
                       "or leaking wi…", "outcome 'too_young' (out_of_scope)"]
    assert d.removed == ["question 'bladder_examples'", "outcome 'under_16' (out_of_scope)"]
    assert d.moved == [] and not d.less_urgent
    assert "  question 'age': route removed: if age < 16 → under_16" in format_diff(d)


def test_json_report(tmp_path: Path, cli: Cli) -> None:
    new = edit_demo(tmp_path, "new.yaml", *FEVER_TO_SELF_CARE)
    p = cli("diff", str(DEMO), str(new), "--json", "--examples", "1")
    assert p.returncode == 1
    data = json.loads(p.stdout)
    assert data["paths"] == 591
    [moved] = data["less_urgent"]
    assert (moved["old"], moved["new"], moved["paths"], moved["rules"]) == (
        "urgent", "self_care", 288, {"U1": 288})
    assert moved["common"] == ["red_flags: none of these", "fever: Yes"]
    assert len(moved["examples"]) == 1
    assert data["checks_changed"] == [
        "safety check 'fever_not_self_care' removed (Fever never ends in self-care.)"]
    assert data["more_urgent"] == [] and data["texts_changed"] == []


def test_an_interrupt_sent_elsewhere_is_a_moved_path(tmp_path: Path) -> None:
    new = edit_demo(tmp_path, "new.yaml", (
        "    go: emergency\n    rule: E1\n    sets: {bladder_bowel_changes: yes}\n",
        "    go: urgent\n    rule: E1\n"))
    d = diff_flows(load(DEMO), load(new))
    [moved] = d.less_urgent
    assert (moved.old, moved.new, moved.count) == ("emergency", "urgent", 1)
    assert moved.examples == [["(typed at any time): “cant pee”"]]
    assert "interrupt 'cant_pee' now goes to 'urgent' (was 'emergency')" in d.changed


def test_a_broken_new_flow_is_refused_with_its_problems(tmp_path: Path, cli: Cli) -> None:
    new = edit_demo(tmp_path, "new.yaml", ("next: trend", "next: trnd"))
    p = cli("diff", str(DEMO), str(new))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith(f"{new}:") and "next step 'trnd' does not exist" in lines[0]
    assert lines[-1] == (f"error: {new}: the flow has 1 error(s); fix them first "
                         f"(python bot.py validate {new})")


def test_long_texts_are_shortened_around_the_change() -> None:
    old = "Most back pain like this gets better within a few weeks. Keep gently active; " \
          "short rests are fine. Ice may help the first 2 or 3 days."
    new = old.replace("a few weeks", "six weeks")
    assert shorten_pair(old, new, width=60) == (
        "…this gets better within a few weeks. Keep gently active;…",
        "…this gets better within six weeks. Keep gently active;…")
    assert shorten_pair("short", "also short") == ("short", "also short")
