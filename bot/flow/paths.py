"""Every path through a flow: enumerate the answers, reach an outcome, check the safety checks.

A flow is finite, so all paths can be walked. Answers are enumerated as:
- a choice question: each option;
- a checklist: every combination of ticks;
- a typed number: both ends of each class of numbers that the flow's conditions tell apart
  (for `age < 16`, `age > 50`, `age >= 70` and bounds 1–120: 1, 15, 16, 50, 51, 69, 70, 120).

Paths that reach the same step with the same *live* facts (those still read further on, or by
a check) behave the same from there, so their continuation is walked once and counted for all.
Interrupts are paths too: the phrase typed at the first question.
"""

from __future__ import annotations

import itertools
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .conditions import Asked, Condition, Test, walk
from .model import Flow, Outcome, Question
from .structure import structure_key

if TYPE_CHECKING:
    from .loader import _Builder

MAX_STATES = 2_000_000


@dataclass(frozen=True)
class Answer:
    """One answer on a path: the question, what was answered, and its words for a person."""

    step: str
    answer: Any  # option index, tuple of ticked indexes, a number, or None (decision)
    words: str


@dataclass
class PathResult:
    answers: tuple[Answer, ...]
    outcome: str
    disposition: str
    rule: str | None
    facts: dict[str, Any]
    count: int = 1  # how many full answer sequences this (grouped) path stands for


@dataclass
class Walk:
    paths: int = 0
    results: list[PathResult] = field(default_factory=list)
    failures: list[tuple[str, PathResult]] = field(default_factory=list)
    states: int = 0
    truncated: bool = False


def downstream(flow: Flow, own: Callable[[Question], set[str]]) -> dict[str, frozenset[str]]:
    """For each step: the union of `own(q)` over every question reachable from it, itself
    included (backward data flow to a fixed point)."""
    live: dict[str, set[str]] = {sid: (set(own(s)) if isinstance(s, Question) else set())
                                 for sid, s in flow.steps.items()}
    changed = True
    while changed:
        changed = False
        for sid, step in flow.steps.items():
            if isinstance(step, Question):
                for target, _, _ in step.successors():
                    extra = live.get(target, set()) - live[sid]
                    if extra:
                        live[sid] |= extra
                        changed = True
    return {sid: frozenset(v) for sid, v in live.items()}


def comparison_cuts(ref: Test) -> list[int]:
    """The numbers c where c-1 and c may be told apart by one comparison (`age >= 70`: 70)."""
    out: list[int] = []
    for v in ref.values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or ref.op is None:
            continue
        c = int(v)
        if ref.op in ("<", ">="):
            out.append(c)
        elif ref.op in ("<=", ">"):
            out.append(c + 1)
        else:
            out.extend((c, c + 1))
    return out


def numeric_cuts(conditions: Iterable[Condition]) -> dict[str, set[int]]:
    """For each number fact, every cut its comparisons make."""
    cuts: dict[str, set[int]] = {}
    for cond in conditions:
        for ref in walk(cond.node):
            if isinstance(ref, Test) and ref.op is not None:
                found = comparison_cuts(ref)
                if found:
                    cuts.setdefault(ref.fact, set()).update(found)
    return cuts


def classes(lo: int, hi: int, cuts: Iterable[int]) -> list[tuple[int, str]]:
    """(value, description) for both ends of each class of lo..hi that the cuts make."""
    out: list[tuple[int, str]] = []
    start = lo
    for c in sorted(c for c in set(cuts) if lo < c <= hi) + [hi + 1]:
        end = c - 1
        out.append((start, f"{start} (of {start}–{end})" if end != start else str(start)))
        if end != start:
            out.append((end, f"{end} (of {start}–{end})"))
        start = c
    return out


def number_classes(flow: Flow, q: Question) -> list[tuple[int, str]]:
    """(value, description) for both ends of each class of numbers the conditions tell apart."""
    assert q.fact is not None
    spec = flow.facts.get(q.fact)
    lo = q.min if q.min is not None else (spec.min if spec and spec.min is not None else 0)
    hi = q.max if q.max is not None else (spec.max if spec and spec.max is not None else lo + 100)
    return classes(lo, hi, numeric_cuts(_all_conditions(flow)).get(q.fact, set()))


