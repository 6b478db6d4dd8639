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
the write fails, says what is stored (`save_or_current`: on Redis in the same reply, with no
second round trip), and the input is applied again to that. So a new patient's answer costs
one round trip to the store, and so does each answer after it. Whenever the answer would be
given without a write (a duplicate update, a stale button), it is given from a fresh read,
never from the cache or the guess. Reads for display (`load`) always go to the store.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.engine import Engine, Input, Reply
from bot.engine.io import OutcomeView
from bot.storage import SessionStore
from bot.storage.base import CorruptSession, check_audit_record

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

    async def step(self, key: str, inp: Input, *, update_id: int | None = None,
                   lang: str | None = None) -> StepResult:
        """Apply one input; on a concurrent write, again to what the store holds then."""
        data: dict[str, Any] | None
        recalled = self._recall(key)
        if recalled is not None:
            data, version = recalled
        else:  # a chat new to this process: taken to be new (see the module's doc)
            data, version = None, 0
        fresh = False  # data was read from the store (not remembered, not guessed)
        for _attempt in range(MAX_TRIES):
            if data is not None and update_id is not None and update_id in data.get("updates",
                                                                                     ()):
                if not fresh:  # answer a duplicate from what the store holds now
                    data, version = await self.load(key)
                    fresh = True
                    continue
                reply = self.engine.view(data, lang)
                return StepResult(reply, data, version, duplicate=True)
            before_step = data.get("step") if data else None
            new, reply = self.engine.handle(data, inp, lang=lang)
            if not reply.changed and data is not None and data.get("schema"):
                if not fresh:  # nothing to write: answer from what the store holds now
                    data, version = await self.load(key)
                    fresh = True
                    continue
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
            try:
                saved = await self.store.save_or_current(
                    key, new, version if data and "corrupt" not in data else 0, record)
            except CorruptSession:
                data, version = await self._start_over(key)
                fresh = True
                continue
            if isinstance(saved, int):
                self._remember(key, saved, new)
                return StepResult(reply, new, saved, False, finished)
            logger.info("concurrent write on a session: applying the input to what is stored")
            data, version = saved  # what the store holds now: the input goes again
            fresh = True
        raise RuntimeError("too many concurrent writes on one session")

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
            saved = await self.store.save_or_current(key, data, current)
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
