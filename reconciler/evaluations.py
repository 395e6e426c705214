"""Base vs adapter: an evaluation's figures paired, so a reader sees what fine-tuning changed.

`compare` takes the snapshot (which combination of an EvaluationJob is the base model alone and
which an adapter, from the Studio rows the evaluation wrote) and the jobs' observations (their
metrics, as the evaluate runner reported them) and returns one `Comparison` per evaluation, adapter
and metric. The planner puts them on the plan (`Plan.evaluations`), where the status, apply and
markdown plan views read them. Pure: values in, values out; no store, no backend.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from reconciler.jobinput import job_prefix
from reconciler.kinds import adapter, evaluation_job, model
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Comparison
from reconciler.runtime import JobObservation

SHOWN = ("exact_match", "rougeL")  # the metrics that say whether the adapter learnt the task


def compare(snapshot: Snapshot, observations: Mapping[str, JobObservation], *, names: Collection[str]) -> list[Comparison]:
    """The managed evaluations called `names`: each adapter against the base model, on the metrics both reported."""
    out: list[Comparison] = []
    for (kind, name), record in sorted(snapshot.managed.items()):
        if kind == evaluation_job.BINDING.kind and name in names:
            out += _compare_one(snapshot, record, observations)
    return out


def _compare_one(snapshot: Snapshot, record: ManagedRecord, observations: Mapping[str, JobObservation]) -> list[Comparison]:
    bases: list[tuple[str, dict[str, float]]] = []
    adapters: list[tuple[str, dict[str, float]]] = []
    for index, row_id in enumerate(record.row_ids):
        prefix = job_prefix(record.kind, record.name, record.generation, index, store_id=snapshot.store_id)
        metrics = next((o.metrics for n, o in sorted(observations.items()) if n.startswith(prefix) and o.metrics), None)
        row = snapshot.row(record.store_table, row_id) or {}
        if metrics is not None:
            (adapters if evaluation_job.adapter_id(row) else bases).append((_label(snapshot, row), metrics))
    return [Comparison(record.name, metric, base_label, float(base[metric]), label, float(metrics[metric]))
            for base_label, base in bases[:1] for label, metrics in adapters
            for metric in SHOWN if metric in base and metric in metrics]


def _label(snapshot: Snapshot, row: Mapping[str, Any]) -> str:
    """An adapter's name, or `<model> (base)` for the base model alone."""
    model_id, adapter_id = evaluation_job.combination(row)
    adapter_row = snapshot.row(adapter.BINDING.table, adapter_id) if adapter_id else None
    if adapter_row is not None:
        return adapter.name(adapter_row) or adapter_id
    return f"{model.name(snapshot.row(model.BINDING.table, model_id) or {}) or model_id} (base)"
