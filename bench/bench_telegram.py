"""Updates per second and latency of our whole bot in webhook mode, against a bare PTB bot.

Usage: .venv/bin/python bench/bench_telegram.py [--seconds S] [--rounds N] [--bots a,b,...]

Each bot runs in its own process in webhook mode, talking to the fake Bot API
(tests/fakebotapi.py) that runs in this driver process. The driver POSTs updates straight to the
bot's webhook (with the secret header, as Telegram does) and watches the fake for the replies:
latency is from the POST to the last Bot API call the update causes, as the fake finished it.

Bots:
  ours        `python bot.py` (engine, SQLite store, our Telegram channel), as deployed
  bare        bench/bare_bot.py: PTB defaults (updates one at a time), same replies, no store
  bare-conc   the bare bot with concurrent_updates(True)
  ours:<v>    our bot with a variant applied (VARIANTS below, joined with '+'), run as
              `bench_telegram.py --serve <v>` (bot.cli.main, as bot.py, after the patch):
              what each setting is worth

Scenarios:
  start       /start from a new patient: 1 sendMessage
  mix         /start, then a tap on "None of these": answerCallbackQuery + editMessageText +
              sendMessage (the realistic step)

Measured per bot and scenario: updates/s at saturation (closed loop: --patients patients,
each waiting for its reply before the next update; the ratio is against the first bot), the
bot's CPU use meanwhile and its CPU milliseconds per update (the figure least disturbed by
other load), and p50/p99 latency at a fixed 30 updates/s (open loop). Rounds alternate
between the bots (the machine is shared: each figure is the best of --rounds; the load
average is printed beside it). --api-delay MS makes every Bot API answer that much slower (a
round trip to Telegram); --profile runs the bots under cProfile.

Reading the figures:
  * `ours` keeps Telegram's flood limit on messages sent (bot/channels/telegram/limits.py:
    30 new messages a second for the whole bot; edits and callback answers are not counted):
    it saturates at 30 /start a second and 30 mix updates a second (one message per update)
    whatever the machine. `ours:ptblimiter` is PTB's AIORateLimiter as shipped, which also
    counts edits (a tap then spends two of the 30). The bare bot has no limiter; compare the
    code's cost with `ours:nolimiter`.
  * The fake and the driver share one process: past ~250 updates/s it takes half a core, so
    on 2 cores the highest rates are partly the driver's limit.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-Secret_1"
TOKEN = "123456:BENCH-token"
TICK = os.sysconf("SC_CLK_TCK")
UPDATE_IDS = itertools.count(1)
CHATS = itertools.count(10_000_000)


def load_fake() -> ModuleType:
    """tests/fakebotapi.py by path (`tests` is also a package in site-packages)."""
    spec = importlib.util.spec_from_file_location("fakebotapi", ROOT / "tests" / "fakebotapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fakebotapi"] = module
    spec.loader.exec_module(module)
    return module


fake = load_fake()

# -- variants of our bot (applied in the bot's process by `--serve`) --------------------------

VARIANTS: dict[str, str] = {
    "httpx<N>": "PTB's httpx client with a pool of N connections (the old default: 64)",
    "aiohttp<N>": "our aiohttp request class with a pool of N connections (default: 64)",
    "sniffio": "a stand-in `sniffio` module: httpcore stops retrying a failed import per lock",
    "nolimiter": "no rate limiter at all",
    "ptblimiter": "PTB's AIORateLimiter as it is: every call naming a chat spends the 30/s",
    "serial": "a tap's Bot API calls one after another (answer, edit, send), not at once",
    "ptbobjects": "PTB's send_message/edit_message_*: every result parsed into a Message",
}

PTB_METHODS = {"sendMessage": "send_message", "editMessageText": "edit_message_text",
               "editMessageReplyMarkup": "edit_message_reply_markup"}


def apply_variant(name: str) -> None:
    """Patch our channel before it starts (only to measure what a setting is worth).
    Parts join with '+': `httpx64+sniffio`."""
    from bot.channels.telegram import app

    for part in filter(None, name.split("+")):
        if part.startswith("httpx") and part[5:].isdigit():
            app.TelegramBot._with_http = _httpx(int(part[5:]))  # type: ignore[method-assign]
        elif part.startswith("aiohttp") and part[7:].isdigit():
            app.TelegramBot._with_http = _aiohttp(int(part[7:]))  # type: ignore[method-assign]
        elif part == "sniffio":
            stub: Any = ModuleType("sniffio")
            stub.current_async_library = lambda: "asyncio"
            sys.modules["sniffio"] = stub
        elif part == "serial":
            app._together = _one_by_one
        elif part == "ptbobjects":
            app.TelegramBot._api = _via_ptb  # type: ignore[method-assign]
        elif part == "nolimiter":
            app.MessageRateLimiter = _no_limiter  # type: ignore[assignment,misc]
        elif part == "ptblimiter":
            from telegram.ext import AIORateLimiter

            app.MessageRateLimiter = AIORateLimiter  # type: ignore[assignment,misc]
        else:
            raise SystemExit(f"unknown variant {part!r}; known: {', '.join(VARIANTS)}")


def _httpx(size: int) -> Any:
    def with_http(self: Any, builder: Any) -> Any:
        return builder.connection_pool_size(size).pool_timeout(10.0)

    return with_http


def _aiohttp(size: int) -> Any:
    from bot.channels.telegram.request import AiohttpRequest

    def with_http(self: Any, builder: Any) -> Any:
        return builder.request(AiohttpRequest(size))

    return with_http


async def _one_by_one(*calls: Any) -> list[Any]:
    return [await call for call in calls]


async def _via_ptb(self: Any, chat_id: int, method: str, params: dict[str, Any]) -> Any:
    msg = await self._call(chat_id, getattr(self.app.bot, PTB_METHODS[method]), **params)
    return None if msg is None else {"message_id": getattr(msg, "message_id", 0)}


def _no_limiter(**kwargs: Any) -> None:
    return None


def serve(variant: str) -> int:
    """Run our bot as `python bot.py` does, with a variant applied."""
    sys.path.insert(0, str(ROOT))
    apply_variant(variant)
    from bot.cli import main

    return main(["run"])


# -- the driver --------------------------------------------------------------------------------


@dataclass
class Waiter:
    expected: int
    seen: int = 0
    done: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Watch:
    """Counts the Bot API calls the fake answers, per chat; wakes whoever waits for them."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.waiting: dict[int, Waiter] = {}
        self.calls = 0
        original = api._dispatch

        async def dispatch(call: Any, raw: Any, files: Any, request: Any) -> Any:
            result = await original(call, raw, files, request)
            self.seen(call)
            return result

        api._dispatch = dispatch

    def seen(self, call: Any) -> None:
        method = call.method.lower()
        if method in ("getupdates", "setwebhook", "setmycommands", "getme", "deletewebhook"):
            return
        self.calls += 1
        if method == "answercallbackquery":
            state = self.api._callback_queries.get(call.params.get("callback_query_id"))
            chat = state.chat_id if state else None
        else:
            chat = call.params.get("chat_id")
        waiter = self.waiting.get(chat) if isinstance(chat, int) else None
        if waiter is None:
            return
        waiter.seen += 1
        if waiter.seen >= waiter.expected and not waiter.done.done():
            waiter.done.set_result(time.perf_counter())

    def expect(self, chat: int, n: int) -> Waiter:
        waiter = self.waiting[chat] = Waiter(n)
        return waiter

    def trim(self) -> None:
        """Forget what the fake recorded (keeps its memory and lookups small)."""
        self.api.requests.clear()
        self.api.updates.clear()
        self.api.callback_answers.clear()
        self.api._chats.clear()
        self.api._users.clear()
        self.api._callback_queries.clear()


