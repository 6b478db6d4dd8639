"""The funnel over a real SQLite store filled by patients talking to the real engine:
`python bot.py stats` as a manager runs it, its CSV and its chart."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from bot.engine import Engine
from bot.flow import Flow
from bot.staff.audit import audit_record, read_record
from bot.staff.stats import compute_stats, format_duration
from bot.storage.sqlite import SQLiteStore

from .conftest import DEMO, T0, Cli, Clock, Patient, run_cli

NONE = "None of these"


async def fill(path: Path, demo: Flow) -> None:
    """Six finished conversations, two unfinished ones, and one corrupt session."""
    clock = Clock()
    engine = Engine(demo, clock=clock)
    store = SQLiteStore(path)
    try:
        async def patient(key: str, *steps: str) -> Patient:
            p = Patient(engine, store, key, clock)
            await p.start()
            await p.answers(*steps)
            return p

        # finished: 70 s, 20 s, 70 s, 50 s, 70 s, 30 s
        await patient("p1", NONE, "No", "#40", "Less than 2 weeks", "Getting better", "Yes",
                      NONE)  # urgent, U1
        p2 = await patient("p2")
        await p2.tap("Trouble peeing or pooing")
        await p2.tap("Done")  # emergency, E1
        await patient("p3", NONE, "No", "#30", "More than 6 weeks", "About the same", "No",
                      NONE)  # routine, R1
        await patient("p4", NONE, "Not sure", "<", "No", "#12")  # under_16, no rule
        await patient("p5", NONE, "No", "#35", "Less than 2 weeks", "Getting better", "No",
                      NONE)  # self_care, S
        await patient("p6", NONE, "No", "#can't pee")  # typed at age: emergency, E1
        # unfinished
        await patient("u1", NONE, "No")  # stopped at age
        await patient("u2", NONE, "No", "#50", "2 to 6 weeks", "<", "2 to 6 weeks")  # at trend
        await patient("bad", NONE)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE sessions SET data = 'not json' WHERE key = 'bad'")
    db.close()


@pytest.fixture
async def store_path(tmp_path: Path, demo: Flow) -> Path:
    path = tmp_path / "sessions.db"
    await fill(path, demo)
    return path


def env(store: Path) -> dict[str, str]:
    return {"BOT_STORE": f"sqlite:///{store}", "BOT_FLOW": str(DEMO)}


EXPECTED = """\
Flow 'demo', 2025-03-03
Conversations: 8 (6 reached a disposition, 2 stopped part-way)

Disposition       count    share
emergency             2    33.3%
urgent                1    16.7%
routine               1    16.7%
self_care             1    16.7%
out_of_scope          1    16.7%
Median time to a disposition: 1 min 0 s

Question             reached  stopped  stop %  backs  back %
red_flags                  8        0    0.0%      0    0.0%
bladder_check              7        0    0.0%      1   14.3%
bladder_examples           0        0       -      0       -
age                        7        1   14.3%      0    0.0%
duration                   4        0    0.0%      1   25.0%
trend                      4        1   25.0%      0    0.0%
fever                      3        0    0.0%      0    0.0%
worries                    3        0    0.0%      0    0.0%

