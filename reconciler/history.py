"""Adopted history: a job the Studio ran before ftctl adopted its rows (`ftctl import`).

Pure. An adopted FineTuningJob or EvaluationJob is history: its run is the one its rows record
(`cml_job_id`, the Studio's CML job), so ftctl never launches, relaunches or re-registers anything for
it, and never rewrites its rows. Only a change to the manifest that re-runs the job makes a new
generation, which ftctl runs as its own (that generation is no longer history).
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Change

IMPORTED = "imported"  # the origin of a record `ftctl import` adopted (live.ManagedRecord.origin)


def is_history(record: ManagedRecord | None, change: Change) -> bool:
    """Whether this change is about an adopted job's own generation (adopted now or before)."""
    if change.action in (Action.CREATE, Action.REPLACE, Action.DELETE):
        return False  # a new generation (or none): ftctl's own
    origin = change.record.origin if change.record is not None else (record.origin if record is not None else "")
    return origin == IMPORTED


def as_history(change: Change, record: ManagedRecord | None, snapshot: Snapshot) -> Change:
    """The change with nothing to run: the job ran in the Studio, as its rows record."""
    table = change.record.store_table if change.record is not None else (record.store_table if record else "")
    row_ids = change.record.row_ids if change.record is not None else (record.row_ids if record else ())
    runs = sorted({str(row.get("cml_job_id")) for rid in row_ids if (row := snapshot.row(table, rid)) and row.get("cml_job_id")})
    ran = f"ran in the Studio as {', '.join(runs)}" if runs else "ran in the Studio"
    note = f"adopted history: {ran}; ftctl runs nothing for it"
    return replace(change, reason=f"{change.reason}; {note}" if change.action is not Action.NOOP else note, launches=())
