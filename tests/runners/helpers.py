"""Helpers for the runner tests (fixtures are in conftest.py).

The runners are programs: tests start them as real subprocesses (`python runners/<kind>.py --input
JOB.json`) and read the files they write, as ftctl's backends do. Nothing here imports the ML stack,
so collecting these tests costs nothing when it is not installed.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "specs" / "demo"
DEMO_CSV = DEMO / "data" / "tickets.csv"
ML_PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "mlflow")
MISSING_ML = [name for name in ML_PACKAGES if importlib.util.find_spec(name) is None]
# Put on every test that runs the ML stack: skips cleanly where it is not installed.
needs_ml = [
    pytest.mark.ml,
    pytest.mark.skipif(bool(MISSING_ML), reason=f"the ML stack is not installed ({', '.join(MISSING_ML)} missing): "
                                                 "run `make install-train`"),
]
# The demo's configs (specs/demo/configs.yaml), as ftctl would resolve them into the job input.
DEMO_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "bias": "none", "task_type": "CAUSAL_LM",
             "target_modules": "all-linear"}
DEMO_TRAINING = {"num_train_epochs": 3, "per_device_train_batch_size": 8, "learning_rate": 1.0e-2,
                 "optim": "adamw_torch", "lr_scheduler_type": "constant", "logging_steps": 1, "fp16": False,
                 "bf16": False, "use_cpu": True, "gradient_checkpointing": False, "save_strategy": "no",
                 "max_length": 128, "seed": 42}
JobWriter = Callable[..., Path]  # the write_job fixture: write(kind='train', **overrides) -> job-input path
DEMO_PROMPT = "### CUSTOMER: {instruction}\n### ACTION: {intent}"


def build_tiny_model(out: Path) -> Path:
    """The demo's tiny Llama and tokenizer, built at `out` by runners/build_tiny_model.py from the demo's tickets."""
    proc = subprocess.run([sys.executable, str(REPO / "runners" / "build_tiny_model.py"), "--data", str(DEMO_CSV),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, nested dicts key by key; a None value removes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def write_job_input(directory: Path, tiny_model: Path, tracking_uri: str, kind: str = "train",
                    **overrides: Any) -> Path:
    """DIRECTORY/job-input.json for a `kind` job, checked against schemas/job-input.schema.json.

    The defaults train the tiny model on the demo dataset with the demo's configs; outputs go to
    DIRECTORY/job. `overrides` merge in key by key (helpers.merge; None removes a key)."""
    out = directory / "job"
    job: dict[str, Any] = {
        "contract_version": 1,
        "kind": kind,
        "job_name": f"test-{kind}-{directory.name}"[:80],
        "seed": 42,
        "model": {"type": "project", "name_or_path": str(tiny_model)},
        "dataset": {"type": "project_csv", "name_or_path": str(DEMO_CSV)},
        "prompt": {"prompt_template": DEMO_PROMPT, "input_template": "### CUSTOMER: {instruction}\n### ACTION: ",
                   "completion_template": "{intent}"},
        "outputs": {"dir": str(out), "result": str(out / "result.json"), "progress": str(out / "progress.json")},
        "tracking": {"tracking_uri": tracking_uri, "experiment": "ftctl-tests"},
    }
    if kind == "train":
        job["train"] = {"adapter_name": "tickets-lora", "lora_config": DEMO_LORA,
                        "training_arguments": DEMO_TRAINING, "dataset_fraction": 1.0, "train_test_split": 0.9}
        job["outputs"]["adapter_dir"] = str(out / "adapter")
    job = merge(job, overrides)
    schema = json.loads((REPO / "schemas" / "job-input.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(job)
    path = directory / "job-input.json"
    path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    return path


def run_runner(kind: str, job_path: Path, *, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python runners/<kind>.py --input JOB` as a job would run it, on CPU, in the job's own folder."""
    child = {k: v for k, v in os.environ.items() if k not in ("FTCTL_RUNNER_FAIL", "FTCTL_JOB_INPUT")}
    child["CUDA_VISIBLE_DEVICES"] = ""  # the same on any machine: no GPU
    child.update(env or {})
    return subprocess.run([sys.executable, str(REPO / "runners" / f"{kind}.py"), "--input", str(job_path)],
                          capture_output=True, text=True, env=child, cwd=job_path.parent, timeout=timeout)


def read_job_files(job_path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(result, progress) of a job, each None where the runner did not write it."""
    outputs = json.loads(job_path.read_text())["outputs"]
    result = Path(outputs["result"])
    progress = Path(outputs["progress"])
    return (json.loads(result.read_text()) if result.exists() else None,
            json.loads(progress.read_text()) if progress.exists() else None)
