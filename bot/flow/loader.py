"""Load a flow file: YAML → shape check (pydantic) → runtime model → every semantic check.

`load_flow` never raises for a bad file: it returns the problems. `load_flow_or_raise` is for
callers that need a live flow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from . import spec
from .catalogue import DERIVED, SHARED, FactSpec
from .conditions import Condition, ConditionError
from .model import (
    Check,
    Computed,
    Flow,
    Interrupt,
    Option,
    Outcome,
    Question,
    Route,
    Step,
    normalise,
)
from .problems import FlowError, Problem, did_you_mean
from .yamlsrc import Path, Source, read_yaml

_TYPE_WORDS = {
    "string_type": "a text",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "int_parsing": "a whole number",
    "bool_type": "yes or no",
    "list_type": "a list (lines starting with '- ')",
    "dict_type": "a set of 'key: value' lines",
    "model_type": "a set of 'key: value' lines",
    "model_attributes_type": "a set of 'key: value' lines",
}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "yes/no"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text '{value[:40]}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a set of 'key: value' lines"
    return type(value).__name__


def _model_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside list[M], dict[str, M], M | None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    if get_origin(annotation) is None:
        return None
    return None


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        field = None
        for name, f in current.model_fields.items():
            if (f.alias or name) == part:
                field = f
        if field is None:
            continue
        current = _submodel(field.annotation)
    return current


class _Builder:
    def __init__(self, src: Source, lint: bool = True):
        self.src = src
        self.problems: list[Problem] = list(src.problems)
        self.lint = lint
        self.paths_checked: int | None = None
        # ids of steps and computed facts whose shape is wrong: they exist (reported once),
        # so links to them are not reported again
        self.shapeless: set[str] = set()

    # -- reporting -------------------------------------------------------------------------
    def err(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.src.problem(path, "error", message, key=key))

    def warn(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.src.problem(path, "warning", message, key=key))

    def where(self, path: Path) -> str:
        """A person's name for a place in the file: "question 'trend', option 2"."""
        data = self.src.data
        words: list[str] = []
        node: Any = data
        i = 0
        while i < len(path):
            part = path[i]
            if isinstance(node, dict) and part in node:
                child = node[part]
                if part in ("questions", "outcomes", "interrupts", "checks") and i + 1 < len(path):
                    idx = path[i + 1]
                    item = child[idx] if isinstance(child, list) and isinstance(idx, int) \
                        and idx < len(child) else None
                    ident = item.get("id") if isinstance(item, dict) else None
                    kind = part[:-1]
                    words.append(f"{kind} '{ident}'" if isinstance(ident, str)
                                 else f"{kind} {idx + 1 if isinstance(idx, int) else idx}")
                    node = item
                    i += 2
                    continue
                if part in ("facts", "computed") and i + 1 < len(path):
                    words.append(f"{'fact' if part == 'facts' else 'computed fact'} "
                                 f"'{path[i + 1]}'")
                    node = child.get(path[i + 1]) if isinstance(child, dict) else None
                    i += 2
                    continue
                if part in ("options", "routes", "cases") and i + 1 < len(path) \
                        and isinstance(path[i + 1], int):
                    words.append(f"{part[:-1] if part != 'cases' else 'case'} "
                                 f"{int(path[i + 1]) + 1}")
                    k = int(path[i + 1])
                    node = child[k] if isinstance(child, list) and k < len(child) else None
                    i += 2
                    continue
                words.append(f"'{part}'")
                node = child
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                words.append(f"item {part + 1}")
                node = node[part]
            else:
                words.append(f"'{part}'")
                node = None
            i += 1
        return ", ".join(words) if words else "the flow"

    # -- shape -----------------------------------------------------------------------------
    def shape(self, base: Path, model: type[BaseModel], data: Any) -> BaseModel | None:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            seen: set[tuple[Any, ...]] = set()
            for e in exc.errors():
                loc = self._real_loc(base, tuple(e["loc"]))
                if (loc, e["type"]) in seen:
                    continue
                seen.add((loc, e["type"]))
                self._shape_problem(base, model, loc, e)
            return None

    def _real_loc(self, base: Path, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        """Drop pydantic's union-branch names from loc, keeping only real keys/indexes."""
        node: Any = self._get(base)
        out: list[Any] = []
        for part in loc:
            if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
                out.append(part)
            elif isinstance(node, dict) and isinstance(part, str) and out[-1:] != [part]:
                # a missing key or an unknown key: keep it, stop walking
                if part in {"str", "int", "float", "bool", "list", "dict", "none"} or "[" in part:
                    continue
                out.append(part)
                node = None
        return tuple(out)

    def _get(self, path: Path) -> Any:
        node = self.src.data
        for part in path:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node

    def _shape_problem(self, base: Path, model: type[BaseModel], loc: tuple[Any, ...],
                       e: Any) -> None:
        path = base + loc
        kind = e["type"]
        parent = path[:-1]
        last = path[-1] if path else ""
        if kind == "extra_forbidden":
            sub = _model_at(model, loc[:-1])
            keys = _model_keys(sub) if sub else []
            self.err(path, f"unknown key '{last}' in {self.where(parent)}"
                     f"{did_you_mean(last, keys)}; allowed keys: {', '.join(keys)}", key=True)
        elif kind == "missing":
            self.err(parent, f"{self.where(parent)} is missing '{last}'; add a line '{last}: ...'")
        elif kind == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            words = [w.strip(" '") for w in expected.replace(" or ", ",").split(",")]
            self.err(path, f"{self.where(parent)}: '{last}' cannot be {_describe(e['input'])}; "
                     f"use one of {', '.join(words)}{did_you_mean(e['input'], words)}")
        elif kind == "string_pattern_mismatch":
            self.err(path, f"{self.where(parent)}: '{e['input']}' is not a valid id; "
                     "use lower case letters, digits and _ (like 'leg_pain'), "
                     "starting with a letter")
        elif kind == "too_short":
            self.err(path, f"{self.where(parent)}: '{last}' must not be empty")
        elif e["input"] is None and isinstance(last, str) and " " in last.strip():
            self.err(path, f"{self.where(parent)}: '{last}' looks like part of a text cut at a "
                     "comma; inside {{ }} a text with a comma must be in quotes, or write each "
                     "language on its own line", key=True)
        else:
            want = _TYPE_WORDS.get(kind, e["msg"].lower())
            if isinstance(last, int):
                label = f"item {last + 1} of {self.where(parent)}"
            else:
                label = f"{self.where(parent)}: '{last}'"
            self.err(path, f"{label} should be {want}, not {_describe(e['input'])}")

    # -- building --------------------------------------------------------------------------
    def build(self) -> tuple[Flow | None, dict[str, Any]]:
        data = self.src.data
        if self.src.problems and data is None:
            return None, {}
        if not isinstance(data, dict):
            self.err((), "a flow file must be a set of 'key: value' lines starting with "
                     "'id:', 'version:', 'languages:' (see docs/flow-guide.md)")
            return None, {}
        top = {k: v for k, v in data.items() if k not in spec.SECTIONS}
        for name, (kind, _) in spec.SECTIONS.items():
            if name in data:
                top[name] = [] if kind == "list" else {}
            elif name in ("questions", "outcomes"):
                pass  # reported as missing by the shape check
        header = self.shape((), spec.FlowFile, top)
        sections: dict[str, Any] = {}
        for name, (kind, model) in spec.SECTIONS.items():
            raw = data.get(name)
            if raw is None:
                sections[name] = [] if kind == "list" else {}
                continue
            if kind == "list":
                if not isinstance(raw, list):
                    self.err((name,), f"'{name}' should be a list (lines starting with '- ')")
                    sections[name] = []
                    continue
                sections[name] = [self.shape((name, i), model, item) for i, item in enumerate(raw)]
                for item, shaped in zip(raw, sections[name], strict=True):
                    if shaped is None and isinstance(item, dict) and isinstance(item.get("id"),
                                                                                  str):
                        self.shapeless.add(item["id"])
            else:
                if not isinstance(raw, dict):
                    self.err((name,), f"'{name}' should be a set of 'name: ...' lines")
                    sections[name] = {}
                    continue
                sections[name] = {k: self.shape((name, k), model, v) for k, v in raw.items()}
                self.shapeless |= {k for k, v in sections[name].items() if v is None}
        return (self._runtime(header, sections) if header is not None else None), sections

    def _runtime(self, header: Any, sections: dict[str, Any]) -> Flow | None:
        from .validate import Checker  # local: validate imports this module's types

        langs = tuple(str(x) for x in header.languages)
        facts: dict[str, FactSpec] = dict(SHARED)
        for name, decl in sections["facts"].items():
            if decl is None:
                continue
            path: Path = ("facts", name)
            if name in SHARED or name in DERIVED:
                self.err(path, f"fact '{name}' is already in the shared dictionary "
                         "(shared/clinical/facts.md); remove it here, or pick another name",
                         key=True)
                continue
            if decl.type == "choice" and not decl.values:
                self.err(path, f"fact '{name}' is a choice: list its words under 'values:'")
                continue
            facts[name] = FactSpec(name, decl.type, tuple(decl.values or ()), decl.min, decl.max)
        computed: dict[str, Computed] = {}
        for name, comp in sections["computed"].items():
            if comp is None:
                continue
            path = ("computed", name)
            built = self._computed(name, comp, path)
            if built is None:
                self.shapeless.add(name)
            else:
                computed[name] = built
                if name in DERIVED:
                    facts[name] = DERIVED[name]
                elif name in SHARED:
                    self.err(path, f"'{name}' is asked, not computed (shared/clinical/facts.md);"
                             " pick another name", key=True)
                else:
                    facts[name] = _computed_spec(name, built)
        steps: dict[str, Step] = {}
        for i, q in enumerate(sections["questions"]):
            if q is None:
                continue
            if q.id in steps:
                self.err(("questions", i, "id"), f"two steps are called '{q.id}'; "
                         "every question and outcome needs its own id")
                continue
            steps[q.id] = self._question(q, ("questions", i))
        for i, o in enumerate(sections["outcomes"]):
            if o is None:
                continue
            if o.id in steps:
                self.err(("outcomes", i, "id"), f"two steps are called '{o.id}'; "
                         "every question and outcome needs its own id")
                continue
            steps[o.id] = Outcome(o.id, o.disposition, o.rule, o.headline or {}, o.text,
                                  o.safety_net or {}, self.src.where(("outcomes", i)))
        interrupts = []
        for i, it in enumerate(sections["interrupts"]):
            if it is None:
                continue
            phrases = {lang: tuple(normalise(p) for p in ps if normalise(p))
                       for lang, ps in it.phrases.items()}
            interrupts.append(Interrupt(it.id, phrases, it.go, it.rule, dict(it.sets),
                                        self.src.where(("interrupts", i))))
        checks = []
        for i, ck in enumerate(sections["checks"]):
            if ck is None:
                continue
            when = self.cond(ck.if_, ("checks", i, "if")) if ck.if_ else None
            then = self.cond(ck.then, ("checks", i, "then"))
            if then is not None:
                checks.append(Check(ck.id, ck.say or ck.id, when, then,
                                    self.src.where(("checks", i))))
        start = header.start or next(
            (q.id for q in sections["questions"] if q is not None), "")
        flow = Flow(
            id=header.id, version=str(header.version), languages=langs,
            title=header.title or {}, disclaimer=header.disclaimer, start=start,
            facts=facts, computed=computed, steps=steps, interrupts=tuple(interrupts),
            checks=tuple(checks), file=self.src.file,
        )
        Checker(self, flow, sections).run()
        return flow

    def cond(self, text: Any, path: Path) -> Condition | None:
        if not isinstance(text, str):
            self.err(path, f"{self.where(path[:-1])}: a condition must be text, "
                     f"not {_describe(text)}")
            return None
        try:
            return Condition.parse(text)
        except ConditionError as exc:
            line, col = self.src.where(path)
            self.problems.append(Problem(
                self.src.file, line, col + exc.offset, "error",
                f"malformed condition '{text}': {exc} at character {exc.offset + 1}; "
                "write tests like 'fever', 'trend == worsening', 'age >= 70', "
                "joined by and/or/not"))
            return None

    def _computed(self, name: str, comp: Any, path: Path) -> Computed | None:
        given = [k for k in ("when", "count", "cases") if getattr(comp, k) is not None]
        if len(given) != 1:
            self.err(path, f"computed fact '{name}' needs exactly one of 'when', 'count' or "
                     f"'cases' (found {', '.join(given) or 'none'})", key=True)
            return None
        pos = self.src.where(path)
        if comp.when is not None:
            c = self.cond(comp.when, path + ("when",))
            return Computed(name, when=c, pos=pos) if c else None
        if comp.count is not None:
            conds = [self.cond(t, path + ("count", i)) for i, t in enumerate(comp.count)]
            if any(c is None for c in conds):
                return None
            return Computed(name, count=tuple(c for c in conds if c), pos=pos)
        cases: list[tuple[Condition | None, Any]] = []
        for i, case in enumerate(comp.cases):
            c = self.cond(case.if_, path + ("cases", i, "if")) if case.if_ is not None else None
            if case.if_ is not None and c is None:
                return None
            cases.append((c, case.value))
        if cases and cases[-1][0] is not None:
            self.err(path + ("cases",), f"computed fact '{name}': the last case needs no 'if' "
                     "(it is the value when no other case holds)")
        return Computed(name, cases=tuple(cases), pos=pos)

    def _question(self, q: Any, path: Path) -> Question:
        options = []
        for j, o in enumerate(q.options):
            rng = None
            if o.range is not None:
                if len(o.range) != 2 or o.range[0] is None:
                    self.err(path + ("options", j, "range"),
                             f"{self.where(path + ('options', j))}: a range is [from, to], "
                             "like [0, 13] or [43, null]")
                else:
                    rng = (int(o.range[0]), None if o.range[1] is None else int(o.range[1]))
            value = o.value
            options.append(Option(
                j, o.label, value, rng, o.fact, o.otherwise, dict(o.sets), o.next,
                {lang: tuple(normalise(w) for w in ws) for lang, ws in o.also.items()},
                self.src.where(path + ("options", j)),
            ))
        routes = []
        for j, r in enumerate(q.routes):
            c = self.cond(r.if_, path + ("routes", j, "if")) if r.if_ is not None else None
            routes.append(Route(c, r.go, r.rule, self.src.where(path + ("routes", j)),
                                broken=r.if_ is not None and c is None))
        return Question(
            q.id, q.kind, q.fact, q.text or {}, q.help or {}, tuple(options),
            q.none_label or {}, q.done_label or {}, q.min, q.max, q.out_of_range or {},
            tuple(routes), q.next, self.src.where(path),
        )


def _computed_spec(name: str, comp: Computed) -> FactSpec:
    if comp.when is not None:
        return FactSpec(name, "yes_no", computed=True)
    if comp.count:
        return FactSpec(name, "number", min=0, max=len(comp.count), computed=True)
    values = [v for _, v in comp.cases]
    if all(isinstance(v, bool) for v in values):
        return FactSpec(name, "yes_no", computed=True)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return FactSpec(name, "number", computed=True)
    return FactSpec(name, "choice", tuple(str(v) for v in values), computed=True)


def flow_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


@dataclass
class LoadResult:
    """What loading a flow found: the flow (None on any error), problems, paths checked."""

    flow: Flow | None
    problems: list[Problem]
    paths_checked: int | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


def check_text(text: str, file: str = "<flow>", *, lint: bool = True) -> LoadResult:
    """Load and check a flow from text. lint=False skips the plain-language scoring."""
    src = read_yaml(text, file)
    builder = _Builder(src, lint=lint)
    flow, _ = builder.build()
    problems = sorted(set(builder.problems), key=lambda p: (p.line, p.col, p.message))
    if flow is None or any(p.level == "error" for p in problems):
        return LoadResult(None, problems, builder.paths_checked)
    object.__setattr__(flow, "hash", flow_hash(text))
    object.__setattr__(flow, "source", text)
    return LoadResult(flow, problems, builder.paths_checked)


def check_file(path: str | FsPath, *, lint: bool = True) -> LoadResult:
    p = FsPath(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LoadResult(None, [Problem(str(path), 1, 1, "error", f"cannot read the file: {exc}")])
    return check_text(text, str(path), lint=lint)


def load_text(text: str, file: str = "<flow>") -> tuple[Flow | None, list[Problem]]:
    """Load a flow from text: (the flow if it has no error, every problem found)."""
    res = check_text(text, file, lint=False)
    return res.flow, res.problems


def load_flow(path: str | FsPath) -> tuple[Flow | None, list[Problem]]:
    """Load a flow file: (the flow if it has no error, every problem found)."""
    res = check_file(path, lint=False)
    return res.flow, res.problems


def load_flow_or_raise(path: str | FsPath) -> Flow:
    flow, problems = load_flow(path)
    if flow is None:
        raise FlowError(problems)
    return flow
