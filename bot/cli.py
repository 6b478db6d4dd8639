"""The command line: run the bot, chat in the console, and the staff tools.

    python bot.py                      Telegram when TELEGRAM_BOT_TOKEN is set, else the console
    python bot.py console [--lang es]  the patient's view in a terminal
    python bot.py validate [PATH...]   check flows: file:line:col: error|warning: message
    python bot.py test [PATH...]       run case files: facts in, disposition out
    python bot.py paths FLOW [--csv F] every path through a flow, with its disposition and rule
    python bot.py schema               write flows/flow.schema.json (for editors)

The CLI wires the layers together and is imported by nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bot import eventloop
from bot.settings import Settings, SettingsError

logger = logging.getLogger(__name__)

SCHEMA_PATH = Path("flows/flow.schema.json")


def _flow_files(paths: list[str]) -> list[Path]:
    if not paths:
        paths = ["flows"]
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(x for x in path.glob("*.y*ml") if x.suffix in (".yaml", ".yml")))
        else:
            out.append(path)
    return out


def cmd_validate(args: argparse.Namespace) -> int:
    from bot.flow import check_file

    files = _flow_files(args.paths)
    if not files:
        print("no flow files found (looked for flows/*.yaml)", file=sys.stderr)
        return 1
    errors = 0
    for f in files:
        res = check_file(f)
        for p in res.problems:
            print(p)
        n_err = len(res.errors)
        n_warn = len(res.problems) - n_err
        errors += n_err
        if n_err:
            print(f"{f}: {n_err} error(s), {n_warn} warning(s): not valid", file=sys.stderr)
        else:
            checks = len(res.flow.checks) if res.flow else 0
            paths = f"{res.paths_checked} paths" if res.paths_checked is not None else "paths"
            print(f"{f}: valid ({len(res.flow.steps) if res.flow else 0} steps; {checks} safety "
                  f"checks hold on all {paths}; {n_warn} warning(s))")
    return 1 if errors else 0


def _load_flow(path: str) -> Any:
    from bot.flow import check_file

    res = check_file(path, lint=False)
    if res.flow is None:
        for p in res.problems:
            print(p, file=sys.stderr)
        print(f"{path}: the flow has errors; fix them first (python bot.py validate {path})",
              file=sys.stderr)
        raise SystemExit(1)
    return res.flow


def _flow_for_cases(name: str | None, default: str) -> str:
    if name is None:
        return default
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml"):
        return str(candidate)
    return str(Path("flows") / f"{name}.yaml")


def cmd_test(args: argparse.Namespace) -> int:
    from bot.casefiles import read_cases, run_cases

    settings = Settings.from_env()
    paths = args.paths or ["flows/tests"]
    cases, problems = read_cases(paths)
    for p in problems:
        print(p)
    default = args.flow or settings.flow
    by_flow: dict[str, list[Any]] = {}
    for c in cases:
        by_flow.setdefault(_flow_for_cases(None if args.flow else c.flow, default), []).append(c)
    failed = len([p for p in problems if p.level == "error"])  # unreadable cases fail
    passed = 0
    for flow_path, group in by_flow.items():
        flow = _load_flow(flow_path)
        report = run_cases(flow, group)
        for r in report.failed:
            print(r.describe())
        passed += len(report.results) - len(report.failed)
        failed += len(report.failed)
        if report.unreached and not args.quiet:
            print(f"{flow_path}: not reached by any case: " + "; ".join(report.unreached))
    if not cases and not problems:
        print(f"no case files found in {', '.join(paths)}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not cases else 0


def cmd_paths(args: argparse.Namespace) -> int:
    from bot.flow.paths import walk_paths

    flow = _load_flow(args.flow)
    result = walk_paths(flow, args.lang, keep=True, limit=args.limit)
    rows = []
    for i, res in enumerate(result.results, 1):
        answers = "; ".join(f"{a.step}: {a.words}" for a in res.answers)
        rows.append((i, res.disposition, res.rule or "", res.outcome, answers))
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "disposition", "rule", "outcome", "answers"])
            w.writerows(rows)
        print(f"wrote {len(rows)} paths to {args.csv}")
    else:
        for i, disp, rule, outcome, answers in rows:
            print(f"{i}\t{disp}\t{rule}\t{outcome}\t{answers}")
    counts: dict[str, int] = {}
    for r in result.results:
        counts[r.disposition] = counts.get(r.disposition, 0) + 1
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    print(f"{len(rows)} paths ({summary})" + (" — stopped at the limit" if result.truncated
                                              else ""), file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from bot.flow.spec import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    out = Path(args.output)
    if args.check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            print(f"{out} is out of date: run python bot.py schema", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _open_store(settings: Settings) -> Any:
    from bot.storage import open_store

    return open_store(settings.store, ttl_seconds=settings.session_ttl)


def cmd_console(args: argparse.Namespace, settings: Settings | None = None) -> int:
    from bot.channels.console import Console
    from bot.engine import Engine

    settings = settings or Settings.from_env()
    from bot.storage import open_flow_archive

    flow = _load_flow(args.flow or settings.flow)
    archive = open_flow_archive(settings.store, settings.flow_archive)
    engine = Engine(flow, placeholders=settings.placeholders, archive=archive)

    async def main() -> int:
        from bot.storage.base import StoreError

        try:  # a BOT_STORE that is malformed or cannot be reached: one line, as the bot says it
            store = _open_store(settings)
            await store.check()
        except StoreError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        archive.publish()
        try:
            await Console(engine, store, key=f"console:{args.session}", lang=args.lang).run()
        finally:
            await store.close()
        return 0

    return int(eventloop.run(main(), settings.event_loop))


def cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if not settings.token:
        print("No TELEGRAM_BOT_TOKEN set: opening the console chat. To connect to Telegram, "
              "set TELEGRAM_BOT_TOKEN (from @BotFather) and run python bot.py again.")
        ns = argparse.Namespace(lang=getattr(args, "lang", None), flow=None, session="local")
        return cmd_console(ns, settings)
    from bot.channels.telegram.app import run  # imported only when Telegram is used

    return run(settings)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bot.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("console", help="chat with the flow in the terminal")
    c.add_argument("--lang", help="language (en, es)")
    c.add_argument("--flow", help="flow file (default: BOT_FLOW or flows/back_spasm.yaml)")
    c.add_argument("--session", default="local", help="session name, to keep several")
    c.set_defaults(func=cmd_console)
    v = sub.add_parser("validate", help="check flow files")
    v.add_argument("paths", nargs="*", help="flow files or folders (default: flows/)")
    v.set_defaults(func=cmd_validate)
    t = sub.add_parser("test", help="run case files")
    t.add_argument("paths", nargs="*", help="case files or folders (default: flows/tests/)")
    t.add_argument("--flow", help="the flow to test (default: the case's 'flow:' or BOT_FLOW)")
    t.add_argument("--quiet", action="store_true", help="do not list unreached outcomes")
    t.set_defaults(func=cmd_test)
    pa = sub.add_parser("paths", help="list every path through a flow")
    pa.add_argument("flow")
    pa.add_argument("--csv", help="write the paths to this CSV file")
    pa.add_argument("--lang", help="language of the answers")
    pa.add_argument("--limit", type=int, default=200_000, help="stop after this many states")
    pa.set_defaults(func=cmd_paths)
    s = sub.add_parser("schema", help="write the flow JSON Schema for editors")
    s.add_argument("-o", "--output", default=str(SCHEMA_PATH))
    s.add_argument("--check", action="store_true", help="fail if the file is out of date")
    s.set_defaults(func=cmd_schema)
    from bot.staff.commands import add_staff_commands

    add_staff_commands(sub)
    r = sub.add_parser("run", help="run the bot (Telegram, or the console without a token)")
    r.add_argument("--lang")
    r.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    func = getattr(args, "func", cmd_run)
    # the bot logs at LOG_LEVEL; the staff tools and the console only say what goes wrong
    serving = func is cmd_run and bool(settings.token)
    logging.basicConfig(level=settings.log_level if serving else "WARNING",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # libraries that would log message contents or the bot token in URLs stay quiet
    for noisy in ("transitions", "httpx", "httpcore", "telegram", "hpack", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(func(args) or 0)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
