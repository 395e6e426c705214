"""Adding a trial to a sweep that an EvaluationJob evaluates (issue 13, item 1: "adding one value
plans 1 new trial"): the evaluation runs again as a new generation (its combinations changed), but
each combination whose inputs equal a combination that already succeeded reuses that job's results
(content-addressed reuse, `reconciler.reuse`): only the new trial's combination launches.

The demo's training as a sweep of 1 and 2 epochs, its evaluation over `{sweep: ...}` (the base
model and each trial), through the real CLI on the fake backend (a test finishes each job by
writing its result); then a third value (3 epochs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.helpers import DEMO, apply, converge, finish_new, ftctl, job_folders, make_demo, show

FAKE = {"FTCTL_BACKEND": "fake", "FTCTL_COMMIT_SHA": "c0ffee1"}
EVAL = "demo-base-vs-lora"
MATRIX = "  matrix:\n    training_arguments.num_train_epochs: %s\n"


def _pipeline(root: Path, epochs: str) -> None:
    """The demo's pipeline with its training swept over `epochs` and the evaluation over the sweep (no export)."""
    path = root / DEMO / "pipeline.yaml"
    text = (root / DEMO / "pipeline.yaml.orig").read_text(encoding="utf-8")
    text = text.replace("  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}\n",
                        "  resources: {cpu: 2, memory: 4, gpu: 0, num_workers: 1}\n" + MATRIX % epochs, 1)
    text = text.replace("    - {model: tiny-llama, adapter: demo-ticketing-lora}    # the adapter the job above trains",
                        "    - {sweep: demo-ticketing-lora}")
    text = text.split("\n---\napiVersion: ftctl/v1\nkind: ModelExport")[0] + "\n"
    path.write_text(text, encoding="utf-8")


def _jobs(root: Path) -> dict[str, Path]:
    return job_folders(root / ".app" / "jobs")


def _plan(root: Path) -> dict[str, Any]:
    shown = ftctl(root, "plan", DEMO, "--offline", "--format", "json", env=FAKE)
    assert shown.returncode in (0, 2), show(shown)
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


def _evaluation(plan: dict[str, Any]) -> dict[str, Any]:
    [change] = [c for c in plan["changes"] if c["kind"] == "EvaluationJob" and c["name"] == EVAL]
    return change  # type: ignore[no-any-return]


def test_adding_a_trial_launches_only_its_evaluation_combination(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    (root / DEMO / "pipeline.yaml.orig").write_text((root / DEMO / "pipeline.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    _pipeline(root, "[1, 2]")
    first = converge(root, FAKE)
    first_evals = {j for j in first if j.startswith("ftctl-eval-")}
    assert len(first_evals) == 3 and len([j for j in first if j.startswith("ftctl-train-")]) == 2  # base + 2 trials

    _pipeline(root, "[1, 2, 3]")
    grown = _plan(root)
    trainings = {c["name"]: c for c in grown["changes"] if c["kind"] == "FineTuningJob"}
    assert {n for n, c in trainings.items() if c["action"] != "noop"} == {"demo-ticketing-lora-epochs3"}
    assert not _evaluation(grown).get("launches"), "the evaluation launched before the new trial's adapter exists"

    known = set(first)
    evaluation: dict[str, Any] = {}
    for _ in range(4):  # the new trial trains and registers its adapter; then the evaluation's new generation
        evaluation = _evaluation(_plan(root))
        if evaluation.get("launches") or evaluation.get("reuses"):
            break
        done = apply(root, DEMO, env=FAKE)
        assert done.returncode == 0, show(done)
        known = finish_new(root, known)
    launched = evaluation.get("launches") or []
    assert len(launched) == 1, evaluation  # the new trial's combination only
    adapters = [c.get("adapter_name") or c.get("label") for c in launched[0]["input"]["evaluate"]["candidates"]]
    assert any("epochs3" in str(a) for a in adapters), launched[0]["input"]["evaluate"]["candidates"]
    reused = {r["job_name"] for r in evaluation.get("reuses") or []}
    assert reused == first_evals, evaluation  # base and the two earlier trials: their results, 0 launches

    before = set(_jobs(root))
    done = apply(root, DEMO, env=FAKE)
    assert done.returncode == 0, show(done)
    new = set(_jobs(root)) - before
    assert len(new) == 1 and next(iter(new)).startswith("ftctl-eval-"), new
