"""Start a throw-away ``redis-server`` on a free loopback port (for tests and benchmarks).

    server = start_redis_server()      # RedisServer(url="redis://127.0.0.1:PORT/0", ...)
    ...
    server.stop()

or ``with start_redis_server() as server: ...``. The server keeps nothing on disk
(``--save "" --appendonly no``, working directory in a temp dir) and is stopped at exit if
the caller forgets. ``start_redis_server_or_skip()`` is the pytest flavour: it skips the
test when ``redis-server`` is not installed, but fails it when ``CI=true``.

``tls=True`` serves TLS only (``rediss://...?ssl_ca_certs=...``), with the self-signed
certificate in ``tls/`` (for 127.0.0.1 and localhost, valid 2000-2199; clients need no
certificate of their own), as a managed Redis does.

This module imports nothing from pytest at import time, so scripts can use it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REDIS_SERVER = "redis-server"
TLS_CERT = Path(__file__).resolve().parent / "tls" / "redis.crt"
TLS_KEY = TLS_CERT.with_suffix(".key")


@dataclass
class RedisServer:
    """A running redis-server child process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    workdir: str
    tls: bool = False
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


def start_redis_server(timeout: float = 10.0, port: int | None = None,
                       tls: bool = False) -> RedisServer:
    """Start redis-server on a free 127.0.0.1 port (or on ``port``, as a restart would) and
    wait until it answers PING (over TLS only, with ``tls``)."""
    executable = shutil.which(REDIS_SERVER)
    if executable is None:
        raise FileNotFoundError(f"{REDIS_SERVER} is not on PATH (apt-get install redis-server)")
    last_error = ""
    wanted = port
    for _attempt in range(3):  # another process may grab the free port before us
        port = _free_port() if wanted is None else wanted
        workdir = tempfile.mkdtemp(prefix="redis-test-")
        listen = ["--port", str(port)]
        url = f"redis://127.0.0.1:{port}/0"
        if tls:
            listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(TLS_CERT),
                      "--tls-key-file", str(TLS_KEY), "--tls-ca-cert-file", str(TLS_CERT),
                      "--tls-auth-clients", "no"]
            url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={TLS_CERT}"
        with open(os.path.join(workdir, "stderr.txt"), "wb") as stderr:  # config errors
            process = subprocess.Popen(
                [
                    executable,
                    *listen,
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
                stderr=stderr,
            )
        server = RedisServer(url, port, process, workdir, tls)
        if _wait_ready(server, timeout):
            atexit.register(server.stop)
            return server
        last_error = (_tail(os.path.join(workdir, "redis.log"))
                      or _tail(os.path.join(workdir, "stderr.txt")) or "no answer to PING")
        server.stop()
    raise RuntimeError(f"could not start {REDIS_SERVER}: {last_error}")


def start_redis_server_or_skip(tls: bool = False) -> RedisServer:
    """``start_redis_server()``, or skip the test (fail it when ``CI=true``) if not installed,
    or, with ``tls``, if this redis-server was built without TLS."""
    import pytest

    in_ci = os.environ.get("CI", "").lower() == "true"
    if not redis_server_available():
        message = f"{REDIS_SERVER} is not on PATH; install it (apt-get install redis-server)"
        if in_ci:
            pytest.fail(message)
        pytest.skip(message)
    try:
        return start_redis_server(tls=tls)
    except RuntimeError as exc:
        if tls and not in_ci and "tls" in str(exc).lower():
            pytest.skip(f"this {REDIS_SERVER} cannot serve TLS: {exc}")
        raise


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
    context = None
    if server.tls:
        context = ssl.create_default_context(cafile=str(TLS_CERT))
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as raw:
                sock = raw if context is None else context.wrap_socket(
                    raw, server_hostname="127.0.0.1")
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False
