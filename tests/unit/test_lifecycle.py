"""Jobs' lifecycle over values: `lifecycle.advance` given a job's manifest, its desired rows, its
record and what its backend reports, and the next step it adds to the change: launch, wait, retry
at attempt + 1, register the produced adapter (retiring the previous version's name), hold an export
at its gate or pass it, never run adopted history again; with the consequence codes and row ops.

The values are built here: manifests loaded from text, the store's rows as the first plan writes
them (tests/unit/planning.py's `applied`: its inserts, its launches noted as the executor notes
them), desired rows rendered against them, and a `JobContext` over the observations each case makes up. No store, no
backend, no mocks of our modules."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired import Desired, PlanFacts, Scope, render
from reconciler.history import IMPORTED
from reconciler.jobinput import JobSettings
from reconciler.lifecycle import JobContext, advance, gate_verdict, launch_note
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import ModelExport
from reconciler.plan import Action, Change, Consequence, Launch, Plan, Record
from reconciler.planner import new_id
from reconciler.runtime import JobObservation, JobState
from tests.unit.planning import INPUTS, SEED, applied, load_manifests, plan_of

PROJECT = INPUTS + """\
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: j}
spec: {base_model: m, dataset: d, prompt: p, retries: %(retries)d%(training)s}
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: e}
spec:
  dataset: d
  prompt: p
  retries: %(retries)d
  combinations: [{model: m}, {model: m, adapter: j}]
