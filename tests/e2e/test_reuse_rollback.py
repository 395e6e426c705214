"""Reverting a training change is an instant rollback (issue 13, item 4), through the real CLI on
the fake backend (a test finishes each job by writing its result; a launch is a job folder):

3 epochs (g1) -> 5 epochs (g2) -> back to 3: the plan says the training reuses g1's adapter (code
`reuse`, the earlier job, its commit), apply launches nothing (the jobs folder is unchanged), the
store's job row and adapter named `demo-ticketing-lora` are g1's again (g2's renamed `-g2`),
ftctl's record points at g1's row, and the next plan changes nothing. The evaluation of the reused
adapter reuses g1's evaluation results the same way (no evaluation job is launched); the export
runs again, registering the reused adapter as the registry's newest version.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.helpers import DEMO, converge, ftctl, job_folders, make_demo, query, show

TRAIN, EVAL = "demo-ticketing-lora", "demo-base-vs-lora"
FAKE = {"FTCTL_BACKEND": "fake", "FTCTL_COMMIT_SHA": "c0ffee1"}


def _epochs(root: Path, epochs: int) -> None:
    configs = root / DEMO / "configs.yaml"
    text, changed = re.subn(r"num_train_epochs: \d+", f"num_train_epochs: {epochs}", configs.read_text(encoding="utf-8"), count=1)
    assert changed == 1
    configs.write_text(text, encoding="utf-8")


def _jobs(root: Path) -> dict[str, Path]:
    return job_folders(root / ".app" / "jobs")


def _plan_json(root: Path, env: dict[str, str]) -> dict[str, object]:
    shown = ftctl(root, "plan", DEMO, "--offline", "--format", "json", env=env)
    assert shown.returncode in (0, 2), show(shown)
    return json.loads(shown.stdout)


def test_reverting_a_training_change_reuses_the_earlier_adapter_and_launches_nothing(tmp_path: Path) -> None:
    root = make_demo(tmp_path / "project")
    db = root / ".app" / "state.db"
    _epochs(root, 3)
    g1_jobs = converge(root, FAKE)
    [g1_train] = [j for j in g1_jobs if j.startswith("ftctl-train-")]
    [(g1_row, g1_adapter)] = query(db, "SELECT j.id, a.id FROM fine_tuning_jobs j JOIN adapters a ON a.fine_tuning_job_id = j.id")

    _epochs(root, 5)
    g2_jobs = converge(root, FAKE)
    assert len([j for j in g2_jobs if j.startswith("ftctl-train-")]) == 2

    _epochs(root, 3)
    plan = _plan_json(root, {**FAKE, "FTCTL_COMMIT_SHA": "later"})
    [train] = [c for c in plan["changes"] if c["name"] == TRAIN]  # type: ignore[index,union-attr]
    assert train["consequence"] == "reuse" and train["launches"] == []
    [reuse] = train["reuses"]
    assert (reuse["job_name"], reuse["generation"], reuse["commit"]) == (g1_train, 1, "c0ffee1")
    assert reuse["product"] == f"adapters/{g1_adapter}"
    text = ftctl(root, "plan", DEMO, "--offline", env=FAKE)
    assert f"reuses adapter {TRAIN}-g1" in text.stdout and "0 GPU-hours" in text.stdout, show(text)

    before = set(_jobs(root))
    final = converge(root, FAKE)
    # Nothing trains or evaluates again; the export registers the reused adapter as the registry's
    # newest version (the registry serves its newest: g2's would stay served otherwise).
    assert [j.split("-")[1] for j in final - before] == ["export"], sorted(final - before)
    # The Studio joins a job to its adapter by adapter_name: the name is g1's job and adapter again.
    named = query(db, "SELECT j.id, a.id FROM fine_tuning_jobs j JOIN adapters a ON a.name = j.adapter_name "
                      "WHERE j.adapter_name = ?", (TRAIN,))
    assert named == [(g1_row, g1_adapter)]
    assert sorted(r[0] for r in query(db, "SELECT adapter_name FROM fine_tuning_jobs")) == [TRAIN, f"{TRAIN}-g2"]
    assert query(db, "SELECT store_id, generation FROM ftctl_objects WHERE name = ?", (TRAIN,)) == [(g1_row, 3)]
    [(reused_from,)] = query(db, "SELECT reused_from FROM ftctl_lineage WHERE name = ? AND generation = 3", (TRAIN,))
    assert reused_from == g1_train
    # The evaluation of the reused adapter took g1's results: its rows record g1's evaluation jobs.
    g1_evals = {j for j in g1_jobs if j.startswith("ftctl-eval-")}
    recorded = {r[0] for r in query(db, "SELECT cml_job_id FROM evaluation_jobs")}
    assert recorded == g1_evals, (recorded, g1_evals)
    again = _plan_json(root, FAKE)
    assert [c["name"] for c in again["changes"] if c["action"] != "noop" or c["launches"]] == []  # type: ignore[index,union-attr]
