"""One Redis connection carrying many commands at once: written as they come, replies read as
they arrive.

The session store's hot path (a load and a save per answer, from many patients at once) goes
through here instead of a redis-py client call per command: per command, a client call costs
more of our process's time than the engine's whole step (a coroutine chain per reply, a
timer per reply). Here:

- a command is packed (RESP) and queued with a future; everything queued while the event
  loop runs its ready callbacks goes out in one socket write at the end of that pass;
- a command may also be queued unpacked, as an item for the pipe's ``packer``, which packs
  all such items of a batch at once, just before the write: the patients' tasks each run
  their engine step and queue their save, then one loop packs every save of the batch (in
  the bench, 0.5-0.6 µs less per answer than packing in each task, for the same work: the
  packing code and the engine's each stay in the CPU's caches while they run); the packed
  bytes are only written, never kept: a command sent again on a new connection is packed
  again;
- commands are written without waiting for earlier replies (pipelining: Redis works on one
  batch while this process prepares the next), and replies are matched to futures in order,
  by hiredis, straight from each chunk the socket returns;
- a command may bring a ``decode(reply, arg)``: its future gets what that returns (or
  raises), so a caller can hand the future on without a coroutine of its own to await it;
  a decode that needs more waiting (a conflict to retry) returns ``Later(awaitable)``, and
  the future gets what that awaitable gives, run as a task;
- redis-py makes the connection (address, TLS, password, database, client name), from the
  pool it was given; only then is its transport taken over (``set_protocol``; redis-py's
  own protocol still hears of the close): every chunk the socket returns
  goes straight to the parser, and replies are handed to their futures there and then (no
  reading task, no stream buffer in between);
- one timer watches for a server that stops answering: no reply for ``timeout`` seconds
  while commands wait drops the connection;
- a dropped connection (or one that cannot be made) sends its commands again on a new one,
  ``tries`` more times at most (by default 2, as a redis-py client call retries), then fails
  them with the connection error. A command may have run before the drop: only commands that
  are safe to run twice belong here (a read; a compare-and-set, which then reads as a
  conflict);
- a command that brings the ``SCRIPT LOAD`` of its Lua script (``reload``) and is answered
  ``NOSCRIPT`` (Redis restarted, ``SCRIPT FLUSH``) is sent again behind that load, on the same
  connection: the load is certain to come first.

Error replies (``-ERR ...``) fail only their own command, as redis-py's exceptions
(``NoScriptError``, ``ResponseError``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, cast

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

from .base import Later

logger = logging.getLogger(__name__)

RETRIES = 2  # a command is sent again this many times on a new connection, at most

Decode: TypeAlias = Callable[[Any, Any], Any]
Packer: TypeAlias = Callable[[list[Any]], list["bytes | Exception"]]
# one command: (its future, or None if nobody waits; RESP bytes, or an item for the packer;
# decode; decode's arg; sends left after this one; the SCRIPT LOAD that its NOSCRIPT answer
# calls for, or None)
Command: TypeAlias = tuple["asyncio.Future[Any] | None", Any, "Decode | None", Any, int,
                           "bytes | None"]


def _again(command: Command) -> Command:
    """``command`` to be sent once more: one send fewer left."""
    future, packed, decode, arg, tries, reload = command
    return future, packed, decode, arg, tries - 1, reload


def _reply_error(message: str) -> ResponseError:
    """The exception for an error reply (returned by the parser, raised by its caller)."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


def pack(command: tuple[Any, ...]) -> bytes:
    """A command as RESP, packed by hiredis in C (~3x faster than in Python)."""
    return hiredis.pack_command(command)


