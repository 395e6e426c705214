"""Base vs adapter: an evaluation's figures paired, so a reader sees what fine-tuning changed.

`compare` takes the snapshot (which combination of an EvaluationJob is the base model alone and
which an adapter, from the Studio rows the evaluation wrote) and the jobs' statuses (their metrics,
as the evaluate runner reported them) and returns one `Comparison` per evaluation, adapter and
metric; `change_text` renders one as `exact_match 0.00 → 0.88 (+0.88)`. The status, apply and plan
views show these lines; `status --format json` can carry the comparisons as numbers (`asdict`).
Pure: values in, values out; no store, no backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.inspection import JobStatus
from reconciler.jobinput import job_prefix
from reconciler.live import ManagedRecord, Snapshot

SHOWN = ("exact_match", "rougeL")  # the metrics that say whether the adapter learnt the task


@dataclass(frozen=True)
class Comparison:
    """One metric of one evaluation: the base model's figure beside an adapter's."""

    evaluation: str
    metric: str
    base_label: str
    base: float
    adapter_label: str
    adapter: float

    @property
    def delta(self) -> float:
        return self.adapter - self.base


def change_text(comparison: Comparison) -> str:
    """`exact_match 0.00 → 0.88 (+0.88)`."""
    c = comparison
    return f"{c.metric} {c.base:.2f} → {c.adapter:.2f} ({c.delta:+.2f})"


def compare(snapshot: Snapshot, jobs: Sequence[JobStatus]) -> list[Comparison]:
    """Each managed evaluation's adapters against its base model, on the metrics both reported."""
    out: list[Comparison] = []
    for (kind, _), record in sorted(snapshot.managed.items()):
        if kind == "EvaluationJob":
            out += _compare_one(snapshot, record, jobs)
    return out


def _compare_one(snapshot: Snapshot, record: ManagedRecord, jobs: Sequence[JobStatus]) -> list[Comparison]:
    bases: list[tuple[str, dict[str, float]]] = []
    adapters: list[tuple[str, dict[str, float]]] = []
    for index, row_id in enumerate(record.row_ids):
        prefix = job_prefix(record.kind, record.name, record.generation, index, store_id=snapshot.store_id)
        metrics = next((j.metrics for j in jobs if j.job.startswith(prefix) and j.metrics), None)
        row = snapshot.row("evaluation_jobs", row_id) or {}
        if metrics is not None:
            (adapters if row.get("adapter_id") else bases).append((_label(snapshot, row), metrics))
    return [Comparison(record.name, metric, base_label, base[metric], label, metrics[metric])
            for base_label, base in bases[:1] for label, metrics in adapters
            for metric in SHOWN if metric in base and metric in metrics]


def _label(snapshot: Snapshot, row: Mapping[str, Any]) -> str:
    """An adapter's name, or `<model> (base)` for the base model alone."""
    adapter = snapshot.row("adapters", str(row["adapter_id"])) if row.get("adapter_id") else None
    if adapter is not None:
        return str(adapter.get("name") or row["adapter_id"])
    model = snapshot.row("models", str(row.get("model_id"))) or {}
    return f"{model.get('name') or row.get('model_id')} (base)"
