"""Sync state and health of managed objects, for `ftctl status`. Pure: a plan and a snapshot in.

Sync state says whether the store matches Git (synced, out of sync, drifted, missing, waiting,
orphaned); health says whether the object itself is usable (its row exists; a job's state).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Change, Plan


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
    job: str = ""  # what the object's job is doing, for jobs and exports


def assess(plan: Plan, snapshot: Snapshot) -> list[ObjectStatus]:
    return [_status(change, snapshot) for change in plan.changes]


def _status(change: Change, snapshot: Snapshot) -> ObjectStatus:
    record = snapshot.managed.get((change.kind, change.name))
    store_id = record.store_id if record else ""
    generation = record.generation if record else 0
    return ObjectStatus(change.kind, change.name, sync_state(change), object_health(change.job, record, snapshot),
                        store_id, generation, change.reason, change.job)


def sync_state(change: Change) -> Sync:
    if change.waits_for:
        return Sync.WAITING
    if change.action is Action.NOOP:
        return Sync.ORPHANED if "--prune" in change.reason else Sync.SYNCED
    if change.action is Action.CREATE:  # not in the store yet, or its row was deleted there
        return Sync.MISSING
    return Sync.DRIFTED if change.drift else Sync.OUT_OF_SYNC


def object_health(job: str, record: ManagedRecord | None, snapshot: Snapshot) -> Health:
    """Missing without a record; a job's state (`job`: its states, as a change shows them); else
    whether its rows are there."""
    if record is None:
        return Health.MISSING
    if job:
        return job_health(job)
    if not record.store_table:
        return Health.UNKNOWN
    rows = [snapshot.row(record.store_table, rid) for rid in record.row_ids]
    if not rows or any(r is None for r in rows):
        return Health.MISSING
    return Health.HEALTHY


def job_health(job: str) -> Health:
    """The worst state among an object's jobs (an evaluation runs one per combination)."""
    parts = job.split("; ")
    if any(p.startswith("failed") for p in parts):
        return Health.FAILED
    if any(p.startswith(("running", "queued")) for p in parts):
        return Health.RUNNING
    if all(p.startswith("succeeded") for p in parts):
        return Health.SUCCEEDED
    return Health.PENDING
