"""Rows a managed job owns besides its current row: its earlier generations and what they registered.

Pure: a `Snapshot` in, store ids out. One rule, read by every stage that must tell a managed job's
history from rows of their own: the planner deletes them with the job (`pruning`), plan verification
accepts those deletes as the job's own (`planverify`), drift and `ftctl get` do not list them as
unmanaged, and `ftctl import` / `export-manifests` never write a manifest for one (it would clash
with the job that owns it, NM-002, and pruning it would delete what the job made).

A FineTuningJob ftctl manages owns, besides its current row:
- its earlier generations' job rows: a re-run keeps generation N's row, named as the current one
  until the new version registers its product and `<product>-gN` after (the planner's
  `_retire_ops`); a generation that registered an adapter is also found through the adapter;
- every adapter those rows and the current one registered (the adapter's product link names the
  job row; each version is named after the job's `adapter_name`, `-gN` once retired).
Rows another managed object manages (an adapter `ftctl import` adopted as an Adapter of its own)
are that object's, not the job's. Adapters the Studio's own trainings registered are not owned
here until their jobs are managed.
"""

from __future__ import annotations

from reconciler.kinds import BINDINGS, adapter, fine_tuning_job, product_link
from reconciler.live import ManagedRecord, Snapshot

JOBS, ADAPTERS = fine_tuning_job.BINDING.table, adapter.BINDING.table


def owned_rows(snapshot: Snapshot) -> dict[str, str]:
    """Store id -> `Kind/name` of the managed job that owns the row, for each row not managed itself."""
    managed_ids = {rid for record in snapshot.managed.values() for rid in (record.store_id, *record.row_ids)}
    return {row_id: record.address for record in snapshot.managed.values()
            for _, row_id in generation_rows(snapshot, record) if row_id not in managed_ids}


def generation_rows(snapshot: Snapshot, record: ManagedRecord) -> list[tuple[str, str]]:
    """(table, id) of the rows `record`'s runs left besides its current rows, products first (an
    adapter before the job row it names): empty for a kind whose job produces nothing."""
    binding = BINDINGS.get(record.kind)
    if binding is None or not binding.produces or not record.store_table:
        return []
    made, link = BINDINGS[binding.produces], product_link(record.kind)
    job_rows = snapshot.rows.get(record.store_table, {})
    current = [row for rid in record.row_ids if (row := job_rows.get(rid)) is not None]
    # A previous generation keeps its name until the new one registers its product, then `-gN`.
    retired = {name for row in current for name in (binding.name_of(row), *(f"{binding.name_of(row)}-g{n}" for n in range(1, record.generation)))}
    jobs = set(record.row_ids) | {rid for rid, row in job_rows.items() if binding.name_of(row) in retired - {""}}
    registered = [row for row in snapshot.rows.get(made.table, {}).values()
                  if adapter.described_as_trained_by(row, record.name) and str(row.get(link) or "") in job_rows]
    jobs |= {str(row.get(link)) for row in registered}
    products = sorted(str(row["id"]) for row in snapshot.rows.get(made.table, {}).values() if str(row.get(link) or "") in jobs)
    return [(made.table, rid) for rid in products] + [(record.store_table, rid) for rid in sorted(jobs - set(record.row_ids))]


def current_products(snapshot: Snapshot) -> dict[str, tuple[str, str]]:
    """Store id -> ("Adapter", name) of the adapter each managed training's current generation
    registered: a manifest reaches it by that name (the job's `adapter_name`), as a plan resolves it."""
    out: dict[str, tuple[str, str]] = {}
    for record in snapshot.managed.values():
        row = snapshot.row(JOBS, record.store_id) if record.store_table == JOBS else None
        product = fine_tuning_job.adapter_name(row) if row is not None else ""
        for found in snapshot.rows.get(ADAPTERS, {}).values() if product else ():
            if adapter.name(found) == product and adapter.trained_by(found) == record.store_id:
                out[str(found["id"])] = (adapter.BINDING.kind, product)
    return out