def _all_conditions(flow: Flow) -> Iterator[Any]:
    for step in flow.steps.values():
        if isinstance(step, Question):
            for r in step.routes:
                if r.cond:
                    yield r.cond
    for comp in flow.computed.values():
        if comp.when:
            yield comp.when
        yield from comp.count
        yield from (c for c, _ in comp.cases if c)
    for ck in flow.checks:
        if ck.when:
            yield ck.when
        yield ck.then


def answers(flow: Flow, q: Question, lang: str) -> list[tuple[Any, str]]:
    """Every answer to enumerate at a question, with its words."""
    if q.kind == "choice":
        return [(o.index, flow.text(o.label, lang)) for o in q.options]
    if q.kind == "checklist":
        out: list[tuple[Any, str]] = []
        idx = [o.index for o in q.options]
        for n in range(len(idx) + 1):
            for combo in itertools.combinations(idx, n):
                words = ", ".join(flow.text(q.options[i].label, lang) for i in combo)
                out.append((combo, words or "none of these"))
        return out
    if q.kind == "number":
        return list(number_classes(flow, q))
    return [(None, "")]


_ABSENT = object()  # a fact not filled, in a memo key (told apart from every value, None too)

# The answers so far, newest first, as nested pairs: a path is only spelled out when reported.
_Trail = tuple[Any, Answer] | None
Pick = Callable[[tuple[Any, ...]], tuple[Any, ...]]


def _spell(trail: _Trail) -> tuple[Answer, ...]:
    out: list[Answer] = []
    while trail is not None:
        trail, answer = trail
        out.append(answer)
    out.reverse()
    return tuple(out)


def _picker(positions: list[int]) -> Pick:
    """These positions of a tuple, as a tuple."""
    if not positions:
        return lambda t: ()
    if len(positions) == 1:
        i = positions[0]
        return lambda t: (t[i],)
    return operator.itemgetter(*positions)


class _Edge:
    """One answer at a question, worked out once for every state at that question.

    A state's key holds the values of its facts in a fixed order (`_Walker.key`); with the
    values this answer fills put after them, the key of the next state and the facts the
    question's routes read are picked from that tuple, without building the new facts.
    """

    __slots__ = ("filled", "values", "asks", "option", "fixed", "answer", "where",
                 "route_pick", "picks")

    def __init__(self, filled: dict[str, Any], asks: frozenset[str], option: Any,
                 fixed: tuple[str | None, str | None] | None, answer: Answer | None,
                 order: tuple[str, ...], route_names: tuple[str, ...] | None):
        self.filled = filled  # the facts this answer fills
        self.values = tuple(filled.values())
        self.asks = asks  # the asked facts it adds that a check reads
        self.option = option  # the option chosen (a choice question) or None
        self.fixed = fixed  # (next step, rule) when no fact decides it, else None
        self.answer = answer  # the answer on a path (None at a decision)
        where = {name: i for i, name in enumerate(order)}
        where.update({name: len(order) + j for j, name in enumerate(filled)})
        self.where = where  # fact → its place in (state's key facts + values)
        self.route_pick = self.pick(route_names) if route_names is not None else None
        self.picks: dict[str, Pick | None] = {}  # next step → picks its key facts (or None)

    def pick(self, names: tuple[str, ...]) -> Pick | None:
        """Picks these facts' values after this answer, or None if a fact is not at hand."""
        if not all(n in self.where for n in names):
            return None
        return _picker([self.where[n] for n in names])


