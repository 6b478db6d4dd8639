"""`python bot.py graph FLOW -o FILE [--stats]`: Graphviz (real `dot`) and Mermaid pictures."""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bot.engine import Engine
from bot.flow import Flow, load_flow
from bot.staff.audit import read_record
from bot.staff.graph import (
    DOT_MISSING,
    build_graph,
    dot_quote,
    edge_counts,
    mermaid_text,
    to_dot,
)
from bot.storage.sqlite import SQLiteStore

from .conftest import DEMO, Cli, Clock, Patient, run_cli

needs_dot = pytest.mark.skipif(shutil.which("dot") is None and os.environ.get("CI") != "true",
                               reason="Graphviz's dot is not installed")

TRICKY = """\
id: tricky
version: "1"
languages: [en, es]
title: {en: 'Say "hi" <b>&</b> # ; | `x`', es: Título ✓}
disclaimer: {en: Only a test., es: Solo una prueba.}
questions:
  - id: q1
    fact: fever
    text:
      en: |-
        Line one with "quotes", <angle> & back\\slash;
        line two: 30°C — ñ ✓ {braces} [brackets] (parens) #hash
      es: ¿"Fiebre"?
    options:
      - {value: no, label: {en: 'No <never>', es: "No"}}
      - {value: yes, label: {en: 'Yes "really"', es: "Sí"}}
      - {label: {en: 'Not "sure" <?>', es: No sé}, next: fine}
    routes:
      - if: fever
        go: end
        rule: U1
      - go: fine
outcomes:
  - id: end
    disposition: urgent
    headline: {en: 'See a doctor "today"', es: Vea a un médico hoy}
    text: {en: Call us., es: Llámenos.}
    safety_net: {en: Call 911 if worse., es: Llame al 911 si empeora.}
  - id: fine
    disposition: self_care
    text: {en: Rest <a little>., es: Descanse.}
    safety_net: {en: Call 911 if worse., es: Llame al 911 si empeora.}
"""


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    path = tmp_path / "tricky.yaml"
    path.write_text(TRICKY, encoding="utf-8")
    flow, problems = load_flow(path)
    assert flow is not None, problems
    return path


