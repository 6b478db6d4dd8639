"""The funnel: how conversations ended, where unfinished ones stopped, and which questions
make patients go back.

Finished conversations come from the audit records (one per conversation that reached an
outcome, see ``bot.staff.audit``); unfinished ones from the live sessions in the store,
counted at the question on screen when they stopped. Only counts leave this module: no
facts, answers or keys.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.flow.catalogue import OUTCOME_KINDS
from bot.flow.model import Flow, Outcome, Question

from .audit import TriageRecord

_ORDER = {d: i for i, d in enumerate(OUTCOME_KINDS)}


@dataclass
class QuestionStats:
    step: str
    text: str = ""  # the start of the question, for the chart
    reached: int = 0  # conversations that got to this question
    stopped: int = 0  # unfinished conversations whose last screen is this question
    backs: int = 0  # times a patient went back to change the answer to this question
    in_flow: bool = True  # False: only in an earlier version of the flow

    @property
    def stop_rate(self) -> float:
        return self.stopped / self.reached if self.reached else 0.0

    @property
    def back_rate(self) -> float:
        return self.backs / self.reached if self.reached else 0.0


@dataclass
class Stats:
    flow: str
    since: float | None
    until: float | None
    first: float | None = None  # the earliest conversation counted
    last: float | None = None  # the latest
    finished: int = 0
    unfinished: int = 0
    dispositions: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, disposition)
    questions: list[QuestionStats] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)  # seconds to a disposition
    skipped: int = 0  # records of other flows, or not triage records

    @property
    def total(self) -> int:
        return self.finished + self.unfinished

    @property
    def median_seconds(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None

    def date_range(self) -> str:
        start = self.since if self.since is not None else self.first
        end = self.until if self.until is not None else self.last
        if start is None and end is None:
            return "no conversations"
        a = _day(start) if start is not None else "the start"
        b = _day(end) if end is not None else "now"
        return a if a == b else f"{a} to {b}"


def _day(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d")


def compute_stats(flow: Flow | None, records: Iterable[TriageRecord],
                  sessions: Iterable[tuple[str, dict[str, Any]]], *, flow_id: str | None = None,
                  since: float | None = None, until: float | None = None) -> Stats:
    """Count the funnel for one flow (by id) from audit records and live sessions."""
    fid = flow.id if flow is not None else (flow_id or "")
    st = Stats(fid, since, until)
    reached: Counter[str] = Counter()
    stopped: Counter[str] = Counter()
    backs: Counter[str] = Counter()
    seen_order: dict[str, None] = {}
    times: list[float] = []
    for rec in records:
        if fid and rec["flow"] != fid:
            st.skipped += 1
            continue
        at = rec["ended_at"]
        if (since is not None and at < since) or (until is not None and at > until):
            continue
        st.finished += 1
        st.dispositions[rec["disposition"]] += 1
        if rec["rule"]:
            st.rules[(rec["rule"], rec["disposition"])] += 1
        at_interrupt = rec.get("interrupted_at")
        for sid in dict.fromkeys(rec["path"] + ([at_interrupt] if at_interrupt else [])):
            reached[sid] += 1
            seen_order.setdefault(sid, None)
        for sid, n in rec["backs_at"].items():
            backs[sid] += n
        if not math.isnan(rec["started_at"]) and at >= rec["started_at"]:
            st.durations.append(at - rec["started_at"])
            times.append(rec["started_at"])
        times.append(at)
    for _, session in sessions:
        step = session.get("step")
        if not isinstance(step, str) or (fid and session.get("flow") != fid):
            continue
        if flow is not None and isinstance(flow.steps.get(step), Outcome):
            continue  # finished: counted from its audit record
        updated = session.get("updated")
        last = float(updated) if isinstance(updated, int | float) else None
        if last is not None and ((since is not None and last < since)
                                 or (until is not None and last > until)):
            continue
        st.unfinished += 1
        history = session.get("history")
        steps = [h.get("step") for h in history if isinstance(h, dict)] \
            if isinstance(history, list) else []
        for x in dict.fromkeys(x for x in steps + [step] if isinstance(x, str)):
            reached[x] += 1
            seen_order.setdefault(x, None)
        stopped[step] += 1
        meta = session.get("meta")
        backs_at = meta.get("backs_at") if isinstance(meta, dict) else None
        for x, n in (backs_at.items() if isinstance(backs_at, dict) else ()):
            if isinstance(n, int):
                backs[x] += n
        if last is not None:
            times.append(last)
    st.first = min(times) if times else None
    st.last = max(times) if times else None
    order: list[str] = []
    texts: dict[str, str] = {}
    if flow is not None:
        for sid, step in flow.steps.items():
            if isinstance(step, Question) and step.kind != "decision":
                order.append(sid)
                texts[sid] = flow.text(step.text, flow.default_language)
    extra = [s for s in seen_order if s not in texts]
    for sid in order + extra:
        st.questions.append(QuestionStats(sid, texts.get(sid, ""), reached[sid], stopped[sid],
                                          backs[sid], sid in texts or flow is None))
    return st


def _pct(part: int | float, whole: int | float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _disposition_order(d: str) -> tuple[int, str]:
    return (_ORDER.get(d, len(_ORDER)), d)


def format_stats(st: Stats) -> list[str]:
    """The report, as lines of text."""
    lines = [f"Flow '{st.flow}', {st.date_range()}",
             f"Conversations: {st.total} ({st.finished} reached a disposition, "
             f"{st.unfinished} stopped part-way)"]
    if not st.total:
        lines.append("No conversations to count yet.")
        return lines
    lines += ["", f"{'Disposition':<16}{'count':>7}{'share':>9}"]
    for d in sorted(st.dispositions, key=_disposition_order):
        n = st.dispositions[d]
        lines.append(f"{d:<16}{n:>7}{_pct(n, st.finished):>9}")
    lines.append(f"Median time to a disposition: {format_duration(st.median_seconds)}")
    width = max([len("Question")] + [len(q.step) + 2 for q in st.questions]) + 2
    lines += ["", f"{'Question':<{width}}{'reached':>8}{'stopped':>9}{'stop %':>8}"
                  f"{'backs':>7}{'back %':>8}"]
    for q in st.questions:
        name = q.step + ("" if q.in_flow else " *")
        lines.append(f"{name:<{width}}{q.reached:>8}{q.stopped:>9}{_pct(q.stopped, q.reached):>8}"
                     f"{q.backs:>7}{_pct(q.backs, q.reached):>8}")
    if any(not q.in_flow for q in st.questions):
        lines.append("* not in the current flow (asked by an earlier version)")
    if st.rules:
        lines += ["", f"{'Rule':<10}{'disposition':<16}{'count':>7}"]
        for (rule, d), n in sorted(st.rules.items(), key=lambda x: (-x[1], x[0])):
            lines.append(f"{rule:<10}{d:<16}{n:>7}")
    return lines


def write_csv(st: Stats, path: str | Path) -> None:
    """One table: a row per disposition, question and rule (open it in a spreadsheet)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["section", "name", "count", "percent", "reached", "stopped", "stop_percent",
                    "backs", "back_percent"])
        w.writerow(["conversations", "all", st.total, "", "", "", "", "", ""])
        w.writerow(["conversations", "finished", st.finished, _num(st.finished, st.total),
                    "", "", "", "", ""])
        w.writerow(["conversations", "unfinished", st.unfinished,
                    _num(st.unfinished, st.total), "", "", "", "", ""])
        for d in sorted(st.dispositions, key=_disposition_order):
            n = st.dispositions[d]
            w.writerow(["disposition", d, n, _num(n, st.finished), "", "", "", "", ""])
        median = st.median_seconds
        w.writerow(["time", "median_seconds_to_disposition",
                    "" if median is None else round(median, 1), "", "", "", "", "", ""])
        for q in st.questions:
            w.writerow(["question", q.step, "", "", q.reached, q.stopped,
                        _num(q.stopped, q.reached), q.backs, _num(q.backs, q.reached)])
        for (rule, d), n in sorted(st.rules.items(), key=lambda x: (-x[1], x[0])):
            w.writerow(["rule", f"{rule} ({d})", n, _num(n, st.finished), "", "", "", "", ""])


