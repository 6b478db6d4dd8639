"""Live reload of the flow file: a changed file goes live only if it has no errors.

``FlowWatcher`` polls the file (modification time, size and a hash of the content) every
quarter second in an asyncio task; no extra dependency. A change is acted on only once the file
has looked the same for one whole poll, so an editor's save in progress is never loaded
half-written: a save is acted on 0.25–0.5 s after it ends. The new text is then checked (as
``check_file(path, lint=False)`` does, in a thread, so the bot keeps answering; for
flows/back_spasm.yaml about 0.5 s, or 0.05 s when only words changed and the proof of the
safety checks is reused; see bench/bench_reload.py): with no errors, ``on_valid(flow)`` puts
it live; otherwise ``on_invalid(problems)`` is told, and the last good flow keeps serving. Each
content is acted on once: saving the same broken file again is not reported again.

Callbacks may be plain functions or coroutines. Problems are about the flow file (never a
patient's words), so they may be shown to staff and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bot.flow.loader import check_text, flow_hash
from bot.flow.model import Flow
from bot.flow.problems import Problem

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # a valid edit must be live within 2 s of the save

OnValid = Callable[[Flow], Awaitable[None] | None]
OnInvalid = Callable[[list[Problem]], Awaitable[None] | None]
_Seen = tuple[int, int, str] | None  # (mtime_ns, size, sha256) or None: the file is missing


class FlowWatcher:
    """Watch one flow file; put each valid edit live, refuse and report each broken one."""

    def __init__(self, path: str | Path, on_valid: OnValid, on_invalid: OnInvalid, *,
                 interval: float = POLL_SECONDS, current: Flow | None = None):
        """`current` is the flow now serving (by default: what the file holds at start())."""
        self.path = Path(path)
        self.on_valid = on_valid
        self.on_invalid = on_invalid
        self.interval = interval
        self.flow: Flow | None = current  # the last good flow
        self._acted: str | None = None  # sha256 of the content last acted on
        self._last: _Seen = None  # what the previous poll saw
        self._polled = False
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        # the edit the callback being called is about, as the polls saw the file: (mtime_ns,
        # size, sha256), the same for every instance watching one shared file; None for a
        # missing file and when /reload asked (``reload_now``)
        self.change: _Seen = None

    # -- control -----------------------------------------------------------------------------
    def start(self) -> None:
        """Start polling (call from inside the running event loop)."""
        if self._task is not None and not self._task.done():
            return
        seen, data = self._look()
        self._last, self._polled = seen, True
        if self._acted is None and seen is not None:
            text, _ = _decode(self.path, data)
            if self.flow is None or (text is not None and flow_hash(text) == self.flow.hash):
                self._acted = seen[2]  # the file is what is serving: nothing to do yet
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name=f"watch {self.path.name}")
        logger.info("watching %s for edits every %.2f s", self.path, self.interval)

    async def stop(self) -> None:
        """Stop polling and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def reload_now(self) -> tuple[Flow | None, list[Problem]]:
        """Check the file now and act on it (the /reload command): (new flow or None, problems).

        Unlike polling, this acts even if the content was already acted on, and tells the
        callback again.
        """
        async with self._lock:
            seen, data = self._look()
            self._last = seen
            self._acted = seen[2] if seen is not None else "missing"
            flow, problems = await self._check(data)
            self.change = None
            await self._settle(flow, problems)
            return flow, problems

    # -- polling -----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("flow watcher: polling %s failed; will try again", self.path)

    async def poll(self) -> None:
        """One look at the file: act on content that has not changed since the last look."""
        async with self._lock:
            seen, data = self._look()
            previous, self._last = self._last, seen
            if not self._polled:
                self._polled = True
                return
            if seen != previous:
                return  # still changing (or just changed): wait for it to settle
            acted = seen[2] if seen is not None else "missing"
            if acted == self._acted:
                return
            self._acted = acted
            flow, problems = await self._check(data)
            self.change = seen
            await self._settle(flow, problems)

    async def _check(self, data: bytes | None) -> tuple[Flow | None, list[Problem]]:
        text, problem = _decode(self.path, data)
        if text is None:
            return None, [problem] if problem is not None else []
        res = await asyncio.to_thread(check_text, text, str(self.path), lint=False)
        return res.flow, res.problems

    async def _settle(self, flow: Flow | None, problems: list[Problem]) -> None:
        if flow is not None:
            self.flow = flow
            logger.info("flow %s version %s (%s) is live from %s", flow.id, flow.version,
                        flow.hash, self.path)
            await self._call(self.on_valid, flow)
        else:
            errors = sum(1 for p in problems if p.level == "error")
            logger.warning("edit of %s refused: %d error(s); the last good flow keeps serving",
                           self.path, errors)
            await self._call(self.on_invalid, problems)

    async def _call(self, callback: Callable[[Any], Any], arg: Any) -> None:
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("flow watcher: the %s callback failed",
                             getattr(callback, "__name__", "reload"))

    def _look(self) -> tuple[_Seen, bytes | None]:
        """(mtime, size, content hash) and the content; (None, None) if it cannot be read."""
        try:
            st = os.stat(self.path)
            data = self.path.read_bytes()
        except OSError:
            return None, None
        return (st.st_mtime_ns, st.st_size, hashlib.sha256(data).hexdigest()), data


def _decode(path: Path, data: bytes | None) -> tuple[str | None, Problem | None]:
    if data is None:
        return None, _missing(path)
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Problem(str(path), 1, 1, "error", f"the file is not UTF-8 text (byte "
                             f"{exc.start}); save it as UTF-8")


def _missing(path: Path) -> Problem:
    return Problem(str(path), 1, 1, "error", "the flow file is missing or cannot be read; "
                   "put it back (the last good flow keeps serving)")


def reload_message(flow: Flow | None, problems: list[Problem], *, limit: int = 10) -> str:
    """What to tell staff after a reload: live, or refused with the problems to fix."""
    if flow is not None:
        return (f"Flow '{flow.id}' version {flow.version} ({flow.hash}) is live: new "
                "conversations use it; conversations under way finish on the version they "
                "started on.")
    errors = [p for p in problems if p.level == "error"] or problems
    lines = [f"The edit was NOT put live ({len(errors)} error(s)); the last good flow keeps "
             "serving. Fix these and save again:"]
    lines += [str(p) for p in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more (python bot.py validate)")
    return "\n".join(lines)
