"""Fixtures for the runner tests: the tiny model (built once), a shared MLflow tracking store, job inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.runners.helpers import DEMO_CSV, MISSING_ML, REPO, JobWriter, write_job_input


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny Llama and tokenizer, built once per session with runners/build_tiny_model.py."""
    if MISSING_ML:
        pytest.skip(f"the ML stack is not installed ({', '.join(MISSING_ML)} missing)")
    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    proc = subprocess.run([sys.executable, str(REPO / "runners" / "build_tiny_model.py"), "--data", str(DEMO_CSV),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow sqlite store for the session: creating one runs migrations (1.5-5 s; ml-stack.md §4.1)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def write_job(tmp_path: Path, tiny_model: Path, tracking_uri: str) -> JobWriter:
    """write_job(kind="train", **overrides) -> the path of a job-input JSON in the test's tmp_path."""

    def write(kind: str = "train", **overrides: Any) -> Path:
        return write_job_input(tmp_path, tiny_model, tracking_uri, kind, **overrides)

    return write