class _Wire(asyncio.Protocol):
    """The protocol of one taken-over connection: its chunks go to the pipe's parser.

    Whatever happens to the socket is passed on to redis-py's own protocol too, so that
    closing redis-py's connection still completes."""

    def __init__(self, pipe: Pipe, transport: asyncio.Transport,
                 previous: asyncio.BaseProtocol) -> None:
        self.pipe = pipe
        self.transport = transport
        self.previous = previous
        self.parser = hiredis.Reader(protocolError=InvalidResponse, replyError=_reply_error)

    def data_received(self, data: bytes) -> None:
        pipe = self.pipe
        if pipe._wire is not self:
            return  # a connection already given up
        self.parser.feed(data)
        pipe._progress = pipe._loop_time()
        inflight = pipe._inflight
        try:
            while (reply := self.parser.gets()) is not False:
                command = inflight.popleft()
                future = command[0]
                if future is None:  # a script load nobody waits for
                    pipe._loaded(command[1], reply)
                    continue
                if future.done():  # its caller was cancelled
                    continue
                decode = command[2]
                if isinstance(reply, Exception):
                    if reply.__class__ is NoScriptError and command[5] is not None \
                            and command[4] > 0:
                        pipe._after_load(command)
                        continue
                    if decode is None:
                        future.set_exception(reply)
                        continue
                if decode is None:
                    future.set_result(reply)
                    continue
                try:
                    value = decode(reply, command[3])
                    if value.__class__ is Later:
                        pipe._continue(future, value.awaitable)
                        continue
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(value)
        except IndexError:  # a reply to nothing: the stream cannot be trusted any more
            pipe._drop(RedisConnectionError("Error reading from Redis: a reply nobody asked for"))
        except InvalidResponse as exc:
            pipe._drop(RedisConnectionError(f"Error reading from Redis: {exc}"))

    def eof_received(self) -> bool | None:
        self.pipe._lost(self, RedisConnectionError("Connection closed by server."))
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._lost(self, RedisConnectionError(
            f"Error reading from Redis: {exc}" if exc else "Connection closed by server."))
        self.previous.connection_lost(exc)


