"""An in-memory session store: the test double of ``SessionStore``.

Everything goes through JSON on the way in and out, and a session that does not come back
equal to what was saved (a tuple, an int dict key, a set, a datetime...) is refused with a
``TypeError`` naming the path, so state that a real backend would mangle fails in tests.
Loaded sessions are fresh copies: mutating one never changes the store.

Single-process only: it exists for tests and for trying flows at a console.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .base import (
    DEFAULT_SEEN_TTL_SECONDS,
    DEFAULT_TTL_SECONDS,
    AuditRecord,
    Clock,
    CorruptSession,
    Current,
    Session,
    StoreClosed,
    audit_time,
    check_audit_record,
    check_expected_version,
    decode_session,
    encode_session,
    first_version,
    save_then_load,
    save_then_via,
)

logger = logging.getLogger(__name__)

BACKEND = "memory"


@dataclass
class _Row:
    version: int
    touched_at: float
    text: str


@dataclass
class _Data:
    sessions: dict[str, _Row] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)
    audit: list[tuple[float, str, str]] = field(default_factory=list)  # (at, key, json)


class MemoryStore:
    """Keep sessions in a dict, as JSON text, with the same semantics as the real stores."""

    def __init__(
        self,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        seen_ttl_seconds: float = DEFAULT_SEEN_TTL_SECONDS,
        clock: Clock = time.time,
        shared_with: MemoryStore | None = None,
    ) -> None:
        """Create an empty store, or one more handle on ``shared_with``'s data."""
        if ttl_seconds <= 0 or seen_ttl_seconds <= 0:
            raise ValueError("ttl_seconds and seen_ttl_seconds must be positive")
        self.ttl_seconds = float(ttl_seconds)
        self.seen_ttl_seconds = float(seen_ttl_seconds)
        self.clock = clock
        self._data: _Data = shared_with._data if shared_with is not None else _Data()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(sessions={len(self._data.sessions)})"

    def _live(self, key: str, now: float) -> _Row | None:
        row = self._data.sessions.get(key)
        if row is None or now - row.touched_at > self.ttl_seconds:
            return None
        return row

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreClosed("the memory session store is closed")

    async def load(self, key: str) -> tuple[Session | None, int]:
        self._ensure_open()
        row = self._live(key, self.clock())
        if row is None:
            return None, 0
        return decode_session(key, BACKEND, row.text), row.version

    async def save(self, key: str, data: Session, expected_version: int,
                   audit: AuditRecord | None = None) -> int | None:
        self._ensure_open()
        check_expected_version(expected_version)
        text = encode_session(key, data)
        _check_round_trip(key, data, json.loads(text))
        audit_text = check_audit_record(audit) if audit is not None else None
        now = self.clock()
        row = self._live(key, now)
        if (row.version if row is not None else 0) != expected_version:
            logger.debug("save conflict for %s at expected version %d", key, expected_version)
            return None
        version = expected_version + 1 if expected_version else first_version()
        self._data.sessions[key] = _Row(version, now, text)
        if audit is not None and audit_text is not None:
            self._data.audit.append((audit_time(audit, now), audit["key"], audit_text))
        return version

    def save_or_current(self, key: str, data: Session, expected_version: int,
                        audit: AuditRecord | None = None) -> Awaitable[int | Current]:
        return save_then_load(self, key, data, expected_version, audit)

    def save_then(self, key: str, data: Session, expected_version: int,
                  audit: AuditRecord | None, then: Callable[[Any, Any], Any],
                  arg: Any) -> Awaitable[Any]:
        return save_then_via(self, key, data, expected_version, audit, then, arg)

    async def delete(self, key: str) -> None:
        self._ensure_open()
        self._data.sessions.pop(key, None)
        self._data.audit[:] = [row for row in self._data.audit if row[1] != key]

    async def mark_update(self, update_id: int) -> bool:
        self._ensure_open()
        now = self.clock()
        marked_at = self._data.seen.get(update_id)
        if marked_at is not None and now - marked_at <= self.seen_ttl_seconds:
            return False
        self._data.seen[update_id] = now
        return True

    async def add_audit(self, record: AuditRecord) -> None:
        self._ensure_open()
        text = check_audit_record(record)
        self._data.audit.append((audit_time(record, self.clock()), record["key"], text))

    async def audit(self, since: float | None = None) -> list[AuditRecord]:
        self._ensure_open()
        rows = sorted(
            (row for row in self._data.audit if since is None or row[0] >= since),
            key=lambda row: row[0],
        )
        return [json.loads(text) for _, _, text in rows]

    async def expire(self) -> int:
        self._ensure_open()
        now = self.clock()
        stale = [k for k, r in self._data.sessions.items() if now - r.touched_at > self.ttl_seconds]
        for key in stale:
            del self._data.sessions[key]
        seen = self._data.seen
        for update_id in [u for u, at in seen.items() if now - at > self.seen_ttl_seconds]:
            del seen[update_id]
        if stale:
            logger.info("expired %d inactive sessions", len(stale))
        return len(stale)

    async def sessions(self) -> list[tuple[str, Session]]:
        self._ensure_open()
        now = self.clock()
        out: list[tuple[str, Session]] = []
        for key in list(self._data.sessions):
            row = self._live(key, now)
            if row is None:
                continue
            try:
                out.append((key, decode_session(key, BACKEND, row.text)))
            except CorruptSession:
                logger.warning("skipped corrupt session %s while listing sessions", key)
        return out

    async def check(self) -> None:
        self._ensure_open()

    async def close(self) -> None:
        self._closed = True


def _check_round_trip(key: str, original: Any, restored: Any) -> None:
    """Raise ``TypeError`` if ``original`` does not survive JSON unchanged."""
    problem = _first_difference(original, restored, "")
    if problem is not None:
        raise TypeError(
            f"session {key!r} does not survive a JSON round trip: {problem}; "
            f"store only dicts with str keys, lists, str, int, float, bool and None"
        )


def _first_difference(original: Any, restored: Any, path: str) -> str | None:
    where = path or "the top level"
    if type(original) is not type(restored):
        return f"at {where} a {type(original).__name__} came back as {type(restored).__name__}"
    if isinstance(original, dict):
        for k, v in original.items():
            if not isinstance(k, str):
                return f"at {where} the {type(k).__name__} key {k!r} came back as a str"
            sub = _first_difference(v, restored[k], f"{path}.{k}" if path else k)
            if sub is not None:
                return sub
        return None
    if isinstance(original, list):
        for i, (a, b) in enumerate(zip(original, restored, strict=True)):
            sub = _first_difference(a, b, f"{path}[{i}]")
            if sub is not None:
                return sub
        return None
    if original != restored:
        return f"at {where} the value changed"
    return None
