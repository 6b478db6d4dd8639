"""Start a throw-away ``redis-server`` on a free loopback port (for tests and benchmarks).

    server = start_redis_server()      # RedisServer(url="redis://127.0.0.1:PORT/0", ...)
    ...
    server.stop()

or ``with start_redis_server() as server: ...``. The server keeps nothing on disk
(``--save "" --appendonly no``, working directory in a temp dir) and is stopped at exit if
the caller forgets. ``start_redis_server_or_skip()`` is the pytest flavour: it skips the
test when ``redis-server`` is not installed, but fails it when ``CI=true``.

This module imports nothing from pytest at import time, so scripts can use it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from types import TracebackType

REDIS_SERVER = "redis-server"


@dataclass
class RedisServer:
    """A running redis-server child process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: str
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Terminate the server and remove its working directory (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def redis_server_available() -> bool:
    """True if ``redis-server`` is on PATH."""
    return shutil.which(REDIS_SERVER) is not None


def start_redis_server(timeout: float = 10.0, port: int | None = None) -> RedisServer:
    """Start redis-server on a free 127.0.0.1 port (or on ``port``, as a restart would) and
    wait until it answers PING."""
    executable = shutil.which(REDIS_SERVER)
    if executable is None:
        raise FileNotFoundError(f"{REDIS_SERVER} is not on PATH (apt-get install redis-server)")
    last_error = ""
    wanted = port
    for _attempt in range(3):  # another process may grab the free port before us
        port = _free_port() if wanted is None else wanted
        workdir = tempfile.mkdtemp(prefix="redis-test-")
        process = subprocess.Popen(
            [
                executable,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", workdir,
                "--loglevel", "warning",
                "--logfile", os.path.join(workdir, "redis.log"),
                "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = RedisServer(f"redis://127.0.0.1:{port}/0", port, process, workdir)
        if _wait_ready(server, timeout):
            atexit.register(server.stop)
            return server
        last_error = _tail(os.path.join(workdir, "redis.log")) or "no answer to PING"
        server.stop()
    raise RuntimeError(f"could not start {REDIS_SERVER}: {last_error}")


def start_redis_server_or_skip() -> RedisServer:
    """``start_redis_server()``, or skip the test (fail it when ``CI=true``) if not installed."""
    import pytest

    if not redis_server_available():
        message = f"{REDIS_SERVER} is not on PATH; install it (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return start_redis_server()


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return " | ".join(log.read().strip().splitlines()[-3:])
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(server: RedisServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False
