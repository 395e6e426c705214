"""EvaluationJob ↔ the Studio's `evaluation_jobs` table: one row per (model, adapter) combination,
all carrying the job's id as `parent_job_id` (the Studio's fan-out), and the hooks evaluation needs.

Each combination's row has its own id, CML job and result folder (`evaluation_dir`, where the
Studio's evaluation page reads the results): history that a manifest carries only for runs that
already happened (an imported Studio evaluation), with the row's id as the combination's `store_id`.
"""

from __future__ import annotations

from typing import Any

from reconciler.kinds.base import INT, TEXT, Binding, Column, Ref, Snapshot
from reconciler.models.jobs import EvaluationJob, EvaluationJobSpec
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
        Column("num_workers", ("num_workers",), INT, when_given=True),
        Column("adapter_id", ("adapter",), Ref("Adapter"), empty="", per_item=True),
        Column("num_cpu", ("resources", "cpu"), INT),
        Column("num_gpu", ("resources", "gpu"), INT),
        Column("num_memory", ("resources", "memory"), INT),
        Column("evaluation_dir", ("evaluation_dir",), TEXT, history=True, per_item=True),
        Column("model_bnb_config_id"),
        Column("adapter_bnb_config_id"),
        Column("generation_config_id"),
        Column("model_bnb_config", ("bnb_config",), Snapshot("bitsandbytes_config")),
        Column("adapter_bnb_config", ("adapter_bnb_config",), Snapshot("bitsandbytes_config")),
        Column("generation_config", ("generation_config",), Snapshot("generation_config")),
    ),
    name_column="parent_job_id",
    rerun=EvaluationJob.RERUN,
    items=("combinations",),
    resolved=lambda manifest, _scope: {"eval_dataset_fraction": manifest.resource.spec.eval_dataset_fraction,
                                       "selected_features": manifest.resource.spec.selected_features},
    item_key=("base_model_id", "adapter_id"),
)


def parent(row: Row) -> str:
    """The EvaluationJob's id (every combination's row carries it)."""
    return str(row.get("parent_job_id") or row.get("id") or "")


def combination(row: Row) -> tuple[str, str]:
    """(base model id, adapter id or '') of one combination's row."""
    return str(row.get("base_model_id") or ""), str(row.get("adapter_id") or "")


def evaluation_dir(row: Row) -> str:
    return str(row.get("evaluation_dir") or "")


def cml_job_id(row: Row) -> str:
    return str(row.get("cml_job_id") or "")


def candidate(row: Row, *, model: Row, adapter: Row | None, model_source: dict[str, Any]) -> dict[str, Any]:
    """One entry of a job input's `evaluate.candidates`: the combination and its row id."""
    label = str(adapter.get("name")) if adapter else f"{model.get('name')} (base)"
    return {"label": label, "model": model_source, "adapter_path": str(adapter.get("location")) if adapter else None,
            "evaluation_id": str(row.get("id"))}
