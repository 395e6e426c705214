"""Fixtures of the end-to-end tests: a copy of specs/ with the demo's model, in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.helpers import make_demo


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    """A temporary folder holding specs/ and the stand-in for the demo's model; run the CLI from here."""
    return make_demo(tmp_path / "project")
