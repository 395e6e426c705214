"""Deletion in a plan: the managed objects no manifest declares any more, and the rows a replaced
object leaves.

Pure, over a `PlanState`. Owns: orphans (kept, flagged `orphan`, unless the policy prunes), their
deletion (`deletions`: each with the rows it deletes or releases, a job's with every generation's
rows, `adoption.generation_rows`; blocked while protected, PL-002, or used by rows that stay,
PL-003), the delete operations of a record (`delete_ops`: none for a shared row or one another
object also holds), and the mass-deletion guard (`mass_deletion`, PL-004).
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.adoption import generation_rows, owned_rows
from reconciler.kinds import BINDINGS, BY_TABLE, referrers
from reconciler.live import ManagedRecord
from reconciler.models.base import PROTECTED_ANNOTATION
from reconciler.pairing import Decision, decide, orphans
from reconciler.plan import Action, Blocker, Change, Consequence, FieldDiff, Policy, RowOp
from reconciler.planstate import PlanState


def deletions(state: PlanState) -> list[Change]:
    """The managed objects no manifest declares: deleted with `--prune`, else kept as orphans."""
    if state.partial:  # what a partial plan did not read is not its business
        return []
    found = orphans(state.manifests, state.snapshot.managed, {kind: b.delete_rank for kind, b in BINDINGS.items()})
    going = {rid for p in found if p.record for rid in (*p.record.row_ids, *_history_ids(state, p.record))} if state.policy.prune else set()
    changes = []
    for pair in found:
        assert pair.record is not None
        if decide(pair, prune=state.policy.prune, forced=False, in_sync=False) is Decision.DELETE:
            changes.append(_delete(state, pair.record, going))
        else:
            changes.append(Change(pair.kind, pair.name, Action.NOOP, "no manifest any more; `--prune` would delete it",
                                  orphan=True))
    return changes


def delete_ops(state: PlanState, record: ManagedRecord) -> tuple[RowOp, ...]:
    """The rows deleting `record` deletes: none of a shared row or of one another object holds."""
    if record.origin == "shared" or not record.store_table:
        return ()
    others = [r for r in state.snapshot.managed.values() if r.store_id == record.store_id and r.address != record.address]
    if others:
        return ()
    return tuple(RowOp(record.store_table, "delete", rid) for rid in record.row_ids
                 if state.snapshot.row(record.store_table, rid) is not None)


def mass_deletion(changes: list[Change], policy: Policy) -> list[Blocker]:
    deletions = [c for c in changes if c.action is Action.DELETE]
    if len(deletions) <= policy.max_deletions:
        return []
    return [Blocker("plan", "PL-004", f"the plan deletes {len(deletions)} objects, more than --max-deletions "
                    f"{policy.max_deletions}; raise the limit if this is intended")]


def _delete(state: PlanState, record: ManagedRecord, going: set[str]) -> Change:
    address = record.address
    if record.protected:
        state.blockers.append(Blocker(address, "PL-002", f"{address} is protected ({PROTECTED_ANNOTATION}); "
                                      "unprotect it (`ftctl unprotect`) before pruning it"))
    users = list(_users(state, record, going))
    if users:
        state.blockers.append(Blocker(address, "PL-003", f"{address} is still used by {', '.join(users[:5])}"
                                      + (f" and {len(users) - 5} more" if len(users) > 5 else "") + "; delete them too or keep it"))
    ops = _history_ops(state, record) + delete_ops(state, record)
    live = state.live_rows(record)
    fields = tuple(FieldDiff(f"{record.store_table}.{c}", v, None) for row in live.values() if row for c, v in row.items()
                   if c != "id" and v not in (None, ""))
    consequence = Consequence.RELEASE if not ops and record.store_table else Consequence.NONE
    return Change(record.kind, record.name, Action.DELETE, "no manifest any more (--prune)", consequence,
                  wave=0, fields=fields, ops=ops)


def _history_ops(state: PlanState, record: ManagedRecord) -> tuple[RowOp, ...]:
    """Deleting a job deletes every generation's rows with it (`adoption.generation_rows`: the
    earlier generations' job rows a re-run kept, and the adapters all of them registered), products
    first; none while another managed object still holds the job's current row."""
    if not delete_ops(state, record):
        return ()
    owner = owned_rows(state.snapshot)
    return tuple(RowOp(table, "delete", rid) for table, rid in generation_rows(state.snapshot, record)
                 if owner.get(rid) == record.address)


def _history_ids(state: PlanState, record: ManagedRecord) -> list[str]:
    return [op.row_id for op in _history_ops(state, record)]


def _users(state: PlanState, record: ManagedRecord, going: set[str]) -> Iterable[str]:
    """The rows that reference `record`'s (or its earlier generations' and products') and stay (not
    deleted by this plan), named."""
    owned = [(record.kind, set(record.row_ids))] if record.kind in BINDINGS else []
    for op in _history_ops(state, record):
        owned.append((BY_TABLE[op.table].kind, {op.row_id}))
    for kind, ids in owned:
        for table, column in referrers(kind):
            for row in state.snapshot.rows.get(table, {}).values():
                if row.get(column) in ids and row["id"] not in going:
                    user = BY_TABLE[table]
                    yield f"{user.kind} {(user.name_of(row) if not user.fan_out else '') or row['id']}"
