"""What an edit of a flow changes for patients: paths whose advice moved, and every other change.

The paths are compared by walking both flows side by side for the same patient:

- a question both flows have (the same id) is answered once, and every answer is tried; the
  other flow gets the same answer (options paired by what they record, then by label, then by
  place; numbers and ranges by the number, tried on both sides of every line either flow
  draws, so moving "14 days" to "21 days" shows the patients in between);
- a question only one flow has is answered from what the patient told the other flow at its
  own questions (the facts), and every answer is tried when that does not say.

So every path of the old flow is driven through the new one, and every path only the new flow
has (a new question, a new branch) is tried too: the same as turning each path of one into a
case file and running it on the other, both ways. States that behave the same from there on
are walked once and counted for all, so flows with millions of paths compare in seconds.

The rest is a list: questions and outcomes added or removed, routes and answers changed, texts
changed per language, rule ids added or removed, safety checks changed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from bot.flow.catalogue import URGENCY
from bot.flow.conditions import Condition
from bot.flow.model import Flow, Option, Outcome, Question, Text
from bot.flow.paths import classes, downstream, number_classes, numeric_cuts

MAX_EXAMPLES = 5
MAX_DEPTH = 400
OLD, NEW = 0, 1
_Trail = tuple[tuple[int, str, str], ...]  # (side that was asked, question id, the answer)


# --- the result -----------------------------------------------------------------------------


@dataclass
class Moved:
    """Paths whose disposition (or only rule) changed from `old` to `new`."""

    old: str
    new: str
    count: int
    rules: dict[str, int]  # "U1 → S" -> paths
    common: list[str]  # answers given on every one of these paths
    examples: list[list[str]]  # a few paths, each as "question: answer" strings

    @property
    def less_urgent(self) -> bool:
        return URGENCY.get(self.new, -1) < URGENCY.get(self.old, -1)

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old, "new": self.new, "paths": self.count,
                "less_urgent": self.less_urgent, "rules": self.rules, "common": self.common,
                "examples": self.examples}


@dataclass(frozen=True)
class TextChange:
    where: str  # "question 'fever'", "outcome 'urgent'", "the flow"
    field: str  # text, help, option 'Yes', headline, ...
    lang: str
    old: str
    new: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "field": self.field, "lang": self.lang, "old": self.old,
                "new": self.new}


@dataclass
class FlowDiff:
    old_name: str
    new_name: str
    paths: int = 0  # answer paths tried on both flows
    moved: list[Moved] = field(default_factory=list)  # the disposition changed
    rule_only: list[Moved] = field(default_factory=list)  # same disposition, other rule
    unfinished: int = 0  # paths that reached no outcome in one of the flows
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    texts: list[TextChange] = field(default_factory=list)
    rules_added: list[str] = field(default_factory=list)
    rules_removed: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def less_urgent(self) -> list[Moved]:
        return [m for m in self.moved if m.less_urgent]

    @property
    def more_urgent(self) -> list[Moved]:
        return [m for m in self.moved if not m.less_urgent]

    @property
    def empty(self) -> bool:
        return not (self.moved or self.rule_only or self.added or self.removed or self.changed
                    or self.texts or self.rules_added or self.rules_removed or self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old_name, "new": self.new_name, "paths": self.paths,
            "less_urgent": [m.to_dict() for m in self.less_urgent],
            "more_urgent": [m.to_dict() for m in self.more_urgent],
            "rule_changed": [m.to_dict() for m in self.rule_only],
            "unfinished_paths": self.unfinished,
            "steps_added": self.added, "steps_removed": self.removed,
            "steps_changed": self.changed,
            "texts_changed": [t.to_dict() for t in self.texts],
            "rules_added": self.rules_added, "rules_removed": self.rules_removed,
            "checks_changed": self.checks,
        }


def diff_flows(old: Flow, new: Flow, *, old_name: str | None = None,
               new_name: str | None = None, examples: int = MAX_EXAMPLES) -> FlowDiff:
    """Compare two valid flows: the paths that moved, and every other change."""
    out = FlowDiff(old_name or old.file, new_name or new.file)
    _PathDiff(old, new, examples).run(out)
    _structure(old, new, out)
    _texts(old, new, out)
    return out


# --- paths, side by side --------------------------------------------------------------------


@dataclass
class _Acc:
    count: int
    examples: tuple[_Trail, ...]
    common: frozenset[tuple[int, str, str]]


_Group = tuple[str, str, str | None, str | None]  # old disposition, new, old rule, new rule
_Result = dict[_Group, _Acc]


class _Side:
    """One flow's part of the walk: what matters from each step on."""

    def __init__(self, flow: Flow, shared: set[str]):
        self.flow = flow
        self.live = downstream(flow, lambda q: set().union(
            *(self.expand(r.cond.reads) for r in q.routes if r.cond)))
        self.reach = downstream(flow, lambda q: {q.id})
        self.asks = downstream(flow, lambda q: set() if q.id in shared else _asked_here(q))

    def expand(self, facts: set[str]) -> set[str]:
        out: set[str] = set()
        todo = list(facts)
        while todo:
            f = todo.pop()
            if f in out:
                continue
            out.add(f)
            comp = self.flow.computed.get(f)
            if comp is not None:
                todo.extend(comp.reads)
        return out


