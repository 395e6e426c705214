"""What `ftctl status`, `get` and `describe` say of jobs the Studio ran before `ftctl import` adopted them.

An adopted training or evaluation is history: ftctl launched nothing for it, so its jobs are the
Studio's CML jobs its rows record (`cml_job_id`), not ftctl jobs "not launched". A training that
registered an adapter succeeded; where the Studio's rows do not say how a run ended (an evaluation's
combinations, a training with no adapter) its state is unknown. Real CLI, Studio-made stores copied
into tmp_path (tests/fixtures/studio).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import ftctl, jobs_env, show
from tests.e2e.test_studio_adoption import STORE, studio_project


def run(root: Path, *args: str) -> str:
    done = ftctl(root, *args, env=jobs_env(root / "jobs"), timeout=180)
    assert done.returncode == 0, show(done)
    return done.stdout


@pytest.fixture
def evaluated(tmp_path: Path) -> Path:
    """evaluated.db imported: a finished training (its adapter registered) and a 3-combination evaluation."""
    root = studio_project(tmp_path / "project", "evaluated.db")
    run(root, "import", "--auto-approve")
    return root


def job_rows(text: str) -> dict[str, list[str]]:
    """The jobs table of `status`: job -> its cells after the name (backend, state words...)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("JOB "))
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1:] if line.strip()}


def test_status_shows_where_an_imported_job_ran_and_how_it_ended(evaluated: Path) -> None:
    text = run(evaluated, "status", "imported")
    jobs = job_rows(text)
    assert jobs["cmljob-train-0001"][:3] == ["studio", "succeeded", "(imported)"], text
    for run_id in ("cmljob-eval-0001", "cmljob-eval-0002", "cmljob-eval-0003"):
        assert jobs[run_id][:3] == ["studio", "unknown", "(imported)"], text
    assert "not launched" not in text and "ftctl-" not in text, text
    assert len(jobs) == 4, text

    data = json.loads(run(evaluated, "status", "imported", "--format", "json"))
    [train] = [j for j in data["jobs"] if j["kind"] == "FineTuningJob"]
    assert train == {**train, "job": "cmljob-train-0001", "backend": "studio", "state": "succeeded", "imported": True}
    assert "registered adapter qwen-ticket-triage" in train["summary"]
    evals = [j for j in data["jobs"] if j["kind"] == "EvaluationJob"]
    assert sorted(j["job"] for j in evals) == ["cmljob-eval-0001", "cmljob-eval-0002", "cmljob-eval-0003"]
    assert {(j["state"], j["imported"]) for j in evals} == {("unknown", True)}
    health = {(o["kind"], o["name"]): o["health"] for o in data["objects"]}
    assert health[("FineTuningJob", "qwen-ticket-triage")] == "succeeded"
    assert health[("EvaluationJob", "evaluation-5bc8fbbc")] == "unknown"
    assert health[("Adapter", "qwen-ticket-triage")] == "healthy"


def test_get_and_describe_read_the_imported_runs_from_the_rows(evaluated: Path) -> None:
    [_, row] = run(evaluated, "get", "ftjobs").splitlines()
    assert row.split()[:3] == ["qwen-ticket-triage", "-", "succeeded"], row  # without -f: from the rows, not "pending"
    [_, evaluation] = run(evaluated, "get", "evals").splitlines()
    assert evaluation.split()[2] == "unknown", evaluation

    described = run(evaluated, "describe", "FineTuningJob/qwen-ticket-triage")
    jobs = described.split("\nJobs:\n", 1)[1].split("\nUses:", 1)[0]
    assert "cmljob-train-0001:" in jobs and "backend: studio" in jobs, described
    assert "state: succeeded (imported): ran in the Studio as cmljob-train-0001; registered adapter qwen-ticket-triage" in jobs
    assert "Health:      succeeded" in described and "not launched" not in described

    doc = json.loads(run(evaluated, "describe", "EvaluationJob/evaluation-5bc8fbbc", "--format", "json"))
    assert doc["health"] == "unknown"
    assert sorted((j["job"], j["state"], j["imported"]) for j in doc["jobs"]) == [
        ("cmljob-eval-0001", "unknown", True), ("cmljob-eval-0002", "unknown", True), ("cmljob-eval-0003", "unknown", True)]


def test_a_training_that_registered_no_adapter_is_unknown(tmp_path: Path) -> None:
    root = studio_project(tmp_path / "project", "axolotl.db")
    run(root, "import", "--auto-approve")
    data = json.loads(run(root, "status", "imported", "--format", "json"))
    [train] = [j for j in data["jobs"] if j["kind"] == "FineTuningJob"]
    assert (train["job"], train["state"], train["imported"]) == ("cmljob-train-0002", "unknown", True)
    assert "registered adapter" not in train["summary"]
    assert (root / STORE).exists()


def test_history_applied_into_an_empty_store_is_still_the_studios(evaluated: Path) -> None:
    """The imported manifests name their runs (cml_job_id): applied into another, empty store they
    write the rows as they were and launch nothing, and that store's status shows the same history."""
    fresh = evaluated / "fresh.db"
    run(evaluated, "apply", "imported", "--store", str(fresh), "--create-store", "--auto-approve")
    jobs = job_rows(run(evaluated, "status", "imported", "--store", str(fresh)))
    assert jobs["cmljob-train-0001"][:3] == ["studio", "succeeded", "(imported)"], jobs
    assert not [j for j in jobs if j.startswith("ftctl-")], jobs
