"""The pull-request action (action.yml) end to end: its own `run:` steps, run as GitHub would run them.

The composite action's steps are read from action.yml and run in order with bash (`--noprofile
--norc -eo pipefail`, GitHub's `shell: bash`), each with the `env:` it declares; the `${{ }}`
expressions there are evaluated by a tiny evaluator that knows only the forms the action uses
(inputs, github.*, runner.temp, steps.<id>.outputs.<name>) and fails on any other. `uses:` steps
(setup-python, the SARIF upload) and the install step are skipped: ftctl is already installed (this
Python's bin folder comes first on PATH).

The repository is a git repository holding a copy of specs/; its store was made by applying
specs/demo (jobs on the fake backend: nothing runs), then the "pull request" edits the manifests. A
fake GitHub API on 127.0.0.1 serves the pull request's comments (paginated, 100 a page) and
records every request. Secret values in the environment must never reach a comment, the job's
output or any file written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.e2e.helpers import apply, cli_env, ftctl, jobs_env, make_demo, show
from tests.fakes.json_api import json_api

REPO = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((REPO / "action.yml").read_text(encoding="utf-8"))
SCRIPT = REPO / "ci" / "pr_comment.py"
BIN = Path(sys.executable).parent  # .venv/bin: ftctl and python, as the action's setup steps leave them
OWNER_REPO = "acme/fine-tuning"
PR = 7
TOKEN = "ghp_secret123"
HF_TOKEN = "hf_secret456"
SECRETS = (TOKEN, HF_TOKEN)
MARKER = "<!-- ftctl-plan -->"
STORE = ".ftctl/state.db"
BOTH = "specs/demo specs/examples"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


# -- a fake GitHub API ---------------------------------------------------------------------------

@dataclass
class FakeGitHub:
    """Issue comments of one pull request; `fail` answers the next requests with these statuses;
    `lose_posts` creates the comment but answers 502 (an answer lost on the way)."""

    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail: list[int] = field(default_factory=list)
    lose_posts: int = 0
    url: str = ""
    _next: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seed(self, n: int) -> None:
        """n comments by people, before ftctl's."""
        for i in range(n):
            self.comments.append({"id": self._new_id(), "body": f"looks good {i}", "user": {"login": "dev"}})

    def _new_id(self) -> int:
        self._next += 1
        return self._next

    def ftctl_comments(self) -> list[dict[str, Any]]:
        return [c for c in self.comments if c["body"].startswith("<!-- ftctl-plan")]

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        with self._lock:
            payload = json.loads(body) if body else None
            self.requests.append({"method": method, "path": path, "headers": headers, "body": payload})
            if headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, {"message": "Bad credentials"}
            if self.fail:
                return self.fail.pop(0), {"message": "try again"}
            parts = urlsplit(path)
            query = parse_qs(parts.query)
            if parts.path == f"/repos/{OWNER_REPO}/issues/{PR}/comments":
                if method == "GET":
                    per_page, page = int(query["per_page"][0]), int(query.get("page", ["1"])[0])
                    return 200, self.comments[(page - 1) * per_page: page * per_page]
                if method == "POST":
                    comment = {"id": self._new_id(), "body": payload["body"], "user": {"login": "github-actions[bot]"}}
                    self.comments.append(comment)
                    if self.lose_posts:
                        self.lose_posts -= 1
                        return 502, {"message": "bad gateway"}
                    return 201, comment
            match = re.fullmatch(rf"/repos/{OWNER_REPO}/issues/comments/(\d+)", parts.path)
            if match and method == "PATCH":
                for comment in self.comments:
                    if comment["id"] == int(match.group(1)):
                        comment["body"] = payload["body"]
                        return 200, comment
            return 404, {"message": "Not Found"}


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    with json_api(fake.handle) as url:
        fake.url = url
        yield fake


# -- running the composite action's steps ----------------------------------------------------------

@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    outputs: dict[str, dict[str, str]]  # step id -> its outputs
    failed: str | None  # the id of the step that failed

    def __str__(self) -> str:
        return f"exit {self.rc} (step {self.failed})\n--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"


def _read_commands(path: Path) -> dict[str, str]:
    """A GITHUB_OUTPUT / GITHUB_ENV file: `name=value` lines and `name<<DELIM` heredocs."""
    out: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines()) if path.exists() else iter(())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            value = []
            for more in lines:
                if more == delim:
                    break
                value.append(more)
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
    return out


