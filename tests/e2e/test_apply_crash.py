"""Crash safety of `ftctl apply`: a SIGKILL at any fault point, then a plain re-run, ends where an
uninterrupted apply ends, and never launches a job twice.

The executor has a fault point after each step's intent is journaled, after each step commits, and
after each job it launches (before the launch is noted in the Studio row's `cml_job_id`);
FTCTL_FAULT_KILL_AT=k makes the process SIGKILL itself at the k-th. The points of an apply are
read off an uninterrupted reference run with the same plan seed (so new rows get the same ids):
2 per journal row plus 1 per job in the rows' `launches`. For every k, on a fresh copy of the
starting store: kill at k, check that the store holds whole steps only and that exactly the jobs
launched before the kill were launched, re-run without the fault, and compare with the reference:
Studio rows, ftctl's records and history equal, no duplicate, every journal row done or abandoned,
every job launched exactly once (its launches.log has one line) and named in its row's
`cml_job_id`, `ftctl plan --detailed-exitcode` exits 0.

Jobs run on the fake backend (FTCTL_BACKEND=fake: a launch writes the job's folder, nothing runs).
Job folders are state outside the store, so each store gets its own (`<store>.jobs`): the reference,
every crashed run and its re-run, and the starting store's (copied with it).

Cases:
- `demo`: specs/demo onto no store (3 steps, inserts only; the last launches the training job).
- `generated-30-step-6`: a generated project of 30 resources, with the executor's STEP_SIZE lowered
  to 6 by a `-c` shim around the real CLI, so the first wave (12 changes) spans two steps and a
  kill can land between two steps of one wave; then one step per training job launched (9 steps,
  6 launches).
- `demo-changed`: specs/demo applied, then two configs and a dataset's description changed: the
  second apply replaces rows (delete + insert in one step), updates one in place and re-runs the
  training job (a new generation, launched).

`test_kill_right_after_a_launch_is_adopted` names the point that only jobs have: the job is
launched but the kill comes before its row notes it. The re-run must adopt that job (an update of
`cml_job_id`, nothing launched), not start a second one.
"""

from __future__ import annotations

import json
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
    jobs_env,
    journal,
    launch_logs,
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
FAULT = "FTCTL_FAULT_KILL_AT"
JOB_TABLES = ("fine_tuning_jobs", "evaluation_jobs")  # the Studio rows that note their job (cml_job_id)


@dataclass(frozen=True)
class Case:
    root: Path
    paths: list[str]
    step_size: int | None
    base: Path | None  # the store the apply starts from (copied for each run, with its jobs); None: no store


@dataclass(frozen=True)
class Point:
    """A fault point of the apply: what has just happened when FTCTL_FAULT_KILL_AT=k kills it."""

    k: int
    step: int  # the journal step (1-based, of this apply)
    what: str  # "intent" (journaled), "commit" (rows written), "launch" (job started, not yet noted in its row)
    job: str = ""  # the job just launched

    def __str__(self) -> str:
        return f"k={self.k} (after step {self.step}'s {self.what}{' of ' + self.job if self.job else ''})"


@dataclass(frozen=True)
class Reference:
    n: int  # steps
    points: list[Point]
    launched: list[str]  # jobs this apply launched, in order
    named: set[str]  # cml_job_id of every job row
    logs: dict[str, str]  # launches.log of every job folder
    studio: dict[str, list[tuple[Any, ...]]]
    objects: list[tuple[Any, ...]]
    history: Any


def _jobs(case: Case, store: str) -> Path:
    """The store's own job folders: the fake backend's state must not be shared between stores."""
    return case.root / f"{store}.jobs"


def _case(root: Path, name: str) -> Case:
    if name == "demo":
        return Case(root, [DEMO], None, None)
    if name.startswith("generated"):
        return Case(root, [make_generated(root, 30)], 6, None)
    base = "stores/base.db"
    first = apply(root, DEMO, store=base, env=jobs_env(root / f"{base}.jobs"))
    assert first.returncode == 0, show(first)
    configs = root / DEMO / "configs.yaml"
    configs.write_text(configs.read_text().replace("r: 8,", "r: 4,").replace("max_new_tokens: 12", "max_new_tokens: 16"))
    resources = root / DEMO / "resources.yaml"
    resources.write_text(resources.read_text().replace("description: Customer messages", "description: Messages"))
    return Case(root, [DEMO], None, root / base)


def _start(case: Case, store: str) -> Path:
    db = case.root / store
    db.parent.mkdir(parents=True, exist_ok=True)
    if case.base is not None:
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{case.base}{suffix}").exists():
                shutil.copyfile(f"{case.base}{suffix}", f"{db}{suffix}")
        base_jobs = Path(f"{case.base}.jobs")
        if base_jobs.is_dir():
            shutil.copytree(base_jobs, _jobs(case, store))
    return db


def _apply(case: Case, store: str, **env: str) -> Any:
    return apply(case.root, *case.paths, store=store, env={**jobs_env(_jobs(case, store)), **env}, step_size=case.step_size)


