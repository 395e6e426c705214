"""Test-wide settings: keep ftctl's parse cache and the Hub client's state inside the test run, and
run jobs on the fake backend (launch recorded, nothing started) unless a test asks for the local one."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.unit.hub_cases"]  # the fake Hub fixtures of the online tests


@pytest.fixture(autouse=True, scope="session")
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["FTCTL_CACHE_DIR"] = str(tmp_path_factory.mktemp("ftctl-cache"))
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("FTCTL_BACKEND", "fake")
