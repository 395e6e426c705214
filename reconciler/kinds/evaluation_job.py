"""EvaluationJob ↔ the Studio's `evaluation_jobs` table: one row per (model, adapter) combination,
all carrying the job's id as `parent_job_id` (the Studio's fan-out), and the hooks evaluation needs.

Each combination's row has its own id, CML job and result folder (`evaluation_dir`, where the
Studio's evaluation page reads the results; a path as `out_dir` is: relative to the manifest's
file there, to the project root in the store): history that a manifest carries only for runs that
already happened (an imported Studio evaluation), with the row's id as the combination's `store_id`.
"""

from __future__ import annotations

from typing import Any

from reconciler.kinds import adapter as adapters
from reconciler.kinds.base import INT, TEXT, Binding, Column, Path, Ref, RowsOf, RowView, Snapshot, json_value
from reconciler.kinds.fine_tuning_job import cml_job_id, inputs, resources
from reconciler.models.jobs import EvaluationJob, EvaluationJobSpec
from reconciler.plan import Consequence
from reconciler.records import Row

BINDING = Binding(
    kind="EvaluationJob",
    table="evaluation_jobs",
    spec_model=EvaluationJobSpec,
    columns=(
        Column("id", derived="id"),
        Column("type", ("type",), TEXT),
        Column("cml_job_id", ("cml_job_id",), TEXT, history=True, per_item=True),
        Column("parent_job_id", derived="owner"),
        Column("base_model_id", ("model",), Ref("Model"), empty="", per_item=True),
        Column("dataset_id", ("dataset",), Ref("Dataset")),
        Column("prompt_id", ("prompt",), Ref("Prompt")),
        Column("num_workers", ("num_workers",), INT),
        Column("adapter_id", ("adapter",), Ref("Adapter"), empty="", per_item=True),
        Column("num_cpu", ("resources", "cpu"), INT),
        Column("num_gpu", ("resources", "gpu"), INT),
        Column("num_memory", ("resources", "memory"), INT),
        Column("evaluation_dir", ("evaluation_dir",), Path(), history=True, per_item=True),
        Column("model_bnb_config_id"),
        Column("adapter_bnb_config_id"),
        Column("generation_config_id"),
        Column("model_bnb_config", ("bnb_config",), Snapshot("bitsandbytes_config")),
        Column("adapter_bnb_config", ("adapter_bnb_config",), Snapshot("bitsandbytes_config")),
        Column("generation_config", ("generation_config",), Snapshot("generation_config")),
    ),
    name_column="parent_job_id",
    rerun=Consequence(EvaluationJob.RERUN),
    in_place=frozenset({"num_workers"}),  # the Studio's bookkeeping: the evaluation does not read it
    items=("combinations",),
    resolved=lambda manifest, _scope: {"eval_dataset_fraction": manifest.resource.spec.eval_dataset_fraction,
                                       "selected_features": manifest.resource.spec.selected_features},
    item_key=("base_model_id", "adapter_id"),
    delete_rank=1,
    run_column="cml_job_id",
    results_column="evaluation_dir",
    live_fields={"type": "type", "model_id": "base_model_id", "dataset_id": "dataset_id"},
    shown=(("DATASET", ("dataset_id",)), ("BASE MODEL", ("base_model_id",))),
)


# A job row's CML job, inputs and resources are read alike for training and evaluation.
__all__ = ["BINDING", "cml_job_id", "inputs", "resources"]


def parent(row: RowView) -> str:
    """The EvaluationJob's id (every combination's row carries it)."""
    return str(row.get("parent_job_id") or "")


def combination(row: RowView) -> tuple[str, str]:
    """(base model id, adapter id or '') of one combination's row."""
    return str(row.get("base_model_id") or ""), str(row.get("adapter_id") or "")


def evaluation_dir(row: RowView) -> str:
    return str(row.get("evaluation_dir") or "")


def adapter_id(row: RowView) -> str:
    return str(row.get("adapter_id") or "")


def adapter_of(row: Row, rows: RowsOf) -> Row | None:
    """The adapter row a combination evaluates (None for the base model alone)."""
    return rows(adapters.BINDING.table, adapter_id(row)) if adapter_id(row) else None


def evaluate_block(row: Row, *, model: Row, adapter: Row | None, model_source: dict[str, Any], fraction: float,
                   split: float, max_rows: int | None) -> dict[str, Any]:
    """A job input's `evaluate` block: the combination (with its row id) and the row's snapshots."""
    label = str(adapter.get("name")) if adapter else f"{model.get('name')} (base)"
    candidate = {"label": label, "model": model_source, "adapter_path": str(adapter.get("location")) if adapter else None,
                 "evaluation_id": str(row.get("id"))}
    return {"candidates": [candidate], "generation_config": json_value(row.get("generation_config")),
            "bnb_config": json_value(row.get("model_bnb_config")), "eval_dataset_fraction": fraction,
            "train_test_split": split, "max_rows": max_rows}
