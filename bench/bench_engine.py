"""Engine cost per answer, against a plain-dict lookup of the next step measured beside it;
and load + validation of a generated 60-question flow.

    .venv/bin/python bench/bench_engine.py [--flow flows/demo.yaml]

One answer = parse the stored session (JSON bytes → dict), restore it, apply the answer, build
the reply, serialise the session to JSON (what a channel does per update, minus the store).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.casefiles import Case, run_case  # noqa: E402
from bot.engine import Choose, Engine, Start, Text  # noqa: E402
from bot.flow import check_text, load_flow  # noqa: E402


def per_call_us(fn: Any, repeat: int, inner: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t) / inner * 1e6)
    return out


def answer_inputs(engine: Engine, flow: Any, facts: dict[str, Any]) -> list[tuple[dict, Any]]:
    """(stored session, input) for every answer along one case's path."""
    case = Case("bench", facts, "self_care", None, "bench", 1)
    res = run_case(flow, case, engine)
    assert res.disposition is not None, res.describe()
    data, _ = engine.handle(None, Start())
    pairs = []
    for step_words in res.path:
        step = step_words.split("=", 1)[0]
        q = flow.steps[step]
        if q.kind == "number":
            inp: Any = Text(step_words.split("=", 1)[1])
        elif q.kind == "checklist":
            inp = Choose(step, 0, "n")
        else:
            idx = next(o.index for o in q.options
                       if flow.text(o.label, "en") == step_words.split("=", 1)[1])
            inp = Choose(step, idx, "a", flow.hash[:8])
        pairs.append((json.loads(json.dumps(data)), inp))
        data, _ = engine.handle(data, inp)
    return pairs


def synthetic_flow(n: int = 60) -> str:
    lines = ["id: synthetic", 'version: "1"', "languages: [en, es]",
             "disclaimer: {en: Not a diagnosis. Call 911 in an emergency., "
             "es: No es un diagnóstico. Llame al 911 si es una emergencia.}",
             "facts:"]
    for i in range(n):
        lines += [f"  q{i}_fact:", "    type: choice", "    values: [a, b, c]"]
    lines += ["computed:", "  many_b:", "    count: [" +
              ", ".join(f"q{i}_fact == b" for i in range(0, n, 6)) + "]", "questions:"]
    for i in range(n):
        nxt = f"q{i + 1}" if i + 1 < n else "end_ok"
        lines += [f"  - id: q{i}", f"    fact: q{i}_fact",
                  f"    text: {{en: 'Question number {i} for you?', es: '¿Pregunta número {i}?'}}",
                  "    options:"]
        for v in "abc":
            lines.append(f"      - {{value: {v}, label: {{en: Answer {v}, es: Respuesta {v}}}}}")
        if i % 10 == 9:
            lines += ["    routes:", f"      - if: q{i}_fact == c and q{i - 1}_fact == c",
                      "        go: end_urgent", "        rule: U9", f"      - go: {nxt}"]
        else:
            lines.append(f"    next: {nxt}")
    lines += ["outcomes:"]
    for oid, disp in (("end_ok", "self_care"), ("end_urgent", "urgent")):
        lines += [f"  - id: {oid}", f"    disposition: {disp}",
                  "    text: {en: Some advice for you., es: Un consejo para usted.}",
                  "    safety_net: {en: Call 911 if worse., es: Llame al 911 si empeora.}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", default="flows/demo.yaml")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    flow, problems = load_flow(args.flow)
    assert flow is not None, problems
    engine = Engine(flow)
    facts = {f: (False if s.type == "yes_no" else s.values[0] if s.values else (s.min or 0))
             for f, s in flow.facts.items() if not s.computed}
    facts.update(age=34, duration_days=3, trend="improving")
    pairs = answer_inputs(engine, flow, facts)

    # baseline: a plain-dict lookup of the next step
    table = {(p[0]["step"], getattr(p[1], "option", 0)): "next" for p in pairs}
    keys = list(table)

    def baseline() -> None:
        for k in keys:
            table[k]

    frozen = [(orjson.dumps(stored), inp) for stored, inp in pairs]

    def ours() -> None:
        for stored, inp in frozen:
            data, reply = engine.handle(orjson.loads(stored), inp)
            orjson.dumps(data)

    n = len(pairs)
    inner = max(1, 2000 // n)
    base = [x / n for x in per_call_us(baseline, args.repeat, inner * 50)]
    eng = [x / n for x in per_call_us(ours, args.repeat, inner)]
    b_med, e_med = statistics.median(base), statistics.median(eng)
    print(f"flow {flow.id} ({len(flow.steps)} steps), {n} answers per conversation")
    print(f"baseline dict lookup : median {b_med:8.3f} µs per answer")
    print(f"engine (one answer)  : median {e_med:8.1f} µs per answer "
          f"(p90 {sorted(eng)[int(len(eng) * 0.9)]:.1f}); {e_med / b_med:,.0f}x the lookup; "
          f"target < 50 µs: {'met' if e_med < 50 else 'NOT met'}")

    text = synthetic_flow(60)
    res = check_text(text, "synthetic.yaml", lint=False)
    assert res.flow is not None, [str(p) for p in res.problems][:5]
    loads = per_call_us(lambda: check_text(text, "synthetic.yaml", lint=False), 7, 3)
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    parse = per_call_us(lambda: yaml.load(text, Loader=loader), 7, 3)
    lm, pm = statistics.median(loads) / 1000, statistics.median(parse) / 1000
    print(f"60-question flow     : load + validation median {lm:.1f} ms "
          f"({res.paths_checked} paths walked); yaml.safe_load alone {pm:.1f} ms; "
          f"target < 100 ms: {'met' if lm < 100 else 'NOT met'}")


if __name__ == "__main__":
    main()
