"""A resumed training says so: the observation's summary (status, apply --wait) and the retry's reason."""

from __future__ import annotations

from reconciler.lifecycle import _starts_from
from reconciler.plan import Launch
from reconciler.runtime import JobObservation, JobState


def test_summary_says_resumed_at_step() -> None:
    running = JobObservation("j", JobState.RUNNING, 2, progress={"step": 30, "total_steps": 90, "resumed_from_step": 20})
    assert running.resumed_from_step == 20 and running.summary().endswith("resumed at step 20")
    done = JobObservation("j", JobState.SUCCEEDED, 2, metrics={"train_loss": 1.5, "resumed_from_step": 20.0})
    assert done.summary() == "succeeded (train_loss 1.5, resumed at step 20)"
    fresh = JobObservation("j", JobState.SUCCEEDED, 1, metrics={"train_loss": 1.5, "trained_steps": 90.0})
    assert fresh.resumed_from_step is None and fresh.summary() == "succeeded (train_loss 1.5)"


def test_retry_reason_says_where_the_training_starts() -> None:
    killed = JobObservation("job-a", JobState.FAILED, 1, "killed", "gone", progress={"checkpoint_step": 40})
    same = Launch("job-a", "train", 2, {})
    assert _starts_from(killed, same) == "; resumes from its checkpoint at step 40"
    assert "from the start: its input changed" in _starts_from(killed, Launch("job-b", "train", 2, {}))
    assert _starts_from(JobObservation("job-a", JobState.FAILED, 1, "killed", "gone"), same) == ""
    assert _starts_from(killed, Launch("job-a", "evaluate", 2, {})) == ""
