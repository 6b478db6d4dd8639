"""Reference implementation of triage-rules.md section 1b, in plain Python.

Written from `shared/clinical/triage-rules.md` (section 1b, normative) and `facts.md` only, not
from `flows/back_spasm.yaml`, so that it can check the flow independently.

`classify(facts)` returns `(disposition, rule)`. Evaluation is top-down, first rule that holds
wins, with three-valued logic: a fact that is not given is *unknown*. A rule whose value is
unknown must be settled before any later rule may fire, so the facts a rule needs are only needed
when no earlier rule already decided the case (STarT Back is never needed after a U rule).

With `partial=True` (the facts of one path through the flow, where the flow stops asking as
soon as an emergency rule fires): an emergency rule that holds may win over earlier emergency
rules that are still unknown (they could only give the same disposition), and the scope rule
(age under 16) may win over unknown emergency rules.

Scope: the bot is for 16 and over. The emergency rules come first (a child with an emergency sign
is still sent to the emergency department); then age under 16 gives `out_of_scope`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

EMERGENCY = "emergency"
URGENT = "urgent"
ROUTINE = "routine"
SELF_CARE = "self_care"
OUT_OF_SCOPE = "out_of_scope"

Tri = bool | None  # True, False, or None = not known


@dataclass(frozen=True)
class NotValue:
    """Partial knowledge: the fact is known NOT to be `value`, its real value is not known.

    (A box on a checklist that was left unticked says just that.)
    """

    value: str


class MissingFacts(Exception):
    """The facts given do not decide the case; `names` are the facts that would."""

    def __init__(self, names: set[str], rule: str):
        self.names = sorted(names)
        self.rule = rule
        super().__init__(f"cannot decide rule {rule}: missing {', '.join(self.names)}")


def _norm(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("yes", "true"):
        return True
    if isinstance(value, str) and value.lower() in ("no", "false"):
        return False
    return value


class Facts:
    """Fact lookup that remembers which facts were needed but not given."""

    def __init__(self, facts: Mapping[str, Any]):
        self.facts = {k: _norm(v) for k, v in facts.items() if v is not None}
        self.missing: set[str] = set()

    def get(self, name: str) -> Any:
        if name not in self.facts:
            self.missing.add(name)
            return None
        return self.facts[name]

    # tests -----------------------------------------------------------------------------------
    def yes(self, name: str) -> Tri:
        v = self.get(name)
        return None if v is None else bool(v)

    def is_(self, name: str, *values: str) -> Tri:
        v = self.get(name)
        if isinstance(v, NotValue):
            return False if set(values) == {v.value} else None
        return None if v is None else v in values

    def is_not(self, name: str, value: str) -> Tri:
        v = self.get(name)
        if isinstance(v, NotValue):
            return True if value == v.value else None
        return None if v is None else v != value

    def num(self, name: str, test: Callable[[int], bool]) -> Tri:
        v = self.get(name)
        return None if v is None else test(v)


def any_(*values: Tri) -> Tri:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False


def all_(*values: Tri) -> Tri:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


# -- helpers (section 1b) --------------------------------------------------------------------

def neuro(f: Facts) -> Tri:
    return any_(
        f.yes("bladder_bowel_changes"),
        f.yes("saddle_numbness"),
        f.yes("balance_problems"),
        f.is_not("weakness", "none"),
        f.is_not("numbness_tingling", "none"),
        f.is_("leg_pain", "one_leg_below_knee", "both_legs"),
    )


def new_or_worse(f: Facts) -> Tri:
    return any_(f.num("duration_days", lambda d: d < 14), f.is_("trend", "worsening"))


SB_ITEMS = [f"startback_{i}" for i in range(1, 9)]
SB_BOTHERSOME = ("very_much", "extremely")


def startback_scores(f: Facts) -> tuple[int | None, int | None]:
    """(total 0-9, psychosocial subscale 0-5), None when any item is not known."""
    items = [f.yes(n) for n in SB_ITEMS]
    nine = f.is_("startback_9", *SB_BOTHERSOME)
    if any(v is None for v in items) or nine is None:
        return None, None
    total = sum(bool(v) for v in items) + int(nine)
    psych = sum(bool(v) for v in items[4:8]) + int(nine)
    return total, psych


def startback_risk(f: Facts) -> str | None:
    total, psych = startback_scores(f)
    if total is None or psych is None:
        return None
    if psych >= 4:
        return "high"
    if total <= 3:
        return "low"
    return "medium"


# -- the table (section 1b), top-down ---------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    id: str
    disposition: str
    holds: Callable[[Facts], Tri]


def _risk_high(f: Facts) -> Tri:
    risk = startback_risk(f)
    return None if risk is None else risk == "high"


RULES: list[Rule] = [
    Rule("X1", EMERGENCY, lambda f: f.yes("other_emergency_symptoms")),
    Rule("E1", EMERGENCY, lambda f: f.yes("bladder_bowel_changes")),
    Rule("E2", EMERGENCY, lambda f: f.yes("saddle_numbness")),
    Rule("E3", EMERGENCY, lambda f: all_(
        any_(f.is_("leg_pain", "both_legs"), f.is_("numbness_tingling", "both_legs")),
        new_or_worse(f))),
    Rule("E4", EMERGENCY, lambda f: f.is_("weakness", "severe_or_progressive")),
    Rule("E5", EMERGENCY, lambda f: f.yes("balance_problems")),
    Rule("E6", EMERGENCY, lambda f: all_(
        f.yes("fever"),
        any_(f.yes("iv_drug_use"), f.yes("immunosuppressed"),
             f.yes("recent_spinal_procedure"), neuro(f)))),
    Rule("E7", EMERGENCY, lambda f: f.is_("trigger", "major_trauma")),
    Rule("E8", EMERGENCY, lambda f: all_(f.yes("cancer_history"), neuro(f))),
    # scope: not a rule of the table; the bot is for 16 and over (after the emergency rules)
    Rule("SCOPE", OUT_OF_SCOPE, lambda f: f.num("age", lambda a: a < 16)),
    Rule("U1", URGENT, lambda f: f.yes("fever")),
    Rule("U2", URGENT, lambda f: any_(f.yes("iv_drug_use"), f.yes("immunosuppressed"))),
    Rule("U3", URGENT, lambda f: f.yes("cancer_history")),
    Rule("U4", URGENT, lambda f: all_(
        f.is_("onset", "sudden"),
        any_(f.num("age", lambda a: a >= 70), f.yes("steroid_use_or_osteoporosis")))),
    Rule("U5", URGENT, lambda f: f.yes("weight_loss")),
    Rule("U6", URGENT, lambda f: all_(f.yes("night_pain"), f.num("age", lambda a: a > 50))),
    Rule("U7", URGENT, lambda f: f.is_("weakness", "mild_one_leg")),
    Rule("R1", ROUTINE, lambda f: f.num("duration_days", lambda d: d > 42)),
    Rule("R2", ROUTINE, lambda f: all_(
        f.num("duration_days", lambda d: d >= 14), f.is_not("trend", "improving"))),
    Rule("R3", ROUTINE, lambda f: f.yes("night_pain")),
    Rule("R4", ROUTINE, _risk_high),
    Rule("S", SELF_CARE, lambda f: True),
]

RULE_IDS = [r.id for r in RULES if r.id != "SCOPE"]
DISPOSITION_OF = {r.id: r.disposition for r in RULES}


def classify(facts: Mapping[str, Any], *, partial: bool = False) -> tuple[str, str | None]:
    """(disposition, rule id) for a patient's facts; rule is None for out_of_scope.

    Raises MissingFacts when the facts given do not decide the case.
    """
    f = Facts(facts)
    unknown: list[Rule] = []
    for rule in RULES:
        value = rule.holds(f)
        if value is None:
            unknown.append(rule)
            continue
        if value is False:
            continue
        if unknown:
            allowed = partial and all(u.disposition == EMERGENCY for u in unknown) and \
                rule.disposition in (EMERGENCY, OUT_OF_SCOPE)
            if not allowed:
                raise MissingFacts(f.missing, unknown[0].id)
        return rule.disposition, (None if rule.id == "SCOPE" else rule.id)
    raise AssertionError("rule S always holds")  # pragma: no cover


def helpers(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The derived facts of section 1b and section 4 (None when not known)."""
    f = Facts(facts)
    total, psych = startback_scores(f)
    return {
        "neuro": neuro(f),
        "new_or_worse": new_or_worse(f),
        "startback_total": total,
        "startback_psychosocial": psych,
        "startback_risk": startback_risk(f),
    }
