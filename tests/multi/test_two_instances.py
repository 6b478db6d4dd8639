"""Sessions that survive anything: many patients, two webhook instances, one Redis.

redis-server, two ``python bot.py`` processes in webhook mode (own ports, same secret, token,
flow and ``BOT_STORE=redis://...``) and the fake Bot API. The test is Telegram and the load
balancer: it POSTs each update to instance A or B (round-robin), and to the other one when a
POST fails. Patients answer concurrently, each the next answer only after seeing the reply
to the previous one. Every 7th update goes to both instances at once; every 5th tap of an
answer / None / Done button is a double tap (two update ids, one to each instance); when 40%
of the updates are sent, instance A is SIGKILLed and restarted on the same port.

For every patient, afterwards: the stored session is at the outcome the script implies, its
history, facts and number of backs are exactly the script's (none lost, none doubled,
computed by running the same answers through the engine in this process), the outcome
message is in the chat, every button tap was answered, and the audit log has one record per
outcome reached. Neither bot logged an error, and both exit 0 on SIGTERM.

An update acknowledged (HTTP 200) by instance A just before the SIGKILL is lost with it
(test_crash pins this down): the patients concerned see no reply, so, as a person would,
they ask again (/help) and re-send the answer if it did not take. The run prints how many;
once updates are acknowledged only after they are handled it should be 0 (then assert it).
Earlier screens sent again after later ones (the duplicate race of test_races) are printed,
not failed; any other wrong screen fails.

``MULTI_PATIENTS`` sets the number of patients (default 500).
"""

from __future__ import annotations

import asyncio
import collections
import os
import statistics
import time
from pathlib import Path

from bot.engine import Engine
from bot.flow import load_flow
from bot.storage import open_store
from tests.fakebotapi import FakeBotAPI

from .conftest import Cluster, cluster
from .harness import DEMO, Action, Expected, history_of, screen_of_message
from .patient import Mischief, Patient

N_PATIENTS = int(os.environ.get("MULTI_PATIENTS", "500"))
KILL_AT = 0.4  # SIGKILL instance A when this share of the updates has been sent
TIME_BUDGET = 1800.0

START: Action = ("start",)
NONE: Action = ("tap", "n", 0)
DONE: Action = ("tap", "d", 0)
BACK_BUTTON: Action = ("tap", "b", 0)
BACK: Action = ("back",)


def tick(i: int) -> Action:
    return ("tap", "t", i)


def answer(i: int) -> Action:
    return ("tap", "a", i)


def typed(words: str) -> Action:
    return ("text", words)


# red_flags: ticks 0 bladder, 1 saddle, 2 weakness; bladder_check: 0 no, 1 yes, 2 not sure;
# duration: 0 <2 weeks, 1 2-6 weeks, 2 >6 weeks; trend: 0 better, 1 same, 2 worse;
# fever: 0 no, 1 yes; worries: ticks 0-2
SCRIPTS: dict[str, list[Action]] = {
    "emergency_bladder": [START, tick(0), DONE],
    "emergency_weakness_then_back_to_bladder": [
        START, tick(2), DONE, BACK_BUTTON, tick(2), NONE, answer(1)],
    "urgent_fever": [START, NONE, answer(0), typed("45"), answer(0), answer(1), answer(1), NONE],
    "routine_long_standing": [
        START, NONE, answer(0), typed("60"), answer(2), answer(0), answer(0), tick(0), DONE],
    "routine_stable_with_back": [
        START, NONE, answer(0), typed("38"), answer(1), BACK, answer(1), answer(1), answer(0),
        NONE],
    "routine_worried": [
        START, NONE, answer(0), typed("50"), answer(0), answer(2), answer(0), tick(0), tick(1),
        DONE],
    "self_care": [START, NONE, answer(0), typed("30"), answer(0), answer(0), answer(0), NONE],
    "self_care_not_sure_and_back_button": [
        START, NONE, answer(2), answer(0), typed("29"), answer(0), BACK_BUTTON, answer(0),
        answer(2), answer(0), tick(1), DONE],
    "under_16": [START, NONE, answer(0), typed("12")],
    "emergency_typed_at_age": [START, NONE, answer(0), typed("I can't pee")],
    "urgent_then_two_backs_to_routine": [
        START, NONE, answer(0), typed("70"), answer(2), answer(1), answer(1), NONE, BACK, BACK,
        answer(0), NONE],
}


def expectations(engine: Engine) -> dict[str, Expected]:
    from .harness import expect

    return {name: expect(engine, script) for name, script in SCRIPTS.items()}


