"""Config sharing in a plan: a content-addressed kind (a Config) whose body equals a row the store
or this plan already has shares that row instead of writing an equal one (CF-004).

Pure, over a `PlanState`. Owns: finding the equal row (`equal_row`: one this plan creates, else an
unmanaged store row not deleted by this plan), the record of a sharing object (`shared_record`,
owning only the binding's shared columns), what the plan says it shares (`label`), and noting the
rows this plan creates so later manifests share them (`remember`).
"""

from __future__ import annotations

from reconciler.desired import Desired
from reconciler.kinds import BINDINGS
from reconciler.kinds.config import content_key
from reconciler.plan import Record
from reconciler.planstate import PlanState
from reconciler.rowdiff import rows_fp


def equal_row(state: PlanState, desired: Desired) -> str | None:
    """The id of a row whose body equals `desired`'s, or None (no sharing for other kinds)."""
    if not BINDINGS[desired.kind].content_addressed:
        return None
    key = content_key(desired.rows[0].values)
    if key in state.new_configs:
        return state.new_configs[key]
    managed_ids = {r.store_id for r in state.snapshot.managed.values() if r.kind == desired.kind}
    for row in state.snapshot.rows.get(desired.table, {}).values():
        if row["id"] not in managed_ids and row["id"] not in state.deleted_ids and content_key(row) == key:
            return str(row["id"])
    return None


def shared_record(state: PlanState, desired: Desired, shared: str, spec_fp: str, generation: int, protected: bool) -> Record:
    """The record of an object that shares row `shared`: its id is the row's from now on."""
    state.ids[(desired.kind, desired.name)] = shared
    return Record(desired.table, shared, (shared,), spec_fp, rows_fp(desired, {}, only=BINDINGS[desired.kind].shared_columns),
                  generation, "shared", protected)


def remember(state: PlanState, desired: Desired, own_id: str) -> None:
    """A row this plan creates for a content-addressed kind: later equal bodies share it."""
    if BINDINGS[desired.kind].content_addressed:
        state.new_configs[content_key(desired.rows[0].values)] = own_id


def label(state: PlanState, desired: Desired, store_id: str) -> str:
    """What the shared row is, as the plan names it: the object that holds it, else a Studio row."""
    owners = [*state.ids.items(), *(((r.kind, r.name), r.store_id) for r in state.snapshot.managed.values())]
    for (kind, name), known in owners:
        if known == store_id and kind == desired.kind and name != desired.name:
            return f"{kind}/{name}"
    shipped = BINDINGS[desired.kind].is_shared(state.snapshot.row(desired.table, store_id) or {})
    default = "a Studio default config" if shipped else "a Studio config"
    return f"{default} ({store_id}; its description stays as it is)"
