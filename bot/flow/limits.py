"""Telegram's documented limits, and the button data format both the validator and channels use.

Button data: "<action>|<flow hash, 8 chars>|<question id>|<option number>", at most 64 bytes.
"""

from __future__ import annotations

MAX_CALLBACK_BYTES = 64
MAX_MESSAGE_CHARS = 4096
MAX_CALLBACK_ANSWER_CHARS = 200
HASH_CHARS = 8
ACTIONS = ("a", "t", "d", "n", "b", "r")
# a: answer, t: toggle a checklist box, d: done, n: none of these, b: back, r: start again


def button_data(action: str, flow_hash: str, step: str, option: int = 0) -> str:
    return f"{action}|{flow_hash[:HASH_CHARS]}|{step}|{option}"


def parse_button_data(data: str) -> tuple[str, str, str, int] | None:
    """(action, flow hash, step, option) or None when the data is not ours."""
    parts = data.split("|")
    if len(parts) != 4 or parts[0] not in ACTIONS or not parts[3].isdigit():
        return None
    return parts[0], parts[1], parts[2], int(parts[3])


def longest_button_bytes(step: str, n_options: int) -> int:
    return len(button_data("a", "x" * HASH_CHARS, step, max(n_options, 1)).encode("utf-8"))
