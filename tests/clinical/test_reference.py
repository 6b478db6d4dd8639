"""flows/back_spasm.yaml against a separate, plain-Python reading of the rules.

1. Every case file's expectation agrees with the reference implementation (reference_rules.py,
   written from triage-rules.md section 1b alone), and the flow gives it (the case runner).
2. The flow agrees with the reference on every path: every option, every set of ticks and both
   ends of each class of typed ages, merged only where two paths have the same rule facts.
   A path stops asking once an emergency rule fires, so the reference is asked in its `partial`
   mode: it must reach the same disposition and rule from exactly the facts that path asked,
   and may not need a fact the path never asked (STarT Back after a U rule, the legs after an
   early exit, ...).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bot.casefiles import read_cases, run_case
from bot.flow import Flow, load_flow
from bot.flow.model import Outcome, Question

from .flowwalk import Ending, explore, startback_outcomes, taps, weighted_stats
from .reference_rules import (
    DISPOSITION_OF,
    EMERGENCY,
    OUT_OF_SCOPE,
    RULE_IDS,
    MissingFacts,
    classify,
    helpers,
)

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "flows" / "back_spasm.yaml"
CASE_FILES = sorted((ROOT / "flows" / "tests").glob("back_spasm*.yaml"))


@pytest.fixture(scope="module")
def flow() -> Flow:
    f, problems = load_flow(FLOW)
    assert f is not None, "\n".join(map(str, problems))
    return f


@pytest.fixture(scope="module")
def cases() -> list[Any]:
    found, problems = read_cases(CASE_FILES)
    assert not problems, "\n".join(map(str, problems))
    return [c for c in found if c.flow == "back_spasm"]


@pytest.fixture(scope="module")
def walked(flow: Flow) -> dict[str, Any]:
    ends: list[Ending] = []
    startback_entries: list[tuple[dict[str, Any], tuple[str, ...]]] = []
    states = explore(flow, ends.append, lambda facts, trail: startback_entries.append(
        (facts, trail)))
    return {"ends": ends, "startback": startback_entries, "states": states}


# -- 1. the case files ---------------------------------------------------------------------------

def test_case_files_cover_every_rule(cases: list[Any]) -> None:
    assert len(cases) >= 40
    rules = Counter(c.rule for c in cases)
    missing = set(RULE_IDS) - set(rules)
    assert not missing, f"no case for rules {sorted(missing)}"
    assert all(c.rule is not None or c.disposition == OUT_OF_SCOPE for c in cases)
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"


def test_case_expectations_agree_with_reference(cases: list[Any]) -> None:
    wrong = []
    for c in cases:
        got = classify(c.facts)  # full facts: strict top-down evaluation
        if got != (c.disposition, c.rule):
            wrong.append(f"{c.id}: case says {c.disposition}/{c.rule}, reference {got}")
    assert not wrong, "\n".join(wrong)


def test_flow_passes_every_case(flow: Flow, cases: list[Any]) -> None:
    failed = [r.describe() for r in (run_case(flow, c) for c in cases) if not r.passed]
    assert not failed, "\n".join(failed)


# -- 2. every path ---------------------------------------------------------------------------------

def test_every_path_agrees_with_reference(walked: dict[str, Any]) -> None:
    wrong = []
    checked = 0
    for end in walked["ends"]:
        if end.rule == "SH":  # self-harm: section 3 rule 7, not a row of the table
            assert end.outcome.disposition == EMERGENCY and end.outcome.id == "self_harm"
            continue
        got = (end.outcome.disposition, end.rule if end.outcome.disposition != OUT_OF_SCOPE
               else None)
        try:
            want = classify(end.known, partial=True)
        except MissingFacts as exc:
            wrong.append(f"{' → '.join(end.trail)} ⇒ {got}: the reference needs {exc}")
            continue
        checked += 1
        if want != got:
            wrong.append(f"{' → '.join(end.trail)} ⇒ flow {got}, reference {want}")
    assert not wrong, f"{len(wrong)} paths disagree, e.g.:\n" + "\n".join(wrong[:10])
    assert checked > 10_000


def test_every_path_to_startback_has_every_other_rule_ruled_out(
        walked: dict[str, Any]) -> None:
    """At STarT Back, every row above R4 is decided and false: R4 is the first open row."""
    assert walked["startback"], "no path reaches STarT Back"
    for facts, trail in walked["startback"]:
        with pytest.raises(MissingFacts) as exc:
            classify(facts, partial=True)
        assert exc.value.rule == "R4", " → ".join(trail)


def test_startback_section_agrees_with_reference(flow: Flow) -> None:
    """Every STarT Back answer: R4 exactly when the reference scores high risk, else S."""
    n = 0
    for items, disposition, rule in startback_outcomes(flow):
        risk = helpers(items)["startback_risk"]
        want = ("routine", "R4") if risk == "high" else ("self_care", "S")
        assert (disposition, rule) == want, items
        n += 1
    assert n == 256 * 5


def test_computed_facts_match_reference_helpers(flow: Flow, walked: dict[str, Any]) -> None:
    """`neuro` and `new_or_worse` as the flow computes them = as the reference defines them."""
    compared = 0
    for end in walked["ends"]:
        got = flow.all_facts(end.facts)
        want = helpers(end.facts)
        for name in ("neuro", "new_or_worse"):
            if got.get(name) is not None or want[name] is not None:
                assert got.get(name) == want[name], (name, end.trail)
                compared += 1
    assert compared > 1000


def test_computed_startback_scores_match_reference(flow: Flow) -> None:
    for items, _, _ in startback_outcomes(flow):
        got = flow.all_facts(items)
        want = helpers(items)
        for name in ("startback_total", "startback_psychosocial", "startback_risk"):
            assert got[name] == want[name], (name, items)


def test_rules_lead_to_the_right_screens(walked: dict[str, Any]) -> None:
    for end in walked["ends"]:
        if end.rule in ("U1", "U2"):
            assert end.outcome.id == "urgent_today", end.trail  # infection: the same day
        elif end.rule and end.rule.startswith("U"):
            assert end.outcome.id == "urgent", end.trail
        elif end.rule == "R4":
            assert end.outcome.id == "routine_pt", end.trail
        elif end.rule in ("R1", "R2", "R3"):
            assert end.outcome.id == "routine", end.trail
        if end.rule in DISPOSITION_OF:
            assert end.outcome.disposition == DISPOSITION_OF[end.rule], end.trail


def test_every_rule_is_reachable(flow: Flow, walked: dict[str, Any]) -> None:
    fired = {end.rule for end in walked["ends"]} | {r for _, _, r in startback_outcomes(flow)}
    assert set(RULE_IDS) <= fired
    assert any(end.outcome.disposition == OUT_OF_SCOPE for end in walked["ends"])


def test_every_rule_is_on_a_route_that_reaches_an_outcome(flow: Flow) -> None:
    """The engine records a route's rule only when the route reaches an outcome (through
    decisions); the path walker carries it through questions too. Keep them in step."""
    for sid, step in flow.steps.items():
        if not isinstance(step, Question):
            continue
        for r in step.routes:
            if r.rule is not None:
                assert isinstance(flow.steps[r.go], Outcome), (sid, r.rule, r.go)


# -- taps -------------------------------------------------------------------------------------

def test_taps_to_an_emergency(flow: Flow) -> None:
    counts = taps(flow)
    lo, _, _ = weighted_stats(counts["emergency"])
    assert lo == 1  # a typed phrase (interrupt)
    # every emergency sign on the first screen: tick + Done = 2 taps, and for both legs one
    # more question (how long) when the symptoms are new = 3 taps
    first = flow.steps[flow.start]
    assert isinstance(first, Question) and first.kind == "checklist"
    for o in first.options:
        facts = flow.answer_facts(first, (o.index,))
        target, rule = first.route(None, flow.lookup(facts))
        step = flow.steps[target or ""]
        if isinstance(step, Outcome):
            assert step.disposition == EMERGENCY and rule, o.label
            continue
        assert isinstance(step, Question)
        new = dict(facts)
        new.update(flow.answer_facts(step, 0))  # the first button: less than 2 weeks
        nxt, rule = step.route(step.options[0], flow.lookup(new))
        end = flow.steps[nxt or ""]
        assert rule == "E3" and isinstance(end, Outcome) and end.disposition == EMERGENCY
