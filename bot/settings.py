"""Settings from environment variables (the README lists every one with its default)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bot.eventloop import CHOICES


class SettingsError(ValueError):
    """A setting with a value that cannot work; the message is one line for the operator."""


def default_flow() -> str:
    for candidate in ("flows/back_spasm.yaml", "flows/demo.yaml"):
        if Path(candidate).exists():
            return candidate
    return "flows/back_spasm.yaml"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None


def _duration(env: dict[str, str], name: str, default: int) -> int:
    """Seconds; accepts 3600, 30d, 12h, 15m."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        seconds = int(float(raw[:-1]) * units[raw[-1]]) if raw[-1] in units else int(raw)
    except (ValueError, OverflowError):  # (OverflowError: "infd")
        raise SettingsError(f"{name}={raw!r} is not a duration (like 3600, 45m, 12h or 30d)") \
            from None
    if seconds < 1:
        raise SettingsError(f"{name}={raw!r} should be at least 1 second (like 3600, 45m, 12h "
                            f"or 30d)")
    return seconds


def _port(env: dict[str, str], name: str) -> int | None:
    """A port number, or None if ``name`` is not set."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name}={raw!r} should be a port number, 1 to 65535")
    return int(raw)


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class Settings:
    token: str | None = None
    flow: str = field(default_factory=default_flow)
    store: str | None = None  # BOT_STORE: a path, sqlite:///..., or redis://...
    flow_archive: str = "data/flow-versions"
    session_ttl: int = 30 * 86400
    audit_ttl: int = 365 * 86400
    clinic_phone: str = "(817) 000-0000"
    clinic_name: str = "Fort Worth Brain & Spine Institute"
    base_url: str | None = None  # TELEGRAM_BASE_URL
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = 8443
    webhook_secret: str | None = None
    health_port: int | None = None
    staff_chat_id: int | None = None
    admin_ids: frozenset[int] = frozenset()
    log_level: str = "INFO"
    pseudonym_key: str = "change-me"
    event_loop: str = "auto"  # BOT_EVENT_LOOP: auto, uvloop or asyncio (see bot/eventloop.py)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        staff = e.get("STAFF_CHAT_ID", "").strip()
        admins = e.get("ADMIN_IDS", "").replace(";", ",")
        try:
            admin_ids = frozenset(int(x) for x in admins.split(",") if x.strip())
        except ValueError:
            raise SettingsError(f"ADMIN_IDS={admins!r} should be Telegram user ids separated by "
                                "commas, like 12345,67890") from None
        log_level = (e.get("LOG_LEVEL") or "INFO").strip().upper()
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={e['LOG_LEVEL']!r} should be one of "
                                f"{', '.join(LOG_LEVELS)}")
        event_loop = (e.get("BOT_EVENT_LOOP") or "auto").strip().lower()
        if event_loop not in CHOICES:
            raise SettingsError(f"BOT_EVENT_LOOP={e['BOT_EVENT_LOOP']!r} should be "
                                f"{', '.join(CHOICES[:-1])} or {CHOICES[-1]}")
        return cls(
            token=e.get("TELEGRAM_BOT_TOKEN") or None,
            flow=e.get("BOT_FLOW") or default_flow(),
            store=e.get("BOT_STORE") or None,
            flow_archive=e.get("FLOW_ARCHIVE") or "data/flow-versions",
            session_ttl=_duration(e, "SESSION_TTL", 30 * 86400),
            audit_ttl=_duration(e, "AUDIT_TTL", 365 * 86400),
            clinic_phone=e.get("CLINIC_PHONE") or "(817) 000-0000",
            clinic_name=e.get("CLINIC_NAME") or "Fort Worth Brain & Spine Institute",
            base_url=e.get("TELEGRAM_BASE_URL") or None,
            webhook_url=e.get("WEBHOOK_URL") or None,
            webhook_listen=e.get("WEBHOOK_LISTEN") or "0.0.0.0",
            webhook_port=_port(e, "WEBHOOK_PORT") or 8443,
            webhook_secret=e.get("WEBHOOK_SECRET") or None,
            health_port=_port(e, "HEALTH_PORT"),
            staff_chat_id=_int(e, "STAFF_CHAT_ID", 0) or None if staff else None,
            admin_ids=admin_ids,
            log_level=log_level,
            pseudonym_key=e.get("PSEUDONYM_KEY") or (e.get("TELEGRAM_BOT_TOKEN") or "change-me"),
            event_loop=event_loop,
        )

    @property
    def placeholders(self) -> dict[str, str]:
        return {"clinic_phone": self.clinic_phone, "clinic_name": self.clinic_name}
