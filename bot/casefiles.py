"""Case files: a patient's facts in, the expected disposition (and rule) out.

The runner drives the real engine by facts, whatever order the flow asks in: at each question
it taps the option that stands for the case's value (or range), ticks the checklist boxes that
hold, or types the number. A fact the flow asks but the case does not give fails the case and
names the fact; it never guesses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.engine import Choose, Engine, Start, Text
from bot.flow.catalogue import DISPOSITIONS, OUTCOME_KINDS
from bot.flow.model import Flow, Outcome, Question
from bot.flow.problems import Problem, did_you_mean
from bot.flow.yamlsrc import read_yaml

MAX_STEPS = 500
_BOOL_WORDS = {"yes": True, "true": True, "no": False, "false": False}


@dataclass
class Case:
    id: str
    facts: dict[str, Any]
    disposition: str
    rule: str | None
    file: str
    line: int
    flow: str | None = None


@dataclass
class CaseResult:
    case: Case
    passed: bool
    disposition: str | None = None
    rule: str | None = None
    outcome: str | None = None
    path: list[str] = field(default_factory=list)
    missing: str | None = None
    error: str | None = None
    chosen: list[tuple[str, int]] = field(default_factory=list)

    def describe(self) -> str:
        c = self.case
        want = c.disposition + (f" (rule {c.rule})" if c.rule else "")
        if self.missing:
            got = f"the flow asked for '{self.missing}', which the case does not give"
        elif self.error:
            got = self.error
        else:
            got = f"got {self.disposition} (rule {self.rule or '-'})"
        trail = " → ".join(self.path) or "(no answers)"
        return f"FAIL {c.file}:{c.line} {c.id}: expected {want}, {got}; path: {trail}"


def read_cases(paths: Iterable[str | Path]) -> tuple[list[Case], list[Problem]]:
    """Every case in the files (directories are searched for *.yaml/*.yml)."""
    cases: list[Case] = []
    problems: list[Problem] = []
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(sorted(x for x in path.rglob("*") if x.suffix in (".yaml", ".yml")))
        elif path.exists():
            files.append(path)
        else:
            problems.append(Problem(str(p), 1, 1, "error", "no such file or folder"))
    for f in files:
        src = read_yaml(f.read_text(encoding="utf-8"), str(f))
        problems.extend(src.problems)
        data = src.data
        if data is None:
            continue
        flow_name = data.get("flow") if isinstance(data, dict) else None
        if isinstance(data, dict) and "cases" in data:
            items = data["cases"]
            if not isinstance(items, list):
                problems.append(src.problem(("cases",), "error", "'cases' should be a list"))
                continue
            base: tuple[Any, ...] = ("cases",)
        else:
            items = [data]
            base = ()
        for i, item in enumerate(items):
            path_ = base + ((i,) if base else ())
            case = _case(item, path_, src, f, problems)
            if case is not None:
                case.flow = flow_name if isinstance(flow_name, str) else None
                cases.append(case)
    return cases, problems


def _case(item: Any, path: tuple[Any, ...], src: Any, f: Path,
          problems: list[Problem]) -> Case | None:
    line = src.where(path)[0]
    if not isinstance(item, dict):
        problems.append(src.problem(path, "error", "a case is 'id:', 'facts:' and 'expect:'"))
        return None
    allowed = {"id", "facts", "expect", "story", "note", "flow", "lang"}
    for k in item:
        if k not in allowed:
            problems.append(src.problem(path + (k,), "error", f"unknown key '{k}' in a case"
                                        f"{did_you_mean(k, allowed)}", key=True))
    facts = item.get("facts")
    expect = item.get("expect")
    cid = str(item.get("id") or f"{f.stem}#{line}")
    if not isinstance(facts, dict):
        problems.append(src.problem(path, "error", f"case '{cid}' has no 'facts:'"))
        return None
    if not isinstance(expect, dict) or "disposition" not in expect:
        problems.append(src.problem(path, "error", f"case '{cid}' needs 'expect: "
                                    "{disposition: ...}'"))
        return None
    disp = expect.get("disposition")
    if disp not in OUTCOME_KINDS:
        problems.append(src.problem(path + ("expect", "disposition"), "error",
                                    f"case '{cid}': '{disp}' is not a disposition; use one of "
                                    f"{', '.join(DISPOSITIONS)}{did_you_mean(disp, DISPOSITIONS)}"))
        return None
    rule = expect.get("rule")
    return Case(cid, dict(facts), str(disp), str(rule) if rule is not None else None,
                str(f), line)


def check_case_facts(flow: Flow, case: Case) -> list[str]:
    """Problems with the case's facts against the flow's dictionary."""
    out = []
    for name, value in case.facts.items():
        spec = flow.facts.get(name)
        if spec is None:
            out.append(f"unknown fact '{name}'{did_you_mean(name, flow.facts)}")
            continue
        v = _coerce(spec.type, value)
        if not spec.accepts(v):
            out.append(f"fact '{name}' is {spec.describe()}, not '{value}'"
                       f"{did_you_mean(value, spec.values) if spec.values else ''}")
    return out


def _coerce(kind: str, value: Any) -> Any:
    if kind == "yes_no" and isinstance(value, str):
        return _BOOL_WORDS.get(value.strip().lower(), value)
    return value


class _Missing(Exception):
    def __init__(self, fact: str):
        self.fact = fact


def run_case(flow: Flow, case: Case, engine: Engine | None = None) -> CaseResult:
    """Drive the flow with the case's facts; compare the outcome with the expectation."""
    engine = engine or Engine(flow)
    facts = {k: _coerce(flow.facts[k].type, v) if k in flow.facts else v
             for k, v in case.facts.items()}
    res = CaseResult(case, False)
    bad = check_case_facts(flow, case)
    if bad:
        res.error = "; ".join(bad)
        return res
    data, reply = engine.handle(None, Start())
    try:
        for _ in range(MAX_STEPS):
            if reply.outcome is not None:
                break
            q = flow.steps[data["step"]]
            assert isinstance(q, Question) and reply.question is not None
            inputs, words = _inputs_for(flow, q, facts, res)
            res.path.append(f"{q.id}={words}")
            for inp in inputs:
                data, reply = engine.handle(data, inp)
        else:
            res.error = f"no outcome after {MAX_STEPS} answers"
            return res
    except _Missing as m:
        res.missing = m.fact
        return res
    except _NoOption as n:
        res.error = str(n)
        return res
    out = flow.steps[data["step"]]
    assert isinstance(out, Outcome) and reply.outcome is not None
    res.outcome = out.id
    res.disposition = reply.outcome.disposition
    res.rule = reply.outcome.rule
    res.passed = res.disposition == case.disposition and (case.rule is None
                                                          or case.rule == res.rule)
    return res


class _NoOption(Exception):
    pass


def _inputs_for(flow: Flow, q: Question, facts: dict[str, Any],
                res: CaseResult) -> tuple[list[Any], str]:
    lang = flow.default_language
    if q.kind == "number":
        assert q.fact is not None
        if q.fact not in facts:
            raise _Missing(q.fact)
        return [Text(str(facts[q.fact]))], str(facts[q.fact])
    if q.kind == "checklist":
        ticks = []
        for o in q.options:
            assert o.fact is not None
            if o.fact not in facts:
                raise _Missing(o.fact)
            want = True if o.value is None else o.value
            if facts[o.fact] == want and type(facts[o.fact]) is type(want):
                ticks.append(o.index)
        res.chosen.extend((q.id, i) for i in ticks)
        if not ticks:
            return [Choose(q.id, 0, "n")], "none of these"
        words = ", ".join(flow.text(q.options[i].label, lang) for i in ticks)
        return [Choose(q.id, i, "t") for i in ticks] + [Choose(q.id, 0, "d")], words
    # a choice: the option standing for the case's value (or range), else one whose `sets`
    # all hold in the case
    if q.fact is not None:
        if q.fact not in facts:
            raise _Missing(q.fact)
        value = facts[q.fact]
        for o in q.options:
            if (o.value is not None or o.range is not None) and o.stands_for(value) and all(
                    facts.get(k) == v for k, v in o.sets.items()):
                res.chosen.append((q.id, o.index))
                return [Choose(q.id, o.index)], flow.text(o.label, lang)
        for o in q.options:
            if (o.value is not None or o.range is not None) and o.stands_for(value):
                res.chosen.append((q.id, o.index))
                return [Choose(q.id, o.index)], flow.text(o.label, lang)
        raise _NoOption(f"no option of question '{q.id}' stands for {q.fact}={value}")
    for o in q.options:
        if o.sets and all(k in facts and facts[k] == v for k, v in o.sets.items()):
            res.chosen.append((q.id, o.index))
            return [Choose(q.id, o.index)], flow.text(o.label, lang)
    missing = [k for o in q.options for k in o.sets if k not in facts]
    if missing:
        raise _Missing(missing[0])
    raise _NoOption(f"no option of question '{q.id}' matches the case")


@dataclass
class Report:
    results: list[CaseResult]
    unreached: list[str]

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def run_cases(flow: Flow, cases: list[Case]) -> Report:
    engine = Engine(flow)
    results = [run_case(flow, c, engine) for c in cases]
    outcomes = {r.outcome for r in results if r.outcome}
    chosen = {x for r in results for x in r.chosen}
    unreached: list[str] = []
    for sid, step in flow.steps.items():
        if isinstance(step, Outcome) and sid not in outcomes:
            unreached.append(f"outcome '{sid}'")
    for sid, step in flow.steps.items():
        if isinstance(step, Question) and step.kind in ("choice", "checklist"):
            for o in step.options:
                if (sid, o.index) not in chosen:
                    label = flow.text(o.label, flow.default_language)
                    unreached.append(f"question '{sid}' option {o.index + 1} '{label}'")
    return Report(results, unreached)