class Driver:
    def __init__(self, api: Any, watch: Watch, port: int) -> None:
        self.api = api
        self.watch = watch
        self.url = f"http://127.0.0.1:{port}/hook"
        self.update_ids = UPDATE_IDS
        self.chats = CHATS  # a new patient (chat) for every conversation, in every round
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Driver:
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.close()

    def user(self, chat: int) -> dict[str, Any]:
        return {"id": chat, "is_bot": False, "first_name": "Pat", "language_code": "en"}

    async def post(self, update: dict[str, Any], chat: int, expected: int) -> float:
        """POST one update; return the seconds until its last reply."""
        assert self.http is not None
        waiter = self.watch.expect(chat, expected)
        body = json.dumps(update).encode()
        started = time.perf_counter()
        async with self.http.post(self.url, data=body, headers={
                "Content-Type": "application/json",
                "X-Telegram-Bot-Api-Secret-Token": SECRET}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"webhook answered {resp.status}")
        done = await asyncio.wait_for(waiter.done, 30)
        del self.watch.waiting[chat]
        return done - started

    async def start(self, chat: int) -> float:
        text = "/start"
        return await self.post({"update_id": next(self.update_ids), "message": {
            "message_id": 1, "date": int(time.time()), "chat": {"id": chat, "type": "private"},
            "from": self.user(chat), "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}]}}, chat, 1)

    async def tap(self, chat: int, label: str = "None of these") -> float:
        msg = self.api._chats[chat].last_bot_message
        button = msg.find_button(label)
        query = f"q{chat}"
        self.api._callback_queries[query] = fake._CallbackQueryState(
            query_id=query, user_id=chat, chat_id=chat, message_id=msg.message_id,
            data=button["callback_data"], created=time.monotonic())
        return await self.post({"update_id": next(self.update_ids), "callback_query": {
            "id": query, "from": self.user(chat), "message": msg.to_dict(),
            "chat_instance": "1", "data": button["callback_data"]}}, chat, 3)

    async def patient(self, scenario: str) -> list[float]:
        chat = next(self.chats)
        times = [await self.start(chat)]
        if scenario == "mix":
            times.append(await self.tap(chat))
        return times


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def saturate(driver: Driver, scenario: str, patients: int, seconds: float, pid: int
                   ) -> dict[str, float]:
    """Closed loop: `patients` patients, each sending its next update when answered."""
    done = 0
    stop = False

    async def loop() -> None:
        nonlocal done
        while not stop:
            answered = len(await driver.patient(scenario))  # (not `done += await ...`:
            done += answered  # that reads `done` before the await and loses counts)

    tasks = [asyncio.create_task(loop()) for _ in range(patients)]
    await asyncio.sleep(1.0)  # warm up
    done, t0, c0, d0 = 0, time.perf_counter(), cpu_seconds(pid), self_cpu()
    await asyncio.sleep(seconds)
    wall, n = time.perf_counter() - t0, done
    cpu, dcpu = cpu_seconds(pid) - c0, self_cpu() - d0
    stop = True
    await asyncio.gather(*tasks)
    return {"rate": n / wall, "cpu": cpu / wall, "ms_cpu": 1000 * cpu / max(n, 1),
            "driver_cpu": dcpu / wall}


async def fixed_rate(driver: Driver, scenario: str, rate: float, seconds: float
                     ) -> list[float]:
    """Open loop at `rate` updates/s; the latency of every update."""
    per_patient = 2 if scenario == "mix" else 1
    interval = per_patient / rate
    latencies: list[float] = []
    tasks = []

    async def one() -> None:
        latencies.extend(await driver.patient(scenario))

    start = time.perf_counter()
    for i in range(int(seconds * rate / per_patient)):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


@dataclass
class BotRun:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path


async def start_bot(name: str, api: Any, tmp: Path, log_level: str, profile: bool = False
                    ) -> BotRun:
    port = fake.free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TELEGRAM_", "WEBHOOK_", "BOT_", "HEALTH_"))}
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_BASE_URL=api.base_url, WEBHOOK_PORT=str(port),
               WEBHOOK_SECRET=SECRET, WEBHOOK_LISTEN="127.0.0.1",
               WEBHOOK_URL=f"http://127.0.0.1:{port}/hook", BOT_FLOW="flows/demo.yaml",
               BOT_STORE=str(tmp / f"{name.replace(':', '_')}.db"), LOG_LEVEL=log_level,
               PSEUDONYM_KEY="bench")
    if name == "ours":
        cmd = [sys.executable, "bot.py"]
    elif name.startswith("ours:"):
        cmd = [sys.executable, "bench/bench_telegram.py", "--serve", name.split(":", 1)[1]]
    elif name in ("bare", "bare-conc"):
        cmd = [sys.executable, "bench/bare_bot.py"]
        env["BARE_CONCURRENT"] = "1" if name == "bare-conc" else "0"
    else:
        raise SystemExit(f"unknown bot {name!r}")
    log = tmp / f"{name.replace(':', '_')}.log"
    for old in tmp.glob(f"{name.replace(':', '_')}.db*"):
        old.unlink()  # every run starts with an empty store
    if profile:
        cmd[1:1] = ["-m", "cProfile", "-o", str(tmp / f"{name.replace(':', '_')}.prof")]
    seen = len(api.calls("setWebhook"))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    run = BotRun(name, proc, port, log)
    deadline = time.monotonic() + 30
    while len(api.calls("setWebhook")) == seen:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start:\n{log.read_text()}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # let it finish starting (command menu, health routes)
    return run


async def stop_bot(run: BotRun) -> None:
    run.proc.terminate()
    for _ in range(200):
        if run.proc.poll() is not None:
            return
        await asyncio.sleep(0.05)
    run.proc.kill()
    run.proc.wait()


async def measure(name: str, api: Any, watch: Watch, tmp: Path, args: argparse.Namespace
                  ) -> dict[str, Any]:
    run = await start_bot(name, api, tmp, args.log_level, args.profile)
    out: dict[str, Any] = {"bot": name}
    try:
        async with Driver(api, watch, run.port) as driver:
            for scenario in args.scenarios:
                calls0 = watch.calls
                lat = await fixed_rate(driver, scenario, args.rate, args.seconds)
                per_update = (watch.calls - calls0) / len(lat)
                watch.trim()
                sat = await saturate(driver, scenario, args.patients, args.seconds,
                                     run.proc.pid)
                watch.trim()
                out[scenario] = {**sat, "p50": 1000 * percentile(lat, 50),
                                 "p99": 1000 * percentile(lat, 99), "calls": per_update,
                                 "load": os.getloadavg()[0]}
    finally:
        await stop_bot(run)
    errors = [line for line in run.log.read_text(errors="replace").splitlines()
              if "ERROR" in line or "Traceback" in line]
    if errors:
        print(f"  {name}: {len(errors)} error line(s) in its log, first: {errors[0]}",
              file=sys.stderr)
    return out


def best(results: list[dict[str, Any]], scenario: str) -> dict[str, Any]:
    """The round with the highest saturation rate (other bots' noise only slows things)."""
    return max((r[scenario] for r in results), key=lambda x: x["rate"])


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-telegram-"))
    results: dict[str, list[dict[str, Any]]] = {b: [] for b in args.bots}
    async with fake.FakeBotAPI(token=TOKEN, strict_chats=False) as api:
        watch = Watch(api)
        if args.api_delay:
            api.delay("*", args.api_delay / 1000)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{os.cpu_count()} cores", flush=True)
        for r in range(args.rounds):
            for name in args.bots:
                res = await measure(name, api, watch, tmp, args)
                results[name].append(res)
                brief = "  ".join(f"{s}: {res[s]['rate']:.0f}/s p99 {res[s]['p99']:.0f} ms "
                                  f"load {res[s]['load']:.2f}" for s in args.scenarios)
                print(f"round {r + 1} {name:{max(map(len, args.bots))}} {brief}", flush=True)
    base = args.bots[0]
    for scenario in args.scenarios:
        print(f"\nscenario {scenario}: saturation ({args.patients} patients), latency at "
              f"{args.rate:.0f} updates/s; best of {args.rounds} round(s)")
        w = max(len(b) for b in args.bots)
        print(f"{'bot':{w}} {'upd/s':>7} {'ratio':>6} {'bot CPU':>8} {'ms CPU/upd':>10} "
              f"{'driver CPU':>10} {'p50 ms':>7} {'p99 ms':>7} {'calls/upd':>9} {'load':>5}")
        ref = best(results[base], scenario)["rate"]
        for name in args.bots:
            b = best(results[name], scenario)
            print(f"{name:{w}} {b['rate']:7.1f} {b['rate'] / ref:6.2f} {b['cpu']:7.0%} "
                  f"{b['ms_cpu']:10.2f} {b['driver_cpu']:9.0%} {b['p50']:7.1f} "
                  f"{b['p99']:7.1f} {b['calls']:9.2f} {b['load']:5.2f}")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"logs{' and profiles' if args.profile else ''} in {tmp}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bots", default="bare,bare-conc,ours,ours:nolimiter",
                   help="comma-separated; the first is the reference of the ratio")
    p.add_argument("--scenarios", default="start,mix")
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--patients", type=int, default=32, help="concurrent patients at saturation")
    p.add_argument("--rate", type=float, default=30.0, help="updates/s for the latency figures")
    p.add_argument("--api-delay", type=float, default=0.0, metavar="MS",
                   help="the fake answers every call this much later (a round trip to Telegram)")
    p.add_argument("--log-level", default="INFO", help="LOG_LEVEL of our bot")
    p.add_argument("--profile", action="store_true",
                   help="run the bots under cProfile (profiles in the temporary folder)")
    p.add_argument("--serve", metavar="VARIANT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve is not None:
        return serve(args.serve)
    args.bots = [b for b in args.bots.split(",") if b]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
