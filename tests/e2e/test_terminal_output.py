"""What a user sees on the screen, through the real CLI (issue 12, items 5 and 6).

- status and get fit 100 columns (COLUMNS=100, and piped, where the width is unknown);
- colour only on a terminal or with FORCE_COLOR, never with NO_COLOR or --no-color, never piped;
- apply --wait on a terminal redraws each job's progress (step/total, loss, ETA) in place, and
  Ctrl-C (SIGINT) says which jobs keep running and how to follow or cancel them, exit 130;
- -o/--output is a file on every command that writes a report; a format's name is refused.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.helpers import DEMO, apply, ftctl, jobs_env, show
from tests.e2e.test_confirmation import Terminal, _jobs

ESC = "\x1b["


@pytest.fixture
def applied(demo_root: Path) -> Path:
    """The demo applied on the fake backend: its training runs (long names: store ids, job digests)."""
    proc = apply(demo_root, DEMO, env=jobs_env(_jobs(demo_root)))
    assert proc.returncode == 0, show(proc)
    return demo_root


def _run(root: Path, *args: str, **env: str) -> str:
    proc = ftctl(root, *args, env={**jobs_env(_jobs(root)), **env})
    assert proc.returncode in (0, 2), show(proc)
    return proc.stdout


@pytest.mark.parametrize("command", [("status", DEMO, "--offline"), ("get", "all"), ("get", "ftjobs")])
def test_tables_fit_100_columns_and_are_plain_when_piped(applied: Path, command: tuple[str, ...]) -> None:
    for env in ({"COLUMNS": "100"}, {}):
        out = _run(applied, *command, **env)
        too_long = [line for line in out.splitlines() if len(line) > 100]
        assert out.strip() and not too_long, f"{command} with {env} has lines over 100 columns:\n" + "\n".join(too_long)
        assert ESC not in out


def test_status_on_a_narrow_terminal_keeps_names_and_states(applied: Path) -> None:
    out = _run(applied, "status", DEMO, "--offline", COLUMNS="80")
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "FineTuningJob  demo-ticketing-lora" in out and "running" in out


def test_colour_with_force_color_never_with_no_color(applied: Path) -> None:
    forced = _run(applied, "status", DEMO, "--offline", FORCE_COLOR="1")
    assert ESC in forced and "running" in forced
    assert ESC not in _run(applied, "status", DEMO, "--offline", FORCE_COLOR="1", NO_COLOR="1")
    assert ESC not in _run(applied, "--no-color", "status", DEMO, "--offline", FORCE_COLOR="1")
    assert ESC not in _run(applied, "status", DEMO, "--offline", "--format", "json", FORCE_COLOR="1")


def test_colour_on_a_terminal_not_with_no_color(applied: Path) -> None:
    env = jobs_env(_jobs(applied))
    for extra, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        term = Terminal(applied, "status", DEMO, "--offline", env={**env, **extra})
        try:
            term.finish()
        finally:
            term.stop()
        assert (ESC in term.text) is coloured, term.text


def _write_progress(root: Path) -> None:
    for launch in _jobs(root).rglob("launch.json"):
        (launch.parent / "progress.json").write_text(
            json.dumps({"stage": "train", "step": 3, "total_steps": 12, "epoch": 0.5, "loss": 1.25, "eta_s": 42}), encoding="utf-8")


def test_wait_on_a_terminal_shows_progress_and_ctrl_c_says_how_to_follow_or_cancel(demo_root: Path) -> None:
    term = Terminal(demo_root, "apply", DEMO, "--offline", "--create-store", "--auto-approve", "--wait", "--poll", "0.2",
                    env={**jobs_env(_jobs(demo_root)), "COLUMNS": "100"})
    try:
        term.expect("Applied:")
        _write_progress(demo_root)
        term.expect("step 3/12")
        term.expect("ETA 42 s")
        term.proc.send_signal(signal.SIGINT)
        code = term.finish()
    finally:
        term.stop()
    after = term.text[term.text.index("Interrupted"):]
    assert code == 130, term.text
    assert "these jobs keep running:" in after and "FineTuningJob/demo-ticketing-lora" in after, after
    assert "ftctl logs FineTuningJob/demo-ticketing-lora -f" in after
    assert "ftctl cancel FineTuningJob/demo-ticketing-lora" in after
    assert "Aborted!" not in term.text and "Traceback" not in term.text


@pytest.mark.parametrize("command", [("validate", DEMO), ("plan", DEMO, "--offline"), ("drift", DEMO, "--offline"),
                                     ("status", DEMO, "--offline"), ("get", "all"), ("describe", "ds/demo-tickets"),
                                     ("state", "pull")])
def test_dash_o_is_a_file_everywhere_and_a_format_name_is_refused(applied: Path, command: tuple[str, ...]) -> None:
    out = applied / "report.json"
    proc = ftctl(applied, *command, "-o", str(out), env=jobs_env(_jobs(applied)))
    assert proc.returncode in (0, 2) and out.read_text(encoding="utf-8").strip(), show(proc)
    refused = ftctl(applied, *command, "-o", "yaml", env=jobs_env(_jobs(applied)))
    assert refused.returncode == 2 and "did you mean --format yaml?" in refused.stderr, show(refused)
    assert not (applied / "yaml").exists() and "Traceback" not in refused.stderr
