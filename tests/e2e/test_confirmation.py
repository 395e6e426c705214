"""Confirmation as Terraform does it, through the real CLI: on a real terminal (a pty) and without one.

- Without a terminal, `apply` and `import` refuse in one line unless `--auto-approve` is given, and
  write nothing (no store, no job); piping `yes` in does not count. A saved plan applies without
  asking (it was reviewed when it was made).
- On a terminal, `no` writes nothing and `yes` applies.
- `apply --wait` on the demo (jobs on the fake backend, finished by the test writing their results)
  shows the whole chain before its one question (train now; the evaluation later, if the training
  registers its adapter; the export later, if its gate passes) and then runs all of it, asking nothing more.
- A round that would launch a job the chain did not show asks again: the Studio edits the training's
  row while it runs, so the next round re-runs the training (a second run nobody was shown). `no`
  stops there with nothing more applied; with `--auto-approve` and no terminal, the wait goes on and
  says what it launches.

Each process is bounded by a deadline (the harness's, not an assertion about speed).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.e2e.helpers import DEMO, FTCTL, cli_env, ftctl, ftctl_popen, jobs_env, show

STORE = ".app/state.db"
DEADLINE_S = 120
REFUSAL = "ftctl: error: no terminal to confirm on: pass --auto-approve to apply without asking"
ASK = "Apply these changes? [y/N]: "
ASK_AGAIN = "Apply this round too? [y/N]: "
CHAIN = ["FineTuningJob/demo-ticketing-lora: train — now",
         "EvaluationJob/demo-base-vs-lora: evaluate — later, if FineTuningJob/demo-ticketing-lora succeeds and registers "
         "adapter demo-ticketing-lora",
         "ModelExport/demo-ticketing: export — later, if its gate passes: rougeL >= 0.2 in EvaluationJob/demo-base-vs-lora"]


class Terminal:
    """The CLI on a pseudo-terminal: stdin, stdout and stderr are the pty, as in a person's shell."""

    def __init__(self, root: Path, *args: str, env: dict[str, str]) -> None:
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen([*FTCTL, *args], cwd=root, env=cli_env(env), stdin=child, stdout=child, stderr=child,
                                     start_new_session=True)
        os.close(child)
        self.text = ""
        self.deadline = time.monotonic() + DEADLINE_S

    def read(self, wait_s: float = 0.2) -> str:
        """What the program wrote since, waiting up to wait_s for something."""
        ready, _, _ = select.select([self.fd], [], [], wait_s)
        if not ready:
            return ""
        try:
            chunk = os.read(self.fd, 65536).decode("utf-8", "replace")
        except OSError:  # EIO: the program exited and closed the terminal
            return ""
        self.text += chunk
        return chunk

    def expect(self, pattern: str) -> str:
        """Read until `pattern` shows; returns everything read so far."""
        while pattern not in self.text:
            exited = self.proc.poll() is not None
            assert time.monotonic() < self.deadline and (self.read() or not exited), \
                f"{pattern!r} never came; the terminal shows:\n{self.text[-3000:]}"
        return self.text

    def answer(self, text: str) -> None:
        os.write(self.fd, f"{text}\n".encode())

    def finish(self, *, while_running: object = None) -> int:
        """Read until the program exits (calling while_running() between reads); its exit code."""
        while self.proc.poll() is None:
            assert time.monotonic() < self.deadline, f"still running at the deadline:\n{self.text[-3000:]}"
            if callable(while_running):
                while_running()
            self.read()
        while self.read(0.05):
            pass
        os.close(self.fd)
        return self.proc.returncode

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _jobs(root: Path) -> Path:
    return root.parent / "jobs"


def _launched(root: Path, prefix: str = "ftctl-") -> list[str]:
    return sorted(p.parent.name for p in _jobs(root).rglob("launch.json") if p.parent.name.startswith(prefix))


def _finish_jobs(root: Path) -> None:
    """Every running fake job succeeds: a training leaves an adapter, evaluations score above the gate."""
    for launch in _jobs(root).rglob("launch.json"):
        folder, name = launch.parent, launch.parent.name
        if (folder / "result.json").exists():
            continue
        artifacts = {"adapter_dir": str(folder / "adapter")} if name.startswith("ftctl-train-") else \
            {"registered_model_name": "demo-ticketing", "registered_model_version": "1"} if name.startswith("ftctl-export-") else {}
        document = {"contract_version": 1, "job_name": name, "status": "succeeded",
                    "metrics": {"rougeL": 0.3} if name.startswith("ftctl-eval-") else {}, "artifacts": artifacts,
                    "error": None, "started_at": 0, "finished_at": 0}
        (folder / ".result.tmp").write_text(json.dumps(document), encoding="utf-8")
        os.replace(folder / ".result.tmp", folder / "result.json")


def _studio_edits_the_training(root: Path) -> None:
    """What a Studio user might do while the wait runs: change the training's row (drift: ftctl puts
    the manifest's value back, which re-runs the training)."""
    conn = sqlite3.connect(root / STORE, timeout=30)
    with conn:
        conn.execute("UPDATE fine_tuning_jobs SET dataset_fraction = 0.5")
    conn.close()


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not (callable(condition) and condition()):
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)


def _demo_apply(*extra: str) -> tuple[str, ...]:
    return ("apply", DEMO, "--offline", "--create-store", *extra)


