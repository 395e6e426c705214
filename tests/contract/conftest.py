"""Harnesses of the backend contract tests: each backend behind the same small API.

- `local`: `LocalBackend` running the stub runners (tests/fakes/stub_runners) as subprocesses.
- `fake`: `FakeBackend`; the harness plays the job by running the stub runner itself, synchronously,
  on the job's `input.json` (as a test scripting a fake job's outcome would).
- `cml`: `CMLBackend` against the fake CML API (tests/fakes/cml_server.py), whose engine
  (`RunnerEngine`) runs the stub runner in the project folder when a run is created; the runtime
  comes from the Studio's template jobs.

Every harness works in a fresh project folder that is also the current directory (runners write
their outputs at the input's relative paths, `.app/jobs/<name>/...`). A harness offers:

- `backend`: the backend under test; `job_input(name, **extra)`: a valid job-input document;
  `named(stem, **extra)`: a job name for that document (a backend adopts a job only under a name
  that ends with its input's digest, as ftctl names jobs);
- `finish(name)`: observe (starting queued jobs, as apply does) until the job is terminal;
- `wait_working(name)`: observe until the job is running and its runner is at work;
- `runs(name)`: one entry per run the backend really started for the name (what would show a
  duplicate launch); `observe_all(names)`: several observations at once, the backend's way;
- `tamper(name)`: change the input the backend recorded for a job (an edited `input.json`, a CML
  job's FTCTL_JOB_INPUT), as a hand or another program could.

`holding_harness` makes jobs that keep running until cancelled: FTCTL_STUB_SECONDS for the local
stub runners; the fake harness leaves its jobs unplayed (running); on CML the runs are scripted to
hang (the engine runs a script synchronously, so a held script would block the API call instead).
Deadlines only stop a hung test; nothing here measures time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from reconciler.backends.cml import INPUT_ENV, CMLBackend, CMLSettings
from reconciler.backends.cml_http import CMLClient
from reconciler.backends.fake import FakeBackend
from reconciler.backends.local import LocalBackend
from reconciler.contract import JobInput
from reconciler.jobinput import input_digest
from reconciler.runtime import JobObservation, JobState
from tests.fakes.cml_engine import STUB_RUNNERS, RunnerEngine
from tests.fakes.cml_server import FakeCML

BACKENDS = ("local", "fake", "cml")
JOBS_ROOT = ".app/jobs"
PREFIX = "ct-"  # every job name of the suite (the CML harness scripts runs by this prefix)
DEADLINE_S = 60.0  # a hang guard, not a timing assertion
HOLD_S = "30"  # how long a held local job would run if nobody cancelled it


def job_input(name: str, kind: str = "train", **extra: Any) -> dict[str, Any]:
    """A minimal, valid job-input document for `name` (its outputs under .app/jobs/<name>/)."""
    folder = f"{JOBS_ROOT}/{name}"
    document: dict[str, Any] = {
        "contract_version": 1,
        "kind": kind,
        "job_name": name,
        "model": {"type": "project", "name_or_path": "models/base"},
        "outputs": {"dir": folder, "result": f"{folder}/result.json", "progress": f"{folder}/progress.json",
                    "adapter_dir": f"{folder}/adapter" if kind == "train" else None},
        "tracking": {"tracking_uri": "sqlite:///.app/mlflow.db"},
        "resources": {"cpu": 1, "memory": 2, "gpu": 0},
        **({"train": {"adapter_name": f"{PREFIX}adapter"}} if kind == "train" else {}),
        **extra,
    }
    JobInput.model_validate(document)
    return document


def edited(document: dict[str, Any]) -> dict[str, Any]:
    """A job input with another training setting: what the job computes from is no longer its name's."""
    return {**document, "train": {**document["train"], "num_epochs": 7}}


def named(stem: str, kind: str = "train", **extra: Any) -> str:
    """`ct-<stem>-<input8>`: the name of the job `job_input(name, kind, **extra)` describes (the digest
    leaves the name and its folders out, as `jobinput.job_name` does)."""
    return f"{PREFIX}{stem}-{input_digest(job_input(f'{PREFIX}{stem}', kind, **extra))[:8]}"


