"""The job lifecycle through the real CLI, on the fake backend, with job outcomes scripted by tests.

Every test works on a copy of specs/demo (the export gate's `min` raised to 0.5) and runs
`ftctl ... --offline --auto-approve` as a subprocess with FTCTL_BACKEND=fake and FTCTL_JOBS_DIR in
the test's folder. A fake launch writes `<jobs>/<job>/launch.json` and appends the attempt to
`launches.log`; the job then reads `running` until the test writes its `result.json` (a job-result
document, `write_result`). So each step of the pipeline is checked where it happens:

- apply launches the training job (its row notes the job in `cml_job_id`); the evaluation and the
  export wait; plan finds nothing to do while the job runs, status shows it running;
- a succeeded training registers its adapter (a project adapter pointing at the job's output);
  the next apply creates the evaluation rows (one per combination, one `parent_job_id`) and
  launches one job per row;
- the export's gate holds below its minimum (plan says why) and opens above it; the export's
  result is shown by plan and status; a second apply after all that writes and launches nothing;
- `retries`: `killed` is relaunched while retries allow (attempt 2), `data` never, retries 0 never;
  `apply --wait` then exits 1 naming the failures;
- a changed LoRA config re-runs the training as generation 2: a new job, then a new adapter version
  that takes the name while the previous one is renamed `<name>-g1`;
- `ftctl cancel` stops a running job (failed (cancelled), never retried); `ftctl logs` says when a
  job has no log.

The re-run tests at the end pin what once went wrong: a re-run evaluation (its adapter's
combination re-runs, the base model's reuses generation 1's results) is not replaced again on the
next apply; its re-run for a new adapter version, and an edit of an export, are not drift; an
evaluation created while its adapter is being retrained waits for the new version; the previous
adapter keeps its name until the new version exists.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import (
    DEMO,
    apply,
    count,
    ftctl,
    job_folders,
    jobs_env,
    launch_logs,
    make_demo,
    plan,
    query,
    show,
    write_result,
)

STORE = ".app/state.db"
TRAIN = "FineTuningJob/demo-ticketing-lora"
EVAL = "EvaluationJob/demo-base-vs-lora"
EXPORT = "ModelExport/demo-ticketing"
ADAPTER = "demo-ticketing-lora"
GATE_MIN = 0.5
RETRY_JOBS = "\n---\n".join(f"""\
apiVersion: ftctl/v1
kind: FineTuningJob
metadata: {{name: {name}}}
spec:
  base_model: tiny-llama
  dataset: demo-tickets
  prompt: demo-ticketing
  adapter_name: {name}
  lora_config: demo-lora
  training_arguments: demo-training
  resources: {{cpu: 2, memory: 4, gpu: 0, num_workers: 1}}
  retries: {retries}
""" for name, retries in (("retry-killed", 1), ("retry-data", 1), ("no-retry", 0)))


@dataclass(frozen=True)
class Project:
    """A copy of specs/ (run the CLI from root), its store and its fake jobs' folders."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / STORE

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return ftctl(self.root, *args, env=jobs_env(self.jobs), timeout=60)

    def apply(self, *paths: str, extra: tuple[str, ...] = (), expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = apply(self.root, *(paths or (DEMO,)), env=jobs_env(self.jobs), extra=extra)
        assert done.returncode == expect, show(done)
        return done

    def plan(self, *paths: str) -> subprocess.CompletedProcess[str]:
        return plan(self.root, *(paths or (DEMO,)), env=jobs_env(self.jobs))

    def status(self, *paths: str) -> dict[str, dict[str, Any]]:
        shown = self.run("status", *(paths or (DEMO,)), "--offline", "--format", "json")
        assert shown.returncode in (0, 2), show(shown)
        return {f"{r['kind']}/{r['name']}": r for r in json.loads(shown.stdout)["objects"]}

    def launches(self) -> dict[str, str]:
        return launch_logs(self.jobs)

    def job(self, prefix: str) -> str:
        """The one job folder whose name starts with prefix (e.g. ftctl-train-demo-ticketing-lora-)."""
        found = [name for name in self.launches() if name.startswith(prefix)]
        assert len(found) == 1, f"expected one job {prefix}*, found {found} in {sorted(self.launches())}"
        return found[0]

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query(self.db, sql, params)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = make_demo(tmp_path / "project")
    pipeline = root / DEMO / "pipeline.yaml"
    text = pipeline.read_text(encoding="utf-8")
    assert "min: 0.2}" in text
    pipeline.write_text(text.replace("min: 0.2}", f"min: {GATE_MIN}}}"), encoding="utf-8")
    return Project(root)


def _change(plan_text: str, address: str) -> str:
    """The lines a text plan shows for one change: its head line and the indented lines under it."""
    lines = plan_text.splitlines()
    [start] = [i for i, line in enumerate(lines) if re.match(rf"  (\+|~|-/\+|-) {re.escape(address)}:", line)]
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("      ")), len(lines))
    return "\n".join(lines[start:end])


