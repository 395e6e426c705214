"""The GitLab example's plan job end to end: its script, as written in examples/ci/gitlab-ci.yml,
run with bash (as GitLab's runner does) against a fake GitLab API on 127.0.0.1.

ftctl is this Python's (its bin folder first on PATH) and FTCTL_SRC is this checkout, so the job
runs ci/mr_note.py from here; the default before_script (which installs ftctl from FTCTL_REF) is
not run. The fake serves one merge request's notes (paginated, oldest first), answers 404 for the
snapshot artifact (no apply yet) and records every request. The job keeps ONE note: the first
pipeline creates it, every later one edits it, and the token never shows in a note or the log.
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

from tests.e2e.helpers import cli_env, make_demo
from tests.fakes.json_api import json_api

REPO = Path(__file__).resolve().parents[2]
PIPELINE = yaml.safe_load((REPO / "examples" / "ci" / "gitlab-ci.yml").read_text(encoding="utf-8"))
BIN = Path(sys.executable).parent
PROJECT, IID = "42", 7
TOKEN = "glpat-secret123"
JOB_TOKEN = "job-token-456"
NOTES = f"/api/v4/projects/{PROJECT}/merge_requests/{IID}/notes"
MARKER = "<!-- ftctl-plan -->"


@dataclass
class FakeGitLab:
    """Notes of one merge request; `lose_posts` creates the note but answers 502."""

    notes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lose_posts: int = 0
    url: str = ""
    _next: int = 500
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seed(self, n: int) -> None:
        for i in range(n):
            self._add(f"looks good {i}")

    def _add(self, body: str) -> dict[str, Any]:
        self._next += 1
        note = {"id": self._next, "body": body, "system": False}
        self.notes.append(note)
        return note

    def ftctl_notes(self) -> list[dict[str, Any]]:
        return [n for n in self.notes if n["body"].startswith("<!-- ftctl-plan")]

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(NOTES)]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": headers, "body": body.decode()})
            parts = urlsplit(path)
            if "/jobs/artifacts/" in parts.path:
                ok = headers.get("JOB-TOKEN") == JOB_TOKEN
                return (404, {"message": "404 Not found"}) if ok else (401, {"message": "401 Unauthorized"})
            if headers.get("PRIVATE-TOKEN") != TOKEN:
                return 401, {"message": "401 Unauthorized"}
            payload = json.loads(body) if body else None
            if parts.path == NOTES and method == "GET":
                query = parse_qs(parts.query)
                assert query["sort"] == ["asc"], "notes are listed oldest first"
                per_page, page = int(query["per_page"][0]), int(query["page"][0])
                return 200, self.notes[(page - 1) * per_page: page * per_page]
            if parts.path == NOTES and method == "POST":
                note = self._add(payload["body"])
                if self.lose_posts:
                    self.lose_posts -= 1
                    return 502, {"message": "bad gateway"}
                return 201, note
            match = re.fullmatch(rf"{NOTES}/(\d+)", parts.path)
            if match and method == "PUT":
                for note in self.notes:
                    if note["id"] == int(match.group(1)):
                        note["body"] = payload["body"]
                        return 200, note
            return 404, {"message": "404 Not found"}


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()
    with json_api(fake.handle) as url:
        fake.url = url
        yield fake


def _env(gitlab: FakeGitLab) -> dict[str, str]:
    return cli_env({
        "PATH": os.pathsep.join([str(BIN), os.environ["PATH"]]), "PYTHONDONTWRITEBYTECODE": "1",
        "CI": "true", "GITLAB_CI": "true", "CI_API_V4_URL": f"{gitlab.url}/api/v4", "CI_PROJECT_ID": PROJECT,
        "CI_MERGE_REQUEST_IID": str(IID), "CI_DEFAULT_BRANCH": "main", "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_JOB_URL": "https://gitlab.example/acme/fine-tuning/-/jobs/99", "CI_JOB_TOKEN": JOB_TOKEN,
        "FTCTL_NOTE_TOKEN": TOKEN, "FTCTL_SRC": str(REPO), "FTCTL_PATHS": "specs/demo",
        "FTCTL_COMMENT_BACKOFF_S": "0.01",
    })


def plan_job(workspace: Path, gitlab: FakeGitLab) -> subprocess.CompletedProcess[str]:
    """The plan job's script lines, one shell as GitLab runs them (bash, -e and pipefail)."""
    script = workspace.parent / "plan-job.sh"
    script.write_text("\n".join(PIPELINE["plan"]["script"]) + "\n", encoding="utf-8")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                          env=_env(gitlab), capture_output=True, text=True, timeout=180, check=False)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_every_pipeline_updates_the_one_note(tmp_path: Path, gitlab: FakeGitLab) -> None:
    workspace = make_demo(tmp_path / "repo")
    gitlab.seed(120)  # ftctl's note lands on the second page

    first = plan_job(workspace, gitlab)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no snapshot from an apply yet" in first.stdout
    assert len(gitlab.calls("POST")) == 1 and not gitlab.calls("PUT")
    [note] = gitlab.ftctl_notes()
    lines = note["body"].splitlines()
    assert lines[0] == MARKER and lines[1].startswith("**ftctl** · 📝 **Changes to apply**: "), lines[:2]
    assert "to create" in lines[1] and "https://gitlab.example/acme/fine-tuning/-/jobs/99" in note["body"]
    assert (workspace / "plan.md").read_text(encoding="utf-8").strip() in note["body"]

    _edit(workspace / "specs/demo/resources.yaml", "\n  description: ", "\n  description: what to do next. ")
    second = plan_job(workspace, gitlab)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(gitlab.calls("POST")) == 1 and len(gitlab.calls("PUT")) == 1
    assert gitlab.calls("PUT")[0]["path"] == f"{NOTES}/{note['id']}"
    [updated] = gitlab.ftctl_notes()
    assert "what to do next" in updated["body"] and len(gitlab.notes) == 121
    assert any("page=2" in r["path"] for r in gitlab.calls("GET"))

    # Invalid manifests: the job fails, and the same note says why.
    _edit(workspace / "specs/demo/pipeline.yaml", "  base_model:", "  base_modle:")
    third = plan_job(workspace, gitlab)
    assert third.returncode == 1, third.stdout + third.stderr
    [failed] = gitlab.ftctl_notes()
    assert failed["id"] == note["id"] and len(gitlab.calls("POST")) == 1
    assert "**Validation failed**" in failed["body"] and "SC-001" in failed["body"]
    assert "spec.base_modle" in failed["body"]

    for run in (first, second, third):
        assert TOKEN not in run.stdout + run.stderr
    assert all(TOKEN not in r["body"] for r in gitlab.requests)


def test_a_lost_answer_to_the_post_never_makes_a_second_note(tmp_path: Path, gitlab: FakeGitLab) -> None:
    (tmp_path / "plan.md").write_text("### ftctl plan\n\n+ Dataset/demo-tickets\n", encoding="utf-8")
    gitlab.lose_posts = 1
    done = subprocess.run([sys.executable, str(REPO / "ci" / "mr_note.py"), "--plan-exitcode", "2", "--plan", "plan.md"],
                          cwd=tmp_path, env=_env(gitlab), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(gitlab.notes) == 1 and len(gitlab.calls("PUT")) == 1
    assert "updated note" in done.stdout


def test_outside_a_merge_request_or_without_a_token_nothing_is_posted(tmp_path: Path, gitlab: FakeGitLab) -> None:
    for unset in ("CI_MERGE_REQUEST_IID", "FTCTL_NOTE_TOKEN"):
        env = {k: v for k, v in _env(gitlab).items() if k != unset}
        done = subprocess.run([sys.executable, str(REPO / "ci" / "mr_note.py"), "--plan-exitcode", "0"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and "no" in done.stdout.lower(), done.stdout + done.stderr
    assert not gitlab.requests
