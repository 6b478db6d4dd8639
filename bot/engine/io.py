"""Transport-neutral input to the engine and replies from it: no Telegram, no terminal."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Start:
    """Begin (or begin again) with the welcome and the first question."""

    lang: str | None = None


@dataclass(frozen=True)
class Choose:
    """A button: an option of a question (`action` "a"), a checklist tick ("t"), Done ("d"),
    or None of these ("n"). `step` and `flow_hash` say which question the button belonged to."""

    step: str
    option: int = 0
    action: str = "a"
    flow_hash: str | None = None


@dataclass(frozen=True)
class Text:
    """Typed text."""

    text: str


@dataclass(frozen=True)
class Back:
    """Undo the last answer. With `step`: only if that screen is still the current one (a
    Back button pressed twice, or on two instances at once, goes back once)."""

    step: str | None = None


@dataclass(frozen=True)
class Restart:
    """Forget the answers and start again (with `step`: only from that screen)."""

    step: str | None = None


@dataclass(frozen=True)
class SetLanguage:
    lang: str


Input = Start | Choose | Text | Back | Restart | SetLanguage


@dataclass(frozen=True)
class OptionView:
    number: int  # 1-based, as shown
    label: str
    action: str  # "a" answer, "t" toggle, "d" done, "n" none of these
    index: int  # option index in the flow (0 for done/none)
    ticked: bool = False


@dataclass(frozen=True)
class QuestionView:
    step: str
    kind: str  # choice | checklist | number
    text: str
    options: tuple[OptionView, ...] = ()
    flow_hash: str = ""


@dataclass(frozen=True)
class OutcomeView:
    step: str
    disposition: str
    rule: str | None
    headline: str
    text: str
    safety_net: str


@dataclass(slots=True)
class Reply:
    """What to show: notices (short lines), the welcome, then the question or the outcome.

    `answered` is the question just answered and the answer's words (so a channel can turn
    the old question into a record). `changed` is False when the input changed nothing.
    Made once per input and not shared (so not frozen: that costs ~2 µs an answer); the
    views it holds are shared between conversations and frozen.
    """

    notices: tuple[str, ...] = ()
    welcome: str | None = None
    question: QuestionView | None = None
    outcome: OutcomeView | None = None
    answered: tuple[str, str] | None = None
    changed: bool = True
    can_go_back: bool = False
    lang: str = "en"