def _id(p: Project, kind: str, name: str) -> str:
    [(store_id,)] = p.rows("SELECT store_id FROM ftctl_objects WHERE kind = ? AND name = ?", (kind, name))
    return str(store_id)


# -- the pipeline, stage by stage ----------------------------------------------------------------

def _launch_training(p: Project) -> str:
    """First apply: the training job is launched, the evaluation and the export wait. Its job name."""
    first = p.apply()
    train = p.job("ftctl-train-demo-ticketing-lora-")
    assert re.fullmatch(r"ftctl-train-demo-ticketing-lora-[0-9a-f]{6}-g1-[0-9a-f]{8}-[0-9a-f]{8}", train), train
    assert f"launched {train}" in first.stdout, show(first)
    assert p.rows("SELECT id, cml_job_id FROM fine_tuning_jobs") == [(_id(p, "FineTuningJob", ADAPTER), train)]
    assert p.launches() == {train: "1\n"}
    assert count(p.db, "evaluation_jobs") == 0 and count(p.db, "adapters") == 0
    assert f"{EVAL}: waits for {TRAIN}" in first.stdout and f"{EXPORT}: waits for {TRAIN}" in first.stdout, show(first)
    return train


def _register_adapter(p: Project, train: str, adapter_dir: Path) -> str:
    """The training succeeds; the next apply registers its adapter. The adapter's id."""
    write_result(p.jobs, train, metrics={"train_loss": 0.42}, artifacts={"adapter_dir": str(adapter_dir)})
    pending = p.plan()
    assert pending.returncode == 2 and f"register adapter {ADAPTER}" in pending.stdout, show(pending)
    p.apply()
    job_id = _id(p, "FineTuningJob", ADAPTER)
    [(model_id,)] = p.rows("SELECT id FROM models WHERE name = 'tiny-llama'")
    [(adapter_id, kind, location, trained_by, base)] = p.rows(
        "SELECT id, type, location, fine_tuning_job_id, model_id FROM adapters WHERE name = ?", (ADAPTER,))
    assert (kind, location, trained_by, base) == ("project", str(adapter_dir), job_id, model_id)
    return str(adapter_id)


def _launch_evaluations(p: Project, adapter_id: str) -> dict[str, str]:
    """The apply after the registration creates the evaluation rows and launches their jobs.
    Returns the job name by adapter_id ('' for the base model alone)."""
    assert count(p.db, "evaluation_jobs") == 0, "the evaluation rows come with the apply after the registration"
    done = p.apply()
    [(model_id,)] = p.rows("SELECT id FROM models WHERE name = 'tiny-llama'")
    rows = p.rows("SELECT parent_job_id, base_model_id, adapter_id, cml_job_id FROM evaluation_jobs")
    assert len(rows) == 2, rows
    assert {r[0] for r in rows} == {_id(p, "EvaluationJob", "demo-base-vs-lora")}, "one parent_job_id for the request"
    assert {r[1] for r in rows} == {model_id}
    jobs = {str(r[2] or ""): str(r[3]) for r in rows}
    assert set(jobs) == {"", adapter_id}, "one row per combination: the base alone, and the base with the adapter"
    for job in jobs.values():
        assert re.fullmatch(r"ftctl-eval-demo-base-vs-lora-[0-9a-f]{6}-g1-[01]-[0-9a-f]{8}-[0-9a-f]{8}", job), job
        assert p.launches()[job] == "1\n" and f"{job}" in done.stdout.rpartition("Applied:")[2], show(done)
    return jobs


