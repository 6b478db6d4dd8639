"""Understand typed answers: an option's number, its label or other words, a near misspelling,
yes/no in English or Spanish, a number (with days/weeks/months for a duration)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from bot.flow.model import Flow, Question, normalise

MAX_TYPED = 300  # characters considered; a 10,000-character message is cut to this
FUZZY = 0.8

YES = {"yes", "y", "yeah", "yep", "yup", "sure", "si", "s", "claro", "ok", "okay", "afirmativo"}
NO = {"no", "n", "nope", "nah", "nop", "negativo", "nunca", "never"}
NONE_WORDS = {"none", "none of these", "nothing", "no", "nada", "ninguno", "ninguna",
              "ninguno de estos", "nada de esto", "0"}
_UNITS = {
    "d": 1, "day": 1, "days": 1, "dia": 1, "dias": 1,
    "w": 7, "wk": 7, "wks": 7, "week": 7, "weeks": 7, "semana": 7, "semanas": 7,
    "m": 30, "mo": 30, "month": 30, "months": 30, "mes": 30, "meses": 30,
    "y": 365, "yr": 365, "yrs": 365, "year": 365, "years": 365, "ano": 365, "anos": 365,
}
_NUM = re.compile(r"(?<![\w.])(-?\d{1,6})(?![\w.]*\d)")
_NUM_UNIT = re.compile(r"(\d{1,5})\s*([a-z]+)")
_SPLIT = re.compile(r"[,;/&+]|\band\b|\by\b")


def clean(text: str) -> str:
    return normalise(text[:MAX_TYPED])


def _words_for(flow: Flow, q: Question, lang: str) -> list[tuple[str, int]]:
    """(normalised words, option index) for every label and `also` word, all languages
    (the patient's language first)."""
    out: list[tuple[str, int]] = []
    langs = [lang] + [x for x in flow.languages if x != lang]
    for o in q.options:
        for lg in langs:
            if lg in o.label:
                out.append((normalise(o.label[lg]), o.index))
            out.extend((w, o.index) for w in o.also.get(lg, ()))
    return out


def exact_option(flow: Flow, q: Question, text: str, lang: str) -> int | None:
    """An option by its number, label, `also` word, or yes/no synonym; None if unsure."""
    t = clean(text)
    if not t:
        return None
    if t.isdigit():
        n = int(t)
        return n - 1 if 1 <= n <= len(q.options) else None
    for words, idx in _words_for(flow, q, lang):
        if t == words:
            return idx
    spec = flow.facts.get(q.fact or "")
    if spec is not None and spec.type == "yes_no":
        want: bool | None = True if t in YES else False if t in NO else None
        if want is not None:
            for o in q.options:
                if o.value is want and not o.sets:
                    return o.index
            for o in q.options:
                if o.value is want:
                    return o.index
    if spec is not None and spec.type == "number" and (days := typed_number(t, q)) is not None:
        for o in q.options:
            if o.stands_for(days):
                return o.index
    return None


def fuzzy_option(flow: Flow, q: Question, text: str, lang: str) -> int | None:
    """The option whose label or words are close to the typed text (a misspelling)."""
    t = clean(text)
    if len(t) < 3:
        return None
    best, best_idx = 0.0, None
    for words, idx in _words_for(flow, q, lang):
        ratio = difflib.SequenceMatcher(None, t, words).ratio()
        if ratio > best:
            best, best_idx = ratio, idx
    return best_idx if best >= FUZZY else None


def typed_number(text: str, q: Question | None = None) -> int | None:
    """A whole number in the text; for a `*_days` fact, "3 weeks" is 21."""
    t = clean(text)
    if q is not None and q.fact and q.fact.endswith("_days"):
        m = _NUM_UNIT.search(t)
        if m and m.group(2) in _UNITS:
            return int(m.group(1)) * _UNITS[m.group(2)]
    nums = _NUM.findall(t)
    if len(nums) != 1:
        return None
    return int(nums[0])


def checklist_ticks(flow: Flow, q: Question, text: str, lang: str) -> list[int] | None:
    """Ticks from typed text: "1 3", "1, 3", labels separated by commas; [] for none."""
    t = clean(text)
    if t in NONE_WORDS:
        return []
    if re.fullmatch(r"[\d\s,;]+", t):
        nums = [int(x) for x in re.findall(r"\d+", t)]
        if nums and all(1 <= n <= len(q.options) for n in nums):
            return sorted(set(n - 1 for n in nums))
        return None
    ticks: set[int] = set()
    for part in _SPLIT.split(t):
        part = part.strip()
        if not part:
            continue
        idx = None
        for words, i in _words_for(flow, q, lang):
            if part == words:
                idx = i
        if idx is None:
            idx = fuzzy_option(flow, q, part, lang)
        if idx is None:
            return None
        ticks.add(idx)
    return sorted(ticks) if ticks else None


NEGATIONS = {"no", "not", "dont", "never", "without", "sin", "nunca", "tampoco", "ni"}


def interrupt_for(flow: Flow, text: str) -> Any:
    """The first interrupt with a phrase inside the text (any language), or None.

    A phrase right after a negation ("no chest pain", "sin dolor de pecho") does not count;
    "no, I can't pee" does (the negation is not next to the phrase)."""
    t = f" {clean(text)} "
    for it in flow.interrupts:
        for phrases in it.phrases.values():
            for p in phrases:
                start = t.find(f" {p} ")
                if start < 0 and len(p) > 6:
                    start = t.find(p)
                while start >= 0:
                    before = t[:start].replace(",", " ").split()
                    if not before or before[-1] not in NEGATIONS:
                        return it
                    start = t.find(f" {p} ", start + 1)
    return None
