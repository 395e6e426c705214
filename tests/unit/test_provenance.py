"""Provenance (reconciler/provenance.py): the manifests' commit with a real git repository in
tmp_path (clean, dirty by a modified or an untracked manifest, a change outside the manifests given,
not a repository, the CI's and ftctl's variables), each local dataset's sha256, and base revisions
(a project model's folder digest over config.json and file names and sizes; a Hub model's from the
hub facts; a registry model's MLflow run)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.facts import HubFacts, RegisteredModelFact, RegistryFacts
from reconciler.lineage import UNKNOWN
from reconciler.manifests import load_paths
from reconciler.provenance import gather_provenance, manifests_commit
from reconciler.safeio import ReadRoots

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
MANIFESTS = """\
apiVersion: ftctl/v1
kind: Dataset
metadata: {name: tickets}
spec: {type: project, location: data/tickets.csv}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: tiny}
spec: {type: project, location: models/tiny}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: bloom}
spec: {type: huggingface, huggingface_model_name: bigscience/bloom-560m}
---
apiVersion: ftctl/v1
kind: Model
metadata: {name: registered}
spec: {type: model_registry, cml_registered_model_id: reg-1}
"""


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()


def _project(root: Path) -> Path:
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "all.yaml").write_text(MANIFESTS, encoding="utf-8")
    (root / "specs" / "data").mkdir()
    (root / "specs" / "data" / "tickets.csv").write_text("text,label\nhello,greet\n", encoding="utf-8")
    model = root / "specs" / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 32}', encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    return root


def _repo(root: Path) -> str:
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "init")
    return _git(root, "rev-parse", "HEAD")


@needs_git
def test_a_clean_work_tree_gives_its_head(tmp_path: Path) -> None:
    head = _repo(_project(tmp_path))
    assert manifests_commit([str(tmp_path / "specs")], root=str(tmp_path), environ={}) == head


@needs_git
@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_a_change_to_the_manifests_given_is_dirty(tmp_path: Path, change: str) -> None:
    head = _repo(_project(tmp_path))
    if change == "modified":
        (tmp_path / "specs" / "all.yaml").write_text(MANIFESTS + "# edited\n", encoding="utf-8")
    else:
        (tmp_path / "specs" / "new.yaml").write_text("# new\n", encoding="utf-8")
    assert manifests_commit([str(tmp_path / "specs")], root=str(tmp_path), environ={}) == f"{head}-dirty"


@needs_git
def test_a_change_outside_the_manifests_given_keeps_it_clean(tmp_path: Path) -> None:
    head = _repo(_project(tmp_path))
    (tmp_path / "notes.txt").write_text("elsewhere\n", encoding="utf-8")
    assert manifests_commit([str(tmp_path / "specs")], root=str(tmp_path), environ={}) == head


def test_outside_git_the_commit_is_unknown(tmp_path: Path) -> None:
    _project(tmp_path)
    done = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, check=False)
    if done.returncode == 0:
        pytest.skip("tmp_path lies inside a git repository here")
    assert manifests_commit([str(tmp_path / "specs")], root=str(tmp_path), environ={}) == UNKNOWN


@pytest.mark.parametrize("variable", ["FTCTL_COMMIT_SHA", "GITHUB_SHA", "CI_COMMIT_SHA"])
def test_a_ci_variable_overrides_git(tmp_path: Path, variable: str) -> None:
    _project(tmp_path)
    assert manifests_commit([str(tmp_path / "specs")], root=str(tmp_path), environ={variable: "abc123"}) == "abc123"


def test_ftctls_own_variable_wins_over_the_cis() -> None:
    assert manifests_commit([], root="/nonexistent", environ={"GITHUB_SHA": "gh", "FTCTL_COMMIT_SHA": "mine"}) == "mine"


def _provenance(root: Path, **facts: object):  # type: ignore[no-untyped-def]
    specs = str(root / "specs")
    loaded = load_paths([specs], roots=ReadRoots.of(str(root)))
    assert not [d for d in loaded.diagnostics if d.severity.is_error()], loaded.diagnostics
    return gather_provenance(loaded.manifests, paths=[specs], root=str(root), roots=ReadRoots.of(str(root)),
                             environ={"FTCTL_COMMIT_SHA": "c"}, **facts)  # type: ignore[arg-type]


def test_each_local_dataset_is_digested_by_its_stored_location(tmp_path: Path) -> None:
    _project(tmp_path)
    data = (tmp_path / "specs" / "data" / "tickets.csv").read_bytes()
    assert _provenance(tmp_path).dataset_digests == {"specs/data/tickets.csv": hashlib.sha256(data).hexdigest()}


def test_a_project_models_revision_follows_its_config_and_file_sizes_not_its_weights_bytes(tmp_path: Path) -> None:
    _project(tmp_path)
    model = tmp_path / "specs" / "models" / "tiny"

    def revision() -> str:
        return str(_provenance(tmp_path).model_revisions["specs/models/tiny"])

    first = revision()
    assert first.startswith("files:") and len(first) == len("files:") + 64
    (model / "model.safetensors").write_bytes(b"\1" * 64)  # same size: the weights are not read
    assert revision() == first
    (model / "model.safetensors").write_bytes(b"\1" * 65)
    resized = revision()
    assert resized != first
    (model / "config.json").write_text('{"hidden_size": 64}', encoding="utf-8")
    assert revision() != resized
    (model / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert revision() not in (first, resized)


def test_hub_and_registry_revisions_come_from_their_facts(tmp_path: Path) -> None:
    _project(tmp_path)
    offline = _provenance(tmp_path).model_revisions
    assert "bigscience/bloom-560m" not in offline and "reg-1" not in offline  # unknown: lineage says so
    online = _provenance(tmp_path, hub=HubFacts(model_revisions={"bigscience/bloom-560m": "a" * 40}),
                         registry=RegistryFacts(models={"reg-1": RegisteredModelFact("reg", "e1", "run-9", 1)})).model_revisions
    assert online["bigscience/bloom-560m"] == "a" * 40
    assert online["reg-1"] == "mlflow-run:run-9"
