"""Handoff to the clinic: on an urgent or routine outcome the patient may request an
appointment; with consent and a phone number, a summary card goes to the staff chat, where
staff tap "Called back" and the patient gets a confirmation. An emergency never offers booking
(it says go now) but the staff chat is told. With no staff chat configured nothing is offered.

The handoff's state and the patient's phone number live in the session (`meta["handoff"]`),
so /forget deletes them with it.
"""

from __future__ import annotations

import html
import logging
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import TelegramError

from bot.channels.service import StepResult, pseudonym
from bot.flow.catalogue import SHARED

if TYPE_CHECKING:
    from .app import TelegramBot

logger = logging.getLogger(__name__)

_PHONE = re.compile(r"^\+?[\d\s().-]{7,20}$")
BOOKABLE = ("urgent", "routine")

TEXTS: dict[str, dict[str, str]] = {
    "request": {"en": "📅 Request an appointment", "es": "📅 Pedir una cita"},
    "consent": {
        "en": "To arrange an appointment, the clinic's staff will see your answers and your "
              "phone number. Is that OK?",
        "es": "Para darle una cita, el personal de la clínica verá sus respuestas y su "
              "teléfono. ¿Está de acuerdo?",
    },
    "consent_yes": {"en": "Yes, share my answers", "es": "Sí, compartir mis respuestas"},
    "consent_no": {"en": "No, thanks", "es": "No, gracias"},
    "declined": {
        "en": "OK, nothing was shared. You can call the clinic at {clinic_phone}.",
        "es": "De acuerdo, no se compartió nada. Puede llamar a la clínica al {clinic_phone}.",
    },
    "ask_phone": {
        "en": "What phone number can the clinic call? Tap the button below to share it, or "
              "type it (for example 817 555 0100).",
        "es": "¿A qué teléfono le puede llamar la clínica? Toque el botón de abajo para "
              "compartirlo, o escríbalo (por ejemplo 817 555 0100).",
    },
    "share_phone": {"en": "📱 Share my phone number", "es": "📱 Compartir mi teléfono"},
    "bad_phone": {
        "en": "That doesn't look like a phone number. Please type it with the area code, "
              "like 817 555 0100.",
        "es": "Eso no parece un número de teléfono. Escríbalo con el código de área, por "
              "ejemplo 817 555 0100.",
    },
    "sent": {
        "en": "Thank you. The clinic has your request and will call you at {phone}. If things "
              "get worse before then, don't wait: go to the emergency department or call 911.",
        "es": "Gracias. La clínica recibió su solicitud y le llamará al {phone}. Si empeora "
              "antes, no espere: vaya a emergencias o llame al 911.",
    },
    "called_back": {
        "en": "The clinic has marked your appointment request as handled. If you missed their "
              "call, phone {clinic_phone}.",
        "es": "La clínica marcó su solicitud de cita como atendida. Si no recibió la llamada, "
              "llame al {clinic_phone}.",
    },
}


def tr(key: str, lang: str, **kw: str) -> str:
    text = TEXTS[key].get(lang) or TEXTS[key]["en"]
    return text.format(**kw) if kw else text


def valid_phone(text: str) -> str | None:
    """A phone number as typed, tidied; None if it is not one."""
    text = text.strip()
    digits = re.sub(r"\D", "", text)
    if not _PHONE.match(text) or not 7 <= len(digits) <= 15:
        return None
    return ("+" if text.startswith("+") else "") + digits


def _plain(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value).replace("_", " ")


RED_FLAG_FACTS = ("bladder_bowel_changes", "saddle_numbness", "balance_problems",
                  "other_emergency_symptoms", "fever", "iv_drug_use", "immunosuppressed",
                  "recent_spinal_procedure", "cancer_history", "weight_loss",
                  "steroid_use_or_osteoporosis", "night_pain")


def summary_card(session: dict[str, Any], flow: Any, phone: str | None, disposition: str,
                 rule: str | None, patient: str) -> str:
    """The staff card: facts in plain words, red flags, STarT Back risk, disposition, rule."""
    facts = flow.all_facts(session.get("facts", {}))
    flags = [k.replace("_", " ") for k in RED_FLAG_FACTS if facts.get(k) is True]
    if facts.get("weakness") in ("mild_one_leg", "severe_or_progressive"):
        flags.append("weakness: " + _plain(facts["weakness"]))
    if facts.get("leg_pain") == "both_legs" or facts.get("numbness_tingling") == "both_legs":
        flags.append("symptoms in both legs")
    when = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = "🚨 EMERGENCY advice given" if disposition == "emergency" else \
        "📅 Appointment request"
    lines = [f"<b>{head}</b>",
             f"Disposition: <b>{html.escape(disposition)}</b> (rule {html.escape(rule or '-')})"]
    if phone:
        lines.append(f"Phone: <b>{html.escape(phone)}</b>")
    lines += [
        f"Red flags: {html.escape(', '.join(flags) or 'none')}",
        f"STarT Back risk: {html.escape(_plain(facts.get('startback_risk', 'not asked')))}",
        "",
        "<b>Answers</b>",
    ]
    for name, value in facts.items():
        if name in SHARED or name.startswith("startback"):
            lines.append(f"• {html.escape(name.replace('_', ' '))}: "
                         f"{html.escape(_plain(value))}")
    lines += ["", f"Flow {html.escape(flow.id)} v{html.escape(flow.version)} "
                  f"({html.escape(flow.hash[:8])}), language {html.escape(session.get('lang', ''))}",
              f"Patient ref {html.escape(patient)}, {when}"]
    return "\n".join(lines)