def _asked_here(q: Question) -> set[str]:
    out = {q.fact} if q.fact else set()
    for o in q.options:
        if o.fact:
            out.add(o.fact)
        out.update(o.sets)
    return out


def _conditions(flow: Flow) -> list[Condition]:
    out: list[Condition] = []
    for step in flow.steps.values():
        if isinstance(step, Question):
            out.extend(r.cond for r in step.routes if r.cond)
    for comp in flow.computed.values():
        out.extend(([comp.when] if comp.when else []) + list(comp.count)
                   + [c for c, _ in comp.cases if c])
    return out


def _cuts(flow: Flow) -> dict[str, set[int]]:
    """For each number fact: the numbers c where c-1 and c may be treated differently."""
    cuts = numeric_cuts(_conditions(flow))
    for step in flow.steps.values():
        if isinstance(step, Question) and step.fact:
            for o in step.options:
                if o.range is not None:
                    got = cuts.setdefault(step.fact, set())
                    got.add(o.range[0])
                    if o.range[1] is not None:
                        got.add(o.range[1] + 1)
    return cuts


def _not(fact: str, value: Any) -> str:
    """The key of "the patient did not tick `fact` = value" (a fact name never has '≠')."""
    return f"{fact}≠{value!r}"


@dataclass
class _State:
    pos: tuple[list[Any], list[Any]]  # per side: [step, the facts its answers set, rule]
    given: tuple[dict[str, tuple[Any, dict[str, Any]]], ...]  # shared question -> answer
    free: tuple[dict[str, Any], ...]  # what a side was told at questions the other lacks

    def copy(self) -> _State:
        return _State((list(self.pos[0]), list(self.pos[1])),
                      (dict(self.given[0]), dict(self.given[1])),
                      (dict(self.free[0]), dict(self.free[1])))