# -- without a terminal --------------------------------------------------------------------------

def test_a_piped_apply_or_import_without_auto_approve_refuses_and_writes_nothing(demo_root: Path) -> None:
    env = cli_env(jobs_env(_jobs(demo_root)))
    for args, refusal in ((_demo_apply(), REFUSAL), (_demo_apply("--wait"), REFUSAL),
                          (("import", "--out", "imported"), REFUSAL.replace("to apply", "to import"))):
        proc = subprocess.run([*FTCTL, *args], cwd=demo_root, env=env, input="yes\n", capture_output=True, text=True,
                              timeout=DEADLINE_S, check=False)
        assert proc.returncode == 1 and proc.stderr.strip() == refusal and not proc.stdout, show(proc)
    assert not (demo_root / STORE).exists() and not (demo_root / "imported").exists() and not _launched(demo_root)


def test_a_saved_plan_applies_without_asking(demo_root: Path) -> None:
    env = jobs_env(_jobs(demo_root))
    made = ftctl(demo_root, "plan", DEMO, "--offline", "-o", "plan.json", env=env)
    assert made.returncode == 0, show(made)
    applied = ftctl(demo_root, "apply", "plan.json", "--create-store", env=env)
    assert applied.returncode == 0 and "Applied: 7 to create" in applied.stdout, show(applied)
    assert len(_launched(demo_root, "ftctl-train-")) == 1


# -- on a terminal -------------------------------------------------------------------------------

def test_on_a_terminal_no_writes_nothing_and_yes_applies(demo_root: Path) -> None:
    env = jobs_env(_jobs(demo_root))
    declined = Terminal(demo_root, *_demo_apply(), env=env)
    try:
        assert "FineTuningJob/demo-ticketing-lora" in declined.expect(ASK)
        declined.answer("no")
        assert declined.finish() == 0 and "Nothing applied." in declined.text, declined.text
    finally:
        declined.stop()
    assert not (demo_root / STORE).exists() and not _launched(demo_root)

    accepted = Terminal(demo_root, *_demo_apply(), env=env)
    try:
        accepted.expect(ASK)
        accepted.answer("yes")
        assert accepted.finish() == 0 and "Applied: 7 to create" in accepted.text, accepted.text
    finally:
        accepted.stop()
    conn = sqlite3.connect(demo_root / STORE)
    assert conn.execute("SELECT count(*) FROM fine_tuning_jobs").fetchone() == (1,)
    conn.close()
    assert len(_launched(demo_root, "ftctl-train-")) == 1


def test_wait_shows_the_whole_chain_before_its_one_question_then_runs_it(demo_root: Path) -> None:
    term = Terminal(demo_root, *_demo_apply("--wait", "--poll", "0.2"), env=jobs_env(_jobs(demo_root)))
    try:
        before = term.expect(ASK)
        shown = [before.index(line) for line in CHAIN]
        assert shown == sorted(shown) and shown[-1] < before.index(ASK), before
        term.answer("y")
        code = term.finish(while_running=lambda: _finish_jobs(demo_root))
    finally:
        term.stop()
    assert code == 0 and "Converged." in term.text, term.text
    assert term.text.count("[y/N]") == 1, f"asked again for a job the chain showed:\n{term.text}"
    assert [name.split("-")[1] for name in _launched(demo_root)] == ["eval", "eval", "export", "train"]


def test_a_round_that_launches_what_was_not_shown_asks_again_and_no_stops(demo_root: Path) -> None:
    term = Terminal(demo_root, *_demo_apply("--wait", "--poll", "0.2"), env=jobs_env(_jobs(demo_root)))
    try:
        term.expect(ASK)
        term.answer("y")
        _until(lambda: _launched(demo_root, "ftctl-train-"), "the training's launch")
        _studio_edits_the_training(demo_root)
        asked = term.expect(ASK_AGAIN)
        assert re.search(r"FineTuningJob/demo-ticketing-lora launches ftctl-train-\S+, which the chain shown before did not "
                         r"include", asked), asked
        term.answer("n")
        code = term.finish()
    finally:
        term.stop()
    assert code == 0 and "Stopped: nothing more applied" in term.text, term.text
    assert len(_launched(demo_root, "ftctl-train-")) == 1, "the second training was launched"
    conn = sqlite3.connect(demo_root / STORE)
    assert conn.execute("SELECT dataset_fraction FROM fine_tuning_jobs").fetchall() == [(0.5,)], "the round was applied"
    conn.close()


def test_without_a_terminal_auto_approve_goes_on_and_says_what_it_launches(demo_root: Path) -> None:
    proc = ftctl_popen(demo_root, *_demo_apply("--wait", "--poll", "0.2", "--auto-approve"), env=jobs_env(_jobs(demo_root)))
    try:
        _until(lambda: _launched(demo_root, "ftctl-train-"), "the training's launch")
        _studio_edits_the_training(demo_root)
        _until(lambda: len(_launched(demo_root, "ftctl-train-")) == 2, "the second training's launch")
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=DEADLINE_S)
    assert re.search(r"ftctl: FineTuningJob/demo-ticketing-lora launches ftctl-train-\S+, which the chain shown before did "
                     r"not include \(--auto-approve: going on\)", err), err
