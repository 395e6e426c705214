"""Fixtures of the end-to-end tests: a copy of specs/ with the demo's model, in a temporary folder;
the real tiny model, for the tests that train."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import make_demo
from tests.runners.helpers import MISSING_ML, build_tiny_model


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A temporary folder holding specs/ and the stand-in for the demo's model; run the CLI from here."""
    return make_demo(tmp_path / "project")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny Llama and tokenizer (runners/build_tiny_model.py), built once per session."""
    if MISSING_ML:
        pytest.skip(f"the ML stack is not installed ({', '.join(MISSING_ML)} missing)")
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")
