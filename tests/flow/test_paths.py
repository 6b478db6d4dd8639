"""The all-paths proof: exact counts, the same verdicts as a plain enumeration of every path,
and a proof reused only for an edit of the words (never for a change of routing)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from bot.flow import Flow, LoadResult, check_text, paths
from bot.flow.model import Outcome, Question
from bot.flow.paths import answers, describe_path, forget_proofs, walk_paths
from bot.flow.structure import structure_key

ROOT = Path(__file__).resolve().parents[2]
DEMO = (ROOT / "flows" / "demo.yaml").read_text(encoding="utf-8")
BACK = (ROOT / "flows" / "back_spasm.yaml").read_text(encoding="utf-8")

# edits of the words only: wording, labels, advice, title, comments and blank lines
WORDING = [
    ("    text: {en: Do you have a fever or chills?, es: ¿Tiene fiebre o escalofríos?}",
     "    text: {en: Any fever or chills?, es: ¿Fiebre o escalofríos?}"),
    ("label: {en: Getting better, es: Mejorando}", "label: {en: Better, es: Mejor}"),
    ("questions:\n", "questions:\n\n  # a comment, and a blank line above: every line moves\n"),
]
# edits of the routing: each changes what some path does
ROUTING = [
    ("      - if: fever\n        go: urgent\n        rule: U1\n", ""),  # fever_not_self_care
    ("      - if: duration_days > 42\n", "      - if: duration_days > 13\n"),
    ("      - if: age < 16\n", "      - if: age < 18\n"),
    ('      - {value: yes, label: {en: "Yes", es: "Sí"}}\n    next: worries',
     '      - {value: yes, label: {en: "Yes", es: "Sí"}, next: urgent}\n    next: worries'),
]


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def check(text: str) -> LoadResult:
    return check_text(text, "flow.yaml", lint=False)


# -- a plain enumeration, no sharing: every path, one by one ---------------------------------
def every_path(flow: Flow) -> Iterator[tuple[str, list[str], Outcome, str | None, dict[str, Any],
                                             set[str]]]:
    """(words of the path, step=answer list, outcome, rule, facts, asked) for each path."""
    lang = flow.default_language

    def go(sid: str, facts: dict[str, Any], asked: set[str], trail: list[str],
           rule: str | None) -> Iterator[Any]:
        step = flow.steps[sid]
        if isinstance(step, Outcome):
            yield trail, step, rule or step.rule, facts, asked
            return
        assert isinstance(step, Question)
        for answer, words in answers(flow, step, lang):
            new = {**facts, **flow.answer_facts(step, answer)}
            if step.kind == "checklist":
                now = asked | {o.fact for o in step.options if o.fact}
            elif step.kind == "decision":
                now = asked
            else:
                now = asked | set(flow.answer_facts(step, answer)) | (
                    {step.fact} if step.fact else set())
            option = step.options[answer] if step.kind == "choice" else None
            target, route_rule = step.route(option, flow.lookup(new))
            if target is None or target not in flow.steps:
                continue
            more = [f"{sid}={words}"] if step.kind != "decision" else []
            carried = rule if step.kind == "decision" else None
            yield from go(target, new, now, trail + more, route_rule or carried)

    for trail, out, rule, facts, asked in go(flow.start, {}, set(), [], None):
        yield " → ".join(trail), trail, out, rule, facts, asked
    for it in flow.interrupts:
        target = flow.steps.get(it.go)
        if isinstance(target, Outcome):
            words = f"typed '{next(iter(it.phrases.get(lang, ())), it.id)}'"
            yield (f"{flow.start}={words}", [], target, it.rule or target.rule, dict(it.sets),
                   set())


def plain_verdict(flow: Flow) -> tuple[int, dict[str, str]]:
    """(paths, first counterexample of each failing check) by plain enumeration."""
    count = 0
    first: dict[str, str] = {}
    for words, _, out, rule, facts, asked in every_path(flow):
        count += 1
        base = flow.lookup(facts)
        pseudo = {"disposition": out.disposition, "rule": rule}

        def get(name: str, pseudo: dict[str, Any] = pseudo, asked: set[str] = asked,
                base: Any = base) -> Any:
            if name in pseudo:
                return pseudo[name]
            if name.startswith("asked("):
                return name[6:-1] in asked
            return base(name)

        for ck in flow.checks:
            if ck.when is not None and ck.when(get) is not True:
                continue
            if ck.then(get) is not True and ck.id not in first:
                first[ck.id] = f"{words} ⇒ {out.id} ({out.disposition}" + (
                    f", rule {rule})" if rule else ")")
    return count, first


def walked_verdict(flow: Flow) -> tuple[int, dict[str, str]]:
    result = walk_paths(flow)
    assert not result.truncated
    first: dict[str, str] = {}
    for check_id, res in result.failures:
        first.setdefault(check_id, describe_path(res))
    return result.paths, first


def unchecked(text: str) -> Flow:
    """The flow of a text whose only errors are failing safety checks."""
    res = check(text)
    if res.flow is not None:
        return res.flow
    assert all("counterexample" in p.message for p in res.errors), [str(p) for p in res.errors]
    with mock.patch.object(paths, "check_properties", lambda flow, builder: None):
        res = check(text)
    assert res.flow is not None
    return res.flow


@pytest.mark.parametrize("change", [None, *ROUTING], ids=lambda c: "demo" if c is None
                         else c[0].strip().splitlines()[0])
def test_the_walk_agrees_with_every_path_one_by_one(change: tuple[str, str] | None) -> None:
    flow = unchecked(DEMO if change is None else edit(DEMO, *change))
    plain = plain_verdict(flow)
    assert walked_verdict(flow) == plain
    assert walk_paths(flow, keep=True).paths == plain[0]
    if change is not None and change[1] == "":
        assert "fever_not_self_care" in plain[1]  # a failing check, found the same way


def test_back_spasm_is_proved_on_every_path() -> None:
    forget_proofs()
    res = check(BACK)
    assert res.errors == [] and res.paths_checked == 347_410_212
    assert res.flow is not None
    walked = walk_paths(res.flow)
    assert (walked.paths, walked.states, walked.failures, walked.truncated) == (
        347_410_212, 8_142, [], False)


def test_a_limit_stops_the_walk_and_the_checks_are_not_proved() -> None:
    flow = unchecked(BACK)
    walked = walk_paths(flow, limit=500)
    assert walked.truncated and walked.states == 501


# -- the structure: what the proof reads -----------------------------------------------------
def test_an_edit_of_the_words_keeps_the_structure() -> None:
    key = structure_key(unchecked(DEMO))
    for old, new in WORDING:
        assert structure_key(unchecked(edit(DEMO, old, new))) == key, old


@pytest.mark.parametrize("change", ROUTING + [
    ("  - id: fever\n", "  - id: fever\n    min: 1\n"),
    ("disposition: urgent", "disposition: emergency"),
    ("then: disposition == emergency", "then: disposition in (emergency, urgent)"),
], ids=lambda c: c[0].strip().splitlines()[0])
def test_any_other_edit_changes_the_structure(change: tuple[str, str]) -> None:
    flow = unchecked(edit(DEMO, *change))
    assert structure_key(flow) != structure_key(unchecked(DEMO))


def test_the_routes_order_is_structure() -> None:
    flow = unchecked(DEMO)
    q = next(s for s in flow.steps.values() if isinstance(s, Question) and len(s.routes) > 2)
    swapped = dataclasses.replace(q, routes=(q.routes[1], q.routes[0]) + q.routes[2:])
    other = dataclasses.replace(flow, steps={**flow.steps, q.id: swapped})
    assert structure_key(other) != structure_key(flow)


def test_a_kind_of_value_the_key_does_not_know_stops_it() -> None:
    flow = unchecked(DEMO)
    odd = dataclasses.replace(flow, facts={**flow.facts, "x": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="say whether the proof reads it"):
        structure_key(odd)


# -- reusing a proof -------------------------------------------------------------------------
@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The number of paths of each walk made."""
    forget_proofs()
    made: list[int] = []
    real = paths.walk_paths

    def counting(flow: Flow, *args: Any, **kwargs: Any) -> Any:
        result = real(flow, *args, **kwargs)
        made.append(result.paths)
        return result

    monkeypatch.setattr(paths, "walk_paths", counting)
    yield made
    forget_proofs()


