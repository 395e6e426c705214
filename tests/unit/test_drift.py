"""`ftctl drift`: what differs between the manifests and the store, and which rows ftctl does not manage.

A real SQLite store is built by applying manifests with the engine (jobs on the fake backend), then
edited the way the Studio's UI would (rows changed, deleted, added) and the manifests edited the way
Git would. The tests assert what a user sees: the objects listed with their state, the unmanaged
rows, exit codes 0/2/1, a markdown comment that starts with its summary, parseable JSON, and no
secret value in any format. The pure core (`drift_state`, `unmanaged_rows`) is checked table-driven.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from reconciler import engine
from reconciler.cli import main
from reconciler.drift import DriftState, drift_state, unmanaged_rows
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Change, ObservedJob, Policy
from reconciler.runtime import JobState
from tests.e2e.helpers import launch_logs, write_result

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "plan" / "waiting"  # dataset, model, prompt, config, job, evaluation
STORE = "state.db"
SPARE = """apiVersion: ftctl/v1
kind: Model
metadata: {name: spare}
spec: {type: huggingface, huggingface_model_name: bigscience/bloom-1b1, framework: pytorch}
"""
SECRET = "s3cret-value-never-shown"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The manifests applied to state.db: rows written, the training job launched (fake: running)."""
    shutil.copytree(GOLDEN / "data", tmp_path / "data")
    shutil.copytree(GOLDEN / "manifests", tmp_path / "manifests")
    (tmp_path / "ftctl.toml").touch()  # the project root: data/ beside manifests/ is inside it
    (tmp_path / "manifests" / "spare.yaml").write_text(SPARE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FINE_TUNING_STUDIO_SQLITE_DB", raising=False)
    monkeypatch.setenv("FTCTL_BACKEND", "fake")
    monkeypatch.setenv("FTCTL_JOBS_DIR", str(tmp_path / "jobs"))
    report = engine.make_plan(["manifests"], store=STORE, policy=Policy(), offline=True, use_cache=False)
    assert report.plan is not None
    engine.execute_plan(report.plan, store=STORE, lock_wait_s=0)
    return tmp_path


def _sql(*statements: str) -> None:
    with sqlite3.connect(STORE) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


def _train_job(root: Path) -> str:
    """The training job the first apply launched (its name ends with the store's and the input's digests)."""
    [name] = [n for n in launch_logs(root / "jobs") if n.startswith("ftctl-train-tickets-lora-")]
    return name


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(["drift", "manifests", "--store", STORE, "--offline", *args])
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def _drift_everything(root: Path) -> None:
    """One of each: a row changed in the UI, a row deleted there, a failed job, a manifest edited,
    a manifest removed, a row the Studio made itself."""
    write_result(root / "jobs", _train_job(root), "failed", error_class="data", message="bad rows")
    _sql("UPDATE prompts SET prompt_template = 'edited {instruction} {intent}' WHERE name = 'tickets-prompt'",
         "DELETE FROM models WHERE name = 'bloom'",
         "INSERT INTO datasets (id, type, name) VALUES ('d-ui-1', 'huggingface', 'ui-dataset')")
    project_yaml = root / "manifests" / "project.yaml"
    project_yaml.write_text(project_yaml.read_text(encoding="utf-8").replace("Ticketing messages.", "Ticketing messages v2."), encoding="utf-8")
    (root / "manifests" / "spare.yaml").unlink()


def test_a_store_that_matches_its_manifests_has_no_drift(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys)
    assert code == 0
    assert out.startswith("Drift in state.db (serial 1): no drift.")
    code, out, _ = _cli(capsys, "--format", "markdown")
    assert code == 0 and out.splitlines()[0] == "### ftctl drift in `state.db`: no drift"
    code, out, _ = _cli(capsys, "--format", "json")
    assert code == 0 and json.loads(out)["drift"] is False and json.loads(out)["objects"] == []


def test_drift_lists_every_difference_and_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _drift_everything(project)
    code, out, _ = _cli(capsys, "--format", "json")
    assert code == 2
    report = json.loads(out)
    assert {(o["state"], o["kind"], o["name"]) for o in report["objects"]} == {
        ("drifted", "Prompt", "tickets-prompt"),
        ("missing", "Model", "bloom"),
        ("failed", "FineTuningJob", "tickets-lora"),
        ("out of sync", "Dataset", "tickets"),
        ("orphaned", "Model", "spare"),
    }
    assert report["unmanaged"] == [{"table": "datasets", "id": "d-ui-1", "kind": "Dataset", "name": "ui-dataset"}]
    assert report["counts"] == {"missing": 1, "drifted": 1, "failed": 1, "out of sync": 1, "orphaned": 1, "unmanaged": 1}
    [prompt] = [o for o in report["objects"] if o["name"] == "tickets-prompt"]
    assert prompt["fields"] == [{"path": "prompts.prompt_template", "before": "edited {instruction} {intent}",
                                 "after": "### CUSTOMER: {instruction}\n### ACTION: {intent}", "sensitive": False}]

    code, out, _ = _cli(capsys)
    assert code == 2
    lines = out.splitlines()
    assert lines[0] == "Drift in state.db (serial 1): 1 missing, 1 drifted, 1 failed, 1 out of sync, 1 orphaned; 1 row ftctl does not manage."
    for state, address in (("drifted", "Prompt/tickets-prompt"), ("missing", "Model/bloom"), ("failed", "FineTuningJob/tickets-lora"),
                           ("out of sync", "Dataset/tickets"), ("orphaned", "Model/spare")):
        assert any(line.split() and line.startswith(f"  {state}") and f" {address}: " in line for line in lines), (state, address, out)
    assert "  datasets  d-ui-1  ui-dataset" in lines
    assert "bad rows" in out  # the failed job says why

    code, out, _ = _cli(capsys, "--format", "markdown")
    assert code == 2
    first = out.splitlines()[0]
    assert first == "### ftctl drift in `state.db`: 1 missing, 1 drifted, 1 failed, 1 out of sync, 1 orphaned; 1 row ftctl does not manage"
    assert out.index("<details>") > out.index("| missing | drifted | failed | out of sync | orphaned | unmanaged rows |")
    assert "- **missing** `Model/bloom`" in out and "| datasets | `d-ui-1` | ui-dataset |" in out


def test_drift_agrees_with_status(project: Path) -> None:
    _drift_everything(project)
    _, statuses, _ = engine.status(["manifests"], store=STORE, offline=True)
    _, found = engine.drift(["manifests"], store=STORE, offline=True)
    assert found is not None
    unsynced = {f"{s.kind}/{s.name}" for s in statuses if not s.sync.is_synced() and s.sync.value != "waiting"}
    failed = {f"{s.kind}/{s.name}" for s in statuses if s.health.value == "failed"}
    assert {o.address for o in found.objects} == unsynced | failed


def test_secret_values_are_never_shown(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"r": 8, "lora_alpha": 16, "api_key": SECRET})
    # The config's row by ftctl's record: configs keep the Studio's description (NULL), not the manifest name.
    _sql(f"UPDATE configs SET config = '{body}' WHERE id = "
         "(SELECT store_id FROM ftctl_objects WHERE kind = 'Config' AND name = 'lora-r8')")
    outputs = {fmt: _cli(capsys, "--format", fmt) for fmt in ("text", "json", "markdown")}
    for fmt, (code, out, err) in outputs.items():
        assert code == 2 and "lora-r8" in out, fmt
        assert SECRET not in out + err, fmt
    [config] = json.loads(outputs["json"][1])["objects"]
    assert config["state"] == "drifted" and config["fields"][0]["sensitive"] is True
    assert config["fields"][0]["before"] == "(sensitive)"


