"""open_store: parsing BOT_STORE, and check() failing with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.storage import ACCEPTED, StoreConfigError, open_store
from bot.storage.redis_store import RedisStore
from bot.storage.sqlite import SQLiteStore


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        (None, "data/sessions.db"),
        ("", "data/sessions.db"),
        ("  \n", "data/sessions.db"),
        ("sessions.db", "sessions.db"),
        ("var/bot/sessions.db", "var/bot/sessions.db"),
        ("./x.sqlite3", "x.sqlite3"),
        ("sqlite:///data/other.db", "data/other.db"),
        ("sqlite:///rel/dir/s.db\n", "rel/dir/s.db"),
    ],
)
async def test_sqlite_settings_relative_to_the_cwd(
    setting: str | None, path: str, tmp_path: Path
) -> None:
    store = open_store(setting)
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / path
    assert not store.path.exists()  # nothing is created until used
    await store.check()
    assert store.path.is_file()  # created with its parent directory
    await store.close()


async def test_sqlite_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/abs/s.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "abs" / "s.db"
    plain = open_store(str(tmp_path / "plain.db"))
    assert isinstance(plain, SQLiteStore)
    assert plain.path == tmp_path / "plain.db"


@pytest.mark.parametrize(
    "setting",
    [
        "redis://localhost",
        "redis://127.0.0.1:6390/2",
        "rediss://:pw@cache.example:6380/0?ssl_cert_reqs=none",
        "redis://h/0?socket_timeout=2&client_name=triage",
    ],
)
async def test_redis_settings(setting: str) -> None:
    store = open_store(setting, redis_prefix="bot1:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "bot1:"
    assert "pw" not in repr(store)
    await store.close()


def test_options_reach_the_store() -> None:
    store = open_store("x.db", ttl_seconds=60, seen_ttl_seconds=5, clock=lambda: 1.0)
    assert isinstance(store, SQLiteStore)
    assert (store.ttl_seconds, store.seen_ttl_seconds, store.clock()) == (60, 5, 1.0)


@pytest.mark.parametrize(
    ("setting", "what"),
    [
        ("ftp://files/sessions.db", "unknown scheme 'ftp'"),
        ("postgres://db/bot", "unknown scheme 'postgres'"),
        ("localhost:6379", "unknown scheme 'localhost'"),
        ("sqlite://data/sessions.db", "an SQLite URL has three slashes before a relative path, four before /"),
        ("sqlite:data.db", "an SQLite URL has three slashes before a relative path, four before /"),
        ("sqlite:///", "the SQLite URL has no file path"),
        ("sqlite:///:memory:", "an in-memory SQLite database is not shared between processes and is lost on restart"),
        (":memory:", "an in-memory SQLite database is not shared between processes and is lost on restart"),
        ("data/", "the SQLite path names a directory, not a file"),
        ("redis", "'redis' looks like a scheme without a URL"),
        ("redis:localhost", "a redis URL starts with redis://"),
        ("redis://localhost:port", "bad host or port (Port could not be cast to integer value as 'port')"),
        ("redis://localhost:99999", "bad host or port (Port out of range 0-65535)"),
        ("redis://localhost:0", "port 0 is not a Redis port"),
        ("rediss://localhost/cache", "the database after the host must be a number, not 'cache'"),
        (
            "redis://localhost/0?timeout=1&pool=9",
            "unknown Redis URL option 'pool' (known: client_name, db, health_check_interval, "
            "max_connections, socket_connect_timeout, socket_timeout, ssl_ca_certs, ssl_cert_reqs, "
            "ssl_certfile, ssl_check_hostname, ssl_keyfile)",
        ),
    ],
)
def test_malformed_settings_raise_one_line(setting: str, what: str) -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store(setting)
    assert str(caught.value) == (
        f"BOT_STORE={setting.strip()!r} is not a valid store: {what}; {ACCEPTED}"
    )
    assert "\n" not in str(caught.value)


def test_accepted_forms_are_spelled_out() -> None:
    assert ACCEPTED == (
        "use a file path, sqlite:///relative/path.db, sqlite:////absolute/path.db, "
        "redis://host:port[/db] or rediss://host:port[/db]"
    )


def test_passwords_never_appear_in_errors() -> None:
    with pytest.raises(StoreConfigError) as caught:
        open_store("redis://admin:s3cret@localhost:port/0")
    assert "s3cret" not in str(caught.value)
    assert str(caught.value).startswith("BOT_STORE='redis://admin:***@localhost:port/0' ")


async def test_unreachable_redis_fails_check_with_one_line() -> None:
    store = open_store("redis://127.0.0.1:1")
    with pytest.raises(StoreConfigError) as caught:
        await store.check()
    assert str(caught.value) == "cannot reach Redis at redis://127.0.0.1:1: connection refused"
    await store.close()


async def test_unreachable_redis_error_hides_the_password() -> None:
    store = open_store("redis://:hunter2@127.0.0.1:1/3")
    with pytest.raises(StoreConfigError) as caught:
        await store.check()
    assert str(caught.value) == "cannot reach Redis at redis://127.0.0.1:1: connection refused"
    await store.close()


async def test_sqlite_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    store = open_store("afile/sub/sessions.db")
    with pytest.raises(StoreConfigError) as caught:
        await store.check()
    assert str(caught.value) == (
        f"cannot open the SQLite session store at {tmp_path}/afile/sub/sessions.db: "
        f"cannot create directory {tmp_path}/afile/sub: Not a directory"
    )


async def test_sqlite_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    store = open_store("adir")
    with pytest.raises(StoreConfigError) as caught:
        await store.check()
    assert str(caught.value) == (
        f"cannot open the SQLite session store at {tmp_path}/adir: unable to open database file"
    )


async def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("these are not the sessions you are looking for\n" * 100)
    store = open_store("notes.db")
    with pytest.raises(StoreConfigError) as caught:
        await store.check()
    assert str(caught.value) == (
        f"cannot open the SQLite session store at {tmp_path}/notes.db: file is not a database"
    )
    with pytest.raises(StoreConfigError):  # every use says the same, not a raw sqlite3 error
        await store.load("tg:1")


def test_importing_storage_or_opening_sqlite_does_not_import_redis() -> None:
    code = (
        "import sys; from bot.storage import open_store; open_store(None); "
        "import bot.storage.memory; print('redis' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.stdout.strip() == "False"
