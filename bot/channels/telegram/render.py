"""Engine replies as Telegram messages: HTML-escaped text, split under 4096 characters, and
inline keyboards whose callback data fits in 64 bytes."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.engine import OutcomeView, QuestionView, Reply
from bot.flow.limits import MAX_MESSAGE_CHARS, button_data

from .texts import t

EMERGENCY_MARK = "🚨 "


@dataclass
class Out:
    """One message to send."""

    text: str
    markup: InlineKeyboardMarkup | None = None
    question: str | None = None  # the question step this message asks
    meta: dict[str, Any] = field(default_factory=dict)


def esc(text: str) -> str:
    return html.escape(text, quote=False)


def split_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Split on paragraph boundaries (then lines, then hard) so each part fits."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for para in text.split("\n\n"):
        candidate = f"{current}\n\n{para}" if current else para
        if len(candidate) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        while len(para) > limit:
            cut = para.rfind("\n", 0, limit)
            if cut <= 0:
                cut = para.rfind(" ", 0, limit)
            if cut <= 0:
                cut = limit
            parts.append(para[:cut])
            para = para[cut:].lstrip()
        current = para
    if current:
        parts.append(current)
    return parts


def question_keyboard(q: QuestionView, lang: str, can_go_back: bool) -> InlineKeyboardMarkup:
    rows: list[list[InlineKeyboardButton]] = []
    for o in q.options:
        label = o.label
        if o.action == "t":
            label = ("✅ " if o.ticked else "⬜ ") + label
        rows.append([InlineKeyboardButton(label, callback_data=button_data(
            o.action, q.flow_hash, q.step, o.index))])
    if can_go_back:
        rows.append([InlineKeyboardButton(t("back_button", lang), callback_data=button_data(
            "b", q.flow_hash, q.step, 0))])
    return InlineKeyboardMarkup(rows)


def outcome_keyboard(o: OutcomeView, flow_hash: str, lang: str,
                     extra: list[list[InlineKeyboardButton]] | None = None
                     ) -> InlineKeyboardMarkup:
    rows = list(extra or [])
    rows.append([InlineKeyboardButton(t("change_answer", lang),
                                      callback_data=button_data("b", flow_hash, o.step, 0))])
    rows.append([InlineKeyboardButton(t("start_again", lang),
                                      callback_data=button_data("r", flow_hash, o.step, 0))])
    return InlineKeyboardMarkup(rows)


def question_text(q: QuestionView, lang: str) -> str:
    """The question as the flow words it (it says "tap all that apply" or "type a number")."""
    return esc(q.text)


def outcome_text(o: OutcomeView) -> str:
    parts = []
    if o.headline:
        mark = EMERGENCY_MARK if o.disposition == "emergency" else ""
        parts.append(f"{mark}<b>{esc(o.headline)}</b>")
    if o.text:
        parts.append(esc(o.text))
    if o.safety_net:
        parts.append(esc(o.safety_net))
    return "\n\n".join(parts)


def render(reply: Reply, flow_hash: str, *, outcome_extra: list[list[InlineKeyboardButton]]
           | None = None) -> list[Out]:
    """The messages for a reply: notices and welcome go first, in the same message as the
    question when they fit (fewer messages, fewer Bot API calls)."""
    lang = reply.lang
    head = [f"<i>{esc(n)}</i>" for n in reply.notices]
    if reply.welcome:
        head.append(esc(reply.welcome))
    outs: list[Out] = []
    if reply.question is not None:
        body = question_text(reply.question, lang)
        kb = question_keyboard(reply.question, lang, reply.can_go_back)
        prefix = "\n\n".join(head)
        if prefix and len(prefix) + 2 + len(body) <= MAX_MESSAGE_CHARS:
            outs.append(Out(prefix + "\n\n" + body, kb, reply.question.step))
        else:
            outs += [Out(x) for x in split_text(prefix)] if prefix else []
            outs.append(Out(body, kb, reply.question.step))
        return outs
    if reply.outcome is not None:
        o = reply.outcome
        if o.disposition == "emergency":
            # the emergency instruction first and alone, before anything else
            body = outcome_text(o)
            parts = split_text(body)
            parts[0] = parts[0]
            outs += [Out(p) for p in parts[:-1]]
            outs.append(Out(parts[-1], outcome_keyboard(o, flow_hash, lang, outcome_extra)))
            if head:
                outs.append(Out("\n\n".join(head)))
            return outs
        body = outcome_text(o)
        if head:
            body = "\n\n".join(head) + "\n\n" + body
        parts = split_text(body)
        outs += [Out(p) for p in parts[:-1]]
        outs.append(Out(parts[-1], outcome_keyboard(o, flow_hash, lang, outcome_extra)))
        return outs
    if head:
        outs += [Out(x) for x in split_text("\n\n".join(head))]
    return outs


def answered_text(question_text_html: str, answer: str) -> str:
    """The old question message, as a record of the answer (no buttons)."""
    text = f"{question_text_html}\n\n✔️ <b>{esc(answer)}</b>"
    return text if len(text) <= MAX_MESSAGE_CHARS else text[-MAX_MESSAGE_CHARS:]
