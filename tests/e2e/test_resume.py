"""A training SIGKILLed mid-way resumes from its last checkpoint on retry (issue 15, item 4).

The real CLI, the local backend and the real train runner on the tiny model: the first apply
launches a training that saves a checkpoint every 20 steps; once one is complete (its marker
written) the test kills the runner's whole process group; `apply --wait` with `retries: 1`
relaunches it, and the second attempt resumes at the checkpoint's step: it trains only the steps
left, says "resumed at step S" (result, apply --wait, status), and leaves an adapter peft loads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import REPO, local_ftctl, make_training

pytestmark = [pytest.mark.ml, pytest.mark.slow]
pytest.importorskip("torch", reason="the job side (make install-train) is not installed")

SAVE_STEPS = 20


def configs_with_checkpoints() -> str:
    """The demo's configs, its training saving a checkpoint every SAVE_STEPS steps (the demo saves none)."""
    docs = [d for d in yaml.safe_load_all((REPO / "specs/demo/configs.yaml").read_text()) if d]
    for doc in docs:
        if doc["metadata"]["name"] == "demo-training":
            doc["spec"]["config"].pop("save_strategy", None)
            doc["spec"]["config"]["save_steps"] = SAVE_STEPS
    return yaml.safe_dump_all(docs, sort_keys=False)


def complete_checkpoints(job: Path) -> list[int]:
    return sorted(json.loads(m.read_text())["step"] for m in job.glob("checkpoints/checkpoint-*/ftctl-checkpoint.json"))


def test_killed_training_resumes_from_its_checkpoint(tmp_path: Path, tiny_model: Path) -> None:
    root = make_training(tmp_path, tiny_model, retries=1, configs=configs_with_checkpoints())
    started = local_ftctl(root, "apply", "--offline", "--auto-approve", "--create-store", "specs/demo")
    assert started.returncode == 0, started.stderr
    [job] = (root / ".app/jobs").glob("*/ftctl-train-*")  # <jobs>/<store id>/<job>

    # Wait (no time threshold: until the runner ends) for its first complete checkpoint, then kill it whole.
    while not complete_checkpoints(job):
        assert not (job / "result.json").exists(), "the training ended before its first checkpoint"
        assert (job / "launch.json").exists() or (job / "queued.json").exists()
        time.sleep(0.1)
    pid = json.loads((job / "launch.json").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)
    while True:  # the runner's lock is released when the group is gone
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    assert not (job / "result.json").exists()
    resume_at = complete_checkpoints(job)[-1]
    assert resume_at > 0 and resume_at % SAVE_STEPS == 0

    done = local_ftctl(root, "apply", "--offline", "--auto-approve", "--wait", "--poll", "0.3", "specs/demo")
    assert done.returncode == 0, done.stderr[-3000:]
    shown = done.stdout + done.stderr
    assert "relaunch (attempt 2 of 2)" in shown
    assert f"resumed at step {resume_at}" in shown, shown[-3000:]

    result = json.loads((job / "result.json").read_text())
    assert result["status"] == "succeeded", result
    metrics = result["metrics"]
    assert metrics["resumed_from_step"] == resume_at
    assert metrics["trained_steps"] == metrics["train_steps"] - resume_at  # the steps before S were not redone
    assert result["artifacts"]["checkpoints"].startswith(f"resumed at step {resume_at}")
    assert f"checkpoints: resumed at step {resume_at}" in (job / "log.txt").read_text()
    assert not (job / "attempt-1" / "result.json").exists()  # the killed attempt left none

    status = local_ftctl(root, "status", "--offline", "--format", "json", "specs/demo")
    [row] = [r for r in json.loads(status.stdout)["objects"] if r["kind"] == "FineTuningJob"]
    assert f"resumed at step {resume_at}" in json.dumps(row), row

    loaded = subprocess.run([sys.executable, "-c", (
        "import sys; from transformers import AutoModelForCausalLM; from peft import PeftModel; "
        "m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sys.argv[1]), sys.argv[2]); "
        "print(type(m).__name__)"), str(tiny_model), result["artifacts"]["adapter_dir"]],
        capture_output=True, text=True, timeout=300, cwd=root, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # relative to the project
    assert loaded.returncode == 0 and "PeftModel" in loaded.stdout, loaded.stderr[-2000:]
