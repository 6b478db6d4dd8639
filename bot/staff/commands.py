"""CLI subcommands of the staff tools (registered by bot.cli).

    python bot.py graph FLOW -o FILE [--stats]    a picture: .svg/.png (Graphviz), .dot, .mmd
    python bot.py diff OLD NEW [--json]           what an edit changes for patients
    python bot.py stats [--since DATE] [--csv F] [--png F]   the funnel, from the store

Each command's function takes the parsed arguments and returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot import eventloop
from bot.flow.loader import check_file
from bot.flow.model import Flow
from bot.settings import Settings

from .audit import TriageRecord, read_record

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command-line value that cannot work; the message says what to write instead."""


def add_staff_commands(sub: Any) -> None:
    """Add the staff tools' subcommands to the CLI's subparsers."""
    g = sub.add_parser("graph", help="draw a flow (.svg, .png, .dot or .mmd)",
                       description="Draw a flow: questions as boxes, decisions as diamonds, "
                       "outcomes in the colour of their disposition.")
    g.add_argument("flow", help="the flow file")
    g.add_argument("-o", "--output", required=True,
                   help="the picture to write: .svg or .png (needs Graphviz), .dot or .mmd")
    g.add_argument("--stats", action="store_true",
                   help="show how many patients took each arrow (from BOT_STORE's records)")
    g.add_argument("--since", help="with --stats: count from this date (2025-01-31, or 30d)")
    g.add_argument("--lang", help="language of the texts (default: the flow's first)")
    g.set_defaults(func=_guard(cmd_graph))
    d = sub.add_parser("diff", help="what an edit of a flow changes for patients",
                       description="Compare two versions of a flow: every path of answers is "
                       "tried on both. Exit code 1 if any path gets less urgent advice.")
    d.add_argument("old", help="the flow as it is now (the version serving patients)")
    d.add_argument("new", help="the edited flow")
    d.add_argument("--json", action="store_true", help="write the report as JSON")
    d.add_argument("--examples", type=int, default=5, help="example paths to show per change")
    d.set_defaults(func=_guard(cmd_diff))
    s = sub.add_parser("stats", help="the funnel: dispositions, drop-off and back-rate",
                       description="Count finished conversations (audit records) and where "
                       "unfinished ones stopped, from the store BOT_STORE names.")
    s.add_argument("--since", help="count from this date (2025-01-31, or 7d / 4w for the last "
                   "days or weeks)")
    s.add_argument("--until", help="count up to this date (included)")
    s.add_argument("--flow", help="the flow file for question order and texts "
                   "(default: BOT_FLOW)")
    s.add_argument("--csv", help="also write the numbers to this CSV file")
    s.add_argument("--png", help="also draw the funnel chart to this PNG file")
    s.set_defaults(func=_guard(cmd_stats))


def _guard(func: Command) -> Command:
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def _load(path: str) -> Flow:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such flow file; give the path of a .yaml flow, "
                         "like flows/demo.yaml")
    res = check_file(p, lint=False)
    if res.flow is None:
        for problem in res.errors:
            print(problem, file=sys.stderr)
        raise UsageError(f"{path}: the flow has {len(res.errors)} error(s); fix them first "
                         f"(python bot.py validate {path})")
    return res.flow


def parse_date(text: str, *, end: bool = False, now: float | None = None) -> float:
    """A date (2025-01-31), a date and time (2025-01-31T14:00), or 7d / 4w / 12h ago."""
    raw = text.strip()
    m = re.fullmatch(r"(\d+)\s*([hdw])", raw.lower())
    if m:
        unit = {"h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
        return (time.time() if now is None else now) - int(m.group(1)) * unit
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"'{text}' is not a date; write it like 2025-01-31 (or 7d for the "
                         "last 7 days)") from None
    if end and len(raw) <= 10:
        when += timedelta(days=1)  # --until 2025-01-31 includes that day
        return when.timestamp() - 0.001
    return when.timestamp()


