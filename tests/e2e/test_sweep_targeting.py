"""A sweep's address names all its trials (issue 13): `--target FineTuningJob/<sweep>`, `-l` on the
sweep's labels, `--replace`, and `status`, `logs` and `cancel` of `FineTuningJob/<sweep>`.

The demo's training as a 2-trial sweep (1 and 2 epochs) beside a plain training that is no part of
it, planned and applied on the fake backend through the real CLI; a store in tmp_path.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.plan import Action, Plan, Selection
from tests.e2e.helpers import DEMO, apply, ftctl, job_folders, jobs_env, make_demo, show

SWEEP = "FineTuningJob/demo-ticketing-lora"
TRIALS = {"FineTuningJob/demo-ticketing-lora-epochs1", "FineTuningJob/demo-ticketing-lora-epochs2"}
OTHER = "FineTuningJob/other-lora"
STORE = "state.db"
PLAIN = """---
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {name: other-lora, labels: {project: demo}}
spec:
  base_model: tiny-llama
  dataset: demo-tickets
  prompt: demo-ticketing
  adapter_name: other-lora
  lora_config: demo-lora
  training_arguments: demo-training
  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = make_demo(tmp_path / "project")
    pipeline = root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    text = text.replace("  labels: {project: demo}\n", "  labels: {project: demo, stage: sweep}\n", 1)
    text = text.replace("  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}\n",
                        "  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}\n"
                        "  matrix:\n    training_arguments.num_train_epochs: [1, 2]\n", 1)
    text = text.replace("    - {model: tiny-llama, adapter: demo-ticketing-lora}    # the adapter the job above trains",
                        "    - {sweep: demo-ticketing-lora}")
    text = text.replace("  adapter: demo-ticketing-lora\n", "  select: {evaluation: demo-base-vs-lora, metric: rougeL, mode: max}\n")
    pipeline.write_text(text + PLAIN, encoding="utf-8")
    return root, {**jobs_env(root / "jobs"), "FTCTL_MAX_RUNNING_JOBS": "4"}


def plan_of(root: Path, env: dict[str, str], *args: str) -> Plan:
    out = root / "plan.json"
    out.unlink(missing_ok=True)
    done = ftctl(root, "plan", DEMO, "--offline", "--store", STORE, "-o", str(out), *args, env=env)
    assert done.returncode in (0, 2) and out.exists(), show(done)
    return Plan.from_json(out.read_text(encoding="utf-8"))


def trainings(plan: Plan) -> set[str]:
    return {f"{c.kind}/{c.name}" for c in plan.changes if c.kind == "FineTuningJob"}


def test_target_and_labels_of_a_sweep_select_every_trial(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    targeted = plan_of(root, env, "--target", SWEEP)
    assert trainings(targeted) == TRIALS  # not other-lora, and no 'unknown target' for the sweep
    assert targeted.partial == Selection(targets=(SWEEP,))
    assert not any(c.kind in ("EvaluationJob", "ModelExport") for c in targeted.changes)
    labelled = plan_of(root, env, "-l", "stage=sweep")
    assert trainings(labelled) == TRIALS
    typo = ftctl(root, "plan", DEMO, "--offline", "--store", STORE, "--target", SWEEP + "x", env=env)
    assert typo.returncode == 1 and f"did you mean {SWEEP}?" in typo.stderr, show(typo)


def test_status_logs_cancel_and_replace_of_a_sweep_address_its_trials(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    applied = apply(root, DEMO, store=STORE, env=env)
    assert applied.returncode == 0, show(applied)
    launched = {name for name in job_folders(root / "jobs") if name.startswith("ftctl-train-")}
    trial_jobs = {name for name in launched if "-epochs" in name}
    assert len(trial_jobs) == 2 and len(launched) == 3, launched

    status = ftctl(root, "status", DEMO, "--offline", "--store", STORE, "--target", SWEEP, "--format", "json", env=env)
    assert status.returncode in (0, 2), show(status)
    data = json.loads(status.stdout)
    assert {f"{o['kind']}/{o['name']}" for o in data["objects"] if o["kind"] == "FineTuningJob"} == TRIALS
    assert {j["job"] for j in data["jobs"]} == trial_jobs

    logs = ftctl(root, "logs", SWEEP, "--store", STORE, "--file", DEMO, env=env)
    assert logs.returncode == 0, show(logs)
    assert {line.split()[1] for line in logs.stderr.splitlines() if line.startswith("==> ")} == trial_jobs, show(logs)
    by_default = ftctl(root, "logs", SWEEP, "--store", STORE, env=env)  # the manifests of the current folder
    assert by_default.returncode == 0 and by_default.stderr == logs.stderr, show(by_default)

    cancelled = ftctl(root, "cancel", SWEEP, "--store", STORE, "--file", DEMO, env=env)
    assert cancelled.returncode == 0, show(cancelled)
    assert all(job in cancelled.stdout for job in trial_jobs) and "other-lora" not in cancelled.stdout, show(cancelled)
    for job in trial_jobs:
        result = json.loads((job_folders(root / "jobs")[job] / "result.json").read_text(encoding="utf-8"))
        assert result["error"]["error_class"] == "cancelled", result
    other = next(iter(launched - trial_jobs))
    assert not (job_folders(root / "jobs")[other] / "result.json").exists(), "cancel of the sweep stopped another job"

    replaced = plan_of(root, env, "--replace", SWEEP)
    assert {f"{c.kind}/{c.name}" for c in replaced.changes if c.action is Action.REPLACE} == TRIALS
    unknown = ftctl(root, "logs", "FineTuningJob/no-such-sweep", "--store", STORE, "--file", DEMO, env=env)
    assert unknown.returncode == 1 and "runs no job" in unknown.stderr and "Traceback" not in unknown.stderr, show(unknown)
