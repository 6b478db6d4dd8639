"""The flow layer: YAML flow files, their model, the validator and path enumeration.

Knows nothing of `transitions`, Telegram or storage.
"""

from .loader import LoadResult, check_file, check_text, load_flow, load_flow_or_raise, load_text
from .model import Flow, Option, Outcome, Question
from .problems import FlowError, Problem

__all__ = [
    "Flow", "FlowError", "LoadResult", "Option", "Outcome", "Problem", "Question",
    "check_file", "check_text", "load_flow", "load_flow_or_raise", "load_text",
]
