"""The structure of a flow: everything the all-paths proof reads, and nothing it does not.

Two flows with the same `structure_key` walk the same paths to the same outcomes with the same
facts, so their safety checks hold or fail alike and on as many paths: a proof made for one
holds for the other. An edit of the words only (a question's wording, an option's label, the
advice, the title) keeps the key; any other edit changes it.

The key is a hash of the loaded flow model (never of the YAML text), field by field, leaving
out only the fields named in `WORDS`. Every other field of every object in the flow is part of
the key, and a value of a kind not listed here stops the hashing (TypeError) rather than being
skipped: a field added to the model later is in the key until someone decides otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from .conditions import Condition
from .model import Check, Computed, Flow, Interrupt, Option, Outcome, Question, Route

# What the proof does not read. Option labels name the answers of a path that is reported
# (a counterexample): a proof is reused only when no check failed, so nothing is reported.
WORDS: dict[type, frozenset[str]] = {
    Flow: frozenset({"title", "disclaimer", "file", "hash", "source"}),
    Question: frozenset({"text", "help", "none_label", "done_label", "out_of_range", "pos"}),
    Option: frozenset({"label", "also", "pos"}),  # `also`: typed synonyms, for the engine
    Outcome: frozenset({"headline", "text", "safety_net", "pos"}),
    Route: frozenset({"pos"}),  # `pos`: where in the file a node is, not what it does
    Interrupt: frozenset({"pos"}),
    Computed: frozenset({"pos"}),
    Check: frozenset({"pos"}),
    Condition: frozenset({"run"}),  # compiled from `node`, which is in the key
}


def _canon(x: Any) -> Any:
    if x is None or isinstance(x, (bool, int, float, str)):
        return (type(x).__name__, x)  # the type too: 1, 1.0 and True stay apart
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        skip = WORDS.get(type(x), frozenset())
        return (type(x).__qualname__,) + tuple(
            (f.name, _canon(getattr(x, f.name))) for f in dataclasses.fields(x)
            if f.name not in skip)
    if isinstance(x, dict):
        return ("dict",) + tuple((_canon(k), _canon(v)) for k, v in x.items())
    if isinstance(x, (tuple, list)):
        return (type(x).__name__,) + tuple(_canon(v) for v in x)
    if isinstance(x, (set, frozenset)):
        return (type(x).__name__,) + tuple(sorted((_canon(v) for v in x), key=repr))
    raise TypeError(f"structure_key: a {type(x).__name__} in a flow; say whether the proof "
                    "reads it (bot/flow/structure.py)")


def structure_key(flow: Flow) -> str:
    """A hash of everything in the flow that the all-paths proof reads (see the module)."""
    return hashlib.sha256(repr(_canon(flow)).encode("utf-8")).hexdigest()
