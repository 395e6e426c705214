"""Crash safety of `ftctl apply`: a SIGKILL at any fault point, then a plain re-run, ends where an
uninterrupted apply ends.

The executor has two fault points per step (after the step's intent is journaled, and after the
step commits); FTCTL_FAULT_KILL_AT=k makes the process SIGKILL itself at the k-th. For every k of
an apply of n steps (k = 1..2n), on a fresh copy of the starting store: kill at k, check that the
store holds whole steps only, re-run without the fault, and compare with a reference store applied
in one go with the same plan seed (so new rows get the same ids): Studio rows, ftctl's records and
history equal, no duplicate, every journal row done or abandoned, `ftctl plan --detailed-exitcode`
exits 0.

Cases:
- `demo`: specs/demo onto no store (3 steps, inserts only).
- `generated-30-step-6`: a generated project of 30 resources, with the executor's STEP_SIZE lowered
  to 6 by a `-c` shim around the real CLI, so the first wave (12 changes) spans two steps and a
  kill can land between two steps of one wave (4 steps).
- `demo-changed`: specs/demo applied, then two configs and a dataset's description changed: the
  second apply replaces rows (delete + insert in one step) and updates one in place (2 steps).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    DEMO,
    apply,
    dump_studio,
    duplicates,
    history,
    journal,
    make_demo,
    make_generated,
    objects,
    plan,
    query,
    show,
    steps_run,
    studio_row_ids,
)

pytestmark = pytest.mark.slow
WORKERS = max(2, min(4, os.cpu_count() or 2))  # kill/re-run sequences are independent: run a few at once


@dataclass(frozen=True)
class Case:
    root: Path
    paths: list[str]
    step_size: int | None
    base: Path | None  # the store the apply starts from (copied for each run); None: no store


def _case(root: Path, name: str) -> Case:
    if name == "demo":
        return Case(root, [DEMO], None, None)
    if name.startswith("generated"):
        return Case(root, [make_generated(root, 30)], 6, None)
    first = apply(root, DEMO, store="stores/base.db")
    assert first.returncode == 0, show(first)
    configs = root / DEMO / "configs.yaml"
    configs.write_text(configs.read_text().replace("r: 8,", "r: 4,").replace("max_new_tokens: 12", "max_new_tokens: 16"))
    resources = root / DEMO / "resources.yaml"
    resources.write_text(resources.read_text().replace("description: Customer messages", "description: Messages"))
    return Case(root, [DEMO], None, root / "stores" / "base.db")


def _start(case: Case, store: str) -> Path:
    db = case.root / store
    if case.base is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{case.base}{suffix}").exists():
                shutil.copyfile(f"{case.base}{suffix}", f"{db}{suffix}")
    return db


@pytest.mark.parametrize("name", ["demo", "generated-30-step-6", "demo-changed"])
def test_kill_at_every_fault_point_then_rerun_converges(tmp_path: Path, name: str) -> None:
    case = _case(make_demo(tmp_path / "project"), name)

    ref_db = _start(case, "stores/reference.db")
    base_journal = len(journal(ref_db)) if case.base else 0
    reference = apply(case.root, *case.paths, store="stores/reference.db", step_size=case.step_size)
    assert reference.returncode == 0, show(reference)
    n = steps_run(reference.stderr)
    assert n >= 2, f"expected several steps, got {n}\n{show(reference)}"
    assert [e[3] for e in journal(ref_db)][base_journal:] == ["done"] * n, "one done journal row per step"
    if name == "demo-changed":
        actions = {r[0] for r in query(ref_db, "SELECT action FROM ftctl_history")}
        assert {"replace", "update"} <= actions, f"the changed demo should replace and update rows: {actions}"
    assert not duplicates(ref_db)
    expected = {"studio": dump_studio(ref_db), "objects": objects(ref_db), "history": history(ref_db)}

    def crash_then_rerun(k: int) -> list[str]:
        return _crash_then_rerun(case, k, n, expected)

    with ThreadPoolExecutor(WORKERS) as pool:
        problems = [p for found in pool.map(crash_then_rerun, range(1, 2 * n + 1)) for p in found]
    assert not problems, f"{len(problems)} problem(s) over {2 * n} fault points:\n" + "\n".join(problems)


def _crash_then_rerun(case: Case, k: int, n: int, expected: dict[str, Any]) -> list[str]:
    store = f"stores/kill-at-{k}.db"
    db = _start(case, store)
    before_ids = studio_row_ids(db) if case.base else set()
    base_journal = len(journal(db)) if case.base else 0
    problems: list[str] = []

    def check(ok: bool, what: Callable[[], str]) -> bool:
        if not ok:
            problems.append(f"k={k}: {what()}")
        return ok

    killed = apply(case.root, *case.paths, store=store, env={"FTCTL_FAULT_KILL_AT": str(k)}, step_size=case.step_size)
    if not check(killed.returncode == -signal.SIGKILL, lambda: f"expected death by SIGKILL (-9)\n{show(killed)}"):
        return problems

    # What the kill left: whole steps only. Steps 1..k//2 committed; at an odd k one intent is open.
    entries = journal(db)[base_journal:]
    states = [e[3] for e in entries]
    check(states == ["done"] * (k // 2) + ["intent"] * (k % 2),
          lambda: f"journal after the kill: {states}, expected {k // 2} done then {k % 2} open intent(s)")
    ops = [op.split(" ", 1) for e in entries if e[3] == "done" for op in e[4]["rows"]]
    committed = (before_ids | {row for op, row in ops if op == "insert"}) - {row for op, row in ops if op == "delete"}
    written = studio_row_ids(db)
    check(written == committed, lambda: f"Studio rows after the kill are not those of the committed steps: "
                                       f"extra {sorted(written - committed)}, missing {sorted(committed - written)}")

    rerun = apply(case.root, *case.paths, store=store, step_size=case.step_size)
    if not check(rerun.returncode == 0, lambda: f"the re-run failed\n{show(rerun)}"):
        return problems
    if k % 2:
        check("abandoned 1 unfinished step(s)" in rerun.stdout, lambda: f"the re-run does not report the abandoned step\n{show(rerun)}")

    studio = dump_studio(db)
    for table, rows in studio.items():
        want = expected["studio"][table]
        check(rows == want, lambda t=table, r=rows, w=want: f"{t} differs from the reference:\n  got  {r}\n  want {w}")
    check(not duplicates(db), lambda: f"duplicate rows: {duplicates(db)}")
    check(objects(db) == expected["objects"], lambda: f"ftctl_objects differ:\n  got  {objects(db)}\n  want {expected['objects']}")
    got_history = history(db)
    check(got_history == expected["history"],
          lambda: f"history differs: extra {got_history - expected['history']}, missing {expected['history'] - got_history}")

    states = [e[3] for e in journal(db)[base_journal:]]
    check(set(states) <= {"done", "abandoned"}, lambda: f"journal rows neither done nor abandoned: {states}")
    check(states.count("done") == n and states.count("abandoned") == k % 2,
          lambda: f"journal: {states.count('done')} done (want {n}), {states.count('abandoned')} abandoned (want {k % 2})")
    applies = [r[0] for r in query(db, "SELECT state FROM ftctl_applies")]
    check("failed" not in applies, lambda: f"an apply is recorded as failed: {applies}")

    again = plan(case.root, *case.paths, store=store)
    check(again.returncode == 0 and "No changes" in again.stdout, lambda: f"plan after the re-run is not empty\n{show(again)}")
    return problems
