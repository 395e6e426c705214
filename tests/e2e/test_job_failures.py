"""Job failures for real, one per error class, on the local backend with the real training runner.

- a dataset file gone by the time the job reads it -> failed (data), never retried;
- an out-of-memory-like failure (the runner's own failure hook) -> failed (resources), not retried;
- a job killed mid-run (SIGKILL, no result written) -> failed (killed), relaunched while `retries` allow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.helpers import local_ftctl, make_training

pytestmark = [pytest.mark.ml, pytest.mark.slow]
pytest.importorskip("torch", reason="the job side (make install-train) is not installed")

def results(root: Path) -> list[dict[str, object]]:
    """The job's results, attempt by attempt (archived attempts first)."""
    [job] = (root / ".app/jobs").glob("*/ftctl-train-*")  # <jobs>/<store id>/<job>
    files = [attempt / "result.json" for attempt in sorted(job.glob("attempt-*"))] + [job / "result.json"]
    return [json.loads(p.read_text()) if p.exists() else {} for p in files]


def test_dataset_gone_at_run_time_fails_as_data_and_is_not_retried(tmp_path: Path, tiny_model: Path) -> None:
    root = make_training(tmp_path, tiny_model, retries=2)
    started = local_ftctl(root, "apply", "--offline", "--auto-approve", "--create-store", "specs/demo")
    assert started.returncode == 0, started.stderr
    data = root / "specs/demo/data/tickets.csv"
    kept = data.read_bytes()
    data.unlink()  # the runner is still importing torch: it will not find the file
    [result] = [p / "result.json" for p in (root / ".app/jobs").glob("*/ftctl-train-*")]
    deadline = time.time() + 120
    while not result.exists() and time.time() < deadline:
        time.sleep(0.3)
    data.write_bytes(kept)  # back, so the manifests validate again; the failed run stays failed
    waited = local_ftctl(root, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.3", "specs/demo")
    assert waited.returncode == 1 and "failed (data)" in waited.stderr, waited.stderr[-2000:]
    [only] = results(root)  # one attempt: a data error is not transient
    assert only["status"] == "failed" and only["error"]["error_class"] == "data"  # type: ignore[index]
    assert "tickets.csv" in only["error"]["message"]  # type: ignore[index]


def test_out_of_memory_fails_as_resources_and_is_not_retried(tmp_path: Path, tiny_model: Path) -> None:
    root = make_training(tmp_path, tiny_model, retries=2)
    done = local_ftctl(root, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.3", "specs/demo", env={"FTCTL_RUNNER_FAIL": "resources"})
    assert done.returncode == 1 and "failed (resources)" in done.stderr, done.stderr[-2000:]
    [only] = results(root)
    assert only["error"]["error_class"] == "resources"  # type: ignore[index]
    status = local_ftctl(root, "status", "--offline", "--format", "json", "specs/demo")
    [job] = [r for r in json.loads(status.stdout)["objects"] if r["kind"] == "FineTuningJob"]
    assert job["health"] == "failed" and "resources" in job["job"]


def test_killed_job_is_relaunched_within_retries(tmp_path: Path, tiny_model: Path) -> None:
    root = make_training(tmp_path, tiny_model, retries=1)
    first = local_ftctl(root, "apply", "--offline", "--auto-approve", "--create-store", "specs/demo", env={"FTCTL_RUNNER_FAIL": "killed"})
    assert first.returncode == 0, first.stderr
    deadline = time.time() + 120
    while time.time() < deadline:  # the runner kills itself with SIGKILL: no result file, the lock released
        status = local_ftctl(root, "status", "--offline", "--format", "json", "specs/demo")
        [job] = [r for r in json.loads(status.stdout)["objects"] if r["kind"] == "FineTuningJob"]
        if job["health"] == "failed":
            break
        time.sleep(0.5)
    assert "killed" in job["job"], job
    done = local_ftctl(root, "apply", "--offline", "--auto-approve", "--create-store", "--wait", "--poll", "0.3", "specs/demo")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "relaunch (attempt 2 of 2)" in done.stdout + done.stderr
    killed, succeeded = results(root)
    assert killed == {} and succeeded["status"] == "succeeded"  # attempt 1 left no result; attempt 2 trained
