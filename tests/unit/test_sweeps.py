"""Sweeps (issue 13, item 1): a FineTuningJob's matrix expanded into trials (`reconciler.sweeps`),
an EvaluationJob over a sweep's trials, and a ModelExport that selects the best trial
(`reconciler.sweepselect`).

Expansion over manifests loaded from text in tmp_path; diagnostics through `engine.validate` (file,
line, code); plans through `build_plan` over values, each plan applied as values (`applied` of
tests/unit/planning.py) with the jobs' results given as observations: no store or backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from reconciler.engine import make_plan, validate
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import EvaluationJob, FineTuningJob
from reconciler.plan import Action, Change, Choice, Plan, Policy
from reconciler.runtime import JobObservation, JobState
from reconciler.sweeps import MAX_NAME, expand, trial_names
from reconciler.views.plan import render_plan
from tests.unit.planning import INPUTS, applied, load_manifests, plan_of, write_project

BASE = INPUTS + """\
---
apiVersion: ftctl/v1
kind: Config
metadata: {name: lora}
spec: {type: lora_config, config: {r: 8, lora_alpha: 16, task_type: CAUSAL_LM}}
---
apiVersion: ftctl/v1
kind: Config
metadata: {name: train}
spec: {type: training_arguments, config: {num_train_epochs: 1, learning_rate: 2.0e-4}}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: sweep}
spec:
  base_model: m
  dataset: d
  prompt: p
  adapter_name: ad
  lora_config: lora
  training_arguments: train
  matrix:
    training_arguments.learning_rate: %(lrs)s
    lora_config.r: [4, 8]
"""
EVALUATION = """\
---
apiVersion: ftctl/v1
kind: EvaluationJob
metadata: {name: e}
spec:
  dataset: d
  prompt: p
  resources: {cpu: 2, gpu: 0, memory: 8}
  combinations: [{model: m}, {sweep: sweep}]
"""
EXPORT = """\
---
apiVersion: ftctl/v1
kind: ModelExport
metadata: {name: best}
spec:
  select: {evaluation: e, metric: rougeL, mode: %(mode)s}
  gate: {evaluation: e, metric: rougeL, min: 0.5}
