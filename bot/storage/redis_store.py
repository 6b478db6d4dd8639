"""The Redis session store, on ``redis.asyncio`` (several bot instances may share one Redis).

Keys, all under ``prefix`` (default ``"triage:"``):

- ``{prefix}s:{key}``        a string, the versioned JSON ``{"v":N,"t":MS,"data":{...}}``
  (``t`` = last save, ms since the epoch by the store's clock), with a native TTL
  (``PX``) reset by every save.
- ``{prefix}seen:{id}``      ``SET NX PX`` markers for ``mark_update``.
- ``{prefix}audit``          a sorted set of audit records (member = 32-hex unique id + JSON,
  score = the record's time), and ``{prefix}audit:k:{key}`` a set indexing the members of
  one session key, so ``delete(key)`` removes exactly that key's records.
- ``{prefix}flow:{hash}``    the YAML of each flow version served (``flow_versions``).

``save`` is a Lua script (GET, compare the version, SET with the TTL) and ``delete`` is a
Lua script too, so both are atomic across processes. Loads and saves go through one
pipelined connection (``redis_pipe``): those made at the same time (many patients answering
at once) go out in one write, without waiting for the replies to earlier ones. Each save is
still its own compare-and-set with its own result. ``load`` also applies the TTL by the
injected clock (from ``t``), so sessions expire the same way as in the other backends even
in tests that move the clock; Redis's own expiry removes them for real, so ``expire()``
has nothing to do and returns 0.

The multi-key ``delete`` script assumes a single Redis (not Cluster).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from .base import (
    DEFAULT_SEEN_TTL_SECONDS,
    DEFAULT_TTL_SECONDS,
    AuditRecord,
    Clock,
    CorruptSession,
    Current,
    Session,
    StoreClosed,
    StoreConfigError,
    StoreError,
    audit_time,
    check_audit_record,
    check_expected_version,
    decode_session,
    encode_session_bytes,
    first_version,
    not_json,
)
from .redis_pipe import RETRIES, Pipe, pack

logger = logging.getLogger(__name__)

BACKEND = "Redis"
_ID_LEN = 32  # time + random hex in front of each audit member's JSON

# KEYS: session key, and with an audit record its sorted set and this key's audit index
# set; ARGV: the new value (the envelope: its "v" the new version, its "t" now, in ms), the
# ttl (ms), the expected version (left out when it is the new version - 1: the usual save
# of a session that exists), and the audit member, its score. Returns the new version;
# on conflict the stored value (the envelope, live by now) or 0 if there is none; -1 if the
# stored value is unreadable. The audit record, if any, is added only with the session:
# both or neither.
_SAVE_LUA = """
local new, now = string.match(ARGV[1], '^{"v":(%d+),"t":(%-?%d+),')
if not new then return redis.error_reply('ERR the new value is not a session envelope') end
local expected = tonumber(ARGV[3] or tonumber(new) - 1)
local cur = redis.call('GET', KEYS[1])
local version = 0
if cur then
  local v, t = string.match(cur, '^{"v":(%d+),"t":(%-?%d+),')
  if not v then return -1 end
  if tonumber(now) - tonumber(t) <= tonumber(ARGV[2]) then version = tonumber(v) end
end
if version ~= expected then
  if version == 0 then return 0 end
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[4] then
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
  redis.call('SADD', KEYS[3], ARGV[4])