class _Walker:
    """Depth-first walk with shared continuations.

    A state is (step, rule carried, the values of the facts still read from that step on or by
    a check, the asked facts a check reads); its count of paths is worked out once. The facts
    a state carries are complete (they are reported with a path); only its key is narrowed.
    """

    def __init__(self, flow: Flow, lang: str, keep: bool, limit: int = MAX_STATES):
        self.flow = flow
        self.lang = lang
        self.keep = keep
        self.limit = limit
        self.result = Walk()
        self.live = self._liveness()
        self.check_reads: set[str] = set()
        self.asked_reads: set[str] = set()
        for ck in flow.checks:
            for cond in ([ck.when] if ck.when else []) + [ck.then]:
                for ref in walk(cond.node):
                    if isinstance(ref, Asked):
                        self.asked_reads.add(ref.fact)
                    else:
                        self.check_reads |= self._expand({ref.fact})
        # `asked` is kept to the facts a check reads in asked(): nothing else reads it
        self.asked_keep = frozenset(self.asked_reads)
        self.check_order = tuple(sorted(self.check_reads))
        self.key_order: dict[str, tuple[str, ...]] = {}  # per step: the facts its key holds
        self.memo: dict[Any, int] = {}
        self.on_trail: set[Any] = set()  # states being walked (a loop back to one is cut)
        self.ends: set[Any] = set()  # outcomes already checked, by what the checks read
        self.edges: dict[str, list[_Edge]] = {}
        self.routes: dict[Any, tuple[str | None, str | None]] = {}  # (edge, facts read) → route

    def _expand(self, facts: set[str]) -> set[str]:
        out: set[str] = set()
        todo = list(facts)
        while todo:
            f = todo.pop()
            comp = self.flow.computed.get(f)
            if comp is None:
                out.add(f)
            elif f not in out:
                out.add(f)
                todo.extend(comp.reads)
        return out

    def _liveness(self) -> dict[str, frozenset[str]]:
        """Facts read at or after each step."""
        return downstream(self.flow, lambda q: set().union(
            *(self._expand(r.cond.reads) for r in q.routes if r.cond)))

    def _key_order(self, sid: str) -> tuple[str, ...]:
        order = self.key_order.get(sid)
        if order is None:
            order = tuple(sorted(self.live.get(sid, frozenset()) | self.check_reads))
            self.key_order[sid] = order
        return order

    def key(self, sid: str, facts: dict[str, Any], asked: frozenset[str],
            rule: str | None) -> Any:
        """The state: two paths with the same key behave the same from here on."""
        get = facts.get
        return (sid, rule, tuple([get(k, _ABSENT) for k in self._key_order(sid)]),
                asked & self.asked_keep)

    def _route_names(self, q: Question) -> tuple[str, ...] | None:
        """Every name the routes of q look up (computed facts and what they read), or None
        if that is not known exactly (an asked() test), so routes are worked out each time."""
        names: set[str] = set()
        for r in q.routes:
            if r.cond is not None:
                names |= self._expand(r.cond.reads)
        conds = [r.cond for r in q.routes if r.cond is not None]
        for name in names:
            comp = self.flow.computed.get(name)
            if comp is not None:
                conds += ([comp.when] if comp.when else []) + list(comp.count) + \
                    [c for c, _ in comp.cases if c is not None]
        if any(isinstance(ref, Asked) for c in conds for ref in walk(c.node)):
            return None
        return tuple(sorted(names))

    @staticmethod
    def _fixed(q: Question, option: Any) -> tuple[str | None, str | None] | None:
        """Where an answer goes when no fact decides it (as Question.route), else None."""
        if option is not None and option.next:
            return option.next, None
        for r in q.routes:
            if r.broken:
                continue
            return (r.go, r.rule) if r.cond is None else None
        return q.next, None

    def _edges(self, q: Question) -> list[_Edge]:
        edges = self.edges.get(q.id)
        if edges is None:
            order = self._key_order(q.id)
            route_names = self._route_names(q)
            edges = []
            for answer, words in answers(self.flow, q, self.lang):
                option = q.options[answer] if q.kind == "choice" else None
                edges.append(_Edge(
                    self.flow.answer_facts(q, answer), self._asked_by(q, answer) & self.asked_keep,
                    option, self._fixed(q, option),
                    Answer(q.id, answer, words) if q.kind != "decision" else None,
                    order, route_names))
            self.edges[q.id] = edges
        return edges

    def _pick_for(self, edge: _Edge, target: str) -> Pick | None:
        """Picks the key facts of the state after `edge` at `target` (what an outcome's checks
        read, at an outcome)."""
        if target in edge.picks:
            return edge.picks[target]
        step = self.flow.steps[target]
        names = self.check_order if isinstance(step, Outcome) else self._key_order(target)
        pick = edge.picks[target] = edge.pick(names)
        return pick

    def run(self) -> Walk:
        flow = self.flow
        self.visit(flow.start, {}, frozenset(), None, 0)
        for it in flow.interrupts:
            target = flow.steps.get(it.go)
            if isinstance(target, Outcome):
                words = f"typed '{next(iter(it.phrases.get(self.lang, ())), it.id)}'"
                self.finish(target, dict(it.sets), frozenset(),
                            (None, Answer(flow.start, it.id, words)), it.rule)
        return self.result

    def visit(self, sid: str, facts: dict[str, Any], asked: frozenset[str], trail: _Trail,
              depth: int, rule: str | None = None, key: Any = None) -> int:
        """The number of paths from here; `depth` is how many answers `trail` holds, `key`
        this state's key if the caller has it."""
        flow = self.flow
        step = flow.steps[sid]
        if isinstance(step, Outcome):
            return self.finish(step, facts, asked, trail, rule)
        if key is None:
            key = self.key(sid, facts, asked, rule)
        on_trail = self.on_trail
        if key in on_trail:
            return 0  # back to where this path already was, with nothing new: a loop
        result = self.result
        if depth > 300:
            result.truncated = True
            return 0
        keep = self.keep
        memo = self.memo
        if not keep:
            n = memo.get(key)
            if n is not None:
                result.paths += n
                return n
        result.states += 1
        if result.states > self.limit:
            result.truncated = True
            return 0
        total = 0
        on_trail.add(key)
        steps = flow.steps
        routes = self.routes
        ends = self.ends
        # as the engine does: a route's rule counts when it ends at an outcome, through
        # decisions; a question in between starts afresh
        carried = rule if step.kind == "decision" else None
        known = key[2]  # the values of this state's key facts
        for edge in self._edges(step):
            after = known + edge.values if edge.values else known
            new: dict[str, Any] | None = None
            if edge.fixed is not None:
                target, route_rule = edge.fixed
            elif edge.route_pick is not None:
                seen = (edge, edge.route_pick(after))
                went = routes.get(seen)
                if went is None:
                    new = {**facts, **edge.filled}
                    went = routes[seen] = step.route(edge.option, flow.lookup(new))
                target, route_rule = went
            else:
                new = {**facts, **edge.filled}
                target, route_rule = step.route(edge.option, flow.lookup(new))
            if target is None:
                continue
            nxt = steps.get(target)
            if nxt is None:
                continue
            now_rule = route_rule or carried
            now_asked = asked | edge.asks if edge.asks else asked
            pick = edge.picks[target] if target in edge.picks else self._pick_for(edge, target)
            now_depth = depth if edge.answer is None else depth + 1
            child_key = None
            if isinstance(nxt, Outcome):
                if pick is not None and not keep:
                    final_rule = now_rule or nxt.rule
                    end = (target, final_rule, pick(after), now_asked)
                    result.paths += 1
                    total += 1
                    if end in ends:
                        continue
                    ends.add(end)
                    if new is None:
                        new = {**facts, **edge.filled} if edge.values else facts
                    self.judge(nxt, new, now_asked, trail if edge.answer is None
                               else (trail, edge.answer), final_rule)
                    continue
            elif pick is not None:
                child_key = (target, now_rule, pick(after), now_asked)
                if not keep and now_depth <= 300 and child_key not in on_trail:
                    n = memo.get(child_key)
                    if n is not None:
                        result.paths += n
                        total += n
                        continue
            if new is None:
                new = {**facts, **edge.filled} if edge.values else facts
            total += self.visit(target, new, now_asked,
                                trail if edge.answer is None else (trail, edge.answer),
                                now_depth, now_rule, child_key)
            if result.truncated:
                break
        on_trail.discard(key)
        memo[key] = total
        return total

    def _asked_by(self, q: Question, answer: Any) -> frozenset[str]:
        if q.kind == "checklist":  # every box was put to the patient, ticked or not
            return frozenset(o.fact for o in q.options if o.fact)
        if q.kind == "decision":
            return frozenset()
        return frozenset(self.flow.answer_facts(q, answer)) | (
            frozenset([q.fact]) if q.fact else frozenset())

    def finish(self, out: Outcome, facts: dict[str, Any], asked: frozenset[str],
               trail: _Trail, rule: str | None) -> int:
        self.result.paths += 1
        final_rule = rule or out.rule
        asked = asked & self.asked_keep
        if not self.keep:  # the checks read only these: an end seen before holds the same
            get_fact = facts.get
            end = (out.id, final_rule, tuple([get_fact(k, _ABSENT) for k in self.check_order]),
                   asked)
            if end in self.ends:
                return 1
            self.ends.add(end)
        self.judge(out, facts, asked, trail, final_rule)
        return 1

    def judge(self, out: Outcome, facts: dict[str, Any], asked: frozenset[str],
              trail: _Trail, final_rule: str | None) -> None:
        """Run the checks on a path that ends at `out` (and list it, with keep)."""
        found: PathResult | None = None
        if self.keep:
            found = PathResult(_spell(trail), out.id, out.disposition, final_rule,
                               self.flow.all_facts(facts))
            self.result.results.append(found)
        get_base = self.flow.lookup(facts)
        pseudo = {"disposition": out.disposition, "rule": final_rule}

        def get(name: str) -> Any:
            if name in pseudo:
                return pseudo[name]
            if name.startswith("asked("):
                return name[6:-1] in asked
            return get_base(name)

        for ck in self.flow.checks:
            if ck.when is not None and ck.when(get) is not True:
                continue
            if ck.then(get) is not True:
                if found is None:
                    found = PathResult(_spell(trail), out.id, out.disposition, final_rule,
                                       self.flow.all_facts(facts))
                self.result.failures.append((ck.id, found))


