"""Verified plans: a plan file's digest and signature, what `planverify` lets a plan write, and the
local backend's job folders.

A plan is checked against the store it is applied to: the table below takes a plan within bounds
(an update the field diffs show, a create, a job launch) and applies one hostile edit each (the
attacks observed on edited plan files, and their neighbours); every edit is refused, naming the
change and the op. The digest catches any edit of the file; the verification catches an edit
whose digest was recomputed. The local backend refuses a job folder outside its jobs root and a
runner outside the closed set, whatever its caller passes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.backends import BackendError, check_outputs
from reconciler.backends.local import LocalBackend
from reconciler.jobinput import JobSettings, named_input, train_input
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import (
    Action,
    Blocker,
    Change,
    FieldDiff,
    Launch,
    Plan,
    PlanFormatError,
    PlanIntegrityError,
    Policy,
    Record,
    RowOp,
)
from reconciler.planverify import PlanRefusedError, check_plan, plan_problems

SOURCE = "sqlite+pysqlite:///state.db"


def _managed(kind: str, name: str, table: str, row_id: str) -> ManagedRecord:
    return ManagedRecord(kind, name, table, row_id, (row_id,), "s", "r")


SNAPSHOT = Snapshot(
    rows={
        "models": {"m1": {"id": "m1", "name": "base", "description": "a"}, "u1": {"id": "u1", "name": "theirs"}},
        "datasets": {"d1": {"id": "d1", "name": "ds"}},
        "fine_tuning_jobs": {"j1": {"id": "j1", "adapter_name": "ad", "base_model_id": "m1", "dataset_id": "d1",
                                    "lora_config": '{"r": 8}', "learning_rate": 0.0002}},
    },
    managed={
        ("Model", "base"): _managed("Model", "base", "models", "m1"),
        ("Dataset", "ds"): _managed("Dataset", "ds", "datasets", "d1"),
        ("FineTuningJob", "ft"): _managed("FineTuningJob", "ft", "fine_tuning_jobs", "j1"),
    },
    source=SOURCE,
)
UPDATE = Change("Model", "base", Action.UPDATE, "the manifest changed", fields=(FieldDiff("models.description", "a", "b"),),
                ops=(RowOp("models", "update", "m1", {"description": "b"}),), record=Record("models", "m1", ("m1",), "s", "r", 1, "created"))
CREATE = Change("Dataset", "new", Action.CREATE, "new in the manifests", fields=(FieldDiff("datasets.name", None, "new"),),
                ops=(RowOp("datasets", "insert", "n1", {"id": "n1", "name": "new"}),), record=Record("datasets", "n1", ("n1",), "s", "r", 1, "created"))
TRAIN, TRAIN_INPUT = named_input("FineTuningJob", "ft", 1, store_id=SNAPSHOT.store_id, build=lambda name: train_input(
    name, SNAPSHOT.rows["fine_tuning_jobs"]["j1"], rows=SNAPSHOT.row, settings=JobSettings(), hf_token_env="HF_TOKEN"))
LAUNCH = Change("FineTuningJob", "ft", Action.UPDATE, "launch the job",
                launches=(Launch(TRAIN, "train", 1, TRAIN_INPUT or {}, row="fine_tuning_jobs/j1"),))
GOOD = Plan(store=SOURCE, serial=1, read={}, changes=(UPDATE, CREATE, LAUNCH))


def _edit(index: int, **values: object) -> Callable[[Plan], Plan]:
    return lambda plan: dataclasses.replace(plan, changes=tuple(
        dataclasses.replace(c, **values) if i == index else c for i, c in enumerate(plan.changes)))


def _launch(**values: object) -> Callable[[Plan], Plan]:
    return _edit(2, launches=(dataclasses.replace(LAUNCH.launches[0], **values),))


def _insert(**values: object) -> Callable[[Plan], Plan]:
    return _edit(1, ops=(RowOp("datasets", "insert", "n1", {"id": "n1", "name": "new", **values}),))


def _job_input(**values: object) -> Callable[[Plan], Plan]:
    return _launch(input={**TRAIN_INPUT, **values})


DELETE_DS = Change("Dataset", "ds", Action.DELETE, "no manifest any more (--prune)", ops=(RowOp("datasets", "delete", "d1"),))
PROTECTED = dataclasses.replace(SNAPSHOT, managed={**SNAPSHOT.managed, ("Dataset", "ds"): dataclasses.replace(
    SNAPSHOT.managed[("Dataset", "ds")], protected=True)})


HOSTILE: dict[str, tuple[Callable[[Plan], Plan], str]] = {
    "deletes an unmanaged row": (_edit(0, ops=(RowOp("models", "delete", "u1"),)), "Model/base: op 1 (delete models/u1): targets a row that is not"),
    "updates an unmanaged row": (_edit(0, ops=(RowOp("models", "update", "u1", {"description": "b"}),)), "op 1 (update models/u1)"),
    "deletes another object's row": (_edit(1, ops=(*CREATE.ops, RowOp("datasets", "delete", "d1"))), "Dataset/new: op 2 (delete datasets/d1)"),
    "sets a column silently": (_edit(0, ops=(RowOp("models", "update", "m1", {"description": "b", "huggingface_model_name": "evil/m"}),)),
                               "sets huggingface_model_name, which no field diff"),
    "sets another value than shown": (_edit(0, ops=(RowOp("models", "update", "m1", {"description": "evil"}),)), "another value than its field diff"),
    "changes a row's id": (_edit(0, ops=(RowOp("models", "update", "m1", {"id": "u1"}),)), "sets id"),
    "writes another kind's table": (_edit(1, ops=(RowOp("models", "insert", "n1", {"id": "n1"}),)), "writes table 'models', which a Dataset"),
    "an unknown kind": (_edit(0, kind="Evil"), "Evil/base: unknown kind"),
    "a changed kind": (_edit(0, kind="Dataset"), "Dataset/base: op 1 (update models/m1): writes table 'models'"),
    "an unknown operation": (_edit(0, ops=(RowOp("models", "truncate", "m1"),)), "unknown operation 'truncate'"),
    "inserts over an existing row": (_edit(1, ops=(RowOp("datasets", "insert", "d1", {"id": "d1"}),)), "the row already exists"),
    "a record claiming an unmanaged row": (_edit(0, record=Record("models", "u1", ("u1",), "s", "r", 1, "created")), "its record claims models/u1"),
    "adopts another object's row": (_edit(1, adopts=("d1",), ops=(RowOp("datasets", "delete", "d1"),)), "which another object manages"),
    "a job folder outside the jobs root": (_launch(job_name="../../.."), "not the job name ftctl derives"),
    "a job name with a slash": (_launch(job_name=f"{TRAIN}/x"), "not the job name ftctl derives"),
    "another runner": (_launch(kind="../../tmp/evil"), "a FineTuningJob runs train, not '../../tmp/evil'"),
    "a runner of the set, not this kind's": (_launch(kind="export"), "runs train, not 'export'"),
    "a huge attempt": (_launch(attempt=10**18), "attempt 1000000000000000000 is not between 1 and"),
    "attempt zero": (_launch(attempt=0), "attempt 0"),
    "an unknown backend": (_launch(backend="evil"), "unknown backend 'evil'"),
    "records the job in another row": (_launch(row="models/u1"), "records the job in models/u1"),
    "a launch for a kind without jobs": (_edit(1, launches=LAUNCH.launches), "a Dataset runs no job"),
    "the same object twice": (lambda p: dataclasses.replace(p, changes=(*p.changes, UPDATE)), "Model/base: appears twice"),
    "a plan for another store": (lambda p: dataclasses.replace(p, store="sqlite+pysqlite:///other.db"), "made for the store"),
    # what apply recomputes whatever the plan says of itself
    "blockers dropped from the view, kept in the plan": (
        lambda p: dataclasses.replace(p, blockers=(Blocker("Model/base", "PL-002", "Model/base is protected"),)),
        "Model/base: blocked (PL-002): Model/base is protected"),
    "deletes more than its own limit": (
        lambda p: dataclasses.replace(p, changes=(*p.changes, DELETE_DS), policy=Policy(prune=True, max_deletions=0)),
        "it deletes 1 objects, more than its max_deletions 0"),
    # an inserted row: columns of its table, values of their types, the values its diffs show
    "inserts a column the table lacks": (_insert(evil="x"), "sets evil, which is not a column of datasets"),
    "inserts a huge integer": (_insert(name="new", features=None, description=2**64), "sets description to a value that is not text"),
    "inserts JSON text that does not parse": (_insert(features="{oops"), "sets features to a value that is not JSON text"),
    "inserts a value its diff does not show": (_insert(name="evil"), "sets name to another value than its field diff shows"),
    "inserts a column no diff shows": (_insert(huggingface_name="evil/ds"), "sets huggingface_name, which no field diff"),
    # a launch's job input, rebuilt from the rows
    "a job input for another model": (_job_input(model={"type": "huggingface", "name_or_path": "evil/model"}), "differs at model."),
    "a job input writing outside": (_job_input(outputs={**TRAIN_INPUT["outputs"], "dir": "/etc"}), "outputs are not in a folder named"),
    "a job input with another lora config": (_job_input(train={**TRAIN_INPUT["train"], "lora_config": {"r": 999}}),
                                             "differs at train.lora_config.r"),
    "a job input naming another job": (_job_input(job_name="other"), "not a document for this job"),
    "a token that is not a variable": (_job_input(model={**TRAIN_INPUT["model"], "hf_token_env": "hf_abc def"}),
                                       "model token is not an environment variable's name"),
}


def test_a_plan_within_bounds_passes() -> None:
    assert plan_problems(GOOD, SNAPSHOT) == []


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_edit_is_refused_naming_the_change_and_the_op(case: str) -> None:
    edit, expected = HOSTILE[case]
    with pytest.raises(PlanRefusedError) as caught:
        check_plan(edit(GOOD), SNAPSHOT)
    message = str(caught.value)
    # an edited job input also changes its digest, so its name is refused too (first): each problem is listed
    assert any(expected in problem for problem in caught.value.problems)
    assert "\n" not in message and message.startswith("the plan is refused, nothing was applied: ")


def test_an_object_the_store_protects_is_not_deleted_whatever_the_plan_says() -> None:
    plan = dataclasses.replace(GOOD, changes=(UPDATE, DELETE_DS))
    assert plan_problems(plan, SNAPSHOT) == []
    assert plan_problems(plan, PROTECTED) == [
        "Dataset/ds: deletes an object the store marks protected (`ftctl unprotect` it first)",
        "Dataset/ds: op 1 (delete datasets/d1): deletes a row of an object the store marks protected",
    ]


def test_a_replace_writes_the_replaced_row_s_values_where_no_diff_shows_a_change() -> None:
    replace = Change("Model", "base", Action.REPLACE, "the manifest changed", fields=(FieldDiff("models.description", "a", "b"),),
                     ops=(RowOp("models", "delete", "m1"), RowOp("models", "insert", "m2", {"id": "m2", "name": "base", "description": "b"})),
                     record=Record("models", "m2", ("m2",), "s", "r", 2, "created"))
    assert plan_problems(dataclasses.replace(GOOD, changes=(replace,)), SNAPSHOT) == []
    renamed = dataclasses.replace(replace, ops=(replace.ops[0], RowOp("models", "insert", "m2", {"id": "m2", "name": "evil", "description": "b"})))
    assert plan_problems(dataclasses.replace(GOOD, changes=(renamed,)), SNAPSHOT) == [
        "Model/base: op 2 (insert models/m2): sets name, which no field diff of the change shows, to another value than the row it replaces"]


def test_a_training_may_register_and_retire_its_own_adapter_only() -> None:
    rows = {**SNAPSHOT.rows, "adapters": {"a0": {"id": "a0", "name": "ad", "fine_tuning_job_id": "j0"},
                                           "x0": {"id": "x0", "name": "other", "fine_tuning_job_id": "j9"}}}
    snapshot = dataclasses.replace(SNAPSHOT, rows=rows)
    register = (RowOp("adapters", "update", "a0", {"name": "ad-g1"}),
                RowOp("adapters", "insert", "a1", {"id": "a1", "name": "ad", "fine_tuning_job_id": "j1", "model_id": "m1"}))
    assert plan_problems(_edit(2, ops=register)(GOOD), snapshot) == []
    foreign = (RowOp("adapters", "update", "x0", {"name": "renamed"}),)
    assert "op 1 (update adapters/x0): targets a row" in plan_problems(_edit(2, ops=foreign)(GOOD), snapshot)[0]
    stolen = (RowOp("adapters", "insert", "a2", {"id": "a2", "name": "ad", "fine_tuning_job_id": "j0"}),)
    assert "did not train" in plan_problems(_edit(2, ops=stolen)(GOOD), snapshot)[0]
    misnamed = (RowOp("adapters", "insert", "a1", {"id": "a1", "name": "evil", "fine_tuning_job_id": "j1", "model_id": "m1"}),)
    assert "sets name, which is not the training's adapter_name" in plan_problems(_edit(2, ops=misnamed)(GOOD), snapshot)[0]


def test_every_problem_is_counted_in_the_one_line() -> None:
    hostile = _launch(kind="evil", attempt=-1)(GOOD)
    with pytest.raises(PlanRefusedError, match=r"\(and 1 more problem\)$"):
        check_plan(hostile, SNAPSHOT)


# --- the plan file: digest and signature ---------------------------------------------------------


def test_the_plan_file_carries_a_digest_of_its_whole_content() -> None:
    data = json.loads(GOOD.to_json())
    assert data["digest"] == GOOD.digest() and "signature" not in data
    for edited in (_edit(0, ops=(RowOp("models", "update", "m1", {"description": "c"}),)), _launch(input={"x": 1}),
                   _edit(0, fields=()), lambda p: dataclasses.replace(p, labels={"m1": "x"})):
        assert edited(GOOD).digest() != GOOD.digest()


def test_an_edited_plan_file_is_refused() -> None:
    data = json.loads(GOOD.to_json())
    data["changes"][0]["ops"][0]["values"]["huggingface_model_name"] = "evil/m"
    with pytest.raises(PlanIntegrityError, match=r"^plan.json was modified after `ftctl plan` wrote it \(digest mismatch\)$"):
        Plan.from_json(json.dumps(data), name="plan.json")
    del data["digest"]
    with pytest.raises(PlanFormatError, match="has no digest"):
        Plan.from_json(json.dumps(data))


def test_a_signed_plan_needs_the_key_that_signed_it() -> None:
    text = GOOD.to_json(key="s3cret-key")
    assert "s3cret-key" not in text
    assert Plan.from_json(text, key="s3cret-key") == GOOD
    assert Plan.from_json(text) == GOOD  # without a key the digest alone is checked
    with pytest.raises(PlanIntegrityError, match="wrong signature"):
        Plan.from_json(text, key="another-key")
    with pytest.raises(PlanIntegrityError, match="is not signed, and FTCTL_PLAN_KEY is set"):
        Plan.from_json(GOOD.to_json(), key="s3cret-key")


# --- the local backend's job folders -------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../..", "..", ".", "a/b", "/tmp/x", "a\x00b", "", "a\\b", "-", "x" * 300])
def test_the_local_backend_refuses_a_job_folder_outside_its_root(tmp_path: Path, name: str) -> None:
    backend = LocalBackend(tmp_path / "jobs", environ={})
    with pytest.raises(BackendError, match="refused"):
        backend.launch(name, "train", {})
    assert not (tmp_path / "jobs").exists() or not any((tmp_path / "jobs").iterdir())


@pytest.mark.parametrize("outputs", [{"dir": "/tmp/elsewhere"}, {"result": "/etc/result.json"}, {"adapter_dir": "../../adapter"}])
def test_the_local_backend_runs_a_job_only_with_its_outputs_in_its_folder(tmp_path: Path, outputs: dict[str, str]) -> None:
    backend = LocalBackend(tmp_path / "jobs", environ={})
    good = train_input(TRAIN, SNAPSHOT.rows["fine_tuning_jobs"]["j1"], rows=SNAPSHOT.row,
                       settings=JobSettings(jobs_root=str(tmp_path / "jobs"))) or {}
    check_outputs(good, backend.job_dir(TRAIN))
    job_input = {**good, "outputs": {**good["outputs"], **outputs}}
    with pytest.raises(BackendError, match="its outputs are not in the job's folder"):
        backend.launch(TRAIN, "train", job_input)
    assert not (tmp_path / "jobs").exists()


@pytest.mark.parametrize("kind", ["../../tmp/evil", "evil", "train.py", "", "/bin/sh"])
def test_the_local_backend_runs_only_the_runners_of_the_set(tmp_path: Path, kind: str) -> None:
    with pytest.raises(BackendError, match="job kind"):
        LocalBackend(tmp_path / "jobs", environ={}).launch(TRAIN, kind, {})
    assert not (tmp_path / "jobs").exists()
