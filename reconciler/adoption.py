"""What `ftctl import` and `ftctl export-manifests` leave out: rows a managed job owns.

Pure: a `Snapshot` in, store ids out. A FineTuningJob ftctl manages owns the adapter rows its runs
registered (every version: the adapter belongs to its job, and is named after the job's
`adapter_name`) and the job rows of its earlier generations. Such rows are the job's history, not
objects of their own: a manifest for one would clash with the job that owns it (NM-002), and
pruning it would delete what the job made. Adapters the Studio's own trainings registered are not
owned here: their jobs are not managed yet, and import adopts each as an Adapter whose
`fine_tuning_job` names its job.
"""

from __future__ import annotations

from reconciler.kinds import adapter, fine_tuning_job
from reconciler.live import Snapshot

JOBS, ADAPTERS = fine_tuning_job.BINDING.table, adapter.BINDING.table


def owned_rows(snapshot: Snapshot) -> dict[str, str]:
    """Store id -> `Kind/name` of the managed job that owns the row, for each row not managed itself."""
    managed_ids = {rid for record in snapshot.managed.values() for rid in record.row_ids}
    by_adapter_name: dict[str, str] = {}
    for record in snapshot.managed.values():
        for rid in record.row_ids if record.store_table == JOBS else ():
            row = snapshot.row(JOBS, rid)
            if row is not None and fine_tuning_job.adapter_name(row):
                by_adapter_name[fine_tuning_job.adapter_name(row)] = record.address
    owner_of_job = {str(row["id"]): by_adapter_name[fine_tuning_job.adapter_name(row)]
                    for row in snapshot.rows.get(JOBS, {}).values() if fine_tuning_job.adapter_name(row) in by_adapter_name}
    owned = {job_id: owner for job_id, owner in owner_of_job.items() if job_id not in managed_ids}
    for row in snapshot.rows.get(ADAPTERS, {}).values():
        owner = owner_of_job.get(adapter.trained_by(row))
        if owner and str(row["id"]) not in managed_ids:
            owned[str(row["id"])] = owner
    return owned


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
