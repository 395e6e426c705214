"""Fixtures for the runner tests: the tiny model (built once), a shared MLflow tracking store, job inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.runners.helpers import MISSING_ML, JobWriter, build_tiny_model, write_job_input


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny Llama and tokenizer, built once per session with runners/build_tiny_model.py."""
    if MISSING_ML:
        pytest.skip(f"the ML stack is not installed ({', '.join(MISSING_ML)} missing)")
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


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