class Evaluator:
    """`${{ expr }}` for the forms the action uses; anything else is an error, not an empty string."""

    def __init__(self, inputs: dict[str, str], context: dict[str, str], steps: dict[str, dict[str, str]]) -> None:
        self.inputs, self.context, self.steps = inputs, context, steps

    def __call__(self, text: Any) -> str:
        return EXPR.sub(lambda m: self.lookup(m.group(1)), str(text))

    def lookup(self, expr: str) -> str:
        if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
            return self.inputs[m.group(1)]
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return self.steps.get(m.group(1), {}).get(m.group(2), "")
        if expr in self.context:
            return self.context[expr]
        raise ValueError(f"the test's evaluator does not know ${{{{ {expr} }}}}")


def run_action(workspace: Path, tmp: Path, github: FakeGitHub, **given: str) -> Run:
    runner_temp = tmp / "runner-temp"
    runner_temp.mkdir(parents=True, exist_ok=True)
    context = {"github.token": TOKEN, "github.action_path": str(REPO), "github.workspace": str(workspace),
               "runner.temp": str(runner_temp)}
    steps: dict[str, dict[str, str]] = {}
    evaluate = Evaluator({}, context, steps)
    declared = ACTION["inputs"]
    assert set(given) <= set(declared), f"undeclared inputs: {set(given) - set(declared)}"
    evaluate.inputs = {name: evaluate(given.get(name, spec.get("default", ""))) for name, spec in declared.items()}
    event = tmp / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": PR}}), encoding="utf-8")
    base = cli_env({
        "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]]),
        "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_ACTION_PATH": str(REPO), "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_API_URL": github.url, "GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": OWNER_REPO,
        "GITHUB_RUN_ID": "4242", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
        "GITHUB_STEP_SUMMARY": str(runner_temp / "step-summary.md"), "GITHUB_ENV": str(runner_temp / "github-env"),
        "RUNNER_TEMP": str(runner_temp), "FTCTL_CACHE_DIR": str(tmp / "ftctl-cache"), "FTCTL_COMMENT_BACKOFF_S": "0.01",
        # Secrets a CI job has in its environment; none may show anywhere.
        "GITHUB_TOKEN": TOKEN, "HUGGINGFACE_ACCESS_TOKEN": HF_TOKEN,
        **jobs_env(tmp / "jobs"),
    })
    stdout, stderr = [], []
    for i, step in enumerate(ACTION["runs"]["steps"]):
        if "uses" in step or step.get("id") == "install":
            continue
        assert "if" not in step, "the test runs every run: step; teach it the condition"
        sid = step.get("id", f"step{i}")
        output = runner_temp / f"output-{sid}"
        output.write_text("", encoding="utf-8")
        env = {**base, **_read_commands(Path(base["GITHUB_ENV"])), "GITHUB_OUTPUT": str(output)}
        env.update({k: evaluate(v) for k, v in (step.get("env") or {}).items()})
        script = runner_temp / f"step-{sid}.sh"
        script.write_text(step["run"], encoding="utf-8")
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=180, check=False)
        stdout.append(proc.stdout)
        stderr.append(proc.stderr)
        steps[sid] = _read_commands(output)
        if proc.returncode != 0:
            return Run(proc.returncode, "".join(stdout), "".join(stderr), steps, sid)
    return Run(0, "".join(stdout), "".join(stderr), steps, None)


# -- the repository of a pull request ------------------------------------------------------------

