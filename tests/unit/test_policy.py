"""[policy] gates (reconciler.policy) over values: reading ftctl.toml's tables (unknown keys with a
did-you-mean and their line), the manifests' violations at the offending field, the plan totals
at the key's line, which violations block a plan, and what an override waives."""

from __future__ import annotations

import tomllib
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.estimates import DeviceRate
from reconciler.manifests import Manifest, load_paths, resolve_positions
from reconciler.plan import Action, Blocker, Change, CostEstimate, JobEstimate, Launch, Plan
from reconciler.policy import (
    Override,
    PolicySettings,
    SettingsError,
    blockers_of,
    check_manifests,
    check_totals,
    key_lines,
    read_settings,
    unknown_keys,
    waive,
)
from reconciler.safeio import ReadRoots

TOML = """\
# the team's limits
[policy]
max_gpu_hours = 4
max_cost = 10.5
max_gpus = 2
max_workers = 2
allowed_base_models = ["tiny", "org/m-1b"]
allowed_backends = ["local"]
export_requires_gate = true

[estimates]
chars_per_token = 3.5
accelerator_labels = { 7 = "a100" }

[estimates.devices.a100]
tokens_per_second = 10000
parameters = 1000000000
price_per_hour = 4.0

[estimates.devices.cpu]
price_per_hour = 0.5
"""


def _read(text: str) -> tuple[PolicySettings, object]:
    return read_settings(tomllib.loads(text), text=text, file="ftctl.toml")


def test_every_setting_is_read_with_its_line() -> None:
    policy, estimates = _read(TOML)
    assert (policy.max_gpu_hours, policy.max_cost, policy.max_gpus, policy.max_workers) == (4.0, 10.5, 2, 2)
    assert policy.allowed_base_models == ("tiny", "org/m-1b") and policy.allowed_backends == ("local",)
    assert policy.export_requires_gate is True
    assert policy.lines == {"max_gpu_hours": 3, "max_cost": 4, "max_gpus": 5, "max_workers": 6, "allowed_base_models": 7,
                            "allowed_backends": 8, "export_requires_gate": 9}
    assert estimates.chars_per_token == 3.5 and estimates.accelerator_labels == {7: "a100"}  # type: ignore[attr-defined]
    assert estimates.devices["a100"] == DeviceRate(10000.0, 1_000_000_000, 4.0)  # type: ignore[attr-defined]
    assert estimates.devices["cpu"] == DeviceRate(5571.0, 139_264, 0.5)  # type: ignore[attr-defined]  # only the price changed


@pytest.mark.parametrize(("text", "message"), [
    ("[policy]\nmax_cots = 1\n", "ftctl.toml:2: unknown policy key 'max_cots' (did you mean 'max_cost'?)"),
    ("[estimates]\nchars_per_tokn = 4\n", "ftctl.toml:2: unknown estimates key 'chars_per_tokn' (did you mean 'chars_per_token'?)"),
    ("[policy]\nmax_gpus = 1.5\n", "ftctl.toml:2: policy.max_gpus must be an integer >= 0, not 1.5"),
    ("[policy]\nallowed_backends = \"local\"\n", "ftctl.toml:2: policy.allowed_backends must be a list of names"),
    ("\n[estimates.devices.h100]\ntokens_per_second = 9000\n", "ftctl.toml:2: device kind 'h100' needs parameters, price_per_hour"),
    ("[estimates.devices.gpu]\ntokens_per_secnd = 9000\n", "unknown estimates.devices.gpu key 'tokens_per_secnd'"),
])
def test_a_wrong_setting_names_its_line(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=None) as raised:
        _read(text)
    assert message in str(raised.value)


def test_no_policy_no_limits() -> None:
    policy, _ = read_settings({})
    assert policy == PolicySettings(file="ftctl.toml")
    assert key_lines("a = 1\n[t]\nb = 2\n[t.u]\n\"c\" = 3\n") == {"a": 1, "t": 2, "t.b": 3, "t.u": 4, "t.u.c": 5}


MANIFESTS = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: big}
spec: {type: huggingface, huggingface_model_name: org/big-70b}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: hub-1b}
spec: {type: huggingface, huggingface_model_name: org/m-1b}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: wide}
spec:
  base_model: big
  dataset: d
  prompt: p
  backend: cml
  resources: {gpu: 2, num_workers: 3}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: ok}