def _points(entries: list[tuple[int, str, int, str, dict[str, Any]]]) -> list[Point]:
    """The fault points of an apply whose journal rows are `entries`: 2 per step, 1 per launch."""
    out: list[Point] = []
    for step, (_, _, _, _, intent) in enumerate(entries, start=1):
        out.append(Point(len(out) + 1, step, "intent"))
        out.append(Point(len(out) + 1, step, "commit"))
        for launch in intent["launches"]:
            out.append(Point(len(out) + 1, step, "launch", launch.rsplit(" (attempt ", 1)[0]))
    return out


def _named(db: Path) -> list[str]:
    """cml_job_id of every job row ('' where a row notes no job)."""
    return sorted(str(r[0] or "") for t in JOB_TABLES for r in query(db, f"SELECT cml_job_id FROM {t}"))


def _reference(case: Case) -> Reference:
    store = "stores/reference.db"
    db = _start(case, store)
    base_journal = len(journal(db)) if case.base else 0
    base_logs = launch_logs(_jobs(case, store))
    done = _apply(case, store)
    assert done.returncode == 0, show(done)
    n = steps_run(done.stderr)
    assert n >= 2, f"expected several steps, got {n}\n{show(done)}"
    entries = journal(db)[base_journal:]
    assert [e[3] for e in entries] == ["done"] * n, "one done journal row per step"
    points = _points(entries)
    launched = [p.job for p in points if p.what == "launch"]
    assert launched, f"the apply should launch a job\n{show(done)}"
    assert len(points) == 2 * n + len(launched)
    logs = launch_logs(_jobs(case, store))
    assert logs == {**base_logs, **{job: "1\n" for job in launched}}, f"each job launched once: {logs}"
    named = _named(db)
    assert "" not in named and set(launched) <= set(named) <= set(logs), f"job rows name their jobs: {named}"
    assert not duplicates(db)
    return Reference(n, points, launched, set(named), logs, dump_studio(db), objects(db), history(db))


@pytest.mark.parametrize("name", ["demo", "generated-30-step-6", "demo-changed"])
def test_kill_at_every_fault_point_then_rerun_converges(tmp_path: Path, name: str) -> None:
    case = _case(make_demo(tmp_path / "project"), name)
    ref = _reference(case)
    if name == "demo-changed":
        actions = {r[0] for r in query(case.root / "stores/reference.db", "SELECT action FROM ftctl_history")}
        assert {"replace", "update"} <= actions, f"the changed demo should replace and update rows: {actions}"

    def crash_then_rerun(point: Point) -> list[str]:
        return _crash_then_rerun(case, point, ref)

    with ThreadPoolExecutor(WORKERS) as pool:
        problems = [p for found in pool.map(crash_then_rerun, ref.points) for p in found]
    assert not problems, f"{len(problems)} problem(s) over {len(ref.points)} fault points:\n" + "\n".join(problems)


