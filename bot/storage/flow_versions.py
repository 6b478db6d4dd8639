"""Flow versions kept in Redis as well as on disk, so every instance sharing the store can
finish a conversation on the flow version it started with.

The disk archive (``FlowArchive``, ``FLOW_ARCHIVE``) is per machine: with several instances
behind a load balancer, a patient who started on a version one instance serves (an edit not
yet on the other, or an image deployed since) would, on another instance, be moved to that
instance's version or started again. With ``BOT_STORE=redis://...`` every version an
instance serves is also written to ``{prefix}flow:{hash}`` (the YAML text, no TTL: a
version is a few KB and edits are rare, as on disk), and a version missing on disk is read
from there, checked like a file (its hash must match) and kept on disk.

The engine asks for a version it lacks synchronously, once per version per process, so this
uses Redis's blocking client with a short timeout. Redis unreachable or the version absent
is what the disk archive says when it lacks one: ``None`` (the engine then moves the
conversation to the current version, or starts it again), with a warning in the log.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.flow.archive import FlowArchive
from bot.flow.loader import check_text
from bot.flow.model import Flow

from .redis_store import _reason

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 2.0


class SharedFlowArchive:
    """``FlowArchive``'s ``save``/``load``, on disk and in Redis."""

    def __init__(self, local: FlowArchive, url: str, *, prefix: str = "triage:",
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.local = local
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self._client: Any = None
        self._pending: list[Flow] | None = []  # kept until publish(); then None

    def key(self, flow_hash: str) -> str:
        return f"{self.prefix}flow:{flow_hash}"

    def _redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=self.timeout,
                                                socket_connect_timeout=self.timeout)
        return self._client

    def save(self, flow: Flow) -> None:
        """On disk now; in Redis now, or (before ``publish``) once the store is known to be
        usable: a bot that cannot reach Redis stops with one line, not after a wait here."""
        self.local.save(flow)
        if not flow.hash or not flow.source:
            return
        if self._pending is not None:
            self._pending.append(flow)
            return
        try:
            self._redis().set(self.key(flow.hash), flow.source.encode("utf-8"), nx=True)
        except Exception as exc:  # the flow still serves; other instances may lack it
            logger.warning("could not keep flow version %s in Redis: %s", flow.hash,
                           _reason(exc))

    def publish(self) -> None:
        """The store answered: write the versions saved so far, and the next ones at once."""
        pending, self._pending = self._pending or [], None
        for flow in pending:
            self.save(flow)

    def load(self, flow_hash: str) -> Flow | None:
        flow = self.local.load(flow_hash)
        if flow is not None or not flow_hash.isalnum():
            return flow
        try:
            raw = self._redis().get(self.key(flow_hash))
        except Exception as exc:
            logger.warning("could not read flow version %s from Redis: %s", flow_hash,
                           _reason(exc))
            return None
        if raw is None:
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        res = check_text(text, self.key(flow_hash), lint=False)
        if res.flow is None or res.flow.hash != flow_hash:
            logger.warning("flow version %s kept in Redis cannot be loaded", flow_hash)
            return None
        logger.info("flow version %s loaded from Redis", flow_hash)
        self.local.save(res.flow)
        return res.flow

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