Rule      disposition       count
E1        emergency             2
R1        routine               1
S         self_care             1
U1        urgent                1
"""


def test_stats_counts_finished_and_unfinished_conversations(store_path: Path) -> None:
    p = run_cli("stats", env=env(store_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout == EXPECTED


def test_stats_since_a_later_date_counts_nothing(store_path: Path, cli: Cli) -> None:
    p = cli("stats", "--since", "2025-03-04", env=env(store_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "Flow 'demo', 2025-03-04 to now",
        "Conversations: 0 (0 reached a disposition, 0 stopped part-way)",
        "No conversations to count yet.",
    ]


def test_stats_until_the_day_counts_that_whole_day(store_path: Path, cli: Cli) -> None:
    p = cli("stats", "--since", "2025-03-03", "--until", "2025-03-03", env=env(store_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[:2] == [
        "Flow 'demo', 2025-03-03",
        "Conversations: 8 (6 reached a disposition, 2 stopped part-way)",
    ]


def test_a_date_that_is_not_a_date_says_how_to_write_it(store_path: Path, cli: Cli) -> None:
    p = cli("stats", "--since", "last tuesday", env=env(store_path))
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: 'last tuesday' is not a date; write it like 2025-01-31 "
                                "(or 7d for the last 7 days)")


def test_stats_csv_and_funnel_png(store_path: Path, tmp_path: Path, cli: Cli) -> None:
    out_csv, out_png = tmp_path / "funnel.csv", tmp_path / "funnel.png"
    p = cli("stats", "--csv", str(out_csv), "--png", str(out_png), env=env(store_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-2:] == [f"wrote {out_csv}", f"wrote {out_png}"]
    with open(out_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["section", "name", "count", "percent", "reached", "stopped",
                       "stop_percent", "backs", "back_percent"]
    assert ["conversations", "unfinished", "2", "25.0", "", "", "", "", ""] in rows
    assert ["disposition", "emergency", "2", "33.3", "", "", "", "", ""] in rows
    assert ["time", "median_seconds_to_disposition", "60.0", "", "", "", "", "", ""] in rows
    assert ["question", "trend", "", "", "4", "1", "25.0", "0", "0.0"] in rows
    assert ["rule", "E1 (emergency)", "2", "33.3", "", "", "", "", ""] in rows
    data = out_png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1100 and height > 400


def test_unreachable_store_is_one_line_and_exit_2(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "dir.db").mkdir()
    p = cli("stats", env=env(tmp_path / "dir.db"))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the SQLite session store")
    assert lines[0].endswith("; set BOT_STORE to the store the bot uses")


# --- the audit record ------------------------------------------------------------------------


async def test_audit_record_of_a_real_conversation(tmp_path: Path, demo: Flow) -> None:
    clock = Clock()
    store = SQLiteStore(tmp_path / "s.db")
    p = Patient(Engine(demo, clock=clock), store, "tg:1", clock)
    await p.start()
    await p.answers(NONE, "Not sure", "<", "No", "#40", "Less than 2 weeks", "Getting worse",
                    "Yes", NONE)
    [stored] = await store.audit()
    await store.close()
    assert stored == {
        "kind": "triage", "key": "p_tg:1", "flow": "demo", "flow_hash": demo.hash,
        "facts": {"bladder_bowel_changes": False, "saddle_numbness": False, "age": 40,
                  "duration_days": 0, "trend": "worsening", "fever": True,
                  "startback_5": False, "startback_6": False, "startback_7": False},
        "disposition": "urgent", "rule": "U1", "lang": "en",
        "started_at": T0, "ended_at": T0 + 90, "backs": 1, "backs_at": {"bladder_check": 1},
        "path": ["red_flags", "bladder_check", "age", "duration", "trend", "fever", "worries"],
        "outcome": "urgent", "interrupt": None, "interrupted_at": None,
    }
    assert read_record(json.loads(json.dumps(stored))) == stored


def test_audit_record_takes_a_disposition_and_rule_too(demo: Flow) -> None:
    session = {"hash": "abc", "lang": "es", "step": "emergency", "started": 5.0,
               "updated": 9.0, "facts": {"fever": True}, "backs": 0, "meta": {},
               "history": [{"step": "red_flags", "answer": [], "t": 6.0},
                           {"step": "age", "interrupt": "cant_pee", "t": 8.0}]}
    rec = audit_record(session, demo, "p_x", "emergency", "E1")
    assert (rec["disposition"], rec["rule"], rec["flow_hash"], rec["outcome"]) == (
        "emergency", "E1", "abc", "emergency")
    assert (rec["path"], rec["interrupt"], rec["interrupted_at"]) == (
        ["red_flags"], "cant_pee", "age")
    assert (rec["started_at"], rec["ended_at"]) == (5.0, 9.0)


def test_records_that_are_not_triage_records_are_skipped() -> None:
    assert read_record({"kind": "handoff", "key": "x"}) is None
    assert read_record({"key": "x", "disposition": "urgent"}) is None  # no path
    assert read_record("nonsense") is None


def test_median_and_durations_read_well() -> None:
    assert [format_duration(s) for s in (None, 42, 60, 252.4, 3 * 3600 + 120)] == [
        "-", "42 s", "1 min 0 s", "4 min 12 s", "3 h 2 min"]


def test_questions_of_an_earlier_version_are_listed_after_the_flow(demo: Flow) -> None:
    rec = read_record({"kind": "triage", "key": "k", "flow": "demo", "disposition": "routine",
                       "path": ["red_flags", "old_question"], "started_at": 0.0,
                       "ended_at": 30.0, "backs_at": {"old_question": 2}})
    assert rec is not None
    st = compute_stats(demo, [rec], [])
    assert [(q.step, q.reached, q.backs, q.in_flow) for q in st.questions][-1] == (
        "old_question", 1, 2, False)
    assert st.median_seconds == 30.0
