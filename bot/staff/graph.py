"""A picture of a flow: Graphviz DOT (rendered to SVG/PNG by the `dot` program) or Mermaid.

Questions are boxes (id + the start of the question), decisions diamonds, outcomes filled in
the colour of their disposition. Each edge is labelled with the answer that takes it: the
option, the route's condition and rule id, or "otherwise". Interrupts (words a patient may
type at any time) are dashed edges from a small "typed at any time" node.

With counts (``edge_counts`` over audit records), each label gets "(n)" and a thicker pen.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.flow.model import Flow, Outcome, Question

from .audit import TriageRecord

FORMATS = (".svg", ".png", ".dot", ".mmd")
DOT_MISSING = ("Graphviz's 'dot' program is not installed: install graphviz (apt-get install "
               "graphviz / brew install graphviz), or write .mmd (Mermaid), which needs nothing")
INTERRUPTS = "@interrupts"  # the id of the "typed at any time" node

COLOURS = {  # disposition -> (fill, font)
    "emergency": ("#d32f2f", "white"),
    "urgent": ("#f57c00", "white"),
    "routine": ("#1976d2", "white"),
    "self_care": ("#388e3c", "white"),
    "out_of_scope": ("#9e9e9e", "black"),
}
NODE_WRAP = 30
EDGE_WRAP = 26
TEXT_CHARS = 90
SPLIT = 5  # an outcome reached from this many steps or more is drawn beside each


class GraphError(Exception):
    """The picture cannot be made; the message says why and what to do (one line)."""


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # question | decision | outcome | interrupts
    title: str
    text: str
    disposition: str | None = None
    copy_of: str | None = None  # a busy outcome drawn beside one of the steps that reach it


@dataclass(frozen=True)
class Edge:
    key: tuple[str, int | str]  # (source step, index among its successors) or (INTERRUPTS, id)
    src: str
    dst: str
    label: str
    dashed: bool = False


@dataclass(frozen=True)
class FlowGraph:
    title: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]


def build_graph(flow: Flow, lang: str | None = None) -> FlowGraph:
    """The nodes and labelled edges of a flow, in the flow's own order."""
    lang = lang if lang in flow.languages else flow.default_language
    nodes: list[Node] = []
    edges: list[Edge] = []
    for sid, step in flow.steps.items():
        if isinstance(step, Outcome):
            head = flow.text(step.headline, lang) if step.headline else flow.text(step.text, lang)
            title = sid if sid == step.disposition else f"{sid} ({step.disposition})"
            nodes.append(Node(sid, "outcome", title, _short(head),
                              step.disposition))
            continue
        kind = "decision" if step.kind == "decision" else "question"
        nodes.append(Node(sid, kind, sid, _short(flow.text(step.text, lang)) if step.text else ""))
        edges.extend(_step_edges(flow, step, lang))
    if flow.interrupts:
        nodes.append(Node(INTERRUPTS, "interrupts", "typed at any time", ""))
        for it in flow.interrupts:
            phrases = it.phrases.get(lang) or next(iter(it.phrases.values()), ())
            said = f"“{phrases[0]}”" if phrases else it.id
            label = said + (f" [{it.rule}]" if it.rule else "")
            edges.append(Edge((INTERRUPTS, it.id), INTERRUPTS, it.go, label, dashed=True))
    nodes, edges = _split_busy_outcomes(nodes, edges)
    return FlowGraph(flow.text(flow.title, lang) or flow.id, tuple(nodes), tuple(edges))


