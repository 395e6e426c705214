"""The backend contract: what ftctl relies on from every backend, checked on local, fake and cml alike.

Each test runs once per backend (the `harness` fixtures in conftest.py), through the interface the
planner and the CLI use (`launch`, `observe`, `cancel`, `paths`, `log_path`, `start_queued`):

- a name never launched observes `not launched`; a launch answers for that name at attempt 1;
- a training that succeeds reports its adapter folder (which holds the adapter) and its metrics,
  and `paths()` point at the result the runner wrote; one that fails reports the runner's error
  class, and its log shows the runner's error;
- a launch is idempotent by name and attempt: launching again, while running or after the end,
  starts no second run; attempt 2 after a failure starts exactly one more run and reports attempt 2;
- cancel stops a running job, which then reads failed (cancelled); cancelling a job that is not
  running (unknown, or already ended) answers False;
- observing several jobs at once agrees with observing each (CML: `observe_many`, which looks a
  few jobs up by name and lists the project's jobs for many: both are checked).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.runtime import JobObservation, JobState
from tests.fakes.stub_runners.failures import fail_job

from .conftest import PREFIX, Harness, named


def _same(a: JobObservation, b: JobObservation) -> None:
    """Two observations of one finished job say the same thing."""
    fields = ("job_name", "state", "attempt", "error_class", "message", "metrics", "artifacts", "external_id")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}


def test_a_fresh_name_is_not_launched(harness: Harness) -> None:
    observation = harness.backend.observe(f"{PREFIX}never-launched")
    assert observation.state is JobState.NOT_LAUNCHED
    assert observation.job_name == f"{PREFIX}never-launched"


def test_launch_answers_for_that_job_at_attempt_1(harness: Harness) -> None:
    name = named("launch")
    observation = harness.backend.launch(name, "train", harness.job_input(name))
    assert observation.job_name == name
    assert observation.attempt == 1
    assert observation.state is not JobState.NOT_LAUNCHED
    assert harness.backend.observe(name).state is not JobState.NOT_LAUNCHED


def test_a_successful_training_reports_its_adapter_and_metrics(harness: Harness) -> None:
    name = named("train-ok")
    job = harness.job_input(name)
    harness.backend.launch(name, "train", job)
    done = harness.finish(name)
    assert (done.state, done.attempt, done.error_class) == (JobState.SUCCEEDED, 1, "")
    assert done.artifacts["adapter_dir"] == job["outputs"]["adapter_dir"]
    assert (harness.project / done.artifacts["adapter_dir"] / "adapter_config.json").is_file()
    assert "train_loss" in done.metrics
    result = Path(harness.backend.paths(name)["result"])
    assert json.loads(result.read_text(encoding="utf-8"))["job_name"] == name
    assert result.parent == Path(harness.backend.paths(name)["dir"])


def test_a_config_failure_is_reported_with_its_class(harness: Harness) -> None:
    name = named("train-config")
    fail_job(harness.project, name, "config")
    harness.backend.launch(name, "train", harness.job_input(name))
    done = harness.finish(name)
    assert (done.state, done.attempt, done.error_class) == (JobState.FAILED, 1, "config")
    assert "config" in done.message
    assert "adapter_dir" not in done.artifacts


def test_the_log_of_a_failed_job_shows_the_runners_error(harness: Harness) -> None:
    if harness.kind == "fake":
        pytest.skip("the fake backend starts no process: a fake job has no runner output to log")
    name = named("train-logged")
    fail_job(harness.project, name, "data")
    harness.backend.launch(name, "train", harness.job_input(name))
    assert harness.finish(name).error_class == "data"
    log = Path(harness.backend.log_path(name))
    assert log.parent == Path(harness.backend.paths(name)["dir"])
    assert "simulated data failure" in log.read_text(encoding="utf-8")


def test_launching_again_starts_no_second_run(harness: Harness) -> None:
    name = named("twice")
    job = harness.job_input(name)
    harness.backend.launch(name, "train", job)
    first = harness.runs(name)
    assert len(first) == 1, first
    again = harness.backend.launch(name, "train", job)  # while it runs (or has just ended)
    assert (again.job_name, again.attempt) == (name, 1)
    assert harness.runs(name) == first
    done = harness.finish(name)
    after = harness.backend.launch(name, "train", job)  # after the end: the job is done, not redone
    assert (after.state, after.attempt) == (JobState.SUCCEEDED, 1)
    _same(after, done)
    assert harness.runs(name) == first
    _same(harness.finish(name), done)


def test_attempt_2_after_a_failure_is_one_more_run(harness: Harness) -> None:
    name = named("retry")
    fail_job(harness.project, name, "transient")  # every attempt of it
    job = harness.job_input(name)  # a retry relaunches the same input
    harness.backend.launch(name, "train", job)
    failed = harness.finish(name)
    assert (failed.state, failed.attempt, failed.error_class) == (JobState.FAILED, 1, "transient")
    [first] = harness.runs(name)

    second = harness.backend.launch(name, "train", job, attempt=2)
    assert (second.job_name, second.attempt) == (name, 2)
    done = harness.finish(name)
    assert (done.state, done.attempt, done.error_class) == (JobState.FAILED, 2, "transient")
    runs = harness.runs(name)
    assert len(runs) == 2 and first in runs, runs

    for attempt in (1, 2):  # neither attempt runs again
        assert harness.backend.launch(name, "train", job, attempt=attempt).attempt == 2
    assert harness.runs(name) == runs


def test_a_job_whose_recorded_input_was_changed_is_reported_not_adopted(harness: Harness) -> None:
    """Its name says which input it ran; a job found under that name with another input is failed
    (input_mismatch): none of its result (adapter, metrics) is adopted, and it is not run again."""
    name = named("tampered")
    job = harness.job_input(name)
    harness.backend.launch(name, "train", job)
    assert harness.finish(name).state is JobState.SUCCEEDED
    runs = harness.runs(name)
    harness.tamper(name)
    seen = harness.backend.observe(name)
    assert (seen.state, seen.error_class, seen.metrics, seen.artifacts) == (JobState.FAILED, "input_mismatch", {}, {})
    assert "not adopted" in seen.message
    assert harness.observe_all([name])[name].error_class == "input_mismatch"
    assert harness.backend.launch(name, "train", job).error_class == "input_mismatch"
    assert harness.backend.launch(name, "train", job, attempt=2).error_class == "input_mismatch"
    assert harness.runs(name) == runs, "nothing ran again under that name"


def test_cancel_stops_a_running_job(holding_harness: Harness) -> None:
    h = holding_harness
    name = named("cancel")
    h.backend.launch(name, "train", h.job_input(name))
    assert h.wait_working(name).state is JobState.RUNNING
    assert h.backend.cancel(name) is True
    done = h.finish(name)
    assert (done.state, done.attempt, done.error_class) == (JobState.FAILED, 1, "cancelled")
    assert h.backend.cancel(name) is False, "an ended job has nothing left to stop"
    assert len(h.runs(name)) == 1


def test_cancel_of_an_unknown_job_returns_false(harness: Harness) -> None:
    assert harness.backend.cancel(f"{PREFIX}no-such-job") is False
    assert harness.backend.observe(f"{PREFIX}no-such-job").state is JobState.NOT_LAUNCHED


def test_observing_many_agrees_with_observing_each(harness: Harness) -> None:
    ok, failed = named("many-ok"), named("many-failed")
    fail_job(harness.project, failed, "config")
    harness.backend.launch(ok, "train", harness.job_input(ok))
    harness.backend.launch(failed, "train", harness.job_input(failed))
    harness.finish(ok)
    harness.finish(failed)
    unknown = [f"{PREFIX}many-unknown-{i}" for i in range(10)]
    # A few names and many (CML looks a few up by name, and lists the project's jobs for many).
    for names in ([ok, failed, unknown[0]], [unknown[1], ok, *unknown[2:6], failed, *unknown[6:]]):
        together = harness.observe_all(names)
        assert sorted(together) == sorted(names)
        for name in names:
            _same(together[name], harness.backend.observe(name))
        assert together[ok].state is JobState.SUCCEEDED and together[failed].error_class == "config"
        assert {together[n].state for n in names if n in unknown} == {JobState.NOT_LAUNCHED}