spec: {base_model: hub-1b, dataset: d, prompt: p}
---
apiVersion: ftctl/v1
kind: ModelExport
metadata: {name: ungated}
spec: {type: model_registry, base_model: hub-1b, adapter: ok}
"""


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[list[Manifest], dict[str, str]]:
    (tmp_path / "m.yaml").write_text(MANIFESTS, encoding="utf-8")
    result = load_paths([str(tmp_path)], roots=ReadRoots(str(tmp_path)))
    return result.manifests, result.sources


def test_the_manifests_violations_point_at_the_field(loaded: tuple[list[Manifest], dict[str, str]]) -> None:
    manifests, sources = loaded
    policy, _ = _read(TOML)
    found = resolve_positions(check_manifests(manifests, policy), sources)
    got = {(d.code, d.address, d.location.line if d.location else 0) for d in found}
    assert got == {
        ("PO-003", "FineTuningJob/wide", 19),  # 2 + 2 x 2 GPUs of 3 workers > 2
        ("PO-004", "FineTuningJob/wide", 19),  # 3 workers > 2
        ("PO-005", "FineTuningJob/wide", 15),  # big (org/big-70b) is not listed
        ("PO-006", "FineTuningJob/wide", 18),  # cml is not allowed
        ("PO-007", "ModelExport/ungated", 29),
    }
    assert all("policy key" in (d.detail or "") and "ftctl.toml:" in (d.detail or "") for d in found)
    assert all(d.severity.is_error() for d in found)


def test_the_default_backend_counts_when_a_job_names_none(loaded: tuple[list[Manifest], dict[str, str]]) -> None:
    manifests, _ = loaded
    policy = PolicySettings(allowed_backends=("cml",))
    assert {d.address for d in check_manifests(manifests, policy, default_backend="local")} == {"FineTuningJob/ok"}
    assert not check_manifests(manifests, policy, default_backend="cml")


def test_only_objects_the_plan_changes_or_launches_are_blocked(loaded: tuple[list[Manifest], dict[str, str]]) -> None:
    manifests, _ = loaded
    found = check_manifests(manifests, PolicySettings(allowed_base_models=("tiny",)))
    launching = Change("FineTuningJob", "wide", Action.REPLACE, "r", launches=(Launch("j", "train", 1, {}),))
    unchanged = Change("FineTuningJob", "ok", Action.NOOP, "in sync")
    waiting = Change("ModelExport", "ungated", Action.CREATE, "waits", waits_for=("FineTuningJob/ok",))
    blockers = blockers_of(found, [launching, unchanged, waiting])
    assert {(b.address, b.code, b.policy_key) for b in blockers} == {
        ("FineTuningJob/wide", "PO-005", "allowed_base_models"), ("ModelExport/ungated", "PO-005", "allowed_base_models")}
    assert all(b.file.endswith("m.yaml") for b in blockers)


def _job(device: str, device_hours: float, cost: float, *, known: bool = True) -> JobEstimate:
    return JobEstimate("FineTuningJob/j", "train", device, 1, 100, 1.0, device_hours, device_hours, cost, "b", known=known)


def test_the_plan_totals_against_the_budget() -> None:
    policy, _ = _read(TOML)
    estimate = CostEstimate.of((_job("gpu", 3.0, 7.5), _job("a100", 2.0, 8.0), _job("cpu", 100.0, 1.0), _job("gpu", 50, 50, known=False)))
    assert (estimate.gpu_hours, estimate.cpu_hours, estimate.cost) == (5.0, 100.0, 16.5)  # the unknown job counts 0
    blockers = check_totals(estimate, policy)
    assert [(b.code, b.policy_key, b.file, b.line) for b in blockers] == [("PO-001", "max_gpu_hours", "ftctl.toml", 3),
                                                                           ("PO-002", "max_cost", "ftctl.toml", 4)]
    assert "5 GPU-hours, more than policy max_gpu_hours 4" in blockers[0].message
    assert not check_totals(CostEstimate.of((_job("gpu", 1.0, 1.0),)), policy)
    assert not check_totals(None, policy)


def test_an_override_waives_only_its_keys() -> None:
    blockers = (Blocker("plan", "PO-002", "over budget", "max_cost", "ftctl.toml", 4),
                Blocker("FineTuningJob/j", "PO-005", "model", "allowed_base_models", "m.yaml", 3),
                Blocker("Dataset/d", "PL-002", "protected"))
    plan = Plan(store="s", serial=0, read={}, blockers=blockers)
    rest, waived = waive(plan, Override(("max_cost",), "approved"))
    assert waived == [blockers[0]] and rest.blockers == blockers[1:]
    rest, waived = waive(plan, Override(("max_cost", "allowed_base_models"), "approved"))
    assert rest.blockers == (blockers[2],)  # protection is never a policy key
    assert waive(plan, None) == (plan, [])
    record = Override(("max_cost",), "approved", "alice").record(waived)
    assert record == {"policy_override": ["max_cost"], "reason": "approved", "actor": "alice",
                      "waived": ["PO-002 plan: over budget", "PO-005 FineTuningJob/j: model"]}
    assert unknown_keys(["max_cost", "max_cots"]) == ["'max_cots' is no policy key (did you mean 'max_cost'?)"]


def test_the_toml_of_the_readme_section_reads(tmp_path: Path) -> None:
    """What the README's Policy section shows is a file this ftctl accepts."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Policy")
    block = readme[readme.index("```toml", start) + len("```toml"):readme.index("```", readme.index("```toml", start) + 7)]
    policy, estimates = _read(dedent(block))
    assert policy.max_cost is not None and estimates is not None


SWEPT_EVALUATION = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: big}
spec: {type: huggingface, huggingface_model_name: org/big-70b}
---
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: d}
spec: {type: huggingface, huggingface_name: org/data}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: s}
spec: {base_model: big, dataset: d, matrix: {lora_config.r: [8, 16, 32]}}
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: e}
spec:
  dataset: d
  combinations:
    - {model: big, sweep: s}
"""


def test_a_swept_evaluation_breaks_a_policy_once_at_its_line(tmp_path: Path) -> None:
    """The combinations a sweep expands share the line of `sweep:` and its model: one violation there,
    not one per trial (each trial job still has its own)."""
    from reconciler.sweeps import expand

    (tmp_path / "m.yaml").write_text(SWEPT_EVALUATION, encoding="utf-8")
    result = load_paths([str(tmp_path)], roots=ReadRoots(str(tmp_path)))
    expanded = expand(result.manifests)
    found = resolve_positions(check_manifests(expanded.manifests, PolicySettings(allowed_base_models=("tiny",))), result.sources)
    by_object = sorted((d.address, d.location.line if d.location else 0) for d in found)
    assert [a for a, _ in by_object].count("EvaluationJob/e") == 1, by_object
    assert len([a for a, _ in by_object if a.startswith("FineTuningJob/s-")]) == 3, by_object
