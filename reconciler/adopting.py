"""Adoption in a plan: a manifest that names an existing Studio row (`ftctl.io/store-id`) takes it
under management instead of writing a new one.

Pure, over a `PlanState`. Owns: whether a manifest adopts (`adoptable`: the store holds the rows
its id names and ftctl does not manage them yet), the record an adoption starts from
(`adoption_record`: `shared` for a row the Studio ships, else `imported`), the id a new object
gets (`declared_or_new`: the declared id where the store does not hold it, as an import applied
to an empty store asks), and the adoption's change (`adopted`: an update that records the rows,
with whatever differences the compared change puts right).
"""

from __future__ import annotations

from reconciler.desired import Desired, declared_id
from reconciler.kinds import BINDINGS
from reconciler.kinds.base import Binding
from reconciler.live import ManagedRecord
from reconciler.manifests.loader import Manifest
from reconciler.models.base import STORE_ID_ANNOTATION
from reconciler.plan import Action, Change, Consequence, Record
from reconciler.planstate import Key, PlanState, owned
from reconciler.rowdiff import rows_fp


def rows_of(state: PlanState, binding: Binding, store_id: str) -> tuple[str, ...]:
    """The ids of the rows of the object whose id is `store_id` that the store holds."""
    if binding.fan_out:
        return tuple(sorted(str(r["id"]) for r in state.snapshot.rows.get(binding.table, {}).values()
                            if binding.owned_by(r, store_id)))
    return (store_id,) if state.snapshot.row(binding.table, store_id) is not None else ()


def adoptable(state: PlanState, manifest: Manifest) -> bool:
    store_id = manifest.resource.metadata.annotations.get(STORE_ID_ANNOTATION)
    binding = BINDINGS[manifest.kind]
    if not store_id or not binding.table or store_id in state.managed_ids:
        return False
    return bool(rows_of(state, binding, store_id))


def adoption_record(state: PlanState, manifest: Manifest) -> ManagedRecord:
    store_id = manifest.resource.metadata.annotations[STORE_ID_ANNOTATION]
    binding = BINDINGS[manifest.kind]
    row_ids = rows_of(state, binding, store_id)
    origin = "shared" if binding.is_shared(state.snapshot.row(binding.table, row_ids[0]) or {}) else "imported"
    return ManagedRecord(manifest.kind, manifest.name, binding.table, store_id, row_ids, "", "", 1, False, origin)


def declared_or_new(state: PlanState, manifest: Manifest, key: Key) -> str:
    """A new object's id: the one its manifest declares (`ftctl.io/store-id`, an import applied
    to a store that does not hold the row), else one derived from the plan's seed."""
    declared = declared_id(manifest)
    binding = BINDINGS[manifest.kind]
    taken = declared is None or not binding.table or state.snapshot.row(binding.table, declared) is not None or bool(
        rows_of(state, binding, declared))
    return state.new_id(*key, 1) if taken or declared is None else declared


def with_fingerprints(state: PlanState, desired: Desired, record: ManagedRecord, spec_fp: str, protected: bool) -> ManagedRecord:
    """The adoption record as if ftctl had written the live rows: compared against it, what
    differs from the manifest is a change, not drift."""
    live_fp = rows_fp(desired, state.live_rows(record), only=owned(record), compare=state.live_comparable)
    return ManagedRecord(record.kind, record.name, record.store_table, record.store_id, record.row_ids,
                         spec_fp, live_fp, 1, protected, record.origin)


def adopted(compared: Change, desired: Desired, record: ManagedRecord, wave: int, spec_fp: str, protected: bool) -> Change:
    """Take an existing Studio row under management; differences (`compared`) are shown and put right."""
    after = compared.record or Record(record.store_table, record.store_id, record.row_ids, spec_fp,
                                      rows_fp(desired, {}, only=owned(record)), 1, record.origin, protected)
    reason = f"adopt the existing Studio row {record.store_id} ({STORE_ID_ANNOTATION})"
    if compared.action is Action.NOOP:
        return Change(desired.kind, desired.name, Action.UPDATE, reason, Consequence.IN_PLACE, wave, record=after,
                      adopts=record.row_ids)
    return Change(compared.kind, compared.name, compared.action, f"{reason}; {compared.reason}", compared.consequence, wave,
                  False, compared.fields, compared.ops, after, compared.waits_for, adopts=record.row_ids)
