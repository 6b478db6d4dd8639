"""The session store interface, its errors, and the JSON codec every backend shares.

Storage knows a session only as a plain JSON-able ``dict`` plus an integer version
(0 = absent). Every write is a compare-and-set on that version, so two processes that
handle updates of the same chat can never silently overwrite each other: the loser gets
``None`` back and re-reads. A new session's first version is a fresh random number
(``first_version``), not 1: a version never comes back after a session is deleted or
expires and is made again, so a process still holding the old session's version cannot
overwrite the new session with it.

Exception tree::

    StoreError
     ├── StoreConfigError   the setting is malformed or the backend cannot be reached/opened
     ├── StoreClosed        the store was used after close()
     └── CorruptSession     a stored session cannot be decoded (delete it to start over)

Nothing in this package logs or puts session contents or audit contents into messages:
they are health data. Keys (``"tg:12345"``), versions and timings are fine.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import orjson

Session = dict[str, Any]
AuditRecord = dict[str, Any]
Current = tuple["Session | None", int]  # what a store holds for a key: (session, version)
Clock = Callable[[], float]

DEFAULT_TTL_SECONDS = 30 * 24 * 3600.0
"""A session untouched (not saved) for longer than this is gone."""

DEFAULT_SEEN_TTL_SECONDS = 24 * 3600.0
"""How long ``mark_update`` remembers an update id."""


FIRST_VERSIONS = 1 << 40
"""First versions are drawn from 1 to this (each write adds 1: Lua and JSON readers hold
versions up to 2**53 exactly)."""


def first_version() -> int:
    """The version of a session written where none was (``expected_version`` 0).

    Random, not 1: versions 1, 2, 3... would come back when a session is deleted (/forget)
    or expires and the chat starts again, and a process that still holds version N of the
    old session (the service's remembered copy, another instance's) would then overwrite
    the new session at its own version N, bringing forgotten answers back. Two lifetimes of
    one key share a version with a chance of about one in 2**40 per write."""
    return random.randrange(1, FIRST_VERSIONS)


class StoreError(Exception):
    """Base class of every error the session store raises on purpose."""


class StoreConfigError(StoreError):
    """The store setting is malformed, or the backend cannot be reached or opened.

    The message is one line saying what was wrong and what is accepted / where.
    """


class StoreClosed(StoreError):
    """The store was used after ``close()``."""


class CorruptSession(StoreError):
    """A stored session cannot be decoded; ``delete(key)`` removes it."""

    def __init__(self, key: str, backend: str, reason: str) -> None:
        self.key = key
        self.backend = backend
        self.reason = reason
        super().__init__(
            f"stored session {key!r} in the {backend} store is corrupt ({reason}); "
            f"delete it to start the conversation over"
        )


@runtime_checkable
class SessionStore(Protocol):
    """Versioned, compare-and-set storage of sessions, update-id markers and audit records."""

    async def load(self, key: str) -> tuple[Session | None, int]:
        """Return the session and its version, or ``(None, 0)``; refresh nothing."""
        ...

    def save(self, key: str, data: Session, expected_version: int,
             audit: AuditRecord | None = None) -> Awaitable[int | None]:
        """Write if the stored version equals ``expected_version``; return the new version.

        Awaited for its result (a coroutine, or a future the backend answers: the Redis
        store's saves are futures, see ``redis_store.save``). The store may read ``data``
        until then (Redis encodes the saves made at once together, just before they are
        sent): change it only after the save is done.

        ``expected_version`` 0 means "must not exist". Returns the new version on success
        (``first_version()`` for a new session, else ``expected_version + 1``) and ``None``
        on conflict. Each save restarts the inactivity TTL. ``audit``
        is added (as ``add_audit`` would) in the same atomic write, only if the save succeeds:
        a finished triage and its record are stored together or not at all.
        """
        ...

    def save_then(self, key: str, data: Session, expected_version: int,
                  audit: AuditRecord | None, then: Callable[[Any, Any], Any],
                  arg: Any) -> Awaitable[Any]:
        """``save_or_current``, its outcome handed to ``then(outcome, arg)`` as soon as it is
        known: what is awaited gives what ``then`` returns, or, if that is a ``Later``,
        what its awaitable gives. ``outcome`` is what ``save_or_current`` returns, or the
        ``CorruptSession`` it would raise (other errors are raised, ``then`` is not called).

        On Redis ``then`` runs as the reply is read, and what is awaited is the store's own
        future: the caller needs no coroutine of its own around the save. Other backends
        use ``save_then_via``.
        """
        ...

    def save_or_current(self, key: str, data: Session, expected_version: int,
                        audit: AuditRecord | None = None) -> Awaitable[int | Current]:
        """``save``, but a conflict returns what is stored now, ``(session or None, version)``
        as ``load`` would, instead of None: the caller re-applies its input to that at once.

        On Redis the failed compare-and-set replies with the stored value, so a conflict
        costs no second round trip; other backends save, then load (``save_then_load``).
        A corrupt stored session raises ``CorruptSession``.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the session and every audit record of ``key``."""
        ...

    async def mark_update(self, update_id: int) -> bool:
        """Remember ``update_id``; True the first time, False if already remembered."""
        ...

    async def add_audit(self, record: AuditRecord) -> None:
        """Append an audit record (a JSON-able dict with a str ``"key"``)."""
        ...

    async def audit(self, since: float | None = None) -> list[AuditRecord]:
        """Return audit records filed at or after ``since``, oldest first.

        A record is filed under its ``ended_at``, else its ``started_at``, else the time it
        was added.
        """
        ...

    async def expire(self) -> int:
        """Delete sessions inactive longer than the TTL; return how many were deleted."""
        ...

    async def sessions(self) -> list[tuple[str, Session]]:
        """Every live session as ``(key, session)``, for staff statistics.

        Sessions past their TTL and sessions that cannot be decoded are skipped (the staff
        tools count where unfinished conversations stopped; a corrupt one has no answer to
        give). The order is unspecified.
        """
        ...

    async def check(self) -> None:
        """Raise ``StoreConfigError`` (one line) if the backend cannot be used."""
        ...

    async def close(self) -> None:
        """Release connections; the store must not be used afterwards."""
        ...


class Later:
    """What a ``save_then`` callback returns when its answer needs more waiting (another
    read or write): the save's awaitable then gives what ``awaitable`` gives."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


async def save_then_via(store: SessionStore, key: str, data: Session, expected_version: int,
                        audit: AuditRecord | None, then: Callable[[Any, Any], Any],
                        arg: Any) -> Any:
    """``save_then`` through the store's ``save_or_current``."""
    try:
        outcome: Any = await store.save_or_current(key, data, expected_version, audit)
    except CorruptSession as exc:
        outcome = exc
    value = then(outcome, arg)
    if value.__class__ is Later:
        return await value.awaitable
    return value


async def save_then_load(store: SessionStore, key: str, data: Session, expected_version: int,
                         audit: AuditRecord | None = None) -> int | Current:
    """``save_or_current`` for a backend whose conflict does not say what is stored: the
    save, and on a conflict a load (through the store's own methods, so a subclass that
    wraps them is obeyed)."""
    saved = await store.save(key, data, expected_version, audit)
    if saved is not None:
        return saved
    return await store.load(key)


# --- shared codec -------------------------------------------------------------------------


def encode_json(data: Any, what: str) -> str:
    """Serialise ``data`` compactly; raise ``TypeError`` naming ``what`` (never the data)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None


def encode_session(key: str, data: Session) -> str:
    """Serialise a session dict, checking it is a dict with JSON-able contents.

    orjson, not the standard library: a session's JSON costs ~3 µs instead of ~48 µs (its
    timestamps are floats, slow to format), which matters at one write per answer. Like
    JavaScript's JSON.stringify, orjson writes NaN and ±Infinity as null; the memory store
    (the tests' double) refuses a session that does not come back equal, so a change that
    puts one in a session fails its tests. Keys must be strings (the standard library would
    quietly turn a number key into a string) and integers fit in 64 bits."""
    return encode_session_bytes(key, data).decode()


def encode_session_bytes(key: str, data: Session) -> bytes:
    """``encode_session`` as UTF-8 bytes (what a store that keeps bytes writes)."""
    if not isinstance(data, dict):
        raise TypeError(f"session {key!r} must be a dict, not {type(data).__name__}")
    try:
        return orjson.dumps(data)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise not_json(key, exc) from None


def not_json(key: str, exc: TypeError) -> TypeError:
    """The error for a session that cannot be written as JSON (``exc``: orjson's)."""
    return TypeError(f"session {key!r} is not JSON-serialisable: {exc}")


def decode_session(key: str, backend: str, raw: str | bytes) -> Session:
    """Parse a stored session; anything but a JSON object raises ``CorruptSession``."""
    if isinstance(raw, bytes):  # be strict about the encoding, and say where it breaks
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptSession(key, backend, f"not UTF-8 at byte {exc.start}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = ("nested too deeply" if "depth" in str(exc)
                  else f"invalid JSON at char {exc.pos}")
        raise CorruptSession(key, backend, reason) from None
    if not isinstance(data, dict):
        raise CorruptSession(key, backend, f"expected a JSON object, got {type(data).__name__}")
    return data


def audit_time(record: AuditRecord, default: float) -> float:
    """The time an audit record is filed under: ``ended_at``, else ``started_at``, else now."""
    for field in ("ended_at", "started_at"):
        value = record.get(field)
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            return float(value)
    return default


def check_audit_record(record: AuditRecord) -> str:
    """Validate an audit record's shape and return it serialised."""
    if not isinstance(record, dict):
        raise TypeError(f"audit record must be a dict, not {type(record).__name__}")
    key = record.get("key")
    if not isinstance(key, str) or not key:
        raise ValueError("audit record needs a non-empty str 'key' (the session key)")
    return encode_json(record, f"audit record of {key!r}")


def check_expected_version(expected_version: int) -> None:
    """Reject versions that can never match (negative, or not an int)."""
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise TypeError(
            f"expected_version must be an int, not {type(expected_version).__name__}"
        )
    if expected_version < 0:
        raise ValueError(f"expected_version must be >= 0, got {expected_version}")