def _crash_then_rerun(case: Case, point: Point, ref: Reference) -> list[str]:
    k = point.k
    store = f"stores/kill-at-{k}.db"
    db = _start(case, store)
    jobs = _jobs(case, store)
    before_ids = studio_row_ids(db) if case.base else set()
    base_journal = len(journal(db)) if case.base else 0
    base_logs = launch_logs(jobs)
    problems: list[str] = []

    def check(ok: bool, what: Callable[[], str]) -> bool:
        if not ok:
            problems.append(f"{point}: {what()}")
        return ok

    killed = _apply(case, store, **{FAULT: str(k)})
    if not check(killed.returncode == -signal.SIGKILL, lambda: f"expected death by SIGKILL (-9)\n{show(killed)}"):
        return problems

    # What the kill left: whole steps only, and exactly the jobs launched before it.
    committed = sum(1 for p in ref.points[:k] if p.what == "commit")
    open_intent = int(point.what == "intent")
    entries = journal(db)[base_journal:]
    states = [e[3] for e in entries]
    check(states == ["done"] * committed + ["intent"] * open_intent,
          lambda: f"journal after the kill: {states}, expected {committed} done then {open_intent} open intent(s)")
    ops = [op.split(" ", 1) for e in entries if e[3] == "done" for op in e[4]["rows"]]
    rows = (before_ids | {row for op, row in ops if op == "insert"}) - {row for op, row in ops if op == "delete"}
    written = studio_row_ids(db)
    check(written == rows, lambda: f"Studio rows after the kill are not those of the committed steps: "
                                   f"extra {sorted(written - rows)}, missing {sorted(rows - written)}")
    started = {p.job: "1\n" for p in ref.points[:k] if p.what == "launch"}
    check(launch_logs(jobs) == {**base_logs, **started},
          lambda: f"jobs launched before the kill: {launch_logs(jobs)}, expected {started}")
    if point.what == "launch":
        check(point.job not in _named(db), lambda: f"the row already notes {point.job}: the kill came too late")

    rerun = _apply(case, store)
    if not check(rerun.returncode == 0, lambda: f"the re-run failed\n{show(rerun)}"):
        return problems
    if open_intent:
        check("abandoned 1 unfinished step(s)" in rerun.stdout, lambda: f"the re-run does not report the abandoned step\n{show(rerun)}")

    studio = dump_studio(db)
    for table, got in studio.items():
        want = ref.studio[table]
        check(got == want, lambda t=table, r=got, w=want: f"{t} differs from the reference:\n  got  {r}\n  want {w}")
    check(not duplicates(db), lambda: f"duplicate rows: {duplicates(db)}")
    check(objects(db) == ref.objects, lambda: f"ftctl_objects differ:\n  got  {objects(db)}\n  want {ref.objects}")
    got_history = history(db)
    check(got_history == ref.history,
          lambda: f"history differs: extra {got_history - ref.history}, missing {ref.history - got_history}")

    # Never launched twice; each job row names its job.
    check(launch_logs(jobs) == ref.logs, lambda: f"launches.log after the re-run: {launch_logs(jobs)}, want {ref.logs}")
    check(set(_named(db)) == ref.named, lambda: f"job rows' cml_job_id: {_named(db)}, want {sorted(ref.named)}")
    if point.what == "launch":  # the re-run adopts the job it finds running: it notes it, and launches nothing
        check(point.job not in rerun.stdout.rpartition("Applied:")[2], lambda: f"the re-run launched {point.job} again\n{show(rerun)}")
        noted = [(json.loads(b or "{}").get("cml_job_id") or "", json.loads(a or "{}").get("cml_job_id"))
                 for a, b in query(db, "SELECT after, before FROM ftctl_history WHERE action = 'update' "
                                       "AND serial = (SELECT MAX(serial) FROM ftctl_history)")]
        check(("", point.job) in noted, lambda: f"the re-run's history shows no update of cml_job_id to {point.job}: {noted}")

    states = [e[3] for e in journal(db)[base_journal:]]
    check(set(states) <= {"done", "abandoned"}, lambda: f"journal rows neither done nor abandoned: {states}")
    rerun_steps = steps_run(rerun.stderr)
    check(states.count("done") == committed + rerun_steps and states.count("abandoned") == open_intent,
          lambda: f"journal: {states.count('done')} done (want {committed} + {rerun_steps} of the re-run), "
                  f"{states.count('abandoned')} abandoned (want {open_intent})")
    check(rerun_steps >= ref.n - committed, lambda: f"the re-run ran {rerun_steps} steps, fewer than the {ref.n - committed} left")
    applies = [r[0] for r in query(db, "SELECT state FROM ftctl_applies")]
    check("failed" not in applies, lambda: f"an apply is recorded as failed: {applies}")

    again = plan(case.root, *case.paths, store=store, env=jobs_env(jobs))
    check(again.returncode == 0 and "No changes" in again.stdout, lambda: f"plan after the re-run is not empty\n{show(again)}")
    return problems


def test_kill_right_after_a_launch_is_adopted(tmp_path: Path) -> None:
    """Killed after the training job is launched but before its row notes it: the re-run adopts the
    running job (an update of `cml_job_id`), launches nothing, and the store equals the reference."""
    case = _case(make_demo(tmp_path / "project"), "demo")
    ref = _reference(case)
    [point] = [p for p in ref.points if p.what == "launch"]
    assert point.k == len(ref.points), "the training job is launched by the last step"
    store = "stores/killed.db"
    db, jobs = _start(case, store), _jobs(case, store)

    killed = _apply(case, store, **{FAULT: str(point.k)})

    assert killed.returncode == -signal.SIGKILL, show(killed)
    assert launch_logs(jobs) == {point.job: "1\n"}, "the job was launched before the kill"
    [(row_id, noted)] = query(db, "SELECT id, cml_job_id FROM fine_tuning_jobs")
    assert (noted or "") == "", "the kill came before the launch was noted in the row"
    assert [e[3] for e in journal(db)] == ["done"] * ref.n

    pending = plan(case.root, DEMO, store=store, env=jobs_env(jobs))
    assert pending.returncode == 2, show(pending)
    assert "~ FineTuningJob/demo-ticketing-lora" in pending.stdout and "launches job" not in pending.stdout, show(pending)

    rerun = _apply(case, store)

    assert rerun.returncode == 0, show(rerun)
    assert "launched" not in rerun.stdout, show(rerun)
    assert launch_logs(jobs) == {point.job: "1\n"}, "the re-run launched the job a second time"
    assert query(db, "SELECT cml_job_id FROM fine_tuning_jobs") == [(point.job,)]
    adopted = query(db, "SELECT kind, name, action, before, after FROM ftctl_history WHERE row_id = ? "
                        "AND serial = (SELECT MAX(serial) FROM ftctl_history)", (row_id,))
    assert [(kind, name, action, json.loads(before)["cml_job_id"] or "", json.loads(after)["cml_job_id"])
            for kind, name, action, before, after in adopted] == [
        ("FineTuningJob", "demo-ticketing-lora", "update", "", point.job)], "the re-run notes the job it adopted"
    assert dump_studio(db) == ref.studio
    assert objects(db) == ref.objects
    assert history(db) == ref.history
    again = plan(case.root, DEMO, store=store, env=jobs_env(jobs))
    assert again.returncode == 0 and "No changes" in again.stdout, show(again)
