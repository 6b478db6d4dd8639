"""One Redis connection carrying many commands at once: written as they come, replies read as
they arrive.

The session store's hot path (a load and a save per answer, from many patients at once) goes
through here instead of a redis-py client call per command: per command, a client call costs
more of our process's time than the engine's whole step (a coroutine chain per reply, a
timer per reply). Here:

- a command is packed (RESP) and queued with a future; everything queued while the event
  loop runs its ready callbacks goes out in one socket write at the end of that pass;
- commands are written without waiting for earlier replies (pipelining: Redis works on one
  batch while this process prepares the next), and replies are matched to futures in order,
  by hiredis, straight from each chunk the socket returns;
- redis-py makes the connection (address, TLS, password, database, client name), from the
  pool it was given; only then are its stream reader and writer taken over;
- one timer watches for a server that stops answering: no reply for ``timeout`` seconds
  while commands wait fails them all with a timeout and drops the connection;
- a dropped connection fails the commands on the wire with a connection error (they may or
  may not have run: the caller decides whether to send again); commands queued after it go
  out on a new connection.

Error replies (``-ERR ...``) fail only their own command, as redis-py's exceptions
(``NoScriptError``, ``ResponseError``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    InvalidResponse,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

logger = logging.getLogger(__name__)

READ_SIZE = 1 << 18  # bytes asked of the socket per read


def _reply_error(message: str) -> ResponseError:
    """The exception for an error reply (returned by the parser, raised by its caller)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class Pipe:
    """Many commands in flight on one connection taken from ``pool``."""

    def __init__(self, pool: ConnectionPool, timeout: float,
                 closed: Callable[[], Exception]) -> None:
        """``closed()`` makes the error ``call`` raises once ``close`` has been called."""
        self._pool = pool
        self._timeout = timeout
        self._closed_error = closed
        self._conn: AbstractConnection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None
        self._queued: list[bytes] = []
        self._queued_futures: list[asyncio.Future[Any]] = []
        self._flush_soon = False
        self._inflight: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._watch: asyncio.TimerHandle | None = None
        self._progress = 0.0  # loop time of the last reply, or of the first command waiting
        self._closed = False
        self.writes: list[int] = []  # commands per socket write (the last 100; for tests)

    def call(self, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue one command; its future gets the reply (or the error)."""
        if self._closed:
            raise self._closed_error()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # RESP, packed by hiredis in C: ~3x faster than in Python for a save's parts
        self._queued.append(hiredis.pack_command(command))
        self._queued_futures.append(future)
        if not self._flush_soon:
            self._flush_soon = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_soon = False
        if not self._queued or self._closed:
            return
        if self._writer is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(
                    self._connect(), name="redis connect")
            return  # sent once connected
        data = b"".join(self._queued)
        futures = self._queued_futures
        self._queued, self._queued_futures = [], []
        loop = asyncio.get_running_loop()
        if not self._inflight:
            self._progress = loop.time()
        self._inflight.extend(futures)
        self.writes.append(len(futures))
        del self.writes[:-100]
        self._writer.write(data)
        if self._watch is None:
            self._watch = loop.call_later(self._timeout, self._check)

    async def _connect(self) -> None:
        try:
            try:  # connecting includes redis-py's handshake, which has no time limit of its own
                async with asyncio.timeout(self._timeout):
                    conn = await self._pool.get_connection()
            except TimeoutError:
                raise RedisTimeoutError("Timeout connecting to Redis") from None
            writer, reader = conn._writer, conn._reader
            if writer is None or reader is None:  # pragma: no cover - redis-py changed
                await self._pool.release(conn)
                raise RedisConnectionError("the Redis connection has no stream")
        except BaseException as exc:
            self._connecting = None
            self._fail_queued(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._conn, self._writer = conn, writer
        self._connecting = None
        self._reading = asyncio.get_running_loop().create_task(
            self._read(reader), name="redis replies")
        self._flush()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(protocolError=InvalidResponse, replyError=_reply_error)
        inflight = self._inflight
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise RedisConnectionError("Connection closed by server.")
                parser.feed(data)
                self._progress = loop.time()
                while (reply := parser.gets()) is not False:
                    future = inflight.popleft()
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._drop(exc if isinstance(exc, RedisConnectionError | RedisTimeoutError)
                             else RedisConnectionError(f"Error reading from Redis: {exc}"))

    def _check(self) -> None:
        """The timer: fail everything waiting if the server has gone quiet."""
        self._watch = None
        if not self._inflight or self._closed:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._progress
        if quiet >= self._timeout:
            loop.create_task(self._drop(RedisTimeoutError("Timeout reading from Redis")))
        else:
            self._watch = loop.call_later(self._timeout - quiet, self._check)

    async def _drop(self, exc: Exception) -> None:
        """Give up the connection: the commands on the wire fail with ``exc``."""
        conn, self._conn, self._writer = self._conn, None, None
        reading, self._reading = self._reading, None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        inflight, self._inflight = self._inflight, collections.deque()
        if inflight and not self._closed:
            logger.warning("Redis connection dropped (%s) with %d commands on it",
                           exc, len(inflight))
        for future in inflight:
            if not future.done():
                future.set_exception(exc)
        if reading is not None and reading is not asyncio.current_task():
            reading.cancel()
        if conn is not None:
            await conn.disconnect()
            await self._pool.release(conn)
        if self._queued and not self._closed:  # queued meanwhile: a new connection
            self._flush()

    def _fail_queued(self, exc: BaseException) -> None:
        futures, self._queued, self._queued_futures = self._queued_futures, [], []
        for future in futures:
            if not future.done():
                future.set_exception(exc)

    async def close(self) -> None:
        """Fail whatever still waits, and close the connection."""
        if self._closed:
            return
        self._closed = True
        error = self._closed_error()
        self._fail_queued(error)
        if self._connecting is not None:
            self._connecting.cancel()
        await self._drop(error)
