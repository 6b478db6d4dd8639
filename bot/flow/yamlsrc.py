"""Read YAML into plain data, remembering the line and column of every key and value.

PyYAML keeps the last of two duplicate keys silently; here a duplicate is a reported problem.
The C loader is used when available (about 8x faster on large files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .problems import Problem

Path = tuple[str | int, ...]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Source:
    """Plain data read from one YAML file, with positions (1-based) of each node by path."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The position of the value at path (or of its key), else of its nearest ancestor."""
        if key and path in self.key_positions:
            return self.key_positions[path]
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, path: Path, level: str, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, level, message)  # type: ignore[arg-type]


def read_yaml(text: str, file: str) -> Source:
    """Parse text; problems (syntax errors, duplicate keys, odd keys) go in Source.problems."""
    src = Source(file=file, data=None)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        src.problems.append(Problem(file, 1, 1, "error",
                                    f"the text has a character that cannot be saved as UTF-8 "
                                    f"(position {exc.start}); remove it"))
        return src
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "invalid YAML"
        if exc.context:
            what = f"{exc.context}, {what}"
        bad_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
        if "\t" in bad_line[:max(col, 1)] or (("\t" in bad_line) and "token" in what):
            hint = "this line has a tab: YAML needs spaces for indentation; replace the tab " \
                   "with spaces"
        elif "mapping values are not allowed" in what:
            hint = "a text that contains ': ' must be put in quotes, like \"Note: ...\""
        elif "could not find expected ':'" in what or "expected <block end>" in what:
            hint = "check the indentation of this line and the one above (use spaces, not tabs)"
        elif "\\t" in what or "\t" in what or "tab" in what.lower():
            hint = "replace the tab with spaces"
        else:
            hint = "check the indentation and quotes on this line and the one above"
        src.problems.append(Problem(file, line, col, "error", f"YAML syntax: {what}; {hint}"))
        return src
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked errors are rare
        src.problems.append(Problem(file, 1, 1, "error", f"YAML syntax: {exc}"))
        return src
    if node is None:
        src.data = None
        return src
    src.data = _build(node, (), src)
    return src


def _scalar(node: yaml.ScalarNode) -> Any:
    """The scalar's value (yes/no → bool, 12 → int ...); its text when it cannot be built."""
    constructor = yaml.constructor.SafeConstructor()
    try:
        return constructor.construct_object(node, deep=True)
    except Exception:  # a date that is not a date, `!!int x`, ...: keep the text
        return node.value


def _build(node: yaml.Node, path: Path, src: Source, seen: set[int] | None = None) -> Any:
    src.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    seen = set() if seen is None else seen
    if not isinstance(node, yaml.ScalarNode):
        if id(node) in seen:  # an alias (*name) of a list or mapping
            src.problems.append(Problem(
                src.file, node.start_mark.line + 1, node.start_mark.column + 1, "error",
                "anchors and aliases (& and *) are not supported in flows; write the text out "
                "where it is needed"))
            return None
        seen.add(id(node))
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, path + (i,), src, seen) for i, child in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                src.problems.append(
                    Problem(src.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                            "error", "'<<' merge keys are not supported here; write the keys out")
                )
                continue
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            kpos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if isinstance(key, bool):
                # `yes:`/`no:` as a key (YAML 1.1 reads them as booleans): keep the word.
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key)
            if not isinstance(key, (str, int)):
                src.problems.append(
                    Problem(src.file, *kpos, "error", "a key must be a plain word")
                )
                continue
            skey = str(key)
            if skey in out:
                first = src.key_positions.get(path + (skey,), kpos)
                src.problems.append(
                    Problem(src.file, *kpos, "error",
                            f"duplicate key '{skey}' (first at line {first[0]}); "
                            "YAML would silently keep only the last one: remove or rename one")
                )
                continue
            src.key_positions[path + (skey,)] = kpos
            out[skey] = _build(value_node, path + (skey,), src, seen)
        return out
    return None  # pragma: no cover
