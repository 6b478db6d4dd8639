"""The condition language (bot/flow/conditions.py): parsing, precedence, three-valued logic,
error offsets, and that nothing is ever run as Python."""

from __future__ import annotations

import builtins
import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.flow.conditions import (
    Asked,
    BoolOp,
    Condition,
    ConditionError,
    Node,
    Not,
    parse,
    reads,
    walk,
)
from bot.flow.conditions import Test as FactTest  # not `Test`: pytest would collect it


def ev(text: str, **facts: Any) -> bool | None:
    """Evaluate a condition with these facts; any other fact is unknown (None)."""
    return Condition.parse(text)(facts.get)


def shape(node: Node) -> Any:
    """The tree without offsets, for comparing parses."""
    if isinstance(node, FactTest):
        return (node.fact, node.op, node.values) if node.op else node.fact
    if isinstance(node, Asked):
        return ("asked", node.fact)
    if isinstance(node, Not):
        return ("not", shape(node.item))
    return (node.op, *[shape(i) for i in node.items])


# -- parsing and precedence --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("fever", "fever"),
        ("a or b and c", ("or", "a", ("and", "b", "c"))),
        ("a and b or c", ("or", ("and", "a", "b"), "c")),
        ("(a or b) and c", ("and", ("or", "a", "b"), "c")),
        ("a or b or c", ("or", "a", "b", "c")),
        ("a and b and c", ("and", "a", "b", "c")),
        ("not a and b", ("and", ("not", "a"), "b")),
        ("not (a and b)", ("not", ("and", "a", "b"))),
        ("not a or not b", ("or", ("not", "a"), ("not", "b"))),
        ("not not a", ("not", ("not", "a"))),
        ("((a))", "a"),
        ("a or (b and (c or d))", ("or", "a", ("and", "b", ("or", "c", "d")))),
        ("age >= 70 and onset == sudden",
         ("and", ("age", ">=", (70,)), ("onset", "==", ("sudden",)))),
        ("leg_pain in (one_leg_below_knee, both_legs)",
         ("leg_pain", "in", ("one_leg_below_knee", "both_legs"))),
        ("trend not in (improving)", ("trend", "not in", ("improving",))),
        ("not trend in (a, b)", ("not", ("trend", "in", ("a", "b")))),
        ("asked(fever) and not asked(trend)",
         ("and", ("asked", "fever"), ("not", ("asked", "trend")))),
        # `asked` without brackets is an ordinary fact name
        ("asked", "asked"),
        # whitespace of any kind between tokens, and none around operators
        ("a\tand\nb", ("and", "a", "b")),
        ("age>=70", ("age", ">=", (70,))),
        ("  a  >=  3  ", ("a", ">=", (3,))),
    ],
)
def test_parse_tree(text: str, tree: Any) -> None:
    assert shape(parse(text)) == tree


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("x == 3", 3),
        ("x == -3", -3),
        ("x == 3.5", 3.5),
        ("x == 0", 0),
        ("x == yes", True),
        ("x == YES", True),
        ("x == true", True),
        ("x == no", False),
        ("x == False", False),
        ("x == 'yes'", "yes"),  # quoted: the word, not yes/no
        ('x == "no"', "no"),
        ("x == 'two words'", "two words"),
        ("x == worsening", "worsening"),
    ],
)
def test_values(text: str, value: Any) -> None:
    node = parse(text)
    assert isinstance(node, FactTest)
    assert node.values == (value,)
    assert type(node.values[0]) is type(value)


def test_offsets_of_facts_and_values() -> None:
    node = parse("a in (b) or c not in (d, 'e', 3)")
    assert isinstance(node, BoolOp)
    first, second = node.items
    assert isinstance(first, FactTest) and isinstance(second, FactTest)
    assert (first.offset, first.value_offsets) == (0, (6,))
    assert (second.offset, second.value_offsets) == (12, (22, 25, 30))
    assert second.values == ("d", "e", 3)


@pytest.mark.parametrize("op", ["==", "!=", "<", "<=", ">", ">="])
def test_every_comparison(op: str) -> None:
    python = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
              "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
              ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
    cond = Condition.parse(f"age {op} 70")
    for age in (0, 69, 70, 71, 120):
        assert cond({"age": age}.get) is python(age, 70), (op, age)


def test_in_and_not_in() -> None:
    assert ev("trend in (stable, worsening)", trend="stable") is True
    assert ev("trend in (stable, worsening)", trend="improving") is False
    assert ev("trend not in (stable, worsening)", trend="improving") is True
    assert ev("trend not in (stable, worsening)", trend="stable") is False
    assert ev("n in (1, 2)", n=2) is True
    assert ev("trend in (stable)") is None
    assert ev("trend not in (stable)") is None


def test_yes_no_tests() -> None:
    assert ev("fever", fever=True) is True
    assert ev("fever", fever=False) is False
    assert ev("not fever", fever=False) is True
    assert ev("fever == yes", fever=True) is True
    assert ev("fever != no", fever=False) is False