"""
LRS3 = "[1.0e-2, 1.0e-3, 3.0e-4]"


def _manifests(tmp_path: Path, text: str) -> list[Manifest]:
    """The manifests of `text`, each sweep expanded into its trials."""
    swept = expand(load_manifests(tmp_path, text))
    assert not swept.diagnostics, swept.diagnostics
    return swept.manifests


def _changes(plan: Plan, kind: str) -> dict[str, Change]:
    return {c.name: c for c in plan.changes if c.kind == kind}


# -- expansion -----------------------------------------------------------------------------------


def test_a_3x2_matrix_expands_into_6_named_trials_each_with_its_adapter_and_values(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, BASE % {"lrs": LRS3})
    trials = {m.name: m.resource for m in manifests if isinstance(m.resource, FineTuningJob)}
    assert sorted(trials) == sorted(f"sweep-lr{lr}-r{r}" for lr in ("0p01", "0p001", "0p0003") for r in (4, 8))
    trial = trials["sweep-lr0p001-r8"]
    assert isinstance(trial, FineTuningJob) and trial.spec.matrix is None
    assert trial.adapter_name == "ad-lr0p001-r8"
    # a varied key of a named Config: the trial carries an inline copy of its body, the rest as written
    assert trial.spec.training_arguments == {"num_train_epochs": 1, "learning_rate": 1.0e-3}
    assert trial.spec.lora_config == {"r": 8, "lora_alpha": 16, "task_type": "CAUSAL_LM"}
    assert trial.spec.base_model == "m" and trial.spec.prompt == "p"


def test_an_evaluation_over_a_sweep_pairs_every_trial_with_its_base_model(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, BASE % {"lrs": LRS3} + EVALUATION)
    evaluation = next(m.resource for m in manifests if isinstance(m.resource, EvaluationJob))
    assert isinstance(evaluation, EvaluationJob)
    combos = [(c.model, c.adapter) for c in evaluation.spec.combinations]
    assert combos[0] == ("m", None)
    assert len(combos) == 7  # the base model, and 6 trials (no cap of 5)
    assert {a for _, a in combos[1:]} == {f"ad-lr{lr}-r{r}" for lr in ("0p01", "0p001", "0p0003") for r in (4, 8)}
    assert {m for m, _ in combos[1:]} == {"m"}


def test_trial_names_are_readable_stable_and_bounded() -> None:
    names = trial_names("job", {"learning_rate": [2e-4, -0.5], "lora_config.lora_alpha": [16], "dataset": ["tickets.v2"], "fp16": [True]})
    assert names[(0, 0, 0, 0)] == "job-lr0p0002-alpha16-data-tickets-v2-fp16-true"
    assert names[(1, 0, 0, 0)] == "job-lrm0p5-alpha16-data-tickets-v2-fp16-true"
    # adding a value names one more trial and renames none
    more = trial_names("job", {"learning_rate": [2e-4, -0.5, 1e-5], "lora_config.lora_alpha": [16], "dataset": ["tickets.v2"], "fp16": [True]})
    assert {k: v for k, v in more.items() if k[0] < 2} == names
    # two keys with one short name: each spelt with every segment's
    assert set(trial_names("j", {"lora_config.r": [4], "user_config.r": [8]}).values()) == {"j-lcr4-ucr8"}
    # a long name keeps its start and ends with a digest of its values, stable per trial
    long = trial_names("j", {"dataset": ["x" * 200, "y" * 200]})
    assert all(len(n) == MAX_NAME and n.startswith("j-data-") for n in long.values())
    assert len(set(long.values())) == 2 and long == trial_names("j", {"dataset": ["x" * 200, "y" * 200]})


def test_diagnostics_of_a_trial_point_at_its_value_in_the_matrix(tmp_path: Path) -> None:
    text = BASE % {"lrs": "[1.0e-2, -1]"}
    text = text.replace("    lora_config.r: [4, 8]\n", "    lora_config.r: [4, 8]\n    lora_config.lora_alpah: [16]\n")
    text = text.replace("  prompt: p\n  adapter_name: ad", "  adapter_name: ad")  # no prompt: FT-101 for every trial
    report = validate([str(write_project(tmp_path, text))], offline=True)
    found = {(d.code, d.location.line if d.location else 0, d.address) for d in report.diagnostics if d.severity.is_error()}
    lines = text.splitlines()
    typo = lines.index("    lora_config.lora_alpah: [16]") + 1
    # a misspelt config key: the library's schema finds it, in every trial, at the matrix key's line
    assert {(c, line) for c, line, _ in found if c == "CF-101"} == {("CF-101", typo)}
    # a finding every trial shares is reported once, for the sweep
    assert [a for c, _, a in found if c == "FT-101"] == ["FineTuningJob/sweep"]
    # a bad value belongs to the trials that carry it, at the value's line
    lr_line = lines.index("    training_arguments.learning_rate: [1.0e-2, -1]") + 1
    assert {(c, line, a) for c, line, a in found if c == "CF-102"} == {("CF-102", lr_line, "FineTuningJob/sweep")}
    assert {c for c, _, _ in found} == {"CF-101", "CF-102", "FT-101"}


def test_a_bad_key_and_a_repeated_value_are_diagnostics_with_codes(tmp_path: Path) -> None:
    text = (BASE % {"lrs": "[1.0e-2, 1.0e-2]"}).replace("    lora_config.r: [4, 8]\n", "    out_dir: [a, b]\n")
    report = validate([str(write_project(tmp_path, text))], offline=True)
    lines = text.splitlines()
    got = {(d.code, d.location.line) for d in report.diagnostics if d.location and d.code.startswith("SW-")}
    assert got == {("SW-002", lines.index("    training_arguments.learning_rate: [1.0e-2, 1.0e-2]") + 1),
                   ("SW-001", lines.index("    out_dir: [a, b]") + 1)}


# -- planning ------------------------------------------------------------------------------------


def test_a_3x2_sweep_plans_6_trials_and_adding_a_value_plans_exactly_one_more(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, BASE % {"lrs": LRS3})
    first = plan_of(manifests, Snapshot())
    jobs = _changes(first, "FineTuningJob")
    assert len(jobs) == 6 and all(c.action is Action.CREATE and len(c.launches) == 1 for c in jobs.values())
    store = applied(Snapshot(), first)
    running = {launch.job_name: JobObservation(launch.job_name, JobState.RUNNING, attempt=1)
               for change in first.changes for launch in change.launches}

    grown = _manifests(tmp_path, BASE % {"lrs": "[1.0e-2, 1.0e-3, 3.0e-4, 1.0e-1]"})
    second = plan_of(grown, store, running)
    jobs = _changes(second, "FineTuningJob")
    changed = {name for name, c in jobs.items() if c.action.is_change()}
    assert changed == {"sweep-lr0p1-r4", "sweep-lr0p1-r8"}  # 1 new value x 2 ranks; the 6 others noop
    assert all(jobs[n].launches for n in changed) and len(jobs) == 8

    # removing a value leaves its trials as orphans; only --prune deletes them
    fewer = _manifests(tmp_path, BASE % {"lrs": "[1.0e-2, 1.0e-3]"})
    kept = plan_of(fewer, store)
    assert {c.name for c in kept.changes if c.orphan} == {"sweep-lr0p0003-r4", "sweep-lr0p0003-r8"}
    assert not [c for c in kept.changes if c.action is Action.DELETE]
    pruned = plan_of(fewer, store, prune=True)
    assert {c.name for c in pruned.changes if c.action is Action.DELETE} == {"sweep-lr0p0003-r4", "sweep-lr0p0003-r8"}


def _trained(snapshot: Snapshot, plan: Plan, results: dict[str, dict[str, float]]) -> tuple[Snapshot, dict[str, JobObservation]]:
    """The store after `plan`, and every job it launched succeeded: a training with its adapter's
    folder, an evaluation with the metrics `results` gives its adapter (by its job's trial)."""
    observations = {}
    for change in plan.changes:
        for launch in change.launches:
            adapter = launch.input["evaluate"]["candidates"][0]["label"] if launch.kind == "evaluate" else ""
            metrics = results.get(adapter, {"rougeL": 0.0}) if launch.kind == "evaluate" else {}
            observations[launch.job_name] = JobObservation(launch.job_name, JobState.SUCCEEDED, attempt=1, metrics=metrics,
                                                           artifacts={"adapter_dir": f"out/{change.name}"})
    return applied(snapshot, plan), observations


def test_the_export_selects_the_best_trial_once_every_trial_is_scored(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, (BASE % {"lrs": "[1.0e-2, 1.0e-3]"}).replace("    lora_config.r: [4, 8]\n", "")
                           + EVALUATION + EXPORT % {"mode": "max"})
    plan = plan_of(manifests, Snapshot())
    export = _changes(plan, "ModelExport")["best"]
    assert export.waits_for == ("EvaluationJob/e",) and export.chosen is not None
    assert export.chosen.adapter == "" and set(export.chosen.pending) == {"ad-lr0p01", "ad-lr0p001"}

    store, seen = _trained(Snapshot(), plan, {})
    plan = plan_of(manifests, store, seen)  # trainings succeeded: adapters registered
    store = applied(store, plan)
    plan = plan_of(manifests, store, seen)  # the evaluation launches over both trials
    assert len(_changes(plan, "EvaluationJob")["e"].launches) == 3
    store, more = _trained(store, plan, {"ad-lr0p01": {"rougeL": 0.61}, "ad-lr0p001": {"rougeL": 0.83}})
    seen |= more
    plan = plan_of(manifests, store, seen)
    export = _changes(plan, "ModelExport")["best"]
    assert export.chosen == Choice("e", "rougeL", "max", "ad-lr0p001", {"ad-lr0p01": 0.61, "ad-lr0p001": 0.83})
    assert len(export.launches) == 1 and "gate open: rougeL 0.83" in export.reason
    assert export.launches[0].input["export"]["adapter_path"] == "out/sweep-lr0p001"
    assert Plan.from_json(plan.to_json()) == plan
    text = render_plan("text", plan)
    assert "selected ad-lr0p001 by rougeL (max) of EvaluationJob/e: 0.83; others: ad-lr0p01 0.61" in text

    lowest = _manifests(tmp_path, (BASE % {"lrs": "[1.0e-2, 1.0e-3]"}).replace("    lora_config.r: [4, 8]\n", "")
                        + EVALUATION + (EXPORT % {"mode": "min"}).replace("min: 0.5", "max: 0.9"))
    chosen = _changes(plan_of(lowest, store, seen), "ModelExport")["best"].chosen
    assert chosen is not None and chosen.adapter == "ad-lr0p01"


# -- cost ----------------------------------------------------------------------------------------

GPU_SWEEP = """\
apiVersion: ftctl/v1
kind: Model
metadata: {name: m}
spec: {type: huggingface, huggingface_model_name: org/model-1B}
---
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: d}
spec: {type: project_csv, location: tickets.csv}
---
apiVersion: ftctl/v1
kind: Prompt
metadata: {name: p}
spec: {dataset: d, prompt_template: "Q: {q}\\nA: {a}", input_template: "Q: {q}\\nA:", completion_template: "{a}"}
---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: sweep}
spec:
  base_model: m
  dataset: d
  prompt: p
  adapter_name: ad
  lora_config: {r: 8, lora_alpha: 16, task_type: CAUSAL_LM}
  training_arguments: {learning_rate: 2.0e-4}
  resources: {cpu: 4, memory: 16, gpu: 1}
  matrix:
    num_epochs: [1, 2, 4]
    lora_config.r: [4, 8]
"""


def test_a_3x2_sweep_on_a_gpu_estimates_each_trial_and_the_total_in_gpu_hours(tmp_path: Path) -> None:
    """100 rows of 30 + 10 characters, a template adding 7 ('Q: ', '\\nA: '): (40 + 7) / 4 = 11.75
    tokens a row; a trial trains 100 x 1.0 x 0.9 x epochs rows on one GPU at the default gpu rate
    (8,000 tokens/s at 1B parameters, 2.50 an hour), the model's 1B from its name."""
    (tmp_path / "ftctl.toml").touch()
    (tmp_path / "tickets.csv").write_text("q,a\n" + "".join(f"{'x' * 30},{'y' * 10}\n" for _ in range(100)), encoding="utf-8")
    report = make_plan([str(write_project(tmp_path, GPU_SWEEP))], store=str(tmp_path / "state.db"), policy=Policy(), offline=True,
                       environ={"FTCTL_JOBS_DIR": str(tmp_path / "jobs")}, seed="sweeps")
    assert report.plan is not None and report.plan.estimate is not None, report.validation.diagnostics
    estimate = report.plan.estimate
    trials = {j.address: j for j in estimate.jobs}
    expected_tokens = {epochs: math.ceil(100 * 1.0 * 0.9 * epochs * 11.75) for epochs in (1, 2, 4)}  # 1058, 2115, 4230
    assert set(trials) == {f"FineTuningJob/sweep-epochs{e}-r{r}" for e in (1, 2, 4) for r in (4, 8)}
    for epochs in (1, 2, 4):
        for r in (4, 8):
            job = trials[f"FineTuningJob/sweep-epochs{epochs}-r{r}"]
            hours = expected_tokens[epochs] / 8000 / 3600
            assert (job.job, job.device, job.devices, job.known, job.tokens) == ("train", "gpu", 1, True, expected_tokens[epochs])
            assert job.device_hours == pytest.approx(hours) and job.cost == pytest.approx(hours * 2.50)
            assert f"x {epochs} epochs" in job.basis and "1B parameters" in job.basis
    total = sum(expected_tokens[e] for e in (1, 2, 4)) * 2 / 8000 / 3600
    assert estimate.gpu_hours == pytest.approx(total) and estimate.cpu_hours == 0
    assert estimate.cost == pytest.approx(total * 2.50)
    shown = json.loads(report.plan.to_json())["estimate"]  # the plan file carries the same figures
    assert len(shown["jobs"]) == 6 and shown["gpu_hours"] == pytest.approx(total)
    text = render_plan("text", report.plan)
    for e in (1, 2, 4):
        hours = expected_tokens[e] / 8000 / 3600
        assert f"{expected_tokens[e]:,} tokens, {hours:.3g} h on 1 gpu, {hours:.3g} GPU-hours" in text
    assert f"Total: {total:.3g} GPU-hours, 0 CPU-hours" in text
