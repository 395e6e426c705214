"""`ftctl agent` against a real Git remote: a bare repository on disk that a working clone pushes to.

Each step runs the agent as a new process (`--max-cycles N --interval 0`), so every step also shows
that its state (the last applied commit, the failing commit) is read back from the store. Jobs run
on the fake backend (recorded, not run). The demo's model stand-in is committed with the specs, at
the place the manifests name relative to themselves, so the agent's clone has it too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.agent import parse_interval
from tests.e2e.helpers import (
    count,
    ftctl,
    ftctl_popen,
    job_folders,
    jobs_env,
    launch_logs,
    make_demo,
    query,
    show,
    write_result,
)

GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
BAD_FIELD = "  description: Customer messages"


class Project:
    """A bare remote, a working clone that commits and pushes, and a folder the agent runs in."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.remote, self.work, self.home = tmp / "remote.git", tmp / "work", tmp / "agent"
        self.db, self.jobs = self.home / "state.db", tmp / "jobs"
        self.home.mkdir()
        self.git(tmp, "init", "--quiet", "--bare", str(self.remote))
        demo = make_demo(tmp / "demo")
        self.git(tmp, "init", "--quiet", "-b", "main", str(self.work))
        shutil.copytree(demo / "specs" / "demo", self.work / "specs" / "demo")  # with the model stand-in (models/)
        self.git(self.work, "remote", "add", "origin", str(self.remote))

    def git(self, cwd: Path, *args: str) -> str:
        env = {**os.environ, **GIT_ENV, "HOME": str(self.tmp)}
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"git {args}: {done.stderr}"
        return done.stdout.strip()

    def commit(self, message: str) -> str:
        """Commit everything in the working clone, push it to main; the new commit's sha."""
        self.git(self.work, "add", "-A")
        self.git(self.work, "commit", "--quiet", "-m", message)
        self.git(self.work, "push", "--quiet", "origin", "main")
        return self.git(self.work, "rev-parse", "HEAD")

    def edit(self, old: str, new: str, file: str = "resources.yaml") -> None:
        path = self.work / "specs" / "demo" / file
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    def agent(self, *extra: str, cycles: int = 1, code: int | None = 0) -> list[dict[str, Any]]:
        """Run the agent for some cycles; its JSON lines."""
        proc = ftctl(self.home, "agent", "--repo", str(self.remote), "--branch", "main", "--path", "specs/demo",
                     "--store", "state.db", "--workdir", "clone", "--offline", "--interval", "0",
                     "--max-cycles", str(cycles), *extra, env={**jobs_env(self.jobs), "FTCTL_CACHE_DIR": str(self.tmp / "cache")})
        if code is not None:
            assert proc.returncode == code, show(proc)
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        assert len(lines) == cycles, show(proc)
        return lines

    def meta(self, key: str) -> str | None:
        rows = query(self.db, "SELECT value FROM ftctl_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def applies(self) -> list[tuple[str, str, str]]:
        return query(self.db, "SELECT commit_sha, actor, state FROM ftctl_applies ORDER BY serial")

    def description(self) -> str:
        return query(self.db, "SELECT description FROM datasets WHERE name = 'demo-tickets'")[0][0]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_applies_new_commits_advances_jobs_and_remembers_the_last_commit(project: Project) -> None:
    first = project.commit("demo")
    [line] = project.agent()
    assert (line["commit"], line["action"], line["error"]) == (first, "applied", "")
    assert line["changes"] == 7 and line["jobs"].get("launched") == 1, line
    assert set(line) == {"ts", "cycle", "commit", "action", "changes", "drift", "jobs", "error"}
    assert count(project.db, "datasets") == 1 and count(project.db, "fine_tuning_jobs") == 1
    assert project.applies() == [(first, "ftctl-agent", "done")]
    assert project.meta("agent.last_commit") == first

    [again] = project.agent()  # a new process: it reads the last commit from the store
    assert (again["commit"], again["action"], again["changes"]) == (first, "unchanged", 0), again
    assert again["jobs"] == {"running": 1, "waiting": 2}
    assert len(project.applies()) == 1

    # The training job finishes: an unchanged commit is planned again and its jobs advance.
    [training] = [name for name in launch_logs(project.jobs) if name.startswith("ftctl-train-")]
    write_result(project.jobs, training, artifacts={"adapter_dir": str(job_folders(project.jobs)[training] / "adapter")})
    [advanced] = project.agent()
    assert (advanced["commit"], advanced["action"]) == (first, "applied"), advanced
    assert advanced["jobs"].get("launched", 0) >= 1 and advanced["jobs"].get("succeeded") == 1, advanced
    assert {sha for sha, _, _ in project.applies()} == {first} and len(project.applies()) >= 3

    project.edit("description: Customer messages", "description: Messages from customers")
    second = project.commit("reword the dataset")
    [line] = project.agent()
    assert (line["commit"], line["action"]) == (second, "applied"), line
    assert project.description().startswith("Messages from customers")
    assert project.applies()[-1][:2] == (second, "ftctl-agent")

    # State is the store's, not the clone's: a fresh clone still knows `second` was applied.
    shutil.rmtree(project.home / "clone")
    assert project.meta("agent.last_commit") == second
    [line] = project.agent()
    assert (line["commit"], line["action"], line["changes"]) == (second, "unchanged", 0), line
    with sqlite3.connect(project.db) as conn:  # forget it: the commit is applied again (nothing to write)
        conn.execute("UPDATE ftctl_meta SET value = '' WHERE key = 'agent.last_commit'")
    conn.close()
    [line] = project.agent()
    assert (line["commit"], line["action"], line["changes"]) == (second, "applied", 0), line
    assert project.meta("agent.last_commit") == second


def test_refuses_a_force_push_to_an_older_commit(project: Project) -> None:
    old = project.commit("demo")
    project.agent()
    project.edit("description: Customer messages", "description: Newer words")
    new = project.commit("newer")
    project.agent()
    project.git(project.work, "push", "--quiet", "--force", "origin", f"{old}:main")

    lines = project.agent(cycles=2, code=1)
    assert [(x["commit"], x["action"]) for x in lines] == [(old, "refused-older")] * 2, lines
    assert new in lines[0]["error"]
    assert project.description().startswith("Newer words")
    assert project.meta("agent.last_commit") == new
    assert [sha for sha, _, _ in project.applies()] == [old, new]


def test_reports_drift_and_puts_it_back_with_self_heal(project: Project) -> None:
    project.commit("demo")
    project.agent()
    with sqlite3.connect(project.db) as conn:
        conn.execute("UPDATE datasets SET description = 'edited in the Studio' WHERE name = 'demo-tickets'")
    conn.close()

    [seen] = project.agent()
    assert (seen["action"], seen["changes"]) == ("unchanged", 0) and seen["drift"] >= 1, seen
    assert project.description() == "edited in the Studio"

    # Without --self-heal drift stays, and jobs still advance: the plan is applied less its drift.
    [training] = [name for name in launch_logs(project.jobs) if name.startswith("ftctl-train-")]
    write_result(project.jobs, training)
    [advanced] = project.agent()
    assert advanced["action"] == "applied" and advanced["drift"] >= 1 and advanced["jobs"].get("launched", 0) >= 1, advanced
    assert project.description() == "edited in the Studio"

    [healed] = project.agent("--self-heal")
    assert healed["action"] == "applied" and healed["drift"] >= 1 and healed["changes"] >= 1, healed
    assert project.description().startswith("Customer messages")

    [quiet] = project.agent("--self-heal")
    assert (quiet["action"], quiet["drift"], quiet["changes"]) == ("unchanged", 0, 0), quiet


def test_gives_up_on_a_failing_commit_until_a_new_one_arrives(project: Project) -> None:
    good = project.commit("demo")
    project.agent()
    project.edit(BAD_FIELD, "  descriptoin: Customer messages")
    bad = project.commit("typo")

    lines = project.agent(cycles=4, code=1)
    assert [(x["commit"], x["action"]) for x in lines] == [(bad, "failed")] * 2 + [(bad, "gave-up")] * 2, lines
    assert "SC-001" in lines[0]["error"] and "failure 1 of 3" in lines[0]["error"]
    assert lines[3]["error"] == f"giving up on {bad} after 3 failures"
    assert (project.meta("agent.failed_commit"), project.meta("agent.failures")) == (bad, "3")
    assert project.meta("agent.last_commit") == good
    [line] = project.agent(code=1)  # a restart remembers it gave up
    assert line["action"] == "gave-up"

    project.edit("  descriptoin: Customer messages", "  description: Fixed messages")
    fixed = project.commit("fix the typo")
    [line] = project.agent()
    assert (line["commit"], line["action"]) == (fixed, "applied"), line
    assert (project.meta("agent.last_commit"), project.meta("agent.failures")) == (fixed, "0")
    assert project.description().startswith("Fixed messages")


def test_blocked_plan_is_reported_not_applied(project: Project) -> None:
    project.commit("demo")
    project.agent()
    with sqlite3.connect(project.db) as conn:  # a Studio row ftctl does not manage, with the name a new manifest takes
        conn.execute("INSERT INTO prompts (id, name, dataset_id) SELECT 'studio-prompt', 'studio-made', dataset_id FROM prompts")
    conn.close()
    path = project.work / "specs" / "demo" / "resources.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("kind: Prompt")
    path.write_text(text + "---\napiVersion: ftctl/v1\n" + text[start:].replace("name: demo-ticketing", "name: studio-made"),
                    encoding="utf-8")
    blocked = project.commit("a prompt the Studio already has")

    [line] = project.agent(code=3)
    assert (line["commit"], line["action"]) == (blocked, "blocked") and "PL-001" in line["error"], line
    assert count(project.db, "prompts") == 2 and project.meta("agent.last_commit") != blocked


def test_sigterm_finishes_the_cycle_and_exits_zero(project: Project) -> None:
    project.commit("demo")
    proc = ftctl_popen(project.home, "agent", "--repo", str(project.remote), "--path", "specs/demo", "--store", "state.db",
                       "--workdir", "clone", "--offline", "--interval", "1m",
                       env={**jobs_env(project.jobs), "FTCTL_CACHE_DIR": str(project.tmp / "cache")})
    assert proc.stdout is not None
    line = json.loads(proc.stdout.readline())
    assert line["action"] == "applied"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


@pytest.mark.parametrize(("text", "seconds"), [("60s", 60.0), ("5m", 300.0), ("90", 90.0), ("0", 0.0), ("1.5", 1.5), ("1h", 3600.0)])
def test_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-1", "5 minutes", "1d"])
def test_bad_interval(text: str) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)


def test_publishes_the_snapshot_after_an_apply(project: Project) -> None:
    """--publish: after a cycle that applied, the store's snapshot (ftctl state pull) is where the
    next pull-request check reads it, and a plan against it matches the store."""
    first = project.commit("demo")
    published = project.home / "published" / "snapshot.json"
    published.parent.mkdir()
    [line] = project.agent("--publish", str(published))
    assert (line["commit"], line["action"], line["error"]) == (first, "applied", "")
    document = json.loads(published.read_text(encoding="utf-8"))
    assert {r["name"] for r in document["datasets"]["data"]} == {"demo-tickets"}
    [meta] = [r["value"] for r in document["ftctl_snapshot"]["data"] if r["key"] == "serial"]
    assert int(meta) == int(project.meta("serial") or 0)
