"""A catalogue of broken flows: flows/demo.yaml with one targeted edit each, and the exact
problem lines `validate` prints for it (file, line, column, level and message).

An expected line that starts with "re:" is a regular expression for the whole line; it is used
only where the current wording has a known glitch (see the report), so that the test keeps
checking the place and the substance and does not pin the glitch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.flow import LoadResult, Problem, check_text

ROOT = Path(__file__).resolve().parents[2]
FILE = "flows/demo.yaml"


@pytest.fixture(scope="module")
def demo() -> str:
    return (ROOT / FILE).read_text(encoding="utf-8")


def edit(text: str, *changes: tuple[str, str]) -> str:
    """Apply each (old, new) replacement; old must occur exactly once."""
    for old, new in changes:
        assert text.count(old) == 1, f"not exactly once in the demo: {old!r}"
        text = text.replace(old, new)
    return text


def check(text: str) -> LoadResult:
    return check_text(text, FILE, lint=False)


def lines(problems: Sequence[Problem]) -> list[str]:
    return [str(p) for p in problems]


def matches(got: list[str], expected: list[str]) -> bool:
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=True):
        if e.startswith("re:"):
            if not re.fullmatch(e[3:], g):
                return False
        elif g != e:
            return False
    return True


def warn_line(where: str, message: str) -> str:
    return f"{FILE}:{where}: warning: {message}"


def err(where: str, message: str) -> str:
    return f"{FILE}:{where}: error: {message}"


# -- the valid demo ----------------------------------------------------------------------------

def test_demo_is_valid(demo: str) -> None:
    res = check(demo)
    assert lines(res.problems) == []
    assert res.flow is not None
    assert res.paths_checked is not None and res.paths_checked > 0


def test_demo_is_valid_with_plain_language_scoring(demo: str) -> None:
    res = check_text(demo, FILE)
    assert lines(res.problems) == []
    assert res.flow is not None


# -- one mistake, exact problem lines ----------------------------------------------------------

@dataclass(frozen=True)
class Broken:
    name: str
    changes: tuple[tuple[str, str], ...]
    errors: tuple[str, ...]
    warnings: tuple[str, ...] | None = None  # None: not checked

    def __str__(self) -> str:
        return self.name


UNREACHED = "can never be reached from 'red_flags'; link it with 'next'/'go', or remove it"
SAFETY_NET = ("    safety_net:\n      en: If this is an emergency, call 911.\n"
              "      es: Si es una emergencia, llame al 911.\n")
FEVER_Q = (
    "  - id: fever\n    fact: fever\n"
    "    text: {en: Do you have a fever or chills?, es: ¿Tiene fiebre o escalofríos?}\n"
    "    options:\n"
    '      - {value: no, label: {en: "No", es: "No"}}\n'
    '      - {value: yes, label: {en: "Yes", es: "Sí"}}\n'
    "    next: worries\n"
)
LONG_ID = "fever_or_chills_in_the_last_two_weeks_or_more_than_that_ok"

CASES = [
    # ---- YAML syntax
    Broken(
        "yaml_bad_indentation",
        (("    fact: fever\n", "   fact: fever\n"),),
        (err("129:4", "YAML syntax: while parsing a block collection, did not find expected '-' "
             "indicator; check the indentation and quotes on this line and the one above"),),
    ),
    Broken(
        "yaml_unquoted_text_with_colon",
        (("      en: Please book an appointment at the spine clinic.\n",
          "      en: Note: please book an appointment at the spine clinic.\n"),),
        (err("196:15", "YAML syntax: mapping values are not allowed in this context; a text "
             "that contains ': ' must be put in quotes, like \"Note: ...\""),),
    ),
    Broken(
        "yaml_merge_key",
        (("    safety_net:\n      en: Do not wait to see if it gets better.\n",
          "    safety_net:\n      <<: {fr: Attendez}\n      en: Do not wait to see if it gets "
          "better.\n"),),
        (err("178:7", "'<<' merge keys are not supported here; write the keys out"),),
    ),
    # ---- duplicates
    Broken(
        "duplicate_key_text",
        (("    fact: fever\n    text: {en: Do",
          "    fact: fever\n    text: {en: Fever?, es: Fiebre?}\n    text: {en: Do"),),
        (err("131:5", "duplicate key 'text' (first at line 130); YAML would silently keep "
             "only the last one: remove or rename one"),),
    ),
    Broken(
        "duplicate_question_id",
        ((FEVER_Q, FEVER_Q + "\n" + FEVER_Q.replace("Do you have", "Have you had")),),
        (err("136:9", "two steps are called 'fever'; every question and outcome needs its "
             "own id"),),
    ),
    Broken(
        "duplicate_top_level_key_misspelt",
        (("\nquestions:\n", "\nquestoins:\n"),),
        (err("4:1", "the flow is missing 'questions'; add a line 'questions: ...'"),
         err("33:1", "unknown key 'questoins' in the flow (did you mean 'questions'?); allowed "
             "keys: id, version, languages, title, disclaimer, start, facts, computed, "
             "questions, outcomes, interrupts, checks")),
    ),
    # ---- header
    Broken(
        "flow_id_not_an_id",
        (("id: demo\n", "id: Demo\n"),),
        (err("4:5", "the flow: 'Demo' is not a valid id; use lower case letters, digits and _ "
             "(like 'leg_pain'), starting with a letter"),),
    ),
    Broken(
        "no_languages",
        (("languages: [en, es]", "languages: []"),),
        (err("6:12", "the flow: 'languages' must not be empty"),),
    ),
    Broken(
        "start_does_not_exist",
        (("start: red_flags", "start: red_flag"),),
        (err("17:8", "start step 'red_flag' does not exist (did you mean 'red_flags'?)"),),
    ),
    # ---- texts
    Broken(
        "text_missing_spanish_inline",
        (("    text: {en: Do you have a fever or chills?, es: ¿Tiene fiebre o escalofríos?}",
          "    text: {en: Do you have a fever or chills?}"),),
        (err("130:11", "question 'fever': the question text has no 'es' (Spanish) version; add "
             "a line 'es: ...' under 'text'"),),
    ),
    Broken(
        "text_missing_spanish_block",
        (("      es: ¿Va mejorando, sigue igual o va empeorando?\n", ""),),
        (err("120:7", "question 'trend': the question text has no 'es' (Spanish) version; add "
             "a line 'es: ...' under 'text'"),),
    ),
    Broken(
        "text_in_an_undeclared_language",
        (("es: ¿Tiene fiebre o escalofríos?}",
          "es: ¿Tiene fiebre o escalofríos?, fr: Avez-vous de la fièvre?}"),),
        (),
        (warn_line("130:82", "question 'fever': 'fr' is not one of the flow's languages "
                   "(en, es); this text is never shown"),),
    ),
    Broken(
        "text_empty",
        (("      en: If this is an emergency, call 911.\n      es: Si es una emergencia, llame "
          "al 911.\n\ninterrupts", "      en: \"\"\n      es: Si es una emergencia, llame al "
          "911.\n\ninterrupts"),),
        (err("234:11", "outcome 'under_16': the 'en' safety net is empty"),),
    ),
    Broken(
        "text_over_4096_characters",
        (("      en: If you can't get there safely, call 911.\n", f"      en: {'x' * 4097}\n"),),
        (err("175:11", "outcome 'emergency': the 'en' advice text has 4097 characters; Telegram "
             "allows 4096 in a message: shorten it or split it"),),
    ),
    Broken(
        "text_over_4096_characters_counts_characters_not_bytes",
        (("      es: Si no puede llegar de forma segura, llame al 911.\n",
          f"      es: {'á' * 4097}\n"),),
        (err("176:11", "outcome 'emergency': the 'es' advice text has 4097 characters; Telegram "
             "allows 4096 in a message: shorten it or split it"),),
    ),
    # ---- steps and links
    Broken(
        "go_to_missing_step",
        (("      - go: self_care\n", "      - go: self_cares\n"),),
        ("re:" + re.escape(FILE) + r":165:13: error: (question 'decide', )?route 5 of question "
         r"'decide' goes to 'self_cares', which does not exist \(did you mean 'self_care'\?\)",),
        (),  # self_care is cut off only by the typo: not reported again
    ),
    Broken(
        "next_to_missing_step",
        (("    next: fever\n", "    next: fevr\n"),),
        (err("126:11", "question 'trend': next step 'fevr' does not exist (did you mean "
             "'fever'?)"),),
    ),
    Broken(
        "unreachable_step",
        (("        next: bladder_examples\n", "        next: age\n"),),
        (),
        (warn_line("79:5", f"question 'bladder_examples' {UNREACHED}"),),
    ),
    Broken(
        "unreachable_outcome",
        (("\ninterrupts:\n", "\n  - id: spare\n    disposition: routine\n    text: {en: Spare., "
          "es: Libre.}\n    safety_net: {en: Come back., es: Vuelva.}\n\ninterrupts:\n"),),
        (),
        (warn_line("237:5", f"outcome 'spare' {UNREACHED}"),),
    ),
    Broken(
        "loop_with_no_way_out",
        (("    next: worries\n", "    next: trend\n"),),
        (err("108:5", "from question 'duration' no outcome can be reached; route it on to an "
             "outcome"),
         err("117:5", "steps trend → fever → trend form a loop with no way out to an outcome; "
             "give one of them a route that leaves the loop")),
    ),
    Broken(
        "steps_that_reach_no_outcome",
        (("    next: decide\n", "    next: fever\n"),),
        (err("108:5", "from question 'duration' no outcome can be reached; route it on to an "
             "outcome"),
         err("117:5", "from question 'trend' no outcome can be reached; route it on to an "
             "outcome"),
         err("128:5", "steps fever → worries → fever form a loop with no way out to an "
             "outcome; give one of them a route that leaves the loop")),
    ),
    Broken(
        "routes_without_otherwise_or_next",
        (("      - go: self_care\n        rule: S\n", ""),),
        (err("150:5", "question 'decide': when none of its routes holds there is nowhere to go; "
             "end the routes with a line '- go: ...' (no 'if'), or add 'next:'"),),
        (warn_line("203:5", f"outcome 'self_care' {UNREACHED}"),),
    ),
    Broken(
        "otherwise_route_before_the_end",
        (("      - if: fever\n        go: urgent\n        rule: U1\n",
          "      - go: urgent\n        rule: U1\n      - if: fever\n        go: urgent\n"
          "        rule: U1\n"),),
        (),
        ("re:" + re.escape(FILE) + r":153:9: warning: (question 'decide', )?route 1 of "
         r"question 'decide' has no 'if', so the routes below it are never used; move it to "
         r"the end",),
    ),
    Broken(
        "decision_with_a_text",
        (("    kind: decision\n", "    kind: decision\n    text: {en: Deciding, es: Decidiendo}\n"),),
        (err("152:5", "question 'decide' is a decision: it asks nothing, so it takes no 'text'; "
             "remove it or make it a question"),),
    ),
    Broken(
        "callback_data_over_64_bytes",
        (("  - id: fever\n", f"  - id: {LONG_ID}\n"),
         ("    next: fever\n", f"    next: {LONG_ID}\n")),
        (err("128:9", f"question id '{LONG_ID}' makes button data of 71 bytes; Telegram allows "
             "64: shorten the id to 51 characters or fewer"),),
    ),
    Broken(
        "callback_data_one_byte_over",
        (("  - id: fever\n", f"  - id: f{'e' * 51}\n"), ("    next: fever\n", f"    next: f{'e' * 51}\n")),
        (err("128:9", f"question id 'f{'e' * 51}' makes button data of 65 bytes; Telegram "
             "allows 64: shorten the id to 51 characters or fewer"),),
    ),
    Broken(
        "callback_data_exactly_64_bytes_is_fine",
        (("  - id: fever\n", f"  - id: f{'e' * 50}\n"), ("    next: fever\n", f"    next: f{'e' * 50}\n")),
        (),
        (),
    ),
    # ---- facts and values
    Broken(
        "option_value_not_allowed",
        (("{value: stable, label", "{value: maybe, label"),),
        (err("124:17", "'maybe' is not a value of fact 'trend', which is one of improving, "
             "stable, worsening"),),
    ),
    Broken(
        "option_value_yes_for_a_choice_fact",
        (("{value: stable, label", "{value: yes, label"),),
        (err("124:17", "'yes' is not a value of fact 'trend', which is one of improving, "
             "stable, worsening (YAML reads unquoted yes/no as yes/no; quote the word if you "
             "meant it)"),),
    ),
    Broken(
        "sets_unknown_fact",
        (("sets: {bladder_unsure: yes}\n        next", "sets: {bladder_unsur: yes}\n        next"),),
        (err("71:31", "unknown fact 'bladder_unsur' (did you mean 'bladder_unsure'?); use a name "
             "from shared/clinical/facts.md or declare it under 'facts:'"),),
    ),
    Broken(
        "sets_value_not_allowed",
        (("sets: {bladder_unsure: yes}\n        next", "sets: {bladder_unsure: maybe}\n        next"),),
        (err("71:32", "'maybe' is not a value of fact 'bladder_unsure', which is yes or no"),),
    ),
    Broken(
        "fact_redeclares_a_shared_fact",
        (("  bladder_unsure:\n    type: yes_no\n",
          "  bladder_unsure:\n    type: yes_no\n  fever:\n    type: yes_no\n"),),
        (err("22:3", "fact 'fever' is already in the shared dictionary (shared/clinical/facts.md);"
             " remove it here, or pick another name"),),
    ),
    Broken(
        "choice_fact_without_values",
        (("  bladder_unsure:\n    type: yes_no\n",
          "  bladder_unsure:\n    type: yes_no\n  pain_pattern:\n    type: choice\n"),),
        (err("23:5", "fact 'pain_pattern' is a choice: list its words under 'values:'"),),
    ),
    Broken(
        "number_min_below_the_fact",
        (("    min: 1\n", "    min: -5\n"),),
        (err("98:10", "question 'age': min -5 is below what 'age' allows (a number 0–120)"),),
    ),
    Broken(
        "ranges_overlap",
        (("{range: [14, 42]", "{range: [13, 42]"),),
        (err("113:17", "question 'duration', option 2: the range 13–42 is split by the "
             "condition 'duration_days < 14 or trend == worsening': 13 and 14 or more would "
             "need different advice, but the button records 13; end a button at 13 and start "
             "the next at 14"),
         err("113:17", "question 'duration': the ranges of options 1 and 2 overlap (0–13 and "
             "13–42); a number must belong to one button only")),
    ),
    Broken(
        "range_split_by_a_rule",
        (("{range: [14, 42]", "{range: [14, 50]"), ("{range: [43, null]", "{range: [51, null]")),
        (err("113:17", "question 'duration', option 2: the range 14–50 is split by the "
             "condition 'duration_days > 42': 14–42 and 43 or more would need different "
             "advice, but the button records 14; end a button at 42 and start the next at 43"),),
    ),
    Broken(
        "ranges_leave_a_gap",
        (("{range: [14, 42]", "{range: [15, 42]"),),
        (err("113:17", "question 'duration': the ranges leave a gap between 13 and 15 (options "
             "1 and 2): no button for 14"),),
    ),
    Broken(
        "ranges_leave_a_wide_gap",
        (("{range: [14, 42]", "{range: [20, 42]"),),
        (err("113:17", "question 'duration': the ranges leave a gap between 13 and 20 (options "
             "1 and 2): no button for 14–19"),),
    ),
    Broken(
        "value_on_a_number_fact",
        (("{range: [14, 42]", "{value: 14"),),
        (err("113:17", "question 'duration', option 2: 'duration_days' is a number: give the "
             "option a 'range: [from, to]' instead of a value"),
         err("114:17", "question 'duration': the ranges leave a gap between 13 and 43 (options "
             "1 and 3): no button for 14–42")),
    ),
    Broken(
        "two_options_for_the_same_answer",
        (('      - {value: yes, label: {en: "Yes", es: "Sí"}}\n    next: worries',
          '      - {value: yes, label: {en: "Yes", es: "Sí"}}\n'
          '      - {value: yes, label: {en: "Yes!", es: "¡Sí!"}}\n    next: worries'),),
        (),
        (warn_line("134:9", "question 'fever': typing 'yes' could mean option 2 or option 3; "
                   "the first wins. Give each option its own words"),
         warn_line("134:17", "question 'fever', option 3 and option 2 stand for the same value "
                   "'yes' and do the same; remove one")),
    ),
    # ---- checklists
    Broken(
        "checklist_option_without_fact",
        (("      - fact: startback_7\n", "      - label: {en: Other, es: Otro}\n"
          "      - fact: startback_7\n"),),
        ("re:" + re.escape(FILE) + r":146:9: error: (question 'worries', )?option 3 of checklist"
         r" question 'worries' needs 'fact:' \(the fact a tick fills\)",),
    ),
    Broken(
        "checklist_option_without_value_for_a_choice_fact",
        (("        value: severe_or_progressive\n", ""),),
        (err("44:9", "question 'red_flags', option 3: 'weakness' is one of none, mild_one_leg, "
             "severe_or_progressive: say which value a tick means with 'value:'"),),
    ),
    Broken(
        "checklist_option_with_next",
        (("      - fact: startback_7\n", "      - fact: startback_7\n        next: decide\n"),),
        (err("147:9", "question 'worries', option 3: checklist options cannot have their own "
             "'next'; route with the question's 'routes'"),),
    ),
    # ---- conditions
    Broken(
        "fact_read_before_it_is_filled",
        (("      - if: fever\n        go: urgent", "      - if: night_pain\n        go: urgent"),),
        (err("153:13", "condition 'night_pain' reads 'night_pain', which may not be filled yet "
             "when question 'decide' is reached; on the path red_flags → bladder_check → age → "
             "duration → trend → fever → worries → decide nothing fills it: ask it before this "
             "point, or route on it later"),),
    ),
    Broken(
        "fact_read_before_it_is_asked",
        (("      - if: age < 16\n", "      - if: fever\n"),),
        (err("104:13", "condition 'fever' reads 'fever', which may not be filled yet when "
             "question 'age' is reached; on the path red_flags → bladder_check → age nothing "
             "fills it: ask it before this point, or route on it later"),),
    ),
    Broken(
        "condition_unknown_value",
        (("      - if: worry_level == high\n", "      - if: trend == worse\n"),),
        (err("162:13", "condition 'trend == worse': 'worse' is not a value of 'trend' (one of "
             "improving, stable, worsening) (did you mean 'worsening'?)"),),
    ),
    Broken(
        "condition_yes_no_compared_to_a_word",
        (("      - if: fever\n        go: urgent", "      - if: fever == maybe\n        go: urgent"),),
        (err("153:13", "condition 'fever == maybe': 'fever' is yes or no, not 'maybe'"),),
    ),
    Broken(
        "condition_choice_fact_used_as_yes_no",
        (("      - if: fever\n        go: urgent", "      - if: trend\n        go: urgent"),),
        (err("153:13", "condition 'trend': 'trend' is one of improving, stable, worsening, not "
             "yes/no; compare it, like 'trend == improving'"),),
    ),
    Broken(
        "condition_order_on_a_choice_fact",
        (("      - if: fever\n        go: urgent", "      - if: trend < 3\n        go: urgent"),),
        (err("153:13", "condition 'trend < 3': 'trend' is not a number, so '<' cannot be used; "
             "write 'trend == improving'"),),
    ),
    Broken(
        "condition_number_compared_to_a_word",
        (("      - if: duration_days > 42\n", "      - if: duration_days > many\n"),),
        (err("156:13", "condition 'duration_days > many': 'duration_days' is a number; 'many' "
             "is not"),),
    ),
    Broken(
        "malformed_condition_ends_early",
        (("      - if: fever\n        go: urgent", "      - if: fever and\n        go: urgent"),),
        (err("153:22", "malformed condition 'fever and': the condition ends too early at "
             "character 10; write tests like 'fever', 'trend == worsening', 'age >= 70', joined "
             "by and/or/not"),),
    ),
    Broken(
        "malformed_condition_double_operator",
        (("      - if: age < 16\n", "      - if: age >> 3\n"),),
        (err("104:18", "malformed condition 'age >> 3': expected a value but found '>' at "
             "character 6; write tests like 'fever', 'trend == worsening', 'age >= 70', joined "
             "by and/or/not"),),
    ),
    # ---- outcomes
    Broken(
        "outcome_without_safety_net",
        ((SAFETY_NET, ""),),
        (err("228:5", "outcome 'under_16' has no 'safety_net': every outcome must say what "
             "should bring the patient back (the emergency signs, at least)"),),
    ),
    Broken(
        "emergency_outcome_without_headline",
        (("    headline:\n      en: Based on your answers, please go to the nearest emergency "
          "department now.\n      es: Por lo que nos cuenta, vaya ahora mismo a la sala de "
          "emergencias más cercana.\n", ""),),
        (err("169:5", "outcome 'emergency' has no 'headline'; add the emergency instruction for "
             "each language"),),
    ),
    # ---- interrupts
    Broken(
        "interrupt_goes_to_a_question",
        (("    go: emergency\n    rule: E1\n    sets:", "    go: fever\n    rule: E1\n    sets:"),),
        (err("242:9", "interrupt 'cant_pee' goes to question 'fever'; an interrupt must go to "
             "an outcome"),),
    ),
    Broken(
        "interrupt_without_phrases_for_a_language",
        (('      es: ["no puedo orinar", "no puedo hacer pis"]\n', ""),),
        (err("240:7", "interrupt 'cant_pee' has no phrases for 'es'; add a line 'es: [...]' "
             "under 'phrases'"),),
    ),
    # ---- computed facts
    Broken(
        "computed_fact_depends_on_itself",
        (("    when: duration_days < 14 or trend == worsening",
          "    when: duration_days < 14 or new_or_worse"),),
        (err("25:5", "computed facts depend on each other in a circle (new_or_worse → "
             "new_or_worse); one of them must read asked facts only"),),
    ),
    Broken(
        "computed_facts_depend_on_each_other",
        (("    count: [startback_5, startback_6, startback_7]",
          "    count: [startback_5, startback_6, worry_level == high]"),),
        (err("29:5", "computed facts depend on each other in a circle (worry_score → "
             "worry_level → worry_score); one of them must read asked facts only"),),
    ),
    Broken(
        "computed_cases_end_with_an_if",
        (("      - {value: low}", "      - {if: worry_score < 2, value: low}"),),
        (err("30:7", "computed fact 'worry_level': the last case needs no 'if' (it is the value "
             "when no other case holds)"),),
    ),
    # ---- safety checks
    Broken(
        "safety_check_fails",
        (("    if: bladder_bowel_changes\n    then: disposition == emergency",
          "    if: bladder_bowel_changes\n    then: disposition == urgent"),),
        (err("247:5", "check 'bladder_is_emergency' fails (A bladder or bowel change always "
             "ends in emergency.): counterexample red_flags=none of these → bladder_check=Yes ⇒ "
             "emergency (emergency, rule E1)"),),
    ),
    Broken(
        "safety_check_names_an_unknown_fact",
        (("asked(weakness)", "asked(weaknes)"),),
        (err("254:11", "condition 'asked(bladder_bowel_changes) and asked(saddle_numbness) and "
             "asked(weaknes)' names unknown fact 'weaknes' (did you mean 'weakness'?)"),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_broken(demo: str, case: Broken) -> None:
    res = check(edit(demo, *case.changes))
    got = lines(res.errors)
    assert matches(got, list(case.errors)), "\n".join(got)
    if case.warnings is not None:
        warnings = lines([p for p in res.problems if p.level == "warning"])
        assert matches(warnings, list(case.warnings)), "\n".join(warnings)
    assert (res.flow is None) == bool(case.errors)


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_a_failing_check_names_it_and_prints_a_path(demo: str) -> None:
    res = check(edit(demo, ("      - if: fever\n        go: urgent\n        rule: U1\n", "")))
    [problem] = res.errors
    text = str(problem)
    assert text.startswith(f"{FILE}:252:5: error: check 'fever_not_self_care' fails (Fever never"
                           " ends in self-care.): counterexample ")
    # the counterexample is a full path from the first question to the outcome
    path = text.split("counterexample ", 1)[1]
    assert path.startswith("red_flags=none of these → bladder_check=No → age=")
    assert "fever=Yes" in path
    assert path.endswith("⇒ self_care (self_care, rule S)")


# -- one mistake, the first cause exactly (more lines follow from it; see the report) ---------

CAUSES = [
    Broken(
        "unknown_key_with_did_you_mean",
        (("    fact: fever\n    text: {en: Do you have a fever or chills?, es: ¿Tiene fiebre o "
          "escalofríos?}\n    options:", "    fact: fever\n    text: {en: Do you have a fever or "
          "chills?, es: ¿Tiene fiebre o escalofríos?}\n    optoins:"),),
        (err("131:5", "unknown key 'optoins' in question 'fever' (did you mean 'options'?); "
             "allowed keys: id, kind, fact, text, help, options, none_label, done_label, min, "
             "max, out_of_range, routes, next"),),
    ),
    Broken(
        "missing_required_key",
        (("    text:\n      en: If you can't get there safely, call 911.\n      es: Si no puede "
          "llegar de forma segura, llame al 911.\n", ""),),
        (err("169:5", "outcome 'emergency' is missing 'text'; add a line 'text: ...'"),),
    ),
    Broken(
        "options_given_as_a_string",
        (('    options:\n      - {value: no, label: {en: "No", es: "No"}}\n      - {value: yes, '
          'label: {en: "Yes", es: "Sí"}}\n    next: worries', "    options: yes or no\n    next: "
          "worries"),),
        (err("131:14", "question 'fever': 'options' should be a list (lines starting with '- '),"
             " not the text 'yes or no'"),),
    ),
    Broken(
        "wrong_kind",
        (("  - id: worries\n    kind: checklist", "  - id: worries\n    kind: multiple"),),
        (err("137:11", "question 'worries': 'kind' cannot be the text 'multiple'; use one of "
             "choice, checklist, number, decision"),),
    ),
    Broken(
        "wrong_kind_close_to_a_real_one",
        (("  - id: worries\n    kind: checklist", "  - id: worries\n    kind: checklists"),),
        (err("137:11", "question 'worries': 'kind' cannot be the text 'checklists'; use one of "
             "choice, checklist, number, decision (did you mean 'checklist'?)"),),
    ),
    Broken(
        "condition_unknown_fact",
        (("      - if: fever\n        go: urgent", "      - if: fevr\n        go: urgent"),),
        (err("153:13", "condition 'fevr' names unknown fact 'fevr' (did you mean 'fever'?)"),),
    ),
    Broken(
        "question_fact_unknown",
        (("    fact: fever\n", "    fact: fevr\n"),),
        (err("129:11", "unknown fact 'fevr' (did you mean 'fever'?); use a name from "
             "shared/clinical/facts.md or declare it under 'facts:'"),),
    ),
    Broken(
        "malformed_computed_condition",
        (("    when: duration_days < 14 or trend == worsening",
          "    when: duration_days < 14 or trend === worsening"),),
        (err("25:41", "malformed condition 'duration_days < 14 or trend === worsening': "
             "unexpected character '=' at character 31; write tests like 'fever', 'trend == "
             "worsening', 'age >= 70', joined by and/or/not"),),
    ),
    Broken(
        "malformed_condition_in_a_flow_mapping",
        (("      - {if: worry_score >= 2, value: high}", "      - {if: worry_score >= 2 or, value: high}"),),
        (err("30:33", "malformed condition 'worry_score >= 2 or': the condition ends too early at"
             " character 20; write tests like 'fever', 'trend == worsening', 'age >= 70', "
             "joined by and/or/not"),),
    ),
    Broken(
        "range_is_not_whole_numbers",
        (("{range: [14, 42]", "{range: [14.5, 42]"),),
        (err("113:18", "item 1 of question 'duration', option 2, 'range' should be a whole "
             "number, not the number 14.5"),),
    ),
]


@pytest.mark.parametrize("case", CAUSES, ids=str)
def test_first_cause(demo: str, case: Broken) -> None:
    res = check(edit(demo, *case.changes))
    got = lines(res.errors)
    for expected in case.errors:
        assert expected in got, "\n".join(got)
    assert res.flow is None


# -- YAML syntax: place exact; wording checked loosely (see the report) ------------------------

@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("    fact: fever\n", "\tfact: fever\n", "129:1"),
        ("    fact: fever\n", "  \t  fact: fever\n", "129:3"),
        ("facts:\n  bladder_unsure:\n", "facts:\n\tbladder_unsure:\n", "20:1"),
    ],
)
def test_yaml_tab(demo: str, old: str, new: str, where: str) -> None:
    res = check(edit(demo, (old, new)))
    [problem] = res.problems
    assert str(problem).startswith(f"{FILE}:{where}: error: YAML syntax: ")
    assert res.flow is None


def test_yaml_unquoted_colon_inside_braces(demo: str) -> None:
    res = check(edit(demo, ("label: {en: Numb between the legs, es:",
                            "label: {en: Numb: between the legs, es:")))
    [problem] = res.problems
    assert str(problem).startswith(f"{FILE}:43:25: error: YAML syntax: ")


def test_yaml_unclosed_brace(demo: str) -> None:
    res = check(edit(demo, ("es: ¿Tiene fiebre o escalofríos?}", "es: ¿Tiene fiebre o escalofríos?")))
    assert lines(res.problems) == [err(
        "131:12", "YAML syntax: while parsing a flow mapping, did not find expected ',' or '}'; "
        "check the indentation and quotes on this line and the one above")]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "hello", "null", "42"])
def test_not_a_mapping(text: str) -> None:
    res = check(text)
    assert lines(res.problems) == [err(
        "1:1", "a flow file must be a set of 'key: value' lines starting with 'id:', 'version:', "
        "'languages:' (see docs/flow-guide.md)")]


# -- many mistakes at once: all reported, sorted by line ---------------------------------------

def test_every_mistake_is_reported(demo: str) -> None:
    text = edit(
        demo,
        ("{range: [14, 42]", "{range: [15, 42]"),
        ("{value: stable, label", "{value: maybe, label"),
        ("    text: {en: Do you have a fever or chills?, es: ¿Tiene fiebre o escalofríos?}",
         "    text: {en: Do you have a fever or chills?}"),
        ("      - if: worry_level == high\n", "      - if: trend == worse\n"),
        ("    go: emergency\n    rule: E1\n    sets:", "    go: fever\n    rule: E1\n    sets:"),
        (SAFETY_NET, ""),
    )
    res = check(text)
    assert lines(res.errors) == [
        err("113:17", "question 'duration': the ranges leave a gap between 13 and 15 (options 1 "
            "and 2): no button for 14"),
        err("124:17", "'maybe' is not a value of fact 'trend', which is one of improving, stable, "
            "worsening"),
        err("130:11", "question 'fever': the question text has no 'es' (Spanish) version; add a "
            "line 'es: ...' under 'text'"),
        err("162:13", "condition 'trend == worse': 'worse' is not a value of 'trend' (one of "
            "improving, stable, worsening) (did you mean 'worsening'?)"),
        err("228:5", "outcome 'under_16' has no 'safety_net': every outcome must say what should "
            "bring the patient back (the emergency signs, at least)"),
        err("239:9", "interrupt 'cant_pee' goes to question 'fever'; an interrupt must go to an "
            "outcome"),
    ]
    assert res.flow is None
    keys = [(p.line, p.col) for p in res.problems]
    assert keys == sorted(keys)


def test_every_question_is_checked_even_when_one_is_broken(demo: str) -> None:
    """A shape error in one question does not hide a problem in another."""
    text = edit(
        demo,
        ("  - id: worries\n    kind: checklist", "  - id: worries\n    kind: multiple"),
        ("{range: [14, 42]", "{range: [15, 42]"),
        ("      en: If you can't get there safely, call 911.\n", f"      en: {'x' * 5000}\n"),
    )
    got = lines(check(text).errors)
    assert err("113:17", "question 'duration': the ranges leave a gap between 13 and 15 (options "
               "1 and 2): no button for 14") in got
    assert err("137:11", "question 'worries': 'kind' cannot be the text 'multiple'; use one of "
               "choice, checklist, number, decision") in got
    assert err("175:11", "outcome 'emergency': the 'en' advice text has 5000 characters; Telegram"
               " allows 4096 in a message: shorten it or split it") in got
