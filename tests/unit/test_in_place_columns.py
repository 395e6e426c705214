"""Columns a re-run kind updates in place (`Binding.in_place`): an evaluation's `num_workers`.

The Studio writes 1 in every evaluation row and its home page selects the column; ftctl's new rows
carry 1 too (the manifest's default). A store ftctl wrote before (the column NULL) gets the value
as an in-place update of that column alone: no new generation, no launch. build_plan over values
(manifests and `applied` of tests/unit/planning.py), no store or backend.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.kinds import BINDINGS
from reconciler.live import Snapshot
from reconciler.plan import Action, Consequence, Plan
from reconciler.runtime import JobObservation, JobState
from tests.unit.planning import INPUTS, applied, change_of, load_manifests, plan_of

EVALUATIONS = BINDINGS["EvaluationJob"]
TWO_COMBINATIONS = """\
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: e}
spec:
  dataset: d
  prompt: p
  %(workers)s
  combinations: [{model: m}, {model: m2}]
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: m2}
spec: {type: huggingface, huggingface_model_name: org/tiny2}
"""


def _rows(snapshot: Snapshot) -> list[dict[str, object]]:
    return list(snapshot.rows[EVALUATIONS.table].values())


def test_a_new_evaluation_writes_the_studios_num_workers(tmp_path: Path) -> None:
    manifests = load_manifests(tmp_path, INPUTS + TWO_COMBINATIONS % {"workers": ""})
    store = applied(Snapshot(), plan_of(manifests, Snapshot()))
    assert [row["num_workers"] for row in _rows(store)] == [1, 1]


def _finished(plan: Plan) -> dict[str, JobObservation]:
    """What the backend says of the jobs `plan` launched: each finished."""
    return {launch.job_name: JobObservation(launch.job_name, JobState.SUCCEEDED, 1) for c in plan.changes for launch in c.launches}


def _in_place_only(tmp_path: Path, before: Snapshot, ran: dict[str, JobObservation]) -> None:
    """The plan on `before` (whose evaluations `ran`) updates num_workers of every combination in
    place and launches nothing; once applied, the next plan has nothing to do."""
    manifests = load_manifests(tmp_path, INPUTS + TWO_COMBINATIONS % {"workers": ""})
    plan = plan_of(manifests, before, ran)
    change = change_of(plan, "EvaluationJob/e")
    assert (change.action, change.consequence) == (Action.UPDATE, Consequence.IN_PLACE), change.reason
    assert "num_workers updated in place" in change.reason
    assert change.launches == () and {f.path for f in change.fields} == {"evaluation_jobs.num_workers"}
    assert sorted((op.op, op.row_id, tuple(op.values.items())) for op in change.ops) == sorted(
        ("update", str(row["id"]), (("num_workers", 1),)) for row in _rows(before))
    assert change.record is not None and change.record.generation == 1
    assert [c.address for c in plan.changes if c.launches] == []
    after = applied(before, plan)
    assert [row["num_workers"] for row in _rows(after)] == [1, 1]
    again = change_of(plan_of(manifests, after, ran), "EvaluationJob/e")
    assert again.action is Action.NOOP and not again.launches and not again.ops


def test_a_store_written_before_rows_carried_num_workers_is_updated_in_place(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The store as ftctl wrote it when the column was left as the store had it (NULL): the
    binding then rendered no num_workers, so its records' fingerprints saw none."""
    then = replace(EVALUATIONS, columns=tuple(c for c in EVALUATIONS.columns if c.name != "num_workers"))
    with monkeypatch.context() as patched:
        patched.setitem(BINDINGS, "EvaluationJob", then)
        manifests = load_manifests(tmp_path, INPUTS + TWO_COMBINATIONS % {"workers": ""})
        first = plan_of(manifests, Snapshot())
        old = applied(Snapshot(), first)
    old = Snapshot(rows={**old.rows, EVALUATIONS.table: {i: {**r, "num_workers": None} for i, r in old.rows[EVALUATIONS.table].items()}},
                   managed=old.managed)
    _in_place_only(tmp_path, old, _finished(first))


def test_a_manifest_that_asked_for_null_and_no_longer_does_is_updated_in_place(tmp_path: Path) -> None:
    manifests = load_manifests(tmp_path, INPUTS + TWO_COMBINATIONS % {"workers": "num_workers: null"})
    first = plan_of(manifests, Snapshot())
    store = applied(Snapshot(), first)
    assert [row["num_workers"] for row in _rows(store)] == [None, None]
    _in_place_only(tmp_path, store, _finished(first))


def test_a_change_beside_num_workers_still_runs_the_evaluation_again(tmp_path: Path) -> None:
    manifests = load_manifests(tmp_path, INPUTS + TWO_COMBINATIONS % {"workers": "num_workers: null"})
    first = plan_of(manifests, Snapshot())
    store = applied(Snapshot(), first)
    changed = load_manifests(tmp_path, INPUTS + TWO_COMBINATIONS % {"workers": "resources: {cpu: 4}"})
    change = change_of(plan_of(changed, store, _finished(first)), "EvaluationJob/e")
    assert change.action is Action.REPLACE and change.launches