class Handoff:
    """The appointment request conversation and the staff chat cards."""

    def __init__(self, staff_chat_id: int, clinic_phone: str):
        self.staff_chat_id = staff_chat_id
        self.clinic_phone = clinic_phone

    def outcome_buttons(self, res: StepResult) -> list[list[InlineKeyboardButton]] | None:
        out = res.reply.outcome
        if out is None or out.disposition not in BOOKABLE:
            return None
        if (res.session.get("meta", {}).get("handoff") or {}).get("state") == "sent":
            return None
        return [[InlineKeyboardButton(tr("request", res.reply.lang), callback_data="h|req")]]

    async def on_outcome(self, bot: TelegramBot, chat_id: int, key: str,
                         res: StepResult) -> None:
        """An emergency never offers booking, but the staff chat is told."""
        out = res.finished
        if out is None or out.disposition != "emergency":
            return
        flow = bot.engine.versions.get(res.session.get("hash", ""))
        card = summary_card(res.session, flow.flow if flow else bot.engine.flow, None,
                            out.disposition, out.rule, pseudonym(key, bot.settings.pseudonym_key))
        await self._post(bot, card, None)

    async def on_callback(self, bot: TelegramBot, update: Update, key: str) -> bool:
        cq = update.callback_query
        if cq is None or not (cq.data or "").startswith("h|"):
            return False
        parts = (cq.data or "").split("|")
        chat = update.effective_chat
        assert chat is not None
        if parts[1:2] == ["done"] and chat.id == self.staff_chat_id and len(parts) == 3:
            await self._called_back(bot, update, parts[2])
            return True
        if chat.id == self.staff_chat_id:
            return False
        data, version = await bot.service.load(key)
        lang = (data or {}).get("lang") or "en"
        outcome = self._outcome(bot, data)
        await bot._answer_cq(cq)
        if outcome is None or outcome not in BOOKABLE:
            return False
        msg_id = cq.message.message_id if cq.message is not None else None
        if parts[1:2] == ["req"]:
            await bot._send(chat.id, [_out(tr("consent", lang), InlineKeyboardMarkup([
                [InlineKeyboardButton(tr("consent_yes", lang), callback_data="h|yes")],
                [InlineKeyboardButton(tr("consent_no", lang), callback_data="h|no")]]))])
            return True
        if parts[1:2] == ["yes"]:
            await bot._remove_buttons(chat.id, msg_id)
            await bot.service.update_meta(key, version, {"handoff": {"state": "phone"}})
            kb = ReplyKeyboardMarkup([[KeyboardButton(tr("share_phone", lang),
                                                      request_contact=True)]],
                                     resize_keyboard=True, one_time_keyboard=True)
            await bot._call(chat.id, bot.app.bot.send_message,  # type: ignore[union-attr]
                            chat.id, tr("ask_phone", lang), reply_markup=kb)
            return True
        if parts[1:2] == ["no"]:
            await bot._remove_buttons(chat.id, msg_id)
            await bot._send(chat.id, [_out(tr("declined", lang, clinic_phone=self.clinic_phone))])
            return True
        return False

    async def on_contact(self, bot: TelegramBot, update: Update, key: str) -> bool:
        msg = update.message
        if msg is None or msg.contact is None:
            return False
        data, version = await bot.service.load(key)
        if ((data or {}).get("meta", {}).get("handoff") or {}).get("state") != "phone":
            return False
        own = msg.contact.user_id is None or (update.effective_user is not None and
                                              msg.contact.user_id == update.effective_user.id)
        phone = valid_phone(msg.contact.phone_number or "") if own else None
        return await self._got_phone(bot, update, key, data or {}, version, phone)

    async def on_text(self, bot: TelegramBot, update: Update, key: str) -> bool:
        msg = update.message
        if msg is None or msg.text is None:
            return False
        data, version = await bot.service.load(key)
        handoff = (data or {}).get("meta", {}).get("handoff") or {}
        if handoff.get("state") != "phone":  # (the number itself, delivered again: taken)
            return bool(handoff.get("update") == update.update_id)
        if not await bot.first_delivery(update):
            return True  # the same message again, or on another instance at once
        return await self._got_phone(bot, update, key, data or {}, version,
                                     valid_phone(msg.text))

    async def _got_phone(self, bot: TelegramBot, update: Update, key: str, data: dict[str, Any],
                         version: int, phone: str | None) -> bool:
        chat = update.effective_chat
        assert chat is not None
        lang = data.get("lang") or "en"
        if phone is None:
            await bot._send(chat.id, [_out(tr("bad_phone", lang))])
            return True
        outcome = self._outcome(bot, data)
        fm = bot.engine.versions.get(data.get("hash", ""))
        flow = fm.flow if fm else bot.engine.flow
        step = flow.steps.get(data.get("step") or "")
        rule = data.get("rule") or getattr(step, "rule", None)
        card = summary_card(data, flow, phone, outcome or "-", rule,
                            pseudonym(key, bot.settings.pseudonym_key))
        card_id = await self._post(bot, card, InlineKeyboardMarkup([[InlineKeyboardButton(
            "✅ Called back", callback_data=f"h|done|{chat.id}")]]))
        await bot.service.update_meta(key, version, {"handoff": {
            "state": "sent", "phone": phone, "card": card_id, "at": time.time(),
            "update": update.update_id}})
        await bot._call(chat.id, bot.app.bot.send_message,  # type: ignore[union-attr]
                        chat.id, tr("sent", lang, phone=phone), reply_markup=ReplyKeyboardRemove())
        logger.info("appointment request from %s sent to the staff chat",
                    pseudonym(key, bot.settings.pseudonym_key))
        return True

    async def _called_back(self, bot: TelegramBot, update: Update, chat_ref: str) -> None:
        cq = update.callback_query
        assert cq is not None
        card = cq.message.message_id if cq.message is not None else None
        patient_chat = int(chat_ref) if chat_ref.lstrip("-").isdigit() else None
        done, lang = await self._mark_called_back(bot, f"tg:{patient_chat}", card) \
            if patient_chat is not None else ("gone", "")
        if done == "already":  # a second tap, or a nurse on the other instance was quicker
            await bot._answer_cq(cq, "Already marked as called back")
            return
        await bot._answer_cq(cq, "Marked as called back")
        who = update.effective_user.first_name if update.effective_user else "staff"
        if cq.message is not None:
            text = getattr(cq.message, "text_html", None) or ""
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            await bot._edit(self.staff_chat_id, cq.message.message_id,
                            f"{text}\n\n✅ Called back by {html.escape(who)} at {stamp}")
        if patient_chat is not None and done == "marked":
            await bot._send(patient_chat, [_out(tr("called_back", lang,
                                                   clinic_phone=self.clinic_phone))])

    async def _mark_called_back(self, bot: TelegramBot, key: str,
                                card: int | None) -> tuple[str, str]:
        """Mark the request on ``card`` called back, as a compare-and-set: ("marked", the
        patient's language) when this tap did it, ("already", "") when it was marked before,
        ("gone", "") when there is nothing to mark (the patient asked to be forgotten)."""
        for _attempt in range(3):
            data, version = await bot.service.load(key)
            if not data:
                return "gone", ""
            handoff = dict((data.get("meta") or {}).get("handoff") or {})
            if handoff.get("card") != card:  # a request the patient has made again since
                return "gone", ""
            if handoff.get("state") == "called_back":
                return "already", ""
            handoff["state"] = "called_back"
            if await bot.service.update_meta(key, version, {"handoff": handoff}) is not None:
                return "marked", str(data.get("lang") or "en")
        return "gone", ""  # the conversation keeps moving: no message rather than two

    async def forget(self, key: str) -> None:
        """The session (with the phone number) is deleted by the service; nothing else kept."""
        return None

    async def _post(self, bot: TelegramBot, card: str,
                    markup: InlineKeyboardMarkup | None) -> int | None:
        try:
            msg = await bot._call(self.staff_chat_id, bot.app.bot.send_message,  # type: ignore
                                  self.staff_chat_id, card, parse_mode=ParseMode.HTML,
                                  reply_markup=markup)
            return int(msg.message_id) if msg is not None else None
        except TelegramError as exc:
            bot.metrics.error("staff_chat")
            logger.error("could not post to the staff chat: %s", type(exc).__name__)
            return None

    def _outcome(self, bot: TelegramBot, data: dict[str, Any] | None) -> str | None:
        if not data:
            return None
        fm = bot.engine.versions.get(data.get("hash", ""))
        flow = fm.flow if fm else bot.engine.flow
        step = flow.steps.get(data.get("step") or "")
        return getattr(step, "disposition", None)


def _out(text: str, markup: InlineKeyboardMarkup | None = None) -> Any:
    from .render import Out, esc

    return Out(esc(text), markup)