def _score(p: Project, evals: dict[str, str], adapter_id: str, rouge: float) -> None:
    write_result(p.jobs, evals[""], metrics={"rougeL": 0.2})
    write_result(p.jobs, evals[adapter_id], metrics={"rougeL": rouge})


def _export(p: Project, evals: dict[str, str], adapter_id: str) -> str:
    """The gate: closed below its min (the export waits, plan says why), open above (launched)."""
    _score(p, evals, adapter_id, 0.3)
    closed = p.plan()
    assert closed.returncode == 0, show(closed)
    assert f"{EXPORT}: gate closed: rougeL 0.3 < min {GATE_MIN:g}" in closed.stdout, show(closed)
    p.apply()
    assert not [j for j in p.launches() if j.startswith("ftctl-export-")], "a closed gate launched the export"
    assert p.status()[EXPORT]["sync"] == "waiting"

    _score(p, evals, adapter_id, 0.8)
    opened = p.plan()
    assert opened.returncode == 2 and "gate open: rougeL 0.8" in opened.stdout, show(opened)
    p.apply()
    export = p.job("ftctl-export-demo-ticketing-")
    assert re.fullmatch(r"ftctl-export-demo-ticketing-[0-9a-f]{6}-g1-[0-9a-f]{8}-[0-9a-f]{8}", export) and p.launches()[export] == "1\n"
    return export


def _whole_pipeline(p: Project) -> None:
    train = _launch_training(p)
    adapter_id = _register_adapter(p, train, p.root / "out" / "adapter-g1")
    evals = _launch_evaluations(p, adapter_id)
    export = _export(p, evals, adapter_id)
    write_result(p.jobs, export, artifacts={"registered_model_name": "demo-ticketing", "registered_model_version": "1"})


def test_apply_launches_the_training_and_the_rest_waits(project: Project) -> None:
    train = _launch_training(project)

    running = project.plan()
    assert running.returncode == 0, show(running)
    assert f"{TRAIN}: running" in running.stdout and "No changes" in running.stdout, show(running)
    status = project.status()
    assert (status[TRAIN]["sync"], status[TRAIN]["health"], status[TRAIN]["job"]) == ("synced", "running", "running")
    assert status[EVAL]["sync"] == status[EXPORT]["sync"] == "waiting"
    table = project.run("status", DEMO, "--offline")
    [line] = [ln for ln in table.stdout.splitlines() if ln.startswith("FineTuningJob")]
    assert "running" in line.split(), table.stdout
    again = project.apply()
    assert "launched" not in again.stdout and project.launches() == {train: "1\n"}, "a running job is not launched again"


def test_a_trained_adapter_is_registered_then_evaluated(project: Project) -> None:
    train = _launch_training(project)
    adapter_id = _register_adapter(project, train, project.root / "out" / "adapter-g1")
    assert project.launches() == {train: "1\n"}
    assert project.status()[TRAIN]["health"] == "succeeded"

    evals = _launch_evaluations(project, adapter_id)

    running = project.plan()
    assert running.returncode == 0, show(running)
    assert f"{EXPORT}: gate: {EVAL} is running" in running.stdout, show(running)
    assert project.launches() == {train: "1\n", **{job: "1\n" for job in evals.values()}}


def test_the_export_gate_holds_then_opens_and_the_export_is_reported(project: Project) -> None:
    _whole_pipeline(project)

    done = project.plan()
    assert done.returncode == 0 and "No changes" in done.stdout, show(done)
    assert f"{EXPORT}: succeeded: demo-ticketing version 1" in done.stdout, show(done)
    status = project.status()
    assert all(row["sync"] == "synced" for row in status.values()), status
    assert (status[EXPORT]["health"], status[EXPORT]["job"]) == ("succeeded", "succeeded: demo-ticketing version 1")
    assert status[TRAIN]["health"] == status[EVAL]["health"] == "succeeded"
    wide = ftctl(project.root, "status", DEMO, "--offline", env={**jobs_env(project.jobs), "COLUMNS": "200"}, timeout=60)
    assert wide.returncode == 0 and "demo-ticketing version 1" in wide.stdout, show(wide)  # a wide terminal shows it whole
    table = project.run("status", DEMO, "--offline")  # piped: 100 columns, long cells cut
    assert table.returncode == 0 and "succeeded: demo" in table.stdout, show(table)
    assert max(map(len, table.stdout.splitlines())) <= 100, show(table)


