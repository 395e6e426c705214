"""Shared by the stub runners: the real job machinery (runners/jobio.py: input, progress, result,
its FTCTL_RUNNER_FAIL hook, SIGTERM), with the work replaced by a few file writes. Contract-true and fast.

A test makes one job fail with a chosen error class with `failures.fail_job` (a side file in the
project folder, no part of the job input: the published contract).

FTCTL_STUB_SECONDS holds each job that long before it finishes (tests of running and cancelled
jobs); FTCTL_STUB_METRIC sets the evaluation's rougeL (default 0.3). The train stub reports, as the
artifact `secret_digests`, a digest of each value its training arguments hold at a `*_token` key, as
the runner received them (references resolved): tests see that a secret arrived, never the value.
FTCTL_STUB_ECHO_FAIL makes the train stub fail as a library that echoes the arguments it rejects."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "runners"))
import jobio
from failures import planned
from studio_results import folder_of, write_results


def hold(progress: Any) -> None:
    seconds = float(os.environ.get("FTCTL_STUB_SECONDS") or 0)
    end = time.time() + seconds
    while time.time() < end:
        progress.update(stage="working")
        time.sleep(0.05)


def train(job: dict[str, Any], progress: Any) -> tuple[dict[str, float], dict[str, Any]]:
    hold(progress)
    adapter = Path(job["outputs"]["adapter_dir"])
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": job["model"]["name_or_path"]}))
    arguments = job["train"].get("training_arguments") or {}
    if os.environ.get("FTCTL_STUB_ECHO_FAIL"):
        raise ValueError(f"rejected training arguments {arguments}")
    seen = {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in arguments.items() if k.endswith("_token")}
    return {"train_loss": 1.0}, {"adapter_dir": str(adapter), "secret_digests": seen}


def evaluate(job: dict[str, Any], progress: Any) -> tuple[dict[str, float], dict[str, Any]]:
    """Scores every candidate alike; writes the Studio's result files as the real runner does."""
    hold(progress)
    metrics = {"rougeL": float(os.environ.get("FTCTL_STUB_METRIC") or 0.3), "exact_match": 0.0}
    where, candidates = job["outputs"].get("evaluation_dir"), job["evaluate"]["candidates"]
    rows = [{"input": "### CUSTOMER: hello\n### ACTION: ", "expected": "greet", "prediction": "hi",
             "exact_match": 0.0, "rougeL": metrics["rougeL"], "latency_s": 0.01}]
    for candidate in candidates if where else ():
        write_results(folder_of(where, candidate["evaluation_id"], len(candidates)), rows, {**metrics, "latency_s": 0.01})
    return metrics, {}


def export(job: dict[str, Any], progress: Any) -> tuple[dict[str, float], dict[str, Any]]:
    hold(progress)
    return {}, {"registered_model_name": job["export"]["registered_model_name"], "registered_model_version": "1"}


def main(kind: str) -> None:
    work = {"train": train, "evaluate": evaluate, "export": export}[kind]

    def planned_then_work(job: dict[str, Any], progress: Any) -> tuple[dict[str, float], dict[str, Any]]:
        jobio.simulated_failure(planned(job["job_name"]))
        return work(job, progress)

    sys.exit(jobio.run(kind, planned_then_work))