class Pipe:
    """Many commands in flight on one connection taken from ``pool``."""

    def __init__(self, pool: ConnectionPool, timeout: float,
                 closed: Callable[[], Exception], packer: Packer | None = None) -> None:
        """``closed()`` makes the error ``send`` raises once ``close`` has been called.
        ``packer(items)`` packs the items of the commands sent unpacked (see ``send``), in
        order: for each, its RESP bytes, or the exception that fails that command alone."""
        self._pool = pool
        self._packer = packer
        self._timeout = timeout
        self._closed_error = closed
        self._conn: AbstractConnection | None = None
        self._wire: _Wire | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queued: list[Command] = []
        self._flush_soon = False
        self._batch_loop: Any = None  # the loop the queued commands will be written from
        self._inflight: collections.deque[Command] = collections.deque()
        self._loading: set[bytes] = set()  # script loads queued or on the wire
        self._watch: asyncio.TimerHandle | None = None
        self._progress = 0.0  # loop time of the last reply, or of the first command waiting
        self._closed = False
        self._loop_time: Callable[[], float] = time.monotonic  # the connection's loop's time
        self._disposing: set[asyncio.Task[None]] = set()
        self._continuing: set[asyncio.Future[Any]] = set()  # Later's awaitables, as tasks
        self.writes: list[int] = []  # commands per socket write (the last 100-200; for tests)

    def send(self, packed: Any, decode: Decode | None = None, arg: Any = None,
             tries: int = RETRIES, reload: bytes | None = None) -> asyncio.Future[Any]:
        """Queue one command, packed as RESP (``pack``; exactly one command: one reply), or
        as anything but bytes: an item the ``packer`` packs when the batch is written (the
        caller must not change what the item refers to until the future is done).

        Its future gets the reply, or ``decode(reply, arg)`` (error replies included: decode
        raises what the caller should see), or the error. See the module's doc for ``tries``
        and ``reload``."""
        if self._closed:
            raise self._closed_error()
        if not self._flush_soon:  # the first of its batch asks for the running loop
            self._flush_later()
        future: asyncio.Future[Any] = self._batch_loop.create_future()
        self._queued.append((future, packed, decode, arg, tries, reload))
        return future

    def _flush_later(self) -> None:
        """Write what is queued at the end of this pass of the loop (if not already due)."""
        if not self._flush_soon:
            self._flush_soon = True
            self._batch_loop = asyncio.get_running_loop()
            self._batch_loop.call_soon(self._flush)

    def _continue(self, future: asyncio.Future[Any], awaitable: Awaitable[Any]) -> None:
        """``future`` gets what ``awaitable`` gives (run as a task; cancelled with it)."""
        task = asyncio.ensure_future(awaitable)
        self._continuing.add(task)

        def done(task: asyncio.Future[Any]) -> None:
            self._continuing.discard(task)
            if future.done():
                return
            if task.cancelled():
                future.cancel()
            elif (exc := task.exception()) is not None:
                future.set_exception(exc)
            else:
                future.set_result(task.result())

        task.add_done_callback(done)
        future.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)

    def _requeue(self, commands: list[Command]) -> None:
        """Queue commands again (ahead of what is queued), each with one send fewer left."""
        if commands:
            self._queued[:0] = [_again(c) for c in commands]
            self._flush_later()

    def _after_load(self, command: Command) -> None:
        """``command`` was answered NOSCRIPT: queue its script's load (once), then it again."""
        load = command[5]
        assert load is not None
        if load not in self._loading:
            self._loading.add(load)
            self._queued.append((None, load, None, None, 0, None))
        self._queued.append(_again(command))
        self._flush_later()

    def _loaded(self, load: bytes, reply: Any) -> None:
        self._loading.discard(load)
        if isinstance(reply, Exception):
            logger.warning("Redis refused to load a script: %s", reply)

    def _flush(self) -> None:
        self._flush_soon = False
        if not self._queued or self._closed:
            return
        wire = self._wire
        if wire is None:
            if self._connecting is None:
                self._connecting = asyncio.get_running_loop().create_task(
                    self._connect(), name="redis connect")
            return  # sent once connected
        commands, self._queued = self._queued, []
        try:
            if self._packer is None:
                data = b"".join([c[1] for c in commands])
            else:
                commands, data = self._pack(commands)
                if not commands:
                    return
        except Exception as exc:  # a bug here must fail this batch's callers, not hang them
            logger.exception("could not pack %d Redis commands", len(commands))
            self._fail(commands, exc)
            return
        if not self._inflight:
            self._progress = self._loop_time()
        self._inflight.extend(commands)
        self.writes.append(len(commands))
        if len(self.writes) > 200:
            del self.writes[:-100]
        try:
            wire.transport.write(data)
        except Exception as exc:  # what was written of the batch is unknown: a new connection
            self._drop(RedisConnectionError(f"Error writing to Redis: {exc}"))
            return
        if self._watch is None:
            self._watch = asyncio.get_running_loop().call_later(self._timeout, self._check)

    def _pack(self, commands: list[Command]) -> tuple[list[Command], bytes]:
        """The commands to write, and their RESP joined: the items sent unpacked are packed
        by the packer, all at once (and again if the command is sent again); a command whose
        item cannot be packed fails alone, and is left out."""
        items = [c[1] for c in commands if c[1].__class__ is not bytes]
        if not items:
            return commands, b"".join([c[1] for c in commands])
        try:
            packed = self._packer(items)  # type: ignore[misc]
            if len(packed) != len(items):
                raise RuntimeError(f"the packer gave {len(packed)} results for {len(items)} "
                                   f"commands")
        except Exception as exc:  # a packer's bug: fail what it should have packed
            packed = [exc] * len(items)
        if len(items) == len(commands):  # only items (the usual batch of saves)
            try:
                return commands, b"".join(packed)  # type: ignore[arg-type]
            except TypeError:  # an item that could not be packed: the slow way below
                pass
        done = iter(packed)
        out: list[Command] = []
        parts: list[bytes] = []
        for command in commands:
            resp = command[1]
            if resp.__class__ is not bytes:
                resp = next(done)
                if resp.__class__ is not bytes:
                    self._fail([command], cast(Exception, resp))
                    continue
            out.append(command)
            parts.append(resp)
        return out, b"".join(parts)

    async def _connect(self) -> None:
        conn: AbstractConnection | None = None
        try:
            try:  # connecting includes redis-py's handshake, which has no time limit of its own
                async with asyncio.timeout(self._timeout):
                    conn = await self._pool.get_connection()
            except TimeoutError:
                raise RedisTimeoutError("Timeout connecting to Redis") from None
            writer = conn._writer
            if writer is None:  # pragma: no cover - redis-py changed
                raise RedisConnectionError("the Redis connection has no stream")
            # any transport with set_protocol: asyncio's, uvloop's (not asyncio.Transport
            # subclasses), or TLS
            transport = cast(asyncio.Transport, writer.transport)
            wire = _Wire(self, transport, transport.get_protocol())
            transport.set_protocol(wire)  # from now on every chunk read comes to the wire
        except BaseException as exc:
            self._connecting = None
            if conn is not None:
                await self._dispose(conn)
            if not isinstance(exc, Exception):
                self._fail(self._take_queued(), exc)
                raise
            self._retry_or_fail(self._take_queued(), exc)  # tries left: connect again
            return
        self._conn, self._wire = conn, wire
        self._loop_time = asyncio.get_running_loop().time
        self._connecting = None
        if transport.is_closing():  # lost while being taken over
            self._drop(RedisConnectionError("Connection closed by server."))
            return
        self._flush()

    def _check(self) -> None:
        """The timer: drop the connection if the server has gone quiet."""
        self._watch = None
        if not self._inflight or self._closed:
            return
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._progress
        if quiet >= self._timeout:
            self._drop(RedisTimeoutError("Timeout reading from Redis"))
        else:
            self._watch = loop.call_later(self._timeout - quiet, self._check)

    def _lost(self, wire: _Wire, exc: Exception) -> None:
        """The socket under ``wire`` closed or failed."""
        if wire is self._wire:
            self._drop(exc)

    def _drop(self, exc: Exception) -> None:
        """Give up the connection: the commands on the wire go again on a new one (or fail
        with ``exc``, with no tries left)."""
        conn, wire, self._conn, self._wire = self._conn, self._wire, None, None
        if wire is not None:
            wire.transport.abort()  # now, even with writes stuck in a frozen server's buffer
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        inflight, self._inflight = list(self._inflight), collections.deque()
        self._loading.clear()  # a load on the wire is lost: a NOSCRIPT will ask again
        waiting = [c for c in inflight if c[0] is not None and not c[0].done()]
        if waiting and not self._closed:
            logger.warning("Redis connection dropped (%s) with %d commands on it",
                           exc, len(waiting))
        if conn is not None:
            task = asyncio.get_running_loop().create_task(self._dispose(conn),
                                                          name="redis disconnect")
            self._disposing.add(task)
            task.add_done_callback(self._disposing.discard)
        self._retry_or_fail(waiting, exc)
        if self._queued and not self._closed:  # sent again, or queued meanwhile: a new one
            self._flush()

    def _retry_or_fail(self, commands: list[Command], exc: BaseException) -> None:
        """Commands the connection failed: queued again if they have tries left, else
        failed with ``exc``."""
        if self._closed:
            self._fail(commands, exc)
            return
        self._requeue([c for c in commands if c[4] > 0])
        self._fail([c for c in commands if c[4] <= 0], exc)

    def _take_queued(self) -> list[Command]:
        commands, self._queued = self._queued, []
        return commands

    @staticmethod
    def _fail(commands: list[Command], exc: BaseException) -> None:
        for command in commands:
            future = command[0]
            if future is not None and not future.done():
                future.set_exception(exc)

    async def _dispose(self, conn: AbstractConnection) -> None:
        """Close a given-up connection and give it back to redis-py's pool (never raises: it
        runs as a task nobody waits for, and the connection is gone either way)."""
        try:
            try:
                await conn.disconnect(nowait=True)
            finally:
                await self._pool.release(conn)
        except Exception as exc:
            logger.debug("closing a dropped Redis connection: %s", exc)

    async def close(self) -> None:
        """Fail whatever still waits, and close the connection."""
        if self._closed:
            return
        self._closed = True
        error = self._closed_error()
        self._fail(self._take_queued(), error)
        if self._connecting is not None:
            self._connecting.cancel()
        self._drop(error)
        if self._disposing:
            await asyncio.gather(*self._disposing, return_exceptions=True)
