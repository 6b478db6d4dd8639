"""The audit record of a finished triage: what the channel stores when a conversation ends.

The channel calls ``audit_record(session, flow, patient, outcome)`` when a conversation
reaches an outcome and passes the result to ``store.add_audit``. The record holds no name,
chat id or typed text: ``key`` is a pseudonymous id, and the answers are kept as facts and as
the list of question ids answered. It is health data all the same: store it, never log it.

``read_record`` is the other side: the staff tools (``stats``, ``graph --stats``) read records
back through it and skip anything that is not a triage record of this shape.
"""

from __future__ import annotations

import math
import time
from typing import Any, NotRequired, TypedDict

from bot.flow.model import Flow, Outcome

KIND = "triage"


class TriageRecord(TypedDict):
    """One finished conversation (the shape ``audit_record`` builds)."""

    kind: str  # always "triage"
    key: str  # the patient's pseudonymous id (never a chat id)
    flow: str  # flow id
    flow_hash: str  # the flow version the patient went through
    facts: dict[str, Any]  # the facts the answers filled
    disposition: str  # emergency | urgent | routine | self_care | out_of_scope
    rule: str | None  # the rule id of the route (or outcome) that decided it
    lang: str
    started_at: float  # seconds since the epoch
    ended_at: float
    backs: int  # how many times the patient went back
    backs_at: dict[str, int]  # question id -> how many times the patient went back to it
    path: list[str]  # question ids answered, in order (the answers kept after going back)
    outcome: NotRequired[str | None]  # the outcome step id
    interrupt: NotRequired[str | None]  # the interrupt id, if typed words ended it
    interrupted_at: NotRequired[str | None]  # the question on screen when they were typed


def audit_record(session: dict[str, Any], flow: Flow, patient: str, outcome: Any,
                 rule: str | None = None, *, ended_at: float | None = None) -> dict[str, Any]:
    """The audit record of a session that has reached an outcome.

    ``outcome`` is the disposition (a str), or the engine's ``OutcomeView`` (its disposition,
    rule and step are used). ``rule`` overrides the rule. ``flow`` is the version the session
    ran on; the session's own version hash wins when it has one.
    """
    if isinstance(outcome, str):
        disposition, outcome_rule, outcome_step = outcome, None, None
    else:
        disposition = str(outcome.disposition)
        outcome_rule = getattr(outcome, "rule", None)
        outcome_step = getattr(outcome, "step", None)
    step = session.get("step")
    if outcome_step is None and isinstance(step, str) and isinstance(flow.steps.get(step),
                                                                     Outcome):
        outcome_step = step
    history = [h for h in session.get("history") or [] if isinstance(h, dict)]
    path = [str(h["step"]) for h in history if "interrupt" not in h and h.get("step")]
    last = history[-1] if history else {}
    meta = session.get("meta")
    backs_at = meta.get("backs_at") if isinstance(meta, dict) else None
    if not isinstance(backs_at, dict):
        backs_at = {}
    flow_hash = session.get("hash")
    now = time.time()
    return {
        "kind": KIND,
        "key": patient,
        "flow": flow.id,
        "flow_hash": flow_hash if isinstance(flow_hash, str) and flow_hash else flow.hash,
        "facts": dict(session.get("facts") or {}),
        "disposition": disposition,
        "rule": rule if rule is not None else (outcome_rule or session.get("rule")),
        "lang": str(session.get("lang") or flow.default_language),
        "started_at": _time(session.get("started"), now),
        "ended_at": ended_at if ended_at is not None else _time(session.get("updated"), now),
        "backs": _int(session.get("backs")),
        "backs_at": {str(k): _int(v) for k, v in backs_at.items()},
        "path": path,
        "outcome": outcome_step,
        "interrupt": last.get("interrupt"),
        "interrupted_at": last.get("step") if "interrupt" in last else None,
    }


def read_record(raw: Any) -> TriageRecord | None:
    """A stored audit record as a ``TriageRecord``, or None if it is not one (skipped)."""
    if not isinstance(raw, dict) or raw.get("kind", KIND) != KIND:
        return None
    disposition, path = raw.get("disposition"), raw.get("path")
    if not isinstance(disposition, str) or not isinstance(path, list):
        return None
    backs_at = raw.get("backs_at")
    started = _time(raw.get("started_at"), math.nan)
    ended = _time(raw.get("ended_at"), started)
    return {
        "kind": KIND,
        "key": str(raw.get("key", "")),
        "flow": str(raw.get("flow", "")),
        "flow_hash": str(raw.get("flow_hash", "")),
        "facts": raw["facts"] if isinstance(raw.get("facts"), dict) else {},
        "disposition": disposition,
        "rule": raw["rule"] if isinstance(raw.get("rule"), str) else None,
        "lang": str(raw.get("lang", "")),
        "started_at": started,
        "ended_at": ended,
        "backs": _int(raw.get("backs")),
        "backs_at": {str(k): _int(v) for k, v in backs_at.items()}
        if isinstance(backs_at, dict) else {},
        "path": [str(s) for s in path],
        "outcome": raw.get("outcome") if isinstance(raw.get("outcome"), str) else None,
        "interrupt": raw.get("interrupt") if isinstance(raw.get("interrupt"), str) else None,
        "interrupted_at": raw.get("interrupted_at")
        if isinstance(raw.get("interrupted_at"), str) else None,
    }


def _time(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