def walk_paths(flow: Flow, lang: str | None = None, *, keep: bool = False,
               limit: int = MAX_STATES) -> Walk:
    """Walk every path. keep=True lists each path (no sharing of continuations)."""
    return _Walker(flow, lang or flow.default_language, keep, limit).run()


def describe_path(res: PathResult) -> str:
    steps = [f"{a.step}={a.words}" for a in res.answers]
    return " → ".join(steps) + f" ⇒ {res.outcome} ({res.disposition}" + \
        (f", rule {res.rule})" if res.rule else ")")


# Proofs made, by structure (bot/flow/structure.py) → paths checked: only proofs where every
# check held on every path. A flow whose structure was proved before (an edit of its words)
# is not walked again.
_PROVED: OrderedDict[str, int] = OrderedDict()
_PROVED_MAX = 16
_proved_lock = threading.Lock()


def forget_proofs() -> None:
    """Forget every proof made (the next check of each flow walks it again)."""
    with _proved_lock:
        _PROVED.clear()


def check_properties(flow: Flow, builder: _Builder) -> None:
    """Run the flow's safety checks over every path; report a counterexample for each."""
    key = structure_key(flow)
    with _proved_lock:
        paths = _PROVED.get(key)
        if paths is not None:
            _PROVED.move_to_end(key)
    if paths is not None:
        builder.paths_checked = paths
        return
    result = walk_paths(flow)
    if result.truncated:
        builder.warn(("checks",), f"the flow has too many paths to check them all (stopped "
                     f"after {result.states} states); the safety checks were not proved")
        return
    seen: set[str] = set()
    for check_id, res in result.failures:
        if check_id in seen:
            continue
        seen.add(check_id)
        ck = next(c for c in flow.checks if c.id == check_id)
        idx = flow.checks.index(ck)
        builder.err(("checks", idx), f"check '{ck.id}' fails ({ck.say}): counterexample "
                    f"{describe_path(res)}")
    builder.paths_checked = result.paths
    if not result.failures:
        with _proved_lock:
            _PROVED[key] = result.paths
            _PROVED.move_to_end(key)
            while len(_PROVED) > _PROVED_MAX:
                _PROVED.popitem(last=False)
