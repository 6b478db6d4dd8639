"""The flow file's shape as pydantic models: the source of the JSON Schema and of shape errors.

These models only say which keys exist and what type each holds. What the keys mean (facts,
routes, reachability) is checked in `validate.py` on the runtime model of `model.py`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[a-z][a-z0-9_]*$"
Id = str
Text = dict[str, str]
Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FactDecl(_Strict):
    """An extra fact this flow asks about."""

    type: Literal["yes_no", "choice", "number"]
    values: list[str] | None = Field(None, description="choice: the allowed words")
    min: int | None = Field(None, description="number: the smallest allowed")
    max: int | None = Field(None, description="number: the largest allowed")


class Option(_Strict):
    """One button."""

    label: Text = Field(description="the button text, per language")
    value: Scalar | None = Field(None, description="the value of the question's fact")
    range: list[int | None] | None = Field(
        None, description="for a number fact asked with buttons: [from, to]; null = no limit"
    )
    fact: str | None = Field(None, description="checklist: the fact this option fills")
    otherwise: Scalar | None = Field(None, description="checklist: the value when not ticked")
    sets: dict[str, Scalar] = Field(default_factory=dict, description="more facts to fill")
    next: Id | None = Field(None, description="where this option goes")
    also: dict[str, list[str]] = Field(
        default_factory=dict, description="other words a patient might type, per language"
    )


class Route(_Strict):
    """One line of a routing table: if the condition holds, go there."""

    if_: str | None = Field(None, alias="if", description="a condition; none = otherwise")
    go: Id
    rule: str | None = Field(None, description="the clinical rule id this route applies")


class Question(_Strict):
    """A question (choice, checklist, number) or a decision (routes only, asks nothing)."""

    id: Id = Field(pattern=ID_PATTERN)
    kind: Literal["choice", "checklist", "number", "decision"] = "choice"
    fact: str | None = None
    text: Text | None = None
    help: Text | None = Field(None, description="shown when a typed answer is not understood")
    options: list[Option] = Field(default_factory=list)
    none_label: Text | None = None
    done_label: Text | None = None
    min: int | None = None
    max: int | None = None
    out_of_range: Text | None = None
    routes: list[Route] = Field(default_factory=list)
    next: Id | None = None


class Outcome(_Strict):
    """Where a conversation ends."""

    id: Id = Field(pattern=ID_PATTERN)
    disposition: Literal["emergency", "urgent", "routine", "self_care", "out_of_scope"]
    rule: str | None = None
    headline: Text | None = Field(None, description="shown first, in bold")
    text: Text
    safety_net: Text | None = Field(None, description="what should bring the patient back")


class Interrupt(_Strict):
    """Phrases that, typed at any point, go straight to an outcome."""

    id: Id = Field(pattern=ID_PATTERN)
    phrases: dict[str, list[str]]
    go: Id
    rule: str | None = None
    sets: dict[str, Scalar] = Field(default_factory=dict)


class Case(_Strict):
    if_: str | None = Field(None, alias="if")
    value: Scalar


class Computed(_Strict):
    """A fact worked out from others: exactly one of when, count, cases."""

    when: str | None = None
    count: list[str] | None = None
    cases: list[Case] | None = None


class Check(_Strict):
    """A safety property that must hold on every path."""

    id: Id = Field(pattern=ID_PATTERN)
    say: str | None = None
    if_: str | None = Field(None, alias="if")
    then: str


class FlowFile(_Strict):
    """A triage flow."""

    id: Id = Field(pattern=ID_PATTERN)
    version: str | int | float
    languages: list[str] = Field(min_length=1)
    title: Text | None = None
    disclaimer: Text
    start: Id | None = None
    facts: dict[str, FactDecl] = Field(default_factory=dict)
    computed: dict[str, Computed] = Field(default_factory=dict)
    questions: list[Question]
    outcomes: list[Outcome]
    interrupts: list[Interrupt] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)


# For each list/dict section: the model of one item (validated one by one, so that one bad
# question does not hide the problems of the others).
SECTIONS: dict[str, tuple[str, type[BaseModel]]] = {
    "questions": ("list", Question),
    "outcomes": ("list", Outcome),
    "interrupts": ("list", Interrupt),
    "checks": ("list", Check),
    "facts": ("dict", FactDecl),
    "computed": ("dict", Computed),
}


def json_schema() -> dict[str, object]:
    """The JSON Schema of a flow file, for editors."""
    schema = FlowFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Triage flow"
    return schema
