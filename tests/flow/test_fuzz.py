"""Property tests: whatever text a person saves as a flow, `check_text` answers with problems
(never an exception), each at a real place in the file, and a flow only when there is no error.

Inputs: mutations of flows/demo.yaml (lines deleted, duplicated, swapped, re-indented, tokens
replaced, the text cut short), mutations of its parsed structure dumped back to YAML, random
YAML-ish text, and random nested data dumped as YAML (safe dumper).
"""

from __future__ import annotations

import copy
import os
import re
import traceback
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from bot.flow import LoadResult, check_text

ROOT = Path(__file__).resolve().parents[2]
FILE = "flows/demo.yaml"
DEMO = (ROOT / FILE).read_text(encoding="utf-8")
LINES = DEMO.splitlines(keepends=True)
# The C loader/dumper: the pure-Python loader cannot read the demo (see the report), and the
# pure-Python dumper is seven times slower.
DATA: Any = yaml.load(DEMO, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=100)


FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
# About 2,500 inputs in all, ~35 s of CPU; FLOW_FUZZ_SCALE=10 feeds ten times as many.
SCALE = float(os.environ.get("FLOW_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, int(n * SCALE))


# Crashes already reported to the lead (see the report): an input that hits one of them is
# skipped, so that the properties keep guarding everything else. Remove an entry once fixed.
KNOWN_CRASHES: list[tuple[type[BaseException], str, str]] = [
    # (none left: loops, self-referencing aliases and unbuildable scalars are now reported)
]


def _known(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return any(isinstance(exc, kind) and any(f.filename.endswith(file) and f.name == func
                                             for f in frames)
               for kind, file, func in KNOWN_CRASHES)


def check(text: str) -> LoadResult:
    """check_text, with the properties every answer must have."""
    try:
        res = check_text(text, FILE, lint=False)
    except Exception as exc:
        if _known(exc):
            reject()
        raise
    assert isinstance(res, LoadResult)
    n_lines = len(text.splitlines()) or 1
    for p in res.problems:
        assert p.file == FILE, str(p)
        assert p.level in ("error", "warning"), str(p)
        assert p.line >= 1 and p.col >= 1, str(p)
        assert p.line <= n_lines + 1, (str(p), n_lines)
        assert p.message.strip(), str(p)
    places = [(p.line, p.col) for p in res.problems]
    assert places == sorted(places)
    if res.flow is not None:
        assert res.errors == [], [str(p) for p in res.errors]
    else:
        assert res.errors, "no flow, yet no error says why"
    return res


# -- (a) mutations of the demo's text ----------------------------------------------------------

IDS = ["red_flags", "bladder_check", "bladder_examples", "age", "duration", "trend", "fever",
       "worries", "decide", "emergency", "urgent", "routine", "self_care", "under_16",
       "cant_pee", "bladder_is_emergency"]
FACTS = ["bladder_bowel_changes", "saddle_numbness", "weakness", "duration_days", "startback_5",
         "startback_9", "new_or_worse", "worry_score", "worry_level", "bladder_unsure", "onset",
         "leg_pain"]
VALUES = ["improving", "stable", "worsening", "severe_or_progressive", "high", "low", "sudden",
          "emergency", "self_care", "out_of_scope", "E1", "U1"]
KEYS = ["id", "kind", "fact", "text", "options", "value", "range", "next", "routes", "if", "go",
        "rule", "sets", "also", "label", "cases", "count", "when", "then", "checks", "min",
        "max", "choice", "checklist", "number", "decision", "en", "es", "fr", "asked", "and",
        "or", "not", "in", "==", ">=", "<"]
ODD = ["yes", "no", "null", "~", "true", "[]", "{}", "- ", "-", ":", ": ", "'", '"', "''", '""',
       "{", "}", "[", "]", ",", "#", "&a", "*a", "!!str", "!!int", "<<", "|", ">-", "?", "%",
       "@", "`", "\t", "  ", "\n", "0", "-1", "13", "43", "4097", "1e9", "0x1F", ".inf", "1.5",
       "2024-01-31", "x" * 300, "y" * 5000, "é", "ñ", "日本語", "🙂", "👍🏽", "\u200b", "\u2028",
       "\x85", "\ufeff", "\x00", "\x07"]
POOL = IDS + FACTS + VALUES + KEYS + ODD
TOKEN = re.compile(r"\w+|[^\w\s]")


@st.composite
def mutated_demo(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "token", "token",
                                     "truncate"]))
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(0, 12)) + lines[i].lstrip(" ")
        elif kind == "token":
            tokens = list(TOKEN.finditer(lines[i]))
            if tokens:
                m = tokens[draw(st.integers(0, len(tokens) - 1))]
                lines[i] = lines[i][:m.start()] + draw(st.sampled_from(POOL)) + lines[i][m.end():]
        else:
            text = "".join(lines)
            lines = [text[:draw(st.integers(0, len(text)))]]
    return "".join(lines)


@settings(FUZZ, max_examples=examples(1100))
@given(mutated_demo())
def test_mutated_demo(text: str) -> None:
    check(text)


# -- (a) mutations of the demo's structure, dumped back to YAML --------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5000), st.sampled_from([2**70, -(2**70)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(POOL),
    st.text(max_size=20),
)


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.dictionaries(st.sampled_from(KEYS + IDS + FACTS), kids, max_size=4),
        ),
        max_leaves=8,
    )


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if path else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _places(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _places(v, path + (i,))
    return out


PLACES = _places(DATA)


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_structure(draw: st.DrawFn) -> str:
    data = copy.deepcopy(DATA)
    for _ in range(draw(st.integers(1, 3))):
        places = _places(data)
        path = draw(st.sampled_from(places))
        parent = _get(data, path[:-1])
        action = draw(st.sampled_from(["replace", "replace", "delete", "copy"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "copy":  # another node's value here (an id, a route, an option...)
            parent[path[-1]] = copy.deepcopy(_get(data, draw(st.sampled_from(places))))
        else:
            parent[path[-1]] = draw(_values())
    return dump(data)


@settings(FUZZ, max_examples=examples(300))
@given(mutated_structure())
def test_mutated_structure(text: str) -> None:
    check(text)


# -- (b) random YAML-ish text and random data --------------------------------------------------

FRAGMENTS = POOL + ["\n", "\n  ", "\n    ", "\n- ", "\n  - ", "id: ", "questions:", "outcomes:",
                    "version: 1", "languages: [en]", "---", "...", "%YAML 1.1", "? ", "&b ", "*b",
                    "!!binary ", "!!timestamp ", "!!set ", "!!python/object:os.system "]


@settings(FUZZ, max_examples=examples(800))
@given(st.one_of(
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(" ".join),
    st.text(max_size=200),
))
def test_random_text(text: str) -> None:
    check(text)


@settings(FUZZ, max_examples=examples(300))
@given(st.one_of(
    _values(),
    st.fixed_dictionaries(
        {"id": SCALARS, "version": SCALARS, "languages": _values(), "disclaimer": _values()},
        optional={"questions": st.lists(_values(), max_size=4),
                  "outcomes": st.lists(_values(), max_size=3),
                  "facts": _values(), "computed": _values(), "interrupts": _values(),
                  "checks": _values(), "start": SCALARS, "title": _values()},
    ),
))
def test_random_data(data: Any) -> None:
    check(dump(data))
