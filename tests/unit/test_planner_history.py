"""History columns across generations (issue 14): what a job's run fills in its Studio row
(`Binding.history_columns`: the CML job, the results folder, the registered adapter) is written
from a manifest only for the run the manifest records, never copied into a new generation ftctl
runs, and never compared as drift once ftctl launched that generation.

build_plan over values: manifests loaded from text, the store as rows laid down in the test, each
plan applied as values (its row ops, records and launch notes: tests/unit/planning.py), no store
or backend.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.kinds import BINDINGS
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.plan import Action, Plan
from reconciler.runtime import JobObservation, JobState
from tests.unit.planning import INPUTS, applied, change_of, load_manifests, plan_of

EVALUATION = """\
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata:
  name: e
  annotations: {ftctl.io/store-id: studio-eval}
spec:
  dataset: d
  prompt: p
  resources: {cpu: %(cpu)d}
  combinations: [{model: m, store_id: studio-row%(run)s}]
"""
STUDIO_RUN = ", cml_job_id: studio-cml-1, evaluation_dir: studio/evals/1"
EVALUATIONS = BINDINGS["EvaluationJob"]


def _plan(manifests: list[Manifest], snapshot: Snapshot, observations: dict[str, JobObservation] | None = None) -> Plan:
    root = manifests[0].base_dir if manifests else ""  # the project root: a manifest's studio/evals/1 is stored as the Studio has it
    return plan_of(manifests, snapshot, observations, root=root)


def _studio_store(tmp_path: Path) -> Snapshot:
    """Model, dataset and prompt applied by ftctl, and an evaluation the Studio ran (not managed)."""
    snapshot = applied(Snapshot(), _plan(load_manifests(tmp_path, INPUTS), Snapshot()))
    ids = {r.kind: r.store_id for r in snapshot.managed.values()}
    row = {"id": "studio-row", "type": "mlflow", "cml_job_id": "studio-cml-1", "parent_job_id": "studio-eval",
           "base_model_id": ids["Model"], "dataset_id": ids["Dataset"], "prompt_id": ids["Prompt"], "num_workers": None,
           "adapter_id": "", "num_cpu": 2, "num_gpu": None, "num_memory": None, "evaluation_dir": "studio/evals/1",
           "model_bnb_config": None, "adapter_bnb_config": None, "generation_config": None}
    return Snapshot(rows={**snapshot.rows, EVALUATIONS.table: {"studio-row": row}}, managed=snapshot.managed)


def test_an_adopted_run_keeps_its_history_and_a_rerun_ftctl_launches_starts_without_it(tmp_path: Path) -> None:
    store = _studio_store(tmp_path)
    adopted = load_manifests(tmp_path, INPUTS + EVALUATION % {"cpu": 2, "run": STUDIO_RUN})
    first = _plan(adopted, store)
    assert not change_of(first, "EvaluationJob/e").launches  # the Studio's run is history: nothing runs
    store = applied(store, first)
    assert EVALUATIONS.run_of(store.rows[EVALUATIONS.table]["studio-row"]) == "studio-cml-1"
    assert change_of(_plan(adopted, store), "EvaluationJob/e").action is Action.NOOP

    # The manifest no longer records the run (its cml_job_id is gone; evaluation_dir stays) and asks
    # for more CPU: a new generation ftctl runs, whose row carries none of the old run's columns.
    rerun = load_manifests(tmp_path, INPUTS + EVALUATION % {"cpu": 4, "run": ", evaluation_dir: studio/evals/1"})
    second = _plan(rerun, store)
    change = change_of(second, "EvaluationJob/e")
    assert change.action is Action.REPLACE and change.launches
    [insert] = [op for op in change.ops if op.op == "insert"]
    assert not set(EVALUATIONS.history_columns) & set(insert.values), insert.values
    assert insert.row_id != "studio-row"
    store = applied(store, second)
    noted = store.rows[EVALUATIONS.table][insert.row_id]
    assert EVALUATIONS.run_of(noted) == change.launches[0].job_name  # its own launch filled them
    assert noted[EVALUATIONS.results_column] != "studio/evals/1"

    # The next plan follows ftctl's run: no drift on the columns its launch wrote, nothing re-run.
    running = {change.launches[0].job_name: JobObservation(change.launches[0].job_name, JobState.RUNNING)}
    third = change_of(_plan(rerun, store, running), "EvaluationJob/e")
    assert third.action is Action.NOOP and not third.drift and not third.fields and not third.ops and not third.launches


def test_a_manifest_that_records_its_run_stays_history_in_a_new_generation(tmp_path: Path) -> None:
    store = _studio_store(tmp_path)
    store = applied(store, _plan(load_manifests(tmp_path, INPUTS + EVALUATION % {"cpu": 2, "run": STUDIO_RUN}), store))
    changed = load_manifests(tmp_path, INPUTS + EVALUATION % {"cpu": 4, "run": STUDIO_RUN})
    plan = _plan(changed, store)
    change = change_of(plan, "EvaluationJob/e")
    assert not change.launches  # the run it records is history, whatever else changed
    store = applied(store, plan)
    assert change_of(_plan(changed, store), "EvaluationJob/e").action is Action.NOOP
