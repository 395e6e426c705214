"""The pre-commit example, run by the real pre-commit in a throw-away repository of manifests.

ftctl's repository is this checkout's files (tracked and untracked, as `git ls-files` lists them)
committed into a git repository in tmp_path; examples/pre-commit/.pre-commit-config.yaml is used
as written with its two placeholders, repo and rev, pointed at that repository and its commit.
pre-commit builds the hook's Python environment from it (pip, from the package index this machine
is configured with); the test is skipped, saying so, only when that index cannot be reached.
A commit with a typo in a manifest is refused with ftctl's error shown; a good one goes in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import cli_env, make_demo

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "pre-commit" / ".pre-commit-config.yaml"
PRE_COMMIT = shutil.which("pre-commit", path=str(Path(sys.executable).parent))
NO_INDEX = ("No matching distribution found", "Could not find a version", "Failed to establish a new connection")


def git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args], cwd=root,
                          capture_output=True, text=True, timeout=120, check=False)


def ftctl_repository(root: Path) -> str:
    """This checkout's files committed into a new repository at root; returns the commit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = REPO / rel
        if source.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / rel)
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "ftctl")):
        assert git(root, *args).returncode == 0
    return git(root, "rev-parse", "HEAD").stdout.strip()


@pytest.mark.skipif(PRE_COMMIT is None, reason="pre-commit is not installed (the dev extra brings it)")
def test_the_hook_refuses_a_bad_manifest_and_lets_a_good_one_in(tmp_path: Path) -> None:
    assert PRE_COMMIT is not None
    ftctl = tmp_path / "ftctl"
    commit = ftctl_repository(ftctl)
    project = make_demo(tmp_path / "project")
    config = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    [entry] = config["repos"]
    assert entry["repo"].startswith("https://") and entry["rev"], "the example names a repository and a revision"
    entry.update(repo=str(ftctl), rev=commit)  # the placeholders, as a user sets them
    (project / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = cli_env({"PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "PYTHONDONTWRITEBYTECODE": "1",
                   "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])})
    git(project, "init", "-q", "-b", "main")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*args], cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False)

    installed = run(PRE_COMMIT, "install", "--install-hooks")
    if installed.returncode != 0 and any(s in installed.stdout + installed.stderr for s in NO_INDEX):
        pytest.skip(f"pre-commit could not build the hook's environment (no package index reachable): {installed.stdout[-300:]}")
    assert installed.returncode == 0, installed.stdout + installed.stderr

    pipeline = project / "specs" / "demo" / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace("  base_model:", "  base_modle:", 1), encoding="utf-8")
    assert git(project, "add", "-A").returncode == 0
    refused = run("git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", "bad")
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out
    assert "ftctl validate" in out and "Failed" in out
    assert "SC-001" in out and "unknown field 'spec.base_modle'" in out and "Did you mean 'base_model'?" in out
    assert git(project, "rev-parse", "--verify", "-q", "HEAD").returncode != 0, "nothing was committed"

    pipeline.write_text(pipeline.read_text(encoding="utf-8").replace("  base_modle:", "  base_model:", 1), encoding="utf-8")
    assert git(project, "add", "-A").returncode == 0
    good = run("git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-q", "-m", "good")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ftctl validate" in good.stderr and "Passed" in good.stderr  # git runs the hook with stdout on stderr
