"""The shared fact dictionary (shared/clinical/facts.md): names, types and allowed values.

Flows, case files, audit records and staff summaries all use these names. A flow may declare
more facts of its own; it may not redefine these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

FactType = Literal["yes_no", "choice", "number"]


@dataclass(frozen=True)
class FactSpec:
    """What a fact may hold."""

    name: str
    type: FactType
    values: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None
    computed: bool = False

    def accepts(self, value: Any) -> bool:
        if self.type == "yes_no":
            return isinstance(value, bool)
        if self.type == "choice":
            return isinstance(value, str) and value in self.values
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def describe(self) -> str:
        if self.type == "yes_no":
            return "yes or no"
        if self.type == "choice":
            return "one of " + ", ".join(self.values)
        lo = "" if self.min is None else str(self.min)
        hi = "" if self.max is None else str(self.max)
        return f"a number {lo}–{hi}".rstrip("–")


def _yn(name: str) -> FactSpec:
    return FactSpec(name, "yes_no")


SHARED: dict[str, FactSpec] = {
    f.name: f
    for f in [
        FactSpec("age", "number", min=0, max=120),
        FactSpec("onset", "choice", ("sudden", "gradual")),
        FactSpec("duration_days", "number", min=0, max=3650),
        FactSpec("trend", "choice", ("improving", "stable", "worsening")),
        FactSpec("trigger", "choice", ("lifting", "sport", "fall", "major_trauma", "none")),
        FactSpec("pain_location", "choice",
                 ("low_back", "low_back_and_buttock", "low_and_mid_back", "mid_back")),
        FactSpec("leg_pain", "choice",
                 ("none", "one_leg_above_knee", "one_leg_below_knee", "both_legs")),
        FactSpec("numbness_tingling", "choice", ("none", "one_leg", "both_legs")),
        FactSpec("weakness", "choice", ("none", "mild_one_leg", "severe_or_progressive")),
        _yn("bladder_bowel_changes"),
        _yn("saddle_numbness"),
        _yn("balance_problems"),
        _yn("fever"),
        _yn("iv_drug_use"),
        _yn("immunosuppressed"),
        _yn("recent_spinal_procedure"),
        _yn("cancer_history"),
        _yn("weight_loss"),
        _yn("steroid_use_or_osteoporosis"),
        _yn("night_pain"),
        _yn("other_emergency_symptoms"),
        FactSpec("pain_severity", "number", min=0, max=10),
        *[_yn(f"startback_{i}") for i in range(1, 9)],
        FactSpec("startback_9", "choice",
                 ("not_at_all", "slightly", "moderately", "very_much", "extremely")),
    ]
}

# Derived, never asked; a flow computes them in its `computed:` section.
DERIVED: dict[str, FactSpec] = {
    "startback_total": FactSpec("startback_total", "number", min=0, max=9, computed=True),
    "startback_psychosocial": FactSpec("startback_psychosocial", "number", min=0, max=5,
                                       computed=True),
    "startback_risk": FactSpec("startback_risk", "choice", ("low", "medium", "high"),
                               computed=True),
}

DISPOSITIONS = ("emergency", "urgent", "routine", "self_care")
OUTCOME_KINDS = (*DISPOSITIONS, "out_of_scope")
URGENCY = {d: i for i, d in enumerate(reversed(OUTCOME_KINDS))}  # higher = more urgent
