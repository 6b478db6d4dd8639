"""One step of a conversation, safely: load the session, apply the input, compare-and-set it back.

Shared by the channels (no Telegram here). Two instances handling the same chat never lose or
double a step: a write is a compare-and-set on the session's version, and the loser re-reads
and re-applies. A redelivered update (same update id) changes nothing: the ids of recent
updates are kept in the session and written with it, atomically.

The service remembers the last session it wrote for each chat (a bounded, per-process cache)
and applies the next input to it directly, skipping the read (`StepResult.session` is that
remembered dict: read it, do not change it). A chat it has not written yet is taken to be
new: nothing stored. The write is a compare-and-set on that version, so if anything else
wrote meanwhile (another instance, an expiry, a /forget), or the chat was not new after all,
the write fails, says what is stored (on Redis in the same reply, with no second round
trip), and the input is applied again to that. So a new patient's answer costs one round
trip to the store, and so does each answer after it. Whenever the answer would be given
without a write (a duplicate update, a stale button), it is given from a fresh read, never
from the cache or the guess. Reads for display (`load`) always go to the store.

`step` is not a coroutine: it applies the input at once and returns the store's save
(`SessionStore.save_then`), which hands its outcome to `_saved` as soon as it is known. On
Redis that is as the reply is read, and the caller awaits the store's own future: no
coroutine of the service's sits between the channel and the store. A failed write (and a
read the answer needs) continues in a coroutine, `_slow`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

from bot.engine import Engine, Input, Reply
from bot.engine.io import OutcomeView
from bot.storage import SessionStore
from bot.storage.base import CorruptSession, Current, Later, check_audit_record

logger = logging.getLogger(__name__)

RECENT_UPDATES = 64
MAX_TRIES = 8
KNOWN_SESSIONS = 10_000  # sessions remembered per process (~1 KB each)


@dataclass(slots=True)
class StepResult:
    """What one input did: the reply, the stored session, and whether it was a duplicate."""

    reply: Reply
    session: dict[str, Any]
    version: int
    duplicate: bool = False
    finished: OutcomeView | None = None  # set when this input reached an outcome


def _as_is(outcome: Any, arg: Any) -> Any:
    """A ``save_then`` callback giving what ``save_or_current`` would (the same path through
    the store as every step's save)."""
    if isinstance(outcome, CorruptSession):
        raise outcome
    return outcome


def pseudonym(key: str, secret: str) -> str:
    """A stable pseudonymous id for a patient: no chat id can be read back from it."""
    return "p_" + hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:20]