def test_a_second_apply_after_everything_succeeded_does_nothing(project: Project) -> None:
    _whole_pipeline(project)  # ends with the export's result written: every job has succeeded
    launches = project.launches()
    assert len(launches) == 4 and set(launches.values()) == {"1\n"}, launches
    journal, history = count(project.db, "ftctl_journal"), count(project.db, "ftctl_history")

    again = project.apply()

    assert "No changes" in again.stdout and "Applied" not in again.stdout, show(again)
    assert project.launches() == launches, "a second apply launched a job"
    assert (count(project.db, "ftctl_journal"), count(project.db, "ftctl_history")) == (journal, history)
    assert project.plan().returncode == 0


# -- retries -------------------------------------------------------------------------------------

def test_retries_relaunch_only_killed_jobs_and_only_as_often_as_allowed(project: Project) -> None:
    (project.root / "specs" / "retry.yaml").write_text(RETRY_JOBS, encoding="utf-8")
    paths = (f"{DEMO}/resources.yaml", f"{DEMO}/configs.yaml", "specs/retry.yaml")
    project.apply(*paths)
    killed, data, no_retry = (project.job(f"ftctl-train-{n}-") for n in ("retry-killed", "retry-data", "no-retry"))
    assert project.launches() == {killed: "1\n", data: "1\n", no_retry: "1\n"}

    write_result(project.jobs, killed, "failed", error_class="killed")
    write_result(project.jobs, data, "failed", error_class="data", message="column 'intent' is missing")
    write_result(project.jobs, no_retry, "failed", error_class="killed")
    planned = project.plan(*paths)
    assert planned.returncode == 2, show(planned)
    assert "FineTuningJob/retry-killed: relaunch (attempt 2 of 2) after failed (killed)" in planned.stdout, show(planned)
    assert f"=> launches job {killed} (attempt 2)" in planned.stdout, show(planned)
    assert planned.stdout.count("=> launches job") == 1, "only the killed job with retries left is relaunched"

    project.apply(*paths)

    assert project.launches() == {killed: "1\n2\n", data: "1\n", no_retry: "1\n"}
    assert (job_folders(project.jobs)[killed] / "attempt-1" / "result.json").is_file(), "attempt 1's result is kept aside"
    assert project.status(*paths)["FineTuningJob/retry-killed"]["health"] == "running"

    write_result(project.jobs, killed, "failed", error_class="killed")  # attempt 2 dies too: no retries left
    waited = project.apply(*paths, extra=("--wait", "--poll", "0.2"), expect=1)

    assert "ftctl: FineTuningJob/retry-data failed (data): column 'intent' is missing" in waited.stderr, show(waited)
    assert "ftctl: FineTuningJob/no-retry failed (killed)" in waited.stderr, show(waited)
    assert "ftctl: FineTuningJob/retry-killed failed (killed)" in waited.stderr, show(waited)
    assert "Stopped: a job failed." in waited.stderr, show(waited)
    assert project.launches() == {killed: "1\n2\n", data: "1\n", no_retry: "1\n"}, "no job relaunched past its retries"
    assert count(project.db, "adapters") == 0


# -- re-runs -------------------------------------------------------------------------------------

def _retrain(p: Project) -> tuple[str, str, str]:
    """Train generation 1 and register its adapter, then change the LoRA config's `r`.
    Returns (generation 1's job, its adapter's id, its job row's id)."""
    train = _launch_training(p)
    adapter_id = _register_adapter(p, train, p.root / "out" / "adapter-g1")
    configs = p.root / DEMO / "configs.yaml"
    text = configs.read_text(encoding="utf-8")
    assert "r: 8," in text
    configs.write_text(text.replace("r: 8,", "r: 4,"), encoding="utf-8")
    return train, adapter_id, _id(p, "FineTuningJob", ADAPTER)


