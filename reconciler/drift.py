"""Drift: where the store and its jobs differ from the manifests, for `ftctl drift`. Pure: a plan and a
snapshot in, a `DriftReport` out.

Every managed object whose store row or job differs from its manifest is listed once, with the
first of these that applies:

- `missing`: ftctl manages it, but its row is gone from the store (deleted outside ftctl);
- `drifted`: its row was changed outside ftctl (the Studio's UI); the field diffs say how;
- `failed`: its job failed (the reason says whether apply would relaunch it);
- `out of sync`: the manifest changed, or is new, and is not applied yet;
- `orphaned`: ftctl manages it but no manifest declares it any more (`--prune` would delete it).

An object waiting for another's job (an evaluation waiting for its adapter) is not drift. Besides
these, every Studio row that ftctl does not manage is listed (table, id, name), except the adapters
that managed fine-tuning jobs produced (registered by ftctl; earlier versions renamed `<name>-gN`).

The states refine the sync states `ftctl status` shows (`health.sync_state`, `health.job_health`).
Field diffs keep their `sensitive` flag: views show `FieldDiff.shown()`, never a secret's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.adoption import owned_rows
from reconciler.health import Health, Sync, job_health, sync_state
from reconciler.kinds import BINDINGS, BY_TABLE, adapter, product_link
from reconciler.live import Snapshot, live_object
from reconciler.plan import Action, Change, FieldDiff, Plan

FORMAT_VERSION = 1


class DriftState(StrEnum):
    MISSING = "missing"
    DRIFTED = "drifted"
    FAILED = "failed"
    OUT_OF_SYNC = "out of sync"
    ORPHANED = "orphaned"


@dataclass(frozen=True)
class DriftedObject:
    kind: str
    name: str
    state: DriftState
    reason: str  # the plan's reason: what happened, and what apply would do about it
    store_id: str = ""
    job: str = ""  # what the object's job is doing, when it has one
    fields: tuple[FieldDiff, ...] = ()

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class UnmanagedRow:
    table: str
    id: str
    kind: str
    name: str


@dataclass(frozen=True)
class DriftReport:
    store: str
    serial: int
    managed: int  # objects compared (manifests and managed records)
    objects: tuple[DriftedObject, ...] = ()
    unmanaged: tuple[UnmanagedRow, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # store id -> Kind/name, for ids shown in diffs

    def has_drift(self) -> bool:
        return bool(self.objects or self.unmanaged)

    def counts(self) -> dict[str, int]:
        out = {state.value: 0 for state in DriftState}
        for obj in self.objects:
            out[obj.state.value] += 1
        return out | {"unmanaged": len(self.unmanaged)}

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON value (`ftctl drift --format json`); sensitive values redacted."""
        return {
            "format_version": FORMAT_VERSION, "store": self.store, "serial": self.serial, "drift": self.has_drift(),
            "counts": self.counts(), "managed": self.managed,
            "objects": [{"kind": o.kind, "name": o.name, "state": o.state.value, "reason": o.reason, "store_id": o.store_id,
                         "job": o.job, "fields": [_field(f) for f in o.fields]} for o in self.objects],
            "unmanaged": [{"table": r.table, "id": r.id, "kind": r.kind, "name": r.name} for r in self.unmanaged],
        }


def find_drift(plan: Plan, snapshot: Snapshot) -> DriftReport:
    objects = tuple(obj for change in plan.changes if (obj := _drifted(change, snapshot)) is not None)
    unmanaged = tuple(unmanaged_rows(snapshot)) if plan.partial is None else ()  # a partial plan: outside its selection
    return DriftReport(plan.store, plan.serial, len(plan.changes), objects, unmanaged, dict(plan.labels))


def _drifted(change: Change, snapshot: Snapshot) -> DriftedObject | None:
    record = snapshot.managed.get((change.kind, change.name))
    state = drift_state(change, managed=record is not None)
    if state is None:
        return None
    return DriftedObject(change.kind, change.name, state, change.reason, record.store_id if record else "", change.job_summary,
                         change.fields)


def drift_state(change: Change, *, managed: bool) -> DriftState | None:
    """How one planned object differs from its manifest (None: it does not): its sync state as
    `ftctl status` has it, told apart further (a failed job; a missing row of an object ftctl has
    not written yet is merely out of sync; a deletion is an orphan)."""
    sync = sync_state(change)
    failed = bool(change.jobs) and job_health(change.job_states) is Health.FAILED
    if sync is Sync.WAITING:
        return DriftState.FAILED if failed else None
    if sync is Sync.MISSING:
        return DriftState.MISSING if managed else DriftState.OUT_OF_SYNC
    if sync is Sync.DRIFTED:
        return DriftState.DRIFTED
    if failed:
        return DriftState.FAILED
    if sync is Sync.SYNCED:
        return None
    return DriftState.ORPHANED if sync is Sync.ORPHANED or change.action is Action.DELETE else DriftState.OUT_OF_SYNC


def unmanaged_rows(snapshot: Snapshot) -> list[UnmanagedRow]:
    """Studio rows no managed object owns (nor produced), by table then id."""
    owned = {rid for record in snapshot.managed.values() for rid in (record.store_id, *record.row_ids)}
    owned |= set(owned_rows(snapshot))  # a managed job's earlier generations and the adapters they registered
    out = []
    for table, binding in BY_TABLE.items():
        for row_id, row in sorted(snapshot.rows.get(table, {}).items()):
            if row_id in owned or (binding.fan_out and row.get(binding.owner_column) in owned):
                continue
            if _produced(table, row, snapshot, owned):
                continue
            out.append(UnmanagedRow(table, row_id, binding.kind, live_object(table, row).name))
    return out


def _produced(table: str, row: dict[str, Any], snapshot: Snapshot, owned: set[str]) -> bool:
    """A row a managed job produced (a training's adapter): ftctl registered it (and renamed earlier versions)."""
    for producer in (b for b in BINDINGS.values() if b.produces and BINDINGS[b.produces].table == table):
        if row.get(product_link(producer.kind)) in owned:
            return True
        if any(adapter.described_as_trained_by(row, record.name) for record in snapshot.managed.values()
               if record.kind == producer.kind):
            return True
    return False


def _field(diff: FieldDiff) -> dict[str, Any]:
    before, after = diff.shown()
    return {"path": diff.path, "before": before, "after": after, "sensitive": diff.sensitive}