def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=dev", "-c", "user.email=dev@example.com", *args], cwd=root, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """specs/ in a git repository, and a store made by applying specs/demo (the main branch)."""
    root = make_demo(tmp_path / "repo")
    (root / ".gitignore").write_text(".app/\n.ftctl/\n", encoding="utf-8")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "manifests")
    (root / ".ftctl").mkdir()
    done = apply(root, "specs/demo", store=STORE, env=jobs_env(tmp_path / "jobs"))
    assert done.returncode == 0, show(done)
    _git(root, "checkout", "-q", "-b", "pr")
    return root


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {rel}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def drop_documents(root: Path, rel: str, keep: int) -> None:
    """Keep the first `keep` YAML documents of a file (a pull request that deletes the others)."""
    path = root / rel
    documents = path.read_text(encoding="utf-8").split("\n---\n")
    path.write_text("\n---\n".join(documents[:keep]) + "\n", encoding="utf-8")


def leaks(run: Run, github: FakeGitHub, *folders: Path) -> list[str]:
    """Where a secret value shows: the job's output, any request body, any file under the folders."""
    found = [f"{where} holds {s[:5]}…" for where, text in (("stdout", run.stdout), ("stderr", run.stderr))
             for s in SECRETS if s in text]
    for request in github.requests:
        body = json.dumps(request["body"])
        found += [f"{request['method']} {request['path']} holds {s[:5]}…" for s in SECRETS if s in body]
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                data = path.read_bytes()
                found += [f"{path} holds {s[:5]}…" for s in SECRETS if s.encode() in data]
    return found


# -- the tests -----------------------------------------------------------------------------------

