"""The staff commands as a person runs them: python bot.py validate | test | console | paths."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "flows" / "demo.yaml"


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "bot.py"), *args], input=stdin,
                          capture_output=True, text=True, env=full_env, cwd=cwd, timeout=120)


def test_validate_demo_is_valid_and_counts_paths() -> None:
    p = run("validate", str(DEMO))
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith(
        "demo.yaml: valid (14 steps; 3 safety checks hold on all 591 paths; 0 warning(s))")


def test_validate_reports_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    text = DEMO.read_text().replace("next: trend", "next: trnd").replace(
        "    fact: fever\n", "    fact: fevr\n")
    bad.write_text(text)
    p = run("validate", str(bad))
    assert p.returncode == 1
    lines = p.stdout.strip().splitlines()
    assert f"{bad}:115:11: error: question 'duration': next step 'trnd' does not exist " \
           "(did you mean 'trend'?)" in lines
    assert any(line.startswith(f"{bad}:") and "unknown fact 'fevr' (did you mean 'fever'?)"
               in line for line in lines)
    assert "not valid" in p.stderr


def test_case_files_pass_and_last_line_counts() -> None:
    p = run("test", "flows/tests/demo")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1] == "8 passed, 0 failed"
    assert "not reached by any case: question 'red_flags' option 2" in p.stdout


def test_failing_and_incomplete_cases(tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "flow: demo\n"
        "cases:\n"
        "  - id: wrong-expectation\n"
        "    facts: {bladder_bowel_changes: yes, saddle_numbness: no, weakness: none}\n"
        "    expect: {disposition: self_care}\n"
        "  - id: missing-age\n"
        "    facts: {bladder_bowel_changes: no, saddle_numbness: no, weakness: none}\n"
        "    expect: {disposition: self_care}\n"
        "  - id: right\n"
        "    facts: {bladder_bowel_changes: no, saddle_numbness: yes, weakness: none}\n"
        "    expect: {disposition: emergency, rule: E1}\n"
    )
    p = run("test", str(cases), "--quiet")
    assert p.returncode == 1
    lines = p.stdout.strip().splitlines()
    assert lines == [
        f"FAIL {cases}:3 wrong-expectation: expected self_care, got emergency (rule E1); "
        "path: red_flags=Trouble peeing or pooing",
        f"FAIL {cases}:6 missing-age: expected self_care, the flow asked for 'age', which the "
        "case does not give; path: red_flags=none of these → bladder_check=No → age=?",
        "1 passed, 2 failed",
    ] or lines


def test_case_with_unknown_fact_is_named(tmp_path: Path) -> None:
    case = tmp_path / "one.yaml"
    case.write_text("flow: demo\nid: typo\nfacts: {bladder_bowel_change: yes}\n"
                    "expect: {disposition: emergency}\n")
    p = run("test", str(case), "--quiet")
    assert p.returncode == 1
    assert "unknown fact 'bladder_bowel_change' (did you mean 'bladder_bowel_changes'?)" \
        in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"


def test_console_chat_back_restart_quit_and_resume(tmp_path: Path) -> None:
    env = {"BOT_STORE": str(tmp_path / "s.db"), "BOT_FLOW": str(DEMO)}
    p = run("console", stdin="4\nno\nback\nyes\nquit\n", env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "This is a demo." in out
    assert "  1. [ ] Trouble peeing or pooing" in out
    assert "Type the numbers of all that apply (like 1 3), or 4 for none of these." in out
    assert "! OK, let's change that answer." in out
    assert "==== EMERGENCY ====" in out and "[disposition: emergency; rule: E1]" in out
    # the next day: the conversation is where it was
    p = run("console", stdin="back\nquit\n", env=env)
    assert "Welcome back: here is where you left off." in p.stdout
    assert "==== EMERGENCY ====" in p.stdout.split("Welcome back")[1]
    assert "Just to be sure" in p.stdout.split("Welcome back")[1]


def test_plain_bot_py_without_token_opens_console(tmp_path: Path) -> None:
    env = {"BOT_STORE": str(tmp_path / "s.db"), "BOT_FLOW": str(DEMO)}
    p = run(stdin="quit\n", env=env)
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("No TELEGRAM_BOT_TOKEN set: opening the console chat.")
    assert "set TELEGRAM_BOT_TOKEN" in first


@pytest.mark.skipif(sys.platform == "win32", reason="a terminal (pty) is POSIX-only")
def test_ctrl_c_in_the_console_says_goodbye_at_once_and_keeps_the_answers(
        tmp_path: Path) -> None:
    import pty
    import select
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    env.update({"BOT_STORE": str(tmp_path / "s.db"), "BOT_FLOW": str(DEMO)})

    def session(typed: list[bytes]) -> str:
        """A console in a real terminal: each of ``typed`` after a prompt, then Ctrl-C
        at the next prompt; what the terminal showed."""
        pid, fd = pty.fork()
        if pid == 0:  # the child: the console, as a person starts it
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, str(ROOT / "bot.py"), "console"], env)
        shown = b""
        deadline = time.monotonic() + 60
        try:
            for keys in [*typed, b"\x03"]:  # Ctrl-C: the terminal sends SIGINT
                prompts = shown.count(b"> ")
                while shown.count(b"> ") == prompts and time.monotonic() < deadline:
                    if select.select([fd], [], [], 0.1)[0]:
                        shown += os.read(fd, 65536)
                os.write(fd, keys)
            pressed = time.monotonic()
            while not os.waitpid(pid, os.WNOHANG)[0]:
                assert time.monotonic() - pressed < 5, "the console is still running"
                if select.select([fd], [], [], 0.05)[0]:
                    with contextlib.suppress(OSError):  # (the console closed the terminal)
                        shown += os.read(fd, 65536)
        finally:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)
        return shown.decode(errors="replace")

    shown = session([b"4\r"])  # "None of these" at the red flags
    assert "Bye. Your answers are saved: run the console again to continue." in shown
    shown = session([])
    assert "Welcome back: here is where you left off." in shown


@pytest.mark.parametrize(("store", "says"), [
    ("redis://127.0.0.1:1", "cannot reach Redis at redis://127.0.0.1:1: connection refused"),
    ("mysql://x", "BOT_STORE='mysql://x' is not a valid store: unknown scheme 'mysql'; use a "),
])
def test_a_store_setting_that_cannot_work_stops_the_console_with_one_line(
        store: str, says: str) -> None:
    for args in [(), ("console",)]:  # plain python bot.py without a token opens the console
        p = run(*args, stdin="quit\n", env={"BOT_STORE": store, "BOT_FLOW": str(DEMO)})
        assert p.returncode == 2
        assert p.stderr.startswith(f"configuration error: {says}")
        assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr


def test_console_in_spanish(tmp_path: Path) -> None:
    env = {"BOT_STORE": str(tmp_path / "s.db"), "BOT_FLOW": str(DEMO)}
    p = run("console", "--lang", "es", stdin="salir\n", env=env)
    assert "Esto es una demostración." in p.stdout
    assert "Escriba los números de todo lo que tenga" in p.stdout


def test_paths_csv(tmp_path: Path) -> None:
    out = tmp_path / "paths.csv"
    p = run("paths", str(DEMO), "--csv", str(out))
    assert p.returncode == 0, p.stderr
    rows = out.read_text().splitlines()
    assert rows[0] == "path,disposition,rule,outcome,answers"
    assert len(rows) == 1 + 591
    assert "591 paths (emergency:" in p.stderr


def test_schema_is_up_to_date() -> None:
    p = run("schema", "--check")
    assert p.returncode == 0, p.stderr