def test_scripts_cover_every_disposition() -> None:
    flow, problems = load_flow(DEMO)
    assert flow is not None, problems
    expected = expectations(Engine(flow))
    assert all(e.disposition for e in expected.values()), "every script ends at an outcome"
    found = {e.disposition for e in expected.values()}
    assert found >= {"emergency", "urgent", "routine", "self_care"}, found


async def kill_and_restart(run: Cluster, at: int, timings: dict[str, float]) -> None:
    """SIGKILL instance A once ``at`` updates were sent; restart it on the same port."""
    victim = run.instances[0]
    while run.telegram.sent < at:
        await asyncio.sleep(0.02)
    timings["cpu before kill"] = victim.cpu_seconds() or 0.0
    victim.kill()
    timings["killed"] = time.monotonic()
    await asyncio.sleep(1.0)
    await victim.start()
    timings["back"] = time.monotonic()


async def test_patients_on_two_instances_survive_duplicates_double_taps_and_a_kill(
        api: FakeBotAPI, redis_url: str, tmp_path: Path) -> None:
    flow, problems = load_flow(DEMO)
    assert flow is not None, problems
    engine = Engine(flow)
    expected = expectations(engine)
    names = list(SCRIPTS)
    mischief = Mischief()
    failures: list[str] = []
    timings: dict[str, float] = {}
    started = time.monotonic()
    cpu_started = time.process_time()
    async with cluster(api, redis_url, tmp_path) as run:
        timings["ready"] = time.monotonic()
        patients = []
        for i in range(N_PATIENTS):
            name = names[i % len(names)]
            user = api.user(700_000 + i, f"P{i}")
            patients.append(Patient(api, run.telegram, flow, user, SCRIPTS[name],
                                    expected[name], mischief, name))
        total = sum(len(p.script) for p in patients)
        chaos = asyncio.create_task(kill_and_restart(run, int(total * KILL_AT), timings))
        async with asyncio.timeout(TIME_BUDGET):
            await asyncio.gather(*(p.run() for p in patients))
            timings["answered"] = time.monotonic()
            if not chaos.done():
                failures.append("the run ended before instance A was killed")
                chaos.cancel()
            else:
                await chaos
            await api.wait_idle(quiet=1.0, timeout=120)
        bot_cpu = timings.get("cpu before kill", 0.0) + sum(
            inst.cpu_seconds() or 0.0 for inst in run.instances)
        for inst in run.instances:
            failures += [f"bot {inst.name} logged: {line}" for line in inst.log_problems()]
    failures += [f"bot {name} exited with {code} on SIGTERM (expected 0)"
                 for name, code in run.exit_codes.items() if code != 0]

    store = open_store(redis_url)
    try:
        outcomes_expected = 0
        for p in patients:
            failures += p.problems + p.unanswered_taps()
            exp = p.expected
            outcomes_expected += exp.outcomes_reached
            key = f"tg:{p.chat_id}"
            data, _ = await store.load(key)
            if data is None:
                failures.append(f"{key} ({p.name}): no stored session")
                continue
            if data.get("step") != exp.session["step"]:
                failures.append(f"{key} ({p.name}): stored at step {data.get('step')!r}, "
                                f"expected {exp.session['step']!r} ({exp.disposition})")
            if history_of(data) != exp.history:
                failures.append(f"{key} ({p.name}): history {history_of(data)} != "
                                f"expected {exp.history}")
            if data.get("facts") != exp.session["facts"]:
                failures.append(f"{key} ({p.name}): facts {data.get('facts')} != "
                                f"{exp.session['facts']}")
            if data.get("backs") != exp.session["backs"]:
                failures.append(f"{key} ({p.name}): {data.get('backs')} backs, expected "
                                f"{exp.session['backs']}")
            shown = [(m, screen_of_message(m, flow)) for m in p.user.chat.bot_messages]
            shown = [(m, screen) for m, screen in shown if screen is not None]
            if not any(screen == exp.screens[-1] and exp.headline in str(m.text)
                       for m, screen in shown):
                failures.append(f"{key} ({p.name}): the {exp.disposition} outcome message is "
                                f"not in the chat")
            elif shown[-1][1] != exp.screens[-1]:
                if shown[-1][1] in exp.screens:
                    p.outdated.append(f"the last screen is {shown[-1][1]}, below the outcome")
                else:
                    failures.append(f"{key} ({p.name}): the last screen is {shown[-1][1]}")
        audit = await store.audit()
        if len(audit) != outcomes_expected:
            failures.append(f"{len(audit)} audit records, expected one per outcome reached: "
                            f"{outcomes_expected}")
    finally:
        await store.close()

    stats = mischief.stats
    lat = sorted(stats.latencies)
    calls = collections.Counter(c.method for c in api.requests)
    answered = timings.get("answered", time.monotonic())
    print(f"\n{N_PATIENTS} patients, {total} scripted answers on 2 instances in "
          f"{answered - timings['ready']:.1f}s ({total / (answered - timings['ready']):.1f} "
          f"answers/s; start-up {timings['ready'] - started:.1f}s)")
    if lat:
        print(f"reply latency: median {statistics.median(lat):.2f}s, "
              f"p95 {lat[int(len(lat) * 0.95)]:.2f}s, max {lat[-1]:.2f}s")
    print(f"updates delivered {run.telegram.sent} ({run.telegram.posts} POSTs, "
          f"{run.telegram.failed_posts} failed and retried on the other instance); "
          f"duplicates {stats.duplicates}, double taps {stats.double_taps}")
    if "killed" in timings:
        print(f"A killed at {timings['killed'] - timings['ready']:.1f}s, back after "
              f"{timings.get('back', float('nan')) - timings['killed']:.1f}s; "
              f"{len([p for p in patients if p.nudges])} patients had an update die with it "
              f"unanswered (acknowledged, then lost): they asked again (/help) {stats.nudges} "
              f"times and re-sent {stats.resends} answers that had not taken")
    outdated = [f"{p.chat_id} ({p.name}) {o}" for p in patients for o in p.outdated]
    print(f"outdated screens (an earlier question sent again after a later one; the "
          f"duplicate-delivery race of test_races): {len(outdated)} in "
          f"{len({p.chat_id for p in patients if p.outdated})} chats"
          + "".join(f"\n  {o}" for o in outdated[:5]))
    answers = sum(1 for p in patients for a in p.script
                  if a[0] == "text" or (a[0] == "tap" and a[1] in "and"))
    records = sum(1 for p in patients for m in p.user.chat.bot_messages if "✔️" in str(m.text))
    print(f"answered questions turned into a record (✔️ answer): {records} of about {answers}")
    print(f"CPU: bots {bot_cpu:.1f}s ({bot_cpu / run.telegram.sent * 1000:.1f} ms per update), "
          f"test process (fake Bot API + patients) {time.process_time() - cpu_started:.1f}s")
    per_second = collections.Counter(int(c.started) for c in api.requests
                                     if c.method in ("sendMessage", "editMessageText",
                                                     "editMessageReplyMarkup"))
    busy = sorted(per_second.values())
    if busy:
        print(f"chat-bound Bot API calls (send/edit) per second, both instances: median "
              f"{statistics.median(busy):.0f}, peak {busy[-1]} (PTB's AIORateLimiter allows "
              f"30/s per instance)")
    print("Bot API calls: " + ", ".join(f"{m} {n}" for m, n in calls.most_common()))
    if failures:  # what the first patients in trouble saw, and what the bots sent them
        for p in [p for p in patients if p.problems][:3]:
            print(transcript(api, p))
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:40])


def transcript(api: FakeBotAPI, patient: Patient) -> str:
    """One patient's chat (each message with its edits) and the Bot API calls made for it, in
    time order: for reading a failure."""
    lines = [f"--- patient {patient.chat_id} ({patient.name}): {patient.problems}"]
    for message in patient.user.chat._messages.values():
        states = [*message.versions, message._snapshot()]
        lines.append(f"  message {message.message_id} {'bot' if message.from_bot else 'user'}:")
        for state in states:
            text = str(state.get("text") or state.get("caption") or "")[:70]
            buttons = [b.get("callback_data") for row in
                       ((state.get("reply_markup") or {}).get("inline_keyboard") or [])
                       for b in row]
            lines.append(f"      {text!r} {buttons}")
    queries = {query for sent in patient.log for query in sent.queries}
    t0 = api.requests[0].started if api.requests else 0.0
    for call in api.requests:
        if (call.params.get("chat_id") != patient.chat_id
                and call.params.get("callback_query_id") not in queries):
            continue
        lines.append(f"  {call.started - t0:8.3f}s {call.method} "
                     f"{ {k: v for k, v in call.params.items() if k != 'chat_id'} !s:.160} "
                     f"-> {call.status}")
    return "\n".join(lines)
