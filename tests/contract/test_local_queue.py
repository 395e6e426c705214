"""The local backend's own queue (FTCTL_MAX_RUNNING_JOBS): what the other backends leave to their
scheduler. A job waiting for a slot runs when one frees; a waiting job that is cancelled never runs.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.runtime import JobState
from tests.contract.conftest import LocalHarness, named


def _one_running_one_queued(h: LocalHarness, running: str, waiting: str) -> None:
    """The harness's one slot taken by `running` (held until cancelled); `waiting` queued behind it."""
    h.backend.launch(running, "train", h.job_input(running))
    assert h.wait_working(running).state is JobState.RUNNING
    assert h.backend.launch(waiting, "train", h.job_input(waiting)).state is JobState.QUEUED


def test_a_queued_job_starts_when_the_slot_frees(project: Path) -> None:
    h = LocalHarness(project, hold=True)
    try:
        first, second = named("slot-1"), named("slot-2")
        _one_running_one_queued(h, first, second)
        assert h.backend.start_queued() == [], "the one slot is taken"
        assert h.backend.cancel(first) is True
        h.finish(first)
        assert h.wait_working(second).state is JobState.RUNNING
    finally:
        h.close()


def test_a_cancelled_queued_job_never_starts_and_is_not_launched_again(project: Path) -> None:
    h = LocalHarness(project, hold=True)
    try:
        running, waiting = named("busy"), named("waiting")
        _one_running_one_queued(h, running, waiting)

        assert h.backend.cancel(waiting) is True, "`ftctl cancel` must say it stopped the waiting job"
        seen = h.backend.observe(waiting)
        assert (seen.state, seen.attempt, seen.error_class) == (JobState.FAILED, 1, "cancelled")

        assert h.backend.cancel(running) is True
        h.finish(running)
        assert h.backend.start_queued() == [], "a cancelled job must not take the freed slot"
        again = h.backend.launch(waiting, "train", h.job_input(waiting))  # what a later apply would do
        assert (again.state, again.error_class) == (JobState.FAILED, "cancelled")
        assert h.runs(waiting) == [], "it never ran"
        assert h.backend.cancel(waiting) is False, "nothing is left to stop"
    finally:
        h.close()
