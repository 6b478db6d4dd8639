"""The SQLite session store (the default backend), on the standard library's ``sqlite3``.

One connection per store, opened lazily (``check()`` opens it and turns failures into a
one-line ``StoreConfigError``). The file and its parent directory are created if missing;
the database runs in WAL mode with ``synchronous=NORMAL`` and a busy timeout, so several
processes may share one file:

- ``save`` and ``mark_update`` are single conditional statements (compare-and-set on the
  version column / ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``): SQLite runs each
  atomically under the database write lock.
- Multi-statement writes (``delete``, ``expire``) run inside ``BEGIN IMMEDIATE``, which
  takes the write lock up front and waits for it via the busy timeout instead of failing
  with "database is locked" half-way.

Calls are synchronous inside the ``async`` methods: they take microseconds, and there is
never an ``await`` inside a transaction, so tasks sharing the connection cannot interleave.
A writer in another process holding the lock can block the event loop for up to
``busy_timeout`` seconds.

Tables: ``sessions(key, version, touched_at, data)``, ``seen(update_id, marked_at)``,
``audit(id, key, at, record)``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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
    StoreConfigError,
    StoreError,
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

BACKEND = "SQLite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    key        TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    touched_at REAL NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_touched_at ON sessions (touched_at);
CREATE TABLE IF NOT EXISTS seen (
    update_id INTEGER PRIMARY KEY,
    marked_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id     INTEGER PRIMARY KEY,
    key    TEXT NOT NULL,
    at     REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_key ON audit (key);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
"""

_INSERT_NEW = """
INSERT INTO sessions (key, version, touched_at, data) VALUES (:key, :new, :now, :data)
ON CONFLICT (key) DO UPDATE
    SET version = excluded.version, touched_at = excluded.touched_at, data = excluded.data
    WHERE sessions.touched_at < :cutoff
"""

_UPDATE = """
UPDATE sessions SET version = :new, touched_at = :now, data = :data
WHERE key = :key AND version = :expected AND touched_at >= :cutoff
"""

_MARK = """
INSERT INTO seen (update_id, marked_at) VALUES (:id, :now)
ON CONFLICT (update_id) DO UPDATE SET marked_at = excluded.marked_at
    WHERE seen.marked_at < :cutoff
"""