class Harness:
    kind = ""

    def __init__(self, project: Path, backend: Any) -> None:
        self.project = project
        self.backend = backend

    def job_input(self, name: str, kind: str = "train", **extra: Any) -> dict[str, Any]:
        return job_input(name, kind, **extra)

    def observe_all(self, names: Iterable[str]) -> dict[str, JobObservation]:
        return {name: self.backend.observe(name) for name in names}

    def step(self, name: str) -> JobObservation:
        """One look at the job (the fake harness also plays a launched job here)."""
        return self.backend.observe(name)

    def working(self, observation: JobObservation) -> bool:
        return observation.state is JobState.RUNNING

    def _poll(self, name: str, done: Callable[[JobObservation], bool], what: str) -> JobObservation:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            self.backend.start_queued()
            observation = self.step(name)
            if done(observation):
                return observation
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.kind}: {name} never became {what}: {observation}")
            time.sleep(0.02)

    def finish(self, name: str) -> JobObservation:
        return self._poll(name, lambda o: o.state.is_terminal(), "terminal")

    def wait_working(self, name: str) -> JobObservation:
        return self._poll(name, self.working, "running")

    def runs(self, name: str) -> list[Any]:
        raise NotImplementedError

    def tamper(self, name: str) -> None:
        """Edit the job folder's input.json (the local and fake backends' record of the input)."""
        path = self.project / JOBS_ROOT / name / "input.json"
        path.write_text(json.dumps(edited(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")

    def close(self) -> None:
        pass


class LocalHarness(Harness):
    kind = "local"

    def __init__(self, project: Path, *, hold: bool) -> None:
        environ = {**os.environ, **({"FTCTL_STUB_SECONDS": HOLD_S} if hold else {})}
        super().__init__(project, LocalBackend(project / JOBS_ROOT, max_running=1, environ=environ, runners=STUB_RUNNERS))

    def working(self, observation: JobObservation) -> bool:
        # The stub reports `working` once its SIGTERM handler is in place and it holds the job.
        return observation.state is JobState.RUNNING and observation.progress.get("stage") == "working"

    def runs(self, name: str) -> list[Any]:
        """(attempt, pid, launched at) of each start: the current one and every archived attempt."""
        folder = self.project / JOBS_ROOT / name
        launches = [folder / "launch.json", *sorted(folder.glob("attempt-*/launch.json"))]
        out = []
        for path in launches:
            if path.is_file():
                launch = json.loads(path.read_text(encoding="utf-8"))
                out.append((launch["attempt"], launch["pid"], launch["launched_at"]))
        return sorted(out)

    def close(self) -> None:
        """Stop what still runs (held jobs a failing test left behind)."""
        root = self.project / JOBS_ROOT
        for folder in sorted(root.iterdir()) if root.is_dir() else []:
            if self.backend.cancel(folder.name):
                self.finish(folder.name)


class FakeHarness(Harness):
    kind = "fake"

    def __init__(self, project: Path, *, hold: bool) -> None:
        self.hold = hold  # held: nobody plays the job, so it runs until cancelled
        super().__init__(project, FakeBackend(project / JOBS_ROOT, environ=dict(os.environ)))

    def step(self, name: str) -> JobObservation:
        observation = self.backend.observe(name)
        folder = self.project / JOBS_ROOT / name
        if not self.hold and observation.state is JobState.RUNNING and not (folder / "result.json").exists():
            kind = json.loads((folder / "launch.json").read_text(encoding="utf-8"))["kind"]
            done = subprocess.run([sys.executable, str(STUB_RUNNERS / f"{kind}.py"), "--input", str(folder / "input.json")],
                                  cwd=self.project, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=DEADLINE_S, check=False)
            assert (folder / "result.json").exists(), f"the stub runner wrote no result: {done.stdout}{done.stderr}"
            observation = self.backend.observe(name)
        return observation

    def runs(self, name: str) -> list[Any]:
        """The attempts the fake recorded, one line per launch."""
        log = self.project / JOBS_ROOT / name / "launches.log"
        return log.read_text(encoding="utf-8").split() if log.exists() else []


class CMLHarness(Harness):
    kind = "cml"

    def __init__(self, project: Path, cml: FakeCML, *, hold: bool) -> None:
        self.cml = cml
        cml.add_studio_templates()
        if hold:
            cml.script_job(PREFIX, "hang")
        else:
            self.engine = cml.on_run(RunnerEngine(project))
        client = CMLClient.from_environ(cml.env(), sleep=lambda _s: None)
        settings = CMLSettings(runners_dir=str(STUB_RUNNERS), project_dir=str(project))
        super().__init__(project, CMLBackend(client, settings, JOBS_ROOT, environ={}))

    def observe_all(self, names: Iterable[str]) -> dict[str, JobObservation]:
        return self.backend.observe_many(names)

    def working(self, observation: JobObservation) -> bool:
        return observation.state is JobState.RUNNING and observation.progress.get("stage") == "running"

    def runs(self, name: str) -> list[Any]:
        """(CML job id, run id) of every run of every CML job with this name ('' for a job without runs)."""
        out = []
        for job in self.cml.jobs_named(name):
            runs = self.cml.runs_of(job)
            out += [(job.id, run.id) for run in runs] or [(job.id, "")]
        return sorted(out)

    def tamper(self, name: str) -> None:
        """Edit the input the CML job and its runs carry (FTCTL_JOB_INPUT; a run's overrides its job's)."""
        for holder in [job := self.cml.jobs_named(name)[0], *self.cml.runs_of(job)]:
            holder.environment[INPUT_ENV] = json.dumps(edited(json.loads(holder.environment[INPUT_ENV])))

    def close(self) -> None:
        assert self.cml.server_errors == [], self.cml.server_errors
        assert self.cml.callback_errors == [], self.cml.callback_errors


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder, also the current directory (where local runners write their outputs)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def make_harness(backend_kind: str, project: Path) -> Iterator[Callable[..., Harness]]:
    with ExitStack() as stack:
        def make(*, hold: bool = False) -> Harness:
            harness: Harness
            if backend_kind == "local":
                harness = LocalHarness(project, hold=hold)
            elif backend_kind == "fake":
                harness = FakeHarness(project, hold=hold)
            else:
                harness = CMLHarness(project, stack.enter_context(FakeCML(polls_per_status=1)), hold=hold)
            stack.callback(harness.close)
            return harness

        yield make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    """Jobs run to their end (a stub runner's work takes no time)."""
    return make_harness()


@pytest.fixture
def holding_harness(make_harness: Callable[..., Harness]) -> Harness:
    """Jobs keep running until cancelled."""
    return make_harness(hold=True)