def test_a_changed_lora_config_trains_a_new_adapter_version(project: Project) -> None:
    g1_job, g1_adapter, g1_row = _retrain(project)
    generation = g1_job.rpartition("-g1-")[0] + "-g2-"  # then the store's id and the new input's digest

    planned = project.plan()
    assert planned.returncode == 2, show(planned)
    assert f"-/+ {TRAIN}: Config/demo-lora changed [new adapter version]" in planned.stdout, show(planned)
    assert "fine_tuning_jobs.lora_config.r: 8 -> 4" in planned.stdout, show(planned)
    [g2_job] = re.findall(r"=> launches job (\S+) \(attempt 1\)", planned.stdout)
    assert g2_job.startswith(generation) and g2_job.split("-")[-2] == g1_job.split("-")[-2], (g1_job, g2_job)

    project.apply()

    assert {j: n for j, n in project.launches().items() if j.startswith("ftctl-train-")} == {g1_job: "1\n", g2_job: "1\n"}
    g2_row = _id(project, "FineTuningJob", ADAPTER)
    # The first generation's row is kept; while the second runs, it and its adapter keep the name
    # (the Studio finds a training by its adapter's name: the name answers with the finished version).
    assert g2_row != g1_row and sorted(project.rows("SELECT id, adapter_name, cml_job_id FROM fine_tuning_jobs")) == sorted(
        [(g2_row, ADAPTER, g2_job), (g1_row, ADAPTER, g1_job)])
    assert project.rows("SELECT generation FROM ftctl_objects WHERE kind = 'FineTuningJob'") == [(2,)]
    assert project.status()[TRAIN]["health"] == "running"

    g2_dir = project.root / "out" / "adapter-g2"
    write_result(project.jobs, g2_job, artifacts={"adapter_dir": str(g2_dir)})
    project.apply()

    # Registering the new version renames the old one's row and adapter in the same step.
    assert sorted(project.rows("SELECT id, adapter_name FROM fine_tuning_jobs")) == sorted(
        [(g2_row, ADAPTER), (g1_row, f"{ADAPTER}-g1")])
    adapters = {r[0]: r[1:] for r in project.rows("SELECT name, id, fine_tuning_job_id, location FROM adapters")}
    assert set(adapters) == {ADAPTER, f"{ADAPTER}-g1"}, adapters
    assert adapters[f"{ADAPTER}-g1"] == (g1_adapter, g1_row, str(project.root / "out" / "adapter-g1")), "the old version, renamed"
    new_id, trained_by, location = adapters[ADAPTER]
    assert new_id != g1_adapter and (trained_by, location) == (g2_row, str(g2_dir)), "the new version takes the name"
    evaluation = project.plan()
    assert evaluation.returncode == 2, show(evaluation)
    planned_eval = _change(evaluation.stdout, EVAL)
    assert new_id in planned_eval and "=> launches job" in planned_eval, f"the evaluation runs on the new version\n{planned_eval}"


# -- cancel and logs -----------------------------------------------------------------------------

def test_cancel_stops_a_running_job_and_logs_say_when_there_is_none(project: Project) -> None:
    train = _launch_training(project)

    logs = project.run("logs", TRAIN)
    assert logs.returncode == 0, show(logs)
    assert f"==> {train}" in logs.stderr and "no log yet" in logs.stderr and logs.stdout == "", show(logs)

    cancelled = project.run("cancel", TRAIN)

    assert cancelled.returncode == 0 and f"Stopped {train}." in cancelled.stdout, show(cancelled)
    result = json.loads((job_folders(project.jobs)[train] / "result.json").read_text(encoding="utf-8"))
    assert result["status"] == "failed" and result["error"]["error_class"] == "cancelled", result
    planned = project.plan()
    assert planned.returncode == 0 and f"{TRAIN}: failed (cancelled)" in planned.stdout, show(planned)
    assert project.status()[TRAIN]["health"] == "failed"
    project.apply()
    assert project.launches() == {train: "1\n"}, "a cancelled job stays stopped"
    again = project.run("cancel", TRAIN)
    assert again.returncode == 0 and f"{TRAIN}: no job of it is running" in again.stdout, show(again)
    unknown = project.run("logs", "Dataset/demo-tickets")
    assert unknown.returncode == 1 and "runs no job" in unknown.stderr and "Traceback" not in unknown.stderr, show(unknown)


