"""CLI subcommands of the staff tools (registered by bot.cli)."""

from __future__ import annotations

from typing import Any


def add_staff_commands(sub: Any) -> None:
    """Add the staff tools' subcommands to the CLI's subparsers."""