def test_a_comparison_of_the_wrong_type_is_unknown_not_an_error() -> None:
    assert ev("age < 16", age="sixteen") is None
    assert ev("age == 16", age="sixteen") is False


def test_reads_and_walk() -> None:
    cond = Condition.parse("fever or (age >= 70 and not asked(trend)) or leg_pain in (a, b)")
    assert cond.reads == {"fever", "age", "leg_pain"}  # asked(x) reads nothing
    assert reads(cond.node) == cond.reads
    assert [r.fact for r in walk(cond.node)] == ["fever", "age", "trend", "leg_pain"]
    assert cond.text == "fever or (age >= 70 and not asked(trend)) or leg_pain in (a, b)"


def test_asked_is_looked_up_by_its_own_key() -> None:
    seen: list[str] = []

    def get(name: str) -> Any:
        seen.append(name)
        return {"asked(fever)": True}.get(name)

    assert Condition.parse("asked(fever)")(get) is True
    assert Condition.parse("asked(trend)")(get) is None
    assert seen == ["asked(fever)", "asked(trend)"]


# -- three-valued logic ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "facts", "expected"),
    [
        ("a and b", {"a": False}, False),  # False and unknown
        ("b and a", {"a": False}, False),  # unknown and False
        ("a and b", {"a": True}, None),  # True and unknown
        ("a or b", {"a": True}, True),  # True or unknown
        ("b or a", {"a": True}, True),  # unknown or True
        ("a or b", {"a": False}, None),  # False or unknown
        ("b", {}, None),  # unknown alone
        ("not b", {}, None),
        ("b == x", {}, None),
        ("b < 3", {}, None),
        ("b in (x)", {}, None),
        ("a or b and c", {"a": True}, True),
        ("(a or b) and c", {"a": True}, None),
        ("(a or b) and c", {"c": False}, False),
        ("not (a and b)", {"a": False}, True),
        ("not (a or b)", {"a": True}, False),
    ],
)
def test_three_valued(text: str, facts: dict[str, Any], expected: bool | None) -> None:
    assert ev(text, **facts) is expected


def test_evaluation_stops_at_the_deciding_value() -> None:
    """`False and x` does not look x up at all; nor does `True or x`."""
    looked: list[str] = []

    def get(name: str) -> Any:
        looked.append(name)
        return {"a": False, "t": True}.get(name)

    assert Condition.parse("a and boom")(get) is False
    assert Condition.parse("t or boom")(get) is True
    assert "boom" not in looked


# A reference: Kleene's three-valued logic on a tree built in Python, printed as text, parsed
# back by the real parser and evaluated for every assignment of True/False/unknown.

FACTS = ("a", "b", "c", "d")
Tree = Any  # str | ("not", Tree) | ("and"|"or", Tree, Tree)


def _trees() -> st.SearchStrategy[Tree]:
    leaf: st.SearchStrategy[Tree] = st.sampled_from(FACTS)
    return st.recursive(
        leaf,
        lambda kids: st.one_of(
            st.tuples(st.just("not"), kids),
            st.tuples(st.sampled_from(["and", "or"]), kids, kids),
        ),
        max_leaves=8,
    )


_PREC = {"or": 1, "and": 2, "not": 3}


def _prec(tree: Tree) -> int:
    return 4 if isinstance(tree, str) else _PREC[tree[0]]


def _render(tree: Tree, full: bool = False) -> str:
    """The tree as condition text; `full` brackets every operation, else only where needed."""
    if isinstance(tree, str):
        return tree

    def part(child: Tree) -> str:
        text = _render(child, full)
        return f"({text})" if not isinstance(child, str) and (
            full or _prec(child) < _prec(tree)) else text

    if tree[0] == "not":
        return "not " + part(tree[1])
    return f"{part(tree[1])} {tree[0]} {part(tree[2])}"


def _kleene(tree: Tree, env: dict[str, bool | None]) -> bool | None:
    if isinstance(tree, str):
        return env[tree]
    if tree[0] == "not":
        v = _kleene(tree[1], env)
        return None if v is None else not v
    left, right = _kleene(tree[1], env), _kleene(tree[2], env)
    if tree[0] == "and":
        if left is False or right is False:
            return False
        return None if left is None or right is None else True
    if left is True or right is True:
        return True
    return None if left is None or right is None else False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees(), st.booleans())
def test_parser_agrees_with_kleene_logic(tree: Tree, full: bool) -> None:
    text = _render(tree, full=full)
    cond = Condition.parse(text)
    for values in itertools.product([True, False, None], repeat=len(FACTS)):
        env = dict(zip(FACTS, values, strict=True))
        assert cond(env.get) is _kleene(tree, env), (text, env)


