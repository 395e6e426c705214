"""Sync state and health of managed objects, for `ftctl status`. Pure: a plan and a snapshot in.

Sync state says whether the store matches Git (synced, out of sync, drifted, missing, waiting,
orphaned); health says whether the object itself is usable (its row exists; a job's state).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from reconciler.history import imported_runs
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Change, ObservedJob, Plan
from reconciler.runtime import JobState


class Sync(StrEnum):
    SYNCED = "synced"
    OUT_OF_SYNC = "out of sync"
    DRIFTED = "drifted"
    MISSING = "missing"
    WAITING = "waiting"
    ORPHANED = "orphaned"

    def is_synced(self) -> bool:
        return self is Sync.SYNCED


class Health(StrEnum):
    HEALTHY = "healthy"
    PENDING = "pending"  # a job not launched yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ObjectStatus:
    kind: str
    name: str
    sync: Sync
    health: Health
    store_id: str
    generation: int
    reason: str
    jobs: tuple[ObservedJob, ...] = ()  # what the object's jobs are doing, for jobs and exports


def assess(plan: Plan, snapshot: Snapshot) -> list[ObjectStatus]:
    return [_status(change, snapshot) for change in plan.changes]


def _status(change: Change, snapshot: Snapshot) -> ObjectStatus:
    record = snapshot.managed.get((change.kind, change.name))
    store_id = record.store_id if record else ""
    generation = record.generation if record else 0
    return ObjectStatus(change.kind, change.name, sync_state(change), object_health(change.job_states, record, snapshot),
                        store_id, generation, change.reason, change.jobs)


def sync_state(change: Change) -> Sync:
    if change.waits_for:
        return Sync.WAITING
    if change.action is Action.NOOP:
        return Sync.ORPHANED if change.orphan else Sync.SYNCED
    if change.action is Action.CREATE:  # not in the store yet, or its row was deleted there
        return Sync.MISSING
    return Sync.DRIFTED if change.drift else Sync.OUT_OF_SYNC


def object_health(job_states: Iterable[JobState], record: ManagedRecord | None, snapshot: Snapshot) -> Health:
    """Missing without a record; its jobs' health when it has jobs; an adopted job's as its rows
    record it (`history.imported_runs`: succeeded, or unknown where they do not say); else whether its
    rows are there."""
    states = frozenset(job_states)
    if record is None:
        return Health.MISSING
    if states:
        return job_health(states)
    if not record.store_table:
        return Health.UNKNOWN
    rows = [snapshot.row(record.store_table, rid) for rid in record.row_ids]
    if not rows or any(r is None for r in rows):
        return Health.MISSING
    if runs := imported_runs(record, snapshot):
        return Health.SUCCEEDED if all(r.state is JobState.SUCCEEDED for r in runs) else Health.UNKNOWN
    return Health.HEALTHY


def job_health(states: Iterable[JobState]) -> Health:
    """The worst state among an object's jobs (an evaluation runs one per combination)."""
    seen = frozenset(states)
    if JobState.FAILED in seen:
        return Health.FAILED
    if seen & {JobState.RUNNING, JobState.QUEUED}:
        return Health.RUNNING
    if seen and seen <= {JobState.SUCCEEDED}:
        return Health.SUCCEEDED
    return Health.PENDING
