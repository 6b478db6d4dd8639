"""A conversation as plain data: where the patient is, the facts, and the answers given.

A session is stored as a JSON-able dict (`to_dict`) and restored for each input (`from_dict`).
The facts are always the replay of the history, so going back un-sets exactly what the undone
answer set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA = 1


class BadSession(ValueError):
    """Stored data that is not a session this version can read."""


@dataclass(slots=True)
class Session:
    flow_id: str
    flow_hash: str
    lang: str
    step: str | None = None  # None: not started
    facts: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)  # a checklist's ticks not yet confirmed
    misses: int = 0  # typed answers not understood at this step
    rule: str | None = None  # the rule of the route that reached the outcome
    started: float = 0.0
    updated: float = 0.0
    backs: int = 0
    updates: list[int] = field(default_factory=list)  # recent update ids (channel dedup)
    meta: dict[str, Any] = field(default_factory=dict)  # channel data (message ids, ...)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "flow": self.flow_id, "hash": self.flow_hash, "lang": self.lang,
            "step": self.step, "facts": self.facts, "history": self.history,
            "ticks": self.ticks, "misses": self.misses, "rule": self.rule,
            "started": self.started, "updated": self.updated, "backs": self.backs,
            "updates": self.updates, "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Session:
        """Restore from stored data (taken over, not copied: pass a fresh dict)."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise BadSession("not a session of this version")
        try:
            s = cls(str(data["flow"]), str(data["hash"]), str(data["lang"]), data.get("step"),
                    data["facts"], data["history"], data["ticks"], data["misses"],
                    data.get("rule"), data["started"], data["updated"], data["backs"],
                    data["updates"], data["meta"])
        except KeyError as exc:
            raise BadSession(f"session without {exc}") from exc
        if not (isinstance(s.facts, dict) and isinstance(s.history, list)
                and isinstance(s.ticks, list) and isinstance(s.meta, dict)
                and isinstance(s.updates, list) and isinstance(s.misses, int)
                and isinstance(s.backs, int) and (s.step is None or isinstance(s.step, str))):
            raise BadSession("session with fields of the wrong type")
        return s