---
apiVersion: ftctl/v1
kind: ModelExport
metadata: {name: x}
spec: {base_model: m, adapter: j, gate: {evaluation: e, metric: rougeL, min: 0.2}}
"""


# -- the values ----------------------------------------------------------------------------------


def _manifests(tmp_path: Path, *, retries: int = 1, training: str = "") -> dict[str, Manifest]:
    """The project's manifests by name; `training`: more of the training's spec (", key: value")."""
    return {m.name: m for m in load_manifests(tmp_path, PROJECT % {"retries": retries, "training": training})}


def _plan(manifests: dict[str, Manifest], snapshot: Snapshot, observations: dict[str, JobObservation] | None = None) -> Plan:
    return plan_of(list(manifests.values()), snapshot, observations)


def _context(snapshot: Snapshot, *observations: JobObservation) -> JobContext:
    return JobContext(snapshot, JobSettings(), {o.job_name: o for o in observations},
                      lambda table, row_id: snapshot.row(table, str(row_id)) if row_id else None,
                      lambda *parts: new_id(SEED, *parts), dict(snapshot.managed))


def _desired(manifest: Manifest, snapshot: Snapshot, own_id: str) -> Desired:
    ids = {key: record.store_id for key, record in snapshot.managed.items()}
    scope = Scope(ids, snapshot, PlanFacts(), configs={}, models={}, producers={"j": "j"})
    return render(manifest, scope, own_id=own_id)


def _steady(manifests: dict[str, Manifest], snapshot: Snapshot, name: str, *observations: JobObservation,
            record: ManagedRecord | None = None) -> Change:
    """advance() on a managed job whose rows are in sync (the planner's 'in sync' change)."""
    manifest = manifests[name]
    record = record or snapshot.managed[(manifest.kind, name)]
    change = Change(manifest.kind, name, Action.NOOP, "in sync", wave=3)
    return advance(manifest, _desired(manifest, snapshot, record.store_id), record, change, _context(snapshot, *observations))


def _launched(snapshot: Snapshot, name: str, kind: str = "FineTuningJob") -> tuple[ManagedRecord, list[str]]:
    """The job's record and the job names its rows record (`cml_job_id`)."""
    record = snapshot.managed[(kind, name)]
    return record, [str(snapshot.rows[record.store_table][rid]["cml_job_id"]) for rid in record.row_ids]


@pytest.fixture
def project(tmp_path: Path) -> tuple[dict[str, Manifest], Snapshot, str]:
    """The manifests (retries 1), the store after the first apply (the training launched, the
    evaluation and the export waiting for its adapter), and the training's job name."""
    manifests = _manifests(tmp_path)
    first = _plan(manifests, Snapshot())
    [train] = [c for c in first.changes if c.kind == "FineTuningJob"]
    [launch] = train.launches
    return manifests, applied(Snapshot(), first), launch.job_name


def _trained(manifests: dict[str, Manifest], snapshot: Snapshot, job_name: str, **artifacts: Any) -> Snapshot:
    """The store once the training succeeded and the next plan registered its adapter."""
    done = JobObservation(job_name, JobState.SUCCEEDED, 1, metrics={"train_loss": 1.0},
                          artifacts={"adapter_dir": f".app/jobs/{job_name}/adapter", **artifacts})
    return applied(snapshot, _plan(manifests, snapshot, {job_name: done}))


# -- a fresh job ---------------------------------------------------------------------------------


def test_a_new_training_is_created_with_its_launch_at_attempt_1(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path)
    changes = {c.name: c for c in _plan(manifests, Snapshot()).changes}
    train = changes["j"]
    assert (train.action, train.consequence) == (Action.CREATE, Consequence.NONE)
    [launch] = train.launches
    assert (launch.kind, launch.attempt, launch.backend) == ("train", 1, "local")
    assert train.record is not None and launch.row == f"fine_tuning_jobs/{train.record.store_id}"
    assert train.record.backend == "local", "the record says where its jobs run"
    assert launch.input["job_name"] == launch.job_name and launch.input["kind"] == "train"
    for waiting in ("e", "x"):  # they use the adapter the training has not produced yet
        change = changes[waiting]
        assert (change.consequence, change.waits_for, change.launches, change.ops) == (
            Consequence.WAIT, ("FineTuningJob/j",), (), ())


def test_the_manifests_backend_is_where_a_new_generation_runs(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, training=", backend: cml")
    train = next(c for c in _plan(manifests, Snapshot()).changes if c.name == "j")
    assert [launch.backend for launch in train.launches] == ["cml"]
    assert train.record is not None and train.record.backend == "cml"


# -- a training's states -------------------------------------------------------------------------

FAILURES = ["transient", "killed", "config", "data", "resources", "internal", "cancelled", "input_mismatch"]


@pytest.mark.parametrize(("state", "attempt", "error_class", "retries_left"), [
    (JobState.QUEUED, 1, "", True),
    (JobState.RUNNING, 1, "", True),
    *[(JobState.FAILED, 1, error, True) for error in FAILURES],
    *[(JobState.FAILED, 2, error, False) for error in FAILURES],
])
def test_a_launched_training_waits_retries_or_stops(project: tuple[dict[str, Manifest], Snapshot, str], state: JobState,
                                                    attempt: int, error_class: str, retries_left: bool) -> None:
    manifests, snapshot, name = project
    obs = JobObservation(name, state, attempt, error_class, f"it {error_class or state.value}")
    change = _steady(manifests, snapshot, "j", obs)
    retried = state is JobState.FAILED and error_class in ("transient", "killed") and retries_left
    if retried:
        [launch] = change.launches
        assert (launch.job_name, launch.attempt, launch.kind) == (name, attempt + 1, "train")
        assert (change.action, change.consequence) == (Action.UPDATE, Consequence.RETRY)
        assert change.reason.startswith(f"relaunch (attempt {attempt + 1} of 2) after failed ({error_class})")
    else:
        assert (change.action, change.consequence, change.launches) == (Action.NOOP, Consequence.NONE, ())
        assert change.reason == obs.summary()
    assert change.ops == (), "nothing to write while the job runs or failed"
    [job] = change.jobs
    assert (job.job_name, job.state, job.attempt, job.error_class) == (name, state, attempt, error_class)


def test_a_training_never_launched_is_launched(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    """Its row is there (an apply wrote it) but its backend knows no job: launch attempt 1."""
    manifests, snapshot, name = project
    change = _steady(manifests, snapshot, "j")
    assert (change.action, change.consequence, change.reason) == (Action.UPDATE, Consequence.LAUNCH, "launch the job")
    assert [(launch.job_name, launch.attempt) for launch in change.launches] == [(name, 1)]
    assert change.jobs[0].state is JobState.NOT_LAUNCHED


def test_a_success_registers_the_adapter_it_produced(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    manifests, snapshot, name = project
    record, _ = _launched(snapshot, "j")
    done = JobObservation(name, JobState.SUCCEEDED, 1, metrics={"train_loss": 0.5},
                          artifacts={"adapter_dir": "data/adapters/j", "mlflow_run_id": "run-1", "mlflow_experiment_id": "7"})
    change = _steady(manifests, snapshot, "j", done)
    assert (change.action, change.consequence, change.launches) == (Action.UPDATE, Consequence.REGISTER, ())
    [insert] = change.ops
    assert (insert.table, insert.op, insert.row_id) == ("adapters", "insert", new_id(SEED, "adapter", "j", 1))
    job_row = snapshot.rows["fine_tuning_jobs"][record.store_id]
    assert insert.values | {"description": ""} == {
        "id": insert.row_id, "type": "project", "name": "j", "description": "", "huggingface_name": "",
        "model_id": job_row["base_model_id"], "location": "data/adapters/j", "fine_tuning_job_id": record.store_id,
        "prompt_id": job_row["prompt_id"], "cml_registered_model_id": "", "mlflow_experiment_id": "7",
        "mlflow_run_id": "run-1"}
    assert "FineTuningJob/j" in str(insert.values["description"])


def test_a_registered_adapter_is_not_registered_again(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    manifests, snapshot, name = project
    trained = _trained(manifests, snapshot, name)
    done = JobObservation(name, JobState.SUCCEEDED, 1, artifacts={"adapter_dir": "x"})
    change = _steady(manifests, trained, "j", done)
    assert (change.action, change.consequence, change.ops, change.launches) == (Action.NOOP, Consequence.NONE, (), ())
    assert change.reason == "succeeded; adapter j registered"


def test_a_new_generation_retires_the_previous_adapters_name(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    """Generation 2 succeeded: generation 1's training row and the adapter it registered, which kept
    the name while generation 2 ran, keep their rows, both renamed j-g1, in the step that registers
    the new one under the name (the Studio joins a training to its adapter by that name)."""
    manifests, snapshot, name = project
    trained = _trained(manifests, snapshot, name)
    old = trained.managed[("FineTuningJob", "j")]
    [old_adapter] = trained.rows["adapters"].values()
    gen2_id, gen2_name = new_id(SEED, "FineTuningJob", "j", 2), name.replace("-g1-", "-g2-")
    gen2_row = {**trained.rows["fine_tuning_jobs"][old.store_id], "id": gen2_id, "cml_job_id": gen2_name}
    rows = {**trained.rows, "fine_tuning_jobs": {**trained.rows["fine_tuning_jobs"], gen2_id: gen2_row}}
    gen2 = replace(old, store_id=gen2_id, row_ids=(gen2_id,), generation=2)
    snapshot2 = Snapshot(rows=rows, managed={**trained.managed, ("FineTuningJob", "j"): gen2})
    done = JobObservation(gen2_name, JobState.SUCCEEDED, 1, artifacts={"adapter_dir": "a2"})
    observed = _steady(manifests, snapshot2, "j", done)
    assert observed.consequence is Consequence.REGISTER
    rename_job, rename_adapter, insert = observed.ops
    assert (rename_job.table, rename_job.op, rename_job.row_id, rename_job.values) == (
        "fine_tuning_jobs", "update", old.store_id, {"adapter_name": "j-g1"})
    assert (rename_adapter.table, rename_adapter.op, rename_adapter.row_id, rename_adapter.values) == (
        "adapters", "update", old_adapter["id"], {"name": "j-g1"})
    assert (insert.op, insert.values["name"], insert.values["fine_tuning_job_id"]) == ("insert", "j", gen2_id)
    assert insert.row_id == new_id(SEED, "adapter", "j", 2) != old_adapter["id"]


def test_a_launch_a_crashed_apply_did_not_note_is_recorded(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    """The job runs under its name but its row records no job (the apply died between launching and
    noting it): the plan writes its cml_job_id and launches nothing."""
    manifests, snapshot, name = project
    record, _ = _launched(snapshot, "j")
    rows = {**snapshot.rows, "fine_tuning_jobs": {record.store_id: {**snapshot.rows["fine_tuning_jobs"][record.store_id], "cml_job_id": ""}}}
    bare = Snapshot(rows=rows, managed=snapshot.managed)
    change = _steady(manifests, bare, "j", JobObservation(name, JobState.RUNNING, 1))
    assert change.launches == () and change.reason == "record the job's launch (running)"
    assert [(op.table, op.op, op.row_id, op.values) for op in change.ops] == [
        ("fine_tuning_jobs", "update", record.store_id, {"cml_job_id": name})]


def test_on_cml_the_row_records_the_cml_jobs_id_and_is_followed_by_it(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    manifests, snapshot, name = project
    record, _ = _launched(snapshot, "j")
    running = JobObservation(name, JobState.RUNNING, 1, job_id="cml-job-42")
    noted = _steady(manifests, snapshot, "j", running)  # the row holds the job's name: the CML id is written
    assert [op.values for op in noted.ops] == [{"cml_job_id": "cml-job-42"}] and noted.launches == ()
    rows = {**snapshot.rows, "fine_tuning_jobs": {record.store_id: {**snapshot.rows["fine_tuning_jobs"][record.store_id],
                                                                    "cml_job_id": "cml-job-42"}}}
    change = _steady(manifests, Snapshot(rows=rows, managed=snapshot.managed), "j", running)
    assert (change.action, change.ops, change.launches) == (Action.NOOP, (), ())
    assert change.jobs[0].state is JobState.RUNNING


def test_a_job_its_row_records_is_followed_after_an_in_place_change(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    """The row records a job of this generation that ran an earlier input (a token's name changed
    since, say): it is that job the plan follows; nothing runs again."""
    manifests, snapshot, name = project
    record, _ = _launched(snapshot, "j")
    earlier = name[: name.rfind("-") + 1] + "0123abcd"
    rows = {**snapshot.rows, "fine_tuning_jobs": {record.store_id: {**snapshot.rows["fine_tuning_jobs"][record.store_id],
                                                                    "cml_job_id": earlier}}}
    change = _steady(manifests, Snapshot(rows=rows, managed=snapshot.managed), "j", JobObservation(earlier, JobState.RUNNING, 1))
    assert (change.action, change.launches, change.ops) == (Action.NOOP, (), ())
    assert [job.job_name for job in change.jobs] == [earlier]


def test_a_job_of_another_input_is_named_and_not_adopted(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    """A job of this generation ran another input and the row does not record it: launched anew, and the plan says so."""
    manifests, snapshot, name = project
    record, _ = _launched(snapshot, "j")
    other = name[: name.rfind("-") + 1] + "0123abcd"
    rows = {**snapshot.rows, "fine_tuning_jobs": {record.store_id: {**snapshot.rows["fine_tuning_jobs"][record.store_id], "cml_job_id": ""}}}
    change = _steady(manifests, Snapshot(rows=rows, managed=snapshot.managed), "j", JobObservation(other, JobState.SUCCEEDED, 1))
    assert change.consequence is Consequence.LAUNCH and [launch.job_name for launch in change.launches] == [name]
    assert change.reason == f"launch the job (not adopting {other}: it ran another input)"


def test_adopted_history_is_never_launched(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    """A job `ftctl import` adopted ran in the Studio: whatever its backend says of ftctl's name for
    it (never launched, failed), nothing runs and nothing is registered."""
    manifests, snapshot, name = project
    record, _ = _launched(snapshot, "j")
    rows = {**snapshot.rows, "fine_tuning_jobs": {record.store_id: {**snapshot.rows["fine_tuning_jobs"][record.store_id],
                                                                    "cml_job_id": "studio-cml-7"}}}
    imported = Snapshot(rows=rows, managed={**snapshot.managed, ("FineTuningJob", "j"): replace(record, origin=IMPORTED)})
    for observations in ((), (JobObservation(name, JobState.FAILED, 1, "transient"),),
                         (JobObservation(name, JobState.SUCCEEDED, 1, artifacts={"adapter_dir": "a"}),)):
        change = _steady(manifests, imported, "j", *observations)
        assert (change.action, change.launches, change.ops) == (Action.NOOP, (), ())
        assert "adopted history" in change.reason and "studio-cml-7" in change.reason


def test_a_manifest_that_records_its_run_is_history_in_an_empty_store(tmp_path: Path) -> None:
    """An imported training applied into an empty store (its manifest names the Studio's run): its
    row is written as it was, and nothing runs."""
    manifests = _manifests(tmp_path, training=", cml_job_id: studio-cml-7")
    train = next(c for c in _plan(manifests, Snapshot()).changes if c.name == "j")
    assert (train.action, train.launches) == (Action.CREATE, ())
    [insert] = train.ops
    assert insert.values["cml_job_id"] == "studio-cml-7" and "adopted history" in train.reason


@pytest.mark.parametrize("action", [Action.DELETE, Action.UPDATE])
def test_a_deletion_or_a_wait_is_left_as_it_is(project: tuple[dict[str, Manifest], Snapshot, str], action: Action) -> None:
    manifests, snapshot, _ = project
    record = snapshot.managed[("FineTuningJob", "j")]
    waits = () if action is Action.DELETE else ("FineTuningJob/other",)
    change = Change("FineTuningJob", "j", action, "as planned", Consequence.WAIT if waits else Consequence.NONE, waits_for=waits)
    assert advance(manifests["j"], _desired(manifests["j"], snapshot, record.store_id), record, change, _context(snapshot)) == change


# -- an evaluation's fan-out ---------------------------------------------------------------------


@pytest.fixture
def evaluating(project: tuple[dict[str, Manifest], Snapshot, str]) -> tuple[dict[str, Manifest], Snapshot, list[str]]:
    """The store once the adapter is registered and the evaluation's two rows are written and launched."""
    manifests, snapshot, name = project
    trained = _trained(manifests, snapshot, name)
    plan = _plan(manifests, trained, {name: JobObservation(name, JobState.SUCCEEDED, 1, artifacts={"adapter_dir": "a"})})
    evaluation = next(c for c in plan.changes if c.name == "e")
    assert (evaluation.action, len(evaluation.launches)) == (Action.CREATE, 2)
    store = applied(trained, plan)
    _, names = _launched(store, "e", "EvaluationJob")
    return manifests, store, names


def _evaluation(manifests: dict[str, Manifest], snapshot: Snapshot, *observations: JobObservation) -> Change:
    return _steady(manifests, snapshot, "e", *observations)


def test_each_row_of_an_evaluation_records_its_own_job_and_folder(evaluating: tuple[dict[str, Manifest], Snapshot, list[str]]) -> None:
    _, snapshot, names = evaluating
    record = snapshot.managed[("EvaluationJob", "e")]
    assert len(set(names)) == 2
    for row_id, name in zip(record.row_ids, names):
        row = snapshot.rows["evaluation_jobs"][row_id]
        assert row["evaluation_dir"] == JobSettings().evaluation_dir(name)


@pytest.mark.parametrize(("states", "relaunched"), [
    (((JobState.NOT_LAUNCHED, 0, ""), (JobState.NOT_LAUNCHED, 0, "")), [(0, 1), (1, 1)]),
    (((JobState.SUCCEEDED, 1, ""), (JobState.NOT_LAUNCHED, 0, "")), [(1, 1)]),
    (((JobState.RUNNING, 1, ""), (JobState.FAILED, 1, "killed")), [(1, 2)]),
    (((JobState.FAILED, 2, "transient"), (JobState.FAILED, 1, "transient")), [(1, 2)]),  # the first spent its retry
    (((JobState.SUCCEEDED, 1, ""), (JobState.FAILED, 1, "data")), []),
    (((JobState.SUCCEEDED, 1, ""), (JobState.RUNNING, 1, "")), []),
])
def test_an_evaluation_launches_or_retries_each_row_on_its_own(
        evaluating: tuple[dict[str, Manifest], Snapshot, list[str]],
        states: tuple[tuple[JobState, int, str], ...], relaunched: list[tuple[int, int]]) -> None:
    manifests, snapshot, names = evaluating
    observations = [JobObservation(name, state, attempt, error, "boom", metrics={"rougeL": 0.5} if state is JobState.SUCCEEDED else {})
                    for name, (state, attempt, error) in zip(names, states) if state is not JobState.NOT_LAUNCHED]
    change = _evaluation(manifests, snapshot, *observations)
    assert [(launch.job_name, launch.attempt) for launch in change.launches] == [(names[i], a) for i, a in relaunched]
    assert all(launch.kind == "evaluate" for launch in change.launches)
    assert [job.state for job in change.jobs] == [state for state, _, _ in states]
    assert change.ops == ()
    if relaunched:
        assert (change.action, change.consequence) == (Action.UPDATE, Consequence.LAUNCH)
    else:
        assert (change.action, change.consequence) == (Action.NOOP, Consequence.NONE)


# -- an export and its gate ----------------------------------------------------------------------


def _export_change(snapshot: Snapshot) -> Change:
    record = Record("", new_id(SEED, "ModelExport", "x", 1), (), "fp", "", 1, "created")
    return Change("ModelExport", "x", Action.CREATE, "new in the manifests", wave=4, record=record)


@pytest.mark.parametrize(("observed", "verdict", "consequence", "why"), [
    (None, None, Consequence.WAIT, "gate: EvaluationJob/e is not launched"),
    ((JobState.RUNNING, {}, ""), None, Consequence.WAIT, "gate: EvaluationJob/e is running"),
    ((JobState.FAILED, {}, "boom"), None, Consequence.WAIT, "gate: EvaluationJob/e is failed (config): boom"),
    ((JobState.SUCCEEDED, {}, "its result is on CML"), None, Consequence.WAIT, "gate: EvaluationJob/e its result is on CML"),
    ((JobState.SUCCEEDED, {"rougeL": 0.1}, ""), False, Consequence.GATED, "gate closed: rougeL 0.1 < min 0.2 (EvaluationJob/e)"),
    ((JobState.SUCCEEDED, {"exact_match": 1.0}, ""), False, Consequence.GATED,
     "gate closed: EvaluationJob/e reported no metric 'rougeL'"),
    ((JobState.SUCCEEDED, {"rougeL": 0.5}, ""), True, Consequence.NONE, "gate open: rougeL 0.5 (EvaluationJob/e)"),
])
def test_an_export_is_held_or_passed_by_its_gate(evaluating: tuple[dict[str, Manifest], Snapshot, list[str]],
                                                 observed: tuple[JobState, dict[str, float], str] | None, verdict: bool | None,
                                                 consequence: Consequence, why: str) -> None:
    """The gate reads the evaluation row of the adapter the export ships (the second combination)."""
    manifests, snapshot, names = evaluating
    observations = [JobObservation(names[0], JobState.SUCCEEDED, 1, metrics={"rougeL": 0.0})]
    if observed is not None:
        state, metrics, message = observed
        observations.append(JobObservation(names[1], state, 1, "config" if state is JobState.FAILED else "", message, metrics))
    ctx = _context(snapshot, *observations)
    manifest = manifests["x"]
    assert isinstance(manifest.resource, ModelExport)
    [adapter] = snapshot.rows["adapters"].values()
    assert gate_verdict(manifest.resource, str(adapter["id"]), ctx) == (verdict, why)
    desired = _desired(manifest, snapshot, "")
    change = advance(manifest, desired, None, _export_change(snapshot), ctx)
    assert change.consequence is consequence
    if verdict is True:
        [launch] = change.launches
        assert (launch.kind, launch.attempt, launch.input["export"]["adapter_path"]) == ("export", 1, adapter["location"])
        assert change.reason == f"new in the manifests; {why}"
    else:
        assert (change.launches, change.ops, change.waits_for, change.reason) == ((), (), (why,), why)


def test_a_gate_waits_for_an_evaluation_that_has_not_run(project: tuple[dict[str, Manifest], Snapshot, str]) -> None:
    manifests, snapshot, name = project
    trained = _trained(manifests, snapshot, name)  # the evaluation is not managed yet
    manifest = manifests["x"]
    assert isinstance(manifest.resource, ModelExport)
    assert gate_verdict(manifest.resource, "any", _context(trained)) == (None, "gate: EvaluationJob/e has not run")


@pytest.mark.parametrize(("state", "attempt", "error_class", "artifacts", "consequence", "reason"), [
    (JobState.NOT_LAUNCHED, 0, "", {}, Consequence.LAUNCH, "launch the job"),
    (JobState.RUNNING, 1, "", {}, Consequence.NONE, "running"),
    (JobState.FAILED, 1, "transient", {}, Consequence.NONE, "failed (transient): boom"),  # retries: 0
    (JobState.SUCCEEDED, 1, "", {"registered_model_name": "x", "registered_model_version": "3"}, Consequence.NONE,
     "exported: x version 3"),
    (JobState.SUCCEEDED, 1, "", {"cml_model_id": "m-1", "cml_model_name": "x", "cml_deployment_id": "d-1"}, Consequence.NONE,
     "deployed: CML model x (m-1), deployment d-1"),
])
def test_a_launched_export_reports_what_it_made(evaluating: tuple[dict[str, Manifest], Snapshot, list[str]], state: JobState,
                                                attempt: int, error_class: str, artifacts: dict[str, Any],
                                                consequence: Consequence, reason: str) -> None:
    manifests, snapshot, names = evaluating
    opened = [JobObservation(n, JobState.SUCCEEDED, 1, metrics={"rougeL": 0.5}) for n in names]
    first = advance(manifests["x"], _desired(manifests["x"], snapshot, ""), None, _export_change(snapshot), _context(snapshot, *opened))
    [launch] = first.launches
    assert first.record is not None
    record = ManagedRecord("ModelExport", "x", "", first.record.store_id, (), "fp", "", 1, backend="local")
    obs = [JobObservation(launch.job_name, state, attempt, error_class, "boom", artifacts=artifacts)] if attempt else []
    change = _steady(manifests, Snapshot(rows=snapshot.rows, managed={**snapshot.managed, ("ModelExport", "x"): record}),
                     "x", *opened, *obs, record=record)
    assert (change.consequence, change.reason, change.ops) == (consequence, reason, ())
    assert [(la.job_name, la.attempt) for la in change.launches] == ([(launch.job_name, 1)] if attempt == 0 else [])


# -- what a launch writes into its row -----------------------------------------------------------


@pytest.mark.parametrize(("job_id", "recorded"), [("", "ftctl-evaluate-e"), ("cml-9", "cml-9")])
def test_a_launch_notes_its_job_and_an_evaluations_folder(job_id: str, recorded: str) -> None:
    evaluation = Launch("ftctl-evaluate-e", "evaluate", 1, {"outputs": {"evaluation_dir": ".app/jobs/e/evaluation"}},
                        row="evaluation_jobs/r1")
    started = JobObservation("ftctl-evaluate-e", JobState.QUEUED, 1, job_id=job_id)
    assert launch_note(evaluation, started) == {"cml_job_id": recorded, "evaluation_dir": ".app/jobs/e/evaluation"}
    training = replace(evaluation, kind="train", input={"outputs": {"dir": ".app/jobs/j"}})
    assert launch_note(training, started) == {"cml_job_id": recorded}
