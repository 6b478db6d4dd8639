"""The staff tools stay light: the audit builder and the watcher are imported by the bot."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_staff_modules_import_no_transport_driver_or_chart_library() -> None:
    code = ("import bot.staff.audit, bot.staff.reload, bot.staff.graph, bot.staff.diff, "
            "bot.staff.stats, bot.staff.commands\n"
            "import sys; print(' '.join(sorted(sys.modules)))")
    mods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, check=True).stdout.split())
    for banned in ("telegram", "redis", "sqlite3", "matplotlib", "transitions", "bot.engine"):
        assert banned not in mods, banned
