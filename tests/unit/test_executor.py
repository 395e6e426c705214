"""Carrying out a plan (`executor.apply_plan`) on a real SQLite store in tmp_path, with the fake
backend (jobs recorded in their folders, nothing run): what a plan built here from manifests writes
(Studio rows, ftctl's records, one journal entry per step, the apply's record, each launch noted in
its row), that applying again changes nothing and launches nothing, that an apply interrupted
between two launches is finished by the next one without launching anything twice, and that a plan
the store moved away from is refused with the objects that moved."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends import BackendError
from reconciler.desired import PlanFacts
from reconciler.engine import Backends, identified, job_settings, observe_jobs, store_backends, store_jobs
from reconciler.executor import StalePlanError, apply_plan, plan_steps
from reconciler.graph import build_graph
from reconciler.manifests.loader import Manifest
from reconciler.plan import Action, Consequence, Plan, Policy
from reconciler.planner import build_plan
from reconciler.runtime import JobObservation
from reconciler.store.write import StoreWriter
from tests.unit.planning import INPUTS, SEED, load_manifests

STUDIO_TABLES = ("models", "datasets", "prompts", "configs", "adapters", "fine_tuning_jobs", "evaluation_jobs")
ENV = {"FTCTL_BACKEND": "fake"}
PROJECT = INPUTS + """\
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: first}
spec: {base_model: m, dataset: d, prompt: p}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: second}
spec: {base_model: m, dataset: d, prompt: p, learning_rate: 0.001}
"""


@dataclass
class Project:
    root: Path
    store: Path
    manifests: list[Manifest]
    writer: StoreWriter

    def plan(self) -> Plan:
        """The plan of the manifests against the store as it is, jobs observed where they run (as `ftctl plan` makes it)."""
        snapshot = identified(self.writer.snapshot(), SEED)
        observations = observe_jobs(snapshot, self.backends(snapshot.store_id))
        facts = PlanFacts(root=str(self.root), jobs=store_jobs(job_settings(ENV), snapshot.store_id), observations=observations)
        return build_plan(self.manifests, snapshot, policy=Policy(), facts=facts, seed=SEED, graph=build_graph(self.manifests))

    def backends(self, store_id: str) -> Backends:
        return store_backends(store_id, ENV, str(self.root))

    def rows(self, table: str) -> dict[str, dict[str, Any]]:
        with sqlite3.connect(self.store) as conn:
            conn.row_factory = sqlite3.Row
            return {str(r["id"]): dict(r) for r in conn.execute(f"SELECT * FROM {table}")}

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.store) as conn:
            return list(conn.execute(sql))

    def launches(self) -> dict[str, list[str]]:
        """Job folder name -> the attempts the fake backend started, one per launch."""
        logs = sorted((self.root / ".app" / "jobs").glob("*/*/launches.log"))
        return {log.parent.name: log.read_text(encoding="utf-8").split() for log in logs}


@dataclass
class Launcher:
    """The store's backends, as apply gets them; `fail_at`: the backend raises at that launch (1-based), once."""

    backends: Backends
    fail_at: int | None = None
    started: list[str] = field(default_factory=list)

    def launch(self, job_name: str, kind: str, job_input: dict[str, Any], *, attempt: int = 1, backend: str = "local") -> JobObservation:
        if len(self.started) + 1 == self.fail_at:
            self.fail_at = None
            raise BackendError(f"{job_name}: the backend went away")
        observed = self.backends.launch(job_name, kind, job_input, attempt=attempt, backend=backend)
        self.started.append(job_name)
        return observed

    def refusal(self, job_name: str, kind: str, job_input: dict[str, Any], *, backend: str = "local") -> str | None:
        return self.backends.refusal(job_name, kind, job_input, backend=backend)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "project"
    root.mkdir()
    manifests = load_manifests(root, PROJECT)
    store = root / "studio.db"
    writer = StoreWriter(str(store))
    try:
        yield Project(root, store, manifests, writer)
    finally:
        writer.close()


def _apply(project: Project, plan: Plan, launcher: Launcher | None = None) -> Launcher:
    launcher = launcher or Launcher(project.backends(plan.store_id))
    apply_plan(plan, project.writer, actor="unit", lock_wait_s=1.0, launcher=launcher)
    return launcher


def _effective(plan: Plan) -> list[str]:
    return [f"{c.action.value} {c.address}" for step in plan_steps(plan) for c in step]


