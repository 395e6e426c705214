"""The planner's core, unit by unit: `pairing.decide` over every pair shape, the orphans' order,
the per-kind facts, and `build_plan` on manifests and a snapshot built here (no store, no engine):
what each shape becomes as an action, a consequence and an orphan flag, and what blocks a plan
(protection, what still uses a deleted row, mass deletion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import PlanFacts
from reconciler.graph import build_graph
from reconciler.kinds import BINDINGS
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest, load_paths
from reconciler.pairing import Decision, Pair, decide, orphans
from reconciler.plan import Action, Consequence, Plan, Policy
from reconciler.planner import build_plan

RECORD = ManagedRecord("Prompt", "p", "prompts", "id-p", ("id-p",), "s", "r")
MANIFEST = object()  # decide looks at the shape only


@pytest.mark.parametrize(("pair", "prune", "forced", "in_sync", "expected"), [
    (Pair("Prompt", "p", None, RECORD), False, False, False, Decision.ORPHAN),
    (Pair("Prompt", "p", None, RECORD), True, False, False, Decision.DELETE),
    (Pair("Prompt", "p", MANIFEST, None), False, False, False, Decision.CREATE),  # type: ignore[arg-type]
    (Pair("Prompt", "p", MANIFEST, None), True, True, False, Decision.CREATE),  # type: ignore[arg-type]
    (Pair("Prompt", "p", MANIFEST, RECORD, adopting=True), False, True, True, Decision.ADOPT),  # type: ignore[arg-type]
    (Pair("Prompt", "p", MANIFEST, RECORD), False, True, True, Decision.REPLACE),  # type: ignore[arg-type]
    (Pair("Prompt", "p", MANIFEST, RECORD), False, False, True, Decision.NOOP),  # type: ignore[arg-type]
    (Pair("Prompt", "p", MANIFEST, RECORD), True, False, False, Decision.COMPARE),  # type: ignore[arg-type]
])
def test_decide_by_the_pairs_shape(pair: Pair, prune: bool, forced: bool, in_sync: bool, expected: Decision) -> None:
    assert decide(pair, prune=prune, forced=forced, in_sync=in_sync) is expected


def test_orphans_come_users_first() -> None:
    managed = {(k, n): ManagedRecord(k, n, BINDINGS[k].table, f"id-{n}", (f"id-{n}",), "s", "r")
               for k, n in (("Model", "m"), ("Dataset", "d"), ("FineTuningJob", "j"), ("Prompt", "p"), ("Config", "c"))}
    assert [p.address for p in orphans([], managed, {k: f.delete_rank for k, f in BINDINGS.items()})] == [
        "FineTuningJob/j", "Prompt/p", "Config/c", "Dataset/d", "Model/m"]


def test_every_kind_has_its_facts() -> None:
    from reconciler.models import MODELS
    assert set(BINDINGS) == set(MODELS)
    assert BINDINGS["FineTuningJob"].rerun is Consequence.NEW_ADAPTER_VERSION
    assert BINDINGS["EvaluationJob"].rerun is Consequence.RERUN and BINDINGS["EvaluationJob"].fan_out
    assert BINDINGS["ModelExport"].rerun is Consequence.REEXPORT and not BINDINGS["ModelExport"].table
    assert BINDINGS["Config"].content_addressed and "config" in BINDINGS["Config"].replace_columns


# -- build_plan on manifests written here and a snapshot built here -------------------------------

DOC = """\
apiVersion: ftctl/v1
kind: {kind}
metadata:
  name: {name}
{annotations}spec:
{spec}
"""
CONFIG_SPEC = "  type: lora_config\n  config: {r: 8, lora_alpha: 16}\n"


def _manifests(tmp_path: Path, *docs: tuple[str, str, str]) -> list[Manifest]:
    text = "---\n".join(DOC.format(kind=k, name=n, spec=s, annotations="") for k, n, s in docs)
    (tmp_path / "m.yaml").write_text(text)
    loaded = load_paths([str(tmp_path / "m.yaml")])
    assert not [d for d in loaded.diagnostics if d.severity.is_error()], loaded.diagnostics
    return loaded.manifests


def _plan(manifests: list[Manifest], snapshot: Snapshot, **policy: object) -> Plan:
    return build_plan(manifests, snapshot, policy=Policy(**policy), facts=PlanFacts(), seed="unit",  # type: ignore[arg-type]
                      graph=build_graph(manifests))


def _managed_model(name: str, *, protected: bool = False) -> Snapshot:
    record = ManagedRecord("Model", name, "models", f"id-{name}", (f"id-{name}",), "s", "r", protected=protected)
    rows = {"models": {f"id-{name}": {"id": f"id-{name}", "type": "huggingface", "name": name,
                                      "huggingface_model_name": "org/tiny"}}}
    return Snapshot(rows=rows, managed={("Model", name): record})


def test_a_new_manifest_is_a_create_with_its_insert(tmp_path: Path) -> None:
    plan = _plan(_manifests(tmp_path, ("Config", "lora", CONFIG_SPEC)), Snapshot())
    [change] = plan.changes
    assert (change.action, change.consequence, change.orphan) == (Action.CREATE, Consequence.NONE, False)
    assert [(op.table, op.op) for op in change.ops] == [("configs", "insert")] and change.record is not None


def test_an_equal_config_shares_the_row_the_plan_creates(tmp_path: Path) -> None:
    plan = _plan(_manifests(tmp_path, ("Config", "a", CONFIG_SPEC), ("Config", "b", CONFIG_SPEC)), Snapshot())
    first, second = plan.changes
    assert first.ops and second.consequence is Consequence.SHARED and not second.ops
    assert first.record is not None and second.record is not None and second.record.store_id == first.record.store_id


def test_a_managed_object_without_manifest_is_an_orphan_kept_or_deleted(tmp_path: Path) -> None:
    snapshot = _managed_model("old")
    [kept] = _plan([], snapshot).changes
    assert (kept.action, kept.orphan, kept.ops) == (Action.NOOP, True, ())
    [gone] = _plan([], snapshot, prune=True).changes
    assert (gone.action, gone.orphan) == (Action.DELETE, False)
    assert [(op.table, op.op, op.row_id) for op in gone.ops] == [("models", "delete", "id-old")]


def test_a_protected_orphan_blocks_its_deletion(tmp_path: Path) -> None:
    snapshot = _managed_model("old", protected=True)
    plan = _plan([], snapshot, prune=True)
    assert [b.code for b in plan.blockers] == ["PL-002"] and plan.is_blocked()


def test_a_row_still_used_blocks_its_deletion(tmp_path: Path) -> None:
    snapshot = _managed_model("old")
    rows = {**snapshot.rows, "adapters": {"a1": {"id": "a1", "name": "studio-adapter", "model_id": "id-old"}}}
    plan = _plan([], Snapshot(rows=rows, managed=snapshot.managed), prune=True)
    [blocker] = plan.blockers
    assert blocker.code == "PL-003" and "studio-adapter" in blocker.message


def test_more_deletions_than_allowed_block_the_plan(tmp_path: Path) -> None:
    managed: dict[tuple[str, str], ManagedRecord] = {}
    rows: dict[str, dict[str, object]] = {}
    for i in range(3):
        snapshot = _managed_model(f"m{i}")
        managed.update(snapshot.managed)
        rows.update(snapshot.rows["models"])
    plan = _plan([], Snapshot(rows={"models": rows}, managed=managed), prune=True, max_deletions=2)
    assert [b.code for b in plan.blockers] == ["PL-004"]
    assert not _plan([], Snapshot(rows={"models": rows}, managed=managed), prune=True, max_deletions=3).blockers
