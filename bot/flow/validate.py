"""Semantic checks on a shaped flow: facts, texts, routes, reachability, loops, limits.

Each check adds problems and goes on; nothing stops at the first problem. Path-based safety
checks (every path through the flow) live in `paths.py` and run when the graph is sound.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from .catalogue import OUTCOME_KINDS, FactSpec
from .conditions import Asked, BoolOp, Condition, Not, Test, walk
from .limits import MAX_CALLBACK_BYTES, MAX_MESSAGE_CHARS, longest_button_bytes
from .model import Flow, Option, Outcome, Question, normalise
from .problems import did_you_mean
from .yamlsrc import Path

if TYPE_CHECKING:
    from .loader import _Builder

LANG_NAMES = {"en": "English", "es": "Spanish"}
DEFAULT_LABELS = {
    "none": {"en": "None of these", "es": "Ninguno de estos"},
    "done": {"en": "Done", "es": "Listo"},
}
PSEUDO_FACTS = {"disposition", "rule"}


def _qpath(flow: Flow, step_id: str, sections: dict[str, Any]) -> Path:
    for i, q in enumerate(sections["questions"]):
        if q is not None and q.id == step_id:
            return ("questions", i)
    for i, o in enumerate(sections["outcomes"]):
        if o is not None and o.id == step_id:
            return ("outcomes", i)
    return ()


class Checker:
    def __init__(self, builder: _Builder, flow: Flow, sections: dict[str, Any]):
        self.b = builder
        self.flow = flow
        self.sections = sections
        self.paths = {sid: _qpath(flow, sid, sections) for sid in flow.steps}

    def err(self, path: Path, msg: str, *, key: bool = False) -> None:
        self.b.err(path, msg, key=key)

    def warn(self, path: Path, msg: str, *, key: bool = False) -> None:
        self.b.warn(path, msg, key=key)

    def run(self) -> None:
        self.check_header()
        self.check_computed()
        for sid, step in self.flow.steps.items():
            if isinstance(step, Question):
                self.check_question(step, self.paths[sid])
            else:
                self.check_outcome(step, self.paths[sid])
        self.check_interrupts()
        self.check_checks()
        if self.b.shapeless:
            return  # the graph would only echo the shape errors already reported
        graph_ok = self.check_graph()
        if graph_ok:
            self.check_filled()
        if not any(p.level == "error" for p in self.b.problems):
            from .paths import check_properties

            check_properties(self.flow, self.b)

    # -- texts -----------------------------------------------------------------------------
    def text(self, text: dict[str, str] | None, path: Path, what: str, *,
             required: bool = True, defaults: dict[str, str] | None = None) -> None:
        if not text:
            if required and not defaults:
                self.err(path[:-1], f"{self.b.where(path[:-1])} has no '{path[-1]}'; "
                         f"add the {what} for each language")
            elif required and defaults:
                for lang in self.flow.languages:
                    if lang not in defaults:
                        self.err(path[:-1], f"{self.b.where(path[:-1])} needs '{path[-1]}' "
                                 f"with a '{lang}' text (there is no built-in one for it)")
            return
        for lang in self.flow.languages:
            value = text.get(lang)
            if value is None:
                name = LANG_NAMES.get(lang, lang)
                self.err(path, f"{self.b.where(path[:-1])}: the {what} has no '{lang}' "
                         f"({name}) version; add a line '{lang}: ...' under '{path[-1]}'")
            elif not str(value).strip():
                self.err(path + (lang,), f"{self.b.where(path[:-1])}: the '{lang}' {what} "
                         "is empty")
            elif len(str(value)) > MAX_MESSAGE_CHARS:
                self.err(path + (lang,), f"{self.b.where(path[:-1])}: the '{lang}' {what} "
                         f"has {len(value)} characters; Telegram allows {MAX_MESSAGE_CHARS} in "
                         "a message: shorten it or split it")
        for lang in text:
            if lang not in self.flow.languages:
                self.warn(path + (lang,), f"{self.b.where(path[:-1])}: '{lang}' is not one of "
                          f"the flow's languages ({', '.join(self.flow.languages)}); this text "
                          "is never shown", key=True)
        if not self.b.lint:
            return
        from .readability import check_text

        for lang, value in text.items():
            if lang in self.flow.languages and isinstance(value, str):
                note = check_text(value, lang)
                if note:
                    self.warn(path + (lang,), f"{self.b.where(path[:-1])}: the '{lang}' {what} "
                              f"{note}")

    def check_header(self) -> None:
        flow = self.flow
        seen: set[str] = set()
        for i, lang in enumerate(flow.languages):
            if not (isinstance(lang, str) and lang.isalpha() and 2 <= len(lang) <= 3
                    and lang.islower()):
                self.err(("languages", i), f"'{lang}' is not a language code; use two lower "
                         "case letters like en or es (quote it if YAML reads it as yes/no)")
            if lang in seen:
                self.err(("languages", i), f"language '{lang}' is listed twice")
            seen.add(lang)
        if flow.title:
            self.text(flow.title, ("title",), "title")
        self.text(flow.disclaimer, ("disclaimer",), "disclaimer")
        if flow.start not in flow.steps:
            if not flow.steps:
                self.err(("questions",), "the flow has no questions; add at least one")
            else:
                self.err(("start",), f"start step '{flow.start}' does not exist"
                         f"{did_you_mean(flow.start, flow.steps)}")
        elif isinstance(flow.steps[flow.start], Outcome):
            self.warn(("start",), f"the flow starts at outcome '{flow.start}': it asks nothing")

    # -- facts and conditions --------------------------------------------------------------
    def fact(self, name: Any, path: Path, *, askable: bool = True) -> FactSpec | None:
        spec = self.flow.facts.get(name) if isinstance(name, str) else None
        if spec is None:
            self.err(path, f"unknown fact '{name}'{did_you_mean(name, self.flow.facts)}; "
                     "use a name from shared/clinical/facts.md or declare it under 'facts:'")
            return None
        if askable and spec.computed:
            self.err(path, f"'{name}' is a computed fact: it is worked out, never asked")
            return None
        return spec

    def value(self, spec: FactSpec, value: Any, path: Path) -> bool:
        if spec.accepts(value):
            return True
        shown = ("yes" if value else "no") if isinstance(value, bool) else value
        hint = did_you_mean(value, spec.values) if spec.type == "choice" else ""
        extra = ""
        if spec.type == "choice" and isinstance(value, bool):
            extra = " (YAML reads unquoted yes/no as yes/no; quote the word if you meant it)"
        self.err(path, f"'{shown}' is not a value of fact '{spec.name}', which is "
                 f"{spec.describe()}{hint}{extra}")
        return False

    def condition(self, cond: Condition | None, path: Path, *, pseudo: bool = False) -> None:
        if cond is None:
            return
        line, col = self.b.src.where(path)
        for ref in walk(cond.node):
            name = ref.fact
            if isinstance(ref, Asked) and not pseudo:
                self.err(path, f"condition '{cond.text}': asked() can only be used in safety "
                         "checks; a route reads the facts themselves")
                continue
            if pseudo and name in PSEUDO_FACTS and isinstance(ref, Test):
                self._pseudo_values(cond, ref, path)
                continue
            spec = self.flow.facts.get(name)
            if spec is None and name in self.b.shapeless:
                continue
            if spec is None:
                self.b.problems.append(self.b.src.problem(path, "error", (
                    f"condition '{cond.text}' names unknown fact '{name}'"
                    f"{did_you_mean(name, self.flow.facts)}")))
                continue
            if isinstance(ref, Asked):
                continue
            assert isinstance(ref, Test)
            self._test_types(cond, ref, spec, path)
        del line, col

    def _pseudo_values(self, cond: Condition, ref: Test, path: Path) -> None:
        """`disposition == ...` and `rule == ...` in a check must name real values."""
        if ref.fact == "disposition":
            known: tuple[str, ...] = OUTCOME_KINDS
        else:
            rules = {r.rule for st in self.flow.steps.values() if isinstance(st, Question)
                     for r in st.routes if r.rule}
            rules |= {st.rule for st in self.flow.steps.values()
                      if isinstance(st, Outcome) and st.rule}
            rules |= {it.rule for it in self.flow.interrupts if it.rule}
            known = tuple(sorted(rules))
        if ref.op is None:
            self.err(path, f"condition '{cond.text}': compare '{ref.fact}', like "
                     f"'{ref.fact} == {known[0] if known else 'x'}'")
            return
        for v in ref.values:
            if not isinstance(v, str) or v not in known:
                what = "a disposition" if ref.fact == "disposition" else "a rule of this flow"
                self.err(path, f"condition '{cond.text}': '{v}' is not {what} (one of "
                         f"{', '.join(known)}){did_you_mean(v, known)}")

    def _test_types(self, cond: Condition, ref: Test, spec: FactSpec, path: Path) -> None:
        where = f"condition '{cond.text}'"
        if ref.op is None:
            if spec.type != "yes_no":
                self.err(path, f"{where}: '{spec.name}' is {spec.describe()}, not yes/no; "
                         f"compare it, like '{spec.name} == {_example(spec)}'")
            return
        if ref.op in ("<", "<=", ">", ">=") and spec.type != "number":
            self.err(path, f"{where}: '{spec.name}' is not a number, so '{ref.op}' cannot "
                     f"be used; write '{spec.name} == {_example(spec)}'")
            return
        for v in ref.values:
            if spec.type == "choice" and (not isinstance(v, str) or v not in spec.values):
                self.err(path, f"{where}: '{v}' is not a value of '{spec.name}' "
                         f"(one of {', '.join(spec.values)}){did_you_mean(v, spec.values)}")
            elif spec.type == "yes_no" and not isinstance(v, bool):
                self.err(path, f"{where}: '{spec.name}' is yes or no, not '{v}'")
            elif spec.type == "number" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                self.err(path, f"{where}: '{spec.name}' is a number; '{v}' is not")

    def check_computed(self) -> None:
        for name, comp in self.flow.computed.items():
            path: Path = ("computed", name)
            for cond in ([comp.when] if comp.when else []) + list(comp.count) + \
                    [c for c, _ in comp.cases if c]:
                self.condition(cond, path)
        # cycles among computed facts
        state: dict[str, int] = {}

        def visit(n: str, trail: list[str]) -> None:
            state[n] = 1
            for dep in self.flow.computed[n].reads:
                if dep in self.flow.computed:
                    if state.get(dep) == 1:
                        loop = " → ".join(trail[trail.index(dep):] + [dep]) if dep in trail \
                            else f"{n} → {dep}"
                        self.err(("computed", n), f"computed facts depend on each other in a "
                                 f"circle ({loop}); one of them must read asked facts only")
                    elif dep not in state:
                        visit(dep, trail + [dep])
            state[n] = 2

        for n in self.flow.computed:
            if n not in state:
                visit(n, [n])

    # -- questions -------------------------------------------------------------------------
    def check_question(self, q: Question, path: Path) -> None:
        steps = self.flow.steps
        where = self.b.where(path)
        if q.kind == "decision":
            for j, r in enumerate(q.routes):
                if r.go == q.id:
                    self.err(path + ("routes", j, "go"), f"{where} routes to itself; a "
                             "decision asks nothing, so it would go round for ever")
            if q.next == q.id:
                self.err(path + ("next",), f"{where} goes next to itself; a decision asks "
                         "nothing, so it would go round for ever")
            for k in ("fact", "text", "options"):
                if getattr(q, k):
                    self.err(path + (k,), f"{where} is a decision: it asks nothing, so it takes "
                             f"no '{k}'; remove it or make it a question", key=True)
            if not q.routes and not q.next:
                self.err(path, f"{where} is a decision with no 'routes'; add routes")
        else:
            self.text(q.text, path + ("text",), "question text")
            if q.help:
                self.text(q.help, path + ("help",), "help text")
        spec: FactSpec | None = None
        if q.kind in ("choice", "number") and q.fact is not None:
            spec = self.fact(q.fact, path + ("fact",))
        elif q.kind == "number":
            self.err(path, f"{where} is a number question: say which fact it fills with "
                     "'fact: ...'")
        elif q.kind == "checklist" and q.fact is not None:
            self.err(path + ("fact",), f"{where} is a checklist: each option names its own "
                     "'fact', not the question", key=True)
        if q.kind == "choice":
            self.check_choice(q, path, spec)
        elif q.kind == "checklist":
            self.check_checklist(q, path)
        elif q.kind == "number":
            self.check_number(q, path, spec)
        words: dict[tuple[str, str], int] = {}
        for j, opt in enumerate(q.options):
            for lang in self.flow.languages:
                for w in {*(opt.also.get(lang, ())), normalise(opt.label.get(lang, ""))}:
                    if not w:
                        continue
                    other = words.setdefault((lang, w), j)
                    if other != j:
                        self.warn(path + ("options", j), f"{where}: typing '{w}' could mean "
                                  f"option {other + 1} or option {j + 1}; the first wins. Give "
                                  "each option its own words")
        for j, opt in enumerate(q.options):
            opath = path + ("options", j)
            if q.kind != "decision":
                self.text(opt.label, opath + ("label",), "button label")
            for fact, value in opt.sets.items():
                s = self.fact(fact, opath + ("sets", fact))
                if s:
                    self.value(s, value, opath + ("sets", fact))
            if opt.next is not None and opt.next not in steps and opt.next not in self.b.shapeless:
                self.err(opath + ("next",), f"{self.b.where(opath)} goes to '{opt.next}', which "
                         f"does not exist{did_you_mean(opt.next, steps)}")
        for j, r in enumerate(q.routes):
            rpath = path + ("routes", j)
            if r.go not in steps and r.go not in self.b.shapeless:
                self.err(rpath + ("go",), f"{self.b.where(rpath)} of {where} goes to '{r.go}', "
                         f"which does not exist{did_you_mean(r.go, steps)}")
            if r.cond is None and not r.broken and j < len(q.routes) - 1:
                self.warn(rpath, f"{self.b.where(rpath)} of {where} has no 'if', so the routes "
                          "below it are never used; move it to the end")
            self.condition(r.cond, rpath + ("if",))
        if q.next is not None and q.next not in steps and q.next not in self.b.shapeless:
            self.err(path + ("next",), f"{where}: next step '{q.next}' does not exist"
                     f"{did_you_mean(q.next, steps)}")
        uses_default = q.kind != "choice" or any(o.next is None for o in q.options)
        has_otherwise = q.next is not None or (q.routes and q.routes[-1].cond is None)
        if uses_default and not has_otherwise:
            if q.routes:
                self.err(path, f"{where}: when none of its routes holds there is nowhere to go; "
                         "end the routes with a line '- go: ...' (no 'if'), or add 'next:'")
            else:
                self.err(path, f"{where} has no way on: add 'next: <step>' or 'routes:'")
        elif not uses_default and (q.routes or q.next):
            self.warn(path, f"{where}: every option has its own 'next', so the question's "
                      "'routes'/'next' are never used")
        if q.kind != "decision":
            n = len(q.options)
            size = longest_button_bytes(q.id, n)
            if size > MAX_CALLBACK_BYTES:
                room = len(q.id) - (size - MAX_CALLBACK_BYTES)
                self.err(path + ("id",), f"question id '{q.id}' makes button data of {size} "
                         f"bytes; Telegram allows {MAX_CALLBACK_BYTES}: shorten the id to "
                         f"{room} characters or fewer")

    def check_choice(self, q: Question, path: Path, spec: FactSpec | None) -> None:
        where = self.b.where(path)
        if len(q.options) < 1:
            self.err(path, f"{where} has no options; add at least two under 'options:'")
            return
        seen: dict[Any, int] = {}
        for j, opt in enumerate(q.options):
            opath = path + ("options", j)
            if opt.fact is not None or opt.otherwise is not None:
                self.err(opath, f"{self.b.where(opath)}: 'fact'/'otherwise' belong to "
                         "checklist options; a choice question names its fact once, "
                         "with 'fact:'")
            if spec is None:
                if q.fact is None and (opt.value is not None or opt.range is not None):
                    self.err(opath, f"{self.b.where(opath)} gives a value, but {where} has no "
                             "'fact:' to put it in")
                continue
            if spec.type == "number":
                if opt.value is not None:
                    self.err(opath + ("value",), f"{self.b.where(opath)}: '{spec.name}' is a "
                             "number: give the option a 'range: [from, to]' instead of a value")
            elif opt.range is not None:
                self.err(opath + ("range",), f"{self.b.where(opath)}: 'range' is only for "
                         f"number facts; '{spec.name}' is {spec.describe()}: use 'value:'")
            elif opt.value is not None and self.value(spec, opt.value, opath + ("value",)):
                key = (type(opt.value).__name__, opt.value)
                other = q.options[seen[key]] if key in seen else None
                if other is not None and other.sets == opt.sets and other.next == opt.next:
                    shown = ("yes" if opt.value else "no") if isinstance(opt.value, bool) \
                        else opt.value
                    self.warn(opath + ("value",), f"{self.b.where(opath)} and option "
                              f"{seen[key] + 1} stand for the same value '{shown}' and do "
                              "the same; remove one")
                seen[key] = j
            if opt.value is None and opt.range is None and opt.next is None:
                self.err(opath, f"{self.b.where(opath)} fills nothing and goes nowhere; give "
                         "it a 'value' (or 'range'), or a 'next' step")
        if spec is not None and spec.type == "number":
            self.check_ranges(q, path, spec)
            self.check_range_splits(q, path)

    def check_range_splits(self, q: Question, path: Path) -> None:
        """A button standing for a range records its lowest number; a condition that tells
        numbers inside the range apart would give them all the advice of the lowest."""
        from .paths import _all_conditions, comparison_cuts

        for cond in _all_conditions(self.flow):
            for ref in walk(cond.node):
                if not isinstance(ref, Test) or ref.fact != q.fact or ref.op is None:
                    continue
                cuts = comparison_cuts(ref)
                if cuts:
                    for o in q.options:
                        if o.range is None:
                            continue
                        lo, hi = o.range
                        for k in cuts:
                            if lo < k and (hi is None or k <= hi):
                                self.err(path + ("options", o.index, "range"),
                                         f"{self.b.where(path + ('options', o.index))}: the "
                                         f"range {_rng(o)} is split by the condition "
                                         f"'{cond.text}': "
                                         f"{lo if k - 1 == lo else f'{lo}–{k - 1}'} and {k} "
                                         "or more would "
                                         f"need different advice, but the button records "
                                         f"{lo}; end a button at {k - 1} and start the next "
                                         f"at {k}")
                                break

    def check_ranges(self, q: Question, path: Path, spec: FactSpec) -> None:
        ranged = sorted((o for o in q.options if o.range is not None),
                        key=lambda o: o.range[0] if o.range else 0)
        for o in ranged:
            assert o.range is not None
            lo, hi = o.range
            if hi is not None and hi < lo:
                self.err(path + ("options", o.index, "range"),
                         f"{self.b.where(path + ('options', o.index))}: range [{lo}, {hi}] is "
                         "backwards; write the smaller number first")
        for a, b in zip(ranged, ranged[1:], strict=False):
            assert a.range is not None and b.range is not None
            a_hi, b_lo = a.range[1], b.range[0]
            bpath = path + ("options", b.index, "range")
            if a_hi is None or b_lo <= a_hi:
                self.err(bpath, f"{self.b.where(path)}: the ranges of options {a.index + 1} "
                         f"and {b.index + 1} overlap ({_rng(a)} and {_rng(b)}); a number "
                         "must belong to one button only")
            elif b_lo > a_hi + 1:
                self.err(bpath, f"{self.b.where(path)}: the ranges leave a gap between "
                         f"{a_hi} and {b_lo} (options {a.index + 1} and {b.index + 1}): "
                         f"no button for {a_hi + 1}{'–' + str(b_lo - 1) if b_lo - 1 > a_hi + 1 else ''}")
        if ranged:
            first, last = ranged[0].range, ranged[-1].range
            assert first is not None and last is not None
            if spec.min is not None and first[0] > spec.min:
                self.err(path + ("options", ranged[0].index, "range"),
                         f"{self.b.where(path)}: no button covers {spec.min}–{first[0] - 1}; "
                         f"start the first range at {spec.min}")
            if spec.max is not None and last[1] is not None and last[1] < spec.max:
                self.err(path + ("options", ranged[-1].index, "range"),
                         f"{self.b.where(path)}: no button covers numbers above {last[1]}; "
                         "end the last range with null (no limit)")

    def check_checklist(self, q: Question, path: Path) -> None:
        where = self.b.where(path)
        if not q.options:
            self.err(path, f"{where} has no options; add the items to tick under 'options:'")
        for j, opt in enumerate(q.options):
            opath = path + ("options", j)
            if opt.fact is None:
                self.err(opath, f"{self.b.where(opath)} of checklist {where} needs 'fact:' "
                         "(the fact a tick fills)")
                continue
            spec = self.fact(opt.fact, opath + ("fact",))
            if spec is None:
                continue
            if opt.range is not None or spec.type == "number":
                self.err(opath, f"{self.b.where(opath)}: a checklist cannot fill the number "
                         f"'{spec.name}'; ask it with a number question")
                continue
            if opt.value is None and spec.type != "yes_no":
                self.err(opath, f"{self.b.where(opath)}: '{spec.name}' is {spec.describe()}: "
                         "say which value a tick means with 'value:'")
            elif opt.value is not None:
                self.value(spec, opt.value, opath + ("value",))
            if opt.otherwise is not None:
                self.value(spec, opt.otherwise, opath + ("otherwise",))
            if opt.next is not None:
                self.err(opath + ("next",), f"{self.b.where(opath)}: checklist options cannot "
                         "have their own 'next'; route with the question's 'routes'", key=True)
        self.text(q.none_label, path + ("none_label",), "'none of these' label",
                  defaults=DEFAULT_LABELS["none"])
        self.text(q.done_label, path + ("done_label",), "'done' label",
                  defaults=DEFAULT_LABELS["done"])

    def check_number(self, q: Question, path: Path, spec: FactSpec | None) -> None:
        where = self.b.where(path)
        if spec is not None and spec.type != "number":
            self.err(path + ("fact",), f"{where} is a number question but '{spec.name}' is "
                     f"{spec.describe()}; use kind: choice")
        if q.options:
            self.err(path + ("options",), f"{where} is a typed number: it has no buttons; "
                     "remove 'options' or use kind: choice with ranges", key=True)
        if q.min is not None and q.max is not None and q.min > q.max:
            self.err(path + ("min",), f"{where}: min {q.min} is above max {q.max}")
        if spec is not None and spec.type == "number":
            if q.min is not None and spec.min is not None and q.min < spec.min:
                self.err(path + ("min",), f"{where}: min {q.min} is below what '{spec.name}' "
                         f"allows ({spec.describe()})")
            if q.max is not None and spec.max is not None and q.max > spec.max:
                self.err(path + ("max",), f"{where}: max {q.max} is above what '{spec.name}' "
                         f"allows ({spec.describe()})")
        self.text(q.out_of_range, path + ("out_of_range",), "out-of-range message")

    def check_outcome(self, o: Outcome, path: Path) -> None:
        self.text(o.text, path + ("text",), "advice text")
        if o.disposition == "emergency":
            self.text(o.headline, path + ("headline",), "emergency instruction")
        elif o.headline:
            self.text(o.headline, path + ("headline",), "headline")
        if o.safety_net:
            self.text(o.safety_net, path + ("safety_net",), "safety net")
        else:
            self.err(path, f"{self.b.where(path)} has no 'safety_net': every outcome must say "
                     "what should bring the patient back (the emergency signs, at least)")

    def check_interrupts(self) -> None:
        for i, it in enumerate(self.flow.interrupts):
            path: Path = ("interrupts", i)
            target = self.flow.steps.get(it.go)
            if target is None and it.go in self.b.shapeless:
                pass
            elif target is None:
                self.err(path + ("go",), f"{self.b.where(path)} goes to '{it.go}', which does "
                         f"not exist{did_you_mean(it.go, self.flow.steps)}")
            elif not isinstance(target, Outcome):
                self.err(path + ("go",), f"{self.b.where(path)} goes to question '{it.go}'; "
                         "an interrupt must go to an outcome")
            for lang in self.flow.languages:
                if not it.phrases.get(lang):
                    self.err(path + ("phrases",), f"{self.b.where(path)} has no phrases for "
                             f"'{lang}'; add a line '{lang}: [...]' under 'phrases'")
            for fact, value in it.sets.items():
                s = self.fact(fact, path + ("sets", fact))
                if s:
                    self.value(s, value, path + ("sets", fact))

    def check_checks(self) -> None:
        for i, ck in enumerate(self.flow.checks):
            self.condition(ck.when, ("checks", i, "if"), pseudo=True)
            self.condition(ck.then, ("checks", i, "then"), pseudo=True)

    # -- the graph -------------------------------------------------------------------------
    def edges(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sid, step in self.flow.steps.items():
            if isinstance(step, Question):
                out[sid] = [t for t, _, _ in step.successors() if t in self.flow.steps]
            else:
                out[sid] = []
        return out

    def check_graph(self) -> bool:
        flow = self.flow
        if flow.start not in flow.steps:
            return False
        edges = self.edges()
        roots = [flow.start] + [it.go for it in flow.interrupts if it.go in flow.steps]
        reached = _reach(roots, edges)
        # A link to a step that does not exist is reported where it is; the steps it cuts
        # off or strands would only repeat it, so they are not reported again.
        broken = {sid for sid, step in flow.steps.items() if isinstance(step, Question)
                  and any(t not in flow.steps for t, _, _ in step.successors())}
        for sid in flow.steps:
            if sid not in reached and not broken:
                self.warn(self.paths[sid], f"{self.b.where(self.paths[sid])} can never be "
                          f"reached from '{flow.start}'; link it with 'next'/'go', or remove it")
        # steps from which no outcome can be reached (reverse reachability)
        rev: dict[str, list[str]] = {s: [] for s in flow.steps}
        for s, ts in edges.items():
            for t in ts:
                rev[t].append(s)
        outcomes = [s for s, st in flow.steps.items() if isinstance(st, Outcome)]
        if not outcomes:
            self.err(("outcomes",), "the flow has no outcomes; every conversation must end in "
                     "one (emergency, urgent, routine or self_care)")
            return False
        finishing = _reach(outcomes, rev)
        ok = True
        stuck = [s for s in flow.steps if s not in finishing and s in reached
                 and not (_reach([s], edges) & broken)]
        reported: set[str] = set()
        for s in stuck:
            if s in reported:
                continue
            loop = _cycle_through(s, edges, set(stuck))
            if loop:
                reported.update(loop)
                self.err(self.paths[s], f"steps {' → '.join(loop + [loop[0]])} form a loop with "
                         "no way out to an outcome; give one of them a route that leaves the "
                         "loop")
            else:
                reported.add(s)
                self.err(self.paths[s], f"from {self.b.where(self.paths[s])} no outcome can be "
                         "reached; route it on to an outcome")
            ok = False
        return ok and not broken

    def check_filled(self) -> None:
        """A fact read by a condition must be filled on every path that reaches it."""
        flow = self.flow
        everything = frozenset(flow.facts)
        filled_in: dict[str, frozenset[str]] = {s: everything for s in flow.steps}
        filled_in[flow.start] = frozenset()
        work = deque([flow.start])
        while work:
            sid = work.popleft()
            step = flow.steps[sid]
            if not isinstance(step, Question):
                continue
            for target, fills in self.answer_edges(step, filled_in[sid]):
                if target not in filled_in:
                    continue
                new = filled_in[target] & fills
                if new != filled_in[target]:
                    filled_in[target] = new
                    work.append(target)
        reached = _reach([flow.start], self.edges())
        for sid, step in flow.steps.items():
            if not isinstance(step, Question) or sid not in reached:
                continue
            for known, routes_path in self.route_contexts(step, filled_in[sid]):
                for j, r in enumerate(step.routes):
                    if r.cond is None:
                        continue
                    missing = sorted(f for f in self.expand(r.cond.reads) - known
                                     - _tick_tests(step, r.cond, self.flow)
                                     if f in self.flow.facts)
                    for fact in missing:
                        trail = self.path_without(fact, sid)
                        self.err(self.paths[sid] + ("routes", j, "if"),
                                 f"condition '{r.cond.text}' reads '{fact}', which may not be "
                                 f"filled yet when {self.b.where(self.paths[sid])} is reached"
                                 f"{routes_path}; on the path {' → '.join(trail)} nothing "
                                 f"fills it: ask it before this point, or route on it later")
                    if missing:
                        break
                else:
                    continue
                break

    def expand(self, facts: set[str]) -> set[str]:
        """Facts read, with computed facts replaced by what they read."""
        out: set[str] = set()
        todo = list(facts)
        seen: set[str] = set()
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            comp = self.flow.computed.get(f)
            if comp is None:
                out.add(f)
            else:
                todo.extend(comp.reads)
        return out

    def option_fills(self, q: Question, opt: Option | None) -> set[str]:
        if q.kind == "number":
            return {q.fact} if q.fact else set()
        if q.kind == "checklist":
            out: set[str] = set()
            for o in q.options:
                spec = self.flow.facts.get(o.fact or "")
                if o.fact and (o.otherwise is not None or (spec and spec.type == "yes_no")):
                    out.add(o.fact)
            return out
        if opt is None:
            return set()
        out = set(opt.sets)
        if q.fact and (opt.value is not None or opt.range is not None):
            out.add(q.fact)
        return out

    def route_contexts(self, q: Question, before: frozenset[str]) -> list[tuple[set[str], str]]:
        """The facts known when the question's routes are read, per kind of answer."""
        if q.kind == "choice":
            out = []
            for o in q.options:
                if o.next is None:
                    label = o.label.get(self.flow.default_language, "")
                    out.append((set(before) | self.option_fills(q, o),
                                f" with the answer '{label}'"))
            return out
        return [(set(before) | self.option_fills(q, None), "")]

    def answer_edges(self, q: Question, before: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
        out: list[tuple[str, frozenset[str]]] = []
        for fills, _ in self.route_contexts(q, before):
            targets = [r.go for r in q.routes]
            if q.next and not (q.routes and q.routes[-1].cond is None):
                targets.append(q.next)
            out.extend((t, frozenset(fills)) for t in targets)
        if q.kind == "choice":
            for o in q.options:
                if o.next:
                    out.append((o.next, frozenset(set(before) | self.option_fills(q, o))))
        return out

    def path_without(self, fact: str, target: str) -> list[str]:
        """A path from the start to target on which nothing fills fact."""
        flow = self.flow
        prev: dict[str, str | None] = {flow.start: None}
        queue = deque([flow.start])
        while queue:
            sid = queue.popleft()
            if sid == target:
                break
            step = flow.steps[sid]
            if not isinstance(step, Question):
                continue
            for t, fills in self.answer_edges(step, frozenset()):
                if fact in fills or t in prev:
                    continue
                prev[t] = sid
                queue.append(t)
        if target not in prev:
            return [flow.start, "…", target]
        trail: list[str] = []
        node: str | None = target
        while node is not None:
            trail.append(node)
            node = prev[node]
        return list(reversed(trail))


def _tick_tests(q: Question, cond: Condition, flow: Flow) -> set[str]:
    """Facts a checklist's own routes may test although an unticked box leaves them unfilled.

    `weakness == severe_or_progressive` after a checklist with that box holds exactly when the
    box was ticked (an unfilled fact makes the test not hold), so it is safe; `!=` and `not`
    are not (they would need the fact filled).
    """
    if q.kind != "checklist":
        return set()
    boxes = {o.fact for o in q.options if o.fact and o.otherwise is None
             and (spec := flow.facts.get(o.fact)) is not None and spec.type != "yes_no"}
    positive: set[str] = set()
    negative: set[str] = set()

    def visit(node: Any, negated: bool) -> None:
        if isinstance(node, Test):
            ok = node.op in ("==", "in") and not negated
            (positive if ok else negative).add(node.fact)
        elif isinstance(node, Not):
            visit(node.item, not negated)
        elif isinstance(node, BoolOp):
            for item in node.items:
                visit(item, negated)

    visit(cond.node, False)
    return (positive - negative) & boxes


def _rng(o: Option) -> str:
    assert o.range is not None
    lo, hi = o.range
    return f"{lo}–{hi}" if hi is not None else f"{lo} or more"


def _example(spec: FactSpec) -> str:
    if spec.values:
        return spec.values[0]
    return "yes" if spec.type == "yes_no" else "10"


def _reach(roots: list[str], edges: dict[str, list[str]]) -> set[str]:
    seen = set(roots)
    todo = list(roots)
    while todo:
        s = todo.pop()
        for t in edges.get(s, []):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def _cycle_through(start: str, edges: dict[str, list[str]], allowed: set[str]) -> list[str]:
    """A cycle through start within allowed steps, or []."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, trail = stack.pop()
        for t in edges.get(node, []):
            if t == start:
                return trail
            if t in allowed and t not in seen:
                seen.add(t)
                stack.append((t, trail + [t]))
    return []