class _PathDiff:
    """Walk both flows for the same patient.

    A question both flows have (same id) is answered once, by the first flow to reach it
    (every answer is tried); the other flow gets the same answer (options paired by meaning,
    label or place; numbers and ranges by the number). A question only one flow has is
    answered from what the patient told the other flow at its own questions, or tried with
    every answer when that does not say.
    """

    def __init__(self, old: Flow, new: Flow, examples: int):
        shared = {sid for sid, s in old.steps.items()
                  if isinstance(s, Question) and isinstance(new.steps.get(sid), Question)}
        self.shared = shared
        self.sides = (_Side(old, shared), _Side(new, shared))
        self.cuts = (_cuts(old), _cuts(new))
        self.pairs: tuple[dict[str, dict[int, int]], dict[str, dict[int, int]]] = ({}, {})
        for sid in shared:
            a, b = old.steps[sid], new.steps[sid]
            assert isinstance(a, Question) and isinstance(b, Question)
            pairs, _, _ = _match_options(old, a, new, b)
            self.pairs[OLD][sid] = {x.index: y.index for x, y in pairs}
            self.pairs[NEW][sid] = {y.index: x.index for x, y in pairs}
        self.examples = examples
        self.memo: dict[Any, _Result] = {}
        self.unfinished = 0

    def run(self, out: FlowDiff) -> None:
        old, new = self.sides[OLD].flow, self.sides[NEW].flow
        start = _State(([old.start, {}, None], [new.start, {}, None]), ({}, {}), ({}, {}))
        result = self.visit(start, 0)
        for it in old.interrupts:  # typed at any time: compared by interrupt id
            twin = next((x for x in new.interrupts if x.id == it.id), None)
            if twin is None:
                continue
            a, b = old.steps.get(it.go), new.steps.get(twin.go)
            if isinstance(a, Outcome) and isinstance(b, Outcome):
                said = next(iter(it.phrases.get(old.default_language, ())), it.id)
                trail: _Trail = ((OLD, "(typed at any time)", f"“{said}”"),)
                _add(result, (a.disposition, b.disposition, it.rule or a.rule,
                              twin.rule or b.rule), _Acc(1, (trail,), frozenset(trail)),
                     self.examples)
        by_pair: dict[tuple[str, str], list[tuple[_Group, _Acc]]] = {}
        for group, acc in result.items():
            out.paths += acc.count
            if group[0] != group[1] or group[2] != group[3]:
                by_pair.setdefault((group[0], group[1]), []).append((group, acc))
        for (a_disp, b_disp), items in by_pair.items():
            moved = self._moved(a_disp, b_disp, items)
            (out.moved if a_disp != b_disp else out.rule_only).append(moved)
        out.moved.sort(key=lambda m: (not m.less_urgent,
                                      URGENCY.get(m.new, -1) - URGENCY.get(m.old, -1), -m.count))
        out.rule_only.sort(key=lambda m: -m.count)
        out.unfinished = self.unfinished

    def _moved(self, a: str, b: str, items: list[tuple[_Group, _Acc]]) -> Moved:
        count = sum(acc.count for _, acc in items)
        rules = {(g[2] or "-") if g[2] == g[3] else f"{g[2] or '-'} → {g[3] or '-'}": acc.count
                 for g, acc in sorted(items, key=lambda x: -x[1].count)}
        common = frozenset.intersection(*(acc.common for _, acc in items))
        examples = [ex for _, acc in items for ex in acc.examples][: self.examples]
        shown = sorted(common, key=self._place)
        return Moved(a, b, count, rules, [self._words(x) for x in shown],
                     [[self._words(x) for x in ex] for ex in examples])

    def _place(self, item: tuple[int, str, str]) -> tuple[int, str]:
        """Where an answer's question stands: the old flow's order, then the new one's."""
        old, new = self.sides[OLD].flow, self.sides[NEW].flow
        order = {sid: i for i, sid in enumerate(old.steps)}
        for sid in new.steps:
            order.setdefault(sid, len(order))
        return order.get(item[1], -1), item[2]

    def _words(self, item: tuple[int, str, str]) -> str:
        side, qid, words = item
        other = self.sides[1 - side].flow
        if qid.startswith("(") or qid in other.steps:
            return f"{qid}: {words}"
        return f"{qid} ({'new' if side == NEW else 'removed'} question): {words}"

    # -- what the patient has told -----------------------------------------------------------
    def _known(self, side: int, q: Question, st: _State) -> tuple[dict[str, Any], Any]:
        """(facts the patient told that bear on q, the other flow's answer to q or None)."""
        other = 1 - side
        if q.id in self.shared:
            got = st.given[other].get(q.id)
            return (got[1], got[0]) if got is not None else ({}, None)
        return st.free[other], None

    def _ticks(self, side: int, q: Question, st: _State) -> list[bool | None]:
        """For each checklist option: ticked, not ticked, or not known."""
        facts, theirs = self._known(side, q, st)
        pairs = self.pairs[side].get(q.id, {})
        other_q = self.sides[1 - side].flow.steps.get(q.id)
        out: list[bool | None] = []
        for o in q.options:
            want = True if o.value is None else o.value
            j = pairs.get(o.index)
            if theirs is not None and isinstance(other_q, Question) and \
                    other_q.kind == "checklist" and j is not None:
                out.append(j in theirs)
            elif o.fact in facts:
                out.append(_same(facts[o.fact], want))
            elif o.fact is not None and _not(o.fact, want) in facts:
                out.append(False)
            else:
                out.append(None)
        return out

    def told(self, side: int, q: Question, st: _State) -> Any:
        """The answer the patient already gave for q, or None if it must be asked."""
        facts, theirs = self._known(side, q, st)
        other_q = self.sides[1 - side].flow.steps.get(q.id)
        if q.kind == "number":
            if theirs is not None and isinstance(other_q, Question) and other_q.kind == "number":
                return theirs
            value = facts.get(q.fact) if q.fact else None
            return value if isinstance(value, int | float) and not isinstance(value, bool) \
                else None
        if q.kind == "checklist":
            ticks = self._ticks(side, q, st)
            if any(t is None for t in ticks):
                return None
            return tuple(i for i, t in enumerate(ticks) if t)
        ranged = any(o.range is not None for o in q.options)
        if theirs is not None and not ranged and isinstance(other_q, Question) and \
                other_q.kind == "choice":
            j = self.pairs[side].get(q.id, {})
            back = {v: k for k, v in j.items()}
            if theirs in back:
                return back[theirs]
        if q.fact is not None:
            if q.fact not in facts:
                return None
            value = facts[q.fact]
            standing = [o for o in q.options
                        if (o.value is not None or o.range is not None) and o.stands_for(value)]
            for o in standing:
                if all(k in facts and _same(facts[k], v) for k, v in o.sets.items()):
                    return o.index
            for o in standing:
                if all(k not in facts or _same(facts[k], v) for k, v in o.sets.items()):
                    return o.index
            return None
        for o in q.options:
            if o.sets and all(k in facts and _same(facts[k], v) for k, v in o.sets.items()):
                return o.index
        return None

    def told_facts(self, flow: Flow, q: Question, answer: Any) -> dict[str, Any]:
        """What an answer tells about the patient: its facts, and which boxes were not ticked."""
        got = flow.answer_facts(q, answer)
        if q.kind == "checklist":
            for o in q.options:
                if o.index not in answer and o.fact and o.fact not in got:
                    got[_not(o.fact, True if o.value is None else o.value)] = True
        return got

    def choices(self, side: int, q: Question, st: _State
                ) -> list[tuple[Any, str, dict[str, Any]]]:
        """Every answer to try at q: (answer, its words, what the patient told by it)."""
        flow = self.sides[side].flow
        lang = flow.default_language
        out: list[tuple[Any, str, dict[str, Any]]] = []
        if q.kind == "number":
            assert q.fact is not None
            return [(v, words, {q.fact: v}) for v, words in self.numbers(side, q)]
        if q.kind == "checklist":
            ticks = self._ticks(side, q, st)
            fixed = [i for i, t in enumerate(ticks) if t]
            free = [i for i, t in enumerate(ticks) if t is None]
            for n in range(len(free) + 1):
                for combo in itertools.combinations(free, n):
                    chosen = tuple(sorted(fixed + list(combo)))
                    words = ", ".join(flow.text(q.options[i].label, lang) for i in chosen)
                    out.append((chosen, words or "none of these",
                                self.told_facts(flow, q, chosen)))
            return out
        facts, _ = self._known(side, q, st)
        options = [o for o in q.options if all(
            k not in facts or _same(facts[k], v) for k, v in o.sets.items())] or list(q.options)
        for o in options:
            label = flow.text(o.label, lang)
            got = flow.answer_facts(q, o.index)
            if o.range is not None and q.fact:
                for lo, hi in self.split(side, q.fact, o.range):
                    words = label if (lo, hi) == o.range else f"{label} ({_span(lo, hi)})"
                    out.append((o.index, words, {**got, q.fact: lo}))
            else:
                out.append((o.index, label, got))
        return out

    def numbers(self, side: int, q: Question) -> list[tuple[int, str]]:
        """Both ends of each class of numbers either flow tells apart."""
        assert q.fact is not None
        own = number_classes(self.sides[side].flow, q)
        lo, hi = own[0][0], own[-1][0]
        return classes(lo, hi, self.cuts[OLD].get(q.fact, set())
                       | self.cuts[NEW].get(q.fact, set()))

    def split(self, side: int, fact: str, rng: tuple[int, int | None]
              ) -> list[tuple[int, int | None]]:
        """A range option, split where the other flow draws a line inside it."""
        lo, hi = rng
        inner = sorted(c for c in self.cuts[1 - side].get(fact, set())
                       if c > lo and (hi is None or c <= hi))
        out: list[tuple[int, int | None]] = []
        start = lo
        for c in inner:
            out.append((start, c - 1))
            start = c
        out.append((start, hi))
        return out

    # -- the walk ---------------------------------------------------------------------------
    def advance(self, side: int, st: _State) -> bool:
        """Answer what the patient has already told, and decisions; False if stuck."""
        flow = self.sides[side].flow
        pos = st.pos[side]
        for _ in range(MAX_DEPTH):
            step = flow.steps.get(pos[0])
            if step is None:
                return False
            if isinstance(step, Outcome):
                return True
            answer = None if step.kind == "decision" else self.told(side, step, st)
            if step.kind != "decision" and answer is None:
                return True  # waits for the patient
            if not self.apply(side, step, answer, st):
                return False
        return False

    def apply(self, side: int, q: Question, answer: Any, st: _State) -> bool:
        flow = self.sides[side].flow
        pos = st.pos[side]
        option = q.options[answer] if q.kind == "choice" else None
        own = {**pos[1], **(flow.answer_facts(q, answer) if q.kind != "decision" else {})}
        target, rule = q.route(option, flow.lookup(own))
        if target is None:
            return False
        pos[:] = [target, own, rule or pos[2]]
        return True

    def key(self, st: _State) -> Any:
        so, sn = self.sides
        o, n = st.pos
        reach = (sn.reach.get(n[0], frozenset()), so.reach.get(o[0], frozenset()))
        asks = (sn.asks.get(n[0], frozenset()), so.asks.get(o[0], frozenset()))
        given = tuple(tuple(sorted((q, repr(a), _items(f, None)) for q, (a, f) in
                                   st.given[s].items() if q in reach[s])) for s in (OLD, NEW))
        return (o[0], o[2], _items(o[1], so.live.get(o[0], frozenset())),
                n[0], n[2], _items(n[1], sn.live.get(n[0], frozenset())), given,
                _items(st.free[OLD], asks[OLD]), _items(st.free[NEW], asks[NEW]))

    def visit(self, st: _State, depth: int) -> _Result:
        st = st.copy()
        if depth > MAX_DEPTH or not self.advance(OLD, st) or not self.advance(NEW, st):
            self.unfinished += 1
            return {}
        key = self.key(st)
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        old_step = self.sides[OLD].flow.steps[st.pos[OLD][0]]
        new_step = self.sides[NEW].flow.steps[st.pos[NEW][0]]
        result: _Result = {}
        if isinstance(old_step, Outcome) and isinstance(new_step, Outcome):
            group = (old_step.disposition, new_step.disposition,
                     st.pos[OLD][2] or old_step.rule, st.pos[NEW][2] or new_step.rule)
            result[group] = _Acc(1, ((),), frozenset())
        else:
            side = OLD if isinstance(old_step, Question) else NEW
            q = old_step if side == OLD else new_step
            assert isinstance(q, Question)
            for answer, words, told in self.choices(side, q, st):
                nxt = st.copy()
                if not self.apply(side, q, answer, nxt):
                    self.unfinished += 1
                    continue
                if q.id in self.shared:
                    nxt.given[side][q.id] = (answer, told)
                else:
                    nxt.free[side].update(told)
                child = self.visit(nxt, depth + 1)
                here = (side, q.id, words)
                for group, acc in child.items():
                    changed = group[0] != group[1] or group[2] != group[3]
                    _add(result, group, _Acc(
                        acc.count,
                        tuple((here,) + ex for ex in acc.examples) if changed else (),
                        acc.common | {here} if changed else frozenset()), self.examples)
        self.memo[key] = result
        return result