class ConversationService:
    """Applies inputs to stored conversations."""

    def __init__(self, engine: Engine, store: SessionStore, *, secret: str = "",
                 audit: Any | None = None, known_sessions: int = KNOWN_SESSIONS):
        self.engine = engine
        self.store = store
        self.secret = secret
        self.audit = audit  # callable(session, flow, patient, outcome) -> record, or None
        self.known_sessions = known_sessions
        self._known: dict[str, tuple[dict[str, Any], int]] = {}

    async def load(self, key: str) -> tuple[dict[str, Any] | None, int]:
        try:
            return await self.store.load(key)
        except CorruptSession:
            return await self._start_over(key)

    async def _start_over(self, key: str) -> tuple[dict[str, Any], int]:
        """A stored session that cannot be read: deleted, and the conversation starts again
        (the engine apologises for ``{"corrupt": True}``)."""
        logger.warning("corrupt session %s: starting again", pseudonym(key, self.secret))
        self._known.pop(key, None)
        await self.store.delete(key)
        return {"corrupt": True}, 0

    # -- the remembered copy of each chat's last written session --------------------------
    def _remember(self, key: str, version: int, data: dict[str, Any]) -> None:
        """Keep the session just written (the dict itself: the next step takes it over).
        A plain dict kept in the order of writing: the first key is the oldest."""
        known = self._known
        known.pop(key, None)
        known[key] = (data, version)
        if len(known) > self.known_sessions:
            del known[next(iter(known))]

    def _recall(self, key: str) -> tuple[dict[str, Any], int] | None:
        """Take the remembered session out (whoever recalls it may change it)."""
        return self._known.pop(key, None)

    def step(self, key: str, inp: Input, *, update_id: int | None = None,
             lang: str | None = None) -> Awaitable[StepResult]:
        """Apply one input; on a concurrent write, again to what the store holds then.

        Returns what to await for the result. On the usual path (an input that changes the
        conversation) that is the store's own save, whose outcome the store hands to
        ``_saved`` as soon as it is known (on Redis, as the reply is read): no coroutine of
        the service's sits between the caller and the store (in the bench, 0.3-0.5 µs less
        per answer on Redis). Whatever needs a read first goes through ``_slow``."""
        recalled = self._known.pop(key, None)
        if recalled is None:  # a chat new to this process: taken to be new (see the module's doc)
            return self._try(key, inp, update_id, lang, None, 0, False, MAX_TRIES)
        return self._try(key, inp, update_id, lang, recalled[0], recalled[1], False,
                         MAX_TRIES)

    def _try(self, key: str, inp: Input, update_id: int | None, lang: str | None,
             data: dict[str, Any] | None, version: int, fresh: bool,
             tries: int) -> Any:
        """One try at applying the input to ``data`` (read from the store if ``fresh``, else
        remembered or guessed): the save to await, ``_slow`` to await when the answer must
        come from what the store holds now, or (only if ``fresh``) the ``StepResult``."""
        if tries <= 0:
            raise RuntimeError("too many concurrent writes on one session")
        if data is not None and update_id is not None and update_id in data.get("updates", ()):
            if not fresh:  # answer a duplicate from what the store holds now
                return self._slow(key, inp, update_id, lang, tries - 1, None)
            return StepResult(self.engine.view(data, lang), data, version, duplicate=True)
        before_step = data.get("step") if data else None
        new, reply = self.engine.handle(data, inp, lang=lang)
        if not reply.changed and data is not None and data.get("schema"):
            if not fresh:  # nothing to write: answer from what the store holds now
                return self._slow(key, inp, update_id, lang, tries - 1, None)
            return StepResult(reply, data, version)  # nothing to write
        if update_id is not None:  # (in place: the engine took the old session over)
            updates = new.get("updates")
            if updates is None:
                new["updates"] = [update_id]
            else:
                updates.append(update_id)
                if len(updates) > RECENT_UPDATES:
                    del updates[:-RECENT_UPDATES]
        finished = None
        record = None
        if reply.outcome is not None and before_step != new.get("step"):
            finished = reply.outcome
            record = self._record(key, new, reply.outcome)
        return self.store.save_then(
            key, new, version if data and "corrupt" not in data else 0, record, self._saved,
            (key, inp, update_id, lang, new, reply, finished, tries - 1))

    def _saved(self, outcome: Any, attempt: tuple[Any, ...]) -> StepResult | Later:
        """A save's outcome (``SessionStore.save_then``): the result, or, when the session
        was not written, the input applied again to what is stored (``_slow``)."""
        key, inp, update_id, lang, new, reply, finished, tries = attempt
        if outcome.__class__ is int:
            self._remember(key, outcome, new)
            return StepResult(reply, new, outcome, False, finished)
        if not isinstance(outcome, CorruptSession):
            logger.info("concurrent write on a session: applying the input to what is stored")
        return Later(self._slow(key, inp, update_id, lang, tries, outcome))

    async def _slow(self, key: str, inp: Input, update_id: int | None, lang: str | None,
                    tries: int, stored: Current | CorruptSession | None) -> StepResult:
        """The input applied to what the store holds now: ``stored`` (a failed save's
        reply), or read here (``None``); a corrupt session starts over."""
        if stored is None:
            data, version = await self.load(key)
        elif isinstance(stored, CorruptSession):
            data, version = await self._start_over(key)
        else:
            data, version = stored
        result = self._try(key, inp, update_id, lang, data, version, True, tries)
        if result.__class__ is StepResult:
            return cast(StepResult, result)
        return cast(StepResult, await result)

    async def update_meta(self, key: str, version: int, changes: dict[str, Any],
                          replied: int | None = None) -> int | None:
        """Best effort: remember channel data (message ids, which update was answered).

        `changes` describe the screen written at `version`; when the session has moved on
        since (another update, maybe on another instance), they are stale and only `replied`
        is recorded."""
        recalled = self._recall(key)
        stored: tuple[dict[str, Any] | None, int] | None = (
            recalled if recalled is not None and recalled[1] == version else None)
        for _attempt in range(3):
            data, current = stored if stored is not None else await self.store.load(key)
            if data is None:
                return None
            meta = data.setdefault("meta", {})
            if current == version:
                meta.update(changes)
            elif replied is None:
                return None
            if replied is not None:
                meta["replied"] = (meta.get("replied", []) + [replied])[-RECENT_UPDATES:]
            saved = await self.store.save_then(key, data, current, None, _as_is, None)
            if isinstance(saved, int):
                self._remember(key, saved, data)
                return saved if current == version else None
            version = -1  # someone else wrote: what we describe is no longer current
            stored = saved
        return None

    async def forget(self, key: str) -> None:
        self._known.pop(key, None)
        await self.store.delete(key)

    def _record(self, key: str, session: dict[str, Any], out: OutcomeView
                ) -> dict[str, Any] | None:
        """The audit record of a triage that just finished: saved with the session, in one
        atomic write, so a crash can never keep one without the other."""
        if self.audit is None:
            return None
        try:
            flow = self.engine.versions[session["hash"]].flow
        except KeyError:
            flow = self.engine.flow
        try:
            record: dict[str, Any] = self.audit(session, flow, pseudonym(key, self.secret), out)
            record.setdefault("recorded_at", time.time())
            check_audit_record(record)  # a bad record is logged here, never fails the save
            return record
        except Exception:  # an audit failure must not cost the patient their reply
            logger.exception("could not make the audit record")
            return None
