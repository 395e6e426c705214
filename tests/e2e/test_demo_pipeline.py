"""The whole pipeline for real: specs/demo applied with the local backend on the tiny model.

`ftctl apply --wait` trains a LoRA adapter (a real trl run in a subprocess), registers it, runs the
two evaluations (base alone, base + adapter) into MLflow, passes the export gate and registers the
merged model in MLflow's registry. The adapter has learnt the task: on the held-out rows its exact
match is at least 0.8 while the base model's stays near 0, so a change that breaks training fails here.
The apply summary, `ftctl status` (text and JSON) and the markdown plan show those figures as base vs
adapter. Then a second apply plans nothing and launches nothing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.helpers import local_ftctl, make_trainable_demo, query

pytestmark = [pytest.mark.ml, pytest.mark.slow]
torch = pytest.importorskip("torch", reason="the job side (make install-train) is not installed")
mlflow = pytest.importorskip("mlflow", reason="the job side (make install-train) is not installed")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trainable_demo(tmp_path_factory.mktemp("demo"))


def test_apply_wait_trains_evaluates_and_exports(project: Path) -> None:
    done = local_ftctl(project, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.5", "specs/demo")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Converged." in done.stderr
    db = project / ".app/state.db"

    [(adapter_id, location, job_id)] = query(db, "SELECT id, location, fine_tuning_job_id FROM adapters WHERE name = 'demo-ticketing-lora'")
    assert (project / str(location) / "adapter_config.json").is_file()
    [(ft_id, ft_cml)] = query(db, "SELECT id, cml_job_id FROM fine_tuning_jobs")
    assert job_id == ft_id and str(ft_cml).startswith("ftctl-train-")
    evaluations = query(db, "SELECT parent_job_id, adapter_id, cml_job_id FROM evaluation_jobs ORDER BY adapter_id")
    assert len(evaluations) == 2 and len({e[0] for e in evaluations}) == 1
    assert sorted(str(e[1] or "") for e in evaluations) == sorted(["", str(adapter_id)])
    assert all(str(e[2]).startswith("ftctl-eval-") for e in evaluations)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project}/.app/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=50)
    parent = str(evaluations[0][0])
    evaluation_runs = [r for r in runs if r.data.tags.get("ftctl.parent_job_id") == parent]
    assert len(evaluation_runs) == 2
    exact = {run.data.tags["ftctl.adapter"] == "base": run.data.metrics["exact_match"] for run in evaluation_runs}
    # the adapter learnt the task: it names the action of most held-out messages; the base names none
    assert exact[False] >= 0.8 and exact[True] <= 0.2, exact
    [version] = client.search_model_versions("name = 'demo-ticketing'")
    assert str(version.version) == "1"

    status = local_ftctl(project, "status", "--offline", "--format", "json", "specs/demo")
    assert status.returncode == 0, status.stdout
    report = json.loads(status.stdout)
    health = {(r["kind"], r["name"]): r["health"] for r in report["objects"]}
    assert health[("ModelExport", "demo-ticketing")] == "succeeded"
    assert sorted(j["metrics"]["exact_match"] for j in report["jobs"] if j["kind"] == "EvaluationJob") == sorted(exact.values())
    [compared] = [e for e in report["evaluations"] if e["metric"] == "exact_match"]
    assert compared == {"evaluation": "demo-base-vs-lora", "metric": "exact_match", "base_label": "tiny-llama (base)",
                        "base": exact[True], "adapter_label": "demo-ticketing-lora", "adapter": exact[False],
                        "delta": exact[False] - exact[True]}

    shown = f"exact_match {exact[True]:.2f} → {exact[False]:.2f} ({exact[False] - exact[True]:+.2f})"
    assert shown in done.stdout  # the apply summary, after "Converged."
    table = local_ftctl(project, "status", "--offline", "specs/demo")
    lines = table.stdout.splitlines()  # 100 columns when piped: one metric a line
    assert "EvaluationJob/demo-base-vs-lora: tiny-llama (base) → demo-ticketing-lora:" in lines, table.stdout
    assert f"  {shown}" in lines and max(len(row) for row in lines) <= 100, table.stdout
    comment = local_ftctl(project, "plan", "--offline", "--format", "markdown", "specs/demo")
    assert f"tiny-llama (base) → demo-ticketing-lora: `{shown}`" in comment.stdout, comment.stdout


def test_second_apply_plans_and_launches_nothing(project: Path) -> None:
    launches = sorted(p.stat().st_mtime_ns for p in (project / ".app/jobs").glob("*/*/launch.json"))  # <store id>/<job>/
    assert len(launches) == 4, "the training, two evaluations and the export ran"
    history = query(project / ".app/state.db", "SELECT count(*) FROM ftctl_history")
    again = local_ftctl(project, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.5", "specs/demo")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "No changes" in again.stdout
    assert sorted(p.stat().st_mtime_ns for p in (project / ".app/jobs").glob("*/*/launch.json")) == launches
    assert query(project / ".app/state.db", "SELECT count(*) FROM ftctl_history") == history
    plan = local_ftctl(project, "plan", "--offline", "--detailed-exitcode", "specs/demo")
    assert plan.returncode == 0, plan.stdout


def test_mlflow_tags_carry_the_lineage_ftctl_records(project: Path) -> None:
    """Issue 13, item 5: the ftctl.lineage.* tags of the training run, both evaluation runs and the
    registered version are the digests ftctl_lineage holds for those jobs (one real run, read back);
    `ftctl history` and `describe` show the same chain."""
    from reconciler.store.read import lineage_record

    with sqlite3.connect(project / ".app/state.db") as conn:
        conn.row_factory = sqlite3.Row
        recorded = {row["job_name"]: lineage_record(dict(row)) for row in conn.execute("SELECT * FROM ftctl_lineage")}
    assert sorted(r.job_kind for r in recorded.values()) == ["evaluate", "evaluate", "export", "train"]
    [train] = [r for r in recorded.values() if r.job_kind == "train"]
    assert len(train.dataset_digest) == 64 and train.base_revision.startswith("files:") and train.estimate["known"] is True
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project}/.app/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=50)

    def lineage_tags(tags: dict[str, str]) -> dict[str, str]:
        return {k.removeprefix("ftctl.lineage."): v for k, v in tags.items() if k.startswith("ftctl.lineage.")}

    tagged = [r for r in runs if r.data.tags.get("ftctl.job_name") in recorded]
    assert sorted(r.data.tags["ftctl.kind"] for r in tagged) == ["evaluate", "evaluate", "export", "train"]
    for run in tagged:
        assert lineage_tags(run.data.tags) == recorded[run.data.tags["ftctl.job_name"]].digests(), run.data.tags
    [version] = client.search_model_versions("name = 'demo-ticketing'")
    assert lineage_tags(version.tags) == recorded[version.tags["ftctl.job_name"]].digests()

    history = local_ftctl(project, "history", "FineTuningJob/demo-ticketing-lora", "--format", "json")
    assert history.returncode == 0, history.stderr
    [generation] = json.loads(history.stdout)["generations"]
    assert generation["launched"] and generation["runtime_s"] > 0 and generation["jobs"][0]["job_name"] == train.job_name
    assert generation["jobs"][0]["reuse_key"] == train.reuse_key and generation["base_revision"] == train.base_revision
    described = local_ftctl(project, "describe", "ModelExport/demo-ticketing", "--format", "json")
    assert described.returncode == 0, described.stderr
    chain = json.loads(described.stdout)["chain"]
    [registry] = [link for link in chain if link["stage"] == "registry"]
    assert registry["what"] == "models:/demo-ticketing/1" and registry["details"]["registered_model_version"] == "1"
    assert [link["what"] for link in chain if link["stage"] == "job"][-1] == train.job_name