def test_an_apply_writes_the_plans_rows_records_journal_and_launch_notes(project: Project) -> None:
    plan = project.plan()
    launcher = _apply(project, plan)
    inserted = {(op.table, op.row_id) for c in plan.changes for op in c.ops if op.op == "insert"}
    assert {(t, rid) for t in STUDIO_TABLES for rid in project.rows(t)} == inserted
    objects = project.query("SELECT kind, name, store_id, generation, origin, backend FROM ftctl_objects ORDER BY kind, name")
    assert objects == sorted((c.kind, c.name, c.record.store_id, 1, "created", c.record.backend or None)
                             for c in plan.changes if c.record is not None)
    steps = list(plan_steps(plan))
    journal = project.query("SELECT step, state, intent FROM ftctl_journal ORDER BY seq")
    assert [(step, state) for step, state, _ in journal] == [(n, "done") for n in range(1, len(steps) + 1)]
    intents = [json.loads(intent) for _, _, intent in journal]
    assert [sorted(i["changes"]) for i in intents] == [sorted(f"create {c.address}" for c in step) for step in steps]
    assert project.query("SELECT state FROM ftctl_applies") == [("done",)]
    launched = {launch.job_name: launch.row for c in plan.changes for launch in c.launches}
    assert sorted(launcher.started) == sorted(launched) and len(launched) == 2
    jobs = project.rows("fine_tuning_jobs")
    assert {name: f"fine_tuning_jobs/{rid}" for rid, row in jobs.items() for name in [row["cml_job_id"]]} == launched, \
        "each training's row records the job the fake backend started (its name, on the local backend)"
    assert sorted(project.launches().values()) == [["1"], ["1"]]


def test_applying_again_changes_nothing_and_launches_nothing(project: Project) -> None:
    _apply(project, project.plan())
    before = {t: project.rows(t) for t in STUDIO_TABLES}
    records = project.query("SELECT * FROM ftctl_objects ORDER BY kind, name")
    again = project.plan()
    assert _effective(again) == [] and all(c.action is Action.NOOP for c in again.changes)
    assert {c.name: c.jobs[0].state.value for c in again.changes if c.jobs} == {"first": "running", "second": "running"}
    launcher = _apply(project, again)
    assert launcher.started == [] and sorted(project.launches().values()) == [["1"], ["1"]]
    assert {t: project.rows(t) for t in STUDIO_TABLES} == before
    assert project.query("SELECT * FROM ftctl_objects ORDER BY kind, name") == records


def test_an_apply_interrupted_between_launches_is_finished_by_the_next(project: Project) -> None:
    """The backend fails at the second launch: the step's rows are committed, the first job runs but
    its row does not record it yet. The next plan records it and launches the other; nothing twice."""
    plan = project.plan()
    with pytest.raises(BackendError, match="went away"):
        _apply(project, plan, Launcher(project.backends(plan.store_id), fail_at=2))
    assert project.query("SELECT state FROM ftctl_applies") == [("failed",)]
    jobs = project.rows("fine_tuning_jobs")
    assert len(jobs) == 2 and {row["cml_job_id"] or "" for row in jobs.values()} == {""}, "committed, launches not noted yet"
    [(running, attempts)] = project.launches().items()
    assert attempts == ["1"]

    resumed = project.plan()
    by_name = {c.name: c for c in resumed.changes}
    started = next(name for name, c in by_name.items() if c.kind == "FineTuningJob" and not c.launches)
    other = "second" if started == "first" else "first"
    noted = by_name[started]
    assert (noted.action, noted.consequence, noted.reason) == (Action.UPDATE, Consequence.NONE, "record the job's launch (running)")
    assert [(op.table, op.op, op.values) for op in noted.ops] == [("fine_tuning_jobs", "update", {"cml_job_id": running})]
    assert (by_name[other].consequence, len(by_name[other].launches)) == (Consequence.LAUNCH, 1)
    assert sorted(_effective(resumed)) == ["update FineTuningJob/first", "update FineTuningJob/second"]

    launcher = _apply(project, resumed)
    assert launcher.started == [by_name[other].launches[0].job_name]
    assert sorted(project.launches().values()) == [["1"], ["1"]], "no job launched twice"
    assert {row["cml_job_id"] for row in project.rows("fine_tuning_jobs").values()} == set(project.launches())
    assert _effective(project.plan()) == []


def test_a_plan_the_store_moved_away_from_is_refused_naming_the_object(project: Project) -> None:
    _apply(project, project.plan())
    plan = project.plan()
    [model_id] = project.rows("models")
    with sqlite3.connect(project.store) as conn:  # the Studio edits the model meanwhile
        conn.execute("UPDATE models SET description = 'edited in the Studio' WHERE id = ?", (model_id,))
    journal = project.query("SELECT count(*) FROM ftctl_journal")
    with pytest.raises(StalePlanError) as refused:
        _apply(project, plan)
    assert refused.value.changed == [f"Model 'm' (models/{model_id}): changed"]
    assert "m" in str(refused.value) and "Run `ftctl plan` again" in str(refused.value)
    assert project.query("SELECT count(*) FROM ftctl_journal") == journal, "nothing written"
    assert project.query("SELECT state FROM ftctl_applies") == [("done",)]


def test_a_plan_made_before_another_apply_is_refused(project: Project) -> None:
    early, late = project.plan(), project.plan()
    _apply(project, early)
    with pytest.raises(StalePlanError) as refused:
        _apply(project, late)
    assert any(line.startswith("Model 'm' (models/") and line.endswith(": added") for line in refused.value.changed)
    assert "FineTuningJob/first (ftctl record): added" in refused.value.changed
