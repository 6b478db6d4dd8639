"""Dependencies point inward: the flow layer and the engine never pull in Telegram or Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return set(out.split())


def test_flow_and_engine_import_no_transport_or_driver() -> None:
    mods = loaded_after("import bot.flow, bot.engine, bot.casefiles")
    for banned in ("telegram", "redis", "aiosqlite", "sqlite3", "aiohttp", "tornado"):
        assert banned not in mods, banned


def test_flow_layer_knows_nothing_of_transitions() -> None:
    mods = loaded_after("import bot.flow; from bot.flow import check_file")
    assert "transitions" not in mods


def test_staff_cli_does_not_import_telegram() -> None:
    mods = loaded_after("import bot.cli; bot.cli.build_parser()")
    assert "telegram" not in mods


def test_open_store_for_sqlite_does_not_import_redis() -> None:
    mods = loaded_after("from bot.storage import open_store; open_store('x.db')")
    assert "redis" not in mods