# -- malformed conditions ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("fever and", 9, "the condition ends too early"),
        ("age >> 3", 5, "expected a value but found '>'"),
        ("age >", 5, "the condition ends too early"),
        ("", 0, "the condition is empty"),
        ("   ", 0, "the condition is empty"),
        ("fever fever", 6, "unexpected 'fever' (use 'and' or 'or' to combine tests)"),
        ("fever AND cough", 6, "unexpected 'AND' (use 'and' or 'or' to combine tests)"),
        ("(fever", 6, "the condition ends too early"),
        ("fever)", 5, "unexpected ')'"),
        ("(a))", 3, "unexpected ')'"),
        ("()", 1, "expected a fact name but found ')'"),
        ("not", 3, "the condition ends too early"),
        ("and", 0, "expected a fact name but found 'and'"),
        ("or a", 0, "expected a fact name but found 'or'"),
        ("a or", 4, "the condition ends too early"),
        ("a ==", 4, "the condition ends too early"),
        ("a == and", 5, "expected a value but found 'and'"),
        ("a == b == c", 7, "unexpected '=='"),
        ("a in ()", 6, "expected a value but found ')'"),
        ("a in (b", 7, "the condition ends too early"),
        ("a in (b,)", 8, "expected a value but found ')'"),
        ("a in (b,,c)", 8, "expected a value but found ','"),
        ("a in b", 5, "expected '(' but found 'b'"),
        ("a not b", 2, "unexpected 'not' (use 'and' or 'or' to combine tests)"),
        ("a not in", 8, "the condition ends too early"),
        ("asked(x", 7, "the condition ends too early"),
        ("asked(1)", 6, "expected a fact name but found '1'"),
        ("asked(a) == yes", 9, "unexpected '=='"),
        ("1 == 1", 0, "expected a fact name but found '1'"),
        ("'x'", 0, "expected a fact name but found \"'x'\""),
        ("a = 1", 2, "unexpected character '='"),
        ("a === b", 4, "unexpected character '='"),
        ("a && b", 2, "unexpected character '&'"),
        ("a || b", 2, "unexpected character '|'"),
        ("a ! b", 2, "unexpected character '!'"),
        ("a.b", 1, "unexpected character '.'"),
        ("a[0]", 1, "unexpected character '['"),
        ("a == 'x", 5, "unexpected character \"'\""),
        ("a == -", 5, "unexpected character '-'"),
        ("fiebre_sí", 8, "unexpected character 'í'"),
        ("a   ;b", 4, "unexpected character ';'"),
    ],
)
def test_malformed(text: str, offset: int, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        Condition.parse(text)
    assert str(info.value) == message
    assert info.value.offset == offset
    assert isinstance(info.value, ValueError)


# -- never run as a program --------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("__import__('os')", 10),
        ("__import__('os').system('rm -rf /')", 16),
        ("os.system('x')", 2),
        ("eval('1')", 4),
        ("exec('x = 1')", 4),
        ("open('/etc/passwd')", 4),
        ("lambda: 1", 6),
        ("[x for x in y]", 0),
        ("a if b else c", 2),
        ("a.__class__", 1),
        ("fever; import os", 5),
        ("age > (1)", 6),
        ("age > 1e3", 7),
        ("{}", 0),
        ("`id`", 0),
    ],
)
def test_python_is_a_condition_error(text: str, offset: int) -> None:
    with pytest.raises(ConditionError) as info:
        Condition.parse(text)
    assert info.value.offset == offset


def test_python_names_are_just_unknown_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dunder name is a fact name like any other: looked up, never resolved in Python."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the condition language must not run Python")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    texts = ["__import__", "__builtins__ == os", "__class__ in (x, y)", "not __dict__",
             "asked(__import__)", "fever or eval"]
    nothing: dict[str, Any] = {}
    odd: dict[str, Any] = {"__import__": True, "__builtins__": "os"}
    for text in texts:
        cond = Condition.parse(text)
        assert cond(nothing.get) is None, text
        assert cond(odd.get) in (True, False, None)


# -- any text: a tree or a ConditionError at a place inside the text ---------------------------

_WORDS = ["a", "b", "fever", "age", "and", "or", "not", "in", "asked", "(", ")", ",", "==",
          "!=", "<", "<=", ">", ">=", "yes", "no", "3", "-1", "2.5", "'x'", '"y z"', "=", "!",
          "&", ".", "é", "🙂", "__import__", "\t", "\n", "'", "-"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.lists(st.sampled_from(_WORDS), max_size=12).map(" ".join),
    st.lists(st.sampled_from(_WORDS), max_size=12).map("".join),
    st.text(max_size=40),
))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        cond = Condition.parse(text)
    except ConditionError as exc:
        assert 0 <= exc.offset <= len(text), (text, exc.offset)
        assert str(exc)
        return
    envs: list[dict[str, Any]] = [{}, dict.fromkeys(cond.reads, True),
                                  dict.fromkeys(cond.reads, 1), dict.fromkeys(cond.reads, "x")]
    for env in envs:
        assert cond(env.get) in (True, False, None)