def _split_busy_outcomes(nodes: list[Node], edges: list[Edge]) -> tuple[list[Node], list[Edge]]:
    """An outcome reached from many steps is drawn once beside each of them (title only), so
    its arrows stay short instead of crossing the whole picture."""
    sources: dict[str, list[str]] = {}
    for e in edges:
        got = sources.setdefault(e.dst, [])
        if e.src not in got:
            got.append(e.src)
    busy = {n.id for n in nodes if n.kind == "outcome" and len(sources.get(n.id, [])) >= SPLIT}
    if not busy:
        return nodes, edges
    out_nodes: list[Node] = []
    for n in nodes:
        if n.id in busy:
            out_nodes.extend(Node(f"{n.id}~{src}", "outcome", n.title, "", n.disposition, n.id)
                             for src in sources[n.id])
        else:
            out_nodes.append(n)
    out_edges = [Edge(e.key, e.src, f"{e.dst}~{e.src}", e.label, e.dashed) if e.dst in busy
                 else e for e in edges]
    return out_nodes, out_edges


def _step_edges(flow: Flow, q: Question, lang: str) -> list[Edge]:
    out: list[Edge] = []
    succ = q.successors()
    option_edges = sum(1 for o in q.options if o.next)
    labels_by_option = [flow.text(o.label, lang) for o in q.options if o.next]
    for i, (target, rule, label) in enumerate(succ):
        if i < option_edges:
            text = labels_by_option[i]
        elif label == "next":
            text = "other answers" if option_edges else ""
            if q.routes:
                text = "otherwise"
        elif label == "otherwise":
            text = "otherwise" + (f" [{rule}]" if rule else "")
        else:
            text = label + (f" [{rule}]" if rule else "")
        out.append(Edge((q.id, i), q.id, target, text))
    return out