# -- what ftctl gets wrong today -----------------------------------------------------------------

def _retrained_with_evaluation(p: Project) -> dict[str, str]:
    """Generation 1 trained and evaluated, the LoRA config changed, generation 2 trained and its
    adapter registered: the evaluation must now re-run on the new adapter version. Returns
    generation 1's evaluation jobs by adapter_id ('' for the base model alone)."""
    train = _launch_training(p)
    adapter_id = _register_adapter(p, train, p.root / "out" / "adapter-g1")
    evals = _launch_evaluations(p, adapter_id)
    _score(p, evals, adapter_id, 0.8)
    configs = p.root / DEMO / "configs.yaml"
    configs.write_text(configs.read_text(encoding="utf-8").replace("r: 8,", "r: 4,"), encoding="utf-8")
    p.apply()
    [retrained] = [n for n in p.launches() if n.startswith(train.rpartition("-g1-")[0] + "-g2-")]
    write_result(p.jobs, retrained, artifacts={"adapter_dir": str(p.root / "out" / "adapter-g2")})
    p.apply()
    assert {r[0] for r in p.rows("SELECT name FROM adapters")} == {ADAPTER, f"{ADAPTER}-g1"}
    return evals


def test_a_re_run_evaluation_is_not_re_run_again(project: Project) -> None:
    g1_evals = _retrained_with_evaluation(project)
    # Generation 2 re-runs only the adapter's combination: the base model alone has the inputs of
    # generation 1's base combination, which succeeded, so it reuses that job's results (issue 13).
    planned = project.plan()
    shown = _change(planned.stdout, EVAL)
    assert shown.count("=> launches job ") == 1 and "-g2-1-" in shown, shown
    assert f"=> reuses the results of job {g1_evals['']}," in shown, shown
    project.apply()
    evals = {j: log for j, log in project.launches().items() if j.startswith("ftctl-eval-")}
    assert set(evals) - set(g1_evals.values()) == {j for j in evals if "-g2-1-" in j} and len(evals) == 3, evals

    again = project.plan()

    assert again.returncode == 0, show(again)  # its re-run job is running, the base's reused result stands: nothing to do
    assert f"{EVAL}: succeeded (rougeL 0.2); running" in again.stdout, show(again)


def test_an_evaluation_re_run_for_a_new_adapter_version_is_not_drift(project: Project) -> None:
    _retrained_with_evaluation(project)

    planned = project.plan()

    assert planned.returncode == 2, show(planned)
    line = _change(planned.stdout, EVAL).splitlines()[0]
    assert line.startswith(f"  -/+ {EVAL}") and "[re-run the job]" in line, line
    assert "(drift)" not in line and "changed outside ftctl" not in line, line


def test_an_evaluation_waits_while_its_adapter_is_retrained(project: Project) -> None:
    _retrain(project)  # generation 1 trained and registered; the evaluation not created yet; `r` changed

    replaced = project.apply()

    assert f"{EVAL}: waits for {TRAIN}" in replaced.stdout, show(replaced)
    assert count(project.db, "evaluation_jobs") == 0
    assert not [j for j in project.launches() if j.startswith("ftctl-eval-")], "evaluated the previous adapter version"


def test_the_previous_adapter_keeps_its_name_until_the_new_version_is_registered(project: Project) -> None:
    _, g1_adapter, _ = _retrain(project)

    project.apply()  # generation 2 launched, running

    assert project.rows("SELECT id FROM adapters WHERE name = ?", (ADAPTER,)) == [(g1_adapter,)]


def test_an_edited_export_is_re_exported_not_reported_as_drift(project: Project) -> None:
    _whole_pipeline(project)
    pipeline = project.root / DEMO / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace("merge: true", "merge: false"), encoding="utf-8")

    planned = project.plan()

    assert planned.returncode == 2, show(planned)
    shown = _change(planned.stdout, EXPORT)
    assert shown.startswith(f"  -/+ {EXPORT}") and "[re-export]" in shown, shown
    assert "(drift)" not in shown and "changed outside ftctl" not in shown, shown
    assert "merge" in shown, f"the plan shows what changed\n{shown}"
