"""A job's spec fingerprint is over what its manifest resolves to (`planstate.PlanState.spec_fingerprint`).

build_plan over values (manifests loaded from text, each plan applied as values with `applied` of
tests/unit/planning.py): a training whose configs are named, applied; the same training written as
`export-manifests` writes it (configs inline, defaults left out) plans no change; a changed config
body still re-runs it, named or inline. A store whose records the previous release wrote
(its fingerprint: every dependency's run inputs, configs named) re-runs nothing after the upgrade,
and still re-runs on a real change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import Desired
from reconciler.live import Snapshot
from reconciler.plan import Action, Plan
from reconciler.planstate import PlanState
from reconciler.records import digest
from tests.unit.planning import INPUTS, applied, load_manifests, plan_of

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
    store = applied(Snapshot(), plan_of(load_manifests(tmp_path, NAMED % {"r": 8}), Snapshot()))
    assert _job(plan_of(load_manifests(tmp_path, NAMED % {"r": 8}), store)) is Action.NOOP
    assert _job(plan_of(load_manifests(tmp_path, INLINE % {"r": 8}), store)) is Action.NOOP, "configs inline, defaults left out"
    assert _job(plan_of(load_manifests(tmp_path, INLINE % {"r": 16}), store)) is Action.REPLACE
    assert _job(plan_of(load_manifests(tmp_path, NAMED % {"r": 16}), store)) is Action.REPLACE


def test_a_store_the_previous_release_wrote_reruns_nothing_after_the_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as previous:
        previous.setattr(PlanState, "spec_fingerprint", _previous_release)
        store = applied(Snapshot(), plan_of(load_manifests(tmp_path, NAMED % {"r": 8}), Snapshot()))
    assert _job(plan_of(load_manifests(tmp_path, NAMED % {"r": 8}), store)) is Action.NOOP
    assert _job(plan_of(load_manifests(tmp_path, NAMED % {"r": 16}), store)) is Action.REPLACE
