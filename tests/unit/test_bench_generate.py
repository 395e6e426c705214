"""The benchmark generator writes valid projects: every document loads cleanly and every kind appears."""

from __future__ import annotations

import importlib.util
import os
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
    hub_ids = [m.resource.spec.huggingface_model_name for m in result.manifests if m.kind == "Model"]
    assert len(hub_ids) == len(set(hub_ids)), "a Hub model id registered twice (NM-004)"


@pytest.mark.parametrize("files", ["many", "one"])
def test_generated_project_passes_ftctl_validate(tmp_path: Path, files: str) -> None:
    root = generate_project(tmp_path / "proj", 50, files=files)
    proc = subprocess.run(
        [str(FTCTL), "validate", "--offline", str(root)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_generated_project_applies_and_plans_offline(tmp_path: Path) -> None:
    """What `make bench` times: a first apply, a no-change plan, and one edited description = 1 update."""
    root = generate_project(tmp_path / "proj", 50)
    store = tmp_path / "state.db"
    env = {**os.environ, "FTCTL_CACHE_DIR": str(tmp_path / "cache")}

    def ftctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(FTCTL), *args], capture_output=True, text=True, timeout=120, env=env)

    applied = ftctl("apply", "--offline", "--auto-approve", "--create-store", "--store", str(store), str(root))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    # Evaluations and exports wait for their fine-tuning job's adapter; everything else is created.
    assert "40 to create, 0 to update, 0 to replace, 0 to delete, 0 unchanged, 10 waiting" in applied.stdout

    plan = ("plan", "--offline", "--detailed-exitcode", "--store", str(store), str(root))
    unchanged = ftctl(*plan)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "0 to create, 0 to update, 0 to replace, 0 to delete, 40 unchanged" in unchanged.stdout

    edited = root / "dataset" / "000" / "ds-00000.yaml"
    line = "description: Support tickets, slice 0\n"
    assert edited.read_text().count(line) == 1  # the line tests/bench/bench.py edits
    edited.write_text(edited.read_text().replace(line, line[:-1] + " (edited)\n"))
    changed = ftctl(*plan)
    assert changed.returncode == 2, changed.stdout + changed.stderr
    assert "0 to create, 1 to update, 0 to replace, 0 to delete, 39 unchanged" in changed.stdout
    assert "~ Dataset/ds-00000:" in changed.stdout
