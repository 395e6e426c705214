"""Test-wide settings: keep ftctl's parse cache and the Hub client's state inside the test run, and
run jobs on the fake backend (launch recorded, nothing started) unless a test asks for the local one.
A test run never writes into the checkout: the session fails if it did (`_checkout_untouched`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Ignored paths a test run may leave in the checkout: the interpreter's and the tools' caches.
CACHES = ("__pycache__/", ".pyc", ".hypothesis/", ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".import_linter_cache/")

pytest_plugins = ["tests.unit.hub_cases"]  # the fake Hub fixtures of the online tests


@pytest.fixture(autouse=True, scope="session")
def _private_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["FTCTL_CACHE_DIR"] = str(tmp_path_factory.mktemp("ftctl-cache"))
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.setdefault("FTCTL_BACKEND", "fake")


def checkout_state() -> set[str]:
    """What a test run must leave as it found it: every path under the checkout's .app/ (a store, job
    folders, an MLflow store) and the checkout's other ignored entries (`git status --ignored`), caches aside."""
    app = REPO / ".app"
    state = {f".app/{p.relative_to(app)}" for p in app.rglob("*")} if app.is_dir() else set()
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True,
                                check=False).stdout.splitlines()
        state |= {line[3:] for line in listed if line.startswith("!! ") and not line.endswith(CACHES) and line[3:] != ".app/"}
    return state


@pytest.fixture(autouse=True, scope="session")
def _checkout_untouched() -> Iterator[None]:
    """Fail the session when the tests wrote into the checkout (they work in tmp_path folders)."""
    before = checkout_state()
    yield
    written = sorted(checkout_state() - before)
    if written:
        pytest.fail(f"the tests wrote into the checkout {REPO}: {', '.join(written[:10])}"
                    f"{f' and {len(written) - 10} more' if len(written) > 10 else ''}", pytrace=False)