def test_mermaid_has_every_step_colours_and_a_dashed_interrupt(
        tmp_path: Path, demo: Flow, cli: Cli) -> None:
    out = tmp_path / "demo.mmd"
    p = cli("graph", str(DEMO), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"wrote {out} (14 steps)\n"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[:4] == ["---", 'title: "Back pain check (demo)"', "---", "flowchart TD"]
    text = "\n".join(lines)
    for sid in demo.steps:
        assert f"<b>{sid}" in text
    assert '  n8{"<b>decide</b>"}' in lines
    assert '  n10(["<b>urgent</b><br/>Please see a doctor today or<br/>tomorrow."]):::urgent' \
        in lines
    assert '  n3 -->|"age #60; 16"| n13' in lines
    assert '  n8 -->|"fever [U1]"| n10' in lines
    assert '  n1 -->|"Not sure"| n2' in lines
    assert '  n4 --> n5' in lines
    assert '  n14 -.->|"“cant pee” [E1]"| n9' in lines
    assert "  classDef emergency fill:#d32f2f,stroke:#d32f2f,color:white" in lines
    assert "  classDef out_of_scope fill:#9e9e9e,stroke:#9e9e9e,color:black" in lines


def test_mermaid_escapes_quotes_angles_and_newlines(tricky: Path, tmp_path: Path,
                                                    cli: Cli) -> None:
    out = tmp_path / "t.mmd"
    assert cli("graph", str(tricky), "-o", str(out)).returncode == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[1] == 'title: "Say \\"hi\\" <b>&</b> # ; | `x`"'
    assert lines[4] == (
        '  n0["<b>q1</b><br/>Line one with #34;quotes#34;,<br/>#60;angle#62; #38; back\\slash; '
        'line<br/>two: 30°C — ñ ✓ {braces}<br/>[brackets] (p…"]')
    assert '  n0 -->|"fever [U1]"| n1' in lines
    assert '  n0 -->|"Not #34;sure#34; #60;?#62;"| n2' in lines
    assert mermaid_text('a "b"\nc') == "a #34;b#34;<br/>c"


def test_dot_escapes_quotes_backslashes_and_html(tricky: Path) -> None:
    flow, _ = load_flow(tricky)
    assert flow is not None
    dot = to_dot(build_graph(flow))
    assert 'label="Say \\"hi\\" <b>&</b> # ; | `x`"];' in dot
    assert ('label=<<b>q1</b><br/>Line one with &quot;quotes&quot;,<br/>&lt;angle&gt; &amp; '
            'back\\slash; line<br/>two: 30°C — ñ ✓ {braces}<br/>[brackets] (p…>];') in dot
    assert '  "q1" -> "fine" [label="Not \\"sure\\" <?>"];' in dot
    assert dot_quote('a "b" \\ c\nd') == '"a \\"b\\" \\\\ c\\nd"'


@needs_dot
def test_svg_parses_and_names_every_step(
        tricky: Path, tmp_path: Path, demo: Flow, cli: Cli) -> None:
    for flow_path, flow in ((DEMO, demo), (tricky, None)):
        out = tmp_path / f"{flow_path.stem}.svg"
        p = cli("graph", str(flow_path), "-o", str(out))
        assert p.returncode == 0, p.stderr
        root = ET.parse(out).getroot()
        titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
        steps = flow.steps if flow is not None else {"q1": None, "end": None, "fine": None}
        assert set(steps) <= titles
        words = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
        if flow is None:
            assert 'Say "hi" <b>&</b>' in words and "30°C — ñ ✓" in words
            assert 'Not "sure" <?>' in words


@needs_dot
def test_png_is_a_png(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "demo.png"
    p = run_cli("graph", str(DEMO), "-o", str(out))
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert 1000 < width < 6000


def test_dot_text_file(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "demo.dot"
    assert cli("graph", str(DEMO), "-o", str(out)).returncode == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("digraph flow {\n  graph [rankdir=TB,")
    assert '  "age" -> "under_16" [label="age < 16"];' in text
    assert '  "@interrupts" -> "emergency" [label="“cant pee” [E1]", style="dashed"];' in text
    assert ('  "decide" [shape="diamond", style="filled", fillcolor="#fff8e1", '
            'color="#f9a825", label=<<b>decide</b>>];') in text


def test_without_dot_the_message_says_what_to_install(tmp_path: Path, cli: Cli) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    out = tmp_path / "demo.svg"
    p = cli("graph", str(DEMO), "-o", str(out), env={"PATH": str(empty)})
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [DOT_MISSING]
    assert DOT_MISSING == (
        "Graphviz's 'dot' program is not installed: install graphviz (apt-get install graphviz "
        "/ brew install graphviz), or write .mmd (Mermaid), which needs nothing")
    assert not out.exists()
    assert cli("graph", str(DEMO), "-o", str(tmp_path / "ok.mmd"),
               env={"PATH": str(empty)}).returncode == 0


def test_an_unknown_picture_format_is_refused(tmp_path: Path, cli: Cli) -> None:
    p = cli("graph", str(DEMO), "-o", str(tmp_path / "demo.jpg"))
    assert p.returncode == 1
    assert p.stderr.strip() == (f"{tmp_path / 'demo.jpg'}: cannot tell the picture format from "
                                "'.jpg'; name the file .svg, .png (Graphviz), .dot or .mmd "
                                "(Mermaid)")


def test_a_broken_flow_is_not_drawn(tmp_path: Path, cli: Cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text(encoding="utf-8").replace("next: trend", "next: trnd"))
    p = cli("graph", str(bad), "-o", str(tmp_path / "x.mmd"))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: the flow has 1 error(s); fix them first (python bot.py validate {bad})")


# --- counts on the arrows ---------------------------------------------------------------------


async def _patients(path: Path, demo: Flow) -> None:
    clock = Clock()
    engine = Engine(demo, clock=clock)
    store = SQLiteStore(path)
    none = "None of these"
    scripts = [
        (none, "No", "#40", "Less than 2 weeks", "Getting better", "Yes", none),  # U1
        (none, "No", "#41", "Less than 2 weeks", "Getting worse", "Yes", none),  # U1
        (none, "No", "#30", "More than 6 weeks", "About the same", "No", none),  # R1
        (none, "Not sure", "Yes"),  # examples: E1
        (none, "No", "#12"),  # under_16
        (none, "No", "#can't pee"),  # interrupt at age
        (none, "No"),  # unfinished: no record
    ]
    try:
        for i, steps in enumerate(scripts):
            p = Patient(engine, store, f"k{i}", clock)
            await p.start()
            await p.answers(*steps)
    finally:
        await store.close()


@pytest.fixture
async def counted(tmp_path: Path, demo: Flow) -> Path:
    """A store where seven patients talked to the demo flow (six finished)."""
    path = tmp_path / "s.db"
    await _patients(path, demo)
    return path


async def test_edge_counts_follow_each_record_through_decisions(counted: Path,
                                                                demo: Flow) -> None:
    store = SQLiteStore(counted)
    records = [r for r in map(read_record, await store.audit()) if r is not None]
    await store.close()
    counts = edge_counts(demo, records)
    graph = build_graph(demo)
    named = {(e.src, e.dst, e.label): counts.get(e.key, 0) for e in graph.edges}
    assert named == {
        ("red_flags", "emergency", "bladder_bowel_changes or saddle_numbness [E1]"): 0,
        ("red_flags", "emergency", "weakness == severe_or_progressive [E4]"): 0,
        ("red_flags", "bladder_check", "otherwise"): 6,
        ("bladder_check", "bladder_examples", "Not sure"): 1,
        ("bladder_check", "emergency", "bladder_bowel_changes [E1]"): 0,
        ("bladder_check", "age", "otherwise"): 5,
        ("bladder_examples", "emergency", "bladder_bowel_changes [E1]"): 1,
        ("bladder_examples", "age", "otherwise"): 0,
        ("age", "under_16", "age < 16"): 1,
        ("age", "duration", "otherwise"): 3,
        ("duration", "trend", ""): 3,
        ("trend", "fever", ""): 3,
        ("fever", "worries", ""): 3,
        ("worries", "decide", ""): 3,
        ("decide", "urgent", "fever [U1]"): 2,
        ("decide", "routine", "duration_days > 42 [R1]"): 1,
        ("decide", "routine", "not new_or_worse [R2]"): 0,
        ("decide", "routine", "worry_level == high [R4]"): 0,
        ("decide", "self_care", "otherwise [S]"): 0,
        ("@interrupts", "emergency", "“cant pee” [E1]"): 1,
    }


def test_graph_stats_puts_counts_and_pens_on_the_arrows(counted: Path, tmp_path: Path,
                                                        cli: Cli) -> None:
    out = tmp_path / "counted.dot"
    p = cli("graph", str(DEMO), "-o", str(out), "--stats",
            env={"BOT_STORE": f"sqlite:///{counted}"})
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"wrote {out} (14 steps; arrows counted over 6 finished conversations)\n"
    text = out.read_text(encoding="utf-8")
    assert '  "red_flags" -> "bladder_check" [label="otherwise (6)", penwidth="6.00"];' in text
    assert '  "decide" -> "urgent" [label="fever [U1] (2)", penwidth="2.67"];' in text
    assert ('  "decide" -> "self_care" [label="otherwise [S] (0)", penwidth="1.00", '
            'color="#bdbdbd", fontcolor="#9e9e9e"];') in text
    assert '  "duration" -> "trend" [label="(3)", penwidth="3.50"];' in text
    mmd = tmp_path / "counted.mmd"
    assert cli("graph", str(DEMO), "-o", str(mmd), "--stats",
               env={"BOT_STORE": f"sqlite:///{counted}"}).returncode == 0
    lines = mmd.read_text(encoding="utf-8").splitlines()
    assert '  n0 ==>|"otherwise (6)"| n1' in lines
    assert '  n8 -->|"fever [U1] (2)"| n10' in lines


def test_since_without_stats_is_a_usage_error(tmp_path: Path, cli: Cli) -> None:
    p = cli("graph", str(DEMO), "-o", str(tmp_path / "x.mmd"), "--since", "7d")
    assert p.returncode == 2
    assert p.stderr.strip() == "error: --since only counts with --stats; add --stats"



def test_an_outcome_reached_from_many_steps_is_drawn_beside_each(tmp_path: Path) -> None:
    questions = "".join(
        f"  - id: q{i}\n    fact: f{i}\n    text: {{en: Question {i}?}}\n"
        f"    options:\n      - {{value: no, label: {{en: 'No'}}}}\n"
        f"      - {{value: yes, label: {{en: 'Yes'}}}}\n"
        f"    routes:\n      - {{if: f{i}, go: emergency, rule: E{i}}}\n"
        f"      - go: {'q' + str(i + 1) if i < 5 else 'fine'}\n" for i in range(1, 6))
    facts = "".join(f"  f{i}: {{type: yes_no}}\n" for i in range(1, 6))
    path = tmp_path / "many.yaml"
    path.write_text(
        "id: many\nversion: '1'\nlanguages: [en]\ntitle: {en: Many exits}\n"
        "disclaimer: {en: A test.}\n" + "facts:\n" + facts + "questions:\n" + questions
        + "outcomes:\n"
        "  - id: emergency\n    disposition: emergency\n    headline: {en: Go to the ER now.}\n"
        "    text: {en: Go now.}\n"
        "    safety_net: {en: Call 911.}\n"
        "  - id: fine\n    disposition: self_care\n    text: {en: Rest.}\n"
        "    safety_net: {en: Call 911 if worse.}\n", encoding="utf-8")
    flow, problems = load_flow(path)
    assert flow is not None, problems
    graph = build_graph(flow)
    copies = [n for n in graph.nodes if n.copy_of == "emergency"]
    assert [n.id for n in copies] == [f"emergency~q{i}" for i in range(1, 6)]
    assert {(e.src, e.dst) for e in graph.edges if e.label.startswith("f")} == {
        (f"q{i}", f"emergency~q{i}") for i in range(1, 6)}
    dot = to_dot(graph)
    assert '  { rank=sink; "fine" }' in dot
    assert '  "emergency~q3" [shape="box", style="filled,bold", fillcolor="#d32f2f", ' \
           'fontcolor="white", color="#d32f2f", label=<<b>emergency</b>>];' in dot
