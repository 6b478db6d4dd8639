"""The Telegram channel: python-telegram-bot's Application in polling or webhook mode.

Every update goes through one handler. Updates of different chats run concurrently; updates
of one chat strictly in order (`PerChatProcessor`). Sessions live in our own store, read fresh
for each update (PTB's persistence is not used: it is not safe for several processes).
Logs carry update ids, hashed chat ids, states and timings, never message text or answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from telegram import (
    BotCommand,
    BotCommandScopeDefault,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application, BaseUpdateProcessor, ContextTypes, TypeHandler

from bot import eventloop
from bot.channels.service import ConversationService, StepResult, pseudonym
from bot.engine import Back, Choose, Engine, Input, Restart, SetLanguage, Start, Text
from bot.engine.io import Reply
from bot.flow.limits import MAX_CALLBACK_ANSWER_CHARS, parse_button_data
from bot.settings import Settings

from .limits import MessageRateLimiter
from .metrics import Metrics
from .render import Out, answered_text, esc, question_text, render
from .texts import COMMANDS, t

logger = logging.getLogger(__name__)

NETWORK_RETRIES = (0.5, 1.0, 2.0)
DUPLICATE_WAIT_SECONDS = 3.0  # how long a redelivered update waits for its first reply
DUPLICATE_WAIT_POLLS = 15
UNANSWERED_GRACE = 5.0  # listed at start-up, a crash's unanswered updates are answered this much later
UNANSWERED_MAX_AGE = 3600.0  # older than this, a cut update is not answered any more
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
POOL_SIZE = 64  # connections to the Bot API (updates of up to 256 chats run at once)


class PerChatProcessor(BaseUpdateProcessor):
    """Concurrent across chats, strictly in order within one chat (a FIFO lock per chat)."""

    def __init__(self, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self._locks: dict[Any, asyncio.Lock] = {}
        self._waiting: dict[Any, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = None
        if isinstance(update, Update) and update.effective_chat is not None:
            key = update.effective_chat.id
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key]
                self._locks.pop(key, None)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


def _command_name(text: str) -> str:
    """``/Start@our_bot now`` -> ``start``."""
    return text.split()[0][1:].split("@")[0].lower()


class TelegramBot:
    """Turns Telegram updates into engine inputs and engine replies into messages."""

    def __init__(self, settings: Settings, engine: Engine, service: ConversationService,
                 metrics: Metrics | None = None,
                 reload: Callable[[], Awaitable[str]] | None = None,
                 handoff: Any | None = None):
        self.settings = settings
        self.engine = engine
        self.service = service
        self.metrics = metrics or Metrics()
        self.reload = reload
        self.handoff = handoff
        self._blocked: OrderedDict[int, None] = OrderedDict()
        self.app: Application[Any, Any, Any, Any, Any, Any] | None = None

    # -- building ----------------------------------------------------------------------------
    def build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        s = self.settings
        assert s.token, "TELEGRAM_BOT_TOKEN is needed"
        builder = (Application.builder().token(s.token)
                   .concurrent_updates(PerChatProcessor(256))
                   .rate_limiter(MessageRateLimiter(max_retries=3)))
        builder = self._with_http(builder)
        if s.base_url:
            builder = builder.base_url(s.base_url).base_file_url(
                s.base_url.replace("/bot", "/file/bot", 1))
        app = builder.build()
        app.add_handler(TypeHandler(Update, self.on_update))
        app.add_error_handler(self.on_error)
        self.app = app
        return app

    def _with_http(self, builder: Any) -> Any:
        """Bot API requests over aiohttp when it is installed (see request.py: several times
        less CPU per request than PTB's httpx), else PTB's own httpx client."""
        try:
            from .request import AiohttpRequest
        except ImportError:
            logger.info("Bot API requests over httpx (install aiohttp: ~3x less CPU)")
            return builder.connection_pool_size(POOL_SIZE).pool_timeout(10.0)
        return builder.request(AiohttpRequest(POOL_SIZE))

    async def set_commands(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Set the command menu, per language."""
        for lang, commands in COMMANDS.items():
            try:
                await app.bot.set_my_commands(
                    [BotCommand(c, d) for c, d in commands], scope=BotCommandScopeDefault(),
                    language_code=None if lang == "en" else lang)
            except TelegramError as exc:
                logger.warning("could not set the %s command menu: %s", lang, exc)

    # -- one update --------------------------------------------------------------------------
    async def on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        started = time.perf_counter()
        chat = update.effective_chat
        kind = _kind(update)
        self.metrics.update(kind)
        if chat is None and update.callback_query is not None:
            # a button under an inline-mode message (we post none): stop the client's spinner
            with contextlib.suppress(TelegramError):
                await self._answer_cq(update.callback_query,
                                      t("unknown_button", self._user_lang(update) or "en"))
            return
        if chat is None or update.channel_post or update.edited_channel_post:
            return  # nothing private to answer
        if self.handoff is not None and update.callback_query is not None and \
                chat.id == self.settings.staff_chat_id:
            try:  # "Called back" on a card in the staff chat (once, if delivered again)
                if await self.first_delivery(update):
                    await self.handoff.on_callback(self, update, f"tg:{chat.id}")
            except Exception:
                self.metrics.error("handler")
                logger.exception("staff chat button failed")
            return
        if chat.type != ChatType.PRIVATE:
            if update.message is not None:
                await self._send_plain(chat.id, t("group", self._user_lang(update) or "en"))
            return
        key = f"tg:{chat.id}"
        try:
            await self._private(update, key)
        except Exception:
            self.metrics.error("handler")
            logger.exception("update %s for chat %s failed", update.update_id,
                             pseudonym(key, self.settings.pseudonym_key))
            await self._apologise(update, key)
        finally:
            self.metrics.latency(time.perf_counter() - started)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        self.metrics.error(type(err).__name__ if err else "unknown")
        logger.error("error outside a handler: %s", type(err).__name__ if err else err)

    def _user_lang(self, update: Update) -> str | None:
        user = update.effective_user
        code = (user.language_code or "")[:2].lower() if user else ""
        return code if code in self.engine.flow.languages else None

    async def first_delivery(self, update: Update) -> bool:
        """False when this update was handled before (Telegram delivered it again, or to
        two instances at once): marked in the store (``mark_update``, atomic), by its id
        together with its chat and message or button press, so that a test double that
        numbers its updates from 1 again cannot make a new message look like an old one.
        The mark is a keyed hash of those (``PSEUDONYM_KEY``): no chat can be read back
        from it, before it expires a day later (it outlives /forget)."""
        cq = update.callback_query
        msg = update.effective_message
        return await self._claim(
            update.update_id, update.effective_chat.id if update.effective_chat else 0,
            cq.id if cq is not None else msg.message_id if msg is not None else 0)

    async def _claim(self, *what: object) -> bool:
        """True for the first instance to claim ``what`` in the store (for a day), False
        for any later claim: a keyed hash marked with ``mark_update``."""
        digest = hashlib.blake2b(repr(what).encode(), digest_size=8,
                                 key=self.settings.pseudonym_key.encode()[:64]).digest()
        return await self.service.store.mark_update(int.from_bytes(digest) >> 1)

    @staticmethod
    def _kept_in_session(update: Update) -> bool:
        """Whether a redelivery of this update is recognised by the session, which keeps the
        ids of the updates it applied (atomically with the step): the answers (a typed one,
        a conversation button) and /start, /back and /restart."""
        if update.callback_query is not None:
            return parse_button_data(update.callback_query.data or "") is not None
        text = update.message.text if update.message is not None else None
        if text is None:
            return False
        if not text.startswith("/"):
            return True
        return _command_name(text) in ("start", "back", "restart")

    async def _private(self, update: Update, key: str) -> None:
        lang = self._user_lang(update)
        uid = update.update_id
        chat_id = update.effective_chat.id  # type: ignore[union-attr]
        if not self._kept_in_session(update) and not await self.first_delivery(update):
            # Telegram delivered it again (or to two instances): the /forget buttons, /help,
            # a sticker... were answered once already; nothing is sent twice
            logger.info("update %s seen before: ignored", uid)
            return
        if update.callback_query is not None:
            await self._callback(update, key, lang)
            return
        if update.edited_message is not None:
            await self._note_and_view(chat_id, key, "edited", lang)
            return
        msg = update.message
        if msg is None:
            return
        if msg.text is None:
            if self.handoff is not None and msg.contact is not None and \
                    await self.handoff.on_contact(self, update, key):
                return
            await self._note_and_view(chat_id, key, "not_text", lang)
            return
        text = msg.text
        if text.startswith("/"):
            await self._command(update, key, text, lang)
            return
        if self.handoff is not None and await self.handoff.on_text(self, update, key):
            return
        await self._step(chat_id, key, Text(text), uid, lang)

    async def _command(self, update: Update, key: str, text: str, lang: str | None) -> None:
        chat_id = update.effective_chat.id  # type: ignore[union-attr]
        uid = update.update_id
        name = _command_name(text)
        data, _ = await self.service.load(key)
        slang = (data or {}).get("lang") or lang or self.engine.flow.default_language
        if name == "start":
            step = (data or {}).get("step")
            in_progress = bool(step and (data or {}).get("history")) and not self._is_outcome(
                data or {})
            # a redelivered /start (already applied: its update id is in the session) is not
            # a patient asking to start over
            if in_progress and uid not in ((data or {}).get("updates") or ()):
                await self._send(chat_id, [Out(esc(t("confirm_restart", slang)),
                                               _buttons([(t("yes_start_over", slang), "x|restart"),
                                                         (t("no_continue", slang), "x|continue")]))])
                return
            await self._step(chat_id, key, Start(lang), uid, lang)
        elif name == "back":
            await self._step(chat_id, key, Back(), uid, lang)
        elif name == "restart":
            await self._step(chat_id, key, Restart(), uid, lang)
        elif name == "help":
            await self._note_and_view(chat_id, key, "help", slang)
        elif name == "language":
            await self._send(chat_id, [Out(esc(t("choose_language", slang)), _buttons(
                [("English", "l|en"), ("Español", "l|es")]))])
        elif name == "privacy":
            s = self.settings
            text_ = t("privacy", slang).format(session_days=s.session_ttl // 86400,
                                               audit_days=s.audit_ttl // 86400)
            await self._send(chat_id, [Out(esc(text_))])
        elif name == "forget":
            await self._send(chat_id, [Out(esc(t("forget_confirm", slang)), _buttons(
                [(t("forget_yes", slang), "f|yes"), (t("forget_no", slang), "f|no")]))])
        elif name == "reload" and self.reload is not None and update.effective_user is not None \
                and update.effective_user.id in self.settings.admin_ids:
            result = await self.reload()
            await self._send(chat_id, [Out(esc(result))])
        else:
            await self._note_and_view(chat_id, key, "unknown_command", slang)

    async def _callback(self, update: Update, key: str, lang: str | None) -> None:
        cq = update.callback_query
        assert cq is not None
        chat_id = update.effective_chat.id  # type: ignore[union-attr]
        data = cq.data or ""
        uid = update.update_id
        msg_id = cq.message.message_id if cq.message is not None else None
        parsed = parse_button_data(data)
        if parsed is not None:
            action, fhash, step, option = parsed
            if action in ("b", "r"):
                stored, _ = await self.service.load(key)
                current = (stored or {}).get("step")
                if current != step or not str((stored or {}).get("hash", "")).startswith(fhash):
                    await self._stale(cq, chat_id, key, lang, msg_id)
                    return
                await _together(self._answer_cq(cq), self._step(
                    chat_id, key, Back(step) if action == "b" else Restart(step), uid, lang,
                    tapped=msg_id))
                return
            inp: Input = Choose(step, option, action, fhash)
            res = await self.service.step(key, inp, update_id=uid, lang=lang)
            if not res.reply.changed and not res.duplicate:
                await self._stale(cq, chat_id, key, lang, msg_id, res)
                return
            # the tap's answer goes out with the reply, not before it: one round trip less
            if action == "t" and res.reply.question is not None and msg_id is not None \
                    and res.reply.answered is None and not res.duplicate:
                outs = render(res.reply, res.session.get("hash", ""))
                await _together(self._answer_cq(cq),
                                self._edit_markup(chat_id, msg_id, outs[-1].markup))
                await self.service.update_meta(key, res.version, {}, replied=uid)
                return
            await _together(self._answer_cq(cq),
                            self._deliver(chat_id, key, res, uid, tapped=msg_id))
            return
        meta = data.split("|")
        if meta[:1] == ["x"] and meta[1:] in (["restart"], ["continue"]):
            await self._answer_cq(cq)
            await self._remove_buttons(chat_id, msg_id)
            if meta[1] == "restart":
                await self._step(chat_id, key, Restart(), uid, lang)
            else:
                await self._view(chat_id, key, lang)
            return
        if meta[:1] == ["l"] and meta[1:2] and meta[1] in self.engine.flow.languages:
            await self._answer_cq(cq)
            await self._remove_buttons(chat_id, msg_id)
            await self._send(chat_id, [Out(esc(t("language_set", meta[1])))])
            stored, _ = await self.service.load(key)
            if stored and stored.get("step"):
                await self._step(chat_id, key, SetLanguage(meta[1]), uid, meta[1])
            else:
                await self._step(chat_id, key, Start(meta[1]), uid, meta[1])
            return
        if meta[:1] == ["f"] and meta[1:] in (["yes"], ["no"]):
            await self._answer_cq(cq)
            await self._remove_buttons(chat_id, msg_id)
            stored, _ = await self.service.load(key)
            slang = (stored or {}).get("lang") or lang or self.engine.flow.default_language
            if meta[1] == "yes":
                await self.service.forget(key)
                if self.handoff is not None:
                    await self.handoff.forget(key)
                logger.info("patient %s asked to be forgotten: done",
                            pseudonym(key, self.settings.pseudonym_key))
                await self._send(chat_id, [Out(esc(t("forgotten", slang)))])
            else:
                await self._send(chat_id, [Out(esc(t("kept", slang)))])
            return
        if self.handoff is not None and await self.handoff.on_callback(self, update, key):
            return
        await self._stale(cq, chat_id, key, lang, None, unknown=True)

    # -- steps and replies -------------------------------------------------------------------
    async def _step(self, chat_id: int, key: str, inp: Input, uid: int, lang: str | None,
                    tapped: int | None = None) -> StepResult:
        res = await self.service.step(key, inp, update_id=uid, lang=lang)
        await self._deliver(chat_id, key, res, uid, tapped=tapped)
        return res

    async def _deliver(self, chat_id: int, key: str, res: StepResult, uid: int,
                       tapped: int | None = None) -> None:
        """Send the reply; turn the answered question into a record; remember message ids."""
        meta = res.session.get("meta", {})
        if res.duplicate:
            # a redelivered update changes nothing. If its first delivery (maybe on another
            # instance) has not answered yet, give it a moment; answer only if it never does
            # (it died between saving and replying).
            for _ in range(DUPLICATE_WAIT_POLLS):
                if uid in meta.get("replied", []):
                    return
                await asyncio.sleep(DUPLICATE_WAIT_SECONDS / DUPLICATE_WAIT_POLLS)
                fresh, _ = await self.service.load(key)
                meta = (fresh or {}).get("meta", {})
            if uid in meta.get("replied", []):
                return
        reply = res.reply
        qmsg = meta.get("qmsg") or {}
        handled: set[int] = set()
        edits: list[Awaitable[None]] = []
        if reply.answered is not None and not res.duplicate:
            step, words = reply.answered
            target = tapped if tapped is not None else (
                qmsg.get("id") if qmsg.get("step") == step else None)
            if target is not None and qmsg.get("id") == target and qmsg.get("html"):
                edits.append(self._edit(chat_id, target, answered_text(qmsg["html"], words)))
                handled.add(target)
        # the buttons of the screen being replaced go, so old screens read as a record
        for old in (tapped, qmsg.get("id")):
            if old is not None and old not in handled and (reply.question or reply.outcome):
                handled.add(old)
                edits.append(self._remove_buttons(chat_id, old))
        outs = render(reply, res.session.get("hash", ""),
                      outcome_extra=self._outcome_extra(res))
        if reply.changed and not res.duplicate:
            # a step: old screens are edited while the new one is sent, one round trip instead
            # of two (if the send never happens, the session says so: see answer_unanswered)
            sent, *_ = await _together(self._send(chat_id, outs), *edits)
        else:
            # the same screen again (a stale button, /help, a redelivered update, a late
            # answer): the old copy keeps its buttons until the new one is out, since a send
            # may wait its turn under the flood limit and nothing would send it again
            sent = await self._send(chat_id, outs)
            await _together(*edits)
        changes: dict[str, Any] = {}
        if reply.question is not None and sent:
            changes["qmsg"] = {"id": sent[-1], "step": reply.question.step,
                               "html": question_text(reply.question, reply.lang)}
        elif reply.outcome is not None and sent:
            changes["qmsg"] = {"id": sent[-1], "step": reply.outcome.step, "html": None}
        if res.finished is not None:
            self.metrics.disposition(res.finished.disposition, res.finished.rule)
            if self.handoff is not None:
                await self.handoff.on_outcome(self, chat_id, key, res)
        await self.service.update_meta(key, res.version, changes, replied=uid)

    def _outcome_extra(self, res: StepResult) -> list[list[InlineKeyboardButton]] | None:
        if self.handoff is None or res.reply.outcome is None:
            return None
        extra: list[list[InlineKeyboardButton]] | None = self.handoff.outcome_buttons(res)
        return extra

    def _is_outcome(self, data: dict[str, Any]) -> bool:
        fm = self.engine.versions.get(data.get("hash", ""))
        flow = fm.flow if fm else self.engine.flow
        step = flow.steps.get(data.get("step") or "")
        return bool(step is not None and step.is_outcome)

    async def _view(self, chat_id: int, key: str, lang: str | None,
                    notice: str | None = None, uid: int = -1) -> None:
        """Show the current screen again (`uid`: the update this answers, if any)."""
        data, version = await self.service.load(key)
        if data is None or not data.get("step") or "corrupt" in data:
            res = await self.service.step(key, Start(lang), lang=lang)
            reply = res.reply
            if notice:
                reply = _with_notice(reply, notice)
            await self._deliver(chat_id, key, StepResult(reply, res.session, res.version),
                                uid)
            return
        reply = self.engine.view(data, lang)
        if notice:
            reply = _with_notice(reply, notice)
        await self._deliver(chat_id, key, StepResult(reply, data, version), uid)

    async def unanswered(self, started: float) -> dict[str, tuple[int, float]]:
        """After a crash: the patients whose last update was saved but never answered.

        Telegram does not send an update again once the bot has taken it (webhook: answered
        200; polling: confirmed by the next getUpdates), and python-telegram-bot takes it
        before handling it; a process killed between saving a step and replying leaves the
        patient waiting. Each session says which updates were applied (`updates`) and which
        were answered (`meta.replied`): this lists the sessions last written before this
        process started (and within UNANSWERED_MAX_AGE) whose last update has no answer, as
        key -> (that update's id, the session's `updated`). Take it at start-up and give it
        to `answer_unanswered` a few seconds later."""
        found: dict[str, tuple[int, float]] = {}
        for key, data in await self.service.store.sessions():
            if not key.startswith("tg:"):
                continue
            updates = data.get("updates") or []
            meta = data.get("meta") or {}
            updated = data.get("updated")
            if (not updates or updates[-1] in (meta.get("replied") or [])
                    or not isinstance(updated, int | float)
                    or not started - UNANSWERED_MAX_AGE <= updated <= started):
                continue
            found[key] = (updates[-1], updated)
        return found

    async def answer_unanswered(self, started: float,
                                found: dict[str, tuple[int, float]] | None = None) -> int:
        """Show each patient of `found` (`unanswered(started)`, taken a few seconds ago; now if
        not given) their current screen again, once, with a short apology; but only if their
        session has not moved since: one that moved (a later update, or the answer given
        after all) is in the hands of a live instance, and a screen from here could replace
        the one the patient is using. Returns how many were answered."""
        if found is None:
            found = await self.unanswered(started)
        answered = 0
        for key, (uid, updated) in found.items():
            try:
                data, _ = await self.service.load(key)
                if (not data or (data.get("updates") or [None])[-1] != uid
                        or data.get("updated") != updated
                        or uid in ((data.get("meta") or {}).get("replied") or [])
                        or not await self._claim("late", key, uid)):
                    continue  # (claimed: all instances restarted at once, one answers)
                lang = data.get("lang")
                await self._view(int(key[3:]), key, lang, t("late", lang or "en"), uid=uid)
                answered += 1
            except Exception:  # one patient's failure must not stop the others
                logger.exception("could not answer the last update of %s",
                                 pseudonym(key, self.settings.pseudonym_key))
        if answered:
            logger.info("answered %d patient(s) whose last update was cut by a restart",
                        answered)
        return answered

    async def _note_and_view(self, chat_id: int, key: str, text_key: str,
                             lang: str | None) -> None:
        data, _ = await self.service.load(key)
        slang = (data or {}).get("lang") or lang or self.engine.flow.default_language
        await self._view(chat_id, key, lang, t(text_key, slang))

    async def _stale(self, cq: Any, chat_id: int, key: str, lang: str | None,
                     msg_id: int | None, res: StepResult | None = None,
                     unknown: bool = False) -> None:
        data, _ = await self.service.load(key)
        slang = (data or {}).get("lang") or lang or self.engine.flow.default_language
        await self._answer_cq(cq, t("unknown_button" if unknown else "stale_button", slang))
        qmsg = ((data or {}).get("meta") or {}).get("qmsg") or {}
        if msg_id is not None and msg_id != qmsg.get("id"):
            await self._remove_buttons(chat_id, msg_id)
        await self._view(chat_id, key, lang)

    async def _apologise(self, update: Update, key: str) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        with contextlib.suppress(Exception):
            if update.callback_query is not None:
                await self._answer_cq(update.callback_query)
        lang = self._user_lang(update) or self.engine.flow.default_language
        try:
            await self._view(chat.id, key, lang, t("error", lang))
        except Exception:
            logger.exception("could not even apologise")
            with contextlib.suppress(Exception):
                await self._send_plain(chat.id, t("error", lang))

    # -- Bot API calls (with network retries; 429 is the rate limiter's) ----------------------
    async def _call(self, chat_id: int, fn: Callable[..., Awaitable[Any]], /, *args: Any,
                    **kwargs: Any) -> Any:
        for delay in (*NETWORK_RETRIES, None):
            try:
                return await fn(*args, **kwargs)
            except Forbidden:
                if chat_id not in self._blocked:
                    self._blocked[chat_id] = None
                    if len(self._blocked) > 10_000:
                        self._blocked.popitem(last=False)
                    logger.info("chat %s blocked the bot: not sending",
                                pseudonym(f"tg:{chat_id}", self.settings.pseudonym_key))
                return None
            except RetryAfter:
                raise
            except (NetworkError, TimedOut) as exc:
                if isinstance(exc, BadRequest) or delay is None:
                    raise
                self.metrics.error("network_retry")
                await asyncio.sleep(delay)
        return None

    async def _api(self, chat_id: int, method: str, params: dict[str, Any]) -> Any:
        """One Bot API call; its result as Telegram's JSON (None if the user blocked us).

        PTB's methods (`send_message`...) turn every sent or edited message into a `Message`
        object that we never read: ~0.45 ms of CPU each, more than the engine and the store
        take for a step. `Bot._post` is the layer right below them in PTB 22 (defaults, rate
        limiter, error mapping); None values are dropped there, as Telegram wants."""
        assert self.app is not None
        return await self._call(chat_id, self.app.bot._post, method, params)

    async def _send(self, chat_id: int, outs: list[Out]) -> list[int]:
        ids = []
        for out in outs:
            msg = await self._api(chat_id, "sendMessage", {
                "chat_id": chat_id, "text": out.text, "parse_mode": ParseMode.HTML,
                "reply_markup": out.markup, "link_preview_options": NO_PREVIEW})
            if msg is not None:
                ids.append(msg["message_id"])
                self.metrics.reply()
                if self._blocked:
                    self._blocked.pop(chat_id, None)  # unblocked: a new block is logged again
        return ids

    async def _send_plain(self, chat_id: int, text: str) -> None:
        assert self.app is not None
        await self._api(chat_id, "sendMessage", {"chat_id": chat_id, "text": text})

    async def _edit(self, chat_id: int, msg_id: int, html_text: str) -> None:
        assert self.app is not None
        try:
            await self._api(chat_id, "editMessageText", {
                "chat_id": chat_id, "message_id": msg_id, "text": html_text,
                "parse_mode": ParseMode.HTML})
            self.metrics.reply()
        except BadRequest as exc:
            logger.info("could not edit message: %s", exc.message)

    async def _edit_markup(self, chat_id: int, msg_id: int,
                           markup: InlineKeyboardMarkup | None) -> None:
        assert self.app is not None
        try:
            await self._api(chat_id, "editMessageReplyMarkup", {
                "chat_id": chat_id, "message_id": msg_id, "reply_markup": markup})
            self.metrics.reply()
        except BadRequest as exc:
            logger.info("could not edit buttons: %s", exc.message)

    async def _remove_buttons(self, chat_id: int, msg_id: int | None) -> None:
        if msg_id is not None:
            await self._edit_markup(chat_id, msg_id, None)

    async def _answer_cq(self, cq: Any, text: str | None = None) -> None:
        chat_id = cq.message.chat.id if cq.message is not None else cq.from_user.id
        try:
            await self._call(chat_id, cq.answer,
                             text[:MAX_CALLBACK_ANSWER_CHARS] if text else None)
        except BadRequest as exc:
            logger.info("could not answer a button tap: %s", exc.message)


async def _together(*calls: Awaitable[Any]) -> list[Any]:
    """Make independent Bot API calls at once; wait for all, then raise the first failure."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _with_notice(reply: Reply, notice: str) -> Reply:
    from dataclasses import replace

    return replace(reply, notices=(notice, *reply.notices), changed=False)


def _buttons(items: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)]
                                 for label, data in items])


def _kind(update: Update) -> str:
    if update.callback_query is not None:
        return "callback"
    if update.message is not None:
        if update.message.text is not None:
            return "command" if update.message.text.startswith("/") else "text"
        return "other_message"
    if update.edited_message is not None:
        return "edited"
    if update.channel_post is not None or update.edited_channel_post is not None:
        return "channel"
    return "other"


# -- running -----------------------------------------------------------------------------------
def _health_app(bot: TelegramBot, store: Any) -> Any:
    import tornado.web

    class Health(tornado.web.RequestHandler):
        async def get(self) -> None:
            ok = True
            try:
                await asyncio.wait_for(store.check(), 2.0)
            except Exception:
                ok = False
            self.set_status(200 if ok else 503)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": "ok" if ok else "store unreachable",
                                    "flow": bot.engine.flow.id,
                                    "flow_version": bot.engine.flow.hash}))

    class MetricsHandler(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "text/plain; version=0.0.4")
            self.finish(bot.metrics.render())

    return [(r"/health/?", Health), (r"/healthz/?", Health), (r"/metrics/?", MetricsHandler)]


async def serve(settings: Settings, bot: TelegramBot, store: Any,
                stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                watch: bool = True) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM): webhook when WEBHOOK_URL is set."""
    import tornado.httpserver
    import tornado.web

    started = time.time()
    app = bot.build()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    extra_server = None
    async with app:
        await app.start()
        await bot.set_commands(app)
        assert app.updater is not None
        if settings.webhook_url:
            url_path = urlparse(settings.webhook_url).path.lstrip("/") or "telegram"
            await app.updater.start_webhook(
                listen=settings.webhook_listen, port=settings.webhook_port, url_path=url_path,
                webhook_url=settings.webhook_url, secret_token=settings.webhook_secret,
                allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)
            attached = False
            with contextlib.suppress(AttributeError):
                httpd: Any = app.updater._httpd  # PTB's webhook server (tornado)
                httpd._http_server.request_callback.add_handlers(r".*", _health_app(bot, store))
                attached = True
            logger.info("webhook mode on %s:%s (health %s)", settings.webhook_listen,
                        settings.webhook_port, "on the webhook port" if attached else "off")
        else:
            await app.updater.start_polling(allowed_updates=Update.ALL_TYPES,
                                            drop_pending_updates=False, timeout=20)
            logger.info("long polling")
        if settings.health_port:
            extra_server = tornado.httpserver.HTTPServer(
                tornado.web.Application(_health_app(bot, store)))
            extra_server.listen(settings.health_port, address=settings.webhook_listen)
            logger.info("health and metrics on port %s", settings.health_port)
        housekeeping = asyncio.create_task(_housekeeping(store, stop))
        recovery = asyncio.create_task(_answer_unanswered_soon(bot, started, stop))
        watcher = _live_reload(settings, bot) if watch else None
        if ready is not None:
            ready.set()
        await stop.wait()
        for task in (housekeeping, recovery):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if watcher is not None:
            await watcher.stop()
        if extra_server is not None:
            extra_server.stop()
        await app.updater.stop()
        await app.stop()


def _live_reload(settings: Settings, bot: TelegramBot) -> Any:
    """Watch the flow file: a valid edit goes live for new conversations within 2 s (those
    under way finish on their version); a broken one is refused, logged and sent to the staff
    chat, and the last good version keeps serving. /reload does the same for admins."""
    from bot.staff.reload import FlowWatcher

    async def tell_staff(text: str, kind: str) -> None:
        """Send ``text`` to the staff chat, once for all the instances watching one shared
        flow file: an edit a poll saw is claimed in the store (``kind`` and the file's
        modification time, size and hash), and the instances that lose the claim say
        nothing. /reload always answers; if the store cannot be asked, the notice goes."""
        if not settings.staff_chat_id or bot.app is None:
            return
        if watcher.change is not None:
            try:
                first = await bot._claim("flow notice", kind, watcher.change)
            except Exception as exc:
                logger.warning("could not check whether another instance announced the flow "
                               "edit (%s): announcing it", type(exc).__name__)
                first = True
            if not first:
                logger.info("another instance announced this flow edit to the staff chat")
                return
        with contextlib.suppress(TelegramError):
            await bot._send(settings.staff_chat_id, [Out(esc(text))])

    async def on_valid(flow: Any) -> None:
        bot.engine.set_current(flow)
        logger.info("flow %s version %s (%s) is live for new conversations", flow.id,
                    flow.version, flow.hash)
        await tell_staff(f"✅ {settings.flow}: version {flow.version} ({flow.hash[:8]}) is live "
                         "for new conversations.", "live")

    async def on_invalid(problems: list[Any]) -> None:
        errors = [p for p in problems if p.level == "error"]
        for p in errors:
            logger.error("refused flow edit: %s", p)
        text = (f"❌ The edit of {settings.flow} was refused ({len(errors)} error(s)); the last "
                "good version keeps serving.\n\n" + "\n".join(str(p) for p in errors[:15]))
        await tell_staff(text[:3900], "refused")

    watcher = FlowWatcher(settings.flow, on_valid, on_invalid, current=bot.engine.flow)
    watcher.start()

    async def reload() -> str:
        flow, problems = await watcher.reload_now()
        errors = [p for p in problems if p.level == "error"]
        if flow is None:
            return (f"Refused: {len(errors)} error(s); the last good version keeps serving.\n"
                    + "\n".join(str(p) for p in errors[:10]))
        return f"Reloaded: version {flow.version} ({flow.hash[:8]}) is live."

    bot.reload = reload
    return watcher


async def _answer_unanswered_soon(bot: TelegramBot, started: float, stop: asyncio.Event,
                                  wait: float = UNANSWERED_GRACE) -> None:
    try:  # listed now, answered after the grace if nothing has happened to them meanwhile
        found = await bot.unanswered(started)
    except Exception:
        logger.exception("could not look for unanswered updates")
        return
    if not found:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), wait)
        return  # stopped before it was time
    try:
        await bot.answer_unanswered(started, found)
    except Exception:
        logger.exception("could not answer unanswered updates")