def test_drift_from_a_snapshot_is_the_drift_of_the_store(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _drift_everything(project)
    engine.pull_state(STORE, "snapshot.json")
    live = _cli(capsys, "--format", "json")
    with pytest.raises(SystemExit) as done:
        main(["drift", "manifests", "--store", "snapshot.json", "--offline", "--format", "json"])
    assert (int(done.value.code or 0), capsys.readouterr().out) == live[:2]


def test_a_registered_adapter_is_not_an_unmanaged_row(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_result(project / "jobs", _train_job(project), "succeeded",
                 artifacts={"adapter_dir": str(project / "jobs" / "adapter")})
    for _ in range(2):  # registers the adapter; then creates the evaluation that waited for it
        report = engine.make_plan(["manifests"], store=STORE, policy=Policy(), offline=True, use_cache=False)
        assert report.plan is not None
        engine.execute_plan(report.plan, store=STORE, lock_wait_s=0)
    with sqlite3.connect(STORE) as conn:
        assert conn.execute("SELECT name FROM adapters").fetchall() == [("tickets-lora",)]
    conn.close()
    code, out, _ = _cli(capsys)
    assert code == 0, out


def test_invalid_manifests_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "manifests" / "bad.yaml").write_text("apiVersion: ftctl/v1\nkind: Model\nmetadata: {name: x}\nspec: {typo: 1}\n")
    code, out, err = _cli(capsys)
    assert code == 1 and out == ""
    assert "SC-001" in err and err.rstrip().endswith("ftctl: no drift report: fix the errors above first")


def test_a_missing_snapshot_is_an_error(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["drift", "manifests", "--store", "gone.json", "--offline"])
    assert done.value.code == 1
    assert capsys.readouterr().err == "ftctl: error: no snapshot file at gone.json (write one with `ftctl state pull -o gone.json`)\n"


# -- the pure core -----------------------------------------------------------------------------------


def _job(state: JobState) -> ObservedJob:
    return ObservedJob("ftctl-train-j-1", state)


@pytest.mark.parametrize(("change", "managed", "expected"), [
    (Change("Model", "m", Action.NOOP, "unchanged"), True, None),
    (Change("Model", "m", Action.CREATE, "new"), False, DriftState.OUT_OF_SYNC),
    (Change("Model", "m", Action.CREATE, "its row was deleted outside ftctl", drift=True), True, DriftState.MISSING),
    (Change("Prompt", "p", Action.UPDATE, "changed outside ftctl", drift=True), True, DriftState.DRIFTED),
    (Change("Prompt", "p", Action.UPDATE, "the manifest changed"), True, DriftState.OUT_OF_SYNC),
    (Change("Config", "c", Action.REPLACE, "the manifest changed"), True, DriftState.OUT_OF_SYNC),
    (Change("Model", "m", Action.NOOP, "no manifest any more; `--prune` would delete it", orphan=True), True, DriftState.ORPHANED),
    (Change("Model", "m", Action.DELETE, "no manifest any more (--prune)"), True, DriftState.ORPHANED),
    (Change("FineTuningJob", "j", Action.NOOP, "running: step 3/8", jobs=(_job(JobState.RUNNING),)), True, None),
    (Change("FineTuningJob", "j", Action.NOOP, "failed (data): x", jobs=(_job(JobState.FAILED),)), True, DriftState.FAILED),
    (Change("FineTuningJob", "j", Action.UPDATE, "relaunch", jobs=(_job(JobState.FAILED),)), True, DriftState.FAILED),
    (Change("FineTuningJob", "j", Action.UPDATE, "changed outside ftctl", drift=True, jobs=(_job(JobState.FAILED),)), True, DriftState.DRIFTED),
    (Change("EvaluationJob", "e", Action.CREATE, "waits", waits_for=("FineTuningJob/j",)), False, None),
    (Change("EvaluationJob", "e", Action.NOOP, "waits", waits_for=("FineTuningJob/j",), jobs=(_job(JobState.SUCCEEDED), _job(JobState.FAILED))), True,
     DriftState.FAILED),
])
def test_drift_state(change: Change, managed: bool, expected: DriftState | None) -> None:
    assert drift_state(change, managed=managed) is expected


def test_unmanaged_rows_leave_out_what_managed_objects_own_or_produced() -> None:
    job = ManagedRecord("FineTuningJob", "lora", "fine_tuning_jobs", "job-2", ("job-2",), "s", "r", generation=2)
    evaluation = ManagedRecord("EvaluationJob", "eval", "evaluation_jobs", "ev", ("ev-1", "ev-2"), "s", "r")
    snapshot = Snapshot(rows={
        "fine_tuning_jobs": {"job-2": {"id": "job-2", "adapter_name": "lora"}},
        "evaluation_jobs": {"ev-1": {"id": "ev-1", "parent_job_id": "ev"}, "ev-2": {"id": "ev-2", "parent_job_id": "ev"},
                            "ev-3": {"id": "ev-3", "parent_job_id": "ev"}, "ui-ev": {"id": "ui-ev", "parent_job_id": "ui-parent"}},
        "adapters": {
            "a-2": {"id": "a-2", "name": "lora", "fine_tuning_job_id": "job-2"},  # produced by the current generation
            "a-1": {"id": "a-1", "name": "lora-g1", "fine_tuning_job_id": "job-1",  # the previous version, renamed
                    "description": "trained by FineTuningJob/lora (generation 1)"},
            "a-ui": {"id": "a-ui", "name": "uploaded", "fine_tuning_job_id": ""},
        },
        "models": {"m-ui": {"id": "m-ui", "name": "by hand"}},
    }, managed={("FineTuningJob", "lora"): job, ("EvaluationJob", "eval"): evaluation})
    assert [(r.table, r.id, r.name) for r in unmanaged_rows(snapshot)] == [
        ("models", "m-ui", "by hand"), ("adapters", "a-ui", "uploaded"), ("evaluation_jobs", "ui-ev", "ui-parent"),
    ]