def _add(result: _Result, group: _Group, acc: _Acc, limit: int) -> None:
    have = result.get(group)
    if have is None:
        result[group] = _Acc(acc.count, acc.examples[:limit], acc.common)
        return
    room = limit - len(have.examples)
    result[group] = _Acc(have.count + acc.count,
                         have.examples + acc.examples[:room] if room > 0 else have.examples,
                         have.common & acc.common)


def _items(facts: dict[str, Any], keep: frozenset[str] | None) -> tuple[tuple[str, str], ...]:
    """The facts (and not-ticked marks) whose fact is in `keep` (None: all), as a key."""
    return tuple(sorted((k, repr(v)) for k, v in facts.items()
                        if keep is None or k.split("≠", 1)[0] in keep))


def _same(a: Any, b: Any) -> bool:
    return bool(a == b and type(a) is type(b))


def _span(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"{lo} or more"
    return str(lo) if lo == hi else f"{lo}–{hi}"


# --- structure ------------------------------------------------------------------------------


def _kind(step: Any) -> str:
    if isinstance(step, Outcome):
        return "outcome"
    return "decision" if step.kind == "decision" else "question"


def _edge(target: str, rule: str | None, label: str) -> str:
    cond = "otherwise" if label in ("otherwise", "next") else f"if {label}"
    return f"{cond} → {target}" + (f" [{rule}]" if rule else "")


def _rules(flow: Flow) -> set[str]:
    out: set[str] = set()
    for step in flow.steps.values():
        if isinstance(step, Question):
            out.update(r.rule for r in step.routes if r.rule)
        elif step.rule:
            out.add(step.rule)
    out.update(it.rule for it in flow.interrupts if it.rule)
    return out


def _structure(old: Flow, new: Flow, out: FlowDiff) -> None:
    lang = new.default_language
    for sid, step in new.steps.items():
        if sid not in old.steps:
            what = f"{_kind(step)} '{sid}'"
            if isinstance(step, Outcome):
                what += f" ({step.disposition})"
            elif step.text:
                what += f": {_short(new.text(step.text, lang), 60)}"
            out.added.append(what)
    for sid, step in old.steps.items():
        if sid not in new.steps:
            out.removed.append(f"{_kind(step)} '{sid}'" + (
                f" ({step.disposition})" if isinstance(step, Outcome) else ""))
    if old.start != new.start:
        out.changed.append(f"the flow now starts at '{new.start}' (was '{old.start}')")
    for sid, a in old.steps.items():
        b = new.steps.get(sid)
        if b is None:
            continue
        where = f"{_kind(b)} '{sid}'"
        if _kind(a) != _kind(b):
            out.changed.append(f"{where} was a {_kind(a)}")
            continue
        if isinstance(a, Outcome) and isinstance(b, Outcome):
            if a.disposition != b.disposition:
                out.changed.append(f"{where} is now {b.disposition} (was {a.disposition})")
            if a.rule != b.rule:
                out.changed.append(f"{where}: rule {a.rule or '-'} → {b.rule or '-'}")
            continue
        assert isinstance(a, Question) and isinstance(b, Question)
        if a.kind != b.kind:
            out.changed.append(f"{where} is now a {b.kind} question (was {a.kind})")
        if a.fact != b.fact:
            out.changed.append(f"{where} now records '{b.fact}' (was '{a.fact}')")
        if (a.min, a.max) != (b.min, b.max) and b.kind == "number":
            out.changed.append(f"{where} now accepts {b.min}–{b.max} (was {a.min}–{a.max})")
        pairs, gone, new_opts = _match_options(old, a, new, b)
        for o in gone:
            out.changed.append(f"{where}: option '{old.text(o.label, lang)}' removed")
        for o in new_opts:
            out.changed.append(f"{where}: option '{new.text(o.label, lang)}' added")
        for oa, ob in pairs:
            label = new.text(ob.label, lang)
            if (oa.value, oa.range, oa.fact, oa.otherwise) != (ob.value, ob.range, ob.fact,
                                                                 ob.otherwise):
                out.changed.append(f"{where}: option '{label}' now records "
                                   f"{_meaning(ob)} (was {_meaning(oa)})")
            if oa.sets != ob.sets:
                out.changed.append(f"{where}: option '{label}' now sets {ob.sets or 'nothing'} "
                                   f"(was {oa.sets or 'nothing'})")
        ea = [_edge(*e) for e in a.successors()]
        eb = [_edge(*e) for e in b.successors()]
        if ea != eb:
            for e in ea:
                if e not in eb:
                    out.changed.append(f"{where}: route removed: {e}")
            for e in eb:
                if e not in ea:
                    out.changed.append(f"{where}: route added: {e}")
            if sorted(ea) == sorted(eb):
                out.changed.append(f"{where}: routes reordered (the first that holds is taken): "
                                   + "; ".join(eb))
    _interrupts(old, new, out)
    _computed(old, new, out)
    ra, rb = _rules(old), _rules(new)
    out.rules_added = sorted(rb - ra)
    out.rules_removed = sorted(ra - rb)
    _checks(old, new, out)


def _meaning(o: Option) -> str:
    if o.range is not None:
        return _span(o.range[0], o.range[1])
    if o.fact:
        return f"{o.fact}" + (f" = {o.value}" if o.value is not None else "")
    return "nothing" if o.value is None else str(o.value)


def _match_options(old: Flow, a: Question, new: Flow, b: Question
                   ) -> tuple[list[tuple[Option, Option]], list[Option], list[Option]]:
    """Pair the options of a question in both flows: by meaning, then label, then place."""
    left, right = list(a.options), list(b.options)
    pairs: list[tuple[Option, Option]] = []
    lang = new.default_language

    def meaning(_: Flow, o: Option) -> Any:
        if o.value is None and o.range is None and not o.fact:
            return None  # a bare option (sets or next only): paired by label or place
        return (o.fact, repr(o.value), o.range)

    def label(flow: Flow, o: Option) -> Any:
        return flow.text(o.label, lang).casefold()

    def place(_: Flow, o: Option) -> Any:
        return o.index

    for key in (meaning, label, place):
        for oa in list(left):
            ka = key(old, oa)
            if ka is None:
                continue
            match = next((ob for ob in right if key(new, ob) == ka), None)
            if match is not None:
                pairs.append((oa, match))
                left.remove(oa)
                right.remove(match)
    return pairs, left, right


def _interrupts(old: Flow, new: Flow, out: FlowDiff) -> None:
    a = {it.id: it for it in old.interrupts}
    b = {it.id: it for it in new.interrupts}
    for iid in b.keys() - a.keys():
        out.added.append(f"interrupt '{iid}' (typed at any time → {b[iid].go})")
    for iid in a.keys() - b.keys():
        out.removed.append(f"interrupt '{iid}' (typed at any time → {a[iid].go})")
    for iid in sorted(a.keys() & b.keys()):
        x, y = a[iid], b[iid]
        if x.go != y.go:
            out.changed.append(f"interrupt '{iid}' now goes to '{y.go}' (was '{x.go}')")
        if x.sets != y.sets:
            out.changed.append(f"interrupt '{iid}' now sets {y.sets or 'nothing'} "
                               f"(was {x.sets or 'nothing'})")
        for lang in sorted(set(x.phrases) | set(y.phrases)):
            pa, pb = set(x.phrases.get(lang, ())), set(y.phrases.get(lang, ()))
            if pa != pb:
                parts = [f"added {', '.join(repr(p) for p in sorted(pb - pa))}"] if pb - pa \
                    else []
                if pa - pb:
                    parts.append(f"removed {', '.join(repr(p) for p in sorted(pa - pb))}")
                out.texts.append(TextChange(f"interrupt '{iid}'", "phrases", lang,
                                            "; ".join(sorted(pa)), "; ".join(parts)))


def _computed_text(c: Any) -> str:
    if c.when is not None:
        return f"when {c.when.text}"
    if c.count:
        return "count of " + ", ".join(x.text for x in c.count)
    return "; ".join(f"{'if ' + x.text + ': ' if x else 'else: '}{v}" for x, v in c.cases)


def _computed(old: Flow, new: Flow, out: FlowDiff) -> None:
    for name in sorted(old.computed.keys() | new.computed.keys()):
        a, b = old.computed.get(name), new.computed.get(name)
        if a is None and b is not None:
            out.added.append(f"computed fact '{name}' ({_computed_text(b)})")
        elif b is None and a is not None:
            out.removed.append(f"computed fact '{name}'")
        elif a is not None and b is not None and _computed_text(a) != _computed_text(b):
            out.changed.append(f"computed fact '{name}' is now {_computed_text(b)} "
                               f"(was {_computed_text(a)})")


def _checks(old: Flow, new: Flow, out: FlowDiff) -> None:
    a = {c.id: c for c in old.checks}
    b = {c.id: c for c in new.checks}

    def text(c: Any) -> str:
        return (f"if {c.when.text} then " if c.when else "always ") + c.then.text

    for cid in sorted(a.keys() - b.keys()):
        out.checks.append(f"safety check '{cid}' removed ({a[cid].say})")
    for cid in sorted(b.keys() - a.keys()):
        out.checks.append(f"safety check '{cid}' added ({b[cid].say})")
    for cid in sorted(a.keys() & b.keys()):
        if text(a[cid]) != text(b[cid]):
            out.checks.append(f"safety check '{cid}' is now '{text(b[cid])}' "
                              f"(was '{text(a[cid])}')")


# --- texts ----------------------------------------------------------------------------------


def _texts(old: Flow, new: Flow, out: FlowDiff) -> None:
    def cmp(where: str, name: str, a: Text, b: Text) -> None:
        for lang in sorted(set(a) | set(b), key=lambda x: (x not in new.languages, x)):
            x, y = " ".join(a.get(lang, "").split()), " ".join(b.get(lang, "").split())
            if x != y:
                out.texts.append(TextChange(where, name, lang, a.get(lang, ""),
                                            b.get(lang, "")))

    cmp("the flow", "title", old.title, new.title)
    cmp("the flow", "disclaimer", old.disclaimer, new.disclaimer)
    lang = new.default_language
    for sid, a in old.steps.items():
        b = new.steps.get(sid)
        if b is None or _kind(a) != _kind(b):
            continue
        where = f"{_kind(b)} '{sid}'"
        if isinstance(a, Outcome) and isinstance(b, Outcome):
            for name in ("headline", "text", "safety_net"):
                cmp(where, name, getattr(a, name), getattr(b, name))
            continue
        assert isinstance(a, Question) and isinstance(b, Question)
        for name in ("text", "help", "none_label", "done_label", "out_of_range"):
            cmp(where, name, getattr(a, name), getattr(b, name))
        pairs, _, _ = _match_options(old, a, new, b)
        for oa, ob in pairs:
            cmp(where, f"option {ob.index + 1} '{_short(new.text(ob.label, lang), 30)}'",
                oa.label, ob.label)
            for lg in sorted(set(oa.also) | set(ob.also)):
                if set(oa.also.get(lg, ())) != set(ob.also.get(lg, ())):
                    out.texts.append(TextChange(
                        where, f"option {ob.index + 1} also-words", lg,
                        ", ".join(oa.also.get(lg, ())), ", ".join(ob.also.get(lg, ()))))


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def shorten_pair(old: str, new: str, width: int = 70) -> tuple[str, str]:
    """Both texts cut to about `width` characters around where they differ."""
    old, new = " ".join(old.split()), " ".join(new.split())
    if len(old) <= width and len(new) <= width:
        return old, new
    p = 0
    while p < min(len(old), len(new)) and old[p] == new[p]:
        p += 1
    s = 0
    while s < min(len(old), len(new)) - p and old[-1 - s] == new[-1 - s]:
        s += 1
    context = 20

    def cut(text: str) -> str:
        start = max(0, p - context)
        end = min(len(text), len(text) - s + context)
        for _ in range(15):  # widen to whole words
            if start > 0 and text[start - 1] != " ":
                start -= 1
            if end < len(text) and text[end] != " ":
                end += 1
        piece = text[start:end]
        if len(piece) > width:
            piece = piece[: width - 1] + "…"
        return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")

    return cut(old), cut(new)


# --- the report -----------------------------------------------------------------------------


def _paths(n: int) -> str:
    return f"{n} path{'s' if n != 1 else ''}"


def format_diff(d: FlowDiff) -> list[str]:
    """The report a nurse reads: what moved, what else changed, and what to do."""
    lines = [f"Comparing {d.old_name} (old) with {d.new_name} (new): "
             f"{_paths(d.paths)} of answers tried on both."]

    def moved_block(title: str, items: list[Moved]) -> None:
        lines.append("")
        lines.append(title)
        for m in items:
            rules = ", ".join(m.rules)
            lines.append(f"  {_paths(m.count)} moved from {m.old} to {m.new} "
                         f"(rule{'s' if len(m.rules) > 1 else ''} {rules})" if m.old != m.new else
                         f"  {_paths(m.count)} still {m.old}, decided by another rule "
                         f"({', '.join(f'{r}: {n}' for r, n in m.rules.items())})")
            if m.common:
                lines.append(f"    in every one: {'; '.join(m.common)}")
            for i, ex in enumerate(m.examples, 1):
                lines.append(f"    {i}. {'; '.join(ex) or '(no answers)'}")
            if m.count > len(m.examples):
                lines.append(f"    … and {m.count - len(m.examples)} more like these")

    if d.less_urgent:
        n = sum(m.count for m in d.less_urgent)
        moved_block(f"LESS URGENT: {_paths(n)} now get less urgent advice", d.less_urgent)
    if d.more_urgent:
        n = sum(m.count for m in d.more_urgent)
        moved_block(f"MORE URGENT: {_paths(n)} now get more urgent advice", d.more_urgent)
    if d.rule_only:
        n = sum(m.count for m in d.rule_only)
        moved_block(f"SAME ADVICE, OTHER RULE: {_paths(n)}", d.rule_only)
    if d.unfinished:
        lines += ["", f"{_paths(d.unfinished)} reached no outcome in one of the flows "
                      "(check that every question has a route for every answer)"]
    if d.added or d.removed:
        lines += ["", "QUESTIONS AND OUTCOMES"]
        lines += [f"  added: {x}" for x in d.added]
        lines += [f"  removed: {x}" for x in d.removed]
    if d.changed:
        lines += ["", "ROUTES AND ANSWERS"]
        lines += [f"  {x}" for x in d.changed]
    if d.rules_added or d.rules_removed:
        lines += ["", "RULE IDS"]
        if d.rules_added:
            lines.append(f"  added: {', '.join(d.rules_added)}")
        if d.rules_removed:
            lines.append(f"  removed: {', '.join(d.rules_removed)}")
    if d.checks:
        lines += ["", "SAFETY CHECKS"]
        lines += [f"  {x}" for x in d.checks]
    if d.texts:
        lines += ["", "TEXTS"]
        for t in d.texts:
            if t.field == "phrases":
                lines.append(f"  {t.where} {t.field} [{t.lang}]: {t.new}")
                continue
            a, b = shorten_pair(t.old, t.new)
            a = f'"{a}"' if t.old.strip() else "(none)"
            b = f'"{b}"' if t.new.strip() else "(none)"
            lines.append(f"  {t.where} {t.field} [{t.lang}]: {a} → {b}")
    lines.append("")
    if d.less_urgent:
        n = sum(m.count for m in d.less_urgent)
        lines.append(f"Result: {_paths(n)} would get LESS urgent advice. A clinician must "
                     "review these before the new version goes live.")
    elif d.moved:
        lines.append("Result: no path gets less urgent advice; some get more urgent advice.")
    elif d.empty:
        lines.append("Result: no differences.")
    else:
        lines.append("Result: every path keeps its advice.")
    return lines