def test_changes_pass_and_the_one_comment_is_updated(repo: Path, tmp_path: Path, github: FakeGitHub) -> None:
    github.seed(120)  # ftctl's comment lands on the second page
    edit(repo, "specs/demo/resources.yaml", "labelled with one of 8 actions.", "labelled with the next action.")
    edit(repo, "specs/demo/pipeline.yaml", "  adapter_name: demo-ticketing-lora\n",
         "  adapter_name: demo-ticketing-lora\n  hf_token_env: HUGGINGFACE_ACCESS_TOKEN\n")

    first = run_action(repo, tmp_path, github, path=BOTH, store=STORE)
    assert first.rc == 0, first
    assert first.outputs["validate"]["exitcode"] == "0" and first.outputs["plan"]["exitcode"] == "2", first
    assert len(github.calls("POST")) == 1 and not github.calls("PATCH")
    [comment] = github.ftctl_comments()
    lines = comment["body"].splitlines()
    assert lines[0] == MARKER
    assert lines[1].startswith("**ftctl** · 📝 **Changes to apply**: "), lines[1]
    assert "to create" in lines[1] and "1 to update" in lines[1], lines[1]
    assert "### ftctl plan for `.ftctl/state.db`" in comment["body"]
    assert "<details><summary>" in comment["body"] and "</details>" in comment["body"]
    assert "**Dataset/demo-tickets**" in comment["body"] and "Dataset/sql-create-context" in comment["body"]
    assert "https://github.example/acme/fine-tuning/actions/runs/4242" in comment["body"]
    summary = (tmp_path / "runner-temp" / "step-summary.md").read_text(encoding="utf-8")
    assert "Changes to apply" in summary
    assert all(r["headers"].get("Authorization") == f"Bearer {TOKEN}" for r in github.requests)
    sarif = json.loads(Path(first.outputs["validate"]["sarif"]).read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0" and not [r for r in sarif["runs"][0]["results"] if r["level"] == "error"]

    # The next push: the same comment is edited, no second one appears.
    edit(repo, "specs/demo/resources.yaml", "labelled with the next action.", "labelled with what to do next.")
    second = run_action(repo, tmp_path, github, path=BOTH, store=STORE)
    assert second.rc == 0, second
    assert len(github.calls("POST")) == 1 and len(github.calls("PATCH")) == 1
    assert github.calls("PATCH")[0]["path"].endswith(f"/issues/comments/{comment['id']}")
    [updated] = github.ftctl_comments()
    assert "what to do next" in updated["body"] and len(github.comments) == 121
    pages = [r["path"] for r in github.calls("GET")]
    assert any("page=2" in p for p in pages) and all("per_page=100" in p for p in pages)

    assert not leaks(first, github, repo, tmp_path / "runner-temp", tmp_path / "ftctl-cache")
    assert not leaks(second, github, repo, tmp_path / "runner-temp", tmp_path / "ftctl-cache")


def test_validation_errors_fail_with_annotations(repo: Path, tmp_path: Path, github: FakeGitHub) -> None:
    edit(repo, "specs/demo/pipeline.yaml", "  base_model: tiny-llama\n  dataset: demo-tickets\n",
         "  base_modle: tiny-llama\n  dataset: demo-tickets\n")
    run = run_action(repo, tmp_path, github, path="specs/demo", store=STORE)
    assert run.rc == 1 and run.failed == "verdict", run
    assert re.search(r"^::error file=specs/demo/pipeline\.yaml,line=\d+,col=\d+,title=SC-001 ", run.stdout, re.M), run
    assert run.outputs["validate"]["exitcode"] == "1" and run.outputs["plan"]["exitcode"] == "", run
    sarif = json.loads(Path(run.outputs["validate"]["sarif"]).read_text(encoding="utf-8"))
    assert {r["ruleId"] for r in sarif["runs"][0]["results"] if r["level"] == "error"} >= {"SC-001"}
    [comment] = github.ftctl_comments()
    lines = comment["body"].splitlines()
    assert lines[0] == MARKER and lines[1].startswith("**ftctl** · ❌ **Validation failed** (invalid: "), lines[1]
    assert "base_modle" in comment["body"] and "<details open>" in comment["body"]
    assert not leaks(run, github, repo, tmp_path / "runner-temp", tmp_path / "ftctl-cache")


@pytest.mark.parametrize("why", ["protected", "max-deletions"])
def test_a_blocked_plan_fails(repo: Path, tmp_path: Path, github: FakeGitHub, why: str) -> None:
    if why == "protected":
        done = ftctl(repo, "protect", "Config/demo-generation", "--store", STORE)
        assert done.returncode == 0, show(done)
    # The pull request drops the evaluation, the export and the generation config only they used.
    drop_documents(repo, "specs/demo/pipeline.yaml", keep=1)
    drop_documents(repo, "specs/demo/configs.yaml", keep=2)
    run = run_action(repo, tmp_path, github, path="specs/demo", store=STORE, prune="true",
                     **({"max-deletions": "0"} if why == "max-deletions" else {}))
    assert run.rc == 3 and run.failed == "verdict", run
    assert run.outputs["plan"]["exitcode"] == "3", run
    assert "::error::ftctl plan: blocked by policy" in run.stdout
    [comment] = github.ftctl_comments()
    assert comment["body"].splitlines()[1].startswith("**ftctl** · ⛔ **Blocked by policy** (exit 3)")
    assert ("PL-002" if why == "protected" else "**Blocked**") in comment["body"]
    assert "Config/demo-generation" in comment["body"]


def test_no_changes_pass_without_a_comment(repo: Path, tmp_path: Path, github: FakeGitHub) -> None:
    run = run_action(repo, tmp_path, github, path="specs/demo", store=STORE, comment="false")
    assert run.rc == 0 and run.outputs["plan"]["exitcode"] == "0", run
    assert github.requests == []
    summary = (tmp_path / "runner-temp" / "step-summary.md").read_text(encoding="utf-8")
    assert summary.startswith(MARKER) and "✅ **No changes**" in summary


def test_a_missing_snapshot_plans_against_an_empty_store(repo: Path, tmp_path: Path, github: FakeGitHub) -> None:
    run = run_action(repo, tmp_path, github, path="specs/demo", comment="false")  # snapshot: .ftctl/snapshot.json
    assert run.rc == 0 and run.outputs["plan"]["exitcode"] == "2", run
    assert "::warning::ftctl: no snapshot at .ftctl/snapshot.json" in run.stdout
    assert "7 to create" in (tmp_path / "runner-temp" / "step-summary.md").read_text(encoding="utf-8")


def test_the_default_plans_against_the_snapshot(repo: Path, tmp_path: Path, github: FakeGitHub) -> None:
    if ftctl(repo, "state", "pull", "--help").returncode != 0:
        pytest.skip("this ftctl has no `state pull` (store snapshots)")
    # Pulled where the apply ran (it sees the jobs): the snapshot records the training as running.
    done = ftctl(repo, "state", "pull", "--store", STORE, "-o", ".ftctl/snapshot.json", env=jobs_env(tmp_path / "jobs"))
    assert done.returncode == 0, show(done)
    edit(repo, "specs/demo/resources.yaml", "labelled with one of 8 actions.", "labelled with the next action.")
    run = run_action(repo, tmp_path, github, path="specs/demo")  # store: empty, snapshot: .ftctl/snapshot.json
    assert run.rc == 0 and run.outputs["plan"]["exitcode"] == "2", run
    assert "no snapshot" not in run.stdout
    [comment] = github.ftctl_comments()
    assert comment["body"].splitlines()[1] == "**ftctl** · 📝 **Changes to apply**: 1 to update, 2 waiting."


def test_a_store_that_cannot_be_read_fails(repo: Path, tmp_path: Path, github: FakeGitHub) -> None:
    (repo / ".ftctl" / "broken.db").write_text("not a database", encoding="utf-8")
    run = run_action(repo, tmp_path, github, path="specs/demo", store=".ftctl/broken.db")
    assert run.rc == 1 and run.failed == "verdict" and run.outputs["plan"]["exitcode"] == "1", run
    [comment] = github.ftctl_comments()
    assert comment["body"].splitlines()[1].startswith("**ftctl** · ❌ **No plan** (ftctl plan exited 1)")
    assert "file is not a database" in comment["body"]


# -- the comment script alone --------------------------------------------------------------------

def _comment(tmp: Path, github: FakeGitHub, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    event = tmp / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": PR}}), encoding="utf-8")
    env = {"PATH": os.environ["PATH"], "GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": OWNER_REPO,
           "GITHUB_TOKEN": TOKEN, "GITHUB_EVENT_PATH": str(event), "GITHUB_SERVER_URL": "https://github.example",
           "GITHUB_RUN_ID": "99", "FTCTL_COMMENT_BACKOFF_S": "0.01", "HUGGINGFACE_ACCESS_TOKEN": HF_TOKEN,
           **(extra_env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_comment_is_cut_redacted_retried_and_never_doubled(tmp_path: Path, github: FakeGitHub) -> None:
    changes = "\n".join(f"- `+` **Dataset/d{i}**: new in the manifests ({HF_TOKEN})" for i in range(3000))
    plan = tmp_path / "plan.md"
    plan.write_text(f"### ftctl plan for `x`\n\n<details><summary>3000 change(s)</summary>\n\n{changes}\n\n</details>\n",
                    encoding="utf-8")
    args = ["--plan-exitcode", "2", "--plan", str(plan)]
    github.fail = [502, 503]  # the first listing is retried
    github.lose_posts = 1  # the POST is made, its answer lost: the script must find it, not post again
    done = _comment(tmp_path, github, *args)
    assert done.returncode == 0, done.stderr
    [comment] = github.ftctl_comments()
    body = comment["body"]
    assert len(body) <= 60_000 and "Cut to fit a comment" in body and "https://github.example/acme/fine-tuning/actions/runs/99" in body
    assert "<summary>3000 change(s)</summary>" in body
    assert HF_TOKEN not in body and TOKEN not in body
    assert len(github.calls("POST")) == 1 and len(github.calls("PATCH")) == 1
    assert TOKEN not in done.stdout + done.stderr

    # Keys tell apart the comments of two actions; each key keeps its one comment.
    small = tmp_path / "small.md"
    small.write_text(f"token {HF_TOKEN} in a plan\n", encoding="utf-8")
    for key in ("specs/a", "specs/b", "specs/a"):
        done = _comment(tmp_path, github, "--key", key, "--plan-exitcode", "0", "--plan", str(small))
        assert done.returncode == 0, done.stderr
    marks = sorted(c["body"].splitlines()[0] for c in github.ftctl_comments())
    assert marks == [MARKER, "<!-- ftctl-plan key=specs/a -->", "<!-- ftctl-plan key=specs/b -->"]
    assert all("token *** in a plan" in c["body"] for c in github.ftctl_comments() if "key=" in c["body"])


def test_the_comment_script_fails_cleanly(tmp_path: Path, github: FakeGitHub) -> None:
    github.fail = [500] * 10  # GitHub is down: a few tries, then an error naming the call, not the token
    done = _comment(tmp_path, github, "--plan-exitcode", "0")
    assert done.returncode == 1 and "::error::ftctl comment: GET /repos/acme/fine-tuning/issues/7/comments" in done.stdout
    assert len(github.requests) == 4 and TOKEN not in done.stdout + done.stderr
    github.fail = [403]  # a fork's read-only token: a warning, the check itself does not fail
    done = _comment(tmp_path, github, "--plan-exitcode", "0")
    assert done.returncode == 0 and "::warning::ftctl comment: cannot comment" in done.stdout
    done = _comment(tmp_path, github, "--plan-exitcode", "0", extra_env={"GITHUB_EVENT_PATH": str(tmp_path / "none.json")})
    assert done.returncode == 0 and "not a pull request" in done.stdout
