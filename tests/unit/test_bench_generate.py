"""The benchmark generator writes valid projects: every document loads cleanly and every kind appears."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from reconciler.manifests import load_paths

REPO = Path(__file__).resolve().parents[2]
FTCTL = REPO / ".venv" / "bin" / "ftctl"


def _load_generator():  # by path, so this works under plain `pytest` as well as `python -m pytest`
    spec = importlib.util.spec_from_file_location("bench_generate", REPO / "tests" / "bench" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_gen = _load_generator()
KINDS, generate_project = _gen.KINDS, _gen.generate_project


@pytest.mark.parametrize("files", ["many", "one"])
def test_generated_project_loads_without_diagnostics(tmp_path: Path, files: str) -> None:
    root = generate_project(tmp_path / "proj", 50, files=files)
    result = load_paths([str(root)])
    assert result.diagnostics == []
    assert len(result.manifests) == 50
    kinds = Counter(m.kind for m in result.manifests)
    assert set(kinds) == set(KINDS)
    assert kinds["Dataset"] == 5 and kinds["FineTuningJob"] == 10
    for kind in KINDS:
        names = [m.name for m in result.manifests if m.kind == kind]
        assert len(names) == len(set(names)), f"duplicate {kind} names"
    assert len(result.files) == (50 if files == "many" else 1)


@pytest.mark.parametrize("files", ["many", "one"])
def test_generated_project_passes_ftctl_validate(tmp_path: Path, files: str) -> None:
    root = generate_project(tmp_path / "proj", 50, files=files)
    proc = subprocess.run(
        [str(FTCTL), "validate", "--offline", str(root)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
