"""Bot API requests over aiohttp: a `telegram.request.BaseRequest` for PTB's Bot.

PTB's default (httpx + httpcore) costs several times more CPU per request than the bot's own
work, and the cost grows with the number of requests in flight (httpcore re-scans its whole
pool on every request event; without `sniffio` installed it also retries a failed import for
every lock it creates). aiohttp's connector keeps idle keep-alive connections in a queue and
does not. Figures: bench/bench_telegram.py and the channel's issue note.

Only the transport changes: PTB still builds the request (form-encoded parameters, multipart
for uploads) and turns status codes into its exceptions; timeouts become `TimedOut`, other
transport failures `NetworkError`, as with PTB's own `HTTPXRequest`.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """PTB requests on one aiohttp session with a pool of keep-alive connections."""

    __slots__ = ("_connect_timeout", "_pool_size", "_pool_timeout", "_read_timeout",
                 "_session", "_write_timeout")

    def __init__(self, connection_pool_size: int = 64, *, read_timeout: float | None = 5.0,
                 write_timeout: float | None = 5.0, connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 10.0) -> None:
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=60),
                headers={"User-Agent": self.USER_AGENT}, auto_decompress=True)

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: Any = BaseRequest.DEFAULT_NONE,
                         write_timeout: Any = BaseRequest.DEFAULT_NONE,
                         connect_timeout: Any = BaseRequest.DEFAULT_NONE,
                         pool_timeout: Any = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._read_timeout if _default(read_timeout) else read_timeout
        connect = self._connect_timeout if _default(connect_timeout) else connect_timeout
        pool = self._pool_timeout if _default(pool_timeout) else pool_timeout
        # aiohttp has no write timeout (`write_timeout` is accepted and not used): the read
        # timeout starts once the request is sent
        # `connect` covers waiting for a free pooled connection and opening a new one
        wait = None if pool is None and connect is None else (pool or 0) + (connect or 0)
        timeout = aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=connect,
                                        sock_read=read)
        data: Any = None
        headers = None
        if request_data is not None:
            files = request_data.multipart_data if request_data.contains_files else None
            if files:
                form = aiohttp.FormData(quote_fields=False)
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mimetype) in files.items():
                    form.add_field(name, content, filename=filename, content_type=mimetype)
                data = form
            else:
                data = request_data.url_encoded_parameters()
                headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            async with self._session.request(method, url, data=data, headers=headers,
                                             timeout=timeout) as resp:
                return resp.status, await resp.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp {type(exc).__name__}: {exc}") from exc


def _default(value: Any) -> bool:
    """PTB passes its `DefaultValue` markers for timeouts the caller did not set."""
    return isinstance(value, type(BaseRequest.DEFAULT_NONE))
