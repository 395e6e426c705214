"""A sweep for real (issue 13, item 1): specs/demo with its training turned into a 2-trial sweep
(num_train_epochs 1 and 15) on the tiny model, the local backend, `ftctl apply --wait`.

Both trials train (a real trl run each: one Studio job row and one adapter per trial), one
EvaluationJob evaluates the base model and both trials, and the ModelExport selects the trial with
the best rougeL (the 15-epoch one learns the task; one epoch does not) and exports it through the
gate to MLflow's registry. The plan after says which trial was chosen and why, and plans nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import local_ftctl, make_trainable_demo, query

pytestmark = [pytest.mark.ml, pytest.mark.slow]
torch = pytest.importorskip("torch", reason="the job side (make install-train) is not installed")
mlflow = pytest.importorskip("mlflow", reason="the job side (make install-train) is not installed")

SWEEP = "  matrix:\n    training_arguments.num_train_epochs: [1, 15]\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_trainable_demo(tmp_path_factory.mktemp("sweep"))
    pipeline = root / "specs/demo/pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    text = text.replace("  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}\n",
                        "  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}\n" + SWEEP, 1)
    text = text.replace("    - {model: tiny-llama, adapter: demo-ticketing-lora}    # the adapter the job above trains",
                        "    - {sweep: demo-ticketing-lora}")
    text = text.replace("  adapter: demo-ticketing-lora\n", "  select: {evaluation: demo-base-vs-lora, metric: rougeL, mode: max}\n")
    assert text.count("sweep") == 1 and "select:" in text and SWEEP in text
    pipeline.write_text(text, encoding="utf-8")
    return root


def test_a_sweep_trains_each_trial_evaluates_all_and_exports_the_best(project: Path) -> None:
    plan = local_ftctl(project, "plan", "--offline", "--format", "json", "specs/demo")
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    trials = {c["name"] for c in json.loads(plan.stdout)["changes"] if c["kind"] == "FineTuningJob"}
    assert trials == {"demo-ticketing-lora-epochs1", "demo-ticketing-lora-epochs15"}

    done = local_ftctl(project, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.5", "specs/demo")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    db = project / ".app/state.db"
    adapters = dict(query(db, "SELECT name, fine_tuning_job_id FROM adapters"))
    assert set(adapters) == {"demo-ticketing-lora-epochs1", "demo-ticketing-lora-epochs15"}
    jobs = dict(query(db, "SELECT adapter_name, id FROM fine_tuning_jobs"))
    assert jobs == {name: adapters[name] for name in adapters}  # one Studio job row per trial, its adapter linked
    evaluated = query(db, "SELECT adapter_id FROM evaluation_jobs")
    assert len(evaluated) == 3  # the base model and both trials, one evaluation

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project}/.app/mlflow.db")
    [version] = client.search_model_versions("name = 'demo-ticketing'")
    assert str(version.version) == "1"

    again = local_ftctl(project, "plan", "--offline", "--format", "json", "specs/demo")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    after = json.loads(again.stdout)
    export = next(c for c in after["changes"] if c["kind"] == "ModelExport")
    chosen = export["chosen"]
    assert chosen["adapter"] == "demo-ticketing-lora-epochs15" and chosen["pending"] == []
    assert chosen["scores"]["demo-ticketing-lora-epochs15"] > chosen["scores"]["demo-ticketing-lora-epochs1"]
    assert chosen["scores"]["demo-ticketing-lora-epochs15"] >= 0.8, chosen
    assert all(c["action"] == "noop" for c in after["changes"]), [c for c in after["changes"] if c["action"] != "noop"]

    status = local_ftctl(project, "status", "--offline", "specs/demo")
    assert status.returncode == 0, status.stdout
    assert "FineTuningJob/demo-ticketing-lora-epochs1" in status.stdout or "demo-ticketing-lora-epochs1" in status.stdout
