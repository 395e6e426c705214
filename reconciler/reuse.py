"""Content-addressed reuse: a job whose inputs equal those of an earlier job that succeeded in this
store takes that job's output instead of launching. Pure.

The key (`reuse_key`) is the digest of the job input as it would launch (less its name, folders,
tracking and lineage: `jobinput.input_digest`: model, dataset source, prompt templates, config
bodies, split, fraction, seed, contract version, resources; less an evaluation's row ids) with the dataset's content digest and
the base revision (`lineage.Provenance`). Every job ftctl launches records its key in
`ftctl_lineage` (`LineageRecord`); a job of the same object whose key equals the one planned, and
whose backend says it succeeded, is reusable. A dataset whose content digest is unknown (a Hub
dataset, a file too large to read) is never reused: its bytes may have changed under its name.

A training reuses the earlier generation's Studio job row and adapter (`training_rows`): both take
the adapter's name back, the current version keeps its row renamed `<name>-g<N>` as on any re-run,
and ftctl's record points at the earlier row, so the Studio shows the reused adapter as the job's.
An evaluation row records the earlier job and its results folder (`evaluation_note`). The planner
then follows that job (`same_run`), and launches nothing.

Called by `lifecycle`; `executor`/`store.write` record the reuses it plans.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler import kinds
from reconciler.jobinput import input_digest
from reconciler.lineage import (
    LINEAGE_KEY,
    UNKNOWN,
    LineageRecord,
    Provenance,
    base_revision,
    config_digests,
    dataset_digest,
    of_input,
)
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Action, Change, Consequence, Reuse, RowOp
from reconciler.runtime import JobObservation, JobState

TRAININGS, ADAPTERS = kinds.fine_tuning_job.BINDING, kinds.adapter.BINDING


def reuse_key(document: Mapping[str, Any], *, dataset: str, base: str) -> str:
    """What two jobs must share for one to stand for the other: the input's digest less the Studio
    row ids an evaluation's combinations are labelled with (each generation writes new rows), with
    the dataset's and the base model's identities."""
    return _keyed(input_digest(_without_row_ids(document)), dataset, base)


def _keyed(digest: str, dataset: str, base: str) -> str:
    """The reuse key of an input whose digest (less its row ids) is `digest`."""
    text = json.dumps([digest, dataset, base], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _without_row_ids(document: Mapping[str, Any]) -> Mapping[str, Any]:
    block = document.get("evaluate")
    if not isinstance(block, Mapping) or not isinstance(block.get("candidates"), list):
        return document
    candidates = [{k: v for k, v in c.items() if k != "evaluation_id"} if isinstance(c, Mapping) else c for c in block["candidates"]]
    return {**document, "evaluate": {**block, "candidates": candidates}}


def with_lineage(document: dict[str, Any] | None, provenance: Provenance) -> dict[str, Any] | None:
    """The job input with its `lineage` block (its name stays: the block is not in `input_digest`)."""
    if document is None:
        return None
    dataset, base = dataset_digest(document, provenance), base_revision(document, provenance)
    digest = input_digest(document)
    keyed = _without_row_ids(document)  # the document itself when it has no row ids: its digest is computed once
    block = {"commit": provenance.commit, "dataset_digest": dataset, "base_revision": base,
             "config_digests": config_digests(document), "ftctl_version": provenance.ftctl_version,
             "input_digest": digest, "reuse_key": _keyed(digest if keyed is document else input_digest(keyed), dataset, base)}
    return {**document, LINEAGE_KEY: block}


def reusable(kind: str, name: str, document: Mapping[str, Any] | None, *, snapshot: Snapshot,
             observations: Mapping[str, JobObservation]) -> LineageRecord | None:
    """The latest job of this object that ran the same inputs and succeeded, if any."""
    block = of_input(document or {})
    key = str(block.get("reuse_key") or "")
    if not key or ((document or {}).get("dataset") and block.get("dataset_digest") in (None, "", UNKNOWN)):
        return None
    for record in sorted(snapshot.lineage, key=lambda r: r.at, reverse=True):
        if (record.kind, record.name) != (kind, name) or record.reused_from or not ran_alike(record, document or {}):
            continue
        seen = observations.get(record.job_name)
        if seen is not None and seen.state is JobState.SUCCEEDED:
            return record
    return None


def same_run(recorded: str, name: str, document: Mapping[str, Any] | None, snapshot: Snapshot) -> bool:
    """Whether the job a row records (`recorded`, of an earlier generation) ran what `name` would run:
    the store's lineage gives it the reuse key of `document`. The row of a generation that reused
    it records it, and follows it as its own."""
    key = str(of_input(document or {}).get("reuse_key") or "")
    if not key or not recorded or recorded == name:
        return False
    return any(r.job_name == recorded and ran_alike(r, document or {}, base_matters=False) for r in snapshot.lineage)


def ran_alike(record: LineageRecord, document: Mapping[str, Any], *, base_matters: bool = True) -> bool:
    """Whether the job `record` names ran the inputs of `document` (with its lineage block): the
    reuse keys are equal, or they differ only by a base revision one side does not know (a plan
    made offline cannot ask the Hub; a job recorded before ftctl read revisions has none). With
    `base_matters` off (following the job a row records) the base revision is never compared: a
    Hub repo whose main moved does not relaunch a generation that reused a job, as it does not
    relaunch one that ran its own."""
    block = of_input(document)
    if record.reuse_key == block.get("reuse_key"):
        return True
    current = str(block.get("base_revision") or UNKNOWN)
    if base_matters and UNKNOWN not in (current, record.base_revision or UNKNOWN) and current != record.base_revision:
        return False
    dataset = str(block.get("dataset_digest") or UNKNOWN)
    return reuse_key(document, dataset=dataset, base=record.base_revision or UNKNOWN) == record.reuse_key


def planned(record: LineageRecord, *, product: str = "", product_name: str = "") -> Reuse:
    return Reuse(record.job_name, record.generation, record.row, product, product_name, record.at, record.commit, record.reuse_key)


def training_rows(change: Change, earlier: LineageRecord, adapter_name: str, snapshot: Snapshot,
                  current: ManagedRecord | None) -> Change | None:
    """A training's re-run as a reuse of `earlier`: its job row and the adapter it registered take
    the adapter's name again, the current version keeps its rows renamed `<name>-g<N>` (as any
    re-run leaves it), no new row is written, and the record points at the earlier row. None when
    either earlier row is gone."""
    table, _, row_id = earlier.row.partition("/")
    job_row = snapshot.row(table, row_id) if table == TRAININGS.table else None
    adapter = next((a for a in snapshot.rows.get(ADAPTERS.table, {}).values() if kinds.adapter.trained_by(a) == row_id), None)
    if job_row is None or adapter is None or change.record is None or change.action is Action.DELETE:
        return None
    new_id = change.record.store_id
    kept = tuple(op for op in change.ops if not (op.op == "insert" and op.row_id == new_id))
    ops = (*kept, *_retire_current(current, adapter_name, row_id, {(op.table, op.row_id) for op in kept}, snapshot),
           RowOp(table, "update", row_id, TRAININGS.named(adapter_name)),
           RowOp(ADAPTERS.table, "update", str(adapter["id"]), ADAPTERS.named(adapter_name)))
    done = planned(earlier, product=f"{ADAPTERS.table}/{adapter['id']}", product_name=kinds.adapter.name(adapter))
    return replace(change, consequence=Consequence.REUSE, ops=ops, launches=(), reuses=(done,),
                   record=replace(change.record, store_id=row_id, row_ids=(row_id,)),
                   reason=f"{change.reason}; reuses adapter {done.product_name} of generation {earlier.generation}")


def _retire_current(current: ManagedRecord | None, adapter_name: str, reused: str, touched: set[tuple[str, str]],
                    snapshot: Snapshot) -> tuple[RowOp, ...]:
    """The current version's training row and the adapters it registered under `adapter_name`,
    renamed `<name>-g<its generation>`, unless the plan renames them already."""
    row = snapshot.row(TRAININGS.table, current.store_id) if current is not None and current.store_id != reused else None
    if row is None or current is None or kinds.fine_tuning_job.adapter_name(row) != adapter_name:
        return ()
    retired = f"{adapter_name}-g{current.generation}"
    ops = [RowOp(TRAININGS.table, "update", current.store_id, TRAININGS.named(retired))]
    ops += [RowOp(ADAPTERS.table, "update", str(a["id"]), ADAPTERS.named(retired))
            for a in snapshot.rows.get(ADAPTERS.table, {}).values()
            if kinds.adapter.name(a) == adapter_name and kinds.adapter.trained_by(a) == current.store_id]
    return tuple(op for op in ops if (op.table, op.row_id) not in touched)


def evaluation_note(table: str, earlier: LineageRecord, observation: JobObservation, results_dir: str) -> dict[str, Any]:
    """What an evaluation row that reuses `earlier` records: its job and its results folder."""
    return kinds.run_note(table, observation.studio_job_id or earlier.job_name, results_dir)
