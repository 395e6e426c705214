"""A job's spec fingerprint is over what its manifest resolves to (`planstate.PlanState.spec_fingerprint`).

build_plan over values (manifests loaded from text, each plan applied as values with
test_lifecycle._applied): a training whose configs are named, applied; the same training written
as `export-manifests` writes it (configs inline, defaults left out) plans no change; a changed
config body still re-runs it, named or inline. A store whose records the previous release wrote
(its fingerprint: every dependency's run inputs, configs named) re-runs nothing after the upgrade,
and still re-runs on a real change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import Desired, PlanFacts
from reconciler.graph import build_graph
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest, load_paths
from reconciler.plan import Action, Plan, Policy
from reconciler.planner import build_plan
from reconciler.planstate import PlanState
from reconciler.records import digest
from tests.unit.test_lifecycle import _applied

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
NAMED = INPUTS + """\
---
apiVersion: ftctl/v1
kind: Config
metadata: {name: lora}
spec: {type: lora_config, config: {r: %(r)d, lora_alpha: 16}}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: train}
spec:
  base_model: m
  dataset: d
  prompt: p
  adapter_name: train
  lora_config: lora
  dataset_fraction: 1.0
  train_test_split: 0.9
  resources: {cpu: 2, memory: 8, gpu: 0, num_workers: 1}
"""
INLINE = INPUTS + """\
---
apiVersion: ftctl/v1
kind: Config
metadata: {name: lora}
spec: {type: lora_config, config: {r: 8, lora_alpha: 16}}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: train}
spec:
  base_model: m
  dataset: d
  prompt: p
  lora_config: {r: %(r)d, lora_alpha: 16}
  resources: {memory: 8}
"""


def _manifests(tmp_path: Path, text: str) -> list[Manifest]:
    path = tmp_path / "project.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_paths([str(path)])
    assert not [d for d in loaded.diagnostics if d.severity.is_error()], loaded.diagnostics
    return loaded.manifests


def _plan(manifests: list[Manifest], snapshot: Snapshot) -> Plan:
    return build_plan(manifests, snapshot, policy=Policy(), facts=PlanFacts(), seed="fp", graph=build_graph(manifests))


def _job(plan: Plan) -> Action:
    """REPLACE: a new generation (a re-run); else the same one (launched, as nothing observed it ran)."""
    change = next(c for c in plan.changes if c.address == "FineTuningJob/train")
    return Action.REPLACE if change.action is Action.REPLACE else Action.NOOP


def _previous_release(self: PlanState, desired: Desired) -> str:
    """The spec fingerprint the previous release recorded: every dependency's run inputs."""
    inputs = sorted(self.inputs_digest(dep) for dep in desired.depends_on)
    rows = sorted((r.key, r.values) for r in desired.rows)
    return digest({"rows": rows, "spec": desired.spec, "inputs": inputs})


def test_an_exported_manifest_resolving_alike_plans_no_change(tmp_path: Path) -> None:
    store = _applied(Snapshot(), _plan(_manifests(tmp_path, NAMED % {"r": 8}), Snapshot()))
    assert _job(_plan(_manifests(tmp_path, NAMED % {"r": 8}), store)) is Action.NOOP
    assert _job(_plan(_manifests(tmp_path, INLINE % {"r": 8}), store)) is Action.NOOP, "configs inline, defaults left out"
    assert _job(_plan(_manifests(tmp_path, INLINE % {"r": 16}), store)) is Action.REPLACE
    assert _job(_plan(_manifests(tmp_path, NAMED % {"r": 16}), store)) is Action.REPLACE


def test_a_store_the_previous_release_wrote_reruns_nothing_after_the_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as previous:
        previous.setattr(PlanState, "spec_fingerprint", _previous_release)
        store = _applied(Snapshot(), _plan(_manifests(tmp_path, NAMED % {"r": 8}), Snapshot()))
    assert _job(_plan(_manifests(tmp_path, NAMED % {"r": 8}), store)) is Action.NOOP
    assert _job(_plan(_manifests(tmp_path, NAMED % {"r": 16}), store)) is Action.REPLACE
