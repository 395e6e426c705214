"""Fencing of the apply lease: an apply paused past its lease writes nothing more once another apply
took the lock, and a live apply keeps its lease through a step slower than the lease.

The first apply is held at a fault point (FTCTL_FAULT_PAUSE_AT=N:FILE waits at the executor's Nth
fault point until FILE exists) with a short lease (FTCTL_LOCK_TTL_S). The SIGSTOP test then
stops the whole process (its lease-renewal thread too), releases the fault point, waits until the
lease row says the lease expired, runs a second apply to completion, and resumes the first: it
must exit 1 with the fencing message, leave no duplicate Studio row and launch no job twice, and
the store must end as an uninterrupted apply leaves it (row counts per table, next plan empty).
The two applies use different plan seeds, so rows the first would still write carry other ids
than the second's: a write that slipped through would show as a duplicate.

The slow-step test keeps the first apply at a fault point inside a step (after its intent, before
its commit) for several lease lengths: its renewal thread keeps the lease, a second apply with
`--lock-timeout 0` is refused naming the holder, and the first then finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    DEMO,
    apply,
    count,
    duplicates,
    ftctl_popen,
    jobs_env,
    journal,
    launch_logs,
    make_demo,
    plan,
    query,
    show,
    tables,
)

STORE = ".app/state.db"
STUDIO = ("configs", "datasets", "models", "prompts", "adapters", "fine_tuning_jobs", "evaluation_jobs")
DEADLINE_S = 60.0  # how long the harness waits for a subprocess to reach a state before failing


def _start_paused(root: Path, point: int, *, ttl_s: float, seed: str) -> tuple[subprocess.Popen[str], Path]:
    """`ftctl apply` of the demo, held at fault point `point` until the returned file exists."""
    go = root / f"go-{point}"
    env = {**jobs_env(root / "jobs"), "FTCTL_LOCK_TTL_S": str(ttl_s), "FTCTL_FAULT_PAUSE_AT": f"{point}:{go}",
           "FTCTL_PLAN_SEED": seed}
    return ftctl_popen(root, "apply", DEMO, "--auto-approve", "--create-store", "--offline", "--store", STORE, env=env), go


def _wait_for(what: str, proc: subprocess.Popen[str], condition) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the apply ended before {what}: exit {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {DEADLINE_S:.0f} s")
        time.sleep(0.05)


def _journal_states(db: Path) -> list[tuple[int, str]]:
    if not (db.exists() and "ftctl_journal" in tables(db)):
        return []
    return [(step, state) for _, _, step, state, _ in journal(db)]


def _lease(db: Path) -> tuple[float, float]:
    """(acquired_at, expires_at) of the lease row."""
    ((acquired, expires),) = query(db, "SELECT acquired_at, expires_at FROM ftctl_lock")
    return float(acquired), float(expires)


def _counts(db: Path) -> dict[str, int]:
    return {t: count(db, t) for t in STUDIO}


def _reference_counts(tmp_path: Path) -> dict[str, int]:
    root = make_demo(tmp_path / "reference")
    done = apply(root, DEMO, store=STORE, env=jobs_env(root / "jobs"))
    assert done.returncode == 0, show(done)
    return _counts(root / STORE)


@pytest.mark.parametrize("point", [2, 6, 7], ids=["between-steps", "before-a-launch", "after-a-launch"])
def test_an_apply_stopped_past_its_lease_is_fenced(tmp_path: Path, point: int) -> None:
    """Point 2: step 1 committed, steps 2 and 3 to come. Point 6: step 3 committed, the training
    job not launched yet (the fenced apply must not launch it: the second one does). Point 7: the
    job launched, its row not yet noting it (the second apply adopts it by its name, launching
    nothing; the fenced one must not note it)."""
    root = make_demo(tmp_path / "project")
    db = root / STORE
    first, go = _start_paused(root, point, ttl_s=2.0, seed="first")
    try:
        done_steps = min(point // 2, 3)
        _wait_for(f"step {done_steps} committed", first,
                  lambda: [s for s, state in _journal_states(db) if state == "done"] == list(range(1, done_steps + 1)))
        os.kill(first.pid, signal.SIGSTOP)
        go.touch()
        _, expires = _lease(db)
        while time.time() <= expires + 0.1:  # the stopped apply cannot renew: wait out its lease
            time.sleep(0.1)

        second = apply(root, DEMO, store=STORE, seed="second", env=jobs_env(root / "jobs"), extra=["--lock-timeout", "30"])
        assert second.returncode == 0, show(second)
        after_second = _counts(db)
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=DEADLINE_S)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
            first.communicate()

    assert first.returncode == 1, f"exit {first.returncode}\n{out}\n{err}"
    assert "took the store lock while this one was paused" in err and "re-run `ftctl apply`" in err, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.count("ftctl: error") == 1, err
    assert _counts(db) == after_second, "the fenced apply wrote rows after it resumed"
    assert not duplicates(db), duplicates(db)
    assert _counts(db) == _reference_counts(tmp_path)
    assert all(log == "1\n" for log in launch_logs(root / "jobs").values()), launch_logs(root / "jobs")
    assert query(db, "SELECT COUNT(*) FROM ftctl_lock") == [(0,)]
    assert sorted(r[0] for r in query(db, "SELECT state FROM ftctl_applies")) == ["done", "interrupted"]
    again = plan(root, DEMO, store=STORE, env=jobs_env(root / "jobs"))
    assert again.returncode == 0, show(again)


def test_a_step_slower_than_the_lease_keeps_it(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    db = root / STORE
    ttl = 3.0
    first, go = _start_paused(root, 1, ttl_s=ttl, seed="first")
    try:
        _wait_for("step 1's intent", first, lambda: _journal_states(db) == [(1, "intent")])
        acquired, _ = _lease(db)
        while time.time() <= acquired + 2 * ttl:  # the step has now run for two lease lengths
            time.sleep(0.1)

        refused = apply(root, DEMO, store=STORE, seed="second", env=jobs_env(root / "jobs"), extra=["--lock-timeout", "0"])
        assert refused.returncode == 1, show(refused)
        assert "the store is locked by ftctl-" in refused.stderr and f"(pid {first.pid} on " in refused.stderr, show(refused)
        assert _lease(db)[1] > acquired + ttl, "the lease was not renewed while the step ran"
        go.touch()
        out, err = first.communicate(timeout=DEADLINE_S)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    assert first.returncode == 0, f"exit {first.returncode}\n{out}\n{err}"
    assert not duplicates(db)
    assert _counts(db) == _reference_counts(tmp_path)
    again = plan(root, DEMO, store=STORE, env=jobs_env(root / "jobs"))
    assert again.returncode == 0, show(again)
