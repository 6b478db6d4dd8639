"""The console chat: the patient's view in a terminal, for staff trying a flow.

Type a number or words; `back`, `restart`, `quit` (or `atrás`, `reiniciar`, `salir`).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from bot.engine import Back, Engine, Reply, Restart, SetLanguage, Start, Text

BACK = {"back", "atras", "atrás", "volver", "/back"}
RESTART = {"restart", "reiniciar", "empezar de nuevo", "/restart", "/start"}
QUIT = {"quit", "exit", "salir", "/quit", "q"}
HELP = {
    "en": "Type a number or your answer. Also: back, restart, quit.",
    "es": "Escriba un número o su respuesta. También: atrás, reiniciar, salir.",
}
CHECKLIST_HINT = {
    "en": "Type the numbers of all that apply (like 1 3), or {none} for none of these.",
    "es": "Escriba los números de todo lo que tenga (por ejemplo 1 3), o {none} si no tiene nada.",
}
BANNER = {
    "emergency": "EMERGENCY",
    "urgent": "SEE A DOCTOR WITHIN 24-48 HOURS",
    "routine": "BOOK A CLINIC APPOINTMENT",
    "self_care": "SELF-CARE",
    "out_of_scope": "THIS SERVICE IS NOT FOR YOU",
}


def render(reply: Reply, *, show_rule: bool = True) -> str:
    """The reply as terminal text."""
    lines: list[str] = []
    for n in reply.notices:
        lines.append(f"! {n}")
    if reply.welcome:
        lines += [reply.welcome, ""]
    q = reply.question
    if q is not None:
        lines.append(q.text)
        for o in q.options:
            tick = "[x] " if o.ticked else ("[ ] " if o.action == "t" else "")
            lines.append(f"  {o.number}. {tick}{o.label}")
        if q.kind == "checklist":
            none = next((o.number for o in q.options if o.action == "n"), 0)
            lines.append(CHECKLIST_HINT.get(reply.lang, CHECKLIST_HINT["en"])
                         .format(none=none))
    out = reply.outcome
    if out is not None:
        lines.append(f"==== {BANNER.get(out.disposition, out.disposition.upper())} ====")
        if out.headline:
            lines.append(out.headline)
        if out.text:
            lines += ["", out.text]
        if out.safety_net:
            lines += ["", out.safety_net]
        if show_rule:
            lines += ["", f"[disposition: {out.disposition}; rule: {out.rule or '-'}]"]
        lines.append("(back = change your last answer, restart = start again, quit = leave)")
    return "\n".join(lines)


class Console:
    """Runs the engine against typed lines; sessions are kept in `store` under `key`."""

    def __init__(self, engine: Engine, store: Any | None = None, key: str = "console:local",
                 lang: str | None = None, out: TextIO = sys.stdout):
        self.engine = engine
        self.store = store
        self.key = key
        self.lang = lang
        self.out = out
        self.data: dict[str, Any] | None = None
        self.version = 0

    async def load(self) -> None:
        if self.store is not None:
            self.data, self.version = await self.store.load(self.key)

    async def save(self) -> None:
        if self.store is None:
            return
        new = await self.store.save(self.key, self.data, self.version)
        if new is None:  # someone else wrote it: take theirs next time
            _, self.version = await self.store.load(self.key)
        else:
            self.version = new

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def step(self, line: str) -> bool:
        """Handle one typed line; False when the patient quits."""
        word = line.strip().lower()
        if word in QUIT:
            return False
        if word in BACK:
            inp: Any = Back()
        elif word in RESTART:
            inp = Restart()
        elif word in ("help", "ayuda", "?"):
            lang = (self.data or {}).get("lang", self.lang or "en")
            self.say(HELP.get(lang, HELP["en"]))
            return True
        else:
            inp = Text(line)
        self.data, reply = self.engine.handle(self.data, inp, lang=self.lang)
        await self.save()
        self.say("")
        self.say(render(reply))
        return True

    async def run(self, read: Callable[[str], str] = input) -> None:
        await self.load()
        if self.data and self.data.get("step"):
            if self.lang and self.data.get("lang") != self.lang:
                self.data, _ = self.engine.handle(self.data, SetLanguage(self.lang))
            self.say("Welcome back: here is where you left off. (type 'restart' to start again)")
            self.say(render(self.engine.view(self.data)))
        else:
            self.data, reply = self.engine.handle(None, Start(self.lang), lang=self.lang)
            await self.save()
            self.say(render(reply))
        while True:
            try:
                line = await read_line(read, "> ")
            except (EOFError, KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-D, Ctrl-C
                self.say("")
                break
            if not await self.step(line):
                break
        self.say("Bye. Your answers are saved: run the console again to continue.")


async def read_line(read: Callable[[str], str], prompt: str) -> str:
    """``read(prompt)`` in a thread of its own, the loop free meanwhile. A daemon thread, not
    the loop's executor: on Ctrl-C the console says goodbye at once, while ``input`` still
    waits for a line the process no longer needs (the executor's thread would be waited for
    until Enter)."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def answer(value: str | None, exc: BaseException | None) -> None:
        if line.done():  # given up on (Ctrl-C)
            return
        if exc is not None:
            line.set_exception(exc)
        else:
            line.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        try:
            value = read(prompt)
        except BaseException as exc:  # EOFError, KeyboardInterrupt: given to the caller
            loop.call_soon_threadsafe(answer, None, exc)
        else:
            loop.call_soon_threadsafe(answer, value, None)

    threading.Thread(target=work, name="console input", daemon=True).start()
    return await line
