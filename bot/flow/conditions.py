"""The condition language: parsed into a small tree, never `eval`'d.

    condition := or
    or        := and ("or" and)*
    and       := not ("and" not)*
    not       := "not" not | "(" or ")" | test
    test      := NAME [("==" | "!=" | "<" | "<=" | ">" | ">=") VALUE]
               | NAME ["not"] "in" "(" VALUE ("," VALUE)* ")"
               | "asked" "(" NAME ")"
    VALUE     := word | number | 'quoted text' | yes | no | true | false

Evaluation uses three values (True, False, None = not known yet): `a and b` is False as soon as
either side is False, `a or b` is True as soon as either side is True.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Value = bool | int | float | str
Lookup = Callable[[str], Any]  # returns the fact's value, or None when not filled
Eval = Callable[[Lookup], bool | None]

_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|<|>|\(|\)|,)"
    r"|(?P<str>'[^']*'|\"[^\"]*\")|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = {"and", "or", "not", "in"}
_BOOLS = {"yes": True, "true": True, "no": False, "false": False}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class ConditionError(ValueError):
    """A malformed condition: `offset` is the 0-based character where it went wrong."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Test:
    """A reference to a fact, with what it is compared to (op None = a yes/no fact is yes)."""

    fact: str
    op: str | None = None
    values: tuple[Value, ...] = ()
    offset: int = 0
    value_offsets: tuple[int, ...] = ()


@dataclass(frozen=True)
class Asked:
    fact: str
    offset: int = 0


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    items: tuple[Node, ...]


Node = Test | Asked | Not | BoolOp


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"unexpected character {text[pos:].lstrip()[:1]!r}",
                                 pos + (len(text[pos:]) - len(text[pos:].lstrip())))
        kind = m.lastgroup or ""
        start = m.start(kind)
        yield kind, m.group(kind), start
        pos = m.end()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = list(_tokens(text))
        self.i = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise ConditionError("the condition ends too early", len(self.text))
        self.i += 1
        return tok

    def at(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1] in words and tok[0] in ("name", "op")

    def parse(self) -> Node:
        if not self.toks:
            raise ConditionError("the condition is empty", 0)
        node = self.or_()
        tok = self.peek()
        if tok is not None:
            hint = " (use 'and' or 'or' to combine tests)" if tok[0] == "name" else ""
            raise ConditionError(f"unexpected {tok[1]!r}{hint}", tok[2])
        return node

    def or_(self) -> Node:
        items = [self.and_()]
        while self.at("or"):
            self.take()
            items.append(self.and_())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def and_(self) -> Node:
        items = [self.not_()]
        while self.at("and"):
            self.take()
            items.append(self.not_())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def not_(self) -> Node:
        if self.at("not"):
            self.take()
            return Not(self.not_())
        if self.at("("):
            self.take()
            node = self.or_()
            self.expect(")")
            return node
        return self.test()

    def expect(self, word: str) -> None:
        kind, text, off = self.take()
        if text != word:
            raise ConditionError(f"expected {word!r} but found {text!r}", off)

    def test(self) -> Node:
        kind, name, off = self.take()
        if kind != "name" or name in _KEYWORDS:
            raise ConditionError(f"expected a fact name but found {name!r}", off)
        if name == "asked" and self.at("("):
            self.take()
            kind2, fact, off2 = self.take()
            if kind2 != "name":
                raise ConditionError(f"expected a fact name but found {fact!r}", off2)
            self.expect(")")
            return Asked(fact, off2)
        tok = self.peek()
        if tok is not None and tok[0] == "op" and tok[1] in _OPS:
            self.take()
            value, voff = self.value()
            return Test(name, tok[1], (value,), off, (voff,))
        negate = False
        if self.at("not") and self.i + 1 < len(self.toks) and self.toks[self.i + 1][1] == "in":
            self.take()
            negate = True
        if self.at("in"):
            self.take()
            self.expect("(")
            values, offs = [], []
            while True:
                v, voff = self.value()
                values.append(v)
                offs.append(voff)
                if self.at(","):
                    self.take()
                    continue
                self.expect(")")
                break
            return Test(name, "not in" if negate else "in", tuple(values), off, tuple(offs))
        return Test(name, None, (), off)

    def value(self) -> tuple[Value, int]:
        kind, text, off = self.take()
        if kind == "num":
            return (float(text) if "." in text else int(text)), off
        if kind == "str":
            return text[1:-1], off
        if kind == "name" and text not in _KEYWORDS:
            return _BOOLS.get(text.lower(), text), off
        raise ConditionError(f"expected a value but found {text!r}", off)


def parse(text: str) -> Node:
    """Parse a condition; raises ConditionError with the character offset."""
    return _Parser(text).parse()


def walk(node: Node) -> Iterator[Test | Asked]:
    """Every fact reference in the tree."""
    if isinstance(node, (Test, Asked)):
        yield node
    elif isinstance(node, Not):
        yield from walk(node.item)
    else:
        for item in node.items:
            yield from walk(item)


def reads(node: Node) -> set[str]:
    """The facts a condition reads (asked(x) reads nothing)."""
    return {t.fact for t in walk(node) if isinstance(t, Test)}


def compile_node(node: Node) -> Eval:
    """Turn the tree into a function of a fact lookup, with three-valued logic.

    `asked(x)` looks up the key "asked(x)"; only safety checks provide it.
    """
    if isinstance(node, Asked):
        key = f"asked({node.fact})"

        def ev_asked(get: Lookup) -> bool | None:
            v = get(key)
            return None if v is None else bool(v)

        return ev_asked
    if isinstance(node, Test):
        return _compile_test(node)
    if isinstance(node, Not):
        inner = compile_node(node.item)

        def ev_not(get: Lookup) -> bool | None:
            v = inner(get)
            return None if v is None else not v

        return ev_not
    parts = [compile_node(item) for item in node.items]
    if node.op == "and":

        def ev_and(get: Lookup) -> bool | None:
            unknown = False
            for part in parts:
                v = part(get)
                if v is False:
                    return False
                if v is None:
                    unknown = True
            return None if unknown else True

        return ev_and

    def ev_or(get: Lookup) -> bool | None:
        unknown = False
        for part in parts:
            v = part(get)
            if v is True:
                return True
            if v is None:
                unknown = True
        return None if unknown else False

    return ev_or


def _compile_test(node: Test) -> Eval:
    fact = node.fact
    if node.op is None:

        def ev_truth(get: Lookup) -> bool | None:
            v = get(fact)
            return None if v is None else bool(v)

        return ev_truth
    if node.op in ("in", "not in"):
        members = frozenset(node.values)
        want = node.op == "in"

        def ev_in(get: Lookup) -> bool | None:
            v = get(fact)
            return None if v is None else ((v in members) == want)

        return ev_in
    fn = _OPS[node.op]
    rhs = node.values[0]

    def ev_cmp(get: Lookup) -> bool | None:
        v = get(fact)
        if v is None:
            return None
        try:
            return bool(fn(v, rhs))
        except TypeError:
            return None

    return ev_cmp


@dataclass(frozen=True)
class Condition:
    """A parsed condition with its source text; call it with a lookup."""

    text: str
    node: Node
    run: Eval

    @classmethod
    def parse(cls, text: str) -> Condition:
        node = parse(text)
        return cls(text, node, compile_node(node))

    def __call__(self, get: Lookup) -> bool | None:
        return self.run(get)

    @property
    def reads(self) -> set[str]:
        return reads(self.node)
