"""The runtime flow: immutable, with conditions compiled and every node's file position."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .catalogue import FactSpec
from .conditions import Condition, Lookup

Text = dict[str, str]
Pos = tuple[int, int]


def normalise(text: str) -> str:
    """Lower case, no accents or apostrophes, single spaces: for matching typed text."""
    text = text.replace("\u2019", "").replace("\u2018", "").replace("'", "").casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.replace("?", " ").replace("!", " ").replace(".", " ").split())


@dataclass(frozen=True)
class Option:
    index: int
    label: Text
    value: Any = None
    range: tuple[int, int | None] | None = None
    fact: str | None = None
    otherwise: Any = None
    sets: dict[str, Any] = field(default_factory=dict)
    next: str | None = None
    also: dict[str, tuple[str, ...]] = field(default_factory=dict)
    pos: Pos = (1, 1)

    def stands_for(self, value: Any) -> bool:
        """True if this option is the answer for a fact value (choice or range)."""
        if self.range is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            lo, hi = self.range
            return value >= lo and (hi is None or value <= hi)
        return self.value is not None and self.value == value and type(self.value) is type(value)

    def fact_value(self) -> Any:
        """The value recorded for the question's fact: a range records its lowest number."""
        if self.range is not None:
            return self.range[0]
        return self.value


@dataclass(frozen=True)
class Route:
    cond: Condition | None
    go: str
    rule: str | None
    pos: Pos = (1, 1)
    broken: bool = False  # its condition could not be read (reported; never taken)


@dataclass(frozen=True)
class Question:
    id: str
    kind: str  # choice | checklist | number | decision
    fact: str | None
    text: Text
    help: Text
    options: tuple[Option, ...]
    none_label: Text
    done_label: Text
    min: int | None
    max: int | None
    out_of_range: Text
    routes: tuple[Route, ...]
    next: str | None
    pos: Pos = (1, 1)

    is_outcome = False

    def route(self, option: Option | None, get: Lookup) -> tuple[str | None, str | None]:
        """Where an answer goes: (next step, rule id of the route taken)."""
        if option is not None and option.next:
            return option.next, None
        for r in self.routes:
            if r.broken:
                continue
            if r.cond is None or r.cond(get) is True:
                return r.go, r.rule
        return self.next, None

    def successors(self) -> list[tuple[str, str | None, str]]:
        """(target, rule, label) for every edge out of this step."""
        out: list[tuple[str, str | None, str]] = []
        has_default = any(o.next is None for o in self.options) or self.kind in (
            "number", "decision", "checklist") or not self.options
        for o in self.options:
            if o.next:
                out.append((o.next, None, next(iter(o.label.values()), "")))
        if has_default:
            for r in self.routes:
                out.append((r.go, r.rule, r.cond.text if r.cond else "otherwise"))
            if self.next and not (self.routes and self.routes[-1].cond is None):
                out.append((self.next, None, "next"))
        return out


@dataclass(frozen=True)
class Outcome:
    id: str
    disposition: str
    rule: str | None
    headline: Text
    text: Text
    safety_net: Text
    pos: Pos = (1, 1)

    is_outcome = True


@dataclass(frozen=True)
class Interrupt:
    id: str
    phrases: dict[str, tuple[str, ...]]  # normalised
    go: str
    rule: str | None
    sets: dict[str, Any]
    pos: Pos = (1, 1)


@dataclass(frozen=True)
class Computed:
    name: str
    when: Condition | None = None
    count: tuple[Condition, ...] = ()
    cases: tuple[tuple[Condition | None, Any], ...] = ()
    pos: Pos = (1, 1)

    @property
    def reads(self) -> set[str]:
        conds: list[Condition] = [self.when] if self.when else \
            list(self.count) + [c for c, _ in self.cases if c]
        return set().union(*(c.reads for c in conds if c)) if conds else set()

    def compute(self, get: Lookup) -> Any:
        if self.when is not None:
            return self.when(get)
        if self.count:
            total = 0
            for cond in self.count:
                v = cond(get)
                if v is None:
                    return None
                total += bool(v)
            return total
        for case_if, value in self.cases:
            if case_if is None:
                return value
            v = case_if(get)
            if v is None:
                return None
            if v:
                return value
        return None


@dataclass(frozen=True)
class Check:
    id: str
    say: str
    when: Condition | None
    then: Condition
    pos: Pos = (1, 1)


Step = Question | Outcome


@dataclass(frozen=True)
class Flow:
    """A loaded, valid flow version."""

    id: str
    version: str
    languages: tuple[str, ...]
    title: Text
    disclaimer: Text
    start: str
    facts: dict[str, FactSpec]
    computed: dict[str, Computed]
    steps: dict[str, Step]
    interrupts: tuple[Interrupt, ...]
    checks: tuple[Check, ...]
    file: str = "<flow>"
    hash: str = ""
    source: str = ""  # the YAML text this version was loaded from

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def text(self, text: Text, lang: str) -> str:
        return text.get(lang) or text.get(self.default_language) or next(iter(text.values()), "")

    def question(self, step_id: str) -> Question | None:
        step = self.steps.get(step_id)
        return step if isinstance(step, Question) else None

    def lookup(self, facts: dict[str, Any]) -> Lookup:
        """A fact lookup that works out computed facts on demand."""
        computed = self.computed

        def get(name: str) -> Any:
            if name in facts:
                return facts[name]
            comp = computed.get(name)
            if comp is not None:
                return comp.compute(get)
            return None

        return get

    def answer_facts(self, q: Question, answer: Any) -> dict[str, Any]:
        """The facts an answer fills: an option index, a set of ticked indexes, or a number."""
        out: dict[str, Any] = {}
        if q.kind == "choice":
            o = q.options[answer]
            if q.fact and (o.value is not None or o.range is not None):
                out[q.fact] = o.fact_value()
            out.update(o.sets)
        elif q.kind == "checklist":
            ticked = set(answer)
            for o in q.options:  # unticked first, so a tick wins for a shared fact
                if o.index in ticked or not o.fact:
                    continue
                if o.otherwise is not None:
                    out.setdefault(o.fact, o.otherwise)
                elif (spec := self.facts.get(o.fact)) is not None and spec.type == "yes_no":
                    out.setdefault(o.fact, False)
            for o in q.options:
                if o.index in ticked and o.fact:
                    out[o.fact] = True if o.value is None else o.value
                    out.update(o.sets)
        elif q.kind == "number" and q.fact:
            out[q.fact] = answer
        return out

    def all_facts(self, facts: dict[str, Any]) -> dict[str, Any]:
        """The facts plus every computed fact that can be worked out from them."""
        get = self.lookup(facts)
        out = dict(facts)
        for name in self.computed:
            v = get(name)
            if v is not None:
                out[name] = v
        return out
