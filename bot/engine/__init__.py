"""The conversation engine: flow + `transitions` + a session as plain data → replies.

Speaks only transport-neutral input and replies (`io.py`); knows nothing of Telegram or storage.
"""

from .engine import Engine, FlowMachine
from .io import (
    Back,
    Choose,
    Input,
    OptionView,
    OutcomeView,
    QuestionView,
    Reply,
    Restart,
    SetLanguage,
    Start,
    Text,
)
from .session import BadSession, Session

__all__ = [
    "Back", "BadSession", "Choose", "Engine", "FlowMachine", "Input", "OptionView",
    "OutcomeView", "QuestionView", "Reply", "Restart", "Session", "SetLanguage", "Start", "Text",
]
