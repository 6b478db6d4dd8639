"""Settings from the environment: a value that cannot work is one clear line, never ignored."""

from __future__ import annotations

import pytest

from bot.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.session_ttl, s.audit_ttl, s.webhook_port, s.health_port, s.log_level) == (
        30 * 86400, 365 * 86400, 8443, None, "INFO")


@pytest.mark.parametrize(("raw", "seconds"), [("3600", 3600), ("45m", 2700), ("12h", 43200),
                                              ("30d", 30 * 86400), (" 1.5H ", 5400)])
def test_durations(raw: str, seconds: int) -> None:
    assert Settings.from_env({"SESSION_TTL": raw}).session_ttl == seconds
    assert Settings.from_env({"AUDIT_TTL": raw}).audit_ttl == seconds


@pytest.mark.parametrize(("raw", "says"), [
    ("abc", "SESSION_TTL='abc' is not a duration (like 3600, 45m, 12h or 30d)"),
    ("infd", "SESSION_TTL='infd' is not a duration (like 3600, 45m, 12h or 30d)"),
    ("nanh", "SESSION_TTL='nanh' is not a duration (like 3600, 45m, 12h or 30d)"),
    ("0", "SESSION_TTL='0' should be at least 1 second (like 3600, 45m, 12h or 30d)"),
    ("-5", "SESSION_TTL='-5' should be at least 1 second (like 3600, 45m, 12h or 30d)"),
    ("0.1s", "SESSION_TTL='0.1s' should be at least 1 second (like 3600, 45m, 12h or 30d)"),
])
def test_a_duration_that_cannot_work(raw: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SESSION_TTL": raw})
    assert str(caught.value) == says


def test_ports() -> None:
    s = Settings.from_env({"WEBHOOK_PORT": "8080", "HEALTH_PORT": " 9000 "})
    assert (s.webhook_port, s.health_port) == (8080, 9000)
    for name in ("WEBHOOK_PORT", "HEALTH_PORT"):
        for raw in ("abc", "0", "65536", "-1", "80.5"):
            with pytest.raises(SettingsError) as caught:
                Settings.from_env({name: raw})
            assert str(caught.value) == f"{name}={raw!r} should be a port number, 1 to 65535"


def test_log_level() -> None:
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"LOG_LEVEL": "verbose"})
    assert str(caught.value) == ("LOG_LEVEL='verbose' should be one of DEBUG, INFO, WARNING, "
                                 "ERROR, CRITICAL")
