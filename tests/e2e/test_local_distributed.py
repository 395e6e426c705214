"""The local backend runs a multi-process training under torchrun (issue 15, items 1 and 2).

Real parts only: the tiny model built by runners/build_tiny_model.py, the real train runner, the
real launcher (`python -m torch.distributed.run`) with gloo on CPU, a real MLflow sqlite store, and
the real process table (/proc) to prove that no process of a job outlives it.

Tolerance of a 2-process run against a 1-process run on the same global batch (2 x 4 = 1 x 8 rows,
the same 6 steps): the final training loss within a relative 1e-4, every adapter weight within an
absolute 1e-3. Measured here: losses equal to 1e-8, weights within 7e-5 (Adam at lr 1e-2 turns the
gradients' different reduction order into that much).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.local import LocalBackend
from reconciler.jobinput import input_digest
from reconciler.runtime import JobObservation, JobState
from tests.runners.helpers import DEMO_TRAINING, MISSING_ML, write_job_input

pytestmark = [pytest.mark.ml, pytest.mark.skipif(bool(MISSING_ML), reason="the ML stack is not installed")]

LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-3
DEADLINE_S = 240.0  # a hang guard, not a timing assertion


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("project")


def backend(project: Path, max_running: int = 2) -> LocalBackend:
    environ = {k: v for k, v in os.environ.items() if k not in ("FTCTL_RUNNER_FAIL", "FTCTL_JOB_INPUT")}
    environ["CUDA_VISIBLE_DEVICES"] = ""  # the same on any machine: CPU, gloo
    return LocalBackend(project / "jobs", max_running=max_running, cwd=project, environ=environ)


def launch(project: Path, tiny_model: Path, stem: str, *, workers: int, batch: int, steps: int) -> tuple[LocalBackend, str]:
    """Launch a training of `steps` steps at `batch` rows per process on `workers` processes."""
    local = backend(project)
    training = {**DEMO_TRAINING, "per_device_train_batch_size": batch, "max_steps": steps, "num_train_epochs": 1}
    draft_dir = project / "drafts" / stem
    draft_dir.mkdir(parents=True)
    document = json.loads(write_job_input(draft_dir, tiny_model, f"sqlite:///{project / 'mlflow.db'}", "train",
                                          train={"training_arguments": training},
                                          resources={"cpu": 1, "memory": 2, "gpu": 0, "num_workers": workers}).read_text())
    name = f"{stem}-{input_digest(document)[:8]}"
    paths = local.paths(name)
    document.update(job_name=name, outputs={**paths, "adapter_dir": f"{paths['dir']}/adapter"})
    first = local.launch(name, "train", document)
    assert first.state is JobState.RUNNING, first
    return local, name


def finish(local: LocalBackend, name: str) -> JobObservation:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        seen = local.observe(name)
        if seen.state.is_terminal():
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{name} did not finish: {local.log_path(name).read_text()[-3000:]}")


def job_processes(folder: Path) -> list[int]:
    """Pids of live processes whose command line names the job's folder (the launcher and its ranks)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def rank_pid(folder: Path, rank: int) -> int:
    """The pid of the job's process of `rank` (the launcher gives each rank RANK in its environment)."""
    for pid in job_processes(folder):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and any(v.startswith(b"LOCAL_RANK=") for v in environ):
            return pid
    raise AssertionError(f"no process of rank {rank} under {folder}")


def wait_training(local: LocalBackend, name: str, rank: int) -> None:
    """Until `rank` reports a training step (its own progress file)."""
    folder = local.job_dir(name)
    path = folder / ("progress.json" if rank == 0 else f"progress.rank{rank}.json")
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            progress = json.loads(path.read_text())
        except (OSError, ValueError):
            progress = {}
        if progress.get("stage") == "training" and progress.get("step", 0) >= 1:
            return
        assert local.observe(name).state is JobState.RUNNING, local.log_path(name).read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"rank {rank} of {name} never trained")


def no_process_left(folder: Path) -> None:
    deadline = time.monotonic() + 30
    while job_processes(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job_processes(folder) == [], "processes of the job outlived it"


def weights(adapter: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(adapter / "adapter_model.safetensors"))


def mlflow_runs(project: Path, job_name: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, filter_string=f"tags.`ftctl.job_name` = '{job_name}'"))


def test_two_processes_train_like_one_on_the_same_global_batch(project: Path, tiny_model: Path) -> None:
    one_backend, one = launch(project, tiny_model, "one", workers=1, batch=8, steps=6)
    two_backend, two = launch(project, tiny_model, "two", workers=2, batch=4, steps=6)
    single, double = finish(one_backend, one), finish(two_backend, two)
    log = two_backend.log_path(two).read_text()
    assert single.state is JobState.SUCCEEDED, one_backend.log_path(one).read_text()[-3000:]
    assert double.state is JobState.SUCCEEDED, log[-3000:]

    assert double.metrics["world_size"] == 2 and single.metrics["world_size"] == 1
    assert double.metrics["train_steps"] == single.metrics["train_steps"] == 6
    assert double.metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], rel=LOSS_RTOL)
    a, b = weights(Path(single.artifacts["adapter_dir"])), weights(Path(double.artifacts["adapter_dir"]))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= WEIGHT_ATOL

    folder = two_backend.job_dir(two)
    assert sorted(p.name for p in folder.rglob("adapter_model.safetensors")) == ["adapter_model.safetensors"]  # one adapter
    assert [r.info.run_id for r in mlflow_runs(project, two)] == [double.artifacts["mlflow_run_id"]]  # one run
    assert "[rank0]:" in log and "[rank1]:" in log  # every rank's output, prefixed
    assert json.loads((folder / "progress.rank1.json").read_text())["stage"] == "succeeded"  # every rank reports
    assert json.loads((folder / "launch.json").read_text())["world_size"] == 2
    no_process_left(folder)


def test_a_killed_rank_fails_the_job_killed_and_leaves_no_process(project: Path, tiny_model: Path) -> None:
    local, name = launch(project, tiny_model, "kill-rank", workers=2, batch=4, steps=100_000)
    folder = local.job_dir(name)
    wait_training(local, name, rank=1)
    os.kill(rank_pid(folder, 1), signal.SIGKILL)
    seen = finish(local, name)
    assert (seen.state, seen.error_class) == (JobState.FAILED, "killed"), (seen, local.log_path(name).read_text()[-3000:])
    assert "rank 1 of 2" in seen.message
    no_process_left(folder)


def test_a_killed_launcher_takes_its_ranks_with_it(project: Path, tiny_model: Path) -> None:
    local, name = launch(project, tiny_model, "kill-launcher", workers=2, batch=4, steps=100_000)
    folder = local.job_dir(name)
    wait_training(local, name, rank=1)
    os.kill(json.loads((folder / "launch.json").read_text())["pid"], signal.SIGKILL)
    no_process_left(folder)
    seen = finish(local, name)
    assert (seen.state, seen.error_class) == (JobState.FAILED, "killed"), seen


def test_cancel_stops_every_rank(project: Path, tiny_model: Path) -> None:
    local, name = launch(project, tiny_model, "cancel", workers=2, batch=4, steps=100_000)
    folder = local.job_dir(name)
    wait_training(local, name, rank=1)
    assert local.cancel(name)
    seen = finish(local, name)
    assert (seen.state, seen.error_class) == (JobState.FAILED, "cancelled"), (seen, local.log_path(name).read_text()[-3000:])
    no_process_left(folder)
