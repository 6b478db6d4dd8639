"""Drive flows/back_spasm.yaml through every answer, for the clinical tests.

`explore` visits every path of the flow (every option, every set of checklist ticks, both ends
of each class of typed numbers, as `bot.flow.paths.answers` enumerates them) and calls back at
each outcome with the facts of that path. Unlike the validator's walker it merges two paths only
when they reach the same step with the same *rule facts* (every fact the section 1b table or
STarT Back reads), so that the reference implementation can be asked about every distinct
patient. STarT Back is checked once, on its own (see `startback_outcomes`), because its
questions read nothing but the STarT Back items.

`taps` counts the taps on each path: one per choice, ticks + Done on a checklist (one tap for
"None of these"), one per typed number, none for a decision.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bot.flow.conditions import walk
from bot.flow.model import Flow, Outcome, Question
from bot.flow.paths import answers, downstream

from .reference_rules import SB_ITEMS, NotValue

RULE_FACTS = {
    "other_emergency_symptoms", "bladder_bowel_changes", "saddle_numbness", "leg_pain",
    "numbness_tingling", "weakness", "balance_problems", "fever", "iv_drug_use",
    "immunosuppressed", "recent_spinal_procedure", "trigger", "cancer_history", "onset", "age",
    "steroid_use_or_osteoporosis", "weight_loss", "night_pain", "duration_days", "trend",
    *SB_ITEMS, "startback_9",
}
STARTBACK_STEPS = ("sb", "sb9")


@dataclass
class Ending:
    outcome: Outcome
    rule: str | None
    facts: dict[str, Any]  # as the flow filled them
    known: dict[str, Any]  # the same, plus what an unticked first-screen box says
    trail: tuple[str, ...]


def known_facts(flow: Flow, facts: dict[str, Any], ticked_first: tuple[int, ...] | None
                ) -> dict[str, Any]:
    """The path's facts plus what the first checklist says about facts it left unfilled.

    An unticked box for a choice fact ('Pain in both legs': leg_pain = both_legs) says the fact
    is not that value; if the flow never asked the fact again, the reference gets exactly that.
    """
    out = dict(facts)
    if ticked_first is None:
        return out
    first = flow.steps[flow.start]
    assert isinstance(first, Question) and first.kind == "checklist"
    for o in first.options:
        if o.index not in ticked_first and o.fact and o.fact not in out and o.value is not None:
            out[o.fact] = NotValue(o.value)
    return out


def explore(flow: Flow, on_end: Callable[[Ending], None],
            on_startback: Callable[[dict[str, Any], tuple[str, ...]], None]) -> int:
    """Visit every path; returns the number of distinct (step, rule facts) states visited."""
    lang = flow.default_language
    seen: set[Any] = set()
    cache: dict[str, list[tuple[Any, str]]] = {}

    def visit(sid: str, facts: dict[str, Any], rule: str | None, first: tuple[int, ...] | None,
              trail: tuple[str, ...]) -> None:
        step = flow.steps[sid]
        if isinstance(step, Outcome):
            on_end(Ending(step, rule or step.rule, facts, known_facts(flow, facts, first), trail))
            return
        if sid == STARTBACK_STEPS[0]:
            on_startback(known_facts(flow, facts, first), trail)
            return
        key = (sid, rule, first is not None and tuple(sorted(first)),
               frozenset((k, v) for k, v in facts.items() if k in RULE_FACTS))
        if key in seen:
            return
        seen.add(key)
        if sid not in cache:
            cache[sid] = answers(flow, step, lang)
        for answer, words in cache[sid]:
            new = dict(facts)
            new.update(flow.answer_facts(step, answer))
            option = step.options[answer] if step.kind == "choice" else None
            target, route_rule = step.route(option, flow.lookup(new))
            assert target is not None, f"no way on from {sid} with {words}"
            visit(target, new, route_rule or rule, answer if sid == flow.start else first,
                  trail + (f"{sid}={words}",))

    visit(flow.start, {}, None, None, ())
    for it in flow.interrupts:
        target = flow.steps[it.go]
        assert isinstance(target, Outcome)
        on_end(Ending(target, it.rule or target.rule, dict(it.sets), dict(it.sets),
                      (f"typed '{it.id}'",)))
    return len(seen)


def startback_outcomes(flow: Flow) -> Iterator[tuple[dict[str, Any], str, str | None]]:
    """Every STarT Back answer (2^8 x 5), driven through sb and sb9: (items, disposition,
    rule). Asserts first that these steps read nothing but the STarT Back items."""
    for sid in STARTBACK_STEPS:
        q = flow.steps[sid]
        assert isinstance(q, Question)
        for r in q.routes:
            if r.cond is not None:
                reads = {t.fact for t in walk(r.cond.node)}
                expanded = set()
                for f in reads:
                    comp = flow.computed.get(f)
                    expanded |= comp.reads | {f} if comp else {f}
                assert expanded <= set(SB_ITEMS) | {"startback_9", "startback_total",
                                                    "startback_psychosocial", "startback_risk"}
    nine = flow.steps["sb9"]
    assert isinstance(nine, Question)
    for ticks in itertools.product([False, True], repeat=8):
        for o in nine.options:
            facts: dict[str, Any] = dict(zip(SB_ITEMS, ticks, strict=True))
            sid = STARTBACK_STEPS[0]
            # the checklist(s) before sb9: tick the boxes that hold
            while sid != "sb9":
                q = flow.steps[sid]
                assert isinstance(q, Question) and q.kind == "checklist"
                ticked = tuple(p.index for p in q.options if facts[p.fact or ""])
                answered = flow.answer_facts(q, ticked)
                assert all(facts[k] == v for k, v in answered.items())
                nxt, _ = q.route(None, flow.lookup(facts))
                assert nxt is not None
                sid = nxt
            facts["startback_9"] = o.value
            target, rule = nine.route(o, flow.lookup(facts))
            end = flow.steps[target or ""]
            assert isinstance(end, Outcome)
            yield facts, end.disposition, rule or end.rule


def taps(flow: Flow) -> dict[str, Counter[int]]:
    """For each disposition, how many paths need how many taps (paths merged as the validator
    merges them: by the facts still read further on)."""
    lang = flow.default_language
    live = _live_facts(flow)
    memo: dict[Any, Counter[tuple[str, int]]] = {}
    cache: dict[str, list[tuple[Any, str]]] = {}

    def cost(q: Question, answer: Any) -> int:
        if q.kind == "checklist":
            return len(answer) + 1 if answer else 1
        return 0 if q.kind == "decision" else 1

    def visit(sid: str, facts: dict[str, Any]) -> Counter[tuple[str, int]]:
        step = flow.steps[sid]
        if isinstance(step, Outcome):
            return Counter({(step.disposition, 0): 1})
        key = (sid, frozenset((k, v) for k, v in facts.items() if k in live[sid]))
        if key in memo:
            return memo[key]
        total: Counter[tuple[str, int]] = Counter()
        if sid not in cache:
            cache[sid] = answers(flow, step, lang)
        for answer, _ in cache[sid]:
            new = dict(facts)
            new.update(flow.answer_facts(step, answer))
            option = step.options[answer] if step.kind == "choice" else None
            target, _ = step.route(option, flow.lookup(new))
            c = cost(step, answer)
            for (disp, n), count in visit(target or "", new).items():
                total[(disp, n + c)] += count
        memo[key] = total
        return total

    out: dict[str, Counter[int]] = {}
    for (disp, n), count in visit(flow.start, {}).items():
        out.setdefault(disp, Counter())[n] += count
    for it in flow.interrupts:  # typing a phrase at the first question: one message
        target = flow.steps[it.go]
        assert isinstance(target, Outcome)
        out.setdefault(target.disposition, Counter())[1] += 1
    return out


def _live_facts(flow: Flow) -> dict[str, frozenset[str]]:
    """Facts read at or after each step (the validator's liveness, without its checks)."""

    def own(question: Question) -> set[str]:
        reads: set[str] = set()
        for r in question.routes:
            if r.cond:
                todo = list(r.cond.reads)
                while todo:
                    f = todo.pop()
                    if f in reads:
                        continue
                    reads.add(f)
                    comp = flow.computed.get(f)
                    if comp:
                        todo.extend(comp.reads)
        return reads

    return downstream(flow, own)


def weighted_stats(counter: Counter[int]) -> tuple[int, float, int]:
    """(minimum, median, maximum) over paths, each answer sequence counted once."""
    items = sorted(counter.items())
    total = sum(c for _, c in items)
    half = (total - 1) / 2
    seen = 0
    lo_med = hi_med = None
    for n, c in items:
        if lo_med is None and seen + c > int(half):
            lo_med = n
        if hi_med is None and seen + c > int(half + 0.5):
            hi_med = n
        seen += c
    assert lo_med is not None and hi_med is not None
    return items[0][0], (lo_med + hi_med) / 2, items[-1][0]