end
return tonumber(new)
"""

# KEYS: session key, audit sorted set, this key's audit index set.
_DELETE_LUA = """
local members = redis.call('SMEMBERS', KEYS[3])
for i = 1, #members, 500 do
  redis.call('ZREM', KEYS[2], unpack(members, i, math.min(i + 499, #members)))
end
redis.call('DEL', KEYS[1], KEYS[3])
return #members
"""


def redacted_url(url: str) -> str:
    """``scheme://host:port`` of a Redis URL, without credentials, db or options."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return f"{url.split('://', 1)[0]}://(unparseable address)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


class RedisStore:
    """Keep sessions in Redis under a key prefix, with native TTLs and Lua compare-and-set."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "triage:",
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        seen_ttl_seconds: float = DEFAULT_SEEN_TTL_SECONDS,
        clock: Clock = time.time,
        connect_timeout: float = 5.0,
    ) -> None:
        """Describe the store; the connection is made on first use or ``check()``."""
        if ttl_seconds <= 0 or seen_ttl_seconds <= 0:
            raise ValueError("ttl_seconds and seen_ttl_seconds must be positive")
        self.address = redacted_url(url)
        self.prefix = prefix
        self.ttl_seconds = float(ttl_seconds)
        self.seen_ttl_seconds = float(seen_ttl_seconds)
        self.clock = clock
        self._ttl_ms = max(1, round(self.ttl_seconds * 1000))
        self._seen_ttl_ms = max(1, round(self.seen_ttl_seconds * 1000))
        try:
            self._redis: aioredis.Redis = aioredis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=connect_timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
                health_check_interval=30,
            )
            # the connection that carries loads and saves, pipelined (see redis_pipe)
            self._batches: aioredis.Redis = aioredis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout, socket_timeout=None)
        except ValueError as exc:
            raise StoreConfigError(
                f"invalid Redis URL {self.address}: {exc}; "
                f"expected redis://[:password@]host[:port][/db] or rediss://..."
            ) from None
        self._timeout = connect_timeout
        self._save = self._redis.register_script(_SAVE_LUA)
        self._save_sha = self._save.sha.encode()
        self._load_save = pack((b"SCRIPT", b"LOAD", _SAVE_LUA))  # sent if Redis lacks it
        # the parts of every usual save that never change (see _pack_saves)
        self._save_head = b"*6\r\n$7\r\nEVALSHA\r\n$%d\r\n%b\r\n$1\r\n1\r\n" % (
            len(self._save_sha), self._save_sha)
        self._save_tail = b"$%d\r\n%d\r\n" % (len(b"%d" % self._ttl_ms), self._ttl_ms)
        # a new session's save (expected version 0, its first version random) says so
        self._create_head = b"*7" + self._save_head[2:]
        self._create_tail = self._save_tail + b"$1\r\n0\r\n"
        self._key_head = self.session_key("")
        self._delete = self._redis.register_script(_DELETE_LUA)
        self._audit_key = f"{prefix}audit"
        self._closed = False
        self._pipe = Pipe(self._batches.connection_pool, connect_timeout, lambda: StoreClosed(
            f"the Redis session store at {self.address} is closed"), self._pack_saves)

    def __repr__(self) -> str:
        return f"RedisStore({self.address!r}, prefix={self.prefix!r})"

    def session_key(self, key: str) -> str:
        """The Redis key holding session ``key``."""
        return f"{self.prefix}s:{key}"

    def _client(self) -> aioredis.Redis:
        if self._closed:
            raise StoreClosed(f"the Redis session store at {self.address} is closed")
        return self._redis

    async def load(self, key: str) -> tuple[Session | None, int]:
        try:
            raw = await self._pipe.send(pack((b"GET", self.session_key(key))))
        except ResponseError as exc:
            raise _wrong_type(key, exc) from None
        if raw is None:
            return None, 0
        return self._unwrap(key, raw)

    def save(self, key: str, data: Session, expected_version: int,
             audit: AuditRecord | None = None) -> asyncio.Future[int | None]:
        """``SessionStore.save``: the future the pipe answers (the reply is decoded as it
        arrives, see ``_saved``: no coroutine between the caller and the pipe)."""
        return self._pipe.send(self._save_command(key, data, expected_version, audit), _saved,
                               key, RETRIES, self._load_save)

    def save_or_current(self, key: str, data: Session, expected_version: int,
                        audit: AuditRecord | None = None) -> asyncio.Future[int | Current]:
        """``SessionStore.save_or_current``: a conflict's reply is the stored value, so it
        costs no second round trip."""
        return self._pipe.send(self._save_command(key, data, expected_version, audit),
                               self._saved_or_current, key, RETRIES, self._load_save)

    def save_then(self, key: str, data: Session, expected_version: int,
                  audit: AuditRecord | None, then: Callable[[Any, Any], Any],
                  arg: Any) -> asyncio.Future[Any]:
        """``SessionStore.save_then``: ``then`` runs as the reply is read, and the caller
        awaits the pipe's own future."""
        return self._pipe.send(self._save_command(key, data, expected_version, audit),
                               self._saved_then, (key, then, arg), RETRIES, self._load_save)

    def _saved_then(self, reply: Any, args: tuple[str, Callable[[Any, Any], Any], Any]) -> Any:
        key, then, arg = args
        if reply.__class__ is int and reply > 0:  # saved: the new version
            return then(reply, arg)
        try:
            outcome: Any = self._saved_or_current(reply, key)
        except CorruptSession as exc:
            outcome = exc
        return then(outcome, arg)

    def _save_command(self, key: str, data: Session, expected_version: int,
                      audit: AuditRecord | None) -> Any:
        """What the pipe sends for a save: the usual save (no audit record) as an item that
        ``_pack_saves`` packs with the rest of its batch; a save with an audit record packed
        now. Bad arguments raise here, as the other backends raise them."""
        if expected_version.__class__ is not int or expected_version < 0:
            check_expected_version(expected_version)  # raises what every backend raises
        if data.__class__ is not dict and not isinstance(data, dict):
            encode_session_bytes(key, data)  # raises the TypeError every backend raises
        if audit is None:
            return key, data, expected_version
        member, score = self._audit_member(audit)
        value = self._envelope(key, data, expected_version + 1 if expected_version
                               else first_version(), self._now_ms())
        return pack((b"EVALSHA", self._save_sha, b"3", self.session_key(key), self._audit_key,
                     self._audit_index(key), value, self._ttl_ms, expected_version, member,
                     repr(score)))

    @staticmethod
    def _envelope(key: str, data: Session, version: int, now_ms: int) -> bytes:
        """The stored value, ``{"v":version,"t":now_ms,"data":{...}}``."""
        try:
            return orjson.dumps({"v": version, "t": now_ms, "data": data})
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise not_json(key, exc) from None

    def _pack_saves(self, items: list[tuple[str, Session, int]]) -> list[bytes | Exception]:
        """The usual saves of one batch (``_save_command``), packed as RESP, ``EVALSHA sha 1
        key value ttl`` (and ``0``, the expected version, for a new session), with one clock
        reading for them all; a session that cannot be encoded gets its TypeError instead
        (its save alone fails)."""
        now = self._now_ms()
        head, tail, create_head, create_tail, key_head, dumps = (
            self._save_head, self._save_tail, self._create_head, self._create_tail,
            self._key_head, orjson.dumps)
        try:  # the usual batch: every session is JSON (the loop below finds the one that is not)
            return [b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (
                head if expected else create_head, len(name := (key_head + key).encode()),
                name, len(value := dumps({"v": expected + 1 if expected else first_version(),
                                          "t": now, "data": data})),
                value, tail if expected else create_tail)
                for key, data, expected in items]
        except TypeError:
            pass
        out: list[bytes | Exception] = []
        for key, data, expected in items:
            try:
                value = dumps({"v": expected + 1 if expected else first_version(), "t": now,
                               "data": data})
            except TypeError as exc:
                out.append(not_json(key, exc))
                continue
            name = (key_head + key).encode()
            out.append(b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (
                head if expected else create_head, len(name), name, len(value), value,
                tail if expected else create_tail))
        return out

    def _saved_or_current(self, reply: Any, key: str) -> int | Current:
        """The save script's reply, as ``save_or_current`` returns it."""
        if reply.__class__ is int and reply > 0:  # saved: the new version
            return reply
        if reply.__class__ is bytes:  # a conflict, and what is stored
            logger.debug("save conflict for %s", key)
            return self._unwrap(key, reply)
        saved = _saved(reply, key)
        return (None, 0) if saved is None else saved  # (None, 0): a conflict, nothing stored

    async def delete(self, key: str) -> None:
        await self._delete(
            keys=[self.session_key(key), self._audit_key, self._audit_index(key)],
            args=[],
            client=self._client(),
        )

    async def mark_update(self, update_id: int) -> bool:
        created = await self._client().set(
            f"{self.prefix}seen:{int(update_id)}", b"1", nx=True, px=self._seen_ttl_ms
        )
        return bool(created)

    def _audit_member(self, record: AuditRecord) -> tuple[str, float]:
        """The sorted-set member of an audit record, and its score (the record's time)."""
        text = check_audit_record(record)
        # 16 hex digits of µs then 16 random ones: ties in score keep the order of adding
        member = f"{max(0, int(self.clock() * 1e6)):016x}{uuid.uuid4().hex[:16]}{text}"
        return member, audit_time(record, self.clock())

    async def add_audit(self, record: AuditRecord) -> None:
        member, score = self._audit_member(record)
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.zadd(self._audit_key, {member: score})
            pipe.sadd(self._audit_index(record["key"]), member)
            await pipe.execute()

    async def audit(self, since: float | None = None) -> list[AuditRecord]:
        low: Any = "-inf" if since is None else since
        members = await self._client().zrangebyscore(self._audit_key, low, "+inf")
        try:
            return [json.loads(member[_ID_LEN:]) for member in members]
        except ValueError:
            raise StoreError("an audit record in the Redis store is not valid JSON") from None

    async def expire(self) -> int:
        self._client()
        return 0  # Redis expires keys itself (PX on every save, and on seen markers)

    async def sessions(self) -> list[tuple[str, Session]]:
        client = self._client()
        head = self.session_key("")
        pattern = _glob_escape(head) + "*"
        out: list[tuple[str, Session]] = []
        skipped = 0
        batch: list[bytes] = []

        async def flush() -> None:
            nonlocal skipped
            values = await client.mget(batch)  # None for a key gone, or not a string
            for name, raw in zip(batch, values, strict=True):
                key = name.decode("utf-8", "replace")[len(head):]
                if raw is None:
                    continue
                try:
                    data, _ = self._unwrap(key, raw)
                except CorruptSession:
                    skipped += 1
                    continue
                if data is not None:
                    out.append((key, data))
            batch.clear()

        async for name in client.scan_iter(match=pattern, count=500):
            batch.append(name)
            if len(batch) >= 500:
                await flush()
        if batch:
            await flush()
        if skipped:
            logger.warning("skipped %d corrupt sessions while listing sessions", skipped)
        return out

    def _unwrap(self, key: str, raw: bytes | str) -> tuple[Session | None, int]:
        """The session inside a stored envelope and its version; (None, 0) if past its TTL."""
        envelope = decode_session(key, BACKEND, raw)
        version, touched_ms, data = envelope.get("v"), envelope.get("t"), envelope.get("data")
        if not isinstance(version, int) or not isinstance(touched_ms, int):
            raise CorruptSession(key, BACKEND, "missing or non-integer version/timestamp")
        if not isinstance(data, dict):
            raise CorruptSession(key, BACKEND, "missing session object")
        if self._now_ms() - touched_ms > self._ttl_ms:
            return None, 0
        return data, version

    async def check(self) -> None:
        try:
            await self._client().ping()
        except RedisError as exc:
            raise StoreConfigError(
                f"cannot reach Redis at {self.address}: {_reason(exc)}"
            ) from None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pipe.close()
            await self._redis.aclose()
            await self._batches.aclose()

    # --- for tools and benchmarks ---------------------------------------------------------

    async def stored_bytes(self, key: str) -> int | None:
        """Redis's ``MEMORY USAGE`` of the session's key, or None if absent."""
        usage = await self._client().memory_usage(self.session_key(key))
        return None if usage is None else int(usage)

    def _audit_index(self, key: str) -> str:
        return f"{self.prefix}audit:k:{key}"

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)


def _saved(reply: Any, key: str) -> int | None:
    """The save script's reply, as ``save`` returns it: the new version, or None on a
    conflict (it raises for an unreadable stored value or an error reply)."""
    if reply.__class__ is int and reply > 0:
        return reply
    if isinstance(reply, ResponseError):
        raise _wrong_type(key, reply)
    if reply == 0 or reply.__class__ is bytes:  # a conflict (and what is stored, if any)
        logger.debug("save conflict for %s", key)
        return None
    if reply == -1:
        raise CorruptSession(key, BACKEND, "stored value has no readable version")
    raise StoreError(f"unexpected reply to a save of {key!r} from Redis: {type(reply).__name__}")


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob characters escaped, for ``SCAN MATCH``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _wrong_type(key: str, exc: ResponseError) -> Exception:
    """A ``CorruptSession`` if the session key holds a non-string; else ``exc`` itself."""
    if "WRONGTYPE" in str(exc):
        return CorruptSession(key, BACKEND, "the Redis key holds a non-string value")
    return exc


def _reason(exc: BaseException) -> str:
    """A short lower-case reason for a failed connection (no addresses, no secrets)."""
    if isinstance(exc, AuthenticationError):
        return "authentication failed (check the password in the URL)"
    if isinstance(exc, ResponseError) and "NOAUTH" in str(exc):
        return "authentication required (add the password to the URL)"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "host name not found"
        if isinstance(seen, TimeoutError | RedisTimeoutError):
            return "timed out"
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror.lower()
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, RedisConnectionError):
        return " ".join(str(exc).split()) or "connection failed"
    return " ".join(str(exc).split()) or type(exc).__name__