def _read_store(settings: Settings, since: float | None, *, sessions: bool
                ) -> tuple[list[TriageRecord], list[tuple[str, dict[str, Any]]]]:
    from bot.storage import open_store
    from bot.storage.base import StoreError

    async def main() -> tuple[list[TriageRecord], list[tuple[str, dict[str, Any]]]]:
        store = open_store(settings.store, ttl_seconds=settings.session_ttl)
        try:
            await store.check()
            raw = await store.audit(since)
            live = await store.sessions() if sessions else []
        finally:
            await store.close()
        records = [r for r in (read_record(x) for x in raw) if r is not None]
        return records, live

    try:
        return eventloop.run(main(), settings.event_loop)
    except StoreError as exc:
        raise UsageError(f"{exc}; set BOT_STORE to the store the bot uses") from None


# --- graph ----------------------------------------------------------------------------------


def cmd_graph(args: argparse.Namespace) -> int:
    """Write a picture of the flow."""
    from .graph import GraphError, edge_counts, write_graph

    flow = _load(args.flow)
    counts = None
    counted = 0
    if args.stats:
        since = parse_date(args.since) if args.since else None
        records, _ = _read_store(Settings.from_env(), since, sessions=False)
        counts = edge_counts(flow, records)
        counted = sum(1 for r in records if r["flow"] in (flow.id, ""))
    elif args.since:
        raise UsageError("--since only counts with --stats; add --stats")
    try:
        out = write_graph(flow, args.output, counts=counts, lang=args.lang)
    except GraphError as exc:
        print(exc, file=sys.stderr)
        return 1
    extra = "" if counts is None else f"; arrows counted over {counted} finished conversations"
    print(f"wrote {out} ({len(flow.steps)} steps{extra})")
    return 0


# --- diff -----------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    """Report what an edit changes; exit 1 if any path gets less urgent advice."""
    from .diff import diff_flows, format_diff

    if args.examples < 0:
        raise UsageError("--examples must be 0 or more")
    old, new = _load(args.old), _load(args.new)
    d = diff_flows(old, new, old_name=args.old, new_name=args.new, examples=args.examples)
    if args.json:
        print(json.dumps(d.to_dict(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(format_diff(d)))
    return 1 if d.less_urgent else 0


# --- stats ----------------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    """Print the funnel; write it as CSV and as a chart when asked."""
    from .stats import compute_stats, format_stats, write_csv, write_funnel_png

    settings = Settings.from_env()
    since = parse_date(args.since) if args.since else None
    until = parse_date(args.until, end=True) if args.until else None
    if since is not None and until is not None and until < since:
        raise UsageError("--until is before --since; swap them")
    flow_path = args.flow or settings.flow
    flow: Flow | None = None
    res = check_file(flow_path, lint=False) if Path(flow_path).is_file() else None
    if res is not None and res.flow is not None:
        flow = res.flow
    elif args.flow:
        _load(args.flow)  # raises with the problems
    else:
        print(f"note: cannot load {flow_path}; questions are listed in the order they were "
              "first seen (give the flow with --flow)", file=sys.stderr)
    records, live = _read_store(settings, since, sessions=True)
    flow_id = flow.id if flow is not None else _main_flow(records, live)
    st = compute_stats(flow, records, live, flow_id=flow_id, since=since, until=until)
    print("\n".join(format_stats(st)))
    if st.skipped:
        print(f"({st.skipped} record(s) of other flows not counted)", file=sys.stderr)
    if args.csv:
        try:
            write_csv(st, args.csv)
        except OSError as exc:
            raise UsageError(f"{args.csv}: cannot write ({exc.strerror or exc})") from None
        print(f"wrote {args.csv}")
    if args.png:
        try:
            write_funnel_png(st, args.png)
        except ImportError:
            raise UsageError("the chart needs matplotlib: .venv/bin/pip install matplotlib "
                             "(or reinstall: pip install -e .)") from None
        except OSError as exc:
            raise UsageError(f"{args.png}: cannot write ({exc.strerror or exc})") from None
        print(f"wrote {args.png}")
    return 0


def _main_flow(records: list[TriageRecord], live: list[tuple[str, dict[str, Any]]]) -> str:
    """The flow id most conversations used (when the flow file cannot be loaded)."""
    seen: dict[str, int] = {}
    for r in records:
        seen[r["flow"]] = seen.get(r["flow"], 0) + 1
    for _, s in live:
        f = s.get("flow")
        if isinstance(f, str):
            seen[f] = seen.get(f, 0) + 1
    return max(seen, key=lambda k: seen[k]) if seen else ""
