"""One step of a conversation, safely: load the session, apply the input, compare-and-set it back.

Shared by the channels (no Telegram here). Two instances handling the same chat never lose or
double a step: a write is a compare-and-set on the session's version, and the loser re-reads
and re-applies. A redelivered update (same update id) changes nothing: the ids of recent
updates are kept in the session and written with it, atomically.
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
from bot.storage.base import CorruptSession

logger = logging.getLogger(__name__)

RECENT_UPDATES = 64
MAX_TRIES = 8


@dataclass
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
                 audit: Any | None = None):
        self.engine = engine
        self.store = store
        self.secret = secret
        self.audit = audit  # callable(session, flow, patient, outcome) -> record, or None

    async def load(self, key: str) -> tuple[dict[str, Any] | None, int]:
        try:
            return await self.store.load(key)
        except CorruptSession:
            logger.warning("corrupt session %s: starting again", pseudonym(key, self.secret))
            await self.store.delete(key)
            return {"corrupt": True}, 0

    async def step(self, key: str, inp: Input, *, update_id: int | None = None,
                   lang: str | None = None) -> StepResult:
        """Apply one input; retries on a concurrent write."""
        for _ in range(MAX_TRIES):
            data, version = await self.load(key)
            if data is not None and update_id is not None and update_id in data.get("updates",
                                                                                     ()):
                reply = self.engine.view(data, lang)
                return StepResult(reply, data, version, duplicate=True)
            before_step = data.get("step") if data else None
            new, reply = self.engine.handle(data, inp, lang=lang)
            if update_id is not None:
                new["updates"] = (new.get("updates", []) + [update_id])[-RECENT_UPDATES:]
            if not reply.changed and data is not None and data.get("schema"):
                return StepResult(reply, data, version)  # nothing to write
            saved = await self.store.save(key, new, version if data and "corrupt" not in data
                                          else 0)
            if saved is None:
                logger.info("concurrent write on a session: re-reading and re-applying")
                continue
            finished = None
            if reply.outcome is not None and before_step != new.get("step"):
                finished = reply.outcome
                await self._record(key, new, reply.outcome)
            return StepResult(reply, new, saved, finished=finished)
        raise RuntimeError("too many concurrent writes on one session")

    async def update_meta(self, key: str, version: int, changes: dict[str, Any],
                          replied: int | None = None) -> int | None:
        """Best effort: remember channel data (message ids, which update was answered).

        `changes` describe the screen written at `version`; when the session has moved on
        since (another update, maybe on another instance), they are stale and only `replied`
        is recorded."""
        for _ in range(3):
            data, current = await self.store.load(key)
            if data is None:
                return None
            meta = data.setdefault("meta", {})
            if current == version:
                meta.update(changes)
            elif replied is None:
                return None
            if replied is not None:
                meta["replied"] = (meta.get("replied", []) + [replied])[-RECENT_UPDATES:]
            saved = await self.store.save(key, data, current)
            if saved is not None:
                if current == version:
                    return saved
                return None
            version = -1  # someone else wrote: what we describe is no longer current
        return None

    async def forget(self, key: str) -> None:
        await self.store.delete(key)

    async def _record(self, key: str, session: dict[str, Any], out: OutcomeView) -> None:
        if self.audit is None:
            return
        try:
            flow = self.engine.versions[session["hash"]].flow
        except KeyError:
            flow = self.engine.flow
        try:
            record = self.audit(session, flow, pseudonym(key, self.secret), out)
            record.setdefault("recorded_at", time.time())
            await self.store.add_audit(record)
        except Exception:  # an audit failure must not cost the patient their reply
            logger.exception("could not write the audit record")
