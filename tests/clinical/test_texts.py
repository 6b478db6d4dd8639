"""What flows/back_spasm.yaml says to patients: triage-rules.md sections 2, 3 and 7."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.engine.matching import interrupt_for
from bot.flow import Flow, check_file
from bot.flow.model import Outcome, Question

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "flows" / "back_spasm.yaml"
LANGS = ("en", "es")

EMERGENCY_EN = ("Based on your answers, please go to the nearest emergency department now. If "
                "you can't get there safely, or you have numbness or weakness after an injury, "
                "call 911.")
# self-care advice that must never be on an emergency screen
SELF_CARE_WORDS = {
    "en": ["ice", "heat", "anti-inflammatory", "stretch", "rest", "walking", "home"],
    "es": ["hielo", "calor", "antiinflamatorio", "estirar", "descansar", "caminar", "casa"],
}
# no drug names beyond "anti-inflammatory", no doses, no diagnosis, no false reassurance
FORBIDDEN = [
    r"ibuprofen", r"naproxen", r"aspirin", r"acetaminophen", r"paracetamol", r"tylenol",
    r"advil", r"aleve", r"opioid", r"muscle relax", r"relajante", r"\bmg\b", r"\d+\s*mg",
    r"cauda equina", r"fracture", r"fractura", r"abscess", r"absceso", r"tumou?r",
    r"nothing is wrong", r"nothing serious", r"no es nada", r"no tiene nada",
]
USTED_ONLY = [r"\btú\b", r"\btienes\b", r"\bpuedes\b", r"\bestás\b", r"\btu\b", r"\bhaz\b"]


@pytest.fixture(scope="module")
def flow() -> Flow:
    res = check_file(FLOW)
    assert res.flow is not None, "\n".join(map(str, res.problems))
    return res.flow


def outcomes(flow: Flow) -> dict[str, Outcome]:
    return {sid: s for sid, s in flow.steps.items() if isinstance(s, Outcome)}


def all_texts(flow: Flow) -> list[tuple[str, str, str]]:
    """(where, language, text) for every text a patient can see."""
    out = [("disclaimer", lang, flow.disclaimer[lang]) for lang in LANGS]
    for sid, step in flow.steps.items():
        if isinstance(step, Question):
            texts = [step.text, step.out_of_range, step.none_label, step.done_label]
            texts += [o.label for o in step.options]
        else:
            texts = [step.headline, step.text, step.safety_net]
        for t in texts:
            for lang in LANGS:
                if t and lang in t:
                    out.append((sid, lang, t[lang]))
    return out


def flat(text: str) -> str:
    return " ".join(text.split())


def test_validate_reports_nothing() -> None:
    res = check_file(FLOW)
    assert res.problems == [], "\n".join(map(str, res.problems))
    assert res.paths_checked and res.paths_checked > 1_000_000


def test_disclaimer(flow: Flow) -> None:
    en = flat(flow.disclaimer["en"])
    for needed in ("Fort Worth Brain & Spine Institute", "1900 Mistletoe Blvd, Suite 200",
                   "Fort Worth, TX 76104", "{clinic_phone}", "can't diagnose you",
                   "If this is an emergency, call 911."):
        assert needed in en, needed
    es = flat(flow.disclaimer["es"])
    for needed in ("Fort Worth Brain & Spine Institute", "1900 Mistletoe Blvd", "{clinic_phone}",
                   "no da un diagnóstico", "llame al 911"):
        assert needed in es, needed


def test_emergency_screens_give_the_instruction_first_and_no_self_care(flow: Flow) -> None:
    em = outcomes(flow)["emergency"]
    assert flat(em.headline["en"]) == EMERGENCY_EN
    assert "911" in em.headline["es"] and "emergencias" in em.headline["es"]
    for o in outcomes(flow).values():
        if o.disposition != "emergency":
            continue
        for lang in LANGS:
            words = flat(" ".join([o.headline[lang], o.text[lang], o.safety_net[lang]])).lower()
            for w in SELF_CARE_WORDS[lang]:
                assert not re.search(rf"\b{re.escape(w)}\b", words), (o.id, lang, w)


def test_every_outcome_has_a_safety_net_with_the_emergency_signs(flow: Flow) -> None:
    for o in outcomes(flow).values():
        en = flat(o.safety_net["en"]).lower()
        assert "emergency department" in en and "peeing" in en and "numbness" in en, o.id
        es = flat(o.safety_net["es"]).lower()
        assert "emergencias" in es and "orinar" in es and "adormecimiento" in es, o.id


def test_advice_screens_have_the_full_safety_net(flow: Flow) -> None:
    """E-symptoms: ED now; U-symptoms: a doctor in 1-2 days; book if not better in 2 weeks,
    not gone by 6 weeks, worse, or stopping daily activities."""
    for o in outcomes(flow).values():
        if o.disposition not in ("urgent", "routine", "self_care"):
            continue
        en = flat(o.safety_net["en"])
        for needed in ("emergency department now, or call 911", "Trouble peeing",
                       "Numbness between your legs", "both legs", "A leg getting weaker",
                       "balance or walking", "1 to 2 days", "fever", "weight",
                       "night pain", "not better in 2 weeks", "6 weeks", "get worse",
                       "daily tasks"):
            assert needed in en, (o.id, needed)
        es = flat(o.safety_net["es"])
        for needed in ("emergencias", "911", "orinar", "entre las piernas", "dos piernas",
                       "1 o 2 días", "fiebre", "peso", "2 semanas", "6 semanas", "empeora",
                       "tareas de cada día"):
            assert needed in es, (o.id, needed)


def test_urgent_screens(flow: Flow) -> None:
    out = outcomes(flow)
    today = out["urgent_today"]
    assert "today" in today.headline["en"] and "today" in today.text["en"]
    assert "hoy" in today.headline["es"] and "hoy" in today.text["es"]
    soon = out["urgent"]
    assert "1 to 2 days" in soon.headline["en"] and "1 o 2 días" in soon.headline["es"]
    for o in (today, soon):
        assert "{clinic_phone}" in o.text["en"] and "{clinic_phone}" in o.text["es"]
        assert "can't diagnose you" in o.text["en"]


def test_advice_follows_sections_2_and_7(flow: Flow) -> None:
    out = outcomes(flow)
    care = flat(out["self_care"].text["en"])
    assert care.startswith("Most back pain like this improves within weeks.")
    for o in (out["self_care"], out["routine"], out["routine_pt"]):
        en = flat(o.text["en"])
        for needed in ("Short rests are OK, but gentle movement helps you recover faster than "
                       "staying in bed.",
                       "Ice may help the first 2 to 3 days; after that, heat often eases spasm.",
                       "Use what feels better.",
                       "Ask your doctor or pharmacist whether an anti-inflammatory is safe for "
                       "you."):
            assert needed in en, (o.id, needed)
        es = flat(o.text["es"])
        assert "antiinflamatorio" in es and "hielo" in es and "calor" in es, o.id
    routine = flat(out["routine"].text["en"])
    assert "The specialist will decide if any scan is needed; many people don't need one." \
        in routine
    assert "including whether surgery could help" in routine


def test_no_drug_names_doses_diagnoses_or_false_reassurance(flow: Flow) -> None:
    for where, lang, text in all_texts(flow):
        low = text.lower()
        for pattern in FORBIDDEN:
            assert not re.search(pattern, low), (where, lang, pattern)


def test_spanish_uses_usted(flow: Flow) -> None:
    for where, lang, text in all_texts(flow):
        if lang == "es":
            for pattern in USTED_ONLY:
                assert not re.search(pattern, text.lower()), (where, pattern)


def test_self_harm_gives_988_and_911(flow: Flow) -> None:
    o = outcomes(flow)["self_harm"]
    for lang in LANGS:
        assert "988" in o.text[lang] and "911" in o.text[lang]


@pytest.mark.parametrize(("typed", "outcome", "rule"), [
    ("I can't pee since this morning", "emergency", "E1"),
    ("no puedo orinar desde ayer", "emergency", "E1"),
    ("No puedo orinar", "emergency", "E1"),
    ("my chest hurts", "emergency", "X1"),
    ("tengo dolor en el pecho", "emergency", "X1"),
    ("I'm numb between my legs", "emergency", "E2"),
    ("my legs gave way on the stairs", "emergency", "E4"),
    ("no puedo mover las piernas", "emergency", "E4"),
    ("I can't walk at all", "emergency", "E5"),
    ("sometimes I want to kill myself", "self_harm", "SH"),
    ("me quiero morir", "self_harm", "SH"),
    ("pienso en el suicidio", "self_harm", "SH"),
])
def test_interrupts(flow: Flow, typed: str, outcome: str, rule: str) -> None:
    it = interrupt_for(flow, typed)
    assert it is not None, typed
    assert it.go == outcome and it.rule == rule


@pytest.mark.parametrize("typed", [
    "I hurt myself lifting a box", "it hurts when I walk", "me hice daño levantando una caja",
    "the pain is in my lower back",
])
def test_ordinary_words_do_not_interrupt(flow: Flow, typed: str) -> None:
    assert interrupt_for(flow, typed) is None, typed
