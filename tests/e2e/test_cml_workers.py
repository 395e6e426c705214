"""A training scaled out on CML (issue 15, item 3), on the fake CML engine, with real parts only.

The CML backend (its real HTTP client) launches the job on the fake CML server; the fake engine runs
the real train runner as the job run (the master) with the fake runtime's `cml.workers_v1`; the
master launches its worker through that API, and the worker is a real process in the project
folder; both train the tiny model (runners/build_tiny_model.py) under torchrun, gloo on loopback,
and the master watches them.

- Two workers train like one process on the same global batch (2 x 4 rows = 1 x 8, the same 6
  steps): the loss within the tolerance test_local_distributed.py states and measured (relative
  1e-4), one adapter, one MLflow run; the worker got its resources, the job input and its rank, and
  none of the master's other environment; no worker is left running.
- A worker killed mid-way (SIGKILL to its engine's processes once it has trained a step) fails
  the job `killed`; the master stops node 0, and no process of the job is left (the process table).
- The pure decisions (`cml_workers.assess`, `Scale`, `role`) as tables.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.cml import CMLBackend, CMLSettings
from reconciler.backends.cml_http import CMLClient
from reconciler.jobinput import input_digest
from reconciler.runtime import JobObservation, JobState
from runners import cml_workers
from runners.cml_workers import Failure, Scale, assess, role
from tests.fakes.cml_engine import RunnerEngine
from tests.fakes.cml_server import FakeCML
from tests.fakes.demo_cml import BackgroundEngine
from tests.runners.helpers import DEMO_TRAINING, MISSING_ML, REPO, write_job_input

LOSS_RTOL = 1e-4  # test_local_distributed.py's tolerance for a 2-process run against a 1-process one
DEADLINE_S = 300.0  # a hang guard, not a timing assertion
JOBS_ROOT = ".app/jobs"


# -- the pure decisions ----------------------------------------------------------------------------

def _w(wid: str, status: str) -> dict[str, Any]:
    return {"id": wid, "status": status}


@pytest.mark.parametrize(("node0", "workers", "now", "finish", "expected"), [
    (None, [_w("a", "running")], 0.0, None, False),  # all running
    (None, [_w("a", "scheduling")], 0.0, None, False),  # still starting, within the start timeout
    (None, [_w("a", "scheduling")], 10.0, None, "timeout"),  # not running by the start timeout
    (None, [_w("a", "failed")], 0.0, None, "worker"),  # a worker failed
    (None, [_w("a", "stopped")], 0.0, None, "worker"),  # a worker stopped by someone else
    (None, [], 0.0, None, "worker"),  # a worker vanished
    (1, [_w("a", "running")], 0.0, None, "node0"),  # node 0 failed
    (0, [_w("a", "running")], 0.0, 5.0, False),  # node 0 done, the worker finishing
    (0, [_w("a", "running")], 6.0, 5.0, "timeout"),  # the worker did not finish in time
    (0, [_w("a", "succeeded")], 0.0, 5.0, True),  # every engine ended well
    (1, [_w("a", "failed")], 0.0, None, "worker"),  # a failed worker is named before node 0
])
def test_assess(node0: int | None, workers: list[dict[str, Any]], now: float, finish: float | None, expected: Any) -> None:
    verdict = assess(node0, workers, ["a"], now=now, start_deadline=10.0, finish_deadline=finish)
    assert (verdict.who if isinstance(verdict, Failure) else verdict) == expected
    if expected == "timeout":
        assert isinstance(verdict, Failure) and verdict.error_class == "transient"


def test_scale_reads_resources_as_the_studio_passes_them() -> None:
    job = {"resources": {"cpu": 4, "memory": 16, "gpu": 2, "num_workers": 3, "dist_cpu": 8, "dist_memory": 32,
                         "gpu_label_id": 7}}
    assert Scale.from_job(job) == Scale(nodes=3, per_node=2, cpu=8, memory=32, gpu=2, accelerator_label_id=7)
    assert Scale.from_job(job).world_size == 6
    cpu_only = Scale.from_job({"resources": {"cpu": 2, "memory": 8, "num_workers": 2, "gpu_label_id": -1}})
    assert (cpu_only.per_node, cpu_only.gpu, cpu_only.accelerator_label_id, cpu_only.world_size) == (1, 0, None, 2)


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "single"),
    ({"FTCTL_NUM_WORKERS": "1"}, "single"),
    ({"FTCTL_NUM_WORKERS": "2"}, "master"),
    ({"FTCTL_NUM_WORKERS": "2", "FTCTL_NODE_RANK": "1"}, "node"),
    ({"FTCTL_NODE_RANK": "0", "RANK": "0", "WORLD_SIZE": "2"}, "rank"),
])
def test_role(environ: dict[str, str], expected: str) -> None:
    assert role(environ) == expected


def test_a_worker_gets_ftctl_settings_and_named_secrets_only() -> None:
    job = {"model": {"hf_token_env": "HF_TOKEN"}}
    environ = {"FTCTL_JOB_INPUT": "{}", "FTCTL_JOB_LOG": "1", "FTCTL_NUM_WORKERS": "2", "HF_TOKEN": "t0ken",
               "OTHER_SECRET": "x", "CDSW_ENGINE_ID": "e1"}
    env = cml_workers.worker_env(job, environ, rank=1, addr="10.0.0.1", port=29511)
    assert env == {"FTCTL_JOB_INPUT": "{}", "FTCTL_JOB_LOG": "1", "HF_TOKEN": "t0ken", "FTCTL_NODE_RANK": "1",
                   "FTCTL_MASTER_ADDR": "10.0.0.1", "FTCTL_MASTER_PORT": "29511"}


# -- end to end on the fake CML engine --------------------------------------------------------------

class Studio:
    """The fake CML server, its engine (the real runners, each run in a thread), and the CML backend."""

    def __init__(self, cml: FakeCML, project: Path) -> None:
        self.cml, self.project = cml, project
        self.engine = RunnerEngine(project, cml=cml, timeout_s=DEADLINE_S)
        self.runs = BackgroundEngine(cml, self.engine)
        cml.on_run(self.runs)
        client = CMLClient(cml.url, cml.api_key, cml.project_id)
        settings = CMLSettings(runtime_identifier="fake-runtime", runners_dir=str(REPO / "runners"), project_dir=str(project))
        self.backend = CMLBackend(client, settings, JOBS_ROOT, environ={})

    def launch(self, tiny_model: Path, stem: str, *, workers: int, batch: int, steps: int) -> str:
        training = {**DEMO_TRAINING, "per_device_train_batch_size": batch, "max_steps": steps, "num_train_epochs": 1}
        drafts = self.project / "drafts" / stem
        drafts.mkdir(parents=True)
        document = json.loads(write_job_input(drafts, tiny_model, f"sqlite:///{self.project / 'mlflow.db'}", "train",
                                              train={"training_arguments": training},
                                              resources={"cpu": 1, "memory": 2, "gpu": 0, "num_workers": workers,
                                                         "dist_cpu": 1, "dist_memory": 3, "gpu_label_id": 5}).read_text())
        name = f"{stem}-{input_digest(document)[:8]}"
        paths = self.backend.paths(name)
        document.update(job_name=name, outputs={**paths, "adapter_dir": f"{paths['dir']}/adapter"})
        first = self.backend.launch(name, "train", document)
        assert first.state is JobState.RUNNING, first
        return name

    def finish(self, name: str) -> JobObservation:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            seen = self.backend.observe(name)
            if seen.state.is_terminal():
                self.runs.join(DEADLINE_S)
                return seen
            time.sleep(0.5)
        raise AssertionError(f"{name} did not end within {DEADLINE_S} s: {self.logs()}")

    def logs(self) -> str:
        return "\n".join([*(r["output"] for r in self.engine.runs),
                          *(self.engine.worker_output(wid) for wid in self.engine.worker_logs)])[-6000:]


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Studio]:
    with FakeCML() as cml:
        yield Studio(cml, tmp_path / "project")


def _job_processes(project: Path) -> list[str]:
    """Processes (other than this one) whose working folder or command line is in the project: the job's."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(project)) or str(project) in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