def _num(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else ""


def write_funnel_png(st: Stats, path: str | Path) -> None:
    """A funnel chart: per question in flow order, how many reached it and how many stopped."""
    import logging

    import matplotlib

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    qs = [q for q in st.questions if q.reached or q.in_flow]
    names = [_chart_label(q) for q in qs]
    reached = [q.reached for q in qs]
    stopped = [q.stopped for q in qs]
    height = max(3.0, 0.55 * len(qs) + 1.8)
    fig, ax = plt.subplots(figsize=(10, height), dpi=110)
    try:
        ys = list(range(len(qs)))
        ax.barh(ys, reached, color="#90caf9", label="reached this question")
        ax.barh(ys, stopped, color="#e53935", label="stopped here (did not finish)")
        most = max(reached, default=0) or 1
        for y, r, s in zip(ys, reached, stopped, strict=True):
            text = f"{r}" + (f"  ({s} stopped, {_pct(s, r)})" if s else "")
            ax.text(r + most * 0.01, y, text, va="center", fontsize=9, color="#263238")
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, most * 1.3)
        ax.set_xlabel("conversations")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_title(f"Where patients stop: flow '{st.flow}', {st.date_range()}\n"
                     f"{st.total} conversations, {st.finished} reached a disposition, "
                     f"{st.unfinished} stopped part-way", fontsize=11, loc="left")
        ax.legend(loc="best", fontsize=9, framealpha=0.9)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def _chart_label(q: QuestionStats) -> str:
    text = " ".join(q.text.split())
    if len(text) > 38:
        text = text[:37].rstrip() + "…"
    label = f"{q.step}: {text}" if text else q.step
    return label + ("" if q.in_flow else " (old)")
