"""A managed training's every generation is its own (`reconciler.adoption`, one rule for all stages).

A re-run keeps generation N's job row renamed `<name>-gN` with the adapter it registered. Over a
snapshot built here (a training at generation 3 whose adapter_name changed once, beside a Studio
training of its own): pruning the job deletes every generation's job row and adapter, products
first; plan verification accepts those deletes as the job's and refuses one of a Studio row; an
adapter still used by an evaluation that stays blocks the prune (PL-003); drift lists none of the
job's history as unmanaged, `ftctl get` shows it as produced, and import writes no manifest for it.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.adoption import generation_rows, owned_rows
from reconciler.desired import PlanFacts
from reconciler.drift import unmanaged_rows
from reconciler.importer import Layout, manifests_for
from reconciler.inspection import PRODUCED, UNMANAGED, items
from reconciler.kinds.adapter import trained_description
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Plan, Policy, RowOp
from reconciler.planner import build_plan
from reconciler.planverify import plan_problems
from reconciler.records import Row

RECORD = ManagedRecord("FineTuningJob", "train", "fine_tuning_jobs", "j3", ("j3",), "s", "r", generation=3)
HISTORY = {"a1", "a2", "a3", "j1", "j2"}  # generation 1 trained as "old" (renamed old-g1), 2 and 3 as "lora"


def _job(row_id: str, adapter_name: str) -> Row:
    return {"id": row_id, "adapter_name": adapter_name, "base_model_id": "m1", "dataset_id": "d1", "framework_type": "legacy"}


def _adapter(row_id: str, name: str, job: str, description: str) -> Row:
    return {"id": row_id, "type": "project", "name": name, "model_id": "m1", "location": f"data/{row_id}",
            "fine_tuning_job_id": job, "description": description}


def _snapshot(*, evaluation_of: str = "") -> Snapshot:
    rows: dict[str, dict[str, Row]] = {
        "fine_tuning_jobs": {"j1": _job("j1", "old-g1"), "j2": _job("j2", "lora-g2"), "j3": _job("j3", "lora"),
                             "s1": _job("s1", "studio-lora")},
        "adapters": {
            "a1": _adapter("a1", "old-g1", "j1", trained_description("train", 1)),
            "a2": _adapter("a2", "lora-g2", "j2", trained_description("train", 2)),
            "a3": _adapter("a3", "lora", "j3", trained_description("train", 3)),
            "s2": _adapter("s2", "studio-lora", "s1", ""),  # the Studio's own training and adapter
        },
        "evaluation_jobs": {},
    }
    if evaluation_of:
        rows["evaluation_jobs"]["e1"] = {"id": "e1", "parent_job_id": "p1", "base_model_id": "m1", "adapter_id": evaluation_of}
    return Snapshot(rows=rows, managed={("FineTuningJob", "train"): RECORD}, source="unit")


def _pruned(snapshot: Snapshot) -> Plan:
    return build_plan([], snapshot, policy=Policy(prune=True), facts=PlanFacts(), seed="unit")


def test_every_generation_and_its_adapter_is_the_jobs() -> None:
    snapshot = _snapshot()
    assert owned_rows(snapshot) == dict.fromkeys(sorted(HISTORY), "FineTuningJob/train")
    assert [t for t, _ in generation_rows(snapshot, RECORD)] == ["adapters"] * 3 + ["fine_tuning_jobs"] * 2, "products first"


def test_pruning_a_job_deletes_every_generations_rows_and_verifies() -> None:
    snapshot = _snapshot()
    plan = _pruned(snapshot)
    [change] = plan.changes
    assert change.action is Action.DELETE and not plan.blockers
    deleted = [(op.table, op.row_id) for op in change.ops if op.op == "delete"]
    assert {rid for _, rid in deleted} == HISTORY | {"j3"}
    assert deleted[-1] == ("fine_tuning_jobs", "j3") and deleted[0][0] == "adapters", "products first, the job row last"
    assert plan_problems(plan, snapshot) == []


def test_verification_refuses_deleting_a_studio_row_with_the_job() -> None:
    snapshot = _snapshot()
    plan = _pruned(snapshot)
    [change] = plan.changes
    hostile = replace(change, ops=(*change.ops, RowOp("adapters", "delete", "s2")))
    problems = plan_problems(replace(plan, changes=(hostile,)), snapshot)
    assert len(problems) == 1 and "adapters/s2" in problems[0], problems


def test_an_earlier_adapter_still_evaluated_blocks_the_prune() -> None:
    plan = _pruned(_snapshot(evaluation_of="a1"))
    assert [b.code for b in plan.blockers] == ["PL-003"], plan.blockers


def test_the_jobs_history_is_neither_unmanaged_nor_imported() -> None:
    snapshot = _snapshot()
    assert {(r.table, r.id) for r in unmanaged_rows(snapshot)} == {("fine_tuning_jobs", "s1"), ("adapters", "s2")}
    listed = {i.store_id: i.sync for i in items(snapshot, ["FineTuningJob", "Adapter"], statuses={}, jobs=[], updated={},
                                                unmanaged=True) if not i.managed}
    assert listed == {**dict.fromkeys(HISTORY, PRODUCED), "s1": UNMANAGED, "s2": UNMANAGED}
    files = manifests_for(snapshot, layout=Layout(root="/p", out_dir="/p/specs"), unmanaged_only=True)
    written = {d["metadata"]["annotations"]["ftctl.io/store-id"] for docs in files.values() for d in docs}
    assert written == {"s1", "s2"}