@pytest.mark.ml
@pytest.mark.skipif(bool(MISSING_ML), reason="the ML stack is not installed")
def test_two_workers_train_like_one_process_on_the_same_global_batch(studio: Studio, tiny_model: Path) -> None:
    single = studio.launch(tiny_model, "one", workers=1, batch=8, steps=6)
    single_end = studio.finish(single)
    double = studio.launch(tiny_model, "two", workers=2, batch=4, steps=6)
    double_end = studio.finish(double)
    assert single_end.state is JobState.SUCCEEDED, studio.logs()
    assert double_end.state is JobState.SUCCEEDED, studio.logs()

    assert double_end.metrics["train_loss"] == pytest.approx(single_end.metrics["train_loss"], rel=LOSS_RTOL)
    assert double_end.metrics["train_steps"] == single_end.metrics["train_steps"] == 6
    adapter = Path(double_end.artifacts["adapter_dir"])
    assert (adapter / "adapter_config.json").is_file()
    assert [p.name for p in adapter.parent.iterdir() if p.name.startswith("adapter")] == ["adapter"]
    with sqlite3.connect(studio.project / "mlflow.db") as db:
        runs = db.execute("SELECT COUNT(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                          "WHERE t.key = 'ftctl.job_name' AND t.value = ?", (double,)).fetchone()[0]
    assert runs == 1

    (worker,) = studio.cml.worker_engines.workers.values()  # one CML worker: node 1 of 2
    assert (worker.cpu, worker.memory, worker.nvidia_gpu, worker.accelerator_label_id) == (1.0, 3.0, 0, 5)
    assert worker.script == str(REPO / "runners" / "train.py")
    assert worker.env["FTCTL_NODE_RANK"] == "1"
    assert json.loads(worker.env["FTCTL_JOB_INPUT"])["job_name"] == double
    assert "FTCTL_ATTEMPT" in worker.env and "FTCTL_NUM_WORKERS" not in worker.env
    assert worker.status == "succeeded"
    assert studio.cml.stragglers == []
    assert _job_processes(studio.project) == []


@pytest.mark.ml
@pytest.mark.skipif(bool(MISSING_ML), reason="the ML stack is not installed")
def test_a_killed_worker_fails_the_job_killed_and_leaves_no_process(studio: Studio, tiny_model: Path) -> None:
    name = studio.launch(tiny_model, "killed", workers=2, batch=4, steps=400)
    progress = studio.backend.job_dir(name) / "progress.rank1.json"
    deadline = time.monotonic() + DEADLINE_S
    while not (progress.is_file() and (json.loads(progress.read_text() or "{}").get("step") or 0) >= 1):
        assert time.monotonic() < deadline, studio.logs()
        time.sleep(0.2)
    (worker,) = studio.cml.worker_engines.workers.values()
    os.killpg(worker.process.pid, signal.SIGKILL)  # the worker's engine dies (preempted, out of memory)

    end = studio.finish(name)
    assert end.state is JobState.FAILED, studio.logs()
    assert end.error_class == "killed", (end.message, studio.logs())
    assert worker.id in end.message
    assert studio.cml.stragglers == []
    assert _job_processes(studio.project) == []