async def _housekeeping(store: Any, stop: asyncio.Event, every: float = 3600.0) -> None:
    """Delete expired sessions now and then (Redis expires keys by itself)."""
    while not stop.is_set():
        try:
            removed = await store.expire()
            if removed:
                logger.info("expired %s inactive sessions", removed)
        except Exception:
            logger.exception("session expiry failed")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def run(settings: Settings) -> int:
    """`python bot.py` with a token: build everything, check it, serve."""
    from bot.cli import _load_flow
    from bot.staff.audit import audit_record
    from bot.storage import open_flow_archive, open_store
    from bot.storage.base import StoreError

    flow = _load_flow(settings.flow)
    archive = open_flow_archive(settings.store, settings.flow_archive)
    engine = Engine(flow, placeholders=settings.placeholders, archive=archive)

    async def main() -> int:
        try:
            store = open_store(settings.store, ttl_seconds=settings.session_ttl)
            await store.check()
        except StoreError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        archive.publish()  # the flow versions served, for the other instances too
        logger.info("running on the %s event loop (BOT_EVENT_LOOP=%s)",
                    eventloop.name(asyncio.get_running_loop()), settings.event_loop)
        service = ConversationService(engine, store, secret=settings.pseudonym_key,
                                      audit=audit_record)
        handoff = None
        if settings.staff_chat_id:
            from .handoff import Handoff

            handoff = Handoff(settings.staff_chat_id, settings.clinic_phone)
        bot = TelegramBot(settings, engine, service, handoff=handoff)
        try:
            await serve(settings, bot, store)
        finally:
            await store.close()
        return 0

    return eventloop.run(main(), settings.event_loop)
