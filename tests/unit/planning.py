"""What the planner's unit tests share: the model, dataset and prompt their projects start from
(`INPUTS`), manifests loaded from text written in tmp_path, a plan built over values, and the
store once a plan is applied, as values (`applied`). No store, no backend, no mocks of our modules."""

from __future__ import annotations

from pathlib import Path

from reconciler.desired import PlanFacts
from reconciler.graph import build_graph
from reconciler.lifecycle import launch_note
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest, load_paths
from reconciler.plan import Change, Plan, Policy
from reconciler.planner import build_plan
from reconciler.records import Row
from reconciler.runtime import JobObservation, JobState

SEED = "unit"
INPUTS = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: m}
spec: {type: huggingface, huggingface_model_name: org/tiny}
---
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: d}
spec: {type: huggingface, huggingface_name: org/data}
---
apiVersion: ftctl/v1
kind: Prompt
metadata: {name: p}
spec: {dataset: d, prompt_template: "Q: {q}\\nA: {a}", input_template: "Q: {q}\\nA:", completion_template: "{a}"}
"""


def write_project(folder: Path, text: str) -> Path:
    """`text` as the project's one manifest file, project.yaml in `folder`."""
    path = folder / "project.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load_manifests(folder: Path, text: str) -> list[Manifest]:
    """The manifests of `text` (written as project.yaml in `folder`); loading them finds no error."""
    loaded = load_paths([str(write_project(folder, text))])
    assert not [d for d in loaded.diagnostics if d.severity.is_error()], loaded.diagnostics
    return loaded.manifests


def plan_of(manifests: list[Manifest], snapshot: Snapshot, observations: dict[str, JobObservation] | None = None,
            *, prune: bool = False, root: str = "") -> Plan:
    """The plan of `manifests` against `snapshot`, the jobs' backends saying `observations`."""
    return build_plan(manifests, snapshot, policy=Policy(prune=prune), facts=PlanFacts(observations=observations or {}, root=root),
                      seed=SEED, graph=build_graph(manifests))


def change_of(plan: Plan, address: str) -> Change:
    return next(c for c in plan.changes if c.address == address)


def applied(snapshot: Snapshot, plan: Plan) -> Snapshot:
    """The store once `plan` is applied, as values: its row ops, its records, each launch noted in
    the row that records its job (`launch_note`, as the executor writes it on the local backend)."""
    rows: dict[str, dict[str, Row]] = {t: {i: dict(r) for i, r in table.items()} for t, table in snapshot.rows.items()}
    managed = dict(snapshot.managed)
    for change in plan.changes:
        for op in change.ops:
            table = rows.setdefault(op.table, {})
            if op.op == "insert":
                table[op.row_id] = {"id": op.row_id, **op.values}
            elif op.op == "update":
                table[op.row_id] = {**table[op.row_id], **op.values}
            else:
                table.pop(op.row_id, None)
        for launch in change.launches:
            if launch.row:
                table_name, row_id = launch.row.split("/", 1)
                rows[table_name][row_id].update(launch_note(launch, JobObservation(launch.job_name, JobState.QUEUED)))
        if change.record is not None:
            r = change.record
            managed[(change.kind, change.name)] = ManagedRecord(
                change.kind, change.name, r.store_table, r.store_id, r.row_ids, r.spec_fingerprint, r.row_fingerprint,
                r.generation, r.protected, r.origin, 0, r.spec, r.backend)
    return Snapshot(rows=rows, managed=managed)
