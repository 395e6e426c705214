"""Adopted history: a job the Studio ran before ftctl adopted its rows (`ftctl import`).

Pure. An adopted FineTuningJob or EvaluationJob is history: its run is the one its rows record
(`cml_job_id`, the Studio's CML job), so ftctl never launches, relaunches or re-registers anything for
it, and never rewrites its rows. A manifest that records its run (`cml_job_id`, which import writes)
is history wherever it is applied: into an empty store its rows are written as they were and
nothing runs. To run an imported job again, remove its `cml_job_id` and change what re-runs it:
the new generation is ftctl's own.

`imported_runs` says what an adopted job's rows record of its runs (`ftctl status`, `get`,
`describe`): the Studio's CML job of each row, and whether the rows show it finished.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reconciler.kinds import BY_TABLE, adapter, fine_tuning_job
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.plan import Action, Change
from reconciler.runtime import JobState

IMPORTED = "imported"  # the origin of a record `ftctl import` adopted (live.ManagedRecord.origin)


def is_history(manifest: Manifest, record: ManagedRecord | None, change: Change) -> bool:
    """Whether this change is about a run that already happened outside ftctl: the manifest records
    it (`cml_job_id`, as `ftctl import` writes it: into an empty store its rows are written as they
    were, and nothing runs), or ftctl import adopted this generation (its record's origin)."""
    if change.action is Action.DELETE:
        return False
    if records_run(manifest):
        return True
    if change.action in (Action.CREATE, Action.REPLACE):
        return False  # a new generation: ftctl's own
    origin = change.record.origin if change.record is not None else (record.origin if record is not None else "")
    return origin == IMPORTED


def records_run(manifest: Manifest) -> bool:
    """Whether the manifest names the run that made its rows (each combination's, for a fan-out)."""
    spec = manifest.resource.spec
    items = getattr(spec, "combinations", None)
    if items:
        return all(getattr(item, "cml_job_id", None) for item in items)
    return bool(getattr(spec, "cml_job_id", None))


def as_history(change: Change, record: ManagedRecord | None, snapshot: Snapshot) -> Change:
    """The change with nothing to run: the job ran in the Studio, as its rows record."""
    table = change.record.store_table if change.record is not None else (record.store_table if record else "")
    row_ids = change.record.row_ids if change.record is not None else (record.row_ids if record else ())
    runs = sorted({BY_TABLE[table].run_of(row) for rid in row_ids if (row := snapshot.row(table, rid)) and BY_TABLE[table].run_of(row)})
    ran = f"ran in the Studio as {', '.join(runs)}" if runs else "ran in the Studio"
    note = f"adopted history: {ran}; ftctl runs nothing for it"
    kept = change.record
    if kept is not None and change.action is Action.CREATE:  # written from a manifest naming its run: still the Studio's
        kept = replace(kept, origin=IMPORTED)
    return replace(change, reason=f"{change.reason}; {note}" if change.action is not Action.NOOP else note, launches=(),
                   record=kept)


@dataclass(frozen=True)
class ImportedRun:
    """One Studio run of an adopted job (a training, or one combination of an evaluation), as its row records it."""

    row_id: str
    run: str  # the row's cml_job_id: the Studio's CML job ('' when the row records none)
    state: JobState | None  # SUCCEEDED when the rows show it finished; None: they do not say
    product: str = ""  # the adapter a training registered


def imported_runs(record: ManagedRecord, snapshot: Snapshot) -> list[ImportedRun]:
    """The runs of an adopted job's rows, in the record's row order; none for a record ftctl made or
    a kind that runs nothing. A training that registered an adapter succeeded (the Studio's script
    registers it as its last step); nothing else in the Studio's rows says how a run ended."""
    if record.origin != IMPORTED or record.store_table not in BY_TABLE or not BY_TABLE[record.store_table].run_column:
        return []
    binding = BY_TABLE[record.store_table]
    out = []
    for row_id in record.row_ids:
        row = snapshot.row(record.store_table, row_id) or {}
        made = adapter.registered_by(snapshot.rows, row) if row and binding is fine_tuning_job.BINDING else []
        out.append(ImportedRun(row_id, binding.run_of(row), JobState.SUCCEEDED if made else None,
                               adapter.name(made[0]) if made else ""))
    return out
