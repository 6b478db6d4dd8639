"""Session storage: the ``SessionStore`` interface, its backends, and ``open_store``.

``open_store(os.environ.get("BOT_STORE"))`` picks the backend:

- unset or empty                      → SQLite at ``data/sessions.db`` (relative to the cwd)
- ``path/to/file.db`` (a plain path)  → SQLite at that path
- ``sqlite:///relative/file.db``      → SQLite, relative to the cwd
- ``sqlite:////absolute/file.db``     → SQLite, absolute path
- ``redis://[:password@]host[:port][/db]`` or ``rediss://...`` (TLS) → Redis

Anything else raises ``StoreConfigError`` with one line saying what is wrong. Opening is
lazy: call ``await store.check()`` at start-up to fail fast on an unreachable Redis or an
unusable file. Backend modules are imported on demand, so importing this package never
imports the Redis driver.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from .base import (
    DEFAULT_SEEN_TTL_SECONDS,
    DEFAULT_TTL_SECONDS,
    AuditRecord,
    Clock,
    CorruptSession,
    Session,
    SessionStore,
    StoreClosed,
    StoreConfigError,
    StoreError,
)

if TYPE_CHECKING:
    from bot.flow.archive import FlowArchive

    from .flow_versions import SharedFlowArchive

__all__ = [
    "ACCEPTED",
    "DEFAULT_SEEN_TTL_SECONDS",
    "DEFAULT_SETTING",
    "DEFAULT_TTL_SECONDS",
    "AuditRecord",
    "Clock",
    "CorruptSession",
    "Session",
    "SessionStore",
    "StoreClosed",
    "StoreConfigError",
    "StoreError",
    "open_flow_archive",
    "open_store",
]

DEFAULT_SETTING = "sqlite:///data/sessions.db"

ACCEPTED = (
    "use a file path, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "redis://host:port[/db] or rediss://host:port[/db]"
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_BARE_SCHEMES = {"sqlite", "redis", "rediss", "memory"}
_REDIS_OPTIONS = {
    "client_name",
    "db",
    "health_check_interval",
    "max_connections",
    "socket_connect_timeout",
    "socket_timeout",
    "ssl_ca_certs",
    "ssl_cert_reqs",
    "ssl_certfile",
    "ssl_check_hostname",
    "ssl_keyfile",
}


def open_store(
    setting: str | None,
    *,
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    seen_ttl_seconds: float = DEFAULT_SEEN_TTL_SECONDS,
    clock: Clock = time.time,
    redis_prefix: str = "triage:",
) -> SessionStore:
    """Create the store ``setting`` (the value of ``BOT_STORE``) names; connect lazily."""
    text = (setting or "").strip() or DEFAULT_SETTING
    shown = _redact(text)

    def bad(what: str) -> StoreConfigError:
        return StoreConfigError(f"BOT_STORE={shown!r} is not a valid store: {what}; {ACCEPTED}")

    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else None
    if scheme in ("redis", "rediss"):
        if not text[len(scheme) :].startswith("://"):
            raise bad(f"a {scheme} URL starts with {scheme}://")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise bad(f"bad host or port ({exc})") from None
        if port == 0:
            raise bad("port 0 is not a Redis port")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise bad(f"the database after the host must be a number, not {db!r}")
        unknown = sorted(set(parse_qs(parts.query, keep_blank_values=True)) - _REDIS_OPTIONS)
        if unknown:
            raise bad(
                f"unknown Redis URL option {unknown[0]!r} (known: {', '.join(sorted(_REDIS_OPTIONS))})"
            )
        from .redis_store import RedisStore

        return RedisStore(
            text,
            prefix=redis_prefix,
            ttl_seconds=ttl_seconds,
            seen_ttl_seconds=seen_ttl_seconds,
            clock=clock,
        )
    if scheme == "sqlite":
        if not text.lower().startswith("sqlite:///"):
            raise bad("an SQLite URL has three slashes before a relative path, four before /")
        path_text = text[len("sqlite:///") :]
        if not path_text:
            raise bad("the SQLite URL has no file path")
    elif scheme is not None:
        raise bad(f"unknown scheme {scheme!r}")
    elif text.lower() in _BARE_SCHEMES:
        raise bad(f"{text!r} looks like a scheme without a URL")
    else:
        path_text = text
    if path_text == ":memory:":
        raise bad("an in-memory SQLite database is not shared between processes and is lost on restart")
    if path_text.endswith(("/", "\\")):
        raise bad("the SQLite path names a directory, not a file")
    from .sqlite import SQLiteStore

    return SQLiteStore(
        Path(path_text).expanduser().absolute(),
        ttl_seconds=ttl_seconds,
        seen_ttl_seconds=seen_ttl_seconds,
        clock=clock,
    )


def open_flow_archive(setting: str | None, folder: str | Path, *,
                      redis_prefix: str = "triage:") -> FlowArchive | SharedFlowArchive:
    """Where the flow versions that served patients are kept: the folder (``FLOW_ARCHIVE``),
    and with a Redis ``BOT_STORE`` Redis too, shared by every instance
    (``flow_versions.SharedFlowArchive``). Never raises and connects lazily (a malformed
    or unreachable setting is ``open_store``'s to report)."""
    from bot.flow.archive import FlowArchive

    local = FlowArchive(folder)
    text = (setting or "").strip()
    if not text.lower().startswith(("redis://", "rediss://")):
        return local
    from .flow_versions import SharedFlowArchive

    return SharedFlowArchive(local, text, prefix=redis_prefix)


def _redact(setting: str) -> str:
    """The setting with any password in a URL replaced by ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/@]*:)?[^/@]*@", _mask_userinfo, setting)


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, user = match.group(1), match.group(2)
    return f"{scheme}{user or ''}***@"
