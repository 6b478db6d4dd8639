"""Plain-language check: English at a Flesch-Kincaid grade of 8 or below, Spanish at a
Fernández-Huerta score of 70 or above. Texts under five words are not scored (the formulas
mean nothing on a button label)."""

from __future__ import annotations

import re
from functools import lru_cache

MAX_GRADE_EN = 8.0
MIN_EASE_ES = 70.0
MIN_WORDS = 5
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@lru_cache(maxsize=4096)
def check_text(text: str, lang: str) -> str | None:
    """None when the text is plain enough, else a short note naming its score."""
    if lang not in ("en", "es") or len(_WORD.findall(text)) < MIN_WORDS:
        return None
    import textstat  # slow to import: only when there is something to score

    ts = textstat.textstat
    if lang == "en":
        ts.set_lang("en_US")
        grade = ts.flesch_kincaid_grade(text)
        if grade > MAX_GRADE_EN:
            return (f"reads at grade {grade:.1f} (Flesch-Kincaid); aim for {MAX_GRADE_EN:.0f} "
                    "or below: shorter sentences, everyday words")
        return None
    ts.set_lang("es")
    ease = ts.fernandez_huerta(text)
    if ease < MIN_EASE_ES:
        return (f"scores {ease:.0f} on the Fernández-Huerta scale; aim for {MIN_EASE_ES:.0f} or "
                "above: frases más cortas, palabras de todos los días")
    return None
