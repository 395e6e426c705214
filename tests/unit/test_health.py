"""Sync state and health from the plan's structured values: the orphan flag, waits, drift, and the
jobs' observed states (never from the reason's or a job summary's words)."""

from __future__ import annotations

import pytest

from reconciler.health import Health, Sync, job_health, object_health, sync_state
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Change, ObservedJob
from reconciler.runtime import JobState as S


def _job(state: S, summary: str = "") -> ObservedJob:
    return ObservedJob("ftctl-train-j-1", state, summary=summary)


@pytest.mark.parametrize(("change", "expected"), [
    (Change("Model", "m", Action.NOOP, "in sync"), Sync.SYNCED),
    (Change("Model", "m", Action.NOOP, "no manifest any more", orphan=True), Sync.ORPHANED),
    # the words do not decide: a reason naming --prune on a synced object is still synced
    (Change("Model", "m", Action.NOOP, "kept; `--prune` would delete it"), Sync.SYNCED),
    (Change("Model", "m", Action.CREATE, "new"), Sync.MISSING),
    (Change("Model", "m", Action.UPDATE, "changed outside ftctl", drift=True), Sync.DRIFTED),
    (Change("Model", "m", Action.UPDATE, "the manifest changed"), Sync.OUT_OF_SYNC),
    (Change("EvaluationJob", "e", Action.CREATE, "waits", waits_for=("FineTuningJob/j",)), Sync.WAITING),
])
def test_sync_state(change: Change, expected: Sync) -> None:
    assert sync_state(change) is expected


@pytest.mark.parametrize(("states", "expected"), [
    ({S.FAILED, S.SUCCEEDED}, Health.FAILED),
    ({S.RUNNING, S.SUCCEEDED}, Health.RUNNING),
    ({S.QUEUED}, Health.RUNNING),
    ({S.SUCCEEDED}, Health.SUCCEEDED),
    ({S.SUCCEEDED, S.NOT_LAUNCHED}, Health.PENDING),
    ({S.NOT_LAUNCHED}, Health.PENDING),
])
def test_job_health_is_the_worst_state(states: set[S], expected: Health) -> None:
    assert job_health(states) is expected


def test_a_failed_summary_word_does_not_make_a_succeeded_job_fail() -> None:
    change = Change("ModelExport", "x", Action.NOOP, "ok", jobs=(_job(S.SUCCEEDED, "succeeded: failed-model version 1"),))
    assert job_health(change.job_states) is Health.SUCCEEDED


def test_object_health_without_jobs_is_whether_its_rows_exist() -> None:
    record = ManagedRecord("Model", "m", "models", "id-m", ("id-m",), "s", "r")
    there = Snapshot(rows={"models": {"id-m": {"id": "id-m"}}})
    assert object_health((), record, there) is Health.HEALTHY
    assert object_health((), record, Snapshot()) is Health.MISSING
    assert object_health((), None, there) is Health.MISSING
    assert object_health({S.RUNNING}, record, there) is Health.RUNNING
