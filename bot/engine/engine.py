"""The conversation engine: one `transitions` machine per loaded flow version, shared by every
conversation; a conversation is plain data (`Session`) restored for each input.

Each edge of the flow is a transition of the machine, its trigger named after the destination;
which edge an answer takes is decided by the question's routes (first match, our compiled
conditions: Python callables, never strings from YAML). A plain cursor object holding only
`state` is moved by the destination's event (`events[...].trigger(cursor)`: no add_model or
remove_model), which refuses a move along an edge the flow does not have. The machine has no
callbacks, so its events take a direct path (`_Event`, ~4.5 µs a trigger instead of ~23 µs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from transitions import Event, Machine

from bot.flow.model import Flow, Outcome, Question

from . import matching
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

logger = logging.getLogger(__name__)

DEFAULT_LABELS = {
    "none": {"en": "None of these", "es": "Ninguno de estos"},
    "done": {"en": "Done", "es": "Listo"},
}
NOTICES: dict[str, dict[str, str]] = {
    "stale": {
        "en": "That button is from an earlier question. Here is where you are now.",
        "es": "Ese botón es de una pregunta anterior. Aquí es donde va ahora.",
    },
    "not_understood": {
        "en": "Sorry, I didn't catch that. Please tap a button, or type its number.",
        "es": "Perdone, no le entendí. Toque un botón o escriba su número.",
    },
    "not_a_number": {
        "en": "Please type a number, like 42.",
        "es": "Escriba un número, por ejemplo 42.",
    },
    "tick_or_none": {
        "en": "Tap each one that applies, then Done. If none apply, tap 'None of these'.",
        "es": "Toque cada uno que tenga y luego Listo. Si no tiene ninguno, toque 'Ninguno'.",
    },
    "no_back": {
        "en": "There is no earlier answer to change.",
        "es": "No hay una respuesta anterior que cambiar.",
    },
    "went_back": {
        "en": "OK, let's change that answer.",
        "es": "De acuerdo, cambiemos esa respuesta.",
    },
    "finished": {
        "en": "This check is finished. You can go back to change an answer, or start again.",
        "es": "Esta revisión terminó. Puede volver atrás para cambiar una respuesta "
              "o empezar de nuevo.",
    },
    "restarted_sorry": {
        "en": "Sorry, we had to start your check again from the beginning.",
        "es": "Perdone, tuvimos que empezar su revisión de nuevo desde el principio.",
    },
}


class _Event(Event):
    """An event of a machine with no callbacks, conditions or queue anywhere (checked once, when
    the flow's machine is built: `_Machine.plain`). Then a trigger is transitions' own source
    check and transition table, and the state change its `set_state`, without walking empty
    callback lists and formatting debug lines on the way (that was ~70% of a trigger's cost).
    Any other machine goes through transitions' own code."""

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        m = self.machine
        if not m.plain:
            return bool(super().trigger(model, *args, **kwargs))
        state = m.get_model_state(model)
        if not self._is_valid_source(state):
            return False
        m.set_state(self.transitions[state.name][0].dest, model)  # type: ignore[arg-type]
        return True


class _Machine(Machine):
    """transitions' Machine with the event class above (its documented extension point): the
    flow's states, its edges and the check that an edge exists stay the library's."""

    event_cls = _Event
    plain = False

    def check_plain(self) -> None:
        """Allow the direct trigger only when nothing would run but the state change."""
        self.plain = not (
            self.has_queue or self.prepare_event or self.finalize_event or self.on_exception
            or self.before_state_change or self.after_state_change or self.on_final
            or any(st.on_enter or st.on_exit or st.final for st in self.states.values())
            or any(t.prepare or t.conditions or t.before or t.after or t.dest is None
                   for ev in self.events.values() for ts in ev.transitions.values()
                   for t in ts)
            or any(len(ts) != 1 for ev in self.events.values()
                   for ts in ev.transitions.values()))


class FlowMachine:
    """The state machine of one flow version (built once, shared by every conversation).

    Each edge of the flow graph (an option's own `next`, a route, a question's `next`) is a
    transition; its trigger is named after the destination ("to_<n>"), so the machine has one
    trigger per step and refuses a move along an edge the flow does not have. Which edge an
    answer takes is decided by the question's routes (first match, our compiled conditions).
    """

    def __init__(self, flow: Flow):
        self.flow = flow
        self.machine = _Machine(model=None, states=list(flow.steps), initial=flow.start,
                               auto_transitions=False, send_event=False)
        index = {sid: i for i, sid in enumerate(flow.steps)}
        sources: dict[str, set[str]] = {}
        for q in flow.steps.values():
            if isinstance(q, Question):
                for target, _, _ in q.successors():
                    sources.setdefault(target, set()).add(q.id)
        self.triggers: dict[str, Any] = {}
        for target, srcs in sources.items():
            name = f"to_{index[target]}"
            self.machine.add_transition(name, list(sorted(srcs)), target)
            self.triggers[target] = self.machine.events[name]
        self.machine.check_plain()
        self._views: dict[tuple[str, str], QuestionView] = {}

    def move(self, step: str, option: int | None, get: Callable[[str], Any]
             ) -> tuple[str, str | None]:
        """Take the answer's route from step, through any decisions: (new step, rule)."""
        steps = self.flow.steps
        cursor = _Cursor(step)
        rule: str | None = None
        for _ in range(len(steps) + 1):
            q = steps[cursor.state]
            assert isinstance(q, Question)
            opt = q.options[option] if option is not None and q.kind == "choice" else None
            target, route_rule = q.route(opt, get)
            if target is None or target not in self.triggers:
                raise RuntimeError(f"no route out of step {cursor.state!r}")
            self.triggers[target].trigger(cursor)  # the machine checks the edge exists
            rule = route_rule or rule
            nxt = steps[cursor.state]
            if not (isinstance(nxt, Question) and nxt.kind == "decision"):
                return cursor.state, rule
            option = None
        raise RuntimeError("decision steps loop")


class _Cursor:
    """What the machine moves: a plain object holding only the state (never attached)."""

    __slots__ = ("state",)

    def __init__(self, state: str):
        self.state = state


class Engine:
    """Turns an input and a stored session into a reply and the new session (plain dicts)."""

    def __init__(self, flow: Flow, *, placeholders: dict[str, str] | None = None,
                 clock: Callable[[], float] = time.time, archive: Any | None = None):
        self.clock = clock
        self.archive = archive  # keeps every version served (FlowArchive), or None
        self.placeholders = {f"{{{k}}}": v for k, v in (placeholders or {}).items()}
        self.versions: dict[str, FlowMachine] = {}
        self.current = self.add_version(flow)

    # -- flow versions ---------------------------------------------------------------------
    def add_version(self, flow: Flow) -> FlowMachine:
        fm = self.versions.get(flow.hash)
        if fm is None:
            fm = self.versions[flow.hash] = FlowMachine(flow)
            if self.archive is not None:
                self.archive.save(flow)
        return fm

    def set_current(self, flow: Flow) -> None:
        """A new flow version for new conversations; the old stays for those under way."""
        self.current = self.add_version(flow)

    def drop_version(self, flow_hash: str) -> None:
        if flow_hash != self.current.flow.hash:
            self.versions.pop(flow_hash, None)

    @property
    def flow(self) -> Flow:
        return self.current.flow

    # -- sessions --------------------------------------------------------------------------
    def new_session(self, lang: str | None = None) -> Session:
        flow = self.flow
        now = self.clock()
        lang = lang if lang in flow.languages else flow.default_language
        return Session(flow.id, flow.hash, lang, None, started=now, updated=now)

    def restore(self, data: dict[str, Any] | None, lang: str | None = None
                ) -> tuple[Session, FlowMachine, list[str]]:
        """The session and its flow version; a session that cannot be used starts again."""
        notices: list[str] = []
        if data is None:
            s = self.new_session(lang)
            return s, self.current, notices
        try:
            s = Session.from_dict(data)
        except BadSession:
            logger.warning("unreadable session: starting again")
            s = self.new_session(lang)
            s.meta["restarted"] = True
            return s, self.current, notices
        fm = self.versions.get(s.flow_hash)
        if fm is None and self.archive is not None:
            old = self.archive.load(s.flow_hash)
            if old is not None:  # pinned: the conversation finishes on its own version
                logger.info("flow version %s loaded from the archive", s.flow_hash)
                fm = self.versions[old.hash] = FlowMachine(old)
        if fm is None:
            fm = self._migrate(s)
        return s, fm, notices

    def _migrate(self, s: Session) -> FlowMachine:
        """A session whose flow version is gone moves to the current one when its steps are
        still there; otherwise it starts again (with an apology)."""
        new = self.current
        steps = [h["step"] for h in s.history] + ([s.step] if s.step else [])
        if all(st in new.flow.steps for st in steps) and (s.step is None or isinstance(
                new.flow.steps[s.step], type(new.flow.steps.get(s.step)))):
            try:
                facts = self._replay(new, s.history)
                logger.info("session moved from flow version %s to %s at step %s",
                            s.flow_hash, new.flow.hash, s.step)
                s.flow_hash, s.facts = new.flow.hash, facts
                return new
            except (IndexError, KeyError, TypeError, ValueError):
                pass
        logger.info("session on gone flow version %s restarted", s.flow_hash)
        lang = s.lang
        fresh = self.new_session(lang)
        for f in Session.__slots__:
            setattr(s, f, getattr(fresh, f))
        s.meta["restarted"] = True
        return new

    def handle(self, data: dict[str, Any] | None, inp: Input, *, lang: str | None = None
               ) -> tuple[dict[str, Any], Reply]:
        """Apply one input to a stored session: (the session to store, the reply)."""
        s, fm, notices = self.restore(data, lang)
        if s.meta.pop("restarted", False):
            notices.append(self._notice("restarted_sorry", s.lang))
            reply = self._start(s, self.current, notices)
        else:
            try:
                reply = self._dispatch(s, fm, inp, notices)
            except (KeyError, IndexError, TypeError, ValueError, AssertionError):
                # stored data this flow cannot follow (edited by hand, or corrupted)
                logger.exception("session could not be continued: starting again")
                s = self.new_session(s.lang)
                reply = self._start(s, self.current,
                                    [self._notice("restarted_sorry", s.lang)])
        s.updated = self.clock()
        return s.to_dict(), reply

    def view(self, data: dict[str, Any] | None, lang: str | None = None) -> Reply:
        """The current screen, changing nothing."""
        s, fm, _ = self.restore(data, lang)
        if s.step is None:
            return Reply(lang=s.lang, changed=False)
        return self._reply(s, fm, changed=False)

    # -- inputs ----------------------------------------------------------------------------
    def _dispatch(self, s: Session, fm: FlowMachine, inp: Input, notices: list[str]) -> Reply:
        cls = inp.__class__
        if (cls is Choose or cls is Text) and s.step is not None:  # the common case first
            step = fm.flow.steps.get(s.step)
            if step is not None:
                if cls is Choose:
                    return self._choose(s, fm, step, inp, notices)  # type: ignore[arg-type]
                return self._text(s, fm, step, inp.text, notices)  # type: ignore[union-attr]
        if isinstance(inp, Start) or (s.step is None and not isinstance(inp, SetLanguage)):
            if isinstance(inp, Start) and inp.lang in self.flow.languages:
                s.lang = inp.lang
            fresh = self.new_session(s.lang)
            fresh.meta, fresh.updates = s.meta, s.updates
            _copy(fresh, s)
            return self._start(s, self.current, notices)
        if isinstance(inp, (Back, Restart)) and inp.step is not None and inp.step != s.step:
            notices.append(self._notice("stale", s.lang))
            return self._reply(s, fm, notices=notices, changed=False)
        if isinstance(inp, Restart):
            fresh = self.new_session(s.lang)
            fresh.meta, fresh.updates = s.meta, s.updates
            _copy(fresh, s)
            return self._start(s, self.current, notices)
        if isinstance(inp, SetLanguage):
            if inp.lang in fm.flow.languages:
                s.lang = inp.lang
            if s.step is None:
                return Reply(lang=s.lang)
            return self._reply(s, fm, notices=notices)
        if isinstance(inp, Back):
            return self._back(s, fm, notices)
        step = fm.flow.steps.get(s.step or "")
        if step is None:
            return self._start(s, self.current, notices)
        if isinstance(inp, Choose):
            return self._choose(s, fm, step, inp, notices)
        if isinstance(inp, Text):
            return self._text(s, fm, step, inp.text, notices)
        raise TypeError(f"unknown input {type(inp).__name__}")  # pragma: no cover

    def _start(self, s: Session, fm: FlowMachine, notices: list[str]) -> Reply:
        s.step = fm.flow.start
        start = fm.flow.steps[s.step]
        if isinstance(start, Question) and start.kind == "decision":
            s.step, s.rule = fm.move(s.step, None, fm.flow.lookup(s.facts))
        return self._reply(s, fm, notices=notices,
                           welcome=self._fmt(fm.flow.text(fm.flow.disclaimer, s.lang)))

    def _choose(self, s: Session, fm: FlowMachine, step: Any, inp: Choose,
                notices: list[str]) -> Reply:
        flow = fm.flow
        stale = (
            inp.step != s.step
            or (inp.flow_hash is not None and not flow.hash.startswith(inp.flow_hash))
            or not isinstance(step, Question)
            or (inp.action in ("a", "t") and not 0 <= inp.option < len(step.options))
            or (inp.action == "a" and step.kind != "choice")
            or (inp.action in ("t", "d", "n") and step.kind != "checklist")
        )
        if stale:
            notices.append(self._notice("stale", s.lang))
            return self._reply(s, fm, notices=notices, changed=False)
        assert isinstance(step, Question)
        if inp.action == "a":
            return self._answer(s, fm, step, inp.option, notices)
        if inp.action == "t":
            ticks = set(s.ticks)
            ticks.symmetric_difference_update({inp.option})
            s.ticks = sorted(ticks)
            return self._reply(s, fm, notices=notices)
        if inp.action == "n":
            return self._answer(s, fm, step, [], notices)
        if not s.ticks:
            notices.append(self._notice("tick_or_none", s.lang))
            return self._reply(s, fm, notices=notices, changed=False)
        return self._answer(s, fm, step, list(s.ticks), notices)

    def _text(self, s: Session, fm: FlowMachine, step: Any, text: str,
              notices: list[str]) -> Reply:
        flow = fm.flow
        if isinstance(step, Outcome):
            it = matching.interrupt_for(flow, text)
            if it is not None and it.go != step.id:
                return self._interrupt(s, fm, it, notices)
            notices.append(self._notice("finished", s.lang))
            return self._reply(s, fm, notices=notices, changed=False)
        q: Question = step
        if q.kind == "number":
            n = matching.typed_number(text, q)
            if n is not None:
                lo = q.min if q.min is not None else -10**9
                hi = q.max if q.max is not None else 10**9
                if lo <= n <= hi:
                    return self._answer(s, fm, q, n, notices)
                notices.append(self._fmt(flow.text(q.out_of_range, s.lang)))
                return self._reply(s, fm, notices=notices, changed=False)
            it = matching.interrupt_for(flow, text)
            if it is not None:
                return self._interrupt(s, fm, it, notices)
            s.misses += 1
            notices.append(self._notice("not_a_number", s.lang))
            return self._reply(s, fm, notices=notices)
        if q.kind == "checklist":
            typed = matching.clean(text)
            if typed == str(len(q.options) + 1):
                return self._answer(s, fm, q, [], notices)
            if typed == str(len(q.options) + 2):
                return self._choose(s, fm, q, Choose(q.id, 0, "d"), notices)
            it = matching.interrupt_for(flow, text)
            ticks = matching.checklist_ticks(flow, q, text, s.lang)
            if it is not None and not ticks:
                return self._interrupt(s, fm, it, notices)
            if ticks is not None:
                return self._answer(s, fm, q, ticks, notices)
        else:
            idx = matching.exact_option(flow, q, text, s.lang)
            if idx is not None:
                return self._answer(s, fm, q, idx, notices)
            it = matching.interrupt_for(flow, text)
            if it is not None:
                return self._interrupt(s, fm, it, notices)
            idx = matching.fuzzy_option(flow, q, text, s.lang)
            if idx is not None:
                return self._answer(s, fm, q, idx, notices)
        s.misses += 1
        notices.append(self._notice("not_understood", s.lang))
        if q.help:
            notices.append(self._fmt(flow.text(q.help, s.lang)))
        return self._reply(s, fm, notices=notices)

    def _answer(self, s: Session, fm: FlowMachine, q: Question, answer: Any,
                notices: list[str]) -> Reply:
        flow = fm.flow
        facts = dict(s.facts)
        facts.update(flow.answer_facts(q, answer))
        target, rule = fm.move(q.id, answer if q.kind == "choice" else None, flow.lookup(facts))
        words = self._answer_words(flow, q, answer, s.lang)
        s.history.append({"step": q.id, "answer": answer, "t": round(self.clock(), 3)})
        s.facts = facts
        s.step = target
        s.ticks = []
        s.misses = 0
        s.rule = rule if isinstance(flow.steps[target], Outcome) else None
        return self._reply(s, fm, notices=notices, answered=(q.id, words))

    def _interrupt(self, s: Session, fm: FlowMachine, it: Any, notices: list[str]) -> Reply:
        s.history.append({"step": s.step, "interrupt": it.id, "t": round(self.clock(), 3)})
        s.facts = {**s.facts, **it.sets}
        s.step = it.go
        s.rule = it.rule
        s.ticks = []
        s.misses = 0
        return self._reply(s, fm, notices=notices)

    def _back(self, s: Session, fm: FlowMachine, notices: list[str]) -> Reply:
        if not s.history:
            notices.append(self._notice("no_back", s.lang))
            return self._reply(s, fm, notices=notices, changed=False)
        entry = s.history.pop()
        s.step = entry["step"]
        s.facts = self._replay(fm, s.history)
        s.rule = None
        s.misses = 0
        ans = entry.get("answer")
        s.ticks = list(ans) if isinstance(ans, list) else []
        s.backs += 1
        backs_at = s.meta.setdefault("backs_at", {})
        backs_at[s.step] = backs_at.get(s.step, 0) + 1
        notices.append(self._notice("went_back", s.lang))
        return self._reply(s, fm, notices=notices)

    def _replay(self, fm: FlowMachine, history: list[dict[str, Any]]) -> dict[str, Any]:
        flow = fm.flow
        facts: dict[str, Any] = {}
        by_id = {it.id: it for it in flow.interrupts}
        for e in history:
            if "interrupt" in e:
                facts.update(by_id[e["interrupt"]].sets)
            else:
                q = flow.steps[e["step"]]
                assert isinstance(q, Question)
                facts.update(flow.answer_facts(q, e["answer"]))
        return facts

    # -- replies ---------------------------------------------------------------------------
    def _notice(self, key: str, lang: str) -> str:
        texts = NOTICES[key]
        return texts.get(lang) or texts["en"]

    def _fmt(self, text: str) -> str:
        if "{" in text:
            for k, v in self.placeholders.items():
                text = text.replace(k, v)
        return text

    def _answer_words(self, flow: Flow, q: Question, answer: Any, lang: str) -> str:
        if q.kind == "choice":
            return self._fmt(flow.text(q.options[answer].label, lang))
        if q.kind == "checklist":
            if not answer:
                return self._fmt(flow.text(q.none_label or DEFAULT_LABELS["none"], lang))
            return ", ".join(self._fmt(flow.text(q.options[i].label, lang)) for i in answer)
        return str(answer)

    def _reply(self, s: Session, fm: FlowMachine, *, notices: list[str] | None = None,
               welcome: str | None = None, answered: tuple[str, str] | None = None,
               changed: bool = True) -> Reply:
        flow = fm.flow
        step = flow.steps.get(s.step or "")
        qv = ov = None
        if isinstance(step, Outcome):
            ov = OutcomeView(
                step.id, step.disposition, s.rule or step.rule,
                self._fmt(flow.text(step.headline, s.lang)) if step.headline else "",
                self._fmt(flow.text(step.text, s.lang)),
                self._fmt(flow.text(step.safety_net, s.lang)) if step.safety_net else "",
            )
        elif isinstance(step, Question):
            qv = self._question_view(flow, step, s)
        return Reply(tuple(notices or ()), welcome, qv, ov, answered, changed,
                     bool(s.history), s.lang)

    def _question_view(self, flow: Flow, q: Question, s: Session) -> QuestionView:
        if q.kind == "checklist" and s.ticks:
            return self._build_view(flow, q, s.lang, set(s.ticks))
        fm = self.versions.get(flow.hash) or self.current
        key = (q.id, s.lang)
        view = fm._views.get(key)
        if view is None:
            view = fm._views[key] = self._build_view(flow, q, s.lang, set())
        return view

    def _build_view(self, flow: Flow, q: Question, lang: str, ticks: set[int]) -> QuestionView:
        opts: list[OptionView] = []
        if q.kind == "choice":
            opts = [OptionView(o.index + 1, self._fmt(flow.text(o.label, lang)), "a", o.index)
                    for o in q.options]
        elif q.kind == "checklist":
            opts = [OptionView(o.index + 1, self._fmt(flow.text(o.label, lang)), "t", o.index,
                               o.index in ticks) for o in q.options]
            n = len(opts)
            opts.append(OptionView(n + 1, flow.text(q.none_label or DEFAULT_LABELS["none"], lang),
                                   "n", 0))
            opts.append(OptionView(n + 2, flow.text(q.done_label or DEFAULT_LABELS["done"], lang),
                                   "d", 0))
        return QuestionView(q.id, q.kind, self._fmt(flow.text(q.text, lang)), tuple(opts),
                            flow.hash[:8])


def _copy(src: Session, dst: Session) -> None:
    for f in Session.__slots__:
        setattr(dst, f, getattr(src, f))