class SQLiteStore:
    """Keep sessions in one SQLite file; safe for several processes sharing it."""

    def __init__(
        self,
        path: str | Path,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        seen_ttl_seconds: float = DEFAULT_SEEN_TTL_SECONDS,
        clock: Clock = time.time,
        busy_timeout: float = 5.0,
    ) -> None:
        """Describe the store; nothing is opened until first use or ``check()``."""
        if ttl_seconds <= 0 or seen_ttl_seconds <= 0:
            raise ValueError("ttl_seconds and seen_ttl_seconds must be positive")
        self.path = Path(path)
        self.ttl_seconds = float(ttl_seconds)
        self.seen_ttl_seconds = float(seen_ttl_seconds)
        self.clock = clock
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # --- connection -----------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self._closed:
            raise StoreClosed(f"the SQLite session store at {self.path} is closed")
        self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        where = f"cannot open the SQLite session store at {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreConfigError(
                f"{where}: cannot create directory {self.path.parent}: "
                f"{exc.strerror or exc}"
            ) from None
        # Two processes opening a new file at once can be told "database is locked" at
        # once (switching to WAL, creating the schema), whatever the busy timeout: they try
        # again until the busy timeout has passed.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn = self._connect(where)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) \
                        or time.monotonic() >= deadline:
                    raise StoreConfigError(f"{where}: {_one_line(exc)}") from None
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise StoreConfigError(f"{where}: {_one_line(exc)}") from None
        logger.info("opened SQLite session store at %s", self.path)
        return conn

    def _connect(self, where: str) -> sqlite3.Connection:
        """A connection to the file, in WAL mode, with the schema made or checked."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            with _immediate(conn):
                (user_version,) = conn.execute("PRAGMA user_version").fetchone()
                if user_version > SCHEMA_VERSION:
                    raise StoreConfigError(
                        f"{where}: its schema version {user_version} is newer than this "
                        f"bot's ({SCHEMA_VERSION}); upgrade the bot or use another file"
                    )
                if user_version < SCHEMA_VERSION:
                    # not executescript(): it would COMMIT the open transaction first
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    # --- SessionStore ---------------------------------------------------------------------

    async def load(self, key: str) -> tuple[Session | None, int]:
        row = (
            self._db()
            .execute("SELECT version, touched_at, data FROM sessions WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            return None, 0
        version, touched_at, data = row
        if not isinstance(version, int) or not isinstance(touched_at, int | float):
            raise CorruptSession(key, BACKEND, "version or timestamp column is not a number")
        if self.clock() - touched_at > self.ttl_seconds:
            return None, 0
        if not isinstance(data, str | bytes):
            raise CorruptSession(key, BACKEND, f"data column holds {type(data).__name__}")
        return decode_session(key, BACKEND, data), version

    async def save(self, key: str, data: Session, expected_version: int,
                   audit: AuditRecord | None = None) -> int | None:
        check_expected_version(expected_version)
        text = encode_session(key, data)
        audit_text = check_audit_record(audit) if audit is not None else None
        db = self._db()
        now = self.clock()
        cutoff = now - self.ttl_seconds
        version = expected_version + 1 if expected_version else first_version()
        if audit is None:
            saved = self._save_row(db, key, text, expected_version, version, now, cutoff)
        else:
            with _immediate(db):  # the session and its audit record, or neither
                saved = self._save_row(db, key, text, expected_version, version, now, cutoff)
                if saved:
                    db.execute("INSERT INTO audit (key, at, record) VALUES (?, ?, ?)",
                               (audit["key"], audit_time(audit, now), audit_text))
        if not saved:
            logger.debug("save conflict for %s at expected version %d", key, expected_version)
            return None
        return version

    @staticmethod
    def _save_row(db: sqlite3.Connection, key: str, text: str, expected_version: int,
                  version: int, now: float, cutoff: float) -> bool:
        if expected_version == 0:
            cursor = db.execute(_INSERT_NEW, {"key": key, "new": version, "now": now,
                                              "data": text, "cutoff": cutoff})
        else:
            cursor = db.execute(
                _UPDATE,
                {
                    "key": key,
                    "new": version,
                    "expected": expected_version,
                    "now": now,
                    "data": text,
                    "cutoff": cutoff,
                },
            )
        return bool(cursor.rowcount == 1)

    def save_or_current(self, key: str, data: Session, expected_version: int,
                        audit: AuditRecord | None = None) -> Awaitable[int | Current]:
        return save_then_load(self, key, data, expected_version, audit)

    def save_then(self, key: str, data: Session, expected_version: int,
                  audit: AuditRecord | None, then: Callable[[Any, Any], Any],
                  arg: Any) -> Awaitable[Any]:
        return save_then_via(self, key, data, expected_version, audit, then, arg)

    async def delete(self, key: str) -> None:
        db = self._db()
        with _immediate(db):
            db.execute("DELETE FROM sessions WHERE key = ?", (key,))
            db.execute("DELETE FROM audit WHERE key = ?", (key,))

    async def mark_update(self, update_id: int) -> bool:
        now = self.clock()
        cursor = self._db().execute(
            _MARK, {"id": int(update_id), "now": now, "cutoff": now - self.seen_ttl_seconds}
        )
        return cursor.rowcount == 1

    async def add_audit(self, record: AuditRecord) -> None:
        text = check_audit_record(record)
        self._db().execute(
            "INSERT INTO audit (key, at, record) VALUES (?, ?, ?)",
            (record["key"], audit_time(record, self.clock()), text),
        )

    async def audit(self, since: float | None = None) -> list[AuditRecord]:
        db = self._db()
        if since is None:
            rows = db.execute("SELECT record FROM audit ORDER BY at, id")
        else:
            rows = db.execute("SELECT record FROM audit WHERE at >= ? ORDER BY at, id", (since,))
        try:
            return [json.loads(text) for (text,) in rows]
        except ValueError:
            raise StoreError("an audit record in the SQLite store is not valid JSON") from None

    async def expire(self) -> int:
        db = self._db()
        now = self.clock()
        with _immediate(db):
            removed = db.execute(
                "DELETE FROM sessions WHERE touched_at < ?", (now - self.ttl_seconds,)
            ).rowcount
            db.execute("DELETE FROM seen WHERE marked_at < ?", (now - self.seen_ttl_seconds,))
        if removed:
            logger.info("expired %d inactive sessions", removed)
        return removed

    async def sessions(self) -> list[tuple[str, Session]]:
        rows = self._db().execute(
            "SELECT key, data FROM sessions WHERE touched_at >= ? ORDER BY key",
            (self.clock() - self.ttl_seconds,),
        )
        out: list[tuple[str, Session]] = []
        skipped = 0
        for key, data in rows.fetchall():
            try:
                if not isinstance(key, str) or not isinstance(data, str | bytes):
                    raise CorruptSession(str(key), BACKEND, "a column holds the wrong type")
                out.append((key, decode_session(key, BACKEND, data)))
            except CorruptSession:
                skipped += 1
        if skipped:
            logger.warning("skipped %d corrupt sessions while listing sessions", skipped)
        return out

    async def check(self) -> None:
        db = self._db()
        try:
            db.execute("SELECT count(*) FROM sessions WHERE 0").fetchone()
        except sqlite3.Error as exc:
            raise StoreConfigError(
                f"cannot use the SQLite session store at {self.path}: {_one_line(exc)}"
            ) from None

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute("PRAGMA optimize")
            except sqlite3.Error:
                logger.debug("PRAGMA optimize failed on close", exc_info=True)
            conn.close()

    # --- for tools and benchmarks ---------------------------------------------------------

    def stored_bytes(self, key: str) -> int | None:
        """The size of the row holding ``key`` (key + data + two 8-byte numbers), or None."""
        row = (
            self._db()
            .execute(
                "SELECT length(CAST(key AS BLOB)) + length(CAST(data AS BLOB)) + 16"
                " FROM sessions WHERE key = ?",
                (key,),
            )
            .fetchone()
        )
        return None if row is None else int(row[0])


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """Run a block in ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