def _short(text: str, limit: int = TEXT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


# --- counts from audit records --------------------------------------------------------------


def edge_counts(flow: Flow, records: Iterable[TriageRecord]) -> Counter[tuple[str, int | str]]:
    """How many patients took each edge: consecutive steps of each record's path (then its
    outcome), through any decisions between them, told apart by the record's facts."""
    graph_edges: dict[str, list[tuple[int, str, Any]]] = {}
    for sid, step in flow.steps.items():
        if isinstance(step, Question):
            graph_edges[sid] = [(i, t, r) for i, (t, r, _) in enumerate(step.successors())]
    counts: Counter[tuple[str, int | str]] = Counter()
    for rec in records:
        if rec["flow"] and rec["flow"] != flow.id:
            continue
        get = flow.lookup(rec["facts"])
        steps = list(rec["path"])
        interrupt = rec.get("interrupt")
        end = rec.get("outcome")
        if interrupt:
            at = rec.get("interrupted_at")
            if at:
                steps.append(at)
        elif end:
            steps.append(end)
        for a, b in zip(steps, steps[1:], strict=False):
            for key in _edges_between(flow, graph_edges, a, b, get):
                counts[key] += 1
        if interrupt and any(it.id == interrupt for it in flow.interrupts):
            counts[(INTERRUPTS, interrupt)] += 1
    return counts


def _edges_between(flow: Flow, graph_edges: dict[str, list[tuple[int, str, Any]]], a: str,
                   b: str, get: Any) -> list[tuple[str, int | str]]:
    """The edges a patient took from question a to step b (via decisions), or []."""
    if a not in graph_edges or b not in flow.steps:
        return []
    q = flow.steps[a]
    assert isinstance(q, Question)
    taken = _route_edge(q, graph_edges[a], get)
    chain = _follow(flow, graph_edges, a, taken, b, get) if taken is not None else None
    if chain:
        return chain
    for i, target, _ in graph_edges[a]:  # the route by facts did not lead to b: any edge does
        if target == b:
            return [(a, i)]
    for i, _, _ in graph_edges[a]:
        chain = _follow(flow, graph_edges, a, i, b, get)
        if chain:
            return chain
    return []


def _route_edge(q: Question, edges: list[tuple[int, str, Any]], get: Any) -> int | None:
    target, rule = q.route(None, get)
    for i, t, r in edges:
        if t == target and r == rule:
            return i
    return None


def _follow(flow: Flow, graph_edges: dict[str, list[tuple[int, str, Any]]], a: str, i: int,
            b: str, get: Any) -> list[tuple[str, int | str]] | None:
    """Edge (a, i), then decisions by the facts, until b: the edges, or None."""
    chain: list[tuple[str, int | str]] = [(a, i)]
    at = graph_edges[a][i][1]
    for _ in range(len(flow.steps)):
        if at == b:
            return chain
        step = flow.steps.get(at)
        if not (isinstance(step, Question) and step.kind == "decision"):
            return None
        nxt = _route_edge(step, graph_edges[at], get)
        if nxt is None:
            return None
        chain.append((at, nxt))
        at = graph_edges[at][nxt][1]
    return None


# --- DOT ------------------------------------------------------------------------------------


def dot_quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, newlines as centred breaks."""
    body = text.replace("\\", "\\\\").replace('"', '\\"')
    body = body.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return f'"{body}"'


def dot_html_label(title: str, lines: list[str]) -> str:
    """A DOT HTML-like label: the title in bold, then the lines (all text escaped)."""
    body = "".join(f"<br/>{html.escape(line, quote=True)}" for line in lines)
    return f"<<b>{html.escape(title, quote=True)}</b>{body}>"


def to_dot(graph: FlowGraph, counts: Counter[tuple[str, int | str]] | None = None) -> str:
    """The graph as DOT text (UTF-8)."""
    most = max(counts.values(), default=0) if counts is not None else 0
    lines = [
        "digraph flow {",
        "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=18, labelloc=t, nodesep=0.35, "
        f"ranksep=0.45, pad=0.3, label={dot_quote(graph.title)}];",
        "  node [fontname=\"Helvetica\", fontsize=11, margin=\"0.15,0.07\"];",
        "  edge [fontname=\"Helvetica\", fontsize=9, color=\"#555555\", arrowsize=0.7];",
    ]
    for n in graph.nodes:
        attrs: dict[str, str] = {}
        if n.kind == "question":
            attrs = {"shape": "box", "style": "rounded,filled", "fillcolor": "#f5f5f5",
                     "color": "#616161"}
        elif n.kind == "decision":
            attrs = {"shape": "diamond", "style": "filled", "fillcolor": "#fff8e1",
                     "color": "#f9a825"}
        elif n.kind == "outcome":
            fill, font = COLOURS.get(n.disposition or "", ("#ffffff", "black"))
            attrs = {"shape": "box", "style": "filled,bold", "fillcolor": fill,
                     "fontcolor": font, "color": fill}
        else:
            attrs = {"shape": "ellipse", "style": "dashed", "fontsize": "9", "color": "#757575"}
        label = dot_html_label(n.title, _wrap(n.text, NODE_WRAP) if n.text else [])
        lines.append(f"  {dot_quote(n.id)} [{_attrs(attrs)}, label={label}];")
    sink = [dot_quote(n.id) for n in graph.nodes if n.kind == "outcome" and not n.copy_of]
    if sink:
        lines.append(f"  {{ rank=sink; {' '.join(sink)} }}")
    for e in graph.edges:
        label = "\n".join(_wrap(e.label, EDGE_WRAP)) if e.label else ""
        took = counts.get(e.key, 0) if counts is not None else None
        if took is not None:
            label = f"{label} ({took})" if label else f"({took})"
        attrs = {"label": label} if label else {}
        if took is not None:
            attrs["penwidth"] = f"{1 + 5 * took / most:.2f}" if most else "1"
            if took == 0:
                attrs["color"] = "#bdbdbd"
                attrs["fontcolor"] = "#9e9e9e"
        if e.dashed:
            attrs["style"] = "dashed"
        lines.append(f"  {dot_quote(e.src)} -> {dot_quote(e.dst)}"
                     + (f" [{_attrs(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{k}={dot_quote(v)}" for k, v in attrs.items())


# --- Mermaid --------------------------------------------------------------------------------


def mermaid_text(text: str) -> str:
    """Text inside a Mermaid quoted label: entity codes for characters Mermaid would read."""
    out = []
    for c in text.replace("\r\n", "\n"):
        if c == "\n":
            out.append("<br/>")
        elif c in '"#<>&|`':
            out.append(f"#{ord(c)};")
        else:
            out.append(c)
    return "".join(out)


def to_mermaid(graph: FlowGraph, counts: Counter[tuple[str, int | str]] | None = None) -> str:
    """The graph as a Mermaid flowchart (paste into any Mermaid viewer)."""
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}  # never a Mermaid keyword
    most = max(counts.values(), default=0) if counts is not None else 0
    title = json.dumps(" ".join(graph.title.split()), ensure_ascii=False)  # YAML front matter
    lines = ["---", f"title: {title}", "---", "flowchart TD"]
    for n in graph.nodes:
        if n.kind == "question":
            body = "\n".join(_wrap(n.text, NODE_WRAP)) if n.text else ""
            lines.append(f'  {ids[n.id]}["{_mermaid_label(n.title, body)}"]')
        elif n.kind == "decision":
            lines.append(f'  {ids[n.id]}{{"{_mermaid_label(n.title, "")}"}}')
        elif n.kind == "outcome":
            body = "\n".join(_wrap(n.text, NODE_WRAP)) if n.text else ""
            lines.append(f'  {ids[n.id]}(["{_mermaid_label(n.title, body)}"]):::'
                         f"{n.disposition or 'unknown'}")
        else:
            lines.append(f'  {ids[n.id]}(("{mermaid_text(n.title)}")):::interrupts')
    for e in graph.edges:
        label = e.label
        thick = False
        if counts is not None:
            took = counts.get(e.key, 0)
            label = f"{label} ({took})" if label else f"({took})"
            thick = bool(most) and took >= most / 2
        arrow = "-.->" if e.dashed else ("==>" if thick else "-->")
        shown = f'|"{mermaid_text(label)}"|' if label else ""
        lines.append(f"  {ids[e.src]} {arrow}{shown} {ids.get(e.dst, mermaid_id(e.dst))}")
    for disposition, (fill, font) in COLOURS.items():
        lines.append(f"  classDef {disposition} fill:{fill},stroke:{fill},color:{font}")
    lines.append("  classDef interrupts fill:#ffffff,stroke:#757575,stroke-dasharray:4 3")
    return "\n".join(lines) + "\n"


def mermaid_id(step: str) -> str:
    return "x_" + "".join(c if c.isalnum() else "_" for c in step)


def _mermaid_label(title: str, body: str) -> str:
    return f"<b>{mermaid_text(title)}</b>" + ("<br/>" + mermaid_text(body) if body else "")


# --- writing --------------------------------------------------------------------------------


def write_graph(flow: Flow, out: str | Path, *, counts: Counter[tuple[str, int | str]] | None
                = None, lang: str | None = None) -> Path:
    """Write the picture; the format is the file's suffix (.svg, .png, .dot or .mmd)."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise GraphError(f"{path}: cannot tell the picture format from '{path.suffix or path.name}'"
                         "; name the file .svg, .png (Graphviz), .dot or .mmd (Mermaid)")
    graph = build_graph(flow, lang)
    text = to_mermaid(graph, counts) if suffix == ".mmd" else to_dot(graph, counts)
    if suffix in (".mmd", ".dot"):
        _write(path, text.encode("utf-8"))
        return path
    dot = shutil.which("dot")
    if dot is None:
        raise GraphError(DOT_MISSING)
    try:
        args = [dot, f"-T{suffix[1:]}"] + (["-Gdpi=110"] if suffix == ".png" else [])
        done = subprocess.run(args, input=text.encode("utf-8"), capture_output=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphError(f"Graphviz's 'dot' program failed to run ({exc}); "
                         "write .dot or .mmd instead") from None
    if done.returncode != 0 or not done.stdout:
        why = " ".join(done.stderr.decode("utf-8", "replace").split())[:300]
        raise GraphError(f"Graphviz's 'dot' could not draw the flow ({why or 'no output'}); "
                         "write .dot to look at the text it was given")
    _write(path, done.stdout)
    return path


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise GraphError(f"{path}: cannot write the picture ({exc.strerror or exc}); "
                         "pick a folder you can write to") from None