def test_an_edit_of_the_words_reuses_the_proof(walks: list[int]) -> None:
    first = check(DEMO)
    assert first.flow is not None and walks == [first.paths_checked]
    for old, new in WORDING:
        res = check(edit(DEMO, old, new))
        assert res.flow is not None and res.errors == []
        assert res.paths_checked == first.paths_checked
        assert res.flow.source == edit(DEMO, old, new)  # the flow of the edit, words and all
    assert len(walks) == 1


def test_a_routing_edit_is_proved_again(walks: list[int]) -> None:
    assert check(DEMO).flow is not None
    broken = check(edit(DEMO, *ROUTING[0]))  # right after the proof of the demo
    assert broken.flow is None and len(walks) == 2
    [problem] = broken.errors
    assert problem.message.startswith("check 'fever_not_self_care' fails")
    for change in ROUTING[1:]:
        res = check(edit(DEMO, *change))
        assert res.errors == [] or all("counterexample" in p.message for p in res.errors)
    assert len(walks) == 1 + len(ROUTING)


def test_a_failed_proof_is_never_reused(walks: list[int]) -> None:
    text = edit(DEMO, *ROUTING[0])
    assert check(text).flow is None
    relabelled = edit(text, "label: {en: Getting better, es: Mejorando}",
                      "label: {en: Better, es: Mejor}")
    again = check(relabelled)
    assert again.flow is None and len(walks) == 2
    [problem] = again.errors
    assert problem.message.startswith("check 'fever_not_self_care' fails")


def test_back_spasm_a_routing_edit_after_a_proof(walks: list[int]) -> None:
    assert check(BACK).paths_checked == 347_410_212
    worded = check(edit(BACK, "have you had any of these?", "have you had any of this?"))
    assert worded.paths_checked == 347_410_212 and len(walks) == 1
    exits = ("      - {if: bladder_bowel_changes, go: emergency, rule: E1}\n"
             "      - {if: saddle_numbness, go: emergency, rule: E2}\n")
    swapped = "".join(reversed(exits.splitlines(keepends=True)))
    res = check(edit(BACK, exits, swapped))
    assert res.flow is not None and res.paths_checked == 347_410_212 and len(walks) == 2
    res = check(edit(BACK, "{if: other_emergency_symptoms, go: emergency, rule: X1}",
                     "{if: other_emergency_symptoms, go: urgent, rule: U1}"))
    assert res.flow is None and len(walks) == 3
    assert res.errors[0].message.startswith(
        "check 'x1_emergency' fails (Chest pain, fainting, severe belly pain or breathlessness "
        "always ends in emergency.): counterexample flags=Chest pain, fainting, bad belly pain, "
        "or hard to breathe ⇒ urgent (urgent, rule U1)")
